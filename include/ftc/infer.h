/* Using a tuned model: token sampling, generation with a KV cache, classification. */
#ifndef FTC_INFER_H
#define FTC_INFER_H
#include <stdint.h>
#include <stdbool.h>
#include "ftc/base.h"
#include "ftc/model.h"
#include "ftc/status.h"

/* Sampling as transformers' generate applies its warpers: temperature, then top-k, then top-p.
 * temperature <= 0 means greedy (argmax; the lowest index wins a tie). top_k <= 0 and top_p >= 1 disable. */
typedef struct {
    float temperature;
    int top_k;
    float top_p;
} ftc_sampler;

/* Picks the next token from logits[V]. scratch: V floats and V int32 provided by the caller. */
int32_t ftc_sample(const float *logits, int V, const ftc_sampler *s, ftc_rng *rng, float *prob_scratch,
                   int32_t *idx_scratch);
/* ---- incremental decoding with a KV cache (src/infer/generate.c) ----
 * Decoder families only (GPT-2, Llama, Mistral, Qwen2) loaded with FTC_TASK_CAUSAL_LM. The cache keeps the
 * keys and values of every position of one sequence, so each new token costs one row through the blocks.
 * It grows as needed up to the model's max_position_embeddings. The model must outlive the cache, and its
 * weights must not change while the cache holds positions (reset after training steps). */
typedef struct ftc_kv_cache ftc_kv_cache;
ftc_status ftc_kv_cache_create(ftc_model *m, int capacity, ftc_kv_cache **out, ftc_err *err);
void ftc_kv_cache_free(ftc_kv_cache *c);
void ftc_kv_cache_reset(ftc_kv_cache *c);              /* forget every position */
void ftc_kv_cache_truncate(ftc_kv_cache *c, int len);  /* keep the first len positions */
int ftc_kv_cache_len(const ftc_kv_cache *c);           /* positions cached */
int ftc_kv_cache_max_len(const ftc_kv_cache *c);       /* the model's context */
const int32_t *ftc_kv_cache_ids(const ftc_kv_cache *c); /* the cached tokens [len] */

/* Runs ids[n] at the positions after the cached ones and caches their keys and values. logits: [n, V] for
 * every new position when all_positions, else [V] for the last one only. Equals ftc_model_forward on the
 * whole sequence (within float rounding) without recomputing the prefix. */
ftc_status ftc_model_decode(ftc_model *m, ftc_kv_cache *c, const int32_t *ids, int n, float *logits,
                            bool all_positions, ftc_err *err);

typedef enum {
    FTC_GEN_MAX_TOKENS,   /* max_new_tokens generated */
    FTC_GEN_STOP_TOKEN,   /* a stop token (EOS) was sampled; it is not in the output */
    FTC_GEN_CONTEXT_FULL, /* the model's context is full */
    FTC_GEN_CALLER,       /* on_token returned false */
} ftc_gen_stop;

typedef struct {
    int max_new_tokens;
    ftc_sampler sampler;
    uint64_t seed;           /* seeds the sampling RNG when rng is NULL */
    ftc_rng *rng;            /* or the caller's RNG (state carries over between calls, e.g. chat turns) */
    const int32_t *stop_ids; /* e.g. EOS; n_stop of them */
    int n_stop;
    bool (*on_token)(void *ctx, int32_t id); /* streaming: called for each generated token; false stops */
    void *ctx;
} ftc_generate_opts;

/* Appends prompt[n_prompt] to the cache (n_prompt may be 0 to continue after the cached tokens), then
 * samples up to max_new_tokens tokens, feeding each back. out[max_new_tokens] receives them (stop token
 * excluded), *n_out their count, *why (may be NULL) the reason generation ended. */
ftc_status ftc_generate(ftc_model *m, ftc_kv_cache *c, const int32_t *prompt, int n_prompt,
                        const ftc_generate_opts *o, int32_t *out, int *n_out, ftc_gen_stop *why, ftc_err *err);
#endif

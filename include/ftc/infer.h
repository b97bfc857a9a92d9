/* Using a tuned model: token sampling, generation with a KV cache, classification. */
#ifndef FTC_INFER_H
#define FTC_INFER_H
#include <stdint.h>
#include <stdbool.h>
#include "ftc/base.h"
#include "ftc/model.h"
#include "ftc/status.h"
#include "ftc/tokenizer.h"
#include "ftc/data.h"

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
/* The cache's element type (ftc_kv_type, ftc/base.h). FTC_KV_F32 (the default of ftc_kv_cache_create) keeps the keys
 * and values as computed; FTC_KV_F16 (the CLI's default, as llama.cpp's; opt-in here) stores them as IEEE halves,
 * rounded to nearest even: half the memory and half the bytes attention reads a step (batched decoding of long
 * sequences is bound by them); logits then differ from the f32 cache's by the halves' rounding (2^-11 relative on
 * each key and value). FTC_KV_Q8_0 (llama.cpp's -ctk q8_0 -ctv q8_0) stores each position's keys and values as
 * ggml Q8_0 blocks of 32 (an f16 scale max|x| / 127 and 32 int8, ftc_quantize_row's rounding): 34 bytes per 32
 * values, 53% of f16's; each value off by at most half a step (max|x| / 254 of its block); the model's key/value
 * width (kv heads x head dim) must be a multiple of 32, else creating the cache fails with FTC_E_UNSUPPORTED. A
 * sequence still gets the same bits alone and in any batch. A batch (ftc_model_decode_batch) takes one type. */
ftc_status ftc_kv_cache_create_typed(ftc_model *m, int capacity, ftc_kv_type type, ftc_kv_cache **out, ftc_err *err);
ftc_kv_type ftc_kv_cache_type(const ftc_kv_cache *c);
/* "f32", "f16", "q8_0" (what --kv-type takes) for a type, and back (false: no such name) */
const char *ftc_kv_type_name(ftc_kv_type t);
bool ftc_kv_type_parse(const char *name, ftc_kv_type *out);
/* Bytes of n cached values (n a multiple of 32 for Q8_0: whole blocks) */
size_t ftc_kv_type_bytes(ftc_kv_type t, size_t n);
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

/* One new token for each of n sequences (1..64, distinct caches of model m) in one pass: the rows go through
 * the model's matmuls together (a weight is read once for all of them) and each attends over its own cache.
 * logits [n, V]. Each row equals ftc_model_decode of that token alone on its cache (within float rounding). */
ftc_status ftc_model_decode_batch(ftc_model *m, ftc_kv_cache **caches, const int32_t *ids, int n, float *logits,
                                  ftc_err *err);

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
/* ---- streaming detokenization (src/infer/textstream.c) ----
 * Text of generated tokens as they arrive, each byte emitted once: push returns what the new token adds
 * (possibly "", e.g. while a multi-byte character is incomplete). The concatenated pieces equal decoding the
 * generated ids after the context with HF decode() (special tokens skipped). */
typedef struct {
    const ftc_tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    size_t prefix, read; /* decode window: ids[prefix..read) already emitted */
} ftc_text_stream;
/* context: the tokens before the first pushed one (the prompt), so the first piece decodes as in context. */
ftc_status ftc_text_stream_init(ftc_text_stream *s, const ftc_tokenizer *t, const int32_t *context, size_t n,
                                ftc_err *err);
/* *piece: malloc'd NUL-terminated text (caller frees). */
ftc_status ftc_text_stream_push(ftc_text_stream *s, int32_t id, char **piece, ftc_err *err);
/* Whatever is still held back (an incomplete character at the end of generation). */
ftc_status ftc_text_stream_flush(ftc_text_stream *s, char **piece, ftc_err *err);
void ftc_text_stream_free(ftc_text_stream *s);

/* ---- opening --model for generate/chat/classify (src/infer/open.c) ----
 * path: a model directory (HF layout + tokenizer files) or an ftc run directory (config.resolved.json,
 * model/, optionally chat_template.json). want_task: FTC_TASK_* or -1 for the run's own (a plain directory
 * is then causal-lm). A run trained for another task is refused with a hint. */
typedef struct {
    ftc_model *model;
    ftc_tokenizer *tok;
    ftc_task task;
    bool is_run;
    char model_dir[4200];     /* where the weights were loaded from */
    char tokenizer_dir[4200];
    char template_name[32];   /* a run's --template setting ("" if none recorded) */
    char *template_source;    /* the Jinja the run rendered its chat data with (RUNDIR/chat_template.json), or NULL */
    int run_max_len;          /* a run's --max-len (examples were truncated to it), 0 for a plain directory */
    ftc_kv_type kv_type;      /* the KV caches generation makes for this model (ftc_chat_create, the server's slots):
                               * FTC_KV_F32 after ftc_infer_open; the CLI sets FTC_KV_F16 unless --kv-type f32 */
} ftc_infer_model;
ftc_status ftc_infer_open(const char *path, int want_task, ftc_infer_model *im, ftc_err *err);
void ftc_infer_close(ftc_infer_model *im);
/* The ids that end generation: EOS of config.json, of generation_config.json (number or list; the model's
 * directory, else the tokenizer's) and of the tokenizer, those inside the model's vocabulary. Returns how many
 * were written (at most max). */
int ftc_infer_stop_ids(const ftc_infer_model *im, int32_t *out, int max);
/* Adds to ids[*n] (at most max) the end-of-turn the chat template writes after an answer (<|im_end|>,
 * <|eot_id|>, <end_of_turn>) when it is one token of the vocabulary; an end-of-turn of several tokens is
 * returned as *stop_text instead (malloc'd, NULL otherwise). A tuned model stops where its training answers did. */
ftc_status ftc_infer_template_stops(const ftc_infer_model *im, const ftc_chat_template *t, int32_t *ids, int *n,
                                    int max, char **stop_text, ftc_err *err);
/* ftc generate's stops: ftc_infer_stop_ids, plus for a run tuned on chat data its template's end-of-turn token. */
int ftc_infer_generate_stop_ids(const ftc_infer_model *im, int32_t *out, int max);
/* The chat template for chat/generate: value (a --chat-template: preset, .jinja file, "model") if given, else the
 * one the run applied, else the model's own (tokenizer_config.json, chat_template.jinja). *out NULL if none;
 * *why says where it came from. */
ftc_status ftc_infer_chat_template(const ftc_infer_model *im, const char *value, ftc_chat_template **out,
                                   const char **why, ftc_err *err);
/* ---- classification (src/infer/classify.c): what ftc classify and ftc serve's /v1/classify share ---- */
/* Classes of a model loaded for FTC_TASK_CLASSIFY (its head's rows), -1 without a classification head. */
int ftc_classify_num_labels(ftc_infer_model *im);
/* Token limit per text: the model's positions, or a run's --max-len when shorter (training truncated to it). */
int ftc_classify_max_len(const ftc_infer_model *im);
/* Label names: a run's labels.json (path: the --model given), else config.json id2label, else "0".."n-1". */
ftc_status ftc_classify_labels(const ftc_infer_model *im, const char *path, int n, char ***names, ftc_err *err);
void ftc_classify_free_labels(char **names, int n);
/* A text's ids as training tokenized it (special tokens, truncated to max_len); never empty (a pad token). */
ftc_status ftc_classify_encode(const ftc_infer_model *im, const char *text, int max_len, ftc_ids *ids, ftc_err *err);
/* Class probabilities (softmax of the head's logits) for n tokenized texts run as one right-padded batch:
 * probs[n, num_labels]. The same text gets the same probabilities in any batch (the padding is masked). */
ftc_status ftc_classify_ids(ftc_infer_model *im, const ftc_ids *ids, int n, int num_labels, float *probs,
                            ftc_err *err);
/* ---- chat (src/infer/chat.c) ----
 * A conversation rendered with a chat template (data.h) exactly as training rendered it, plus the template's
 * generation prompt; one KV cache whose positions are reused as long as the rendering's tokens match, so a
 * turn runs only its new tokens. Generation stops at EOS (generation_config.json's, a list too), the
 * template's end-of-turn (<|im_end|>, <|eot_id|>: ftc_infer_template_stops) or, for the plain template, at the
 * next "### Question:". When the conversation outgrows the context, the oldest exchanges are dropped (a system
 * message stays). */
typedef struct ftc_chat ftc_chat;
typedef struct {
    int max_new_tokens;
    ftc_sampler sampler;
    uint64_t seed;
    ftc_rng *rng;                                  /* or NULL: seeded from seed each turn */
    void (*on_text)(void *ctx, const char *text);  /* streaming: reply text as it is produced */
    void *ctx;
} ftc_chat_opts;
typedef struct {
    int prompt_tokens;     /* the rendered conversation + generation prompt */
    int reused_tokens;     /* of those, already in the KV cache */
    int generated_tokens;
    int dropped_messages;  /* left out to fit the context */
    ftc_gen_stop stop;
} ftc_chat_stats;
/* im and t must outlive the chat. system may be NULL. */
ftc_status ftc_chat_create(ftc_infer_model *im, const ftc_chat_template *t, const char *system, ftc_chat **out,
                           ftc_err *err);
/* Adds the user message, generates the answer (kept in the conversation); *reply: malloc'd text. */
ftc_status ftc_chat_reply(ftc_chat *c, const char *user, const ftc_chat_opts *o, char **reply, ftc_chat_stats *st,
                          ftc_err *err);
/* Appends a user or assistant message without generating (an earlier turn of a conversation being replayed). */
ftc_status ftc_chat_add(ftc_chat *c, ftc_role role, const char *text, ftc_err *err);
void ftc_chat_reset(ftc_chat *c); /* forget the conversation (the system message stays) */
int ftc_chat_turns(const ftc_chat *c); /* user + assistant messages kept */
void ftc_chat_free(ftc_chat *c);
#endif

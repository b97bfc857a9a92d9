/* Using a tuned model: token sampling, generation with a KV cache, classification. */
#ifndef FTC_INFER_H
#define FTC_INFER_H
#include <stdint.h>
#include "ftc/base.h"

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
#endif

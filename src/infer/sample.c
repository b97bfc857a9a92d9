/* Next-token sampling: greedy, temperature, top-k, top-p (nucleus). */
#include "ftc/infer.h"
#include <math.h>
#include <stdlib.h>

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static const float *sort_base; /* qsort has no context argument; sampling is single-threaded */
static int by_prob_desc(const void *a, const void *b) {
    float pa = sort_base[*(const int32_t *)a], pb = sort_base[*(const int32_t *)b];
    if (pa != pb) return pa > pb ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b; /* stable order among equal probabilities */
}

int32_t ftc_sample(const float *logits, int V, const ftc_sampler *s, ftc_rng *rng, float *p, int32_t *idx) {
    if (s->temperature <= 0.0f) return argmax(logits, V);
    float mx = logits[argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) { p[i] = expf((logits[i] - mx) / s->temperature); sum += p[i]; idx[i] = i; }
    for (int i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
    int n = V;
    bool filter = (s->top_k > 0 && s->top_k < V) || (s->top_p > 0.0f && s->top_p < 1.0f);
    if (filter) {
        sort_base = p;
        qsort(idx, V, sizeof *idx, by_prob_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        if (s->top_p > 0.0f && s->top_p < 1.0f) {
            /* keep the smallest prefix whose mass reaches top_p (at least one token) */
            double mass = 0, kept = 0;
            for (int i = 0; i < n; i++) kept += p[idx[i]];
            int m = 0;
            while (m < n) {
                mass += p[idx[m]] / kept;
                m++;
                if (mass >= s->top_p) break;
            }
            n = m;
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += p[idx[i]];
    double r = ftc_rng_uniform(rng) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p[idx[i]];
        if (r < acc) return idx[i];
    }
    return idx[n - 1];
}

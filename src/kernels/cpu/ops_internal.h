/* Helpers shared by the CPU ops: the dot product of decode attention. */
#ifndef FTC_OPS_INTERNAL_H
#define FTC_OPS_INTERNAL_H

/* a . b over n floats with 8 independent partial sums (vectorisable without -ffast-math; fixed order, so
 * deterministic) */
static inline float ops_dot8(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[d + u] * b[d + u];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}
/* Decode attention on AVX-512 (ops_attention_decode.c): true (the default) takes the rows with the keys in lanes
 * where they apply, false the per-key rows; the same bits either way. Not thread-safe: for tests. */
#include <stdbool.h>
void ftc_attention_decode_set_lanes(bool on);
#endif

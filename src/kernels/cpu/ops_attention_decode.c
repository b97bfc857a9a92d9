/* Attention for incremental decoding: Tn new queries attend over a key/value cache that already holds the
 * keys and values of every earlier position and of the new ones. Causal by construction: the new query at
 * absolute position p = Tk - Tn + i sees keys 0..p. Same softmax as ftc_attention_forward (max-subtracted, ftc_vm_exp_sum);
 * the scores here are dot products with 8 partial sums where ftc_attention_forward uses ftc_matmul, so a decode
 * step reproduces the full-sequence rows to rounding (within 1e-5, test_attention_decode). */
#include "ftc/ops.h"
#include "ops_internal.h"
#include "vmath.h"
#include <math.h>
#include <string.h>

void ftc_attention_decode_forward(float *out, float *att, const float *q, const float *k_cache, const float *v_cache,
                              int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D) {
    const int group = H / Hkv;
    const int start = Tk - Tn; /* absolute position of the first new query */
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
#pragma omp parallel for schedule(dynamic) collapse(2) if ((long)B * H * Tn * Tk * D > 65536)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const int g = h / group;
            const float *qb = q + (size_t)b * Tn * qs + (size_t)h * D;
            const float *kb = k_cache + (size_t)b * Tcap * ks + (size_t)g * D;
            const float *vb = v_cache + (size_t)b * Tcap * ks + (size_t)g * D;
            float *ob = out + (size_t)b * Tn * qs + (size_t)h * D;
            for (int i = 0; i < Tn; i++) {
                const int nvis = start + i + 1; /* keys 0..start+i */
                float *p = att + (((size_t)b * H + h) * Tn + i) * Tk;
                const float *qi = qb + (size_t)i * qs;
                float mx = -INFINITY;
                for (int j = 0; j < nvis; j++) {
                    p[j] = ops_dot8(qi, kb + (size_t)j * ks, D) * scale;
                    if (p[j] > mx) mx = p[j];
                }
                /* sum >= 1: the max contributes exp(0) */
                float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, nvis));
                for (int j = nvis; j < Tk; j++) p[j] = 0.0f;
                float *oi = ob + (size_t)i * qs;
                memset(oi, 0, sizeof(float) * D);
                for (int j = 0; j < nvis; j++) {
                    p[j] *= inv;
                    if (p[j] == 0.0f) continue;
                    const float *vj = vb + (size_t)j * ks;
                    for (int d = 0; d < D; d++) oi[d] += p[j] * vj[d];
                }
            }
        }
    }
}

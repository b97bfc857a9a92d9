/* Scaled dot-product attention with causal and key-padding masks and grouped-query heads.
 * Visibility of key j to query i: (!causal || j <= i) && (key_mask[j] || j == i). A query always sees itself,
 * so no row is ever empty (padded rows would otherwise be 0/0 = NaN); real query rows see exactly what
 * PyTorch/transformers let them see, and padded rows' outputs are never used by a loss. */
#include "ftc/ops.h"
#include "ops_internal.h"
#include "vmath.h"
#include "ftc/matmul.h"
#include <math.h>
#include <string.h>

static inline bool visible(const uint8_t *mask_b, bool causal, int i, int j) {
    if (causal && j > i) return false;
    return !mask_b || mask_b[j] || j == i;
}

/* Rows of queries per block: causal attention computes only the key columns up to the block's last query. */
enum { QBLOCK = 64 };

/* Per (b,h), with kv head g = h / (H/Hkv) and scale = 1/sqrt(D):
 *   att[b,h,i,j] = softmax_j(q[b,i,h,:] . k[b,j,g,:] * scale) over visible j (0 elsewhere)
 *   out[b,i,h,:] = sum_j att[b,h,i,j] v[b,j,g,:]
 * q,out [B,T,H,D]; k,v [B,T,Hkv,D]; att [B,H,T,T]. Both products are matmuls on a block of query rows
 * (single-threaded inside this parallel region); one (b,h) per thread: outputs are disjoint. */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D; /* row strides over t */
#pragma omp parallel for schedule(dynamic) collapse(2) if ((long)B * H * T * T * D > 65536)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const int g = h / group;
            const uint8_t *mb = key_mask ? key_mask + (size_t)b * T : NULL;
            const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
            const float *kb = k + (size_t)b * T * ks + (size_t)g * D;
            const float *vb = v + (size_t)b * T * ks + (size_t)g * D;
            float *ob = out + (size_t)b * T * qs + (size_t)h * D;
            float *pbh = att + ((size_t)b * H + h) * T * T;
            for (int i0 = 0; i0 < T; i0 += QBLOCK) {
                const int rows = T - i0 < QBLOCK ? T - i0 : QBLOCK;
                const int cols = causal ? i0 + rows : T; /* keys any row of the block can see */
                float *pblk = pbh + (size_t)i0 * T;
                ftc_matmul(false, true, rows, cols, D, scale, qb + (size_t)i0 * qs, (int)qs, kb, (int)ks, 0.0f, pblk,
                           T);
                for (int i = i0; i < i0 + rows; i++) {
                    float *p = pbh + (size_t)i * T;
                    float mx = -INFINITY;
                    for (int j = 0; j < cols; j++) {
                        if (!visible(mb, causal, i, j)) p[j] = -INFINITY;
                        else if (p[j] > mx) mx = p[j];
                    }
                    /* exp(-inf - mx) = 0 for the hidden keys; sum >= 1: the row's max contributes exp(0) */
                    float inv = (float)(1.0 / vm_exp_sum(p, p, mx, cols));
                    for (int j = 0; j < cols; j++) p[j] *= inv;
                    for (int j = cols; j < T; j++) p[j] = 0.0f;
                }
                ftc_matmul(false, false, rows, D, cols, 1.0f, pblk, T, vb, (int)ks, 0.0f, ob + (size_t)i0 * qs,
                           (int)qs);
            }
        }
    }
}

/* With P = att and dO = dout, per (b,h):
 *   dv[j] += sum_i P[i,j] dO[i];  dP[i,j] = dO[i] . v[j];  dS[i,j] = P[i,j] (dP[i,j] - sum_j' P[i,j'] dP[i,j'])
 *   dq[i] += scale sum_j dS[i,j] k[j];  dk[j] += scale sum_i dS[i,j] q[i]
 * Threads take one (b, kv head) each and walk that group's query heads in order, so the sums into a shared
 * kv head happen in a fixed order (deterministic). scratch [B,H,T,T] holds dS. Masked entries have P = 0,
 * hence dS = 0: masking needs no special case here. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
#pragma omp parallel for schedule(dynamic) collapse(2) if ((long)B * H * T * T * D > 65536)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < Hkv; g++) {
            const float *kb = k + (size_t)b * T * ks + (size_t)g * D;
            const float *vb = v + (size_t)b * T * ks + (size_t)g * D;
            float *dkb = dk ? dk + (size_t)b * T * ks + (size_t)g * D : NULL;
            float *dvb = dv ? dv + (size_t)b * T * ks + (size_t)g * D : NULL;
            for (int h = g * group; h < (g + 1) * group; h++) {
                const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
                const float *dob = dout + (size_t)b * T * qs + (size_t)h * D;
                float *dqb = dq ? dq + (size_t)b * T * qs + (size_t)h * D : NULL;
                const float *Pbh = att + ((size_t)b * H + h) * T * T;
                float *dSbh = scratch + ((size_t)b * H + h) * T * T;
                for (int i = 0; i < T; i++) {
                    const float *P = Pbh + (size_t)i * T;
                    float *dS = dSbh + (size_t)i * T;
                    const float *doi = dob + (size_t)i * qs;
                    float pdp = 0.0f; /* sum_j P[i,j] dP[i,j] */
                    for (int j = 0; j < T; j++) {
                        if (P[j] == 0.0f) { dS[j] = 0.0f; continue; }
                        float s = ops_dot8(doi, vb + (size_t)j * ks, D);
                        dS[j] = s;
                        pdp += P[j] * s;
                    }
                    for (int j = 0; j < T; j++) dS[j] = P[j] * (dS[j] - pdp);
                    if (dqb) {
                        float *dqi = dqb + (size_t)i * qs;
                        for (int j = 0; j < T; j++) {
                            if (dS[j] == 0.0f) continue;
                            const float *kj = kb + (size_t)j * ks;
                            float a = scale * dS[j];
                            for (int d = 0; d < D; d++) dqi[d] += a * kj[d];
                        }
                    }
                }
                /* key-side sums: for each key j, over queries i in order */
                for (int i = 0; i < T; i++) {
                    const float *P = Pbh + (size_t)i * T, *dS = dSbh + (size_t)i * T;
                    const float *qi = qb + (size_t)i * qs, *doi = dob + (size_t)i * qs;
                    for (int j = 0; j < T; j++) {
                        if (P[j] == 0.0f) continue;
                        if (dvb) {
                            float *dvj = dvb + (size_t)j * ks;
                            for (int d = 0; d < D; d++) dvj[d] += P[j] * doi[d];
                        }
                        if (dkb) {
                            float *dkj = dkb + (size_t)j * ks;
                            float a = scale * dS[j];
                            for (int d = 0; d < D; d++) dkj[d] += a * qi[d];
                        }
                    }
                }
            }
        }
    }
}

/* Scaled dot-product attention with causal and key-padding masks and grouped-query heads.
 * Visibility of key j to query i: (!causal || j <= i) && (key_mask[j] || j == i). A query always sees itself,
 * so no row is ever empty (padded rows would otherwise be 0/0 = NaN); real query rows see exactly what
 * PyTorch/transformers let them see, and padded rows' outputs are never used by a loss. */
#include "ftc/ops.h"
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

/* One product of the attention, in f32 or (opts->bf16) in bf16 with f32 accumulation. Called inside the
 * parallel regions below, so ftc_matmul runs it on this thread. */
static void att_matmul(bool bf16, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    if (bf16)
        ftc_matmul_bf16(ta, tb, M, N, K, alpha, A, FTC_MM_F32, lda, B, FTC_MM_F32, ldb, beta, C, ldc);
    else
        ftc_matmul(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static bool att_dropped(const attention_opts *o) { return o && o->dropout_p > 0.0f; }

/* out[b,i,h,:] = sum_j P[b,h,i,j] v[b,j,g,:] for every (b,h); P = att, or att_drop under dropout. */
static void attention_values(float *out, const float *P, const float *v, int B, int T, int H, int Hkv, int D,
                             bool causal, bool bf16) {
    const int group = H / Hkv;
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
#pragma omp parallel for schedule(dynamic) collapse(2) if ((long)B * H * T * T * D > 65536)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *vb = v + (size_t)b * T * ks + (size_t)(h / group) * D;
            const float *pbh = P + ((size_t)b * H + h) * T * T;
            float *ob = out + (size_t)b * T * qs + (size_t)h * D;
            for (int i0 = 0; i0 < T; i0 += QBLOCK) {
                const int rows = T - i0 < QBLOCK ? T - i0 : QBLOCK, cols = causal ? i0 + rows : T;
                att_matmul(bf16, false, false, rows, D, cols, 1.0f, pbh + (size_t)i0 * T, T, vb, (int)ks, 0.0f,
                           ob + (size_t)i0 * qs, (int)qs);
            }
        }
}

/* Per (b,h), with kv head g = h / (H/Hkv) and scale = 1/sqrt(D):
 *   att[b,h,i,j] = softmax_j(q[b,i,h,:] . k[b,j,g,:] * scale) over visible j (0 elsewhere)
 *   out[b,i,h,:] = sum_j att'[b,h,i,j] v[b,j,g,:],  att' = att, or att * drop_mask under dropout
 * q,out [B,T,H,D]; k,v [B,T,Hkv,D]; att [B,H,T,T]. Both products are matmuls on a block of query rows
 * (single-threaded inside this parallel region); one (b,h) per thread: outputs are disjoint. Dropout draws
 * its mask for the whole att in one call after the softmax (the rng use of a separate dropout pass). */
void ftc_attention_forward_ex(float *out, float *att, const float *q, const float *k, const float *v,
                          const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal,
                          const attention_opts *o) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D; /* row strides over t */
    const bool bf16 = o && o->bf16, drop = att_dropped(o);
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
                att_matmul(false /* scores stay f32: see attention_opts */, false, true, rows, cols, D, scale, qb + (size_t)i0 * qs, (int)qs, kb, (int)ks, 0.0f,
                           pblk, T);
                for (int i = i0; i < i0 + rows; i++) {
                    float *p = pbh + (size_t)i * T;
                    float mx = -INFINITY;
                    for (int j = 0; j < cols; j++) {
                        if (!visible(mb, causal, i, j)) p[j] = -INFINITY;
                        else if (p[j] > mx) mx = p[j];
                    }
                    /* exp(-inf - mx) = 0 for the hidden keys; sum >= 1: the row's max contributes exp(0) */
                    float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, cols));
                    for (int j = 0; j < cols; j++) p[j] *= inv;
                    for (int j = cols; j < T; j++) p[j] = 0.0f;
                }
                if (!drop) /* under dropout the values wait for the mask */
                    att_matmul(bf16, false, false, rows, D, cols, 1.0f, pblk, T, vb, (int)ks, 0.0f,
                               ob + (size_t)i0 * qs, (int)qs);
            }
        }
    }
    if (drop) {
        ftc_dropout_forward(o->att_drop, o->drop_mask, att, (int)((size_t)B * H * T * T), o->dropout_p, o->rng);
        attention_values(out, o->att_drop, v, B, T, H, Hkv, D, causal, bf16);
    }
}

void ftc_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const uint8_t *key_mask, int B, int T, int H, int Hkv, int D, bool causal) {
    ftc_attention_forward_ex(out, att, q, k, v, key_mask, B, T, H, Hkv, D, causal, NULL);
}

/* With P = att, P' = the probabilities forward multiplied by v (P * drop_mask under dropout) and dO = dout,
 * per (b,h), as matmuls on T x T blocks:
 *   dv += P'^T dO;  dP = (dO v^T) [* drop_mask];  dS = P * (dP - rowsum(P * dP))
 *   dq += scale dS k;  dk += scale dS^T q
 * Threads take one (b, kv head) each and walk that group's query heads in order, so the sums into a shared
 * kv head happen in a fixed order (deterministic). scratch [B,H,T,T] holds dP, then dS. Masked entries have
 * P = 0, hence dS = 0: masking needs no special case here. */
void ftc_attention_backward_ex(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch,
                           const attention_opts *o) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    const bool bf16 = o && o->bf16, drop = att_dropped(o);
#pragma omp parallel for schedule(dynamic) collapse(2) if ((long)B * H * T * T * D > 65536)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < Hkv; g++) {
            const float *kb = k + (size_t)b * T * ks + (size_t)g * D;
            const float *vb = v + (size_t)b * T * ks + (size_t)g * D;
            float *dkb = dk ? dk + (size_t)b * T * ks + (size_t)g * D : NULL;
            float *dvb = dv ? dv + (size_t)b * T * ks + (size_t)g * D : NULL;
            for (int h = g * group; h < (g + 1) * group; h++) {
                const size_t a0 = ((size_t)b * H + h) * T * T;
                const float *qb = q + (size_t)b * T * qs + (size_t)h * D;
                const float *dob = dout + (size_t)b * T * qs + (size_t)h * D;
                float *dqb = dq ? dq + (size_t)b * T * qs + (size_t)h * D : NULL;
                const float *P = att + a0, *Pv = drop ? o->att_drop + a0 : P;
                float *dS = scratch + a0;
                if (dvb) att_matmul(bf16, true, false, T, D, T, 1.0f, Pv, T, dob, (int)qs, 1.0f, dvb, (int)ks);
                if (!dqb && !dkb) continue;
                att_matmul(bf16, false, true, T, T, D, 1.0f, dob, (int)qs, vb, (int)ks, 0.0f, dS, T);
                for (int i = 0; i < T; i++) {
                    float *dr = dS + (size_t)i * T;
                    const float *pr = P + (size_t)i * T;
                    if (drop) {
                        const float *mr = o->drop_mask + a0 + (size_t)i * T;
                        for (int j = 0; j < T; j++) dr[j] *= mr[j];
                    }
                    double pdp = 0; /* sum_j P[i,j] dP[i,j] */
                    for (int j = 0; j < T; j++) pdp += (double)pr[j] * dr[j];
                    for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - (float)pdp);
                }
                if (dqb) att_matmul(bf16, false, false, T, D, T, scale, dS, T, kb, (int)ks, 1.0f, dqb, (int)qs);
                if (dkb) att_matmul(bf16, true, false, T, D, T, scale, dS, T, qb, (int)qs, 1.0f, dkb, (int)ks);
            }
        }
    }
}

void ftc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int H, int Hkv, int D, float *scratch) {
    ftc_attention_backward_ex(dq, dk, dv, dout, att, q, k, v, B, T, H, Hkv, D, scratch, NULL);
}

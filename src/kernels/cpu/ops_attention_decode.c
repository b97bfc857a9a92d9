/* Attention for incremental decoding: Tn new queries attend over a key/value cache that already holds the
 * keys and values of every earlier position and of the new ones. Causal by construction: the new query at
 * absolute position p = Tk - Tn + i sees keys 0..p. Same softmax as ftc_attention_forward (max-subtracted, ftc_vm_exp_sum);
 * a decode step's scores are dot products with 8 partial sums (a prompt chunk's come from ftc_matmul, as
 * ftc_attention_forward's do), so decoding reproduces the full-sequence rows to rounding (within 1e-5,
 * test_attention_decode).
 * Work is split per (sequence, head) on the library's pool (ftc_parallel_for), the threads the matmuls around it
 * run on, when there is enough of it (B*H*Tn*Tk*D > 65536); a decode step's smaller products run on the caller. */
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include "ops_internal.h"
#include "vmath.h"
#include <math.h>
#include <string.h>

/* At least this many queries (a prompt chunk) compute their scores and outputs with ftc_matmul, as
 * ftc_attention_forward does; fewer (decoding) with the dot-product loop. Inside ftc_parallel_for the matmuls
 * run on the calling thread alone (the pool is busy with this very job). */
enum { GEMM_QUERIES = 8 };

/* A decode step reads the key and value rows of its head from memory (a token's pass over the weights evicts the
 * cache from L3): the score loop prefetches the K and V rows this many keys ahead, so the value loop finds them in
 * L1/L2. Without it attention was 10-15% of a SmolLM2 decode step at 256-512 positions, stalled on those loads. */
enum { KV_AHEAD = 8 };

/* Decoding's queries one at a time: dot-product scores, softmax, weighted sum of the values. Compiled plain and
 * for AVX-512 (vmath.h; same operations in the same order, so both give the same bits). */
VM_FORCE_INLINE void decode_rows_body(float *ob, float *att, const float *qb, const float *kb, const float *vb, int Tn,
                                      int Tk, size_t qs, size_t ks, int D, int start, float scale) {
    for (int i = 0; i < Tn; i++) {
        const int nvis = start + i + 1; /* keys 0..start+i */
        float *p = att + (size_t)i * Tk;
        const float *qi = qb + (size_t)i * qs;
        float mx = -INFINITY;
        for (int j = 0; j < nvis; j++) {
            if (j + KV_AHEAD < nvis) { /* the cache rows were evicted by the weights since the last token */
                const float *kn = kb + (size_t)(j + KV_AHEAD) * ks, *vn = vb + (size_t)(j + KV_AHEAD) * ks;
                for (int d = 0; d < D; d += 16) __builtin_prefetch(kn + d), __builtin_prefetch(vn + d);
            }
            p[j] = ops_dot8(qi, kb + (size_t)j * ks, D) * scale;
            if (p[j] > mx) mx = p[j];
        }
        /* sum >= 1: the max contributes exp(0) */
        float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, nvis));
        for (int j = nvis; j < Tk; j++) p[j] = 0.0f;
        float *oi = ob + (size_t)i * qs;
        for (int j = 0; j < nvis; j++) p[j] *= inv;
        /* oi = sum_j p[j] v_j, j in order, 32 channels at a time in registers (the row of oi kept in memory was
         * a store-to-load chain per key and most of the time of a decode step's attention) */
        int d0 = 0;
        for (; d0 + 32 <= D; d0 += 32) {
            float acc[32] = {0};
            for (int j = 0; j < nvis; j++) {
                if (p[j] == 0.0f) continue;
                const float pj = p[j], *vj = vb + (size_t)j * ks + d0;
#pragma GCC unroll 32
                for (int u = 0; u < 32; u++) acc[u] += pj * vj[u];
            }
            memcpy(oi + d0, acc, sizeof acc);
        }
        for (; d0 < D; d0++) {
            float acc = 0.0f;
            for (int j = 0; j < nvis; j++)
                if (p[j] != 0.0f) acc += p[j] * vb[(size_t)j * ks + d0];
            oi[d0] = acc;
        }
    }
}
VM_THREE_PATHS(decode_rows, (float *ob, float *att, const float *qb, const float *kb, const float *vb, int Tn, int Tk,
                           size_t qs, size_t ks, int D, int start, float scale),
             (ob, att, qb, kb, vb, Tn, Tk, qs, ks, D, start, scale))

/* One head of one sequence: Tn queries (stride qs) over Tk cached keys/values (stride ks); att: Tn x Tk. */
static void head(float *ob, float *att, const float *qb, const float *kb, const float *vb, int Tn, int Tk, size_t qs,
                 size_t ks, int D) {
    const int start = Tk - Tn; /* absolute position of the first new query */
    const float scale = 1.0f / sqrtf((float)D);
    if (Tn >= GEMM_QUERIES) { /* a prompt chunk: scores and output as two products (on this thread: see above) */
        ftc_matmul(false, true, Tn, Tk, D, scale, qb, (int)qs, kb, (int)ks, 0.0f, att, Tk);
        for (int i = 0; i < Tn; i++) {
            const int nvis = start + i + 1;
            float *p = att + (size_t)i * Tk, mx = -INFINITY;
            for (int j = 0; j < nvis; j++) mx = p[j] > mx ? p[j] : mx;
            float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, nvis));
            for (int j = 0; j < nvis; j++) p[j] *= inv;
            for (int j = nvis; j < Tk; j++) p[j] = 0.0f;
        }
        ftc_matmul(false, false, Tn, D, Tk, 1.0f, att, Tk, vb, (int)ks, 0.0f, ob, (int)qs);
        return;
    }
    (ftc_vm_use_avx512() ? decode_rows_avx512 : ftc_vm_use_avx2() ? decode_rows_avx2 : decode_rows_generic)(
        ob, att, qb, kb, vb, Tn, Tk, qs, ks, D, start, scale);
}

typedef struct {
    float *out, *att;
    const float *q, *k, *v;
    float *const *atts;
    const float *const *ks, *const *vs;
    const int *lens;
    int Tn, Tk, Tcap, H, Hkv, D;
} job;

static void run_one(void *ctx, int t) { /* t = b * H + h */
    const job *j = ctx;
    const int b = t / j->H, h = t % j->H, g = h / (j->H / j->Hkv);
    const size_t qs = (size_t)j->H * j->D, ks = (size_t)j->Hkv * j->D;
    head(j->out + (size_t)b * j->Tn * qs + (size_t)h * j->D, j->att + ((size_t)b * j->H + h) * j->Tn * j->Tk,
         j->q + (size_t)b * j->Tn * qs + (size_t)h * j->D, j->k + (size_t)b * j->Tcap * ks + (size_t)g * j->D,
         j->v + (size_t)b * j->Tcap * ks + (size_t)g * j->D, j->Tn, j->Tk, qs, ks, j->D);
}

void ftc_attention_decode_forward(float *out, float *att, const float *q, const float *k_cache, const float *v_cache,
                              int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D) {
    job j = {out, att, q, k_cache, v_cache, NULL, NULL, NULL, NULL, Tn, Tk, Tcap, H, Hkv, D};
    if ((long)B * H * Tn * Tk * D > 65536) {
        ftc_parallel_for(B * H, run_one, &j);
        return;
    }
    for (int t = 0; t < B * H; t++) run_one(&j, t);
}

static void run_seq(void *ctx, int t) { /* t = s * H + h: one new query of sequence s */
    const job *j = ctx;
    const int s = t / j->H, h = t % j->H, g = h / (j->H / j->Hkv);
    const size_t qs = (size_t)j->H * j->D, ks = (size_t)j->Hkv * j->D;
    head(j->out + (size_t)s * qs + (size_t)h * j->D, j->atts[s] + (size_t)h * j->lens[s], j->q + (size_t)s * qs + (size_t)h * j->D,
         j->ks[s] + (size_t)g * j->D, j->vs[s] + (size_t)g * j->D, 1, j->lens[s], qs, ks, j->D);
}

void ftc_attention_decode_seqs_forward(float *out, float *const *att, const float *q, const float *const *k_cache,
                                       const float *const *v_cache, const int *len, int S, int H, int Hkv, int D) {
    job j = {out, NULL, q, NULL, NULL, att, k_cache, v_cache, len, 1, 0, 0, H, Hkv, D};
    long work = 0;
    for (int s = 0; s < S; s++) work += (long)H * len[s] * D;
    if (work > 65536) {
        ftc_parallel_for(S * H, run_seq, &j);
        return;
    }
    for (int t = 0; t < S * H; t++) run_seq(&j, t);
}

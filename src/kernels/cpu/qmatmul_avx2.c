/* Decoding's matrix-vector product on packed Q8_0 / Q4_0 / Q4_1 blocks, in AVX2 + FMA (issue 24): y[o] = W[o] . x
 * for one row x, each block widened to f32 in registers (int8 or nibbles -> epi32 -> ps) and multiplied with x
 * there, so the weight's bytes are read once from memory and nothing is written back (the panel path of
 * qmatmul.c decodes 128 KB of f32 and reads it again). Four rows of W at a time share each load of x; per block
 * and row, sum_i q_i x_i accumulates in f32 and is scaled by the block's d once:
 *   Q8_0  d * sum q x            Q4_0  d * sum (q - 8) x            Q4_1  d * sum q x + m * sum x
 * (sum x per block is computed once per call, xsum). The order of operations differs from decode-then-multiply
 * (d q x vs d (q . x)): same value up to f32 rounding, checked against the dequantized weight in test_quant.c.
 * Compiled with target attributes (AVX2, FMA, F16C); qmatmul.c calls it only when ftc_vm_isa() == 1 (AVX2, or
 * FTC_MATMUL=avx2) and the CPU has F16C (ftc_qmatvec_avx2_ok). */
#include <immintrin.h>
#include <string.h>
#include "ftc/quant.h"
#include "matmul_internal.h" /* ftc_mm_cpu_has_f16c */
#include "quant_internal.h"

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define INLINE __attribute__((always_inline)) static inline

/* IEEE half -> float with F16C's vcvtph2ps (exact, as ftc_f16_to_f32; the scalar conversion with its branches was
 * about a third of the instructions per block and row) */
INLINE AVX2_FN float half(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

INLINE AVX2_FN float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* bytes of one block of a Q8_0 / Q4_0 / Q4_1 row */
INLINE AVX2_FN size_t block_bytes(int type) {
    return type == FTC_GGML_Q8_0   ? sizeof(ftc_block_q8_0)
           : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0)
                                   : sizeof(ftc_block_q4_1);
}

/* the end of every kernel here: C outputs, ldy apart (the multi-row tiles: one W row for C rows of X; the one-row
 * kernels: C = up to 4 W rows, ldy 1), each hsum(acc) + the Q4_1 m term, scaled into Y by beta */
INLINE AVX2_FN void store_rows(float *Y, int ldy, int C, const __m256 *acc, const float *macc, float beta) {
    for (int c = 0; c < C; c++) {
        float r = hsum(acc[c]) + macc[c];
        float *y = Y + (size_t)c * ldy;
        *y = beta == 0.0f ? r : r + beta * *y;
    }
}

/* 8 signed bytes -> 8 floats */
INLINE AVX2_FN __m256 i8x8(__m128i q) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)); }

/* The 32 values of a block as 4 vectors of 8 (in order), signed: Q8_0 as stored; Q4_0 nibbles minus 8 (sub8);
 * Q4_1 nibbles as they are */
INLINE AVX2_FN void q8_vals(const int8_t *qs, __m256 v[4]) { /* vpmovsxbd straight from memory, 8 bytes each */
    for (int i = 0; i < 4; i++) v[i] = i8x8(_mm_loadl_epi64((const __m128i *)(qs + 8 * i)));
}
INLINE AVX2_FN void q4_vals(const uint8_t *qs, bool sub8, __m256 v[4]) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4); /* values 0-15, 16-31 */
    if (sub8) lo = _mm_sub_epi8(lo, _mm_set1_epi8(8)), hi = _mm_sub_epi8(hi, _mm_set1_epi8(8));
    v[0] = i8x8(lo), v[1] = i8x8(_mm_srli_si128(lo, 8)), v[2] = i8x8(hi), v[3] = i8x8(_mm_srli_si128(hi, 8));
}

/* Rows [o0, o1) of W (row_bytes each, I values) times x into y[o0..o1) (y = v, or v + beta y). */
AVX2_FN void ftc_qmatvec_avx2(int type, float *y, const float *x, const float *xsum, const void *W, size_t row_bytes,
                              int I, int o0, int o1, float beta) {
    const int nb = I / 32;
    const size_t bbytes = block_bytes(type);
    for (int o = o0; o < o1; o += 4) {
        int rows = o1 - o < 4 ? o1 - o : 4;
        const uint8_t *w[4];
        for (int r = 0; r < 4; r++) w[r] = (const uint8_t *)W + (size_t)(o + (r < rows ? r : 0)) * row_bytes;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        float macc[4] = {0, 0, 0, 0};
        for (int b = 0; b < nb; b++) {
            const float *xb = x + 32 * b;
            /* the same place in the next four rows: this loop's arithmetic per byte is high enough that the
             * hardware prefetcher alone left it waiting on memory (Q8_0 SmolLM2 decode, one thread: 35 -> 27 ms
             * CPU per token; 8 or 16 rows ahead measured the same). Past the last row it is a no-op. */
            for (int r = 0; r < 4; r++) _mm_prefetch((const char *)(w[r] + 4 * row_bytes) + bbytes * b, _MM_HINT_T0);
            __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
                   x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m256 v[4];
                float d;
                if (type == FTC_GGML_Q8_0) {
                    const ftc_block_q8_0 *blk = (const ftc_block_q8_0 *)w[r] + b;
                    q8_vals(blk->qs, v);
                    d = half(blk->d);
                } else if (type == FTC_GGML_Q4_0) {
                    const ftc_block_q4_0 *blk = (const ftc_block_q4_0 *)w[r] + b;
                    q4_vals(blk->qs, true, v);
                    d = half(blk->d);
                } else {
                    const ftc_block_q4_1 *blk = (const ftc_block_q4_1 *)w[r] + b;
                    q4_vals(blk->qs, false, v);
                    d = half(blk->d);
                    macc[r] += half(blk->m) * xsum[b];
                }
                __m256 s = _mm256_mul_ps(v[0], x0); /* one chain per row: 5 vector ops per block and row */
                s = _mm256_fmadd_ps(v[1], x1, s);
                s = _mm256_fmadd_ps(v[2], x2, s);
                s = _mm256_fmadd_ps(v[3], x3, s);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc[r]);
            }
        }
        store_rows(y + o, 1, rows, acc, macc, beta);
    }
}

/* Several rows of X (batched decoding, 2..16 sequences): each block of a W row is widened to f32 in registers once
 * and multiplied with up to QROWS_C rows of X there (their 32 values loaded from L1/L2 as memory operands), so a
 * batch pays the decode once per weight, as the f32 4x3 tiles of matmul_avx2.c pay each load of W once per tile.
 * Per (W row, X row) the arithmetic is the one-row kernel's, in the same order (s = q . x in one mul + 3 FMA
 * chain, d s into acc, hsum, + m sum x), so a sequence in a batch gets the same bits as alone. Registers: 4 values
 * + d + C accumulators + the s temporaries: C = 8 fits AVX2's 16; more rows of X take a second pass over the
 * (cached) W row. */
enum { QROWS_C = 8 };
INLINE AVX2_FN void qrows_tile(int type, const int C, float *Y, int ldy, const float *X, int ldx, const float *xsum,
                               int nb, const uint8_t *w, size_t row_bytes, size_t bbytes, float beta) {
    __m256 acc[QROWS_C];
    float macc[QROWS_C];
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps(), macc[c] = 0.0f;
    for (int b = 0; b < nb; b++) {
        _mm_prefetch((const char *)(w + 4 * row_bytes) + bbytes * b, _MM_HINT_T0); /* as the one-row kernel */
        __m256 v[4];
        float d, m = 0.0f;
        if (type == FTC_GGML_Q8_0) {
            const ftc_block_q8_0 *blk = (const ftc_block_q8_0 *)w + b;
            q8_vals(blk->qs, v);
            d = half(blk->d);
        } else if (type == FTC_GGML_Q4_0) {
            const ftc_block_q4_0 *blk = (const ftc_block_q4_0 *)w + b;
            q4_vals(blk->qs, true, v);
            d = half(blk->d);
        } else {
            const ftc_block_q4_1 *blk = (const ftc_block_q4_1 *)w + b;
            q4_vals(blk->qs, false, v);
            d = half(blk->d);
            m = half(blk->m);
        }
        const __m256 vd = _mm256_set1_ps(d);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const float *xb = X + (size_t)c * ldx + 32 * b;
            __m256 s = _mm256_mul_ps(v[0], _mm256_loadu_ps(xb));
            s = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xb + 8), s);
            s = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xb + 16), s);
            s = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xb + 24), s);
            acc[c] = _mm256_fmadd_ps(vd, s, acc[c]);
            if (type == FTC_GGML_Q4_1) macc[c] += m * xsum[(size_t)c * nb + b];
        }
    }
    store_rows(Y, ldy, C, acc, macc, beta);
}

/* one instance per type and tile height, so the loops above unroll with C and the type known */
#define QROWS_TYPE(T)                                                                                                  \
    switch (C) {                                                                                                     \
    case 1: qrows_tile(T, 1, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    case 2: qrows_tile(T, 2, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    case 3: qrows_tile(T, 3, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    case 4: qrows_tile(T, 4, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    case 5: qrows_tile(T, 5, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    case 6: qrows_tile(T, 6, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    case 7: qrows_tile(T, 7, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                            \
    default: qrows_tile(T, 8, Y, ldy, X, ldx, xsum, nb, w, row_bytes, bbytes, beta); break;                           \
    }
static AVX2_FN void qrows_q8_0(int C, float *Y, int ldy, const float *X, int ldx, const float *xsum, int nb,
                               const uint8_t *w, size_t row_bytes, size_t bbytes, float beta) {
    QROWS_TYPE(FTC_GGML_Q8_0)
}
static AVX2_FN void qrows_q4_0(int C, float *Y, int ldy, const float *X, int ldx, const float *xsum, int nb,
                               const uint8_t *w, size_t row_bytes, size_t bbytes, float beta) {
    QROWS_TYPE(FTC_GGML_Q4_0)
}
static AVX2_FN void qrows_q4_1(int C, float *Y, int ldy, const float *X, int ldx, const float *xsum, int nb,
                               const uint8_t *w, size_t row_bytes, size_t bbytes, float beta) {
    QROWS_TYPE(FTC_GGML_Q4_1)
}

/* Rows [o0, o1) of W times the N rows of X [N, I] into Y [N, O] columns o0..o1 (Y = v, or v + beta Y); xsum [N, I/32]
 * (Q4_1). X rows in even chunks of at most QROWS_C. */
AVX2_FN void ftc_qmatrows_avx2(int type, float *Y, const float *X, const float *xsum, int N, const void *W,
                               size_t row_bytes, int I, int O, int o0, int o1, float beta) {
    const int nb = I / 32;
    const size_t bbytes = block_bytes(type);
    const int chunks = (N + QROWS_C - 1) / QROWS_C, per = (N + chunks - 1) / chunks;
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = (const uint8_t *)W + (size_t)o * row_bytes;
        for (int n = 0; n < N; n += per) {
            int C = N - n < per ? N - n : per;
            float *Yn = Y + (size_t)n * O + o;
            const float *Xn = X + (size_t)n * I, *xs = xsum + (size_t)n * nb;
            if (type == FTC_GGML_Q8_0) qrows_q8_0(C, Yn, O, Xn, I, xs, nb, w, row_bytes, bbytes, beta);
            else if (type == FTC_GGML_Q4_0) qrows_q4_0(C, Yn, O, Xn, I, xs, nb, w, row_bytes, bbytes, beta);
            else qrows_q4_1(C, Yn, O, Xn, I, xs, nb, w, row_bytes, bbytes, beta);
        }
    }
}

bool ftc_qmatvec_avx2_ok(void) { return ftc_mm_cpu_has_f16c(); }

/* sum of each block of 32 values of x (Q4_1's m term) */
AVX2_FN void ftc_qmatvec_xsum_avx2(const float *x, int I, float *xsum) {
    for (int b = 0; b < I / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8)),
                                 _mm256_add_ps(_mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)));
        xsum[b] = hsum(s);
    }
}

/* ---- 8-bit activations (generation, issue 24; the portable twin, the layout and the error are in qmatmul_q8act.c) --
 * Each (W block, X block) pair is an integer dot product: the weight's values as signed bytes w (Q8_0 as stored,
 * Q4_0 nibble - 8) and |w| (both once per W block, shared by all rows of X), then per row of X: |w| times x with
 * w's sign (vpsignb, vpmaddubsw: at most 2 x 128 x 127 per int16, no saturation) and vpmaddwd by ones to 8 int32,
 * exact; one conversion and one FMA by d_w d_x into 8 f32 lanes. Q4_1's nibbles are unsigned already (no sign
 * trick) and its m term adds m s (s = d_x sum q) in a scalar. One sequence: 2 integer multiplies per block and row
 * against the f32 kernel's widening of 32 values + 4 FMAs. (Tried: groups of 4 blocks interleaved so that one
 * conversion and FMA serve 4 blocks: slower on Zen 3, whose one vector-integer multiply pipe bounds both and the
 * interleave of W costs shuffles that one sequence does not amortize.) The one-row and multi-row kernels do the
 * same operations per (W row, X row), so a sequence gets the same bits alone and in a batch. */
INLINE AVX2_FN __m256i q4_bytes(const uint8_t *qs) { /* the 32 nibbles in value order, 0..15 */
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* block b of a W row: its values as bytes (signed, or Q4_1's unsigned nibbles), |values| (unused for Q4_1), d, m */
INLINE AVX2_FN void wblock(int type, const uint8_t *w, int b, __m256i *v, __m256i *av, float *d, float *m) {
    if (type == FTC_GGML_Q8_0) {
        const ftc_block_q8_0 *blk = (const ftc_block_q8_0 *)w + b;
        *v = _mm256_loadu_si256((const __m256i *)blk->qs);
        *av = _mm256_sign_epi8(*v, *v);
        *d = half(blk->d);
    } else if (type == FTC_GGML_Q4_0) {
        const ftc_block_q4_0 *blk = (const ftc_block_q4_0 *)w + b;
        *v = _mm256_sub_epi8(q4_bytes(blk->qs), _mm256_set1_epi8(8));
        *av = _mm256_sign_epi8(*v, *v);
        *d = half(blk->d);
    } else {
        const ftc_block_q4_1 *blk = (const ftc_block_q4_1 *)w + b;
        *v = q4_bytes(blk->qs);
        *d = half(blk->d), *m = half(blk->m);
    }
}

/* acc + d_w d_x (w . q) for one block pair: the 8 int32 partial sums converted and scaled in one FMA */
INLINE AVX2_FN __m256 pair(int type, __m256i v, __m256i av, __m256 vd, const int8_t *xq, const float *xd, __m256 acc) {
    __m256i q = _mm256_loadu_si256((const __m256i *)xq), p;
    if (type == FTC_GGML_Q4_1) p = _mm256_maddubs_epi16(v, q);
    else p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(q, v));
    __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    return _mm256_fmadd_ps(_mm256_mul_ps(vd, _mm256_broadcast_ss(xd)), s, acc);
}

/* One row of X: rows [o0, o1) of W four at a time (each load of x shared by 4 rows) into y[o0..o1) */
static AVX2_FN void q8a_matvec(int type, float *y, const int8_t *xq, const float *xd, const float *xs, const void *W,
                               size_t row_bytes, int I, int o0, int o1, float beta) {
    const int nb = I / 32;
    const size_t bbytes = block_bytes(type);
    for (int o = o0; o < o1; o += 4) {
        int rows = o1 - o < 4 ? o1 - o : 4;
        const uint8_t *w[4];
        for (int r = 0; r < 4; r++) w[r] = (const uint8_t *)W + (size_t)(o + (r < rows ? r : 0)) * row_bytes;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        float macc[4] = {0, 0, 0, 0};
        for (int b = 0; b < nb; b++) {
            /* the same place four rows down (the f32 kernels' prefetch; a no-op past the last row) */
            for (int r = 0; r < 4; r++) _mm_prefetch((const char *)(w[r] + 4 * row_bytes) + bbytes * b, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m256i v, av = _mm256_setzero_si256();
                float d, m = 0.0f;
                wblock(type, w[r], b, &v, &av, &d, &m);
                acc[r] = pair(type, v, av, _mm256_set1_ps(d), xq + 32 * b, xd + b, acc[r]);
                if (type == FTC_GGML_Q4_1) macc[r] += m * xs[b];
            }
        }
        store_rows(y + o, 1, rows, acc, macc, beta);
    }
}

/* one W row times C (1..8) quantized rows of X: each block of the W row loaded and prepared once */
INLINE AVX2_FN void q8a_tile(int type, const int C, float *Y, int ldy, const int8_t *XQ, int ldx, const float *XD,
                             const float *XS, int nb, const uint8_t *w, size_t row_bytes, size_t bbytes, float beta) {
    __m256 acc[QROWS_C];
    float macc[QROWS_C];
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps(), macc[c] = 0.0f;
    for (int b = 0; b < nb; b++) {
        _mm_prefetch((const char *)(w + 4 * row_bytes) + bbytes * b, _MM_HINT_T0);
        __m256i v, av = _mm256_setzero_si256();
        float d, m = 0.0f;
        wblock(type, w, b, &v, &av, &d, &m);
        const __m256 vd = _mm256_set1_ps(d);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            acc[c] = pair(type, v, av, vd, XQ + (size_t)c * ldx + 32 * b, XD + (size_t)c * nb + b, acc[c]);
            if (type == FTC_GGML_Q4_1) macc[c] += m * XS[(size_t)c * nb + b];
        }
    }
    store_rows(Y, ldy, C, acc, macc, beta);
}

#define Q8A_TYPE(T)                                                                                                    \
    switch (C) {                                                                                                     \
    case 1: q8a_tile(T, 1, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    case 2: q8a_tile(T, 2, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    case 3: q8a_tile(T, 3, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    case 4: q8a_tile(T, 4, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    case 5: q8a_tile(T, 5, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    case 6: q8a_tile(T, 6, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    case 7: q8a_tile(T, 7, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                           \
    default: q8a_tile(T, 8, Y, ldy, XQ, ldx, XD, XS, nb, w, row_bytes, bbytes, beta); break;                          \
    }
#define Q8A_ARGS                                                                                                       \
    int C, float *Y, int ldy, const int8_t *XQ, int ldx, const float *XD, const float *XS, int nb, const uint8_t *w,  \
        size_t row_bytes, size_t bbytes, float beta
static AVX2_FN void q8a_q8_0(Q8A_ARGS) { Q8A_TYPE(FTC_GGML_Q8_0) }
static AVX2_FN void q8a_q4_0(Q8A_ARGS) { Q8A_TYPE(FTC_GGML_Q4_0) }
static AVX2_FN void q8a_q4_1(Q8A_ARGS) { Q8A_TYPE(FTC_GGML_Q4_1) }

/* rows [o0, o1) of W times the N quantized rows of X into Y [N, O] columns o0..o1: one row the matrix-vector
 * kernel; more in even chunks of at most 8, each chunk over all the rows of W in the range (the chunk's bytes stay
 * in L1 while W's rows stream) */
AVX2_FN void ftc_q8a_matrows_avx2(int type, float *Y, const int8_t *XQ, const float *XD, const float *XS, int N,
                                  const void *W, size_t row_bytes, int I, int O, int o0, int o1, float beta) {
    if (N == 1) {
        q8a_matvec(type, Y, XQ, XD, XS, W, row_bytes, I, o0, o1, beta);
        return;
    }
    const int nb = I / 32;
    const size_t bbytes = block_bytes(type);
    const int chunks = (N + QROWS_C - 1) / QROWS_C, per = (N + chunks - 1) / chunks;
    for (int n = 0; n < N; n += per) {
        int C = N - n < per ? N - n : per;
        const int8_t *xq = XQ + (size_t)n * I;
        const float *xd = XD + (size_t)n * nb, *xs = XS + (size_t)n * nb;
        for (int o = o0; o < o1; o++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)o * row_bytes;
            float *Yn = Y + (size_t)n * O + o;
            if (type == FTC_GGML_Q8_0) q8a_q8_0(C, Yn, O, xq, I, xd, xs, nb, w, row_bytes, bbytes, beta);
            else if (type == FTC_GGML_Q4_0) q8a_q4_0(C, Yn, O, xq, I, xd, xs, nb, w, row_bytes, bbytes, beta);
            else q8a_q4_1(C, Yn, O, xq, I, xd, xs, nb, w, row_bytes, bbytes, beta);
        }
    }
}

/* One row x [I] to 8-bit blocks, the bits of ftc_q8a_quantize (the portable one) */
AVX2_FN void ftc_q8a_quantize_avx2(const float *x, int I, int8_t *q, float *d, float *s) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < I / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
               v3 = _mm256_loadu_ps(xb + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4), db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid)),
                i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        /* packs work within 128-bit lanes: (i0 i1) (i2 i3) -> 4-byte groups in the order 0 4 1 5 2 6 3 7, put
         * back by one permute */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, perm);
        _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
        /* the sum of the stored (saturated) values, as the portable one: bytes + 128 summed by vpsadbw */
        __m256i wide = _mm256_sad_epu8(_mm256_xor_si256(p, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
        __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(wide), _mm256_extracti128_si256(wide, 1));
        int sum = (int)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128;
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

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
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>
#include "ftc/quant.h"
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
    const size_t bbytes = type == FTC_GGML_Q8_0   ? sizeof(ftc_block_q8_0)
                          : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0)
                                                  : sizeof(ftc_block_q4_1);
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
        for (int r = 0; r < rows; r++) {
            float v = hsum(acc[r]) + macc[r];
            y[o + r] = beta == 0.0f ? v : v + beta * y[o + r];
        }
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
    for (int c = 0; c < C; c++) {
        float r = hsum(acc[c]) + macc[c];
        float *y = Y + (size_t)c * ldy;
        *y = beta == 0.0f ? r : r + beta * *y;
    }
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
    const size_t bbytes = type == FTC_GGML_Q8_0   ? sizeof(ftc_block_q8_0)
                          : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0)
                                                  : sizeof(ftc_block_q4_1);
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

bool ftc_qmatvec_avx2_ok(void) {
    static int ok = -1; /* GCC 12's __builtin_cpu_supports does not know f16c: CPUID leaf 1, ECX bit 29 */
    if (ok < 0) {
        unsigned a, b, c, d;
        ok = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    }
    return ok;
}

/* sum of each block of 32 values of x (Q4_1's m term) */
AVX2_FN void ftc_qmatvec_xsum_avx2(const float *x, int I, float *xsum) {
    for (int b = 0; b < I / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8)),
                                 _mm256_add_ps(_mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)));
        xsum[b] = hsum(s);
    }
}

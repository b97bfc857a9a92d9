/* AVX2 + FMA kernels, for CPUs without AVX-512 (AMD Zen 2/3, most Intel desktops): compiled with target
 * attributes like matmul_avx512.c, so the binary stays portable; matmul.c calls them only after a CPU-feature
 * check (or FTC_MATMUL=avx2, which also runs them on AVX-512 machines, so tests cover them there).
 *
 * Skinny products for decoding (issue 24): C[M, N] = alpha * A[M, K] W[N, K]^T + beta * C with few rows, W read
 * along K as nn.Linear stores it. Memory-bound: each weight is read once and meets M multiply-adds. W is
 * streamed as stored in blocks of 8 rows (sequential streams the hardware prefetcher follows; each kernel also
 * prefetches the next block). One row of A takes a block all 8 rows at once (8 accumulators, one vector of A);
 * more rows go in groups of 4 (then 3 or 2) through register tiles of up to 4 x 3 accumulators over slices of the
 * block, each slice through every group while it is in L1. Every row of C adds K's 8-value blocks in order and
 * is reduced by the same tree, so it has the same bits whichever tile computed it, and alone.
 * bf16: W stored bf16, widened to f32 in registers (a zero-extend and a shift: bf16 is the upper half of an
 * f32); A is given as f32 values already rounded to bf16, so every product is exact in f32, as vdpbf16ps's.
 *
 * Also the conversions the AVX2 bf16 GEMM (matmul.c) needs: f32 -> bf16 (round to nearest even, NaN stays NaN,
 * bit-identical to ftc_mm_round_bf16) and "round to bf16, keep as f32". */
#include "matmul_internal.h"
#include <immintrin.h>
#include <string.h>

#define AVX2_FN __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) static inline

static inline int imin(int a, int b) { return a < b ? a : b; }

/* Lane masks for _mm256_maskload_ps: the first n of 8 lanes (n = 0..7) */
static const int32_t TAIL_MASK[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
INLINE AVX2_FN __m256i tail_mask(int n) { return _mm256_loadu_si256((const __m256i *)(TAIL_MASK + 8 - n)); }

/* (sum a0, sum a1, sum a2, sum a3) */
INLINE AVX2_FN __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

INLINE void store_row(float *c, int cols, const float *s, float alpha, float beta) {
    for (int t = 0; t < cols; t++) {
        float v = alpha * s[t];
        c[t] = beta == 0.0f ? v : v + beta * c[t];
    }
}

/* Loads 8 weights at w + k as f32: f32 as is, bf16 widened (exact) */
INLINE AVX2_FN __m256 ld_f32(const float *w, int k) { return _mm256_loadu_ps(w + k); }
INLINE AVX2_FN __m256 ld_bf16(const uint16_t *w, int k) {
    __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
}

/* The kernels, once per weight type (T: float or uint16_t, LD: the loader). The K tail (K % 8 values) goes
 * through zero-padded copies, so no load reads past a row. */
#define SKINNY_KERNELS(NAME, T, LD)                                                                                   \
    /* s[t] = a . w[t] for one row of A and R = 4 or 8 rows of W (R a constant after inlining): one accumulator \
     * per row of W, the 8-value blocks of K added in order, as _tile does for each of its rows, so a row of C    \
     * has the same bits whether its row of A went alone or in a tile. Eight rows of W are eight memory streams  \
     * in flight at once: about 12% more GB/s per core than four (Zen 3, decoding's shapes). Each line of the     \
     * next block of 8 rows is prefetched as the same place of this block is read (ldw: W's row stride): one      \
     * Zen 3 thread of SmolLM2 decode went from 44-47 to 36-40 ms CPU per token in f32, 38-39 to 30-32 in bf16     \
     * (f32 weights on huge pages, bf16 on 4 KB pages); past the last row a prefetch is a no-op. */                 \
    INLINE AVX2_FN void NAME##_dots1(const int R, const float *a, const T *const w[8], int K, float s[8],             \
                                     size_t ldw) {                                                                    \
        __m256 c[8];                                                                                                  \
        _Pragma("GCC unroll 8") for (int t = 0; t < R; t++) c[t] = _mm256_setzero_ps();                              \
        int k = 0;                                                                                                    \
        for (; k + 8 <= K; k += 8) {                                                                                  \
            if ((k * (int)sizeof(T)) % 64 == 0) /* a line of each row of the next block */                            \
                _Pragma("GCC unroll 8") for (int t = 0; t < R; t++)                                                   \
                    _mm_prefetch((const char *)(w[t] + k + 8 * ldw), _MM_HINT_T0);                                     \
            __m256 a0 = _mm256_loadu_ps(a + k);                                                                       \
            _Pragma("GCC unroll 8") for (int t = 0; t < R; t++) c[t] = _mm256_fmadd_ps(a0, LD(w[t], k), c[t]);       \
        }                                                                                                             \
        if (k < K) {                                                                                                  \
            int n = K - k;                                                                                            \
            T pad[8][8];                                                                                              \
            memset(pad, 0, sizeof pad);                                                                               \
            for (int t = 0; t < R; t++) memcpy(pad[t], w[t] + k, sizeof(T) * (size_t)n);                              \
            __m256 a0 = _mm256_maskload_ps(a + k, tail_mask(n));                                                      \
            _Pragma("GCC unroll 8") for (int t = 0; t < R; t++) c[t] = _mm256_fmadd_ps(a0, LD(pad[t], 0), c[t]);     \
        }                                                                                                             \
        _mm_storeu_ps(s, hsum4(c[0], c[1], c[2], c[3]));                                                              \
        if (R == 8) _mm_storeu_ps(s + 4, hsum4(c[4], c[5], c[6], c[7]));                                             \
    }                                                                                                                 \
    /* s[r][t] = a_r . w[t] for MR rows of A (a + r * lda) and NR rows of W (MR, NR constants after inlining):    \
     * MR x NR accumulators, each W vector loaded once for the MR rows, each A vector once for the NR rows. Every   \
     * accumulator adds K's 8-value blocks in order, as _dots1's, so a row of C has the same bits in any tile.     \
     * pf: the offset of the next block of W; the tile prefetches lines pgi, pgi + png, ... of its rows there      \
     * (png: the tiles that share the slice, so that the next block's reads spread over all of them). */            \
    INLINE AVX2_FN void NAME##_tile(const int MR, const int NR, const float *a, int lda, const T *const *w, int K,     \
                                    float s[4][4], size_t pf, int pgi, int png) {                                     \
        __m256 c[4][4];                                                                                               \
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)                                                          \
            _Pragma("GCC unroll 4") for (int t = 0; t < NR; t++) c[r][t] = _mm256_setzero_ps();                     \
        int k = 0, lc = pgi;                                                                                          \
        for (; k + 8 <= K; k += 8) {                                                                                  \
            if ((k * (int)sizeof(T)) % 64 == 0 && lc-- == 0) {                                                        \
                _Pragma("GCC unroll 4") for (int t = 0; t < NR; t++)                                                  \
                    _mm_prefetch((const char *)(w[t] + k + pf), _MM_HINT_T0);                                          \
                lc = png - 1;                                                                                         \
            }                                                                                                         \
            __m256 wv[4];                                                                                             \
            _Pragma("GCC unroll 4") for (int t = 0; t < NR; t++) wv[t] = LD(w[t], k);                                \
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) {                                                    \
                __m256 av = _mm256_loadu_ps(a + (size_t)r * lda + k);                                                 \
                _Pragma("GCC unroll 4") for (int t = 0; t < NR; t++) c[r][t] = _mm256_fmadd_ps(av, wv[t], c[r][t]); \
            }                                                                                                         \
        }                                                                                                             \
        if (k < K) {                                                                                                  \
            int n = K - k;                                                                                            \
            T pad[4][8];                                                                                              \
            memset(pad, 0, sizeof pad);                                                                               \
            for (int t = 0; t < NR; t++) memcpy(pad[t], w[t] + k, sizeof(T) * (size_t)n);                              \
            __m256 wv[4];                                                                                             \
            _Pragma("GCC unroll 4") for (int t = 0; t < NR; t++) wv[t] = LD(pad[t], 0);                              \
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) {                                                    \
                __m256 av = _mm256_maskload_ps(a + (size_t)r * lda + k, tail_mask(n));                                \
                _Pragma("GCC unroll 4") for (int t = 0; t < NR; t++) c[r][t] = _mm256_fmadd_ps(av, wv[t], c[r][t]); \
            }                                                                                                         \
        }                                                                                                             \
        const __m256 z = _mm256_setzero_ps();                                                                         \
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)                                                          \
            _mm_storeu_ps(s[r], hsum4(c[r][0], NR > 1 ? c[r][1] : z, NR > 2 ? c[r][2] : z, NR > 3 ? c[r][3] : z));    \
    }                                                                                                                 \
    /* Rows MR (1..4) of A from a, against rows h..h + nr of the block w (nr = 1..NR): the tile's shapes */           \
    INLINE AVX2_FN void NAME##_tiles(int MR, int nr, const float *a, int lda, const T *const *w, int K,                \
                                     float s[4][4], size_t pf, int pgi, int png) {                                    \
        switch (MR * 8 + nr) {                                                                                        \
        case 2 * 8 + 1: NAME##_tile(2, 1, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 2 * 8 + 2: NAME##_tile(2, 2, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 2 * 8 + 3: NAME##_tile(2, 3, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 2 * 8 + 4: NAME##_tile(2, 4, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 3 * 8 + 1: NAME##_tile(3, 1, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 3 * 8 + 2: NAME##_tile(3, 2, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 3 * 8 + 3: NAME##_tile(3, 3, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 4 * 8 + 1: NAME##_tile(4, 1, a, lda, w, K, s, pf, pgi, png); break;                                                \
        case 4 * 8 + 2: NAME##_tile(4, 2, a, lda, w, K, s, pf, pgi, png); break;                                                \
        default: NAME##_tile(4, 3, a, lda, w, K, s, pf, pgi, png); break;                                                       \
        }                                                                                                             \
    }                                                                                                                 \
    /* Blocks of eight rows of W (four at the end). One row of A takes a block all eight rows at once (_dots1:     \
     * decoding's one sequence, or the last row of M = 4q + 1). More rows go in groups of 4 (then 3 or 2), and     \
     * a group takes the block in tiles of 3 rows of W (4 x 3 = 12 accumulators, the most that fit with the 3 W    \
     * vectors and one of A in 16 ymm registers; 4 for groups of 2): 7 loads for 12 FMAs instead of 6 for 8. Each   \
     * slice of 3 rows of W goes through every group of A before the next slice, so it is read from memory once    \
     * and from L1 after (18 KB at K = 1536); the first group prefetches the next block's same rows. */              \
    static AVX2_FN void NAME(int M, int n0, int n1, int K, float alpha, const float *A, int lda, const T *W, int ldw,  \
                             float beta, float *C, int ldc) {                                                         \
        for (int j = n0; j < n1;) {                                                                                   \
            int jn = imin(n1 - j >= 8 ? 8 : 4, n1 - j);                                                               \
            const T *w[8]; /* rows past the end repeat row j (computed, not stored) */                                \
            for (int t = 0; t < 8; t++) w[t] = W + (size_t)(j + (t < jn ? t : 0)) * ldw;                              \
            int mg = M - (M % 4 == 1); /* rows in groups of 4 (then 2 or 3); an odd one left goes to _dots1 */       \
            int sw = mg <= 2 ? 4 : 3;  /* the slice of W rows a tile takes */                                         \
            int ng = (mg + 3) / 4;     /* groups of rows of A: they share the prefetch of the slice's next rows */      \
            for (int h = 0; h < jn && mg > 0; h += sw) {                                                              \
                int nt = imin(sw, jn - h);                                                                            \
                for (int i = 0; i < mg;) {                                                                            \
                    int mr = imin(4, mg - i);                                                                         \
                    float s[4][4];                                                                                    \
                    NAME##_tiles(mr, nt, A + (size_t)i * lda, lda, w + h, K, s, 8 * (size_t)ldw, i / 4, ng);          \
                    for (int r = 0; r < mr; r++) store_row(C + (size_t)(i + r) * ldc + j + h, nt, s[r], alpha, beta); \
                    i += mr;                                                                                          \
                }                                                                                                     \
            }                                                                                                         \
            if (mg < M) {                                                                                             \
                float s[8];                                                                                           \
                if (jn == 8) NAME##_dots1(8, A + (size_t)mg * lda, w, K, s, (size_t)ldw);                             \
                else NAME##_dots1(4, A + (size_t)mg * lda, w, K, s, (size_t)ldw);                                     \
                store_row(C + (size_t)mg * ldc + j, jn, s, alpha, beta);                                              \
            }                                                                                                         \
            j += jn;                                                                                                  \
        }                                                                                                             \
    }

SKINNY_KERNELS(skinny_f32, float, ld_f32)
SKINNY_KERNELS(skinny_bf16, uint16_t, ld_bf16)

void ftc_mm_skinny_f32_avx2(int M, int n0, int n1, int K, float alpha, const float *A, int lda, const float *W, int ldw,
                            float beta, float *C, int ldc) {
    skinny_f32(M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
}

void ftc_mm_skinny_bf16_avx2(int M, int n0, int n1, int K, float alpha, const float *A, int lda, const uint16_t *W,
                             int ldw, float beta, float *C, int ldc) {
    skinny_bf16(M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
}

/* ---- conversions ---- */

/* 8 f32 bit patterns rounded to bf16 (nearest even; NaN -> quiet NaN), in the low 16 bits of each lane */
INLINE AVX2_FN __m256i round8(__m256i x) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}

AVX2_FN void ftc_f32_to_bf16_avx2(const float *in, uint16_t *out, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = round8(_mm256_loadu_si256((const __m256i *)(in + i)));
        __m256i b = round8(_mm256_loadu_si256((const __m256i *)(in + i + 8)));
        /* packus works per 128-bit lane: (a0-3 b0-3 a4-7 b4-7), put back in order */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(out + i), p);
    }
    for (; i < n; i++) {
        uint32_t x;
        memcpy(&x, in + i, 4);
        out[i] = ftc_mm_round_bf16(x);
    }
}

/* out[i] = in[i] rounded to bf16, as f32 (in f32), or widened (in bf16) */
AVX2_FN void ftc_bf16_round_f32_avx2(const void *in, ftc_mm_type t, float *out, size_t n) {
    size_t i = 0;
    if (t == FTC_MM_BF16) {
        const uint16_t *h = in;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, ld_bf16(h + i, 0));
        for (; i < n; i++) {
            uint32_t x = (uint32_t)h[i] << 16;
            memcpy(out + i, &x, 4);
        }
        return;
    }
    const float *f = in;
    for (; i + 8 <= n; i += 8) {
        __m256i r = _mm256_slli_epi32(round8(_mm256_loadu_si256((const __m256i *)(f + i))), 16);
        _mm256_storeu_si256((__m256i *)(out + i), r);
    }
    for (; i < n; i++) {
        uint32_t x;
        memcpy(&x, f + i, 4);
        x = (uint32_t)ftc_mm_round_bf16(x) << 16;
        memcpy(out + i, &x, 4);
    }
}

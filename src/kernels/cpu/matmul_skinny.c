/* Skinny products for decoding (issue 24): C[M, N] = alpha * A[M, K] W[N, K]^T + beta * C with few rows
 * (one to a few tokens) and a weight W read along K, as nn.Linear stores it. Such a product reads each weight
 * once and does M multiply-adds per value: its limit is memory bandwidth, and packing W (what the GEMM does)
 * would read it twice and write it once. Here W is streamed as stored, four rows at a time, against up to
 * four rows of A kept in L1; each (row of A, row of W) pair accumulates in its own zmm register, reduced once
 * at the end. More than four rows of A re-read the four W rows from L1, not from memory.
 * fp32: FMA on f32; bf16: A rounded to bf16 by the dispatcher, W stored bf16, vdpbf16ps (f32 accumulation).
 * The dispatcher (matmul.c) splits the rows of W between threads. */
#include "matmul_internal.h"
#include <immintrin.h>

#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))
#define INLINE __attribute__((always_inline)) static inline

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline __mmask16 mask16(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }
static inline __mmask32 mask32(int n) { return n >= 32 ? (__mmask32)0xFFFFFFFFu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

static inline void store(float *C, int ldc, int rows, int cols, const float s[4][4], float alpha, float beta) {
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < cols; t++) {
            float *c = C + (size_t)r * ldc + t, v = alpha * s[r][t];
            *c = beta == 0.0f ? v : v + beta * *c;
        }
}

/* s[r][t] = A row r . W row t for RB rows of A (a compile-time constant after inlining); next: floats from each W
 * row to the same place in the next tile's (prefetched: one decoding step of SmolLM2 f32, one thread, loaded Xeon,
 * 35.3-35.8 ms CPU with it against 37.0-38.2 without, 3 runs alternated; half a tile ahead 36.1-38.3, the same
 * place with the non-temporal hint 83-87) */
INLINE AVX512_FN void dots_f32(const int RB, const float *A, int lda, const float *const w[4], size_t next, int K,
                               float s[4][4]) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) _mm_prefetch((const char *)(w[t] + next + k), _MM_HINT_T0);
        __m512 w0 = _mm512_loadu_ps(w[0] + k), w1 = _mm512_loadu_ps(w[1] + k);
        __m512 w2 = _mm512_loadu_ps(w[2] + k), w3 = _mm512_loadu_ps(w[3] + k);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            __m512 a = _mm512_loadu_ps(A + (size_t)r * lda + k);
            acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(a, w2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(a, w3, acc[r][3]);
        }
    }
    if (k < K) {
        __mmask16 m = mask16(K - k);
        __m512 w0 = _mm512_maskz_loadu_ps(m, w[0] + k), w1 = _mm512_maskz_loadu_ps(m, w[1] + k);
        __m512 w2 = _mm512_maskz_loadu_ps(m, w[2] + k), w3 = _mm512_maskz_loadu_ps(m, w[3] + k);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            __m512 a = _mm512_maskz_loadu_ps(m, A + (size_t)r * lda + k);
            acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(a, w2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(a, w3, acc[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        s[r][0] = _mm512_reduce_add_ps(acc[r][0]);
        s[r][1] = _mm512_reduce_add_ps(acc[r][1]);
        s[r][2] = _mm512_reduce_add_ps(acc[r][2]);
        s[r][3] = _mm512_reduce_add_ps(acc[r][3]);
    }
}

AVX512_FN void ftc_mm_skinny_f32_avx512(int M, int n0, int n1, int K, float alpha, const float *A, int lda,
                                        const float *W, int ldw, float beta, float *C, int ldc) {
    const size_t next = 4 * (size_t)ldw; /* past n1 a prefetch is a no-op */
    for (int j = n0; j < n1; j += 4) {
        int jn = imin(4, n1 - j);
        const float *w[4]; /* rows past the end repeat row j (computed, not stored) */
        for (int t = 0; t < 4; t++) w[t] = W + (size_t)(j + (t < jn ? t : 0)) * ldw;
        for (int i = 0; i < M; i += 4) {
            int in = imin(4, M - i);
            float s[4][4];
            const float *a = A + (size_t)i * lda;
            switch (in) {
            case 1: dots_f32(1, a, lda, w, next, K, s); break;
            case 2: dots_f32(2, a, lda, w, next, K, s); break;
            case 3: dots_f32(3, a, lda, w, next, K, s); break;
            default: dots_f32(4, a, lda, w, next, K, s); break;
            }
            store(C + (size_t)i * ldc + j, ldc, in, jn, s, alpha, beta);
        }
    }
}

/* bf16: A and W as bf16 bits, k pairs adjacent (vdpbf16ps multiplies lane pairs and adds both to f32) */
INLINE BF16_FN void dots_bf16(const int RB, const uint16_t *A, int lda, const uint16_t *const w[4], int K,
                              float s[4][4]) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        __mmask32 m = mask32(K - k);
        __m512bh w0 = (__m512bh)_mm512_maskz_loadu_epi16(m, w[0] + k), w1 = (__m512bh)_mm512_maskz_loadu_epi16(m, w[1] + k);
        __m512bh w2 = (__m512bh)_mm512_maskz_loadu_epi16(m, w[2] + k), w3 = (__m512bh)_mm512_maskz_loadu_epi16(m, w[3] + k);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            __m512bh a = (__m512bh)_mm512_maskz_loadu_epi16(m, A + (size_t)r * lda + k);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, w0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, w1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], a, w2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], a, w3);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        s[r][0] = _mm512_reduce_add_ps(acc[r][0]);
        s[r][1] = _mm512_reduce_add_ps(acc[r][1]);
        s[r][2] = _mm512_reduce_add_ps(acc[r][2]);
        s[r][3] = _mm512_reduce_add_ps(acc[r][3]);
    }
}

BF16_FN void ftc_mm_skinny_bf16_avx512(int M, int n0, int n1, int K, float alpha, const uint16_t *A, int lda,
                                       const uint16_t *W, int ldw, float beta, float *C, int ldc) {
    for (int j = n0; j < n1; j += 4) {
        int jn = imin(4, n1 - j);
        const uint16_t *w[4];
        for (int t = 0; t < 4; t++) w[t] = W + (size_t)(j + (t < jn ? t : 0)) * ldw;
        for (int i = 0; i < M; i += 4) {
            int in = imin(4, M - i);
            float s[4][4];
            const uint16_t *a = A + (size_t)i * lda;
            switch (in) {
            case 1: dots_bf16(1, a, lda, w, K, s); break;
            case 2: dots_bf16(2, a, lda, w, K, s); break;
            case 3: dots_bf16(3, a, lda, w, K, s); break;
            default: dots_bf16(4, a, lda, w, K, s); break;
            }
            store(C + (size_t)i * ldc + j, ldc, in, jn, s, alpha, beta);
        }
    }
}

/* Skinny products for decoding (issue 24): C[M, N] = alpha * A[M, K] W[N, K]^T + beta * C with few rows
 * (one to a few tokens) and a weight W read along K, as nn.Linear stores it. Such a product reads each weight
 * once and does M multiply-adds per value: its limit is memory bandwidth, and packing W (what the GEMM does)
 * would read it twice and write it once. Here W is streamed as stored, four rows at a time, against up to
 * four rows of A kept in L1; each (row of A, row of W) pair accumulates in its own zmm register, reduced once
 * at the end. More than four rows of A re-read the four W rows from L1, not from memory.
 * fp32: FMA on f32; bf16: A rounded to bf16 by the dispatcher and kept as f32, W stored bf16 and widened to f32
 * in registers, then the same FMAs (each product exact, f32 accumulation). Not vdpbf16ps: on the Intel Xeon (model
 * 207) of 2026-12-04 one vdpbf16ps (32 multiply-adds) took 0.9 ns against 0.18-0.38 ns for a 16-lane FMA, so a
 * batch of 8 rows was compute-bound at about a third of the FMA rate (SmolLM2 bf16 products alone at 8 rows 70 ms
 * a step with vdpbf16ps, 39 with widened FMAs, loaded A/B; the f32 weights 57-60).
 * AMD Zen 4 streams differently (matmul.c's skinny_how, FTC_SKINNY): for 1-2 rows of A each row of W alone with no
 * software prefetch (row_dots), for more the 4-row tiles with a prefetch far ahead into L2; same bits in all shapes.
 * The dispatcher (matmul.c) splits the rows of W between threads. */
#include "matmul_internal.h"
#include <immintrin.h>

#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))
#define INLINE __attribute__((always_inline)) static inline
/* The tiles' far prefetch (ftc_mm_skinny_how.far): this many bytes ahead of each W row's read, into L2 */
#define FAR_BYTES 32768

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

/* 16 weights of row w from k as f32: f32 as stored, or bf16 widened (exact: bf16 is the upper half of an f32) */
INLINE AVX512_FN __m512 load_w(const int BF, const void *w, int k, __mmask16 m) {
    if (!BF) return _mm512_maskz_loadu_ps(m, (const float *)w + k);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* One 16-value block of K at k (lanes under m) into the accumulators */
INLINE AVX512_FN void dots_block(const int RB, const int BF, const float *A, int lda, const void *const w[4], int k,
                                 __mmask16 m, __m512 acc[4][4]) {
    __m512 w0 = load_w(BF, w[0], k, m), w1 = load_w(BF, w[1], k, m);
    __m512 w2 = load_w(BF, w[2], k, m), w3 = load_w(BF, w[3], k, m);
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        __m512 a = _mm512_maskz_loadu_ps(m, A + (size_t)r * lda + k);
        acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(a, w2, acc[r][2]);
        acc[r][3] = _mm512_fmadd_ps(a, w3, acc[r][3]);
    }
}

/* s[r][t] = A row r . W row t for RB rows of A (a compile-time constant after inlining), W f32 (BF = 0) or bf16
 * (BF = 1; A then holds f32 values already rounded to bf16, so each product is exact, as vdpbf16ps's). next:
 * elements from each W row to the same place in the next tile's (prefetched: one decoding step of SmolLM2 f32,
 * one thread, loaded Xeon, 35.3-35.8 ms CPU with it against 37.0-38.2 without, 3 runs alternated; half a tile
 * ahead 36.1-38.3, the same place with the non-temporal hint 83-87). FAR (AMD Zen 4): instead FAR_BYTES ahead in
 * each row's own stream, into L2, never past lim (the end of the rows this call reads: the next range may be
 * another thread's); 8 rows of A, one thread, SmolLM2-shaped weights: 12.5-12.8 -> 7.6-8.2 ms CPU a pass (1_16384:
 * 16 KB ahead about the same, T1 at the next tile 8.0-8.5). Every (row of A, row of W) pair adds K's
 * 16-value blocks in order in its own accumulator and is reduced alike, so its bits do not depend on RB. */
INLINE AVX512_FN void dots(const int RB, const int BF, const int FAR, const float *A, int lda, const void *const w[4],
                           size_t next, const char *lim, int K, float s[4][4]) {
    const size_t es = BF ? 2 : 4;
    /* FAR: bytes from this tile's first row to the end of the rows being read (w[1..3] lie in between) */
    const char *w0 = (const char *)w[0];
    const size_t room = FAR ? (size_t)(lim - w0) : 0;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        if (!BF || !(k & 16)) { /* once a 64-byte line: 16 f32 or 32 bf16 weights */
            if (FAR) {
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) {
                    size_t off = (size_t)((const char *)w[t] - w0) + (size_t)k * es + FAR_BYTES;
                    if (off < room) _mm_prefetch(w0 + off, _MM_HINT_T1);
                }
            } else {
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) _mm_prefetch((const char *)w[t] + (next + (size_t)k) * es, _MM_HINT_T0);
            }
        }
        dots_block(RB, BF, A, lda, w, k, 0xFFFF, acc);
    }
    if (k < K) dots_block(RB, BF, A, lda, w, k, mask16(K - k), acc);
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        s[r][0] = _mm512_reduce_add_ps(acc[r][0]);
        s[r][1] = _mm512_reduce_add_ps(acc[r][1]);
        s[r][2] = _mm512_reduce_add_ps(acc[r][2]);
        s[r][3] = _mm512_reduce_add_ps(acc[r][3]);
    }
}

/* bf16 on vdpbf16ps (the CPUs where it runs at the FMA's instruction rate, twice its multiply-adds: see matmul.c's
 * bf16_dot): A and W both as bf16 bits with k pairs adjacent, as stored; one 32-value block of K (lanes under m) at
 * k; a missing tail element reads as 0 in both operands. */
INLINE BF16_FN void dp_block(const int RB, const uint16_t *A, int lda, const uint16_t *const w[4], int k, __mmask32 m,
                             __m512 acc[4][4]) {
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

/* As dots, on vdpbf16ps: every (row of A, row of W) pair adds K's 32-value blocks in order in its own accumulator
 * and is reduced alike, so its bits do not depend on RB either. */
INLINE BF16_FN void dots_dp(const int RB, const int FAR, const uint16_t *A, int lda, const uint16_t *const w[4],
                            size_t next, const char *lim, int K, float s[4][4]) {
    const char *w0 = (const char *)w[0];
    const size_t room = FAR ? (size_t)(lim - w0) : 0;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        if (FAR) {
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                size_t off = (size_t)((const char *)(w[t] + k) - w0) + FAR_BYTES;
                if (off < room) _mm_prefetch(w0 + off, _MM_HINT_T1);
            }
        } else {
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) _mm_prefetch((const char *)(w[t] + next + (size_t)k), _MM_HINT_T0);
        }
        dp_block(RB, A, lda, w, k, 0xFFFFFFFFu, acc);
    }
    if (k < K) dp_block(RB, A, lda, w, k, mask32(K - k), acc);
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        s[r][0] = _mm512_reduce_add_ps(acc[r][0]);
        s[r][1] = _mm512_reduce_add_ps(acc[r][1]);
        s[r][2] = _mm512_reduce_add_ps(acc[r][2]);
        s[r][3] = _mm512_reduce_add_ps(acc[r][3]);
    }
}

/* One row of W streamed alone against RB rows of A (in L1): s[r][0] = A row r . W row. The same additions as dots
 * and dots_dp (each pair's K blocks in order in its own accumulator, reduced alike), so a row of C has the same bits
 * from either shape. Why a shape of its own: on AMD Zen 4 (EPYC, 2026-12-04) a core streams one sequential row
 * faster than four interleaved ones, and no software prefetch beats the hardware's here (a SmolLM2-shaped set of
 * f32 weights, 142 MB, one row of A: 25-26.5 GB/s a thread against 14.4-15.6 for the 4-row tile with its T0
 * prefetch; two threads 37-45 against 27-28; bf16 on vdpbf16ps 26.9 against 11.7 a thread). */
INLINE AVX512_FN void row_dots(const int RB, const int BF, const float *A, int lda, const void *w, int K, float s[4][4]) {
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv = load_w(BF, w, k, 0xFFFF);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(A + (size_t)r * lda + k), wv, acc[r]);
    }
    if (k < K) {
        __mmask16 m = mask16(K - k);
        __m512 wv = load_w(BF, w, k, m);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, A + (size_t)r * lda + k), wv, acc[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) s[r][0] = _mm512_reduce_add_ps(acc[r]);
}

/* As row_dots on vdpbf16ps (32-value blocks, as dots_dp) */
INLINE BF16_FN void row_dots_dp(const int RB, const uint16_t *A, int lda, const uint16_t *w, int K, float s[4][4]) {
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[r] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512bh wv = (__m512bh)_mm512_loadu_epi16(w + k);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++)
            acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_loadu_epi16(A + (size_t)r * lda + k), wv);
    }
    if (k < K) {
        __mmask32 m = mask32(K - k);
        __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + k);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++)
            acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_maskz_loadu_epi16(m, A + (size_t)r * lda + k), wv);
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) s[r][0] = _mm512_reduce_add_ps(acc[r]);
}

/* W row by row, each against the rows of A in groups of 4 (rows past the first group re-read W's row from L1) */
INLINE AVX512_FN void skinny_rows(const int BF, int M, int n0, int n1, int K, float alpha, const float *A, int lda,
                                  const void *W, int ldw, float beta, float *C, int ldc) {
    const size_t es = BF ? 2 : 4;
    for (int j = n0; j < n1; j++) {
        const void *w = (const char *)W + (size_t)j * ldw * es;
        for (int i = 0; i < M; i += 4) {
            int in = imin(4, M - i);
            float s[4][4];
            const float *a = A + (size_t)i * lda;
            switch (in) {
            case 1: row_dots(1, BF, a, lda, w, K, s); break;
            case 2: row_dots(2, BF, a, lda, w, K, s); break;
            case 3: row_dots(3, BF, a, lda, w, K, s); break;
            default: row_dots(4, BF, a, lda, w, K, s); break;
            }
            store(C + (size_t)i * ldc + j, ldc, in, 1, s, alpha, beta);
        }
    }
}

/* Tiles of 4 rows of W against the rows of A in groups of 4 (the W rows are read from memory by the first group,
 * from L1 by the next ones) */
INLINE AVX512_FN void skinny(const int BF, const int FAR, int M, int n0, int n1, int K, float alpha, const float *A,
                             int lda, const void *W, int ldw, float beta, float *C, int ldc) {
    const size_t es = BF ? 2 : 4, next = 4 * (size_t)ldw; /* past n1 a prefetch is a no-op */
    const char *lim = (const char *)W + (size_t)n1 * ldw * es; /* FAR: no prefetch past this range's rows */
    for (int j = n0; j < n1; j += 4) {
        int jn = imin(4, n1 - j);
        const void *w[4]; /* rows past the end repeat row j (computed, not stored) */
        for (int t = 0; t < 4; t++) w[t] = (const char *)W + (size_t)(j + (t < jn ? t : 0)) * ldw * es;
        for (int i = 0; i < M; i += 4) {
            int in = imin(4, M - i);
            float s[4][4];
            const float *a = A + (size_t)i * lda;
            switch (in) {
            case 1: dots(1, BF, FAR, a, lda, w, next, lim, K, s); break;
            case 2: dots(2, BF, FAR, a, lda, w, next, lim, K, s); break;
            case 3: dots(3, BF, FAR, a, lda, w, next, lim, K, s); break;
            default: dots(4, BF, FAR, a, lda, w, next, lim, K, s); break;
            }
            store(C + (size_t)i * ldc + j, ldc, in, jn, s, alpha, beta);
        }
    }
}

/* The bf16 tiles on vdpbf16ps, as skinny() */
INLINE BF16_FN void skinny_dp(const int FAR, int M, int n0, int n1, int K, float alpha, const uint16_t *A, int lda,
                              const uint16_t *W, int ldw, float beta, float *C, int ldc) {
    const size_t next = 4 * (size_t)ldw;
    const char *lim = (const char *)(W + (size_t)n1 * ldw);
    for (int j = n0; j < n1; j += 4) {
        int jn = imin(4, n1 - j);
        const uint16_t *w[4];
        for (int t = 0; t < 4; t++) w[t] = W + (size_t)(j + (t < jn ? t : 0)) * ldw;
        for (int i = 0; i < M; i += 4) {
            int in = imin(4, M - i);
            float s[4][4];
            const uint16_t *a = A + (size_t)i * lda;
            switch (in) {
            case 1: dots_dp(1, FAR, a, lda, w, next, lim, K, s); break;
            case 2: dots_dp(2, FAR, a, lda, w, next, lim, K, s); break;
            case 3: dots_dp(3, FAR, a, lda, w, next, lim, K, s); break;
            default: dots_dp(4, FAR, a, lda, w, next, lim, K, s); break;
            }
            store(C + (size_t)i * ldc + j, ldc, in, jn, s, alpha, beta);
        }
    }
}

BF16_FN void ftc_mm_skinny_bf16dp_avx512(int M, int n0, int n1, int K, float alpha, const uint16_t *A, int lda,
                                         const uint16_t *W, int ldw, float beta, float *C, int ldc, ftc_mm_skinny_how how) {
    if (M <= how.rows) {
        for (int j = n0; j < n1; j++)
            for (int i = 0; i < M; i += 4) {
                int in = imin(4, M - i);
                float s[4][4];
                const uint16_t *a = A + (size_t)i * lda, *w = W + (size_t)j * ldw;
                switch (in) {
                case 1: row_dots_dp(1, a, lda, w, K, s); break;
                case 2: row_dots_dp(2, a, lda, w, K, s); break;
                case 3: row_dots_dp(3, a, lda, w, K, s); break;
                default: row_dots_dp(4, a, lda, w, K, s); break;
                }
                store(C + (size_t)i * ldc + j, ldc, in, 1, s, alpha, beta);
            }
    } else if (how.far) {
        skinny_dp(1, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
    } else {
        skinny_dp(0, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
    }
}

AVX512_FN void ftc_mm_skinny_f32_avx512(int M, int n0, int n1, int K, float alpha, const float *A, int lda,
                                        const float *W, int ldw, float beta, float *C, int ldc, ftc_mm_skinny_how how) {
    if (M <= how.rows) skinny_rows(0, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
    else if (how.far) skinny(0, 1, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
    else skinny(0, 0, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
}

AVX512_FN void ftc_mm_skinny_bf16_avx512(int M, int n0, int n1, int K, float alpha, const float *A, int lda,
                                         const uint16_t *W, int ldw, float beta, float *C, int ldc, ftc_mm_skinny_how how) {
    if (M <= how.rows) skinny_rows(1, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
    else if (how.far) skinny(1, 1, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
    else skinny(1, 0, M, n0, n1, K, alpha, A, lda, W, ldw, beta, C, ldc);
}

/* Own AVX-512 GEMM kernels (fp32 FMA and AVX512-BF16 vdpbf16ps), single-threaded on the (sub-)problem the
 * dispatcher (matmul.c) gives them. Every function here carries a target attribute instead of the whole
 * build using -march: the binary stays portable and matmul.c calls in only after __builtin_cpu_supports.
 *
 * Scheme (the classic Goto/BLIS blocking): for each NC-wide column block of op(B) and KC-deep slice of K,
 * op(B) is packed into NR-wide slivers (k-major, zero-padded) that stay in L1 across the row loop; for each
 * MC-tall row block op(A) is packed into MR-tall panels (k-major, zero-padded) that stay in L2. The
 * micro-kernel keeps an MR x NR tile of C in 24 zmm registers (12 rows x 2 vectors of 16) and does one
 * broadcast + two FMAs per row per k. Packing absorbs the transposes, so NN/NT/TN/TT share one kernel;
 * edges are handled by zero-padding in packing and masked loads/stores of C. alpha/beta are applied when
 * the tile is written (beta only on the first K slice; later slices add). */
#include "matmul_internal.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define MR FTC_MM_MR
#define NR FTC_MM_NR
#define KC 256      /* fp32: B sliver KC*NR*4 = 32 KB (L1 is 48 KB), A panel 12 KB */
#define KC_BF16 512 /* bf16: same bytes, two k per 32-bit lane */
#define MC 240      /* A block MC*KC*4 = 240 KB, in the 1 MB L2 */
#define NC 3072     /* B block KC*NC*4 = 3 MB, in L3 */

#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))

static inline int imin(int a, int b) { return a < b ? a : b; }

/* Packing buffers per thread, grown on demand and kept: a training step calls thousands of matmuls and
 * fresh multi-megabyte allocations would page-fault on each. */
static _Thread_local void *tls_buf[2];
static _Thread_local size_t tls_cap[2];

static void *pack_buffer(int which, size_t bytes) {
    if (bytes > tls_cap[which]) {
        free(tls_buf[which]);
        size_t rounded = (bytes + 4095) & ~(size_t)4095;
        tls_buf[which] = aligned_alloc(64, rounded);
        tls_cap[which] = tls_buf[which] ? rounded : 0;
    }
    return tls_buf[which];
}

/* ---------------------------------------------------------------- fp32 ---------------------------- */

/* op(A)[i0.., k0..] (mc x kc) into MR-row panels: panel p holds, for each k, MR consecutive rows. */
AVX512_FN static void pack_a_f32(bool ta, const float *A, int lda, int i0, int mc, int k0, int kc, float *dst) {
    for (int p = 0; p < mc; p += MR, dst += (size_t)kc * MR) {
        int mr = imin(MR, mc - p);
        if (ta) { /* op(A)(i,k) = A[k][i]: MR contiguous floats per k */
            for (int k = 0; k < kc; k++) {
                const float *src = A + (size_t)(k0 + k) * lda + i0 + p;
                float *d = dst + (size_t)k * MR;
                int r = 0;
                for (; r < mr; r++) d[r] = src[r];
                for (; r < MR; r++) d[r] = 0.0f;
            }
        } else { /* op(A)(i,k) = A[i][k]: one row per panel lane, read along k */
            for (int r = 0; r < MR; r++) {
                float *d = dst + r;
                if (r < mr) {
                    const float *src = A + (size_t)(i0 + p + r) * lda + k0;
                    for (int k = 0; k < kc; k++) d[(size_t)k * MR] = src[k];
                } else {
                    for (int k = 0; k < kc; k++) d[(size_t)k * MR] = 0.0f;
                }
            }
        }
    }
}

/* Address of tile element (i, j): C[i][j], or C[j][i] when the dispatcher computes C^T. */
static inline float *c_at(float *C, int ldc, bool c_trans, int i, int j) {
    return c_trans ? C + (size_t)j * ldc + i : C + (size_t)i * ldc + j;
}

static inline __mmask16 mask_upto(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* op(B)[k0.., j0..] (kc x nc) into NR-column slivers: sliver q holds, for each k, NR consecutive columns. */
AVX512_FN static void pack_b_f32(bool tb, const float *B, int ldb, int k0, int kc, int j0, int nc, float *dst) {
    for (int q = 0; q < nc; q += NR, dst += (size_t)kc * NR) {
        int nr = imin(NR, nc - q);
        if (!tb) { /* op(B)(k,j) = B[k][j]: NR contiguous floats per k */
            __mmask16 m0 = mask_upto(nr), m1 = mask_upto(nr - 16);
            for (int k = 0; k < kc; k++) {
                const float *src = B + (size_t)(k0 + k) * ldb + j0 + q;
                _mm512_store_ps(dst + (size_t)k * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_store_ps(dst + (size_t)k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        } else { /* op(B)(k,j) = B[j][k]: read each row of B along k, write strided */
            for (int r = 0; r < NR; r++) {
                float *d = dst + r;
                if (r < nr) {
                    const float *src = B + (size_t)(j0 + q + r) * ldb + k0;
                    for (int k = 0; k < kc; k++) d[(size_t)k * NR] = src[k];
                } else {
                    for (int k = 0; k < kc; k++) d[(size_t)k * NR] = 0.0f;
                }
            }
        }
    }
}

/* Writes one row of the tile: C = alpha*acc + beta*C on the first columns given by the masks. */
AVX512_FN static inline void store_row(float *c, __m512 acc0, __m512 acc1, __mmask16 m0, __mmask16 m1, __m512 va,
                                       __m512 vb, bool beta_zero) {
    __m512 v0 = _mm512_mul_ps(va, acc0), v1 = _mm512_mul_ps(va, acc1);
    if (!beta_zero) {
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), v1);
    }
    _mm512_mask_storeu_ps(c, m0, v0);
    _mm512_mask_storeu_ps(c + 16, m1, v1);
}

/* C^T tile: the dispatcher computes a narrow C (N < NR) as C^T = op(B)^T op(A)^T so that the long side fills
 * the 32-wide vectors; tile element (i, j) then lives at C[j*ldc + i]. Scalar, but once per tile and K slice. */
static void store_tile_transposed(const float *tile, float *C, int ldc, int mr, int nr, float alpha, float beta) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *c = C + (size_t)j * ldc + i;
            float v = alpha * tile[i * NR + j];
            *c = beta == 0.0f ? v : v + beta * *c;
        }
}

#define ACC_DECL(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
#define ACC_STORE(i) \
    if (i < mr) store_row(C + (size_t)(i) * ldc, c##i##_0, c##i##_1, m0, m1, va, vb, beta_zero);
#define ACC_DUMP(i) _mm512_store_ps(tile + (i) * NR, c##i##_0), _mm512_store_ps(tile + (i) * NR + 16, c##i##_1);
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* C tile (mr x nr of MR x NR) = alpha * a_panel @ b_sliver + beta * C. */
AVX512_FN static void kernel_f32(int kc, const float *restrict a, const float *restrict b, float *C, int ldc, int mr,
                                 int nr, float alpha, float beta, bool c_trans) {
    FOR_ROWS(ACC_DECL)
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        __m512 av;
#define ROW_FMA(i)                                 \
    av = _mm512_set1_ps(a[i]);                     \
    c##i##_0 = _mm512_fmadd_ps(av, b0, c##i##_0); \
    c##i##_1 = _mm512_fmadd_ps(av, b1, c##i##_1);
        FOR_ROWS(ROW_FMA)
#undef ROW_FMA
        a += MR;
        b += NR;
    }
    if (c_trans) {
        _Alignas(64) float tile[MR * NR];
        FOR_ROWS(ACC_DUMP)
        store_tile_transposed(tile, C, ldc, mr, nr, alpha, beta);
        return;
    }
    __mmask16 m0 = mask_upto(nr), m1 = mask_upto(nr - 16);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    bool beta_zero = beta == 0.0f;
    FOR_ROWS(ACC_STORE)
}

AVX512_FN bool ftc_sgemm_avx512(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                                const float *B, int ldb, float beta, float *C, int ldc, bool c_trans) {
    int kc_max = imin(K, KC);
    int nc_max = imin((N + NR - 1) / NR * NR, NC);
    int mc_max = imin((M + MR - 1) / MR * MR, MC);
    float *apack = pack_buffer(0, sizeof(float) * (size_t)mc_max * kc_max);
    float *bpack = pack_buffer(1, sizeof(float) * (size_t)nc_max * kc_max);
    if (!apack || !bpack) return false;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = imin(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC) {
            int kc = imin(KC, K - pc);
            float beta_here = pc == 0 ? beta : 1.0f;
            pack_b_f32(tb, B, ldb, pc, kc, jc, nc, bpack);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = imin(MC, M - ic);
                pack_a_f32(ta, A, lda, ic, mc, pc, kc, apack);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bs = bpack + (size_t)jr * kc;
                    for (int ir = 0; ir < mc; ir += MR)
                        kernel_f32(kc, apack + (size_t)ir * kc, bs, c_at(C, ldc, c_trans, ic + ir, jc + jr), ldc,
                                   imin(MR, mc - ir), imin(NR, nc - jr), alpha, beta_here, c_trans);
                }
            }
        }
    }
    return true;
}

/* C[M x N] = alpha * A[M x K] Bt[N x K]^T + beta * C for a narrow C (LoRA rank): both operands are read
 * along K, so no packing; blocks of 3 rows x 8 columns keep 24 dot-product accumulators in registers, reduced
 * horizontally at the end. */
AVX512_FN void ftc_sgemm_avx512_small_n(int M, int N, int K, float alpha, const float *A, int lda, const float *Bt,
                                        int ldbt, float beta, float *C, int ldc) {
    enum { RB = 3, JB = 8 };
    for (int j0 = 0; j0 < N; j0 += JB) {
        int jn = imin(JB, N - j0);
        const float *b[JB];
        for (int j = 0; j < JB; j++) b[j] = Bt + (size_t)(j0 + (j < jn ? j : 0)) * ldbt;
        for (int i0 = 0; i0 < M; i0 += RB) {
            int in = imin(RB, M - i0);
            const float *a0 = A + (size_t)i0 * lda;
            const float *a1 = in > 1 ? a0 + lda : a0, *a2 = in > 2 ? a1 + lda : a0;
            __m512 acc[RB][JB];
#pragma GCC unroll 8
            for (int j = 0; j < JB; j++) acc[0][j] = acc[1][j] = acc[2][j] = _mm512_setzero_ps();
            for (int k = 0; k < K; k += 16) {
                __mmask16 m = mask_upto(K - k);
                __m512 v0 = _mm512_maskz_loadu_ps(m, a0 + k), v1 = _mm512_maskz_loadu_ps(m, a1 + k);
                __m512 v2 = _mm512_maskz_loadu_ps(m, a2 + k);
#pragma GCC unroll 8
                for (int j = 0; j < JB; j++) {
                    __m512 bv = _mm512_maskz_loadu_ps(m, b[j] + k);
                    acc[0][j] = _mm512_fmadd_ps(v0, bv, acc[0][j]);
                    acc[1][j] = _mm512_fmadd_ps(v1, bv, acc[1][j]);
                    acc[2][j] = _mm512_fmadd_ps(v2, bv, acc[2][j]);
                }
            }
            for (int r = 0; r < in; r++)
                for (int j = 0; j < jn; j++) {
                    float *c = C + (size_t)(i0 + r) * ldc + j0 + j;
                    float v = alpha * _mm512_reduce_add_ps(acc[r][j]);
                    *c = beta == 0.0f ? v : v + beta * *c;
                }
        }
    }
}

/* ---------------------------------------------------------------- bf16 ---------------------------- */
/* vdpbf16ps multiplies pairs: lane j gets acc += a.lo*b.lo + a.hi*b.hi. So panels hold k in pairs: a 32-bit
 * word per (row, k pair) for A (broadcast), and per (k pair, column) for B. Odd K is padded with zeros. */

static inline uint16_t bf16_at(const void *p, ftc_mm_type t, size_t idx) {
    if (t == FTC_MM_BF16) return ((const uint16_t *)p)[idx];
    uint32_t x;
    memcpy(&x, (const float *)p + idx, 4);
    return ftc_mm_round_bf16(x);
}

/* op(X)(r, k) pair (k, k+1) as a 32-bit word; X is the matrix, `trans` says op(X)(r,k) = X[k][r]. */
static inline uint32_t pair_at(const void *X, ftc_mm_type t, int ld, bool trans, int r, int k, int K) {
    size_t i0 = trans ? (size_t)k * ld + r : (size_t)r * ld + k;
    uint32_t lo = bf16_at(X, t, i0), hi = 0;
    if (k + 1 < K) hi = bf16_at(X, t, trans ? i0 + (size_t)ld : i0 + 1);
    return lo | hi << 16;
}

/* op(A) rows i0..i0+mc, k0..k0+kc (kc may be odd) into MR-row panels of pair words. */
AVX512_FN static void pack_a_bf16(bool ta, const void *A, ftc_mm_type at, int lda, int i0, int mc, int k0, int kc, int K,
                        uint32_t *dst) {
    int kp_n = (kc + 1) / 2;
    for (int p = 0; p < mc; p += MR, dst += (size_t)kp_n * MR) {
        int mr = imin(MR, mc - p);
        for (int r = 0; r < MR; r++) {
            uint32_t *d = dst + r;
            if (r >= mr) {
                for (int kp = 0; kp < kp_n; kp++) d[(size_t)kp * MR] = 0;
                continue;
            }
            int i = i0 + p + r;
            if (at == FTC_MM_F32)
                for (int kp = 0; kp < kp_n; kp++) d[(size_t)kp * MR] = pair_at(A, FTC_MM_F32, lda, ta, i, k0 + 2 * kp, K);
            else
                for (int kp = 0; kp < kp_n; kp++)
                    d[(size_t)kp * MR] = pair_at(A, FTC_MM_BF16, lda, ta, i, k0 + 2 * kp, K);
        }
    }
}

/* op(B) k0..k0+kc, columns j0..j0+nc into NR-column slivers of pair words. */
AVX512_FN static void pack_b_bf16(bool tb, const void *B, ftc_mm_type bt, int ldb, int k0, int kc, int K, int j0, int nc,
                        uint32_t *dst) {
    int kp_n = (kc + 1) / 2;
    for (int q = 0; q < nc; q += NR, dst += (size_t)kp_n * NR) {
        int nr = imin(NR, nc - q);
        for (int c = 0; c < NR; c++) {
            uint32_t *d = dst + c;
            if (c >= nr) {
                for (int kp = 0; kp < kp_n; kp++) d[(size_t)kp * NR] = 0;
                continue;
            }
            int j = j0 + q + c; /* op(B)(k,j) = tb ? B[j][k] : B[k][j]: pair_at's "row" is j, transposed iff !tb */
            if (bt == FTC_MM_F32)
                for (int kp = 0; kp < kp_n; kp++) d[(size_t)kp * NR] = pair_at(B, FTC_MM_F32, ldb, !tb, j, k0 + 2 * kp, K);
            else
                for (int kp = 0; kp < kp_n; kp++)
                    d[(size_t)kp * NR] = pair_at(B, FTC_MM_BF16, ldb, !tb, j, k0 + 2 * kp, K);
        }
    }
}

BF16_FN static inline void store_row_bf16(float *c, __m512 acc0, __m512 acc1, __mmask16 m0, __mmask16 m1,
                                          __m512 va, __m512 vb, bool beta_zero) {
    __m512 v0 = _mm512_mul_ps(va, acc0), v1 = _mm512_mul_ps(va, acc1);
    if (!beta_zero) {
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), v1);
    }
    _mm512_mask_storeu_ps(c, m0, v0);
    _mm512_mask_storeu_ps(c + 16, m1, v1);
}

#define ACC_STORE_BF16(i) \
    if (i < mr) store_row_bf16(C + (size_t)(i) * ldc, c##i##_0, c##i##_1, m0, m1, va, vb, beta_zero);

BF16_FN static void kernel_bf16(int kp_n, const uint32_t *restrict a, const uint32_t *restrict b, float *C, int ldc,
                                int mr, int nr, float alpha, float beta, bool c_trans) {
    FOR_ROWS(ACC_DECL)
    for (int kp = 0; kp < kp_n; kp++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b);
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        __m512bh av;
#define ROW_DOT(i)                                    \
    av = (__m512bh)_mm512_set1_epi32((int)a[i]);      \
    c##i##_0 = _mm512_dpbf16_ps(c##i##_0, av, b0); \
    c##i##_1 = _mm512_dpbf16_ps(c##i##_1, av, b1);
        FOR_ROWS(ROW_DOT)
#undef ROW_DOT
        a += MR;
        b += NR;
    }
    if (c_trans) {
        _Alignas(64) float tile[MR * NR];
        FOR_ROWS(ACC_DUMP)
        store_tile_transposed(tile, C, ldc, mr, nr, alpha, beta);
        return;
    }
    __mmask16 m0 = mask_upto(nr), m1 = mask_upto(nr - 16);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    bool beta_zero = beta == 0.0f;
    FOR_ROWS(ACC_STORE_BF16)
}

BF16_FN bool ftc_gemm_bf16_avx512(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, ftc_mm_type at,
                                  int lda, const void *B, ftc_mm_type bt, int ldb, float beta, float *C, int ldc,
                                  bool c_trans) {
    int kp_max = (imin(K, KC_BF16) + 1) / 2;
    int nc_max = imin((N + NR - 1) / NR * NR, NC);
    int mc_max = imin((M + MR - 1) / MR * MR, MC);
    uint32_t *apack = pack_buffer(0, sizeof(uint32_t) * (size_t)mc_max * kp_max);
    uint32_t *bpack = pack_buffer(1, sizeof(uint32_t) * (size_t)nc_max * kp_max);
    if (!apack || !bpack) return false;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = imin(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC_BF16) {
            int kc = imin(KC_BF16, K - pc), kp_n = (kc + 1) / 2;
            float beta_here = pc == 0 ? beta : 1.0f;
            pack_b_bf16(tb, B, bt, ldb, pc, kc, K, jc, nc, bpack);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = imin(MC, M - ic);
                pack_a_bf16(ta, A, at, lda, ic, mc, pc, kc, K, apack);
                for (int jr = 0; jr < nc; jr += NR) {
                    const uint32_t *bs = bpack + (size_t)jr * kp_n;
                    for (int ir = 0; ir < mc; ir += MR)
                        kernel_bf16(kp_n, apack + (size_t)ir * kp_n, bs, c_at(C, ldc, c_trans, ic + ir, jc + jr),
                                    ldc, imin(MR, mc - ir), imin(NR, nc - jr), alpha, beta_here, c_trans);
                }
            }
        }
    }
    return true;
}

/* f32 -> bf16 with the scalar rounding (nearest even, NaN kept quiet), 16 at a time with AVX-512F only. */
AVX512_FN void ftc_f32_to_bf16_avx512(const float *in, uint16_t *out, size_t n) {
    size_t i = 0;
    const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m512i x = _mm512_loadu_si512((const void *)(in + i));
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
        __m512i rounded = _mm512_add_epi32(x, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(x, 16), lsb)));
        __m512i h = _mm512_srli_epi32(rounded, 16);
        h = _mm512_mask_or_epi32(h, nan, _mm512_srli_epi32(x, 16), quiet);
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(h));
    }
    for (; i < n; i++) {
        uint32_t x;
        memcpy(&x, in + i, 4);
        out[i] = ftc_mm_round_bf16(x);
    }
}

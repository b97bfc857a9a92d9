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
#include "transpose16_avx512.h"
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
/* A block, B block, whole packed B (see b_key), whole packed A for ftc_gemm_bf16_avx512_abuf's callers (below),
 * whole packed op(A) (see a_key) */
#define TLS_BUFS 5
static _Thread_local void *tls_buf[TLS_BUFS];
static _Thread_local size_t tls_cap[TLS_BUFS];
static _Thread_local uint64_t tls_b_key; /* key of the whole op(B) complete in tls_buf[2]; 0: none */
static _Thread_local uint64_t tls_a_key; /* key of the whole op(A) complete in tls_buf[4]; 0: none */

/* Largest whole packed op(B) kept per thread: a MiniLM or GPT-2 block weight fits, an LM head does not (its
 * row chunks are few and long, so packing it per chunk costs little). Largest whole packed op(A): a 256-row
 * prompt chunk of llama-1b against its 8192-wide MLP down projection (264 x 4096 pair words, 4.1 MB) fits; the LM
 * head's backward (dlogits, K = the vocabulary: 8.4 MB for llama-1b's 128 x 32000) does not: cached, it raised a
 * llama-1b LoRA step's peak RSS by 22 MB, and its A packing is a small part of that product. */
#define B_CACHE_BYTES ((size_t)16 << 20)
#define A_CACHE_BYTES ((size_t)6 << 20)

static void *pack_buffer(int which, size_t bytes) {
    if (which == 2 && bytes > tls_cap[2]) tls_b_key = 0;
    if (which == 4 && bytes > tls_cap[4]) tls_a_key = 0;
    if (bytes > tls_cap[which]) {
        free(tls_buf[which]);
        size_t rounded = (bytes + 4095) & ~(size_t)4095;
        tls_buf[which] = aligned_alloc(64, rounded);
        tls_cap[which] = tls_buf[which] ? rounded : 0;
    }
    return tls_buf[which];
}

void ftc_mm_release_own(void) {
    for (int i = 0; i < TLS_BUFS; i++) free(tls_buf[i]), tls_buf[i] = NULL, tls_cap[i] = 0;
    tls_b_key = 0, tls_a_key = 0;
}

/* The calling thread's buffers; the pool's workers free theirs when they stop (pool.c). */
void ftc_matmul_thread_release(void) { ftc_mm_release_own(); }

/* Where the packed blocks of op(B) go. Without a key: one block buffer, packed per (column block, K slice).
 * With one: the whole packed op(B) in the per-thread cache (block (jc, pc) at jc*kdepth + pc_units*nc_round),
 * packed on the first call with that key and only read by the next ones. */
typedef struct {
    void *base;   /* block buffer, or the whole cache */
    bool whole;   /* base holds every block */
    bool ready;   /* ... and they are already packed (same key as the last complete call) */
} b_store;

/* The store of one operand: *tls_key names what the thread's whole buffer tls_buf[whole_slot] holds (cap: the
 * largest whole copy kept), tls_buf[block_slot] the one block packed at a time otherwise */
static b_store store_open(uint64_t *tls_key, int whole_slot, int block_slot, size_t cap, uint64_t key,
                          size_t whole_bytes, size_t block_bytes) {
    b_store st = {NULL, false, false};
    if (key && whole_bytes <= cap) {
        if (*tls_key == key) return (b_store){tls_buf[whole_slot], true, true};
        *tls_key = 0; /* being overwritten */
        if ((st.base = pack_buffer(whole_slot, whole_bytes)) != NULL) {
            st.whole = true;
            return st;
        }
    }
    st.base = pack_buffer(block_slot, block_bytes);
    return st;
}

static void store_close(const b_store *st, uint64_t *tls_key, uint64_t key) {
    if (st->whole && !st->ready) *tls_key = key;
}

static b_store b_store_open(uint64_t key, size_t whole_bytes, size_t block_bytes) {
    return store_open(&tls_b_key, 2, 1, B_CACHE_BYTES, key, whole_bytes, block_bytes);
}
static void b_store_close(const b_store *st, uint64_t key) { store_close(st, &tls_b_key, key); }

/* The same for op(A), keyed by a_key (column chunks of one job all read the whole op(A), issue 24: a 256-row
 * prompt's GEMMs split into 8 column chunks, and each packed the same activations again). Block (pc, ic) of the
 * whole packed op(A) sits at pc_units * m_round + ic * kc_units: a K slice's MR-row panels for all rows, in order,
 * the layout one block has. */
static b_store a_store_open(uint64_t key, size_t whole_bytes, size_t block_bytes) {
    return store_open(&tls_a_key, 4, 0, A_CACHE_BYTES, key, whole_bytes, block_bytes);
}
static void a_store_close(const b_store *st, uint64_t key) { store_close(st, &tls_a_key, key); }

/* ---------------------------------------------------------------- fp32 ---------------------------- */

static inline __mmask16 mask_upto(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }


/* ftc_transpose16_ps's three shuffle stages on 16 rows held as named values (the array version, inlined into a
 * loop with a run-time row count, kept its rows on the stack), each column c stored at d + c * stride under mask m
 * if c < words. */
#define TR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define TR_PARAM(i) __m512 r##i,
AVX512_FN static inline __attribute__((always_inline)) void transpose16_store(TR_ROWS(TR_PARAM) uint32_t *d,
                                                                            size_t stride, int words, __mmask16 m) {
    __m512 t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15;
#define S1(a, b) t##a = _mm512_unpacklo_ps(r##a, r##b), t##b = _mm512_unpackhi_ps(r##a, r##b);
    S1(0, 1) S1(2, 3) S1(4, 5) S1(6, 7) S1(8, 9) S1(10, 11) S1(12, 13) S1(14, 15)
#undef S1
#define LO(x, y) _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)))
#define HI(x, y) _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)))
#define S2(a, b, c, e) r##a = LO(t##a, t##c), r##b = HI(t##a, t##c), r##c = LO(t##b, t##e), r##e = HI(t##b, t##e);
    S2(0, 1, 2, 3) S2(4, 5, 6, 7) S2(8, 9, 10, 11) S2(12, 13, 14, 15)
#undef S2
#undef LO
#undef HI
#define ST(c, v) _mm512_mask_storeu_ps((float *)(d + (size_t)(c) * stride), (c) < words ? m : 0, v);
#define S3(j, a, b, c)                                                                                         \
    {                                                                                                          \
        __m512 u0 = _mm512_shuffle_f32x4(r##j, r##a, 0x88), u1 = _mm512_shuffle_f32x4(r##j, r##a, 0xDD);       \
        __m512 u2 = _mm512_shuffle_f32x4(r##b, r##c, 0x88), u3 = _mm512_shuffle_f32x4(r##b, r##c, 0xDD);       \
        ST(j, _mm512_shuffle_f32x4(u0, u2, 0x88))                                                              \
        ST(8 + (j), _mm512_shuffle_f32x4(u0, u2, 0xDD))                                                        \
        ST(4 + (j), _mm512_shuffle_f32x4(u1, u3, 0x88))                                                        \
        ST(12 + (j), _mm512_shuffle_f32x4(u1, u3, 0xDD))                                                       \
    }
    S3(0, 4, 8, 12) S3(1, 5, 9, 13) S3(2, 6, 10, 14) S3(3, 7, 11, 15)
#undef S3
#undef ST
}
#define TR_ARG(i) r##i,

/* rows of X (row stride ld, `rows` valid of 16) at columns k0..k0+kn (kn <= 16), transposed: for each c < kn,
 * the 16 row values of column c are stored (under `store_mask`) at dst + c * dst_stride. Missing rows read 0. */
AVX512_FN static inline __attribute__((always_inline)) void transpose_rows(const float *X, int ld, int rows, int kn,
                                                                           float *dst, int dst_stride,
                                                                           __mmask16 store_mask) {
    __mmask16 m = mask_upto(kn);
#define TR_LOAD(i) __m512 r##i = (i) < rows ? _mm512_maskz_loadu_ps(m, X + (size_t)(i) * ld) : _mm512_setzero_ps();
    TR_ROWS(TR_LOAD)
#undef TR_LOAD
    transpose16_store(TR_ROWS(TR_ARG)(uint32_t *)dst, (size_t)dst_stride, kn, store_mask);
}

/* op(A)[i0.., k0..] (mc x kc) into MR-row panels: panel p holds, for each k, MR consecutive rows. */
AVX512_FN static void pack_a_f32(bool ta, const float *A, int lda, int i0, int mc, int k0, int kc, float *dst) {
    if (ta) { /* op(A)(i,k) = A[k][i]: MR contiguous floats per k and panel. Row k is read once along all
               * panels, and the next row (a page away) is prefetched: a scan per panel strided over pages. */
        for (int k = 0; k < kc; k++) {
            const float *row = A + (size_t)(k0 + k) * lda + i0;
            if (k + 1 < kc)
                for (int off = 0; off < mc; off += 16) _mm_prefetch((const char *)(row + lda + off), _MM_HINT_T0);
            float *d = dst + (size_t)k * MR;
            for (int p = 0; p < mc; p += MR, d += (size_t)kc * MR)
                _mm512_mask_storeu_ps(d, mask_upto(MR), _mm512_maskz_loadu_ps(mask_upto(mc - p), row + p));
        }
        return;
    }
    for (int p = 0; p < mc; p += MR, dst += (size_t)kc * MR) { /* op(A)(i,k) = A[i][k]: MR rows read along k, */
        const float *src = A + (size_t)(i0 + p) * lda + k0;       /* transposed 16 k at a time */
        for (int k = 0; k < kc; k += 16)
            transpose_rows(src + k, lda, imin(MR, mc - p), imin(16, kc - k), dst + (size_t)k * MR, MR, mask_upto(MR));
    }
}

/* Address of tile element (i, j): C[i][j], or C[j][i] when the dispatcher computes C^T. */
static inline float *c_at(float *C, int ldc, bool c_trans, int i, int j) {
    return c_trans ? C + (size_t)j * ldc + i : C + (size_t)i * ldc + j;
}


/* op(B)[k0.., j0..] (kc x nc) into NR-column slivers: sliver q holds, for each k, NR consecutive columns. */
AVX512_FN static void pack_b_f32(bool tb, const float *B, int ldb, int k0, int kc, int j0, int nc, float *dst) {
    if (!tb) { /* op(B)(k,j) = B[k][j]: NR contiguous floats per k and sliver; rows read along nc, as in pack_a_f32 */
        for (int k = 0; k < kc; k++) {
            const float *row = B + (size_t)(k0 + k) * ldb + j0;
            float *d = dst + (size_t)k * NR;
            for (int q = 0; q < nc; q += NR, d += (size_t)kc * NR) {
                int nr = imin(NR, nc - q);
                if (k + 1 < kc) {
                    _mm_prefetch((const char *)(row + ldb + q), _MM_HINT_T0);
                    _mm_prefetch((const char *)(row + ldb + q + 16), _MM_HINT_T0);
                }
                _mm512_store_ps(d, _mm512_maskz_loadu_ps(mask_upto(nr), row + q));
                _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(mask_upto(nr - 16), row + q + 16));
            }
        }
        return;
    }
    for (int q = 0; q < nc; q += NR, dst += (size_t)kc * NR) { /* op(B)(k,j) = B[j][k]: rows of B read along k, */
        const float *src = B + (size_t)(j0 + q) * ldb + k0;       /* transposed 16 x 16 */
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < kc; k += 16)
                transpose_rows(src + (size_t)h * 16 * ldb + k, ldb, imin(NR, nc - q) - 16 * h, imin(16, kc - k),
                               dst + (size_t)k * NR + 16 * h, NR, 0xFFFF);
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

/* The tile of C is needed only after the k loop: start fetching it before. Training accumulates into C
 * (beta = 1), and the first load of a cold tile stalled the kernel (GPT-2 bf16 step 1.80 -> 1.53 s). */
static inline void prefetch_c_tile(const float *C, int ldc, int mr) {
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(C + (size_t)i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + (size_t)i * ldc + 16), _MM_HINT_T0);
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
    if (!c_trans) prefetch_c_tile(C, ldc, mr);
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
                                const float *B, int ldb, float beta, float *C, int ldc, bool c_trans, uint64_t b_key,
                                uint64_t a_key) {
    int kc_max = imin(K, KC);
    int nc_max = imin((N + NR - 1) / NR * NR, NC);
    int m_round = (M + MR - 1) / MR * MR, mc_max = imin(m_round, MC);
    b_store ast = a_store_open(a_key, sizeof(float) * (size_t)K * m_round, sizeof(float) * (size_t)mc_max * kc_max);
    b_store bst = b_store_open(b_key, sizeof(float) * (size_t)K * ((N + NR - 1) / NR * NR),
                               sizeof(float) * (size_t)nc_max * kc_max);
    if (!ast.base || !bst.base) return false;
    /* A whole op(A) is packed on the first column block and only read after it (several blocks: N > NC). */
    bool a_packed = ast.ready;
    for (int jc = 0; jc < N; jc += NC, a_packed = a_packed || ast.whole) {
        int nc = imin(NC, N - jc), nc_round = (nc + NR - 1) / NR * NR;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = imin(KC, K - pc);
            float beta_here = pc == 0 ? beta : 1.0f;
            float *bpack = bst.whole ? (float *)bst.base + (size_t)jc * K + (size_t)pc * nc_round : bst.base;
            if (!bst.ready) pack_b_f32(tb, B, ldb, pc, kc, jc, nc, bpack);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = imin(MC, M - ic);
                float *apack = ast.whole ? (float *)ast.base + (size_t)pc * m_round + (size_t)ic * kc : ast.base;
                if (!a_packed) pack_a_f32(ta, A, lda, ic, mc, pc, kc, apack);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bs = bpack + (size_t)jr * kc;
                    for (int ir = 0; ir < mc; ir += MR)
                        kernel_f32(kc, apack + (size_t)ir * kc, bs, c_at(C, ldc, c_trans, ic + ir, jc + jr), ldc,
                                   imin(MR, mc - ir), imin(NR, nc - jr), alpha, beta_here, c_trans);
                }
            }
        }
    }
    a_store_close(&ast, a_key);
    b_store_close(&bst, b_key);
    return true;
}

/* ---------------------------------------------------------------- bf16 ---------------------------- */
/* vdpbf16ps multiplies pairs: lane j gets acc += a.lo*b.lo + a.hi*b.hi. So panels hold k in pairs: a 32-bit
 * word per (row, k pair) for A (broadcast), and per (k pair, column) for B. Odd K is padded with zeros. */

/* bf16 bits of 16 f32 lanes, in the low half of each 32-bit lane: the scalar rounding, vectorised. */
AVX512_FN static inline __m512i round_bf16_16(__m512i x) {
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i h = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
    return _mm512_mask_or_epi32(h, nan, _mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40));
}

/* Up to 16 consecutive elements (mask m) of a row as bf16 bits in the low half of 32-bit lanes; NULL: zeros. */
AVX512_FN static inline __m512i load_bf16_16(const void *p, ftc_mm_type t, __mmask16 m) {
    if (!p) return _mm512_setzero_si512();
    if (t == FTC_MM_BF16) return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return round_bf16_16(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, p)));
}

/* C[M x N] = alpha * A[M x K] Bt[N x K]^T + beta * C for a narrow C (LoRA rank): both operands are read
 * along K, so no packing; blocks of 3 rows x 8 columns keep 24 dot-product accumulators in registers, reduced
 * horizontally at the end. */
/* Operand modes: DOT_F32 as stored, DOT_ROUND f32 rounded to bf16 (the bf16 product's rounding), DOT_BF16 stored
 * bf16. bf16 values are exact in f32 and so are their products: the f32 FMA gives the bf16 product's result. */
enum { DOT_F32, DOT_ROUND, DOT_BF16 };

AVX512_FN static inline __m512 load_dot(const void *base, int mode, size_t idx, __mmask16 m) {
    if (mode == DOT_F32) return _mm512_maskz_loadu_ps(m, (const float *)base + idx);
    __m512i h = mode == DOT_BF16 ? load_bf16_16((const uint16_t *)base + idx, FTC_MM_BF16, m)
                                 : load_bf16_16((const float *)base + idx, FTC_MM_F32, m);
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

__attribute__((always_inline)) AVX512_FN static inline void small_n(int M, int N, int K, float alpha, const void *A,
                                                                     int amode, int lda, const void *Bt, int bmode,
                                                                     int ldbt, float beta, float *C, int ldc) {
    enum { RB = 3, JB = 8 };
    for (int j0 = 0; j0 < N; j0 += JB) {
        int jn = imin(JB, N - j0);
        size_t b[JB]; /* element offsets of the rows of Bt */
        for (int j = 0; j < JB; j++) b[j] = (size_t)(j0 + (j < jn ? j : 0)) * ldbt;
        for (int i0 = 0; i0 < M; i0 += RB) {
            int in = imin(RB, M - i0);
            size_t a0 = (size_t)i0 * lda, a1 = in > 1 ? a0 + (size_t)lda : a0, a2 = in > 2 ? a1 + (size_t)lda : a0;
            __m512 acc[RB][JB];
#pragma GCC unroll 8
            for (int j = 0; j < JB; j++) acc[0][j] = acc[1][j] = acc[2][j] = _mm512_setzero_ps();
            for (int k = 0; k < K; k += 16) {
                __mmask16 m = mask_upto(K - k);
                __m512 v0 = load_dot(A, amode, a0 + k, m), v1 = load_dot(A, amode, a1 + k, m);
                __m512 v2 = load_dot(A, amode, a2 + k, m);
#pragma GCC unroll 8
                for (int j = 0; j < JB; j++) {
                    __m512 bv = load_dot(Bt, bmode, b[j] + k, m);
                    acc[0][j] = _mm512_fmadd_ps(v0, bv, acc[0][j]);
                    acc[1][j] = _mm512_fmadd_ps(v1, bv, acc[1][j]);
                    acc[2][j] = _mm512_fmadd_ps(v2, bv, acc[2][j]);
                }
            }
            /* reduce with constant indices only, so that acc stays in registers through the k loop */
            float sums[RB][JB];
#pragma GCC unroll 8
            for (int j = 0; j < JB; j++) {
                sums[0][j] = _mm512_reduce_add_ps(acc[0][j]);
                sums[1][j] = _mm512_reduce_add_ps(acc[1][j]);
                sums[2][j] = _mm512_reduce_add_ps(acc[2][j]);
            }
            for (int r = 0; r < in; r++)
                for (int j = 0; j < jn; j++) {
                    float *c = C + (size_t)(i0 + r) * ldc + j0 + j;
                    float v = alpha * sums[r][j];
                    *c = beta == 0.0f ? v : v + beta * *c;
                }
        }
    }
}

AVX512_FN void ftc_sgemm_avx512_small_n(int M, int N, int K, float alpha, const float *A, int lda, const float *Bt,
                                        int ldbt, float beta, float *C, int ldc) {
    small_n(M, N, K, alpha, A, DOT_F32, lda, Bt, DOT_F32, ldbt, beta, C, ldc);
}

AVX512_FN void ftc_gemm_bf16_avx512_small_n(int M, int N, int K, float alpha, const void *A, ftc_mm_type at, int lda,
                                            const void *Bt, ftc_mm_type bt, int ldbt, float beta, float *C, int ldc) {
    if (at == FTC_MM_BF16 && bt == FTC_MM_BF16)
        small_n(M, N, K, alpha, A, DOT_BF16, lda, Bt, DOT_BF16, ldbt, beta, C, ldc);
    else if (at == FTC_MM_BF16)
        small_n(M, N, K, alpha, A, DOT_BF16, lda, Bt, DOT_ROUND, ldbt, beta, C, ldc);
    else if (bt == FTC_MM_BF16)
        small_n(M, N, K, alpha, A, DOT_ROUND, lda, Bt, DOT_BF16, ldbt, beta, C, ldc);
    else
        small_n(M, N, K, alpha, A, DOT_ROUND, lda, Bt, DOT_ROUND, ldbt, beta, C, ldc);
}

static inline const void *elem_ptr(const void *X, ftc_mm_type t, size_t idx) {
    return (const char *)X + idx * (t == FTC_MM_BF16 ? 2 : 4);
}

/* 32 consecutive elements (the first `elems` of them; the rest read as 0) as 16 pair words, k pair (2q, 2q+1)
 * in word q. f32 is rounded by vcvtne2ps2bf16 (nearest even, NaN quiet; unlike the scalar rounding it
 * flushes denormal inputs to zero, whose products would be below f32's range anyway). */
BF16_FN static inline __m512 load_pairs16(const void *p, ftc_mm_type t, int elems) {
    if (t == FTC_MM_BF16) {
        __mmask32 m = elems >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << elems) - 1);
        return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, p));
    }
    const float *f = p;
    __m512 lo = _mm512_maskz_loadu_ps(mask_upto(elems), f), hi = _mm512_maskz_loadu_ps(mask_upto(elems - 16), f + 16);
    return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}


/* Rows row0..row0+rows (rows <= 16; rows past it read as 0) of X, where a k pair is adjacent in memory
 * (X[r][k], X[r][k+1]), at k0..k0+kc: pair word (row i, pair kp) goes to d[kp * stride + i], under store_mask.
 * 16 rows x 16 pair words are transposed in registers, like the fp32 packing: a scalar store per word (the
 * earlier version) cost about as much as the micro-kernel's work on short K slices. */
BF16_FN static void pack_pairs_rows(const void *X, ftc_mm_type t, int ld, int row0, int rows, int k0, int kc,
                                    uint32_t *d, int stride, __mmask16 store_mask) {
    int kp_n = (kc + 1) / 2;
    for (int kp = 0; kp < kp_n; kp += 16) {
        int elems = imin(32, kc - 2 * kp);
#define TR_LOAD(i)                                                                                             \
    __m512 r##i = (i) < rows ? load_pairs16(elem_ptr(X, t, (size_t)(row0 + (i)) * ld + k0 + 2 * kp), t, elems) \
                             : _mm512_setzero_ps();
        TR_ROWS(TR_LOAD)
#undef TR_LOAD
        transpose16_store(TR_ROWS(TR_ARG) d + (size_t)kp * stride, (size_t)stride, kp_n - kp, store_mask);
    }
}

/* Pair words for 16 consecutive columns (mask m) from two consecutive rows k and k+1 (row1 NULL past the
 * end): word j = row0[j] | row1[j] << 16. One conversion of both rows, then one word shuffle. */
BF16_FN static inline __m512i interleave_rows_bf16(const void *row0, const void *row1, ftc_mm_type t, __mmask16 m) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512i both; /* words 0..15: row0, 16..31: row1 */
    if (t == FTC_MM_BF16) {
        __m256i a = _mm256_maskz_loadu_epi16(m, row0), b = row1 ? _mm256_maskz_loadu_epi16(m, row1) : _mm256_setzero_si256();
        both = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    } else {
        __m512 a = _mm512_maskz_loadu_ps(m, row0), b = row1 ? _mm512_maskz_loadu_ps(m, row1) : _mm512_setzero_ps();
        both = (__m512i)_mm512_cvtne2ps_pbh(b, a);
    }
    return _mm512_permutexvar_epi16(idx, both);
}

/* Row k of X from column col, or NULL past the last row K-1 (a missing second row of a pair reads as zeros). */
static inline const char *row_or_null(const void *X, ftc_mm_type t, int ld, int k, int K, int col) {
    return k < K ? elem_ptr(X, t, (size_t)k * ld + col) : NULL;
}

/* Bytes [from, to) of the next pair of rows (NULL: none), which sit a page or more away from the pair being
 * packed, beyond what the hardware prefetcher follows. */
static inline void prefetch_rows(const char *n0, const char *n1, size_t from, size_t to) {
    for (size_t off = from; n0 && off < to; off += 64) {
        _mm_prefetch(n0 + off, _MM_HINT_T0);
        if (n1) _mm_prefetch(n1 + off, _MM_HINT_T0);
    }
}

/* op(A) rows i0..i0+mc, k0..k0+kc (kc may be odd) into MR-row panels of pair words. */
BF16_FN static void pack_a_bf16(bool ta, const void *A, ftc_mm_type at, int lda, int i0, int mc, int k0, int kc,
                                int K, uint32_t *dst) {
    int kp_n = (kc + 1) / 2;
    if (ta) { /* op(A)(i,k) = A[k][i]: rows k and k+1 of A interleaved, MR columns per panel. The pair of rows is
               * read once along all panels (a scan per panel would stride over 2 rows per k, page after page). */
        size_t es = at == FTC_MM_BF16 ? 2 : 4;
        for (int kp = 0; kp < kp_n; kp++) {
            int k = k0 + 2 * kp;
            const char *r0 = row_or_null(A, at, lda, k, K, i0), *r1 = row_or_null(A, at, lda, k + 1, K, i0);
            prefetch_rows(row_or_null(A, at, lda, k + 2, K, i0), row_or_null(A, at, lda, k + 3, K, i0), 0,
                          (size_t)mc * es);
            uint32_t *d = dst + (size_t)kp * MR;
            for (int p = 0; p < mc; p += MR, d += (size_t)kp_n * MR) {
                __m512i w = interleave_rows_bf16(r0 + p * es, r1 ? r1 + p * es : NULL, at, mask_upto(mc - p));
                _mm512_mask_storeu_epi32(d, mask_upto(MR), w);
            }
        }
        return;
    }
    for (int p = 0; p < mc; p += MR, dst += (size_t)kp_n * MR) /* op(A)(i,k) = A[i][k]: the pair is adjacent */
        pack_pairs_rows(A, at, lda, i0 + p, imin(MR, mc - p), k0, kc, dst, MR, mask_upto(MR));
}

/* A whole NR-column sliver of op(B) = B^T, B bf16 stored N x K (the weights of inference, issue 24): rows j0..j0+NR
 * of B at k0..k0+kc, as pack_pairs_rows lays them out (the same words), 16 rows x 16 pair words at a time with no
 * row count or masks to test: 0.6 us a 32 x 512 sliver with the source in L1 (pack_pairs_rows before
 * transpose16_store: 2.0 us, as much as reading the sliver from memory). */
BF16_FN static void pack_sliver_bf16_rows(const void *B, int ldb, int j0, int k0, int kc, uint32_t *dst) {
    int kp_n = (kc + 1) / 2, kp_full = kc / 32 * 16; /* pairs in whole 32-value (64-byte) steps */
    for (int h = 0; h < 2; h++) {
        const uint16_t *src = (const uint16_t *)B + (size_t)(j0 + 16 * h) * ldb + k0;
        uint32_t *d = dst + 16 * h;
        for (int kp = 0; kp < kp_full; kp += 16) {
#define TR_LOAD(i) __m512 r##i = _mm512_castsi512_ps(_mm512_loadu_si512(src + (size_t)(i) * ldb + 2 * kp));
            TR_ROWS(TR_LOAD)
#undef TR_LOAD
            transpose16_store(TR_ROWS(TR_ARG) d + (size_t)kp * NR, NR, 16, 0xFFFF);
        }
        if (kp_full < kp_n)
            pack_pairs_rows(B, FTC_MM_BF16, ldb, j0 + 16 * h, 16, k0 + 2 * kp_full, kc - 2 * kp_full,
                            d + (size_t)kp_full * NR, NR, 0xFFFF);
    }
}

/* op(B) k0..k0+kc, columns j0..j0+nc into NR-column slivers of pair words. */
BF16_FN static void pack_b_bf16(bool tb, const void *B, ftc_mm_type bt, int ldb, int k0, int kc, int K, int j0, int nc,
                                uint32_t *dst) {
    int kp_n = (kc + 1) / 2;
    if (!tb) { /* op(B)(k,j) = B[k][j]: rows k and k+1 interleaved, NR columns per sliver; rows read along nc */
        size_t es = bt == FTC_MM_BF16 ? 2 : 4;
        for (int kp = 0; kp < kp_n; kp++) {
            int k = k0 + 2 * kp;
            const char *r0 = row_or_null(B, bt, ldb, k, K, j0), *r1 = row_or_null(B, bt, ldb, k + 1, K, j0);
            const char *n0 = row_or_null(B, bt, ldb, k + 2, K, j0), *n1 = row_or_null(B, bt, ldb, k + 3, K, j0);
            uint32_t *d = dst + (size_t)kp * NR;
            for (int q = 0; q < nc; q += NR, d += (size_t)kp_n * NR) {
                int nr = imin(NR, nc - q);
                prefetch_rows(n0, n1, q * es, (q + nr) * es);
                __m512i w0 = interleave_rows_bf16(r0 + q * es, r1 ? r1 + q * es : NULL, bt, mask_upto(nr));
                __m512i w1 = nr > 16 ? interleave_rows_bf16(r0 + (q + 16) * es, r1 ? r1 + (q + 16) * es : NULL, bt,
                                                             mask_upto(nr - 16))
                                     : _mm512_setzero_si512();
                _mm512_store_si512((void *)d, w0);
                _mm512_store_si512((void *)(d + 16), w1);
            }
        }
        return;
    }
    for (int q = 0; q < nc; q += NR, dst += (size_t)kp_n * NR) { /* op(B)(k,j) = B[j][k]: the pair is adjacent */
        if (bt == FTC_MM_BF16 && nc - q >= NR) {
            pack_sliver_bf16_rows(B, ldb, j0 + q, k0, kc, dst);
            continue;
        }
        for (int h = 0; h < 2; h++)
            pack_pairs_rows(B, bt, ldb, j0 + q + 16 * h, imin(16, nc - q - 16 * h), k0, kc, dst + 16 * h, NR, 0xFFFF);
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

/* The tile's body for panels of up to `rows` valid rows (a constant where inlined): the dot products of rows
 * past it are skipped, their accumulators stay 0 and are never stored. Each element of C gets the same
 * vdpbf16ps sequence whichever variant runs, so the bits do not depend on it. */
BF16_FN static inline __attribute__((always_inline)) void kernel_bf16_rows(int kp_n, const uint32_t *restrict a,
                                                                           const uint32_t *restrict b, float *C,
                                                                           int ldc, int mr, int nr, float alpha,
                                                                           float beta, bool c_trans, const int rows) {
    FOR_ROWS(ACC_DECL)
    if (!c_trans) prefetch_c_tile(C, ldc, mr);
    for (int kp = 0; kp < kp_n; kp++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b);
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        __m512bh av;
#define ROW_DOT(i)                                     \
    if (i < rows) {                                    \
        av = (__m512bh)_mm512_set1_epi32((int)a[i]);   \
        c##i##_0 = _mm512_dpbf16_ps(c##i##_0, av, b0); \
        c##i##_1 = _mm512_dpbf16_ps(c##i##_1, av, b1); \
    }
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

/* A 256-row prompt chunk (issue 24) ends in a 4-row panel (256 = 21 x 12 + 4): the full tile spent a whole
 * panel's dot products on it, 3% of the chunk's GEMM time. */
BF16_FN static void kernel_bf16(int kp_n, const uint32_t *restrict a, const uint32_t *restrict b, float *C, int ldc,
                                int mr, int nr, float alpha, float beta, bool c_trans) {
    if (mr <= 4) kernel_bf16_rows(kp_n, a, b, C, ldc, mr, nr, alpha, beta, c_trans, 4);
    else if (mr <= 8) kernel_bf16_rows(kp_n, a, b, C, ldc, mr, nr, alpha, beta, c_trans, 8);
    else kernel_bf16_rows(kp_n, a, b, C, ldc, mr, nr, alpha, beta, c_trans, MR);
}

BF16_FN bool ftc_gemm_bf16_avx512(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, ftc_mm_type at,
                                  int lda, const void *B, ftc_mm_type bt, int ldb, float beta, float *C, int ldc,
                                  bool c_trans, uint64_t b_key, uint64_t a_key) {
    int kp_max = (imin(K, KC_BF16) + 1) / 2, kp_all = (K + 1) / 2;
    int nc_max = imin((N + NR - 1) / NR * NR, NC);
    int m_round = (M + MR - 1) / MR * MR, mc_max = imin(m_round, MC);
    b_store ast = a_store_open(a_key, sizeof(uint32_t) * (size_t)kp_all * m_round,
                               sizeof(uint32_t) * (size_t)mc_max * kp_max);
    b_store bst = b_store_open(b_key, sizeof(uint32_t) * (size_t)kp_all * ((N + NR - 1) / NR * NR),
                               sizeof(uint32_t) * (size_t)nc_max * kp_max);
    if (!ast.base || !bst.base) return false;
    bool a_packed = ast.ready; /* as in ftc_sgemm_avx512 */
    for (int jc = 0; jc < N; jc += NC, a_packed = a_packed || ast.whole) {
        int nc = imin(NC, N - jc), nc_round = (nc + NR - 1) / NR * NR;
        for (int pc = 0; pc < K; pc += KC_BF16) {
            int kc = imin(KC_BF16, K - pc), kp_n = (kc + 1) / 2;
            float beta_here = pc == 0 ? beta : 1.0f;
            /* K slices are even (KC_BF16), so slice pc starts at pair pc/2 */
            uint32_t *bpack = bst.whole ? (uint32_t *)bst.base + (size_t)jc * kp_all + (size_t)(pc / 2) * nc_round
                                        : bst.base;
            if (!bst.ready) pack_b_bf16(tb, B, bt, ldb, pc, kc, K, jc, nc, bpack);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = imin(MC, M - ic);
                uint32_t *apack = ast.whole ? (uint32_t *)ast.base + (size_t)(pc / 2) * m_round + (size_t)ic * kp_n
                                            : ast.base;
                if (!a_packed) pack_a_bf16(ta, A, at, lda, ic, mc, pc, kc, K, apack);
                for (int jr = 0; jr < nc; jr += NR) {
                    const uint32_t *bs = bpack + (size_t)jr * kp_n;
                    for (int ir = 0; ir < mc; ir += MR)
                        kernel_bf16(kp_n, apack + (size_t)ir * kp_n, bs, c_at(C, ldc, c_trans, ic + ir, jc + jr),
                                    ldc, imin(MR, mc - ir), imin(NR, nc - jr), alpha, beta_here, c_trans);
                }
            }
        }
    }
    a_store_close(&ast, a_key);
    b_store_close(&bst, b_key);
    return true;
}

/* ---- pieces of the bf16 GEMM for callers that pack op(B) themselves (qmatmul_bf16.c: quantized weights decoded
 * straight into the slivers below, issue 18). The layouts are the GEMM's: a K slice (kc <= KC_BF16, even start) of
 * op(A) as MR-row panels of kp_n = (kc + 1) / 2 pair words per row (panel p at p * kp_n * MR), and of op(B) as
 * NR-column slivers of kp_n * NR pair words (sliver q at q * kp_n * NR; word (kp, j) = bf16 of op(B)(2kp, j) in the
 * low half, op(B)(2kp+1, j) in the high half). */

/* The calling thread's buffer for a whole packed op(A) (kept and grown like the GEMM's own; NULL: out of memory). */
uint32_t *ftc_gemm_bf16_avx512_abuf(size_t words) { return pack_buffer(3, sizeof(uint32_t) * words); }

/* Rows 0..M of A (f32, row-major, not transposed) at k0..k0+kc into MR-row panels (the GEMM's packing). */
BF16_FN void ftc_gemm_bf16_avx512_pack_a(const float *A, int lda, int M, int k0, int kc, uint32_t *dst) {
    pack_a_bf16(false, A, FTC_MM_F32, lda, 0, M, k0, kc, k0 + kc, dst);
}

/* C[M, N] = acc + beta * C for one K slice: every MR x NR tile by the GEMM's micro-kernel (alpha 1), so a caller
 * that packs the same bits gets ftc_gemm_bf16_avx512's results on that slice, bit for bit. */
BF16_FN void ftc_gemm_bf16_avx512_packed(int M, int N, int kp_n, const uint32_t *apack, const uint32_t *bpack,
                                         float beta, float *C, int ldc) {
    for (int jr = 0; jr < N; jr += NR) {
        const uint32_t *bs = bpack + (size_t)jr * kp_n;
        for (int ir = 0; ir < M; ir += MR)
            kernel_bf16(kp_n, apack + (size_t)ir * kp_n, bs, C + (size_t)ir * ldc + jr, ldc, imin(MR, M - ir),
                        imin(NR, N - jr), 1.0f, beta, false);
    }
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

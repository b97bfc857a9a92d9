/* Matmul dispatch (docs/kernels.md). Backends:
 *   avx512   own kernels (matmul_avx512.c), default when the CPU has AVX-512F
 *   avx2     default when the CPU has AVX2 + FMA but no AVX-512: own skinny kernels for decoding and bf16
 *            (matmul_avx2.c), OpenBLAS for the f32 GEMM, bf16 GEMM as an f32 GEMM on bf16-rounded operands
 *   openblas cblas_sgemm (whatever core type OpenBLAS picks, e.g. from OPENBLAS_CORETYPE)
 *   generic  portable C loop, the reference path CI also runs
 * FTC_MATMUL=avx512|avx2|openblas|generic forces one (avx2 also on AVX-512 CPUs, so tests cover it there);
 * ftc_matmul_set_backend() switches at run time.
 * Threads: the kernels (ours and OpenBLAS, pinned to one thread) are single-threaded per call; this file splits
 * C between the library's pool threads (pool.c; rows or columns, on micro-tile boundaries), and runs one thread
 * when already inside a pool job so that callers who parallelise themselves do not oversubscribe the cores. */
#include "ftc/matmul.h"
#include "matmul_internal.h"
#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#include <string.h>

typedef enum { BACKEND_UNSET, BACKEND_GENERIC, BACKEND_OPENBLAS, BACKEND_AVX512, BACKEND_AVX2 } backend_id;
static backend_id backend = BACKEND_UNSET;
static const char *const backend_names[] = {"unset", "generic", "openblas", "avx512", "avx2"};

bool ftc_mm_cpu_has_avx2_fma(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int has = -1; /* asked once, as below */
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return has;
#else
    return false;
#endif
}

bool ftc_mm_cpu_has_f16c(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int has = -1; /* asked once, as above; GCC 12's __builtin_cpu_supports does not know f16c: CPUID leaf 1,
                          * ECX bit 29 */
    if (has < 0) {
        unsigned a, b, c, d;
        has = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    }
    return has;
#else
    return false;
#endif
}

static bool cpu_has_avx512(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int has = -1; /* the CPU does not change: ask once (a benign race: every thread writes the same) */
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }
    return has;
#else
    return false;
#endif
}

static bool cpu_has_avx512_bf16(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

static backend_id backend_from_name(const char *name) {
    if (!name) return BACKEND_UNSET;
    if (strcmp(name, "generic") == 0) return BACKEND_GENERIC;
    if (strcmp(name, "openblas") == 0) return BACKEND_OPENBLAS;
    if (strcmp(name, "avx512") == 0) return cpu_has_avx512() ? BACKEND_AVX512 : BACKEND_UNSET;
    if (strcmp(name, "avx2") == 0) return ftc_mm_cpu_has_avx2_fma() ? BACKEND_AVX2 : BACKEND_UNSET;
    return BACKEND_UNSET;
}

static backend_id auto_backend(void) {
    backend_id b = backend_from_name(getenv("FTC_MATMUL")); /* unknown or unsupported: ignored */
    if (b != BACKEND_UNSET) return b;
    return cpu_has_avx512() ? BACKEND_AVX512 : ftc_mm_cpu_has_avx2_fma() ? BACKEND_AVX2 : BACKEND_OPENBLAS;
}

static backend_id current(void) {
    if (backend == BACKEND_UNSET) backend = auto_backend();
    return backend;
}

bool ftc_matmul_set_backend(const char *name) {
    if (name && strcmp(name, "auto") == 0) {
        backend = auto_backend();
        return true;
    }
    backend_id b = backend_from_name(name);
    if (b == BACKEND_UNSET) return false;
    backend = b;
    return true;
}

const char *ftc_matmul_backend(void) { return backend_names[current()]; }

/* The vendor-chosen kernel settings below (bf16 dot, skinny streaming) pick the path AMD's cores run fastest: one
 * question for both. */
static bool cpu_is_amd(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_is("amd");
#else
    return false;
#endif
}

typedef enum { BF16_GENERIC, BF16_AVX512, BF16_AVX2 } bf16_path;

/* bf16 products: vdpbf16ps where the CPU has it (unless avx2 or generic is forced), else the AVX2 path, else the
 * portable loop. */
static bf16_path bf16_current(void) {
    backend_id b = current();
    if (b == BACKEND_GENERIC) return BF16_GENERIC;
    if (b != BACKEND_AVX2 && cpu_has_avx512_bf16()) return BF16_AVX512;
    return ftc_mm_cpu_has_avx2_fma() ? BF16_AVX2 : BF16_GENERIC;
}

/* Decoding's bf16 skinny products on the AVX512-BF16 path: vdpbf16ps on A and W as bf16, or W widened to f32 in
 * registers and the f32 FMAs (A rounded to bf16, kept as f32). Where vdpbf16ps issues at the FMA's rate it does
 * twice the multiply-adds: AMD Zen 4 (EPYC, 2026-12-04: one vdpbf16ps zmm and one vfmadd231ps zmm each 0.276 ns, 12
 * independent chains). On the Intel Xeon (model 207) it ran at about a third of the FMA rate, so a batch of 8 rows
 * was compute-bound there (bench/RESULTS.md, 2026-12-04). Chosen by vendor, so that a CPU always takes the same
 * path (and a row the same bits): AMD vdpbf16ps, others the FMAs. FTC_BF16_DOT=dpbf16|fma or
 * ftc_matmul_set_bf16_dot() forces one. The two differ in the last bits (vdpbf16ps adds two products a lane per
 * step, flushes denormals); each gives a row the same bits alone and in any batch. */
typedef enum { DOT_UNSET, DOT_FMA, DOT_DP } bf16_dot_id;
static bf16_dot_id bf16_dot = DOT_UNSET;

static bf16_dot_id bf16_dot_from_name(const char *name) {
    if (!name) return DOT_UNSET;
    if (strcmp(name, "fma") == 0) return DOT_FMA;
    if (strcmp(name, "dpbf16") == 0) return cpu_has_avx512_bf16() ? DOT_DP : DOT_UNSET;
    return DOT_UNSET;
}

static bf16_dot_id bf16_dot_auto(void) {
    bf16_dot_id d = bf16_dot_from_name(getenv("FTC_BF16_DOT"));
    if (d != DOT_UNSET) return d;
    return cpu_has_avx512_bf16() && cpu_is_amd() ? DOT_DP : DOT_FMA;
}

static bool bf16_dot_dp(void) {
    if (bf16_dot == DOT_UNSET) bf16_dot = bf16_dot_auto();
    return bf16_dot == DOT_DP;
}

bool ftc_matmul_set_bf16_dot(const char *name) {
    if (name && strcmp(name, "auto") == 0) {
        bf16_dot = bf16_dot_auto();
        return true;
    }
    bf16_dot_id d = bf16_dot_from_name(name);
    if (d == DOT_UNSET) return false;
    bf16_dot = d;
    return true;
}

const char *ftc_matmul_bf16_backend(void) {
    static const char *const names[] = {"generic", "avx512bf16", "avx2"};
    return names[bf16_current()];
}

const char *ftc_matmul_bf16_dot(void) { return bf16_current() == BF16_AVX512 && bf16_dot_dp() ? "dpbf16" : "fma"; }

/* How the AVX-512 skinny kernels (decoding) stream W (matmul_skinny.c); a row of C has the same bits whichever.
 *   tiles  4-row tiles of W, the next tile prefetched into L1 (the Intel Xeon, model 207: one stream a core read
 *          25 GB/s there against 31 with four)
 *   zen4   1-2 rows of A: each row of W streamed alone, no software prefetch; more: the tiles with a prefetch
 *          32 KB ahead into L2. AMD Zen 4 (EPYC, 2026-12-04), SmolLM2-shaped weights (142 MB), one thread, CPU ms
 *          per pass: f32 one row of A 9.2-9.6 tiles -> 5.2-5.9 rows (5.7-6.7 far tiles), 3 rows 10.8-11.1 -> 6.0-6.3
 *          far tiles (rows 7.8-8.5), 8 rows 12.5-12.8 -> 7.6-8.2; bf16 on vdpbf16ps one row 5.9 -> 2.7, 8 rows 7.2 -> 3.8
 *   rows   each row of W streamed alone for any number of rows of A (for tests)
 * Chosen by vendor, as bf16_dot: AMD zen4, others tiles. FTC_SKINNY=tiles|zen4|rows or ftc_matmul_set_skinny()
 * forces one. */
typedef enum { SKINNY_UNSET, SKINNY_TILES, SKINNY_ZEN4, SKINNY_ROWS } skinny_id;
static skinny_id skinny_mode = SKINNY_UNSET;
static const char *const skinny_names[] = {"", "tiles", "zen4", "rows"};

static skinny_id skinny_from_name(const char *name) {
    for (int i = SKINNY_TILES; name && i <= SKINNY_ROWS; i++)
        if (strcmp(name, skinny_names[i]) == 0) return (skinny_id)i;
    return SKINNY_UNSET;
}

static skinny_id skinny_auto(void) {
    skinny_id m = skinny_from_name(getenv("FTC_SKINNY"));
    if (m != SKINNY_UNSET) return m;
    return cpu_is_amd() ? SKINNY_ZEN4 : SKINNY_TILES;
}

static ftc_mm_skinny_how skinny_how(void) {
    if (skinny_mode == SKINNY_UNSET) skinny_mode = skinny_auto();
    ftc_mm_skinny_how h = {0, false};
    if (skinny_mode == SKINNY_ZEN4) h.rows = 2, h.far = true;
    else if (skinny_mode == SKINNY_ROWS) h.rows = 1 << 30;
    return h;
}

bool ftc_matmul_set_skinny(const char *name) {
    if (name && strcmp(name, "auto") == 0) {
        skinny_mode = skinny_auto();
        return true;
    }
    skinny_id m = skinny_from_name(name);
    if (m == SKINNY_UNSET) return false;
    skinny_mode = m;
    return true;
}

const char *ftc_matmul_skinny(void) {
    (void)skinny_how();
    return skinny_names[skinny_mode];
}

/* ---- portable paths ---- */

static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, sizeof(float) * (size_t)N);
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

static void matmul_generic(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc) {
    scale_c(M, N, beta, C, ldc);
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int k = 0; k < K; k++) {
            float a = alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            if (a == 0.0f) continue;
            if (!tb) {
                const float *b = B + (size_t)k * ldb;
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * ldb + k];
            }
        }
    }
}

static inline float bf16_value(const void *X, ftc_mm_type t, size_t idx) {
    uint32_t bits;
    if (t == FTC_MM_BF16) bits = (uint32_t)((const uint16_t *)X)[idx] << 16;
    else {
        memcpy(&bits, (const float *)X + idx, 4);
        bits = (uint32_t)ftc_mm_round_bf16(bits) << 16;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Products of bf16 values are exact in f32 (8-bit mantissas), so this differs from vdpbf16ps only in the
 * order of the f32 additions. */
static void matmul_bf16_generic(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, ftc_mm_type at,
                                int lda, const void *B, ftc_mm_type bt, int ldb, float beta, float *C, int ldc) {
    scale_c(M, N, beta, C, ldc);
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int k = 0; k < K; k++) {
            float a = bf16_value(A, at, ta ? (size_t)k * lda + i : (size_t)i * lda + k);
            if (a == 0.0f) continue;
            a *= alpha;
            for (int j = 0; j < N; j++) c[j] += a * bf16_value(B, bt, tb ? (size_t)j * ldb + k : (size_t)k * ldb + j);
        }
    }
}

/* ---- threading ---- */

/* Below this many multiply-adds a fork/join costs more than it saves. */
#define MIN_MACS_PER_THREAD (1 << 18)

typedef struct {
    bool ta, tb;
    int M, N, K;
    float alpha, beta;
    const void *A, *B;
    ftc_mm_type at, bt;
    int lda, ldb, ldc;
    float *C;
    bool bf16;
    bool c_trans;      /* the job computes C^T (see narrow_swap) */
    const void *bt_nk; /* set: narrow C by dot products, op(B) as N x K rows of type bt, stride ldb */
    uint64_t serial;   /* unique per threaded job: row chunks share its packed op(B) per thread (b_key), column
                        * chunks its packed op(A) (a_key) */
    bool skinny;       /* few rows of A against W = op(B)^T read along K (matmul_skinny.c); threads split N */
    bool avx2;         /* skinny job on the AVX2 kernels (matmul_avx2.c) */
    const float *a32;  /* skinny bf16 job: A rounded to bf16, kept as f32, M x K (stride K) */
    const uint16_t *a16; /* skinny bf16 job on vdpbf16ps (instead of a32): A as bf16 bits, stride lda16 */
    int lda16;
} gemm_job;

static size_t elem_size(ftc_mm_type t) { return t == FTC_MM_BF16 ? 2 : 4; }

/* Out of memory for packing buffers: the portable loop, on the block as the caller laid it out (a C^T job
 * is turned back into C = op(B')^T op(A')^T). */
static void fallback_f32(const gemm_job *j, int m, int n, const float *A, const float *B, float *C) {
    if (j->c_trans) matmul_generic(!j->tb, !j->ta, n, m, j->K, j->alpha, B, j->ldb, A, j->lda, j->beta, C, j->ldc);
    else matmul_generic(j->ta, j->tb, m, n, j->K, j->alpha, A, j->lda, B, j->ldb, j->beta, C, j->ldc);
}

static void fallback_bf16(const gemm_job *j, int m, int n, const void *A, const void *B, float *C) {
    if (j->c_trans)
        matmul_bf16_generic(!j->tb, !j->ta, n, m, j->K, j->alpha, B, j->bt, j->ldb, A, j->at, j->lda, j->beta, C, j->ldc);
    else matmul_bf16_generic(j->ta, j->tb, m, n, j->K, j->alpha, A, j->at, j->lda, B, j->bt, j->ldb, j->beta, C, j->ldc);
}

/* Runs the rows [m0, m0+m) x columns [n0, n0+n) of the job on this thread (b_key, a_key: see ftc_sgemm_avx512). */
static void run_block(const gemm_job *j, int m0, int m, int n0, int n, uint64_t b_key, uint64_t a_key) {
    if (m <= 0 || n <= 0) return;
    const char *A = (const char *)j->A + elem_size(j->at) * (j->ta ? (size_t)m0 : (size_t)m0 * j->lda);
    const char *B = (const char *)j->B + elem_size(j->bt) * (j->tb ? (size_t)n0 * j->ldb : (size_t)n0);
    if (j->bt_nk) { /* rows only */
        const void *A = (const char *)j->A + elem_size(j->at) * (size_t)m0 * j->lda;
        if (j->bf16)
            ftc_gemm_bf16_avx512_small_n(m, j->N, j->K, j->alpha, A, j->at, j->lda, j->bt_nk, j->bt, j->ldb, j->beta,
                                         j->C + (size_t)m0 * j->ldc, j->ldc);
        else
            ftc_sgemm_avx512_small_n(m, j->N, j->K, j->alpha, A, j->lda, j->bt_nk, j->ldb, j->beta,
                                     j->C + (size_t)m0 * j->ldc, j->ldc);
        return;
    }
    float *C = j->c_trans ? j->C + (size_t)n0 * j->ldc + m0 : j->C + (size_t)m0 * j->ldc + n0;
    if (j->bf16) {
        if (!ftc_gemm_bf16_avx512(j->ta, j->tb, m, n, j->K, j->alpha, A, j->at, j->lda, B, j->bt, j->ldb, j->beta, C,
                                  j->ldc, j->c_trans, b_key, a_key))
            fallback_bf16(j, m, n, A, B, C);
    } else {
        if (!ftc_sgemm_avx512(j->ta, j->tb, m, n, j->K, j->alpha, (const float *)A, j->lda, (const float *)B, j->ldb,
                              j->beta, C, j->ldc, j->c_trans, b_key, a_key))
            fallback_f32(j, m, n, (const float *)A, (const float *)B, C);
    }
}

/* A C narrower than the 32-wide tile (LoRA's rank-8 products) wastes most of each vector; its transpose
 * C^T = op(B)^T op(A)^T fills them (12-row tiles waste less). The job then describes C^T. */
static void narrow_swap(gemm_job *j) {
    if (j->N >= FTC_MM_NR || j->M < 2 * FTC_MM_NR) return;
    double fill_now = (double)j->N / ((j->N + FTC_MM_NR - 1) / FTC_MM_NR * FTC_MM_NR);
    double fill_swapped = (double)j->N / ((j->N + FTC_MM_MR - 1) / FTC_MM_MR * FTC_MM_MR);
    if (fill_swapped <= fill_now) return;
    gemm_job t = *j;
    t.M = j->N, t.N = j->M;
    t.A = j->B, t.at = j->bt, t.lda = j->ldb, t.ta = !j->tb; /* op(A') = op(B)^T */
    t.B = j->A, t.bt = j->at, t.ldb = j->lda, t.tb = !j->ta; /* op(B') = op(A)^T */
    t.c_trans = true;
    *j = t;
}

/* Chunk c of n along C's longer side, in whole micro-tiles. */
static void run_chunk(const gemm_job *j, int c, int n) {
    if (j->skinny) { /* rows of W in groups of 4 (the kernel's block) */
        int groups = (j->N + 3) / 4;
        int lo = (int)((long long)groups * c / n) * 4, hi = (int)((long long)groups * (c + 1) / n) * 4;
        if (hi > j->N) hi = j->N;
        if (lo >= hi) return;
        if (j->avx2) {
            if (j->bf16)
                ftc_mm_skinny_bf16_avx2(j->M, lo, hi, j->K, j->alpha, j->a32, j->K, j->B, j->ldb, j->beta, j->C, j->ldc);
            else
                ftc_mm_skinny_f32_avx2(j->M, lo, hi, j->K, j->alpha, j->A, j->lda, j->B, j->ldb, j->beta, j->C, j->ldc);
            return;
        }
        ftc_mm_skinny_how how = skinny_how();
        if (j->a16)
            ftc_mm_skinny_bf16dp_avx512(j->M, lo, hi, j->K, j->alpha, j->a16, j->lda16, j->B, j->ldb, j->beta, j->C,
                                        j->ldc, how);
        else if (j->bf16)
            ftc_mm_skinny_bf16_avx512(j->M, lo, hi, j->K, j->alpha, j->a32, j->K, j->B, j->ldb, j->beta, j->C, j->ldc,
                                      how);
        else
            ftc_mm_skinny_f32_avx512(j->M, lo, hi, j->K, j->alpha, j->A, j->lda, j->B, j->ldb, j->beta, j->C, j->ldc,
                                     how);
        return;
    }
    bool split_rows = j->bt_nk || (j->M + FTC_MM_MR - 1) / FTC_MM_MR >= (j->N + FTC_MM_NR - 1) / FTC_MM_NR;
    int tile = split_rows ? FTC_MM_MR : FTC_MM_NR, len = split_rows ? j->M : j->N;
    int tiles = (len + tile - 1) / tile;
    int t0 = (int)((long long)tiles * c / n), t1 = (int)((long long)tiles * (c + 1) / n);
    int lo = t0 * tile, hi = t1 * tile < len ? t1 * tile : len;
    /* Every row chunk packs the same op(B), every column chunk the same op(A): once per thread (issue 24: a
     * 256-row prompt's GEMMs run as 8 column chunks, and each packed the whole prompt again, 4% of prefill). */
    if (split_rows) run_block(j, lo, hi - lo, 0, j->N, j->serial, 0);
    else run_block(j, 0, j->M, lo, hi - lo, 0, j->serial);
}

static void pool_chunk(void *arg, int chunk, int nchunks) { run_chunk(arg, chunk, nchunks); }

/* Splits C between the caller and the pool's workers (pool.c), a few chunks per thread so that a late thread
 * costs little. One thread for small products and inside a pool job (the caller already uses the cores). */
static void run_threaded(const gemm_job *j) {
    double macs = (double)j->M * j->N * j->K;
    int nt = ftc_mm_pool_threads();
    if (nt > 1 && macs < (double)MIN_MACS_PER_THREAD * nt) nt = (int)(macs / MIN_MACS_PER_THREAD);
    if (nt > 1) {
        bool split_rows = j->bt_nk || (j->M + FTC_MM_MR - 1) / FTC_MM_MR >= (j->N + FTC_MM_NR - 1) / FTC_MM_NR;
        int tiles = split_rows ? (j->M + FTC_MM_MR - 1) / FTC_MM_MR : (j->N + FTC_MM_NR - 1) / FTC_MM_NR;
        /* Up to 4 chunks per thread, but each at least 256 long: every chunk packs its own copy of the other
         * operand, which costs a few percent per chunk at the training shapes. Column chunks share op(A) per thread
         * (a_key), so a wide product takes up to 8 per thread of at least 512 columns: a 256-row prompt chunk
         * against llama-1b's 8192-wide gate and up weights then packs 512-column blocks of op(B) (512 KB a K slice,
         * in L2 beside the op(A) block) instead of 1024 (1 MB): those two products 2-4% less CPU (issue 24). */
        int len = split_rows ? j->M : j->N, chunks = len / 256;
        if (chunks > 4 * nt) chunks = 4 * nt;
        if (!split_rows && len / 512 > chunks) chunks = len / 512 < 8 * nt ? len / 512 : 8 * nt;
        if (chunks < nt) chunks = nt;
        if (chunks > tiles) chunks = tiles;
        static _Atomic uint64_t serials; /* unique per threaded job */
        gemm_job job = *j;
        job.serial = atomic_fetch_add(&serials, 1) + 1;
        if (chunks > 1 && ftc_mm_pool_run(chunks, pool_chunk, &job)) return;
    }
    run_block(j, 0, j->M, 0, j->N, 0, 0);
}

/* A skinny job (matmul_skinny.c): the rows of W split between threads, a few chunks per thread so that a late
 * thread costs little; a weight under SKINNY_MIN_BYTES is not worth waking a worker for. */
#define SKINNY_MIN_BYTES ((size_t)64 << 10)
static void run_skinny(const gemm_job *j, size_t w_bytes) {
    int nt = ftc_mm_pool_threads(), groups = (j->N + 3) / 4;
    /* Every skinny product on both threads, one f32 row included (issue 24: both cores on every product). An
     * earlier rule kept one f32 row on one thread for an AVX-512 machine whose single core read at its full
     * bandwidth (34.8 GB/s alone); on the Intel Xeon (model 207) of 2026-12-04 one core streams about 15.6 GB/s
     * and two 31, so SmolLM2 f32 decode went 29 -> 57 tokens/s with the rule gone (bench/RESULTS.md). On a busy
     * machine FTC_THREADS=1 (ftc --threads 1) keeps a descheduled worker from holding up the caller. */
    if (nt > 1 && groups > 1 && w_bytes >= SKINNY_MIN_BYTES) {
        int chunks = 4 * nt < groups ? 4 * nt : groups;
        if (ftc_mm_pool_run(chunks, pool_chunk, (void *)j)) return;
    }
    run_chunk(j, 0, 1);
}

/* OpenBLAS as the fallback: pinned to one thread (its own threads would spin beside the pool's), the product
 * split between the pool's threads by rows or columns of C. Each element of C is the same dot product over K
 * whichever block it falls in, as when OpenBLAS splits between its own threads. */
typedef struct {
    bool ta, tb, rows;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} blas_job;

static void blas_block(const blas_job *j, int lo, int hi) {
    if (hi <= lo) return;
    const float *A = j->A, *B = j->B;
    float *C = j->C;
    int M = j->M, N = j->N;
    if (j->rows) A += j->ta ? (size_t)lo : (size_t)lo * j->lda, C += (size_t)lo * j->ldc, M = hi - lo;
    else B += j->tb ? (size_t)lo * j->ldb : (size_t)lo, C += lo, N = hi - lo;
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, M, N, j->K,
                j->alpha, A, j->lda, B, j->ldb, j->beta, C, j->ldc);
}

static void blas_chunk(void *arg, int c, int n) {
    const blas_job *j = arg;
    int len = j->rows ? j->M : j->N, unit = j->rows ? 8 : 16; /* whole register tiles of OpenBLAS's kernels */
    int units = (len + unit - 1) / unit;
    int lo = (int)((long long)units * c / n) * unit, hi = (int)((long long)units * (c + 1) / n) * unit;
    blas_block(j, lo, hi < len ? hi : len);
}

static void pin_openblas(void) {
    static _Atomic bool pinned;
    if (!atomic_exchange(&pinned, true)) openblas_set_num_threads(1);
}

static void matmul_openblas(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc) {
    pin_openblas();
    blas_job j = {ta, tb, M >= N, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    double macs = (double)M * N * K;
    int nt = ftc_mm_pool_threads();
    if (nt > 1 && macs < (double)MIN_MACS_PER_THREAD * nt) nt = (int)(macs / MIN_MACS_PER_THREAD);
    int len = j.rows ? M : N, chunks = len / 64; /* 64 rows or columns at least per chunk */
    if (chunks > 2 * nt) chunks = 2 * nt;
    if (nt > 1 && chunks >= 2 && ftc_mm_pool_run(chunks, blas_chunk, &j)) return;
    blas_block(&j, 0, len);
}

/* ---- entry points ---- */

/* At most this many rows of A against a weight read along K (op(B) = W^T) take the skinny kernels: decoding
 * (one row per sequence) and small batches; more rows amortise the GEMM's packing of W. */
#define SKINNY_M 16

/* C at most this narrow, with A read along K, goes to the dot-product kernel. */
#define SMALL_N 16

/* Handles the cases that read neither A nor B; returns true when nothing is left to do. */
static bool trivial(int M, int N, int K, float alpha, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return true;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return true;
    }
    return false;
}

void ftc_matmul(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
    if (trivial(M, N, K, alpha, beta, C, ldc)) return;
    switch (current()) {
    case BACKEND_AVX512: {
        gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, FTC_MM_F32, FTC_MM_F32, lda, ldb, ldc, C, false, false, NULL, 0,
                      false, false, NULL, NULL, 0};
        if (!ta && tb && M <= SKINNY_M) {
            j.skinny = true;
            run_skinny(&j, sizeof(float) * (size_t)N * (size_t)K);
            return;
        }
        float *bt_copy = NULL;
        if (!ta && N <= SMALL_N && M >= 4 * SMALL_N) { /* narrow C, A along K: dot products need op(B) as N x K */
            if (!tb && (bt_copy = malloc(sizeof(float) * (size_t)N * K)) != NULL)
                for (int k = 0; k < K; k++)
                    for (int n = 0; n < N; n++) bt_copy[(size_t)n * K + k] = B[(size_t)k * ldb + n];
            j.bt_nk = tb ? B : bt_copy;
        }
        if (!j.bt_nk) narrow_swap(&j);
        else if (!tb) j.ldb = K;
        run_threaded(&j);
        free(bt_copy);
        return;
    }
    case BACKEND_AVX2:
        if (!ta && tb && M <= SKINNY_M) {
            gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, FTC_MM_F32, FTC_MM_F32, lda, ldb, ldc, C, false, false, NULL,
                          0, true, true, NULL, NULL, 0};
            run_skinny(&j, sizeof(float) * (size_t)N * (size_t)K);
            return;
        }
        __attribute__((fallthrough)); /* OpenBLAS for the GEMM */
    case BACKEND_OPENBLAS:
        matmul_openblas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    default:
        matmul_generic(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
}

/* bf16 products on AVX2: no bf16 dot-product instruction, but a product of two bf16 values is exact in f32. So
 * the operands are rounded to bf16 and kept as f32 (an O(MK + KN) conversion in AVX2), and the product is the f32
 * one with f32 accumulation: the skinny AVX2 kernel for decoding, else ftc_matmul's f32 GEMM; the same result
 * as vdpbf16ps up to the order of the additions. B is converted in panels of at most BF16_PANEL_BYTES, which
 * bounds the extra memory (the LM head's 49152 x 576 weight would be 113 MB at once). Returns false, before
 * C is touched, when the buffers cannot be allocated (the caller then runs the portable loop). */
#define BF16_PANEL_BYTES ((size_t)8 << 20)

/* rows r of X (type t, stride ld elements, from column c0) -> dst + r * cols, on the pool's threads when large */
typedef struct {
    const void *X;
    ftc_mm_type t;
    size_t ld, c0;
    int rows, cols, chunks;
    float *dst;
} round_job;
static void round_chunk(void *ctx, int c) {
    const round_job *j = ctx;
    int r0 = (int)((long long)j->rows * c / j->chunks), r1 = (int)((long long)j->rows * (c + 1) / j->chunks);
    for (int r = r0; r < r1; r++)
        ftc_bf16_round_f32_avx2((const char *)j->X + elem_size(j->t) * ((size_t)r * j->ld + j->c0), j->t,
                                j->dst + (size_t)r * j->cols, (size_t)j->cols);
}
static void round_rows(const void *X, ftc_mm_type t, size_t ld, size_t c0, int rows, int cols, float *dst) {
    round_job j = {X, t, ld, c0, rows, cols, 1, dst};
    if ((double)rows * cols >= (double)(1 << 18)) j.chunks = rows < 8 ? rows : 8;
    ftc_parallel_for(j.chunks, round_chunk, &j);
}

static bool bf16_avx2(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, ftc_mm_type at, int lda,
                      const void *B, ftc_mm_type bt, int ldb, float beta, float *C, int ldc) {
    int ar = ta ? K : M, ac = ta ? M : K; /* A as stored */
    float *a32 = malloc(sizeof(float) * (size_t)ar * (size_t)ac);
    if (!a32) return false;
    round_rows(A, at, (size_t)lda, 0, ar, ac, a32);
    if (!ta && tb && M <= SKINNY_M && bt == FTC_MM_BF16) { /* decoding: W streamed as stored */
        gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, at, bt, lda, ldb, ldc, C, true, false, NULL, 0,
                      true, true, a32, NULL, 0};
        run_skinny(&j, sizeof(uint16_t) * (size_t)N * (size_t)K);
        free(a32);
        return true;
    }
    size_t cols = BF16_PANEL_BYTES / sizeof(float) / (size_t)K / 64 * 64;
    int nc = cols < 64 ? 64 : cols > (size_t)N ? N : (int)cols;
    float *b32 = malloc(sizeof(float) * (size_t)K * (size_t)nc);
    if (!b32) {
        free(a32);
        return false;
    }
    for (int n0 = 0; n0 < N; n0 += nc) {
        int n = N - n0 < nc ? N - n0 : nc, ldb32 = tb ? K : n;
        if (tb) /* B stored N x K: rows n0.. */
            round_rows((const char *)B + elem_size(bt) * (size_t)n0 * ldb, bt, (size_t)ldb, 0, n, K, b32);
        else /* B stored K x N: columns n0.. of each row */
            round_rows(B, bt, (size_t)ldb, (size_t)n0, K, n, b32);
        ftc_matmul(ta, tb, M, n, K, alpha, a32, ac, b32, ldb32, beta, C + n0, ldc); /* the f32 path, its threads */
    }
    free(a32), free(b32);
    return true;
}

void ftc_matmul_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, ftc_mm_type at, int lda,
                     const void *B, ftc_mm_type bt, int ldb, float beta, float *C, int ldc) {
    if (trivial(M, N, K, alpha, beta, C, ldc)) return;
    bf16_path path = bf16_current();
    if (path == BF16_AVX2 && bf16_avx2(ta, tb, M, N, K, alpha, A, at, lda, B, bt, ldb, beta, C, ldc)) return;
    if (path == BF16_AVX512) {
        gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, at, bt, lda, ldb, ldc, C, true, false, NULL, 0,
                      false, false, NULL, NULL, 0};
        float *a32;
        if (!ta && tb && M <= SKINNY_M && bt == FTC_MM_BF16 && bf16_dot_dp()) { /* decoding on vdpbf16ps */
            uint16_t *a16 = NULL;
            if (at == FTC_MM_BF16) j.a16 = A, j.lda16 = lda;
            else if ((a16 = malloc(sizeof(uint16_t) * (size_t)M * (size_t)K)) != NULL) { /* rounded once */
                for (int i = 0; i < M; i++)
                    ftc_f32_to_bf16_avx512((const float *)A + (size_t)i * lda, a16 + (size_t)i * K, (size_t)K);
                j.a16 = a16, j.lda16 = K;
            }
            if (j.a16) {
                j.skinny = true;
                run_skinny(&j, sizeof(uint16_t) * (size_t)N * (size_t)K);
                free(a16);
                return;
            }
        }
        if (!ta && tb && M <= SKINNY_M && bt == FTC_MM_BF16 &&
            (a32 = malloc(sizeof(float) * (size_t)M * (size_t)K)) != NULL) { /* A rounded once, not per row of W */
            round_rows(A, at, (size_t)lda, 0, M, K, a32);
            j.skinny = true, j.a32 = a32;
            run_skinny(&j, sizeof(uint16_t) * (size_t)N * (size_t)K);
            free(a32);
            return;
        }
        uint16_t *bt_copy = NULL;
        if (!ta && N <= SMALL_N && M >= 4 * SMALL_N) { /* narrow C: dot products, op(B) as N x K rows */
            if (!tb && (bt_copy = malloc(sizeof(uint16_t) * (size_t)N * K)) != NULL)
                for (int k = 0; k < K; k++)
                    for (int n = 0; n < N; n++) {
                        size_t idx = (size_t)k * ldb + n;
                        uint32_t x;
                        if (bt == FTC_MM_BF16) x = (uint32_t)((const uint16_t *)B)[idx] << 16;
                        else memcpy(&x, (const float *)B + idx, 4);
                        bt_copy[(size_t)n * K + k] = bt == FTC_MM_BF16 ? (uint16_t)(x >> 16) : ftc_mm_round_bf16(x);
                    }
            j.bt_nk = tb ? B : bt_copy;
            if (!tb && bt_copy) j.bt = FTC_MM_BF16, j.ldb = K;
        }
        if (!j.bt_nk) narrow_swap(&j);
        run_threaded(&j);
        free(bt_copy);
        return;
    }
    matmul_bf16_generic(ta, tb, M, N, K, alpha, A, at, lda, B, bt, ldb, beta, C, ldc);
}

void ftc_f32_to_bf16_n(const float *in, uint16_t *out, size_t n) {
    if (cpu_has_avx512() && current() != BACKEND_AVX2) { /* FTC_MATMUL=avx2 covers the AVX2 copy on AVX-512 CPUs */
        ftc_f32_to_bf16_avx512(in, out, n);
        return;
    }
    if (ftc_mm_cpu_has_avx2_fma()) {
        ftc_f32_to_bf16_avx2(in, out, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, in + i, 4);
        out[i] = ftc_mm_round_bf16(x);
    }
}

void ftc_bf16_to_f32_n(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) { /* a shift: compilers vectorise it */
        uint32_t x = (uint32_t)in[i] << 16;
        memcpy(out + i, &x, 4);
    }
}

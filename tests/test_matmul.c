/* ftc_matmul and ftc_matmul_bf16 on every backend this CPU runs, every layout, odd edge sizes, strides,
 * alpha/beta, against a double-precision reference.
 *
 * Tolerance: each C element is a sum of K products plus beta*C; in f32 with any summation order the error is
 * at most gamma_{K+2} = (K+2)u/(1-(K+2)u) times mag = |alpha| sum_k |a_ik b_kj| + |beta c_ij| (u = 2^-24;
 * Higham, Accuracy and Stability, 3.1). We allow (K+3)u * mag: rigorous, yet a wrong or missing term (about
 * mag/K) is far outside it. For bf16 the reference is computed on the bf16-rounded inputs, whose products are
 * exact in f32, so the same bound holds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include "ftc/threads.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/matmul.h"
#include "ftc/safetensors.h"

static const char *const backends[] = {"generic", "openblas", "avx512", "avx2"};
#define N_BACKENDS 4
static const int sizes[] = {1, 7, 17, 33, 100, 257};
#define N_SIZES 6
static const float alphas[] = {1.0f, 2.0f, -0.5f, 1.0f};
static const float betas[] = {0.0f, 0.5f, 1.0f, -1.5f};

/* A backend name, or "avx512:fma" / "avx512:dpbf16": the AVX-512 backend with decoding's bf16 products (skinny) on
 * f32 FMAs or on vdpbf16ps (ftc_matmul_set_bf16_dot). False when this CPU cannot run it. */
static bool set_path(const char *p) {
    const char *colon = strchr(p, ':');
    ftc_matmul_set_bf16_dot("auto");
    if (!colon) return ftc_matmul_set_backend(p);
    char be[16];
    snprintf(be, sizeof be, "%.*s", (int)(colon - p), p);
    return ftc_matmul_set_backend(be) && ftc_matmul_set_bf16_dot(colon + 1);
}

static void reset_path(void) {
    ftc_matmul_set_backend("auto");
    ftc_matmul_set_bf16_dot("auto");
}

/* The AVX-512 backend with its vdpbf16ps kernel, for the tests of that kernel's own paths; false (path reset, a
 * "skipped" line) where the CPU lacks AVX512-BF16 */
static bool use_avx512_bf16(void) {
    if (ftc_matmul_set_backend("avx512") && strcmp(ftc_matmul_bf16_backend(), "avx512bf16") == 0) return true;
    printf("# no AVX512-BF16 here: skipped\n");
    reset_path();
    return false;
}

static void fill(float *x, size_t n, ftc_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = ftc_rng_normal(r);
}

/* op(X)(r, c) for X stored row-major with stride ld; `trans` means op(X)(r,c) = X[c][r]. */
static double elem(const float *X, int ld, bool trans, int r, int c) {
    return trans ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c];
}

/* Checks C against alpha*op(A)op(B) + beta*C0 with the bound above; reports the worst ratio error/bound. */
static double check(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, const float *C0, const float *C, int ldc, const char *what) {
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double p = elem(A, lda, ta, i, k) * elem(B, ldb, tb, k, j);
                s += p;
                mag += fabs(p);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[(size_t)i * ldc + j];
            double ref = alpha * s + beta * c0;
            double bound = (K + 3) * ldexp(1.0, -24) * (fabs(alpha) * mag + fabs(beta * c0)) + 1e-37;
            double err = fabs(C[(size_t)i * ldc + j] - ref);
            if (!(err <= bound)) {
                fprintf(stderr, "%s: C[%d][%d] = %.9g, reference %.9g (bound %.3g)\n", what, i, j,
                        (double)C[(size_t)i * ldc + j], ref, bound);
                fail();
            }
            if (err / bound > worst) worst = err / bound;
        }
    return worst;
}

/* One case: random A, B with padded strides; C has padding that must stay untouched. beta == 0 fills C with
 * NaN, which must not leak into the result. */
static double run_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta, ftc_rng *r, const char *what) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
    float *C0 = malloc(sizeof(float) * nc), *C = malloc(sizeof(float) * nc);
    assert_true(A && B && C0 && C);
    fill(A, na, r);
    fill(B, nb, r);
    fill(C0, nc, r);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C0[i] = NAN;
    memcpy(C, C0, sizeof(float) * nc);
    ftc_matmul(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double worst = check(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc, what);
    for (int i = 0; i < M; i++) /* the padding between rows of C is not ours to write */
        for (int j = N; j < ldc; j++)
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], 4) != 0) {
                fprintf(stderr, "%s: wrote C[%d][%d] outside N=%d\n", what, i, j, N);
                fail();
            }
    free(A), free(B), free(C0), free(C);
    return worst;
}

static void test_fp32_every_backend_layout_and_edge(void **state) {
    (void)state;
    ftc_rng r;
    ftc_rng_seed(&r, 42);
    for (int b = 0; b < N_BACKENDS; b++) {
        if (!ftc_matmul_set_backend(backends[b])) {
            printf("# backend %s not available on this CPU: skipped\n", backends[b]);
            continue;
        }
        assert_string_equal(ftc_matmul_backend(), backends[b]);
        int cases = 0;
        double worst = 0;
        for (int layout = 0; layout < 4; layout++) {
            bool ta = layout & 1, tb = layout & 2;
            for (int im = 0; im < N_SIZES; im++)
                for (int in = 0; in < N_SIZES; in++)
                    for (int ik = 0; ik < N_SIZES; ik++) {
                        int M = sizes[im], N = sizes[in], K = sizes[ik];
                        /* all shapes up to 100; those with 257 (past the 240-row and 256-deep blocks) only
                         * when the rest is small, to keep the generic path and ASan builds quick */
                        if ((M == 257) + (N == 257) + (K == 257) > 0 && (double)M * N * K > 257.0 * 33 * 100) continue;
                        int ab = (im + in + ik + layout) % 4;
                        char what[96];
                        snprintf(what, sizeof what, "%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g", backends[b], ta,
                                 tb, M, N, K, (double)alphas[ab], (double)betas[ab]);
                        double w = run_case(ta, tb, M, N, K, alphas[ab], betas[ab], &r, what);
                        if (w > worst) worst = w;
                        cases++;
                    }
            /* past the 3072-column block, and large enough to be split between threads */
            run_case(ta, tb, 5, 3100, 9, 1.5f, 0.25f, &r, "wide");
            run_case(ta, tb, 300, 290, 270, 1.0f, 0.0f, &r, "threaded");
            cases += 2;
        }
        printf("# %s: %d fp32 cases, worst error %.3f of the bound\n", backends[b], cases, worst);
    }
    ftc_matmul_set_backend("auto");
}

/* alpha == 0 reads neither A nor B (NaN there must not reach C); K == 0 scales C by beta. */
static void test_degenerate_alpha_and_k(void **state) {
    (void)state;
    for (int b = 0; b < N_BACKENDS; b++) {
        if (!ftc_matmul_set_backend(backends[b])) continue;
        float A[6], B[6], C[4] = {1, 2, 3, 4};
        for (int i = 0; i < 6; i++) A[i] = B[i] = NAN;
        ftc_matmul(false, false, 2, 2, 3, 0.0f, A, 3, B, 2, 2.0f, C, 2);
        for (int i = 0; i < 4; i++) assert_float_equal(C[i], 2.0f * (i + 1), 0);
        ftc_matmul(false, false, 2, 2, 0, 1.0f, A, 3, B, 2, 0.0f, C, 2);
        for (int i = 0; i < 4; i++) assert_float_equal(C[i], 0.0f, 0);
        uint16_t Ah[6] = {0}, Bh[6] = {0};
        float C2[4] = {1, 2, 3, 4};
        ftc_matmul_bf16(false, false, 2, 2, 3, 0.0f, Ah, FTC_MM_BF16, 3, Bh, FTC_MM_BF16, 2, -1.0f, C2, 2);
        for (int i = 0; i < 4; i++) assert_float_equal(C2[i], -(float)(i + 1), 0);
    }
    ftc_matmul_set_backend("auto");
}

static void test_backend_selection(void **state) {
    (void)state;
    assert_false(ftc_matmul_set_backend("cuda-someday"));
    assert_false(ftc_matmul_set_backend(NULL));
    assert_true(ftc_matmul_set_backend("generic"));
    assert_string_equal(ftc_matmul_backend(), "generic");
    assert_string_equal(ftc_matmul_bf16_backend(), "generic");
    assert_true(ftc_matmul_set_backend("openblas"));
    assert_string_equal(ftc_matmul_backend(), "openblas");
    assert_true(ftc_matmul_set_backend("auto"));
    assert_false(ftc_matmul_set_skinny("wide"));
    assert_false(ftc_matmul_set_skinny(NULL));
    assert_true(ftc_matmul_set_skinny("auto"));
    assert_false(ftc_matmul_set_bf16_dot("amx"));
    assert_false(ftc_matmul_set_bf16_dot(NULL));
    assert_true(ftc_matmul_set_bf16_dot("fma"));
    assert_string_equal(ftc_matmul_bf16_dot(), "fma");
    if (ftc_matmul_set_bf16_dot("dpbf16") && ftc_matmul_set_backend("avx512")) { /* CPUs with AVX512-BF16 */
        assert_string_equal(ftc_matmul_bf16_backend(), "avx512bf16");
        assert_string_equal(ftc_matmul_bf16_dot(), "dpbf16");
        assert_true(ftc_matmul_set_backend("avx2"));
        assert_string_equal(ftc_matmul_bf16_dot(), "fma"); /* the setting holds for the avx512bf16 path only */
        assert_true(ftc_matmul_set_backend("auto"));
    }
    assert_true(ftc_matmul_set_bf16_dot("auto"));
    printf("# auto: fp32 %s, bf16 %s, decoding's bf16 products on %s\n", ftc_matmul_backend(),
           ftc_matmul_bf16_backend(), ftc_matmul_bf16_dot());
}

/* Called from inside a pool job, each thread's matmul runs on that thread alone and is still right (per-thread
 * packing buffers), on every backend this CPU has. */
typedef struct {
    int failures;
} inside_ctx;
static void inside_item(void *ctx, int t) {
    enum { M = 70, N = 50, K = 300 };
    static float A[2][M * K], B[2][K * N], C[2][M * N];
    for (int i = 0; i < M * K; i++) A[t][i] = (float)((i * 7 + t) % 13) - 6.0f;
    for (int i = 0; i < K * N; i++) B[t][i] = (float)((i * 5 + t) % 11) - 5.0f;
    ftc_matmul(false, false, M, N, K, 1.0f, A[t], K, B[t], N, 0.0f, C[t], N);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0; /* small integers: exact in f32 */
            for (int k = 0; k < K; k++) s += (double)A[t][i * K + k] * B[t][k * N + j];
            if (C[t][i * N + j] != (float)s) bad++;
        }
    __atomic_add_fetch(&((inside_ctx *)ctx)->failures, bad, __ATOMIC_RELAXED);
}
static void test_inside_parallel_region(void **state) {
    (void)state;
    const char *paths[] = {"avx512", "openblas", "generic"};
    int before = ftc_threads();
    ftc_threads_set(2);
    for (int p = 0; p < 3; p++) {
        if (!ftc_matmul_set_backend(paths[p])) continue;
        inside_ctx c = {0};
        ftc_parallel_for(2, inside_item, &c);
        if (c.failures) fail_msg("%s: %d wrong values inside a pool job", paths[p], c.failures);
    }
    ftc_threads_set(before);
    ftc_matmul_set_backend("auto");
}

/* ---- bf16 ---- */

static double check_bf16_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta, ftc_mm_type at,
                              ftc_mm_type bt, ftc_rng *r, const char *what) {
    int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 3, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
    float *Ar = malloc(sizeof(float) * na), *Br = malloc(sizeof(float) * nb); /* bf16-rounded copies, as f32 */
    uint16_t *Ah = malloc(2 * na), *Bh = malloc(2 * nb);
    float *C0 = malloc(sizeof(float) * nc), *C = malloc(sizeof(float) * nc);
    assert_true(A && B && Ar && Br && Ah && Bh && C0 && C);
    fill(A, na, r);
    fill(B, nb, r);
    fill(C0, nc, r);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++) C0[i] = NAN;
    for (size_t i = 0; i < na; i++) Ah[i] = ftc_f32_to_bf16(A[i]), Ar[i] = ftc_bf16_to_f32(Ah[i]);
    for (size_t i = 0; i < nb; i++) Bh[i] = ftc_f32_to_bf16(B[i]), Br[i] = ftc_bf16_to_f32(Bh[i]);
    memcpy(C, C0, sizeof(float) * nc);
    ftc_matmul_bf16(ta, tb, M, N, K, alpha, at == FTC_MM_BF16 ? (const void *)Ah : A, at, lda,
                    bt == FTC_MM_BF16 ? (const void *)Bh : B, bt, ldb, beta, C, ldc);
    double worst = check(ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, beta, C0, C, ldc, what);
    free(A), free(B), free(Ar), free(Br), free(Ah), free(Bh), free(C0), free(C);
    return worst;
}

/* The bf16 tile's variants for panels of 4 and 8 valid rows (a 256-row prompt chunk ends in a 4-row panel)
 * against the full 12-row tile, bit for bit: M = 252 + r puts rows 252.. in a panel of r rows; the same rows
 * as the last r rows of A shifted by r (M = 252, every panel full) take the full tile. Prefill's layout: A f32
 * activations, B bf16 weights read as op(B) = W^T; K past the 512-deep slice, beta 0 and 1. */
static void test_bf16_short_panels_match_full_tile(void **state) {
    (void)state;
    if (!use_avx512_bf16()) return;
    ftc_rng r;
    ftc_rng_seed(&r, 11);
    const int N = 96, K = 600, lda = K + 1, ldb = K + 3, ldc = N + 2, Mmax = 252 + 11;
    float *A = malloc(sizeof(float) * (size_t)Mmax * lda), *W = malloc(sizeof(float) * (size_t)N * ldb);
    uint16_t *Wh = malloc(2 * (size_t)N * ldb);
    float *C = malloc(sizeof(float) * (size_t)Mmax * ldc), *C2 = malloc(sizeof(float) * (size_t)Mmax * ldc);
    assert_true(A && W && Wh && C && C2);
    fill(A, (size_t)Mmax * lda, &r);
    fill(W, (size_t)N * ldb, &r);
    for (size_t i = 0; i < (size_t)N * ldb; i++) Wh[i] = ftc_f32_to_bf16(W[i]);
    int checked = 0;
    for (int tail = 1; tail <= 11; tail++)
        for (int b = 0; b < 2; b++) {
            float beta = (float)b;
            int M = 252 + tail;
            fill(C, (size_t)Mmax * ldc, &r);
            fill(C2, (size_t)Mmax * ldc, &r);
            memcpy(C2 + (size_t)(252 - tail) * ldc, C + (size_t)252 * ldc, sizeof(float) * (size_t)tail * ldc);
            ftc_matmul_bf16(false, true, M, N, K, 1.0f, A, FTC_MM_F32, lda, Wh, FTC_MM_BF16, ldb, beta, C, ldc);
            ftc_matmul_bf16(false, true, 252, N, K, 1.0f, A + (size_t)tail * lda, FTC_MM_F32, lda, Wh, FTC_MM_BF16,
                            ldb, beta, C2, ldc);
            for (int i = 252; i < M; i++)
                for (int j = 0; j < N; j++) {
                    float x = C[(size_t)i * ldc + j], y = C2[(size_t)(i - tail) * ldc + j];
                    if (memcmp(&x, &y, 4) != 0) {
                        fprintf(stderr, "tail %d beta %g: C[%d][%d] = %.9g in a short panel, %.9g in a full one\n",
                                tail, (double)beta, i, j, (double)x, (double)y);
                        fail();
                    }
                    checked++;
                }
        }
    printf("# bf16 short panels: %d elements equal to the full tile's bits\n", checked);
    free(A), free(W), free(Wh), free(C), free(C2);
    reset_path();
}

/* Weights stored bf16 (N x K) are packed a whole 32-column sliver at a time by their own transpose (issue 24); f32
 * weights, and a sliver's last columns, by the generic one. Both must lay out the same pair words: a product
 * with the bf16 weights has the bits of the same product with those weights widened to f32 (exact: bf16 -> f32 ->
 * bf16 round-trips, no subnormals here). Ks: the 64-byte steps only, a tail of 8 values, of one pair, one shorter
 * than a step, odd and past the 512-deep slice; Ns: whole slivers and a partial last one; M past the skinny products. */
static void test_bf16_weight_slivers_same_bits(void **state) {
    (void)state;
    if (!use_avx512_bf16()) return;
    ftc_rng r;
    ftc_rng_seed(&r, 13);
    const int Ks[] = {512, 40, 31, 1031, 64, 34}, Ns[] = {64, 70, 33}, Ms[] = {20, 37, 260};
    int checked = 0;
    for (int ik = 0; ik < 6; ik++)
        for (int in = 0; in < 3; in++)
            for (int im = 0; im < 3; im++) {
                int M = Ms[im], N = Ns[in], K = Ks[ik], lda = K + 1, ldb = K + 5, ldc = N + 3;
                float beta = (float)((ik + in + im) % 2);
                float *A = malloc(sizeof(float) * (size_t)M * lda), *Wf = malloc(sizeof(float) * (size_t)N * ldb);
                uint16_t *Wh = malloc(2 * (size_t)N * ldb);
                float *C = malloc(sizeof(float) * (size_t)M * ldc), *C2 = malloc(sizeof(float) * (size_t)M * ldc);
                assert_true(A && Wf && Wh && C && C2);
                fill(A, (size_t)M * lda, &r);
                fill(Wf, (size_t)N * ldb, &r);
                for (size_t i = 0; i < (size_t)N * ldb; i++) {
                    Wh[i] = ftc_f32_to_bf16(Wf[i]);
                    uint32_t bits = (uint32_t)Wh[i] << 16;
                    memcpy(Wf + i, &bits, 4);
                }
                fill(C, (size_t)M * ldc, &r);
                memcpy(C2, C, sizeof(float) * (size_t)M * ldc);
                ftc_matmul_bf16(false, true, M, N, K, 1.0f, A, FTC_MM_F32, lda, Wh, FTC_MM_BF16, ldb, beta, C, ldc);
                ftc_matmul_bf16(false, true, M, N, K, 1.0f, A, FTC_MM_F32, lda, Wf, FTC_MM_F32, ldb, beta, C2, ldc);
                if (memcmp(C, C2, sizeof(float) * (size_t)M * ldc) != 0) {
                    for (size_t i = 0; i < (size_t)M * ldc; i++)
                        if (memcmp(C + i, C2 + i, 4) != 0) {
                            fprintf(stderr, "M %d N %d K %d: C[%zu][%zu] = %.9g with bf16 weights, %.9g with f32\n", M,
                                    N, K, i / ldc, i % ldc, (double)C[i], (double)C2[i]);
                            break;
                        }
                    fail();
                }
                checked += M * N;
                free(A), free(Wf), free(Wh), free(C), free(C2);
            }
    printf("# bf16 weight slivers: %d elements equal to the f32-weight product's bits\n", checked);
    reset_path();
}

static void test_bf16_every_layout_type_and_edge(void **state) {
    (void)state;
    ftc_rng r;
    ftc_rng_seed(&r, 7);
    const char *paths[] = {"generic", "avx512", "avx2"};
    for (int p = 0; p < 3; p++) {
        if (!ftc_matmul_set_backend(paths[p])) {
            printf("# bf16 behind backend %s not available: skipped\n", paths[p]);
            continue;
        }
        const char *impl = ftc_matmul_bf16_backend();
        if (p == 1 && strcmp(impl, "avx512bf16") != 0) printf("# no AVX512-BF16 here: avx512 falls back to %s\n", impl);
        if (p == 2) assert_string_equal(impl, "avx2");
        int cases = 0;
        double worst = 0;
        for (int layout = 0; layout < 4; layout++)
            for (int types = 0; types < 4; types++) {
                bool ta = layout & 1, tb = layout & 2;
                ftc_mm_type at = types & 1 ? FTC_MM_BF16 : FTC_MM_F32, bt = types & 2 ? FTC_MM_BF16 : FTC_MM_F32;
                for (int im = 0; im < N_SIZES; im++) {
                    /* M walks all sizes; N and K take the others in turn, so all meet in 16 combos */
                    int M = sizes[im], N = sizes[(im + layout + 1) % N_SIZES], K = sizes[(im + types + 2) % N_SIZES];
                    if ((double)M * N * K > 257.0 * 33 * 100) N = 7;
                    int ab = (im + types) % 4;
                    char what[112];
                    snprintf(what, sizeof what, "bf16 %s ta=%d tb=%d at=%d bt=%d M=%d N=%d K=%d alpha=%g beta=%g", impl,
                             ta, tb, at, bt, M, N, K, (double)alphas[ab], (double)betas[ab]);
                    double w = check_bf16_case(ta, tb, M, N, K, alphas[ab], betas[ab], at, bt, &r, what);
                    if (w > worst) worst = w;
                    cases++;
                }
                /* K past the 512-deep block and odd; threaded */
                check_bf16_case(ta, tb, 9, 40, 1031, 1.0f, 1.0f, at, bt, &r, "bf16 deep");
                check_bf16_case(ta, tb, 260, 100, 101, 0.5f, 0.0f, at, bt, &r, "bf16 threaded");
                /* narrow C (LoRA rank): dot products when A is read along K, C^T otherwise; K tail of 16 */
                check_bf16_case(ta, tb, 150, 9, 70, 1.0f, 0.5f, at, bt, &r, "bf16 narrow");
                cases += 3;
                if (p == 2) { /* avx2: operands large enough that their rounding is split between threads */
                    check_bf16_case(ta, tb, 600, 40, 450, 1.0f, 0.0f, at, bt, &r, "bf16 avx2 large A");
                    check_bf16_case(ta, tb, 20, 600, 450, 0.5f, 1.0f, at, bt, &r, "bf16 avx2 large B");
                    /* B past the 8 MB panel of its f32 copy (4608 columns at K = 450): two panels */
                    check_bf16_case(ta, tb, 3, 4700, 450, 1.0f, 0.5f, at, bt, &r, "bf16 avx2 B panels");
                    cases += 3;
                }
            }
        printf("# bf16 %s: %d cases, worst error %.3f of the bound\n", impl, cases, worst);
    }
    ftc_matmul_set_backend("auto");
}

/* A threaded job split by rows gives each thread several row chunks, which share one packed op(B) per thread
 * (keyed by the job); one split by columns shares the packed op(A) the same way. The same buffers with new
 * values in A and B must be packed again: a second call on the same pointers checks that no packed operand
 * outlives its job. Row splits: K past both K blocks (256 f32, 512 bf16), 1100 rows = 4 chunks, and once N past
 * the 3072-column block. Column splits: 250 rows (past the 240-row A block) x 800 columns = 3 chunks, and 16
 * chunks of 3100 columns (each past the column block, so one call reads its packed op(A) again). */
static void test_chunks_share_packed_operands(void **state) {
    (void)state;
    if (!ftc_matmul_set_backend("avx512")) skip();
    int threads_before = ftc_threads();
    ftc_threads_set(2);
    ftc_rng r;
    ftc_rng_seed(&r, 11);
    const struct { int M, N, K, layouts; } shapes[] = {
        {1100, 64, 600, 4}, {1100, 3100, 20, 1}, {250, 800, 520, 4}, {13, 49600, 40, 2}};
    for (int s = 0; s < 4; s++)
        for (int layout = 0; layout < shapes[s].layouts; layout++)
            for (int bf16 = 0; bf16 < 2; bf16++) {
                int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
                bool ta = layout & 1, tb = layout & 2;
                int lda = ta ? M : K, ldb = tb ? K : N;
                size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
                float *A = malloc(4 * na), *B = malloc(4 * nb), *C = malloc(4 * nc), *C0 = calloc(nc, 4);
                assert_true(A && B && C && C0);
                for (int call = 0; call < 2; call++) {
                    fill(A, na, &r); /* new values, same pointers */
                    fill(B, nb, &r);
                    if (bf16) { /* bf16 values, so the f32 reference is exact on them */
                        for (size_t i = 0; i < na; i++) A[i] = ftc_bf16_to_f32(ftc_f32_to_bf16(A[i]));
                        for (size_t i = 0; i < nb; i++) B[i] = ftc_bf16_to_f32(ftc_f32_to_bf16(B[i]));
                        ftc_matmul_bf16(ta, tb, M, N, K, 1.0f, A, FTC_MM_F32, lda, B, FTC_MM_F32, ldb, 0.0f, C, N);
                    } else {
                        ftc_matmul(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
                    }
                    char what[96];
                    snprintf(what, sizeof what, "shared packed operand: %s ta=%d tb=%d M=%d N=%d K=%d call %d",
                             bf16 ? "bf16" : "fp32", ta, tb, M, N, K, call);
                    check(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C0, C, N, what);
                }
                free(A), free(B), free(C), free(C0);
            }
    ftc_threads_set(threads_before);
    ftc_matmul_set_backend("auto");
}

/* The array conversions agree bit for bit with the scalar ones, on ties, NaN, infinities and subnormals, in
 * both the vector body and the tail. */
static void test_bf16_conversions(void **state) {
    (void)state;
    const uint32_t special[] = {
        0x3f808000u, /* 1 + 2^-8: a tie, rounds down to even 1.0 */
        0x3f818000u, /* a tie that rounds up to even */
        0x3f808001u, /* just above a tie: up */
        0x7f7fffffu, /* FLT_MAX rounds to +inf */
        0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u /* signalling NaN: must stay NaN */, 0xffc00001u,
        0x00000001u, 0x80008000u, 0x00018000u, 0x00000000u, 0x80000000u, 0x3f800000u, 0xbf7fffffu,
    };
    enum { N = 16 * 7 + 5 };
    float in[N], back[N];
    uint16_t out[N];
    ftc_rng r;
    ftc_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        uint32_t bits = i < 16 ? special[i] : i < 32 ? special[i - 16] ^ 0x80000000u : (uint32_t)ftc_rng_u64(&r);
        if (i >= N - 5) bits = special[N - 1 - i]; /* the scalar tail too */
        memcpy(&in[i], &bits, 4);
    }
    const char *paths[] = {"auto", "avx2"}; /* avx2: the AVX2 copy, also on AVX-512 CPUs */
    for (int p = 0; p < 2; p++) {
        if (!ftc_matmul_set_backend(paths[p])) continue;
        ftc_f32_to_bf16_n(in, out, N);
        for (int i = 0; i < N; i++) assert_int_equal(out[i], ftc_f32_to_bf16(in[i]));
        assert_int_equal(out[0], 0x3f80);
        assert_int_equal(out[1], 0x3f82);
        assert_int_equal(out[2], 0x3f81);
        assert_int_equal(out[3], 0x7f80);
        assert_true((out[7] & 0x7f80) == 0x7f80 && (out[7] & 0x7f) != 0);
        ftc_bf16_to_f32_n(out, back, N);
        for (int i = 0; i < N; i++) {
            uint32_t b;
            memcpy(&b, &back[i], 4);
            assert_int_equal(b, (uint32_t)out[i] << 16);
        }
    }
    ftc_matmul_set_backend("auto");
}

/* Decoding's skinny products (matmul_skinny.c): 1..16 rows of A against a weight read along K (op(B) = W^T),
 * every row count once, K with a tail of the 16/32-wide vectors, enough W rows to be split between threads
 * (and a W row count that is no multiple of the kernel's 4); f32 and bf16 with every operand type. */
static void test_skinny_rows(void **state) {
    (void)state;
    ftc_rng r;
    ftc_rng_seed(&r, 23);
    int threads_before = ftc_threads();
    ftc_threads_set(2);
    const char *paths[] = {"generic", "avx512:fma", "avx512:dpbf16", "avx2"};
    for (int p = 0; p < 4; p++) {
        if (!set_path(paths[p])) continue;
        for (int M = 1; M <= 17; M++) {
            int N = M % 2 ? 1037 : 130, K = M % 3 ? 581 : M % 2 ? 64 : 77; /* 77: a full 8 after the 16s, then 5 */
            char what[96];
            snprintf(what, sizeof what, "skinny %s fp32 M=%d N=%d K=%d", paths[p], M, N, K);
            run_case(false, true, M, N, K, M % 4 == 3 ? -0.5f : 1.0f, M % 2 ? 0.0f : 0.5f, &r, what);
            ftc_mm_type at = M % 2 ? FTC_MM_F32 : FTC_MM_BF16, bt = M % 4 < 2 ? FTC_MM_BF16 : FTC_MM_F32;
            snprintf(what, sizeof what, "skinny %s bf16 M=%d N=%d K=%d at=%d bt=%d", paths[p], M, N, K, at, bt);
            check_bf16_case(false, true, M, N, K, 1.0f, M % 2 ? 1.0f : 0.0f, at, bt, &r, what);
            check_bf16_case(false, true, M, N, K, 2.0f, 0.0f, at, FTC_MM_BF16, &r, what);
        }
    }
    ftc_threads_set(threads_before);
    reset_path();
}

/* The activation operand of a bf16 product is rounded to bf16 (nearest even) on every backend and in every path:
 * the decode skinny kernels (1..16 rows of A against W read along K), the GEMM (more rows), the generic loop. This
 * is what llama.cpp's CPU matmul does on BF16 weights (its vec_dot_type for BF16 is BF16), so ftc generate
 * --precision bf16 on a bf16 export computes the same products. Values are chosen so that every sum is exact in
 * f32 whatever its order: A = +-(m/128 + d/1024), m in [128, 256), d in 0..7 (below, above and at half the bf16
 * step of 1/128: rounds down, up, to even), W small integers (bf16-exact); a product is a multiple of 2^-10 below
 * 2^5, a sum of K <= 200 of them below 2^13: 23 bits. So each backend's C must equal the exact sum of the rounded
 * products bit for bit, and ftc_matmul (f32) must equal the exact sum of the unrounded ones: unchanged. */
static void test_bf16_rounds_activations(void **state) {
    (void)state;
    ftc_rng r;
    ftc_rng_seed(&r, 31);
    int threads_before = ftc_threads();
    ftc_threads_set(2);
    static const int Ms[] = {1, 2, 3, 4, 5, 9, 16, 17, 40};
    static const int Ks[] = {1, 31, 32, 33, 77, 200};
    const int N = 37;
    const char *paths[] = {"generic", "avx512:fma", "avx512:dpbf16", "avx2"};
    for (int mi = 0; mi < 9; mi++)
        for (int ki = 0; ki < 6; ki++) {
            int M = Ms[mi], K = Ks[ki];
            float *A = malloc(sizeof(float) * (size_t)M * K), *W = malloc(sizeof(float) * (size_t)N * K);
            uint16_t *Ah = malloc(2 * (size_t)M * K), *Wh = malloc(2 * (size_t)N * K);
            double *rounded = malloc(sizeof(double) * (size_t)M * N), *plain = malloc(sizeof(double) * (size_t)M * N);
            float *C = malloc(sizeof(float) * (size_t)M * N);
            assert_true(A && W && Ah && Wh && rounded && plain && C);
            for (int i = 0; i < M * K; i++) {
                int m = 128 + (int)ftc_rng_below(&r, 128), d = (int)ftc_rng_below(&r, 8);
                A[i] = (ftc_rng_below(&r, 2) ? -1.0f : 1.0f) * ((float)m / 128.0f + (float)d / 1024.0f);
                Ah[i] = ftc_f32_to_bf16(A[i]);
            }
            for (int i = 0; i < N * K; i++) {
                W[i] = (float)((int)ftc_rng_below(&r, 17) - 8);
                Wh[i] = ftc_f32_to_bf16(W[i]);
                assert_true(ftc_bf16_to_f32(Wh[i]) == W[i]);
            }
            int differ = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0, t = 0;
                    for (int k = 0; k < K; k++) {
                        s += (double)ftc_bf16_to_f32(Ah[(size_t)i * K + k]) * W[(size_t)j * K + k];
                        t += (double)A[(size_t)i * K + k] * W[(size_t)j * K + k];
                    }
                    rounded[(size_t)i * N + j] = s, plain[(size_t)i * N + j] = t;
                    differ += s != t;
                }
            assert_true(differ > 0); /* the test can tell rounded from unrounded activations */
            for (int p = 0; p < 4; p++) {
                if (!set_path(paths[p])) continue;
                for (int types = 0; types < 2; types++) { /* A given as f32 (rounded by the matmul) or as bf16 */
                    ftc_mm_type at = types ? FTC_MM_BF16 : FTC_MM_F32;
                    ftc_matmul_bf16(false, true, M, N, K, 1.0f, types ? (const void *)Ah : A, at, K, Wh, FTC_MM_BF16, K,
                                    0.0f, C, N);
                    for (int e = 0; e < M * N; e++)
                        if ((double)C[e] != rounded[e]) {
                            fprintf(stderr, "bf16 %s (%s) at=%d M=%d K=%d: C[%d] = %.9g, rounded activations give %.9g, "
                                    "unrounded %.9g\n", paths[p], ftc_matmul_bf16_backend(), at, M, K, e, (double)C[e],
                                    rounded[e], plain[e]);
                            fail();
                        }
                }
                ftc_matmul(false, true, M, N, K, 1.0f, A, K, W, K, 0.0f, C, N); /* f32: no rounding */
                for (int e = 0; e < M * N; e++)
                    if ((double)C[e] != plain[e]) {
                        fprintf(stderr, "f32 %s M=%d K=%d: C[%d] = %.9g, exact %.9g\n", paths[p], M, K, e, (double)C[e],
                                plain[e]);
                        fail();
                    }
            }
            free(A), free(W), free(Ah), free(Wh), free(rounded), free(plain), free(C);
        }
    ftc_threads_set(threads_before);
    reset_path();
}

/* AVX2 skinny kernels: the last row of an odd M (decoding's one row) streams eight rows of W at once, pairs of rows
 * four; both add K's 8-value blocks in the same order, so a row of C has the same bits alone as in a pair (and the
 * batched decode the same as one sequence's). N = 1037: blocks of 8, a block of 4 and 1 left; K with tails. */
static void test_skinny_one_row_matches_pairs(void **state) {
    (void)state;
    if (!ftc_matmul_set_backend("avx2")) {
        ftc_matmul_set_backend("auto");
        skip();
    }
    int threads_before = ftc_threads();
    ftc_rng r;
    ftc_rng_seed(&r, 24);
    const int N = 1037, Ks[] = {581, 77, 576, 3};
    for (int th = 1; th <= 2; th++) {
        ftc_threads_set(th);
        for (int ki = 0; ki < 4; ki++) {
            int K = Ks[ki];
            float *A = malloc(sizeof(float) * 3 * K), *W = malloc(sizeof(float) * (size_t)N * K);
            float *C1 = malloc(sizeof(float) * N), *C3 = malloc(sizeof(float) * 3 * N);
            uint16_t *Wh = malloc(sizeof(uint16_t) * (size_t)N * K);
            assert_non_null(A), assert_non_null(W), assert_non_null(C1), assert_non_null(C3), assert_non_null(Wh);
            fill(A, 3 * (size_t)K, &r);
            fill(W, (size_t)N * K, &r);
            ftc_f32_to_bf16_n(W, Wh, (size_t)N * K);
            for (int row = 0; row < 3; row++) { /* rows 0 and 1 go as a pair in M = 3, row 2 alone */
                ftc_matmul(false, true, 3, N, K, 1.0f, A, K, W, K, 0.0f, C3, N);
                ftc_matmul(false, true, 1, N, K, 1.0f, A + (size_t)row * K, K, W, K, 0.0f, C1, N);
                assert_memory_equal(C1, C3 + (size_t)row * N, sizeof(float) * N);
                ftc_matmul_bf16(false, true, 3, N, K, 1.0f, A, FTC_MM_F32, K, Wh, FTC_MM_BF16, K, 0.0f, C3, N);
                ftc_matmul_bf16(false, true, 1, N, K, 1.0f, A + (size_t)row * K, FTC_MM_F32, K, Wh, FTC_MM_BF16, K, 0.0f,
                                C1, N);
                assert_memory_equal(C1, C3 + (size_t)row * N, sizeof(float) * N);
            }
            free(A), free(W), free(C1), free(C3), free(Wh);
        }
    }
    ftc_threads_set(threads_before);
    ftc_matmul_set_backend("auto");
}

/* Skinny kernels, every row count, AVX2 and AVX-512: each row of C has the bits of that row of A alone (a sequence
 * decodes the same in a batch of any size), f32 and bf16, 1 and 2 threads. AVX2: 1..16 rows of A go in groups of
 * 4 (then 2 or 3; a last odd one alone) through 4x3, 3x3, 2x4 and narrower register tiles over slices of W's 8-row
 * blocks, a lone row through the 8-row kernel; every tile adds K's 8-value blocks in order per (row of A, row of W)
 * and reduces by the same tree. AVX-512: groups of 4 rows of A (then 1..3) against 4 rows of W, or against one row
 * of W streamed alone (ftc_matmul_set_skinny: rows, and zen4's mix by row count with far-prefetching tiles,
 * against the tiles' one-row result), 16-value blocks (bf16: W widened in registers, the same FMAs as f32; vdpbf16ps: 32-value blocks). N = 1037 (8-row blocks, a 4-row block, 1 row left: the
 * slices' 1- and 2-row tails), K with tails (K mod 8 = 5, 3; K mod 16 = 13, 3) and without (576, 1536). */
static void test_skinny_every_row_count_matches_one_row(void **state) {
    (void)state;
    int threads_before = ftc_threads(), ran = 0;
    const char *paths[] = {"avx2", "avx512:fma", "avx512:dpbf16"};
    for (int p = 0; p < 3; p++) {
        if (!set_path(paths[p])) continue;
        ran++;
        ftc_rng r;
        ftc_rng_seed(&r, 25);
        const int N = 1037, Ks[] = {77, 576, 3, 1536};
        for (int ki = 0; ki < 4; ki++) {
            int K = Ks[ki];
            ftc_threads_set(ki % 2 ? 2 : 1);
            float *A = malloc(sizeof(float) * 17 * K), *W = malloc(sizeof(float) * (size_t)N * K);
            float *one = malloc(sizeof(float) * 17 * N), *one16 = malloc(sizeof(float) * 17 * N);
            float *C = malloc(sizeof(float) * 17 * N);
            uint16_t *Wh = malloc(sizeof(uint16_t) * (size_t)N * K);
            assert_true(A && W && one && one16 && C && Wh);
            fill(A, 17 * (size_t)K, &r);
            fill(W, (size_t)N * K, &r);
            ftc_f32_to_bf16_n(W, Wh, (size_t)N * K);
            assert_true(ftc_matmul_set_skinny("tiles")); /* the reference: 4-row tiles of W */
            for (int i = 0; i < 17; i++) {
                ftc_matmul(false, true, 1, N, K, 1.0f, A + (size_t)i * K, K, W, K, 0.0f, one + (size_t)i * N, N);
                ftc_matmul_bf16(false, true, 1, N, K, 1.0f, A + (size_t)i * K, FTC_MM_F32, K, Wh, FTC_MM_BF16, K,
                                0.0f, one16 + (size_t)i * N, N);
            }
            if (p < 2) { /* bf16 = the f32 kernel on the operands rounded to bf16 (exact products, the same f32
                          * additions); vdpbf16ps adds two products a step, so its last bits differ */
                float *Ar = malloc(sizeof(float) * 17 * K), *Wr = malloc(sizeof(float) * (size_t)N * K);
                assert_true(Ar && Wr);
                for (size_t e = 0; e < 17 * (size_t)K; e++) Ar[e] = ftc_bf16_to_f32(ftc_f32_to_bf16(A[e]));
                ftc_bf16_to_f32_n(Wh, Wr, (size_t)N * K);
                for (int i = 0; i < 17; i++)
                    ftc_matmul(false, true, 1, N, K, 1.0f, Ar + (size_t)i * K, K, Wr, K, 0.0f, C + (size_t)i * N, N);
                assert_memory_equal(C, one16, sizeof(float) * 17 * N);
                free(Ar), free(Wr);
            }
            /* W streamed a row at a time for every row count, or for 1-2 rows then far-prefetching tiles: the
             * same bits */
            const char *hows[] = {"tiles", "rows", "zen4"};
            for (int hi = 0; hi < 3; hi++) {
                assert_true(ftc_matmul_set_skinny(hows[hi]));
                assert_string_equal(ftc_matmul_skinny(), hows[hi]);
                for (int M = 1; M <= 16; M++) { /* 16: the most rows the skinny kernels take (17 go to the GEMM) */
                    memset(C, 0xff, sizeof(float) * 17 * N);
                    ftc_matmul(false, true, M, N, K, 1.0f, A, K, W, K, 0.0f, C, N);
                    assert_memory_equal(C, one, sizeof(float) * (size_t)M * N);
                    memset(C, 0xff, sizeof(float) * 17 * N);
                    ftc_matmul_bf16(false, true, M, N, K, 1.0f, A, FTC_MM_F32, K, Wh, FTC_MM_BF16, K, 0.0f, C, N);
                    assert_memory_equal(C, one16, sizeof(float) * (size_t)M * N);
                }
            }
            assert_true(ftc_matmul_set_skinny("auto"));
            free(A), free(W), free(one), free(one16), free(C), free(Wh);
        }
    }
    ftc_threads_set(threads_before);
    reset_path();
    if (!ran) skip();
}

/* ftc_parallel_for runs every index exactly once, on the pool's threads; a call from inside it runs alone. */
typedef struct {
    int counts[300];
    int inner;
} pf_ctx;
static void pf_inner(void *ctx, int i) {
    pf_ctx *c = ctx;
    __atomic_add_fetch(&c->counts[100 + i], 1, __ATOMIC_RELAXED);
}
static void pf_body(void *ctx, int i) {
    pf_ctx *c = ctx;
    __atomic_add_fetch(&c->counts[i], 1, __ATOMIC_RELAXED);
    if (i == 5) ftc_parallel_for(200, pf_inner, c); /* nested: the pool is busy, so it runs on this thread */
}
static void test_parallel_for(void **state) {
    (void)state;
    int threads_before = ftc_threads();
    ftc_threads_set(2);
    pf_ctx c;
    memset(&c, 0, sizeof c);
    ftc_parallel_for(100, pf_body, &c);
    for (int i = 0; i < 300; i++) assert_int_equal(c.counts[i], 1);
    ftc_parallel_for(0, pf_body, &c);
    ftc_parallel_for(1, pf_body, &c);
    assert_int_equal(c.counts[0], 2);
    ftc_threads_set(threads_before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_selection),
        cmocka_unit_test(test_fp32_every_backend_layout_and_edge),
        cmocka_unit_test(test_degenerate_alpha_and_k),
        cmocka_unit_test(test_inside_parallel_region),
        cmocka_unit_test(test_bf16_every_layout_type_and_edge),
        cmocka_unit_test(test_bf16_short_panels_match_full_tile),
        cmocka_unit_test(test_bf16_weight_slivers_same_bits),
        cmocka_unit_test(test_bf16_conversions),
        cmocka_unit_test(test_chunks_share_packed_operands),
        cmocka_unit_test(test_skinny_rows),
        cmocka_unit_test(test_bf16_rounds_activations),
        cmocka_unit_test(test_skinny_one_row_matches_pairs),
        cmocka_unit_test(test_skinny_every_row_count_matches_one_row),
        cmocka_unit_test(test_parallel_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

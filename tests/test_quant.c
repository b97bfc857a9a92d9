/* Block quantization (include/ftc/quant.h): quantizers bit-identical to the references
 * (tools/gen_quant_fixtures.py: gguf.quants.quantize for Q8_0/Q4_0/Q4_1, ggml's quantize_row_q4_K_ref for
 * Q4_K), the two decode paths bit-identical, and the fused matmuls equal to dequantize + f32 matmul. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/gguf.h"
#include "ftc/matmul.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "ftc/threads.h"
#include "../src/kernels/cpu/quant_internal.h"

static const int TYPES[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1, FTC_GGML_Q4_K, FTC_QUANT_NF4};
#define NTYPES 5
/* the fused matmuls also on NF4DQ (whole-tensor quantization, test_nf4dq_matches_bitsandbytes) */
static const int QM_TYPES[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1, FTC_GGML_Q4_K, FTC_QUANT_NF4, FTC_QUANT_NF4DQ};
#define QM_NTYPES 6

static const char *fixture(const char *rel) {
    static char buf[1024];
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/tests/fixtures/quant/%s", src ? src : ".", rel);
    return buf;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float randn(void) { /* sum of 4 uniforms, centred: roughly normal, unit variance */
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)rnd() / 4294967296.0f;
    return (s - 2.0f) * 1.7320508f;
}

static void test_quantize_matches_reference(void **state) {
    (void)state;
    ftc_gguf *g;
    ftc_err e = {0};
    if (ftc_gguf_open(fixture("quant.gguf"), &g, &e)) fail_msg("%s", e.msg);
    long blocks[NTYPES] = {0}, bytes_differ[NTYPES] = {0}, cases[NTYPES] = {0};
    for (int i = 0; i < ftc_gguf_tensor_count(g); i++) {
        const ftc_gguf_tensor *want = ftc_gguf_tensor_at(g, i);
        if (!ftc_quant_supported(want->type)) continue;
        char src_name[128];
        snprintf(src_name, sizeof src_name, "%s.src", want->name);
        const ftc_gguf_tensor *src = ftc_gguf_find_tensor(g, src_name);
        assert_non_null(src);
        assert_int_equal(src->type, FTC_GGML_F32);
        assert_int_equal(src->numel, want->numel);
        int64_t ne0 = want->shape[want->ndim - 1], rows = want->numel / ne0;
        size_t rb = ftc_quant_row_bytes(want->type, ne0);
        assert_int_equal(rb * (size_t)rows, want->nbytes);
        uint8_t *got = malloc(want->nbytes);
        float *x = malloc(sizeof(float) * (size_t)want->numel);
        memcpy(x, src->data, sizeof(float) * (size_t)want->numel);
        for (int64_t r = 0; r < rows; r++) ftc_quantize_row(want->type, x + r * ne0, got + r * rb, ne0);
        int t = 0;
        while (TYPES[t] != want->type) t++;
        cases[t]++;
        blocks[t] += (long)(want->numel / ftc_quant_block(want->type));
        for (size_t k = 0; k < want->nbytes; k++) bytes_differ[t] += got[k] != want->data[k];
        if (memcmp(got, want->data, want->nbytes)) {
            for (size_t k = 0; k < want->nbytes; k++)
                if (got[k] != want->data[k]) {
                    print_message("%s: first differing byte %zu (block %zu): %02x, reference %02x\n", want->name, k,
                                  k / (size_t)ftc_quant_block_bytes(want->type), got[k], want->data[k]);
                    break;
                }
        }
        free(got);
        free(x);
    }
    for (int t = 0; t < NTYPES - 1; t++) { /* NF4: test_nf4_matches_bitsandbytes */
        print_message("%-5s %2ld cases %5ld blocks, %ld bytes differ from the reference\n", ftc_quant_name(TYPES[t]),
                      cases[t], blocks[t], bytes_differ[t]);
        assert_true(cases[t] >= 8);
        assert_int_equal(bytes_differ[t], 0);
    }
    ftc_gguf_close(g);
}

/* random block bytes with finite scales: both decoders give the same bits, equal to the GGUF reader's */
static void test_decoders_agree(void **state) {
    (void)state;
    for (int t = 0; t < NTYPES; t++) {
        int type = TYPES[t], bb = ftc_quant_block_bytes(type), blk = ftc_quant_block(type), nb = 300;
        uint8_t *raw = malloc((size_t)nb * bb);
        for (int i = 0; i < nb * bb; i++) raw[i] = (uint8_t)rnd();
        for (int k = 0; k < nb; k++) { /* the f16 scale fields: finite (normal and subnormal, signs) */
            uint16_t *h = (uint16_t *)(raw + (size_t)k * bb);
            if (type == FTC_QUANT_NF4) { /* f32 absmax: finite */
                float a = (float)(rnd() % 100000) * 1e-4f;
                memcpy(h, &a, 4);
                continue;
            }
            int nscales = type == FTC_GGML_Q8_0 || type == FTC_GGML_Q4_0 ? 1 : 2;
            for (int s = 0; s < nscales; s++) h[s] = (uint16_t)(rnd() % 0x7c00) | (uint16_t)(rnd() & 0x8000);
        }
        float *a = malloc(sizeof(float) * (size_t)nb * blk), *b = malloc(sizeof(float) * (size_t)nb * blk);
        ftc_quant_decoder(type, 0)(raw, a, nb);
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) { /* compiled for AVX-512 */
            ftc_quant_decoder(type, 2)(raw, b, nb);
            assert_memory_equal(a, b, sizeof(float) * (size_t)nb * blk);
        }
        if (__builtin_cpu_supports("avx2")) { /* the AVX2 copy */
            memset(b, 0, sizeof(float) * (size_t)nb * blk);
            ftc_quant_decoder(type, 1)(raw, b, nb);
            assert_memory_equal(a, b, sizeof(float) * (size_t)nb * blk);
        }
        /* the first block by hand */
        const uint8_t *p = raw;
        for (int i = 0; i < blk; i++) {
            float want;
            if (type == FTC_GGML_Q8_0) want = (float)(int8_t)p[2 + i] * ftc_f16_to_f32(*(const uint16_t *)p);
            else if (type == FTC_GGML_Q4_0)
                want = ftc_f16_to_f32(*(const uint16_t *)p) * (float)(((p[2 + i % 16] >> (4 * (i / 16))) & 15) - 8);
            else if (type == FTC_QUANT_NF4) {
                static const float lv[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f,
                                             -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
                                             -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
                                             0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f,
                                             0.5626170039176941f, 0.7229568362236023f, 1.0f};
                float am;
                memcpy(&am, p, 4);
                want = lv[(p[4 + i / 2] >> (i % 2 ? 0 : 4)) & 15] * am;
            } else if (type == FTC_GGML_Q4_1) {
                float q = ftc_f16_to_f32(*(const uint16_t *)p) * (float)((p[4 + i % 16] >> (4 * (i / 16))) & 15);
                want = q + ftc_f16_to_f32(*(const uint16_t *)(p + 2));
            } else {
                int g = i / 32, sc, m;
                ftc_q4k_scale_min(p + 4, g, &sc, &m);
                float dg = ftc_f16_to_f32(*(const uint16_t *)p) * (float)sc;
                float mg = ftc_f16_to_f32(*(const uint16_t *)(p + 2)) * (float)m;
                float q = dg * (float)((p[16 + (g / 2) * 32 + i % 32] >> (4 * (g % 2))) & 15);
                want = q - mg;
            }
            assert_memory_equal(&a[i], &want, 4);
        }
        free(raw);
        free(a);
        free(b);
    }
}

/* |got - want| <= tol * sum_k |x_k w_k| per output: f32 summation order only */
static void check_close(const float *got, const double *want, const double *mag, size_t n, double tol,
                        const char *what) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs(got[i] - want[i]) / (mag[i] + 1e-30);
        if (!(r <= worst)) worst = r;
    }
    if (!(worst <= tol)) fail_msg("%s: relative error %.3g > %.3g", what, worst, tol);
}

/* Y = X W^T and dX = dY W on packed blocks against the dequantized weight (double sums), for each type,
 * shapes across panel edges, every backend this CPU runs (decode paths) */
/* the reference X . Wd^T in double, and sum |x w| per output (check_close's scale) */
static void ref_product(double *ref, double *mag, const float *X, const float *Wd, int N, int I, int O) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double a = 0, m = 0;
            for (int k = 0; k < I; k++) {
                a += (double)X[(size_t)n * I + k] * Wd[(size_t)o * I + k];
                m += fabs((double)X[(size_t)n * I + k] * Wd[(size_t)o * I + k]);
            }
            ref[(size_t)n * O + o] = a, mag[(size_t)n * O + o] = m;
        }
}

static void test_qmatmul_matches_dequantized(void **state) {
    (void)state;
    const char *backends[] = {"generic", "avx512", "avx2"};
    /* N <= 16: the decoding path (panels of whole rows on the matmul threads); {3, 512, 400}: 7 panels;
     * on avx2, f32 Q8_0/Q4_0/Q4_1: the fused kernels instead (N = 1 matrix-vector, {1, 768, 133}: 3 chunks, 4-row
     * tail of 1; N = 2..16 test_qmatmul_rows_fused) */
    const struct { int N, I, O; } shapes[] = {{1, 256, 3}, {7, 1280, 70}, {70, 768, 130}, {33, 512, 64}, {3, 512, 400},
                                              {1, 768, 133}};
    const double tol = 1e-5;
    for (int be = 0; be < 3; be++) {
        if (!ftc_matmul_set_backend(backends[be])) {
            print_message("backend %s unavailable on this CPU: skipped\n", backends[be]);
            continue;
        }
        for (int t = 0; t < QM_NTYPES * 2; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                /* t >= QM_NTYPES: bf16 products; the reference takes the bf16 roundings of both operands */
                bool b16 = t >= QM_NTYPES;
                int type = QM_TYPES[t % QM_NTYPES], N = shapes[s].N, I = shapes[s].I, O = shapes[s].O;
                float *W = malloc(sizeof(float) * (size_t)O * I), *Wd = malloc(sizeof(float) * (size_t)O * I);
                float *X = malloc(sizeof(float) * (size_t)N * I), *Y = malloc(sizeof(float) * (size_t)N * O);
                float *dY = malloc(sizeof(float) * (size_t)N * O), *dX = malloc(sizeof(float) * (size_t)N * I);
                double *ref = malloc(sizeof(double) * (size_t)N * (I > O ? I : O));
                double *mag = malloc(sizeof(double) * (size_t)N * (I > O ? I : O));
                uint8_t *Wq = malloc(ftc_quant_tensor_bytes(type, O, I));
                for (size_t i = 0; i < (size_t)O * I; i++) W[i] = 0.05f * randn();
                for (size_t i = 0; i < (size_t)N * I; i++) X[i] = randn();
                for (size_t i = 0; i < (size_t)N * O; i++) dY[i] = randn();
                ftc_quantize_tensor(type, W, Wq, O, I);
                ftc_dequantize_tensor(type, Wq, Wd, O, I);
                float *Xr = malloc(sizeof(float) * (size_t)N * I), *dYr = malloc(sizeof(float) * (size_t)N * O);
                for (size_t i = 0; i < (size_t)N * I; i++) Xr[i] = b16 ? ftc_bf16_to_f32(ftc_f32_to_bf16(X[i])) : X[i];
                for (size_t i = 0; i < (size_t)N * O; i++) dYr[i] = b16 ? ftc_bf16_to_f32(ftc_f32_to_bf16(dY[i])) : dY[i];
                for (size_t i = 0; b16 && i < (size_t)O * I; i++) Wd[i] = ftc_bf16_to_f32(ftc_f32_to_bf16(Wd[i]));
                /* forward, beta 0 over NaN, then beta 1 accumulating a second time */
                for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = NAN;
                ftc_qmatmul_forward(Y, X, Wq, type, N, I, O, 0.0f, b16);
                ref_product(ref, mag, Xr, Wd, N, I, O);
                char what[128];
                snprintf(what, sizeof what, "%s forward %s%s N=%d I=%d O=%d", backends[be], ftc_quant_name(type),
                         b16 ? "/bf16" : "", N, I, O);
                check_close(Y, ref, mag, (size_t)N * O, tol, what);
                ftc_qmatmul_forward(Y, X, Wq, type, N, I, O, 1.0f, b16);
                for (size_t i = 0; i < (size_t)N * O; i++) {
                    ref[i] *= 2;
                    mag[i] *= 2;
                }
                check_close(Y, ref, mag, (size_t)N * O, tol, what);
                /* input gradient accumulates onto dX */
                for (size_t i = 0; i < (size_t)N * I; i++) dX[i] = 1.0f;
                ftc_qmatmul_backward_input(dX, dY, Wq, type, N, I, O, b16);
                for (int n = 0; n < N; n++)
                    for (int k = 0; k < I; k++) {
                        double a = 1.0, m = 1.0;
                        for (int o = 0; o < O; o++) {
                            a += (double)dYr[(size_t)n * O + o] * Wd[(size_t)o * I + k];
                            m += fabs((double)dYr[(size_t)n * O + o] * Wd[(size_t)o * I + k]);
                        }
                        ref[(size_t)n * I + k] = a;
                        mag[(size_t)n * I + k] = m;
                    }
                snprintf(what, sizeof what, "%s input grad %s%s N=%d I=%d O=%d", backends[be], ftc_quant_name(type),
                         b16 ? "/bf16" : "", N, I, O);
                check_close(dX, ref, mag, (size_t)N * I, tol, what);
                free(Xr), free(dYr), free(W), free(Wd), free(X), free(Y), free(dY), free(dX), free(ref), free(mag), free(Wq);
            }
    }
    ftc_matmul_set_backend("auto");
}

/* The bf16 products of Q8_0/Q4_0/Q4_1 past decoding's rows on AVX512-BF16 (qmatmul_bf16.c: blocks decoded
 * straight into the bf16 GEMM's packed layout) against what the panel path computed: the dequantized weight
 * rounded to bf16 and ftc_matmul_bf16 (the GEMM) on the same K slices (forward 512 columns of W, each slice added
 * onto Y after beta on the first; input grad 128 rows of W added onto dX), bit for bit. Shapes cross the slices'
 * and slivers' edges: I = 608 (512 + 96), 352 (a 256-column unit + 96), O = 70 / 20 / 10 (a sliver of 6, 20, 10
 * rows), O = 261 (input grad: slices 128 + 128 + 5, an odd last one), N = 17 / 40 / 100; N = 300: the packed
 * activations in passes over K (2 forward, 2 input grad: qmatmul_bf16.c's A_WORDS); 1 and 2 threads. Skipped
 * where the bf16 backend is not avx512bf16 (FTC_MATMUL, the CPU): the panel path runs there
 * (test_qmatmul_matches_dequantized). */
static void test_qmatmul_bf16_direct(void **state) {
    (void)state;
    if (strcmp(ftc_matmul_bf16_backend(), "avx512bf16") != 0) {
        print_message("bf16 backend %s: the direct path does not run here, skipped\n", ftc_matmul_bf16_backend());
        return;
    }
    static const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    const struct { int N, I, O; } shapes[] = {{17, 608, 70}, {40, 352, 261}, {100, 608, 20}, {33, 1024, 10}, {17, 64, 130},
                                              {300, 608, 800}};
    int threads0 = ftc_threads();
    for (int th = 1; th <= 2; th++) {
        ftc_threads_set(th);
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                int type = types[t], N = shapes[s].N, I = shapes[s].I, O = shapes[s].O;
                assert_true(ftc_qmatmul_bf16_direct_ok(type));
                size_t wn = (size_t)O * I;
                float *W = malloc(sizeof(float) * wn), *X = malloc(sizeof(float) * (size_t)N * I);
                float *dY = malloc(sizeof(float) * (size_t)N * O);
                float *Y = malloc(sizeof(float) * (size_t)N * O), *Yr = malloc(sizeof(float) * (size_t)N * O);
                float *dX = malloc(sizeof(float) * (size_t)N * I), *dXr = malloc(sizeof(float) * (size_t)N * I);
                uint16_t *W16 = malloc(sizeof(uint16_t) * wn);
                uint8_t *Wq = malloc(ftc_quant_tensor_bytes(type, O, I));
                for (size_t i = 0; i < wn; i++) W[i] = 0.05f * randn();
                for (size_t i = 0; i < (size_t)N * I; i++) X[i] = randn();
                for (size_t i = 0; i < (size_t)N * O; i++) dY[i] = randn();
                ftc_quantize_tensor(type, W, Wq, O, I);
                ftc_dequantize_tensor(type, Wq, W, O, I);
                ftc_f32_to_bf16_n(W, W16, wn);
                for (int pass = 0; pass < 2; pass++) { /* beta 0 over NaN, then beta 0.5 */
                    float beta = pass ? 0.5f : 0.0f;
                    for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = Yr[i] = pass ? randn() : NAN;
                    ftc_qmatmul_forward(Y, X, Wq, type, N, I, O, beta, true);
                    for (int k0 = 0; k0 < I; k0 += 512)
                        ftc_matmul_bf16(false, true, N, O, I - k0 < 512 ? I - k0 : 512, 1.0f, X + k0, FTC_MM_F32, I,
                                        W16 + k0, FTC_MM_BF16, I, k0 ? 1.0f : beta, Yr, O);
                    for (size_t i = 0; i < (size_t)N * O; i++)
                        if (memcmp(&Y[i], &Yr[i], 4) != 0)
                            fail_msg("forward %s N=%d I=%d O=%d threads %d beta %g: [%zu] %.9g vs %.9g", ftc_quant_name(type),
                                     N, I, O, th, beta, i, Y[i], Yr[i]);
                }
                for (size_t i = 0; i < (size_t)N * I; i++) dX[i] = dXr[i] = randn();
                ftc_qmatmul_backward_input(dX, dY, Wq, type, N, I, O, true);
                for (int o0 = 0; o0 < O; o0 += 128)
                    ftc_matmul_bf16(false, false, N, I, O - o0 < 128 ? O - o0 : 128, 1.0f, dY + o0, FTC_MM_F32, O,
                                    W16 + (size_t)o0 * I, FTC_MM_BF16, I, 1.0f, dXr, I);
                for (size_t i = 0; i < (size_t)N * I; i++)
                    if (memcmp(&dX[i], &dXr[i], 4) != 0)
                        fail_msg("input grad %s N=%d I=%d O=%d threads %d: [%zu] %.9g vs %.9g", ftc_quant_name(type), N,
                                 I, O, th, i, dX[i], dXr[i]);
                free(W), free(X), free(dY), free(Y), free(Yr), free(dX), free(dXr), free(W16), free(Wq);
            }
    }
    ftc_threads_set(threads0);
    assert_false(ftc_qmatmul_bf16_direct_ok(FTC_GGML_Q4_K));
}

/* Decoding's fused kernels on AVX2 (Q8_0/Q4_0/Q4_1, f32): every batch of 1..16 rows of X through
 * ftc_qmatmul_forward (fused up to 8 rows, panels past that) against the dequantized weight (1e-5 relative, as
 * above); the multi-row kernel itself for 1..16 rows (two passes past 8), each row bit-identical to the one-row
 * kernel on that row (a sequence decodes the same in a batch as alone); K = I with tails of the 8-wide tiles (32,
 * 96, 608 = 19 blocks), O with a 4-row tail, 1 and 2 threads, beta 0 over NaN and beta 1. Skipped where the CPU
 * runs no AVX2 path. */
static void test_qmatmul_rows_fused(void **state) {
    (void)state;
    if (!ftc_matmul_set_backend("avx2") || !ftc_qmatvec_avx2_ok()) {
        print_message("avx2 + f16c unavailable on this CPU: skipped\n");
        ftc_matmul_set_backend("auto");
        return;
    }
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    const struct { int I, O; } shapes[] = {{32, 5}, {96, 37}, {608, 70}};
    const int threads0 = ftc_threads();
    for (int th = 1; th <= 2; th++) {
        ftc_threads_set(th);
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                int type = types[t], I = shapes[s].I, O = shapes[s].O, NM = 16;
                float *W = malloc(sizeof(float) * (size_t)O * I), *Wd = malloc(sizeof(float) * (size_t)O * I);
                float *X = malloc(sizeof(float) * (size_t)NM * I), *Y = malloc(sizeof(float) * (size_t)NM * O);
                float *Y1 = malloc(sizeof(float) * (size_t)O);
                double *ref = malloc(sizeof(double) * (size_t)NM * O), *mag = malloc(sizeof(double) * (size_t)NM * O);
                uint8_t *Wq = malloc(ftc_quant_tensor_bytes(type, O, I));
                for (size_t i = 0; i < (size_t)O * I; i++) W[i] = 0.05f * randn();
                for (size_t i = 0; i < (size_t)NM * I; i++) X[i] = randn();
                ftc_quantize_tensor(type, W, Wq, O, I);
                ftc_dequantize_tensor(type, Wq, Wd, O, I);
                ref_product(ref, mag, X, Wd, NM, I, O);
                for (int N = 1; N <= NM; N++) {
                    char what[128];
                    snprintf(what, sizeof what, "fused %s N=%d I=%d O=%d threads %d", ftc_quant_name(type), N, I, O, th);
                    for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = NAN;
                    ftc_qmatmul_forward(Y, X, Wq, type, N, I, O, 0.0f, false);
                    check_close(Y, ref, mag, (size_t)N * O, 1e-5, what);
                    /* the kernel on all N rows: the bits of the one-row kernel (and of N = 1 above) on each */
                    float *xsum = malloc(sizeof(float) * (size_t)N * (I / 32));
                    for (int n = 0; n < N; n++) ftc_qmatvec_xsum_avx2(X + (size_t)n * I, I, xsum + (size_t)n * (I / 32));
                    for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = NAN;
                    size_t rb = ftc_quant_row_bytes(type, I);
                    ftc_qmatrows_avx2(type, Y, X, xsum, N, Wq, rb, I, O, 0, 3, 0.0f); /* two calls: [0, 3), [3, O) */
                    ftc_qmatrows_avx2(type, Y, X, xsum, N, Wq, rb, I, O, 3, O, 0.0f);
                    for (int n = 0; n < N; n++) {
                        for (int o = 0; o < O; o++) Y1[o] = NAN;
                        ftc_qmatvec_avx2(type, Y1, X + (size_t)n * I, xsum + (size_t)n * (I / 32), Wq, rb, I, 0, O, 0.0f);
                        if (memcmp(Y1, Y + (size_t)n * O, sizeof(float) * (size_t)O))
                            fail_msg("%s: row %d differs from the row alone", what, n);
                        ftc_qmatmul_forward(Y1, X + (size_t)n * I, Wq, type, 1, I, O, 0.0f, false);
                        if (memcmp(Y1, Y + (size_t)n * O, sizeof(float) * (size_t)O))
                            fail_msg("%s: row %d differs from ftc_qmatmul_forward on it alone", what, n);
                    }
                    free(xsum);
                    ftc_qmatmul_forward(Y, X, Wq, type, N, I, O, 0.0f, false);
                    ftc_qmatmul_forward(Y, X, Wq, type, N, I, O, 1.0f, false); /* beta 1: twice the product */
                    for (size_t i = 0; i < (size_t)N * O; i++) ref[i] *= 2, mag[i] *= 2;
                    check_close(Y, ref, mag, (size_t)N * O, 1e-5, what);
                    for (size_t i = 0; i < (size_t)N * O; i++) ref[i] /= 2, mag[i] /= 2;
                }
                free(W), free(Wd), free(X), free(Y), free(Y1), free(ref), free(mag), free(Wq);
            }
    }
    ftc_threads_set(threads0);
    ftc_matmul_set_backend("auto");
}

/* Generation's 8-bit activations (ftc_qmatmul_forward_q8act, issue 24). The row quantizer: AVX2 and portable give
 * the same bits (q, d, s), |x - d q| <= d / 2 and |q| <= 127, zero blocks to zero. The product, on the portable
 * twin ("generic"), the AVX2 kernels ("avx2") and the AVX-512 VNNI ones ("avx512"), where the CPU has them,
 * Q8_0/Q4_0/Q4_1, rows 1..8, 11 and 16 (passes of 6 + 5, 8 + 8), K = 32, 96, 608, 128 (1, 3, 19 blocks: the
 * AVX-512 pairs' odd tail; 4), O with 4-row and odd tails, 1 and 2 threads, beta 0 over NaN and 1:
 *  - against the double sum of the dequantized weight times the dequantized activations (d q): equal up to f32
 *    rounding (1e-5 of sum |w d q|: the integer block dots are exact, one f32 multiply and FMA per block);
 *  - against the f32 product (dequantized weight times x): within the activations' rounding, sum |w| d / 2 per
 *    output, + 1e-5 of sum |w x|;
 *  - each row the bits of that row alone (N = 1), whatever the batch. */
static void test_qmatmul_q8act(void **state) {
    (void)state;
    enum { NM = 16 };
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    const struct { int I, O; } shapes[] = {{32, 5}, {96, 37}, {608, 70}, {128, 11}};
    const char *backends[] = {"generic", "avx2", "avx512"}; /* index = ftc_q8a_isa() */
    const int threads0 = ftc_threads();
    { /* the quantizer */
        enum { I = 608 };
        float x[I];
        int8_t q1[I], q2[I];
        float d1[I / 32], d2[I / 32], s1[I / 32], s2[I / 32];
        for (int i = 0; i < I; i++) x[i] = i < 32 ? 0.0f : i < 64 ? 0.5f * (float)(i % 5) - 1.0f : 3.0f * randn();
        ftc_q8a_quantize(x, I, q1, d1, s1);
        for (int b = 0; b < I / 32; b++) {
            int sum = 0;
            for (int i = 0; i < 32; i++) {
                int k = 32 * b + i;
                assert_true(q1[k] >= -127 && q1[k] <= 127);
                if (!(fabs(x[k] - (double)d1[b] * q1[k]) <= 0.5 * d1[b] * (1 + 1e-6)))
                    fail_msg("q8act quantize: value %d off by more than half a step", k);
                sum += q1[k];
            }
            assert_true(s1[b] == d1[b] * (float)sum);
        }
        assert_true(d1[0] == 0.0f && s1[0] == 0.0f && q1[5] == 0);
        if (ftc_qmatvec_avx2_ok() && ftc_matmul_set_backend("avx2")) {
            ftc_q8a_quantize_avx2(x, I, q2, d2, s2);
            assert_memory_equal(q1, q2, I);
            assert_memory_equal(d1, d2, sizeof d1);
            assert_memory_equal(s1, s2, sizeof s1);
        }
        ftc_matmul_set_backend("auto");
    }
    for (int be = 0; be < 3; be++) {
        if (!ftc_matmul_set_backend(backends[be]) || (be == 1 && !ftc_qmatvec_avx2_ok()) ||
            (be == 2 && !ftc_q8a_avx512_ok())) {
            print_message("%s unavailable on this CPU: skipped\n", backends[be]);
            continue;
        }
        assert_true(ftc_q8a_isa() == be);
        for (int th = 1; th <= 2; th++) {
            ftc_threads_set(th);
            for (int t = 0; t < 3; t++)
                for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
                    int type = types[t], I = shapes[sh].I, O = shapes[sh].O, nb = I / 32;
                    float *W = malloc(sizeof(float) * (size_t)O * I), *Wd = malloc(sizeof(float) * (size_t)O * I);
                    float *X = malloc(sizeof(float) * (size_t)NM * I), *Y = malloc(sizeof(float) * (size_t)NM * O);
                    float *Y1 = malloc(sizeof(float) * (size_t)O), *xd = malloc(sizeof(float) * nb);
                    float *xs = malloc(sizeof(float) * nb);
                    int8_t *xq = malloc((size_t)I);
                    double *refq = malloc(sizeof(double) * NM * O), *magq = malloc(sizeof(double) * NM * O);
                    double *ref = malloc(sizeof(double) * NM * O), *bound = malloc(sizeof(double) * NM * O);
                    uint8_t *Wq = malloc(ftc_quant_tensor_bytes(type, O, I));
                    for (size_t i = 0; i < (size_t)O * I; i++) W[i] = 0.05f * randn();
                    for (size_t i = 0; i < (size_t)NM * I; i++) X[i] = randn() + (i % 7 == 0 ? 1.0f : 0.0f);
                    ftc_quantize_tensor(type, W, Wq, O, I);
                    ftc_dequantize_tensor(type, Wq, Wd, O, I);
                    for (int n = 0; n < NM; n++) {
                        ftc_q8a_quantize(X + (size_t)n * I, I, xq, xd, xs);
                        for (int o = 0; o < O; o++) {
                            double a = 0, m = 0, f = 0, e = 0, fm = 0;
                            for (int k = 0; k < I; k++) {
                                double w = Wd[(size_t)o * I + k], xqk = (double)xd[k / 32] * xq[k];
                                a += w * xqk, m += fabs(w * xqk);
                                f += w * X[(size_t)n * I + k], fm += fabs(w * X[(size_t)n * I + k]);
                                e += fabs(w) * xd[k / 32] / 2;
                            }
                            size_t i = (size_t)n * O + o;
                            refq[i] = a, magq[i] = m, ref[i] = f, bound[i] = e + 1e-5 * fm;
                        }
                    }
                    for (int N = 1; N <= NM; N = N < 8 ? N + 1 : N == 8 ? 11 : N == 11 ? NM : NM + 1) { /* 1..8, 11, 16 */
                        char what[160];
                        snprintf(what, sizeof what, "q8act %s %s N=%d I=%d O=%d threads %d", backends[be],
                                 ftc_quant_name(type), N, I, O, th);
                        for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = NAN;
                        ftc_qmatmul_forward_q8act(Y, X, Wq, type, N, I, O, 0.0f);
                        check_close(Y, refq, magq, (size_t)N * O, 1e-5, what);
                        for (size_t i = 0; i < (size_t)N * O; i++)
                            if (!(fabs(Y[i] - ref[i]) <= bound[i]))
                                fail_msg("%s: output %zu off the f32 product by %.3g > %.3g", what, i,
                                         fabs(Y[i] - ref[i]), bound[i]);
                        for (int n = 0; n < N; n++) {
                            for (int o = 0; o < O; o++) Y1[o] = NAN;
                            ftc_qmatmul_forward_q8act(Y1, X + (size_t)n * I, Wq, type, 1, I, O, 0.0f);
                            if (memcmp(Y1, Y + (size_t)n * O, sizeof(float) * (size_t)O))
                                fail_msg("%s: row %d differs from the row alone", what, n);
                        }
                        ftc_qmatmul_forward_q8act(Y, X, Wq, type, N, I, O, 1.0f); /* beta 1: twice the product */
                        for (size_t i = 0; i < (size_t)N * O; i++) refq[i] *= 2, magq[i] *= 2;
                        check_close(Y, refq, magq, (size_t)N * O, 1e-5, what);
                        for (size_t i = 0; i < (size_t)N * O; i++) refq[i] /= 2, magq[i] /= 2;
                    }
                    free(W), free(Wd), free(X), free(Y), free(Y1), free(xd), free(xs), free(xq);
                    free(refq), free(magq), free(ref), free(bound), free(Wq);
                }
        }
    }
    ftc_threads_set(threads0);
    ftc_matmul_set_backend("auto");
}

/* Several products of one X (ftc_qmatmul_forward_q8act_multi: a decoding step's q/k/v, gate/up) give each output
 * the bits of its own ftc_qmatmul_forward_q8act call: every kernel, Q8_0/Q4_0/Q4_1, 3 and 5 products (past the 4
 * one pass holds), O with 16-row and odd tails, N 1 and 8, 1 and 2 threads, beta 0 over NaN and beta 1. */
static void test_qmatmul_q8act_multi(void **state) {
    (void)state;
    enum { N8 = 8, P = 5 };
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    const int Is[] = {96, 576}, Os[P] = {37, 192, 11, 70, 5};
    const char *backends[] = {"generic", "avx2", "avx512"};
    const int threads0 = ftc_threads();
    int checked = 0;
    for (int be = 0; be < 3; be++) {
        if (!ftc_matmul_set_backend(backends[be]) || ftc_q8a_isa() != be) continue;
        for (int th = 1; th <= 2; th++) {
            ftc_threads_set(th);
            for (int t = 0; t < 3; t++)
                for (int ii = 0; ii < 2; ii++)
                    for (int np = 3; np <= P; np += 2) {
                        const int type = types[t], I = Is[ii];
                        float *X = malloc(sizeof(float) * N8 * I), *Y[P], *Yref[P], beta[P];
                        void *Wq[P];
                        for (int i = 0; i < N8 * I; i++) X[i] = randn();
                        for (int p = 0; p < np; p++) {
                            float *W = malloc(sizeof(float) * (size_t)Os[p] * I);
                            for (size_t i = 0; i < (size_t)Os[p] * I; i++) W[i] = 0.05f * randn();
                            Wq[p] = malloc(ftc_quant_tensor_bytes(type, Os[p], I));
                            ftc_quantize_tensor(type, W, Wq[p], Os[p], I);
                            free(W);
                            Y[p] = malloc(sizeof(float) * N8 * Os[p]), Yref[p] = malloc(sizeof(float) * N8 * Os[p]);
                            beta[p] = (float)(p % 2);
                        }
                        for (int N = 1; N <= N8; N += N8 - 1) {
                            for (int p = 0; p < np; p++) {
                                for (int i = 0; i < N * Os[p]; i++) Y[p][i] = Yref[p][i] = beta[p] != 0 ? 0.25f * (float)(i % 9) : NAN;
                                ftc_qmatmul_forward_q8act(Yref[p], X, Wq[p], type, N, I, Os[p], beta[p]);
                            }
                            ftc_qmatmul_forward_q8act_multi(Y, (const void *const *)Wq, Os, beta, np, X, type, N, I);
                            for (int p = 0; p < np; p++)
                                if (memcmp(Y[p], Yref[p], sizeof(float) * (size_t)N * Os[p]))
                                    fail_msg("q8act multi %s %s I=%d N=%d threads %d: product %d of %d differs from it "
                                             "alone", backends[be], ftc_quant_name(type), I, N, th, p, np);
                            checked++;
                        }
                        for (int p = 0; p < np; p++) free(Wq[p]), free(Y[p]), free(Yref[p]);
                        free(X);
                    }
        }
    }
    assert_true(checked >= 24); /* at least the portable twin ran */
    ftc_threads_set(threads0);
    ftc_matmul_set_backend("auto");
}

/* The multi product with a column epilogue (ftc_qmatmul_forward_q8act_multi_ep, a decoding step's up/gate + SwiGLU):
 * the products keep the bits of the plain multi call; the epilogue sees every column exactly once, after all the
 * products have written it (it combines them: z = 2 y0 + y1 - y2), also for unequal O (one call after the products,
 * reading y0);
 * every kernel, 1 and 2 threads, N 1 and 8, O with a 16-row tail. */
typedef struct {
    float *const *Y;
    float *z;
    int *seen, N, O, np;
} ep_check;

static void ep_combine(void *ctx, int o0, int o1) {
    ep_check *e = ctx;
    for (int o = o0; o < o1; o++) {
        e->seen[o]++;
        for (int n = 0; n < e->N; n++) {
            size_t i = (size_t)n * e->O + o;
            e->z[i] = 2.0f * e->Y[0][i] + (e->np > 1 ? e->Y[1][i] : 0.0f) - (e->np > 2 ? e->Y[2][i] : 0.0f);
        }
    }
}

static void test_qmatmul_q8act_multi_ep(void **state) {
    (void)state;
    enum { N8 = 8, I = 576, P = 3, OMAX = 200 };
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    const int Osame[P] = {200, 200, 200}, Odiff[P] = {37, 192, 11};
    const char *backends[] = {"generic", "avx2", "avx512"};
    const int threads0 = ftc_threads();
    int checked = 0;
    float *X = malloc(sizeof(float) * N8 * I), *Y[P], *Yref[P], *z = malloc(sizeof(float) * N8 * OMAX);
    void *Wq[P];
    int seen[OMAX];
    for (int i = 0; i < N8 * I; i++) X[i] = randn();
    for (int p = 0; p < P; p++)
        Y[p] = malloc(sizeof(float) * N8 * OMAX), Yref[p] = malloc(sizeof(float) * N8 * OMAX),
        Wq[p] = malloc(ftc_quant_tensor_bytes(FTC_GGML_Q8_0, OMAX, I)); /* Q8_0: the largest rows */
    for (int be = 0; be < 3; be++) {
        if (!ftc_matmul_set_backend(backends[be]) || ftc_q8a_isa() != be) continue;
        for (int th = 1; th <= 2; th++) {
            ftc_threads_set(th);
            for (int t = 0; t < 3; t++)
                for (int shape = 0; shape < 2; shape++)
                    for (int np = 2; np <= P; np++) {
                        const int type = types[t], *O = shape ? Odiff : Osame;
                        float beta[P];
                        for (int p = 0; p < np; p++) {
                            float *W = malloc(sizeof(float) * (size_t)O[p] * I);
                            for (size_t i = 0; i < (size_t)O[p] * I; i++) W[i] = 0.05f * randn();
                            ftc_quantize_tensor(type, W, Wq[p], O[p], I);
                            free(W);
                            beta[p] = (float)(p % 2);
                        }
                        for (int N = 1; N <= N8; N += N8 - 1) {
                            for (int p = 0; p < np; p++)
                                for (int i = 0; i < N * O[p]; i++)
                                    Y[p][i] = Yref[p][i] = beta[p] != 0 ? 0.25f * (float)(i % 9) : NAN;
                            ftc_qmatmul_forward_q8act_multi(Yref, (const void *const *)Wq, O, beta, np, X, type, N, I);
                            memset(seen, 0, sizeof seen);
                            ep_check e = {Y, z, seen, N, O[0], shape ? 1 : np}; /* unequal O: y0 alone */
                            ftc_qmatmul_forward_q8act_multi_ep(Y, (const void *const *)Wq, O, beta, np, X, type, N, I,
                                                               ep_combine, &e);
                            for (int p = 0; p < np; p++)
                                if (memcmp(Y[p], Yref[p], sizeof(float) * (size_t)N * O[p]))
                                    fail_msg("q8act multi_ep %s %s N=%d threads %d: product %d of %d differs from the "
                                             "plain multi call", backends[be], ftc_quant_name(type), N, th, p, np);
                            for (int o = 0; o < O[0]; o++) {
                                if (seen[o] != 1)
                                    fail_msg("q8act multi_ep %s %s N=%d threads %d np %d: column %d seen %d times",
                                             backends[be], ftc_quant_name(type), N, th, np, o, seen[o]);
                                for (int n = 0; n < N; n++) {
                                    size_t i = (size_t)n * O[0] + o;
                                    float want = 2.0f * Yref[0][i] + (e.np > 1 ? Yref[1][i] : 0.0f) -
                                                 (e.np > 2 ? Yref[2][i] : 0.0f);
                                    if (memcmp(&z[i], &want, sizeof want))
                                        fail_msg("q8act multi_ep %s %s: epilogue at row %d column %d ran before the "
                                                 "products wrote it", backends[be], ftc_quant_name(type), n, o);
                                }
                            }
                            checked++;
                        }
                    }
        }
    }
    for (int p = 0; p < P; p++) free(Wq[p]), free(Y[p]), free(Yref[p]);
    free(X), free(z);
    assert_true(checked >= 24); /* at least the portable twin ran */
    ftc_threads_set(threads0);
    ftc_matmul_set_backend("auto");
}

/* Prefill's int8 GEMM (ftc_qgemm_q8act_forward, prompt chunks past 16 rows): on every kernel it has (the portable
 * twin "generic", "avx2", and AVX-512 VNNI under "auto" where the CPU has it), each output has the bits of the
 * portable row kernel ftc_q8a_matrows_c on the same quantized activations: Q8_0/Q4_0/Q4_1, K = 32 .. 608 and 4160
 * (past the stack's 4096 columns: the heap scratch), O with tails of 16-row groups, N over the 8/6/4/1-row tiles,
 * 1 and 2 threads, beta 0 over NaN and beta 0.5; Q8_0 weights with bytes -128 and 127 (the unsigned offset and the
 * sign trick at their edges) and an all-zero block of X (d 0). */
static void test_qgemm_q8act(void **state) {
    (void)state;
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    const struct { int I, O; } shapes[] = {{32, 5}, {96, 37}, {608, 70}, {4160, 19}};
    const int Ns[] = {1, 7, 17, 23, 40};
    enum { NM = 40 };
    const char *backends[] = {"generic", "avx2", "auto"};
    const int threads0 = ftc_threads();
    int ran[3] = {0};
    for (int be = 0; be < 3; be++) {
        if (!ftc_matmul_set_backend(backends[be])) continue;
        int isa = ftc_q8a_isa();
        if (isa != be) { /* this CPU lacks the kernel ("avx2" without AVX2, "auto" without VNNI) */
            print_message("qgemm %s: kernel %d unavailable on this CPU: skipped\n", backends[be], be);
            continue;
        }
        ran[be] = 1;
        for (int th = 1; th <= 2; th++) {
            ftc_threads_set(th);
            for (int t = 0; t < 3; t++)
                for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
                    int type = types[t], I = shapes[sh].I, O = shapes[sh].O, nb = I / 32;
                    float *W = malloc(sizeof(float) * (size_t)O * I), *X = malloc(sizeof(float) * (size_t)NM * I);
                    float *Y = malloc(sizeof(float) * (size_t)NM * O), *R = malloc(sizeof(float) * (size_t)NM * O);
                    float *xd = malloc(sizeof(float) * (size_t)NM * nb), *xs = malloc(sizeof(float) * (size_t)NM * nb);
                    int8_t *xq = malloc((size_t)NM * I);
                    size_t row_bytes = ftc_quant_row_bytes(type, I);
                    uint8_t *Wq = malloc(ftc_quant_tensor_bytes(type, O, I));
                    for (size_t i = 0; i < (size_t)O * I; i++) W[i] = 0.05f * randn();
                    for (size_t i = 0; i < (size_t)NM * I; i++) X[i] = randn() + (i % 7 == 0 ? 1.0f : 0.0f);
                    for (int i = 0; i < 32; i++) X[(size_t)3 * I + i] = 0.0f; /* row 3, block 0: d = 0 */
                    ftc_quantize_tensor(type, W, Wq, O, I);
                    if (type == FTC_GGML_Q8_0) /* the byte range's ends in block 0 of every row */
                        for (int o = 0; o < O; o++) {
                            ftc_block_q8_0 *blk = (ftc_block_q8_0 *)(Wq + (size_t)o * row_bytes);
                            for (int i = 0; i < 32; i += 2) blk->qs[i] = (int8_t)(o % 2 ? -128 : 127);
                        }
                    for (int n = 0; n < NM; n++)
                        ftc_q8a_quantize(X + (size_t)n * I, I, xq + (size_t)n * I, xd + (size_t)n * nb, xs + (size_t)n * nb);
                    for (size_t k = 0; k < sizeof Ns / sizeof *Ns; k++) {
                        int N = Ns[k];
                        char what[160];
                        snprintf(what, sizeof what, "qgemm %s %s N=%d I=%d O=%d threads %d", backends[be],
                                 ftc_quant_name(type), N, I, O, th);
                        for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = NAN;
                        ftc_q8a_matrows_c(type, R, xq, xd, xs, N, Wq, row_bytes, I, O, 0, O, 0.0f);
                        ftc_qgemm_q8act_forward(Y, X, Wq, type, N, I, O, 0.0f);
                        if (memcmp(Y, R, sizeof(float) * (size_t)N * O)) fail_msg("%s: not the portable twin's bits", what);
                        for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = R[i] = (float)(i % 11) - 5.0f;
                        ftc_q8a_matrows_c(type, R, xq, xd, xs, N, Wq, row_bytes, I, O, 0, O, 0.5f);
                        ftc_qgemm_q8act_forward(Y, X, Wq, type, N, I, O, 0.5f);
                        if (memcmp(Y, R, sizeof(float) * (size_t)N * O))
                            fail_msg("%s beta 0.5: not the portable twin's bits", what);
                    }
                    free(W), free(X), free(Y), free(R), free(xd), free(xs), free(xq), free(Wq);
                }
        }
    }
    assert_true(ran[0]);
    ftc_threads_set(threads0);
    ftc_matmul_set_backend("auto");
}

/* quantize -> dequantize error stays within each format's step (a sanity bound, not the reference) */
static void test_roundtrip_error(void **state) {
    (void)state;
    /* half a step, plus the f16 rounding of the scale over the largest code (2^-11 relative); Q4_0 maps the
     * largest magnitude to -8, so a value of the other sign near it clips at +7: a whole step */
    const double bound[NTYPES] = {(0.5 + 127 / 2048.0) / 127, (1 + 8 / 2048.0) / 8, (0.5 + 15 / 2048.0) / 15 + 1e-3, 0.05,
                                  0.17 /* half NF4's widest gap, (1 - 0.696) / 2 */};
    enum { n = 4096 };
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    uint8_t *q = malloc(n * 2);
    for (int i = 0; i < n; i++) x[i] = randn();
    for (int t = 0; t < NTYPES; t++) {
        int blk = ftc_quant_block(TYPES[t]);
        ftc_quantize_row(TYPES[t], x, q, n);
        ftc_dequantize_row(TYPES[t], q, y, n);
        double worst = 0;
        for (int b = 0; b < n / blk; b++) {
            float amax = 0, mn = x[b * blk], mx = x[b * blk];
            for (int i = 0; i < blk; i++) {
                amax = fmaxf(amax, fabsf(x[b * blk + i]));
                mn = fminf(mn, x[b * blk + i]);
                mx = fmaxf(mx, x[b * blk + i]);
            }
            float range = TYPES[t] == FTC_GGML_Q4_1 || TYPES[t] == FTC_GGML_Q4_K ? mx - mn : amax;
            for (int i = 0; i < blk; i++) worst = fmax(worst, fabs((double)y[b * blk + i] - x[b * blk + i]) / range);
        }
        print_message("%s: max |dequant - x| / block range %.4f\n", ftc_quant_name(TYPES[t]), worst);
        assert_true(worst <= bound[t]);
    }
    assert_int_equal(ftc_quant_from_name("q4_k"), FTC_GGML_Q4_K);
    assert_int_equal(ftc_quant_from_name("nf4"), FTC_QUANT_NF4);
    assert_int_equal(ftc_quant_from_name("nf3"), -1);
    assert_int_equal(ftc_quant_row_bytes(FTC_GGML_Q4_K, 300), 0);
    assert_int_equal(ftc_quant_row_bytes(FTC_GGML_Q8_0, 64), 68);
    free(x);
    free(y);
    free(q);
}

/* Case k of a bitsandbytes fixture in nf4.gguf (tools/gen_nf4_fixtures.py): PREFIX.k.src (the f32 weight),
 * PREFIX.k (bitsandbytes' bytes) and PREFIX.k.deq (its dequantization); NULL after the last case. */
static const ftc_gguf_tensor *bnb_case(const ftc_gguf *g, const char *prefix, int k, const ftc_gguf_tensor **want,
                                       const ftc_gguf_tensor **deq) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d.src", prefix, k);
    const ftc_gguf_tensor *src = ftc_gguf_find_tensor(g, name);
    if (!src) return NULL;
    snprintf(name, sizeof name, "%s.%d", prefix, k);
    *want = ftc_gguf_find_tensor(g, name);
    snprintf(name, sizeof name, "%s.%d.deq", prefix, k);
    *deq = ftc_gguf_find_tensor(g, name);
    assert_non_null(*want);
    assert_non_null(*deq);
    return src;
}

/* NF4 against bitsandbytes (tools/gen_nf4_fixtures.py): the blocks its quantize_4bit makes, and the f32 values its
 * CPU library's dequantization gives */
static void test_nf4_matches_bitsandbytes(void **state) {
    (void)state;
    ftc_gguf *g;
    ftc_err e = {0};
    if (ftc_gguf_open(fixture("nf4.gguf"), &g, &e)) fail_msg("%s", e.msg);
    long blocks = 0, bytes_differ = 0, values_differ = 0, cases = 0;
    for (int k = 0;; k++) {
        const ftc_gguf_tensor *want, *deq, *src = bnb_case(g, "NF4", k, &want, &deq);
        if (!src) break;
        size_t nb = (size_t)src->numel / 64;
        assert_int_equal(want->nbytes, nb * sizeof(ftc_block_nf4));
        float *x = malloc(sizeof(float) * (size_t)src->numel), *y = malloc(sizeof(float) * (size_t)src->numel);
        uint8_t *got = malloc(want->nbytes);
        memcpy(x, src->data, sizeof(float) * (size_t)src->numel);
        ftc_quantize_row(FTC_QUANT_NF4, x, got, src->numel);
        for (size_t i = 0; i < want->nbytes; i++) bytes_differ += got[i] != want->data[i];
        ftc_dequantize_row(FTC_QUANT_NF4, want->data, y, src->numel);
        values_differ += memcmp(y, deq->data, sizeof(float) * (size_t)src->numel) != 0;
        blocks += (long)nb;
        cases++;
        free(x), free(y), free(got);
    }
    print_message("nf4   %2ld cases %5ld blocks, %ld bytes differ from bitsandbytes' quantize_4bit, %ld cases' "
                  "dequantization differ from libbitsandbytes_cpu\n", cases, blocks, bytes_differ, values_differ);
    assert_true(cases >= 5);
    assert_int_equal(bytes_differ, 0);
    assert_int_equal(values_differ, 0);
    ftc_gguf_close(g);
}

/* NF4 with double-quantized absmax against bitsandbytes (tools/gen_nf4_fixtures.py, checked there against the real
 * quantize_4bit(..., compress_statistics=True) on torch): ftc's weight bytes (nibbles, 8-bit absmax codes, the
 * per-256-block scales, the offset) and bitsandbytes' dequantize_4bit values; the dynamic map; every decode path */
static void test_nf4dq_matches_bitsandbytes(void **state) {
    (void)state;
    ftc_gguf *g;
    ftc_err e = {0};
    if (ftc_gguf_open(fixture("nf4.gguf"), &g, &e)) fail_msg("%s", e.msg);
    const ftc_gguf_tensor *code = ftc_gguf_find_tensor(g, "NF4DQ.code");
    assert_non_null(code);
    assert_int_equal(code->numel, 256);
    long map_differ = 0;
    for (int i = 0; i < 256; i++) map_differ += memcmp(&((const float *)code->data)[i], &ftc_nf4dq_code()[i], 4) != 0;
    long blocks = 0, groups = 0, bytes = 0, bytes_differ = 0, values = 0, values_differ = 0, cases = 0, short_groups = 0;
    for (int k = 0;; k++) {
        const ftc_gguf_tensor *want, *deq, *src = bnb_case(g, "NF4DQ", k, &want, &deq);
        if (!src) break;
        int64_t I = src->shape[src->ndim - 1], O = src->numel / I, nb = O * I / 64;
        size_t nbytes = ftc_quant_tensor_bytes(FTC_QUANT_NF4DQ, O, I);
        assert_int_equal(want->nbytes, nbytes);
        float *x = malloc(sizeof(float) * (size_t)src->numel), *y = malloc(sizeof(float) * (size_t)src->numel);
        uint8_t *got = malloc(nbytes);
        memset(got, 0xa5, nbytes); /* the padding too is written */
        memcpy(x, src->data, sizeof(float) * (size_t)src->numel);
        ftc_quantize_tensor(FTC_QUANT_NF4DQ, x, got, O, I);
        for (size_t i = 0; i < nbytes; i++) bytes_differ += got[i] != want->data[i];
        if (memcmp(got, want->data, nbytes))
            for (size_t i = 0; i < nbytes; i++)
                if (got[i] != want->data[i]) {
                    print_message("NF4DQ.%d: first differing byte %zu of %zu: %02x, bitsandbytes %02x\n", k, i, nbytes,
                                  got[i], want->data[i]);
                    break;
                }
        ftc_dequantize_tensor(FTC_QUANT_NF4DQ, want->data, y, O, I);
        for (int64_t i = 0; i < src->numel; i++) values_differ += memcmp(&y[i], &((const float *)deq->data)[i], 4) != 0;
        /* the fused kernels' decoders (portable, AVX2, AVX-512 where the CPU has them), from an odd block on */
        const float *tail = (const float *)(want->data + ftc_nf4dq_tail(O, I));
        for (int isa = 0; isa < 3; isa++) {
            if ((isa == 1 && !__builtin_cpu_supports("avx2")) ||
                (isa == 2 && !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))))
                continue;
            float *z = calloc((size_t)src->numel, sizeof(float));
            int64_t k0 = nb > 1 ? 1 : 0;
            ftc_nf4dq_decoder(isa)(want->data + (size_t)k0 * sizeof(ftc_block_nf4dq), z + 64 * k0, nb - k0, tail, k0);
            assert_memory_equal(z + 64 * k0, y + 64 * k0, sizeof(float) * (size_t)(nb - k0) * 64);
            free(z);
        }
        groups += (nb + 255) / 256;
        short_groups += nb % 256 != 0;
        blocks += (long)nb;
        bytes += (long)nbytes;
        values += (long)src->numel;
        cases++;
        free(x), free(y), free(got);
    }
    print_message("nf4dq %2ld cases %5ld blocks (%ld groups of 256, %ld cases ending in a short one), %ld of %ld bytes "
                  "differ from bitsandbytes' quantize_4bit(compress_statistics), %ld of %ld values from its "
                  "dequantize_4bit, %ld of 256 dynamic map entries\n", cases, blocks, groups, short_groups,
                  bytes_differ, bytes, values_differ, values, map_differ);
    assert_true(cases >= 6);
    assert_true(short_groups >= 2);
    assert_int_equal(map_differ, 0);
    assert_int_equal(bytes_differ, 0);
    assert_int_equal(values_differ, 0);
    /* the layout: 33-byte blocks, a 64-aligned tail, 4.127 bits a value for a 2048 x 2048 weight */
    assert_int_equal(ftc_quant_block_bytes(FTC_QUANT_NF4DQ), 33);
    assert_int_equal(ftc_quant_tensor_bytes(FTC_QUANT_NF4DQ, 2048, 2048), 2048 * 32 * 33 + 4 + 4 * 256);
    assert_int_equal(ftc_quant_tensor_bytes(FTC_QUANT_NF4DQ, 3, 64), 128 + 4 + 4); /* 99 bytes of blocks, padded to 128 */
    assert_int_equal(ftc_quant_tensor_bytes(FTC_QUANT_NF4DQ, 3, 100), 0);
    assert_int_equal(ftc_quant_from_name("nf4dq"), FTC_QUANT_NF4DQ);
    assert_string_equal(ftc_quant_name(FTC_QUANT_NF4DQ), "nf4dq");
    ftc_gguf_close(g);
}

/* ftc_quantize_row's Q8_0 on AVX-512 (a q8_0 KV cache's stores) gives the portable quantizer's blocks, which are
 * gguf.quants' (test_quantize_matches_reference): random blocks at scales from 1e-30 to 1e30, rounding ties
 * (x / d = k + 0.5 exactly), values a hair below a tie, zeros of both signs, an all-zero block, subnormals,
 * infinities and NaNs; the portable path is FTC_MATMUL=generic's. Elsewhere both runs take the same code. */
static void test_q8_0_quantizer_paths(void **state) {
    (void)state;
    enum { NB = 64 };
    float x[NB * 32];
    ftc_rng r;
    ftc_rng_seed(&r, 91);
    for (int b = 0; b < NB; b++) {
        const float scale = powf(10.0f, (float)(b % 13) * 5.0f - 30.0f);
        for (int i = 0; i < 32; i++) x[32 * b + i] = (float)(ftc_rng_uniform(&r) * 2.0 - 1.0) * scale;
    }
    for (int i = 0; i < 32; i++) { /* block 1: max 127 (d = 1): ties and near-ties */
        x[32 + i] = (float)(i - 16) + 0.5f;
        if (i % 4 == 1) x[32 + i] = nextafterf(x[32 + i], 0.0f);
    }
    x[32 + 31] = 127.0f;
    for (int i = 0; i < 32; i++) x[64 + i] = i % 2 ? -0.0f : 0.0f; /* block 2: zeros */
    for (int i = 0; i < 32; i++) x[96 + i] = (float)(i + 1) * 1e-40f;  /* block 3: subnormals */
    x[128 + 3] = INFINITY, x[160 + 7] = -INFINITY, x[192 + 9] = NAN, x[224] = NAN, x[225] = 2.0f; /* specials */
    ftc_block_q8_0 a[NB], g[NB];
    memset(a, 0x5a, sizeof a), memset(g, 0xa5, sizeof g);
    ftc_quantize_row(FTC_GGML_Q8_0, x, a, NB * 32);
    assert_true(ftc_matmul_set_backend("generic"));
    ftc_quantize_row(FTC_GGML_Q8_0, x, g, NB * 32);
    ftc_matmul_set_backend("auto");
    assert_memory_equal(a, g, sizeof a);
    assert_int_equal(g[1].qs[0], -16); /* -15.5 -> -16: half away from zero */
    assert_int_equal(g[1].qs[1], -14); /* a hair above -14.5 */
    assert_int_equal(g[1].qs[2], -14); /* -13.5 -> -14 */
    assert_int_equal(g[1].qs[31], 127);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_matches_reference),
        cmocka_unit_test(test_nf4_matches_bitsandbytes),
        cmocka_unit_test(test_nf4dq_matches_bitsandbytes),
        cmocka_unit_test(test_decoders_agree),
        cmocka_unit_test(test_qmatmul_matches_dequantized),
        cmocka_unit_test(test_qmatmul_bf16_direct),
        cmocka_unit_test(test_qmatmul_rows_fused),
        cmocka_unit_test(test_qmatmul_q8act),
        cmocka_unit_test(test_qmatmul_q8act_multi),
        cmocka_unit_test(test_qmatmul_q8act_multi_ep),
        cmocka_unit_test(test_qgemm_q8act),
        cmocka_unit_test(test_roundtrip_error),
        cmocka_unit_test(test_q8_0_quantizer_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

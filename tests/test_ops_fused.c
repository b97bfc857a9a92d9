/* Fused elementwise passes (ops_fused.c) equal the separate ops they replace, bit for bit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "ftc/threads.h"
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/ops.h"

/* ftc_bias_gelu_forward == (x += b per row; gelu over all) for both GELU forms, with and without bias, on shapes
 * that leave partial row blocks, single- and multi-threaded (large enough to run in parallel). */
static void test_bias_gelu_equals_add_then_gelu(void **state) {
    (void)state;
    const struct { int N, O; } shapes[] = {{1, 5}, {17, 33}, {37, 1536}, {100, 3072}};
    ftc_rng r;
    ftc_rng_seed(&r, 3);
    for (int s = 0; s < 4; s++)
        for (int form = 0; form < 2; form++)
            for (int with_b = 0; with_b < 2; with_b++)
                for (int threads = 1; threads <= 2; threads++) {
                    int N = shapes[s].N, O = shapes[s].O;
                    size_t n = (size_t)N * O;
                    float *x = malloc(4 * n), *x_ref = malloc(4 * n), *y = malloc(4 * n), *y_ref = malloc(4 * n);
                    float *b = malloc(4 * (size_t)O);
                    assert_true(x && x_ref && y && y_ref && b);
                    for (size_t i = 0; i < n; i++) x[i] = 3.0f * ftc_rng_normal(&r);
                    for (int o = 0; o < O; o++) b[o] = ftc_rng_normal(&r);
                    memcpy(x_ref, x, 4 * n);
                    if (with_b)
                        for (int i = 0; i < N; i++)
                            for (int o = 0; o < O; o++) x_ref[(size_t)i * O + o] += b[o];
                    if (form) ftc_gelu_tanh_forward(y_ref, x_ref, (int)n);
                    else ftc_gelu_erf_forward(y_ref, x_ref, (int)n);
                    int before = ftc_threads();
                    ftc_threads_set(threads);
                    ftc_bias_gelu_forward(y, x, with_b ? b : NULL, N, O, form == 1);
                    ftc_threads_set(before);
                    assert_memory_equal(x, x_ref, 4 * n); /* the pre-activation, kept for backward */
                    assert_memory_equal(y, y_ref, 4 * n);
                    free(x), free(x_ref), free(y), free(y_ref), free(b);
                }
}

/* ftc_add_layernorm_forward / ftc_add_rmsnorm_forward == ftc_add_forward then the norm, bit for bit (s, y, mean, rstd). */
static void test_add_norm_equals_add_then_norm(void **state) {
    (void)state;
    const struct { int N, C; } shapes[] = {{1, 7}, {19, 64}, {100, 384}, {300, 768}};
    ftc_rng r;
    ftc_rng_seed(&r, 5);
    for (int s = 0; s < 4; s++)
        for (int rms = 0; rms < 2; rms++)
            for (int threads = 1; threads <= 2; threads++) {
                int N = shapes[s].N, C = shapes[s].C;
                size_t n = (size_t)N * C;
                float *a = malloc(4 * n), *b = malloc(4 * n), *w = malloc(4 * (size_t)C), *bias = malloc(4 * (size_t)C);
                float *s1 = malloc(4 * n), *y1 = malloc(4 * n), *s2 = malloc(4 * n), *y2 = malloc(4 * n);
                float *mean1 = malloc(4 * (size_t)N), *rstd1 = malloc(4 * (size_t)N);
                float *mean2 = malloc(4 * (size_t)N), *rstd2 = malloc(4 * (size_t)N);
                assert_true(a && b && w && bias && s1 && y1 && s2 && y2 && mean1 && rstd1 && mean2 && rstd2);
                for (size_t i = 0; i < n; i++) a[i] = ftc_rng_normal(&r), b[i] = 0.5f * ftc_rng_normal(&r) + 0.1f;
                for (int c = 0; c < C; c++) w[c] = 1.0f + 0.1f * ftc_rng_normal(&r), bias[c] = ftc_rng_normal(&r);
                ftc_add_forward(s1, a, b, (int)n);
                if (rms) ftc_rmsnorm_forward(y1, rstd1, s1, w, N, C, 1e-6f);
                else ftc_layernorm_forward(y1, mean1, rstd1, s1, w, bias, N, C, 1e-5f);
                int before = ftc_threads();
                ftc_threads_set(threads);
                if (rms) ftc_add_rmsnorm_forward(s2, y2, rstd2, a, b, w, N, C, 1e-6f);
                else ftc_add_layernorm_forward(s2, y2, mean2, rstd2, a, b, w, bias, N, C, 1e-5f);
                ftc_threads_set(before);
                assert_memory_equal(s1, s2, 4 * n);
                assert_memory_equal(y1, y2, 4 * n);
                assert_memory_equal(rstd1, rstd2, 4 * (size_t)N);
                if (!rms) assert_memory_equal(mean1, mean2, 4 * (size_t)N);
                free(a), free(b), free(w), free(bias), free(s1), free(y1), free(s2), free(y2);
                free(mean1), free(rstd1), free(mean2), free(rstd2);
            }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bias_gelu_equals_add_then_gelu),
        cmocka_unit_test(test_add_norm_equals_add_then_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

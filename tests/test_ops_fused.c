/* Fused elementwise passes equal the separate ops they replace, bit for bit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/ops.h"

/* bias_gelu_forward == (x += b per row; gelu over all) for both GELU forms, with and without bias, on shapes
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
                    if (form) gelu_tanh_forward(y_ref, x_ref, (int)n);
                    else gelu_erf_forward(y_ref, x_ref, (int)n);
                    int before = omp_get_max_threads();
                    omp_set_num_threads(threads);
                    bias_gelu_forward(y, x, with_b ? b : NULL, N, O, form == 1);
                    omp_set_num_threads(before);
                    assert_memory_equal(x, x_ref, 4 * n); /* the pre-activation, kept for backward */
                    assert_memory_equal(y, y_ref, 4 * n);
                    free(x), free(x_ref), free(y), free(y_ref), free(b);
                }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bias_gelu_equals_add_then_gelu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

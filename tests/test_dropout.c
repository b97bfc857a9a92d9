/* Inverted dropout (ftc/ops.h): one rng draw per call, then a counter-based hash per value. The mask must
 * be a fair coin at rate 1 - p (overall, per vector lane and for neighbours), hold only 0 and 1/(1-p), be a
 * function of the rng state alone (not of the thread count, the AVX-512 or portable path, or n), and differ
 * between calls. */
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
#include "ftc/ops.h"

enum { BIG = 1 << 21 }; /* above the threading threshold, many thread tasks */

static float *alloc_f(size_t n) {
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    return a;
}

/* |count - n q| within 5 standard deviations of a binomial(n, q): fails by chance with probability ~6e-7 */
static void assert_binomial(const char *what, long count, long n, double q) {
    double mean = n * q, sd = sqrt(n * q * (1 - q));
    if (fabs(count - mean) > 5 * sd)
        fail_msg("%s: %ld of %ld, expected %.1f +- %.1f (5 sd)", what, count, n, mean, 5 * sd);
}

static void test_rate_values_and_lanes(void **state) {
    (void)state;
    float *x = alloc_f(BIG), *y = alloc_f(BIG), *mask = alloc_f(BIG);
    ftc_rng r;
    ftc_rng_seed(&r, 42);
    for (int i = 0; i < BIG; i++) x[i] = ftc_rng_normal(&r);
    const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    for (int pi = 0; pi < 4; pi++) {
        float p = ps[pi], scale = 1.0f / (1.0f - p);
        ftc_dropout_forward(y, mask, x, BIG, p, &r);
        long kept = 0, kept_lane[16] = {0}, both = 0;
        for (int i = 0; i < BIG; i++) {
            assert_true(mask[i] == 0.0f || mask[i] == scale); /* exactly these two values */
            assert_true(memcmp(&(float){x[i] * mask[i]}, &y[i], sizeof(float)) == 0);
            int k = mask[i] != 0.0f;
            kept += k;
            kept_lane[i % 16] += k;
            if (i > 0) both += k && mask[i - 1] != 0.0f;
        }
        char what[64];
        snprintf(what, sizeof what, "p = %.1f kept", p);
        assert_binomial(what, kept, BIG, 1 - p);
        for (int l = 0; l < 16; l++) { /* a wrong lane in the vector path would show here */
            snprintf(what, sizeof what, "p = %.1f kept in lane %d", p, l);
            assert_binomial(what, kept_lane[l], BIG / 16, 1 - p);
        }
        snprintf(what, sizeof what, "p = %.1f neighbours both kept", p);
        assert_binomial(what, both, BIG - 1, (1 - p) * (1 - p));
        fprintf(stderr, "p = %.1f: kept %.5f (expected %.5f), neighbours both kept %.5f (expected %.5f)\n", p,
                (double)kept / BIG, 1.0 - p, (double)both / (BIG - 1), (1.0 - p) * (1.0 - p));
    }
    /* p = 1 drops everything, p = 0 keeps everything and leaves the rng alone */
    ftc_dropout_forward(y, mask, x, 1000, 1.0f, &r);
    for (int i = 0; i < 1000; i++) assert_true(mask[i] == 0.0f && y[i] == 0.0f);
    ftc_rng before = r;
    ftc_dropout_forward(y, mask, x, 1000, 0.0f, &r);
    for (int i = 0; i < 1000; i++) assert_true(mask[i] == 1.0f && y[i] == x[i]);
    assert_memory_equal(&before, &r, sizeof r);
    free(x), free(y), free(mask);
}

/* The mask is a function of the rng state: the same state gives the same mask (whatever n: value i's
 * decision does not depend on the others), the rng advances by exactly one draw, and the next call's mask is
 * a different, uncorrelated one. */
static void test_same_state_same_mask(void **state) {
    (void)state;
    float *x = alloc_f(BIG), *y1 = alloc_f(BIG), *m1 = alloc_f(BIG), *y2 = alloc_f(BIG), *m2 = alloc_f(BIG);
    for (int i = 0; i < BIG; i++) x[i] = 1.0f;
    ftc_rng r1, r2, one_draw;
    ftc_rng_seed(&r1, 7);
    r2 = one_draw = r1;
    (void)ftc_rng_u64(&one_draw);
    ftc_dropout_forward(y1, m1, x, BIG, 0.25f, &r1);
    ftc_dropout_forward(y2, m2, x, 1000, 0.25f, &r2);
    assert_memory_equal(m1, m2, 1000 * sizeof(float));
    assert_memory_equal(&r1, &one_draw, sizeof r1);
    assert_memory_equal(&r1, &r2, sizeof r1);
    ftc_dropout_forward(y2, m2, x, BIG, 0.25f, &r2); /* the next call */
    long same = 0, both = 0;
    for (int i = 0; i < BIG; i++) {
        same += (m1[i] != 0.0f) == (m2[i] != 0.0f);
        both += m1[i] != 0.0f && m2[i] != 0.0f;
    }
    assert_true(same < BIG);
    assert_binomial("two calls' masks both kept", both, BIG, 0.75 * 0.75);
    /* in place (y == x) gives the same mask */
    ftc_rng r3;
    ftc_rng_seed(&r3, 7);
    for (int i = 0; i < BIG; i++) y2[i] = 1.0f;
    ftc_dropout_forward(y2, m2, y2, BIG, 0.25f, &r3);
    assert_memory_equal(m1, m2, (size_t)BIG * sizeof(float));
    assert_memory_equal(y1, y2, (size_t)BIG * sizeof(float));
    free(x), free(y1), free(m1), free(y2), free(m2);
}

/* Bit-identical masks and outputs for 1, 2 and 3 threads and on the AVX-512 and portable paths, for
 * lengths around the vector width, the thread task size and the threading threshold. */
static void test_threads_and_paths_identical(void **state) {
    (void)state;
    const int lens[] = {0, 1, 15, 16, 17, 33, 1000, 16383, 16385, 32769, 100003, BIG};
    const char *paths[] = {"generic", "avx512"};
    float *x = alloc_f(BIG), *ref_y = alloc_f(BIG), *ref_m = alloc_f(BIG + 1), *y = alloc_f(BIG), *m = alloc_f(BIG + 1);
    ftc_rng r;
    ftc_rng_seed(&r, 3);
    for (int i = 0; i < BIG; i++) x[i] = ftc_rng_normal(&r);
    int saved = ftc_threads(), runs = 0;
    for (int li = 0; li < (int)(sizeof lens / sizeof *lens); li++) {
        int n = lens[li];
        for (int pa = 0; pa < 2; pa++) {
            if (!ftc_matmul_set_backend(paths[pa])) continue;
            for (int t = 1; t <= 3; t++) {
                ftc_threads_set(t);
                ftc_rng_seed(&r, 1000 + (uint64_t)li);
                float *oy = pa == 0 && t == 1 ? ref_y : y, *om = pa == 0 && t == 1 ? ref_m : m;
                memset(om, 0xff, (size_t)n * sizeof(float) + sizeof(float)); /* also: nothing written past n */
                ftc_dropout_forward(oy, om, x, n, 0.4f, &r);
                uint32_t guard;
                memcpy(&guard, &om[n], sizeof guard);
                assert_int_equal(guard, 0xffffffffu);
                if (oy != ref_y) {
                    if (memcmp(ref_m, m, (size_t)n * sizeof(float)) || memcmp(ref_y, y, (size_t)n * sizeof(float)))
                        fail_msg("n = %d: %s path with %d threads differs from generic with 1 thread", n, paths[pa], t);
                    runs++;
                }
            }
        }
    }
    fprintf(stderr, "%d runs (paths x threads x lengths) identical to the generic 1-thread mask\n", runs);
    ftc_threads_set(saved);
    ftc_matmul_set_backend("auto");
    free(x), free(ref_y), free(ref_m), free(y), free(m);
}

/* dx += dy * mask, threaded, accumulating */
static void test_backward(void **state) {
    (void)state;
    float *dy = alloc_f(BIG), *mask = alloc_f(BIG), *dx = alloc_f(BIG), *x = alloc_f(BIG);
    ftc_rng r;
    ftc_rng_seed(&r, 9);
    for (int i = 0; i < BIG; i++) dy[i] = ftc_rng_normal(&r), x[i] = 0.0f, dx[i] = 0.5f;
    ftc_dropout_forward(x, mask, x, BIG, 0.5f, &r);
    ftc_dropout_backward(dx, dy, mask, BIG);
    for (int i = 0; i < BIG; i++) assert_true(dx[i] == 0.5f + dy[i] * mask[i]);
    free(dy), free(mask), free(dx), free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_values_and_lanes),
        cmocka_unit_test(test_same_state_same_mask),
        cmocka_unit_test(test_threads_and_paths_identical),
        cmocka_unit_test(test_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Sampling: greedy ties, top-k/top-p restrict the support, temperature sharpens, seeds repeat. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include "ftc/infer.h"

static void test_greedy_and_ties(void **state) {
    (void)state;
    float l[5] = {0.1f, 2.0f, -1.0f, 2.0f, 0.0f}, p[5];
    int32_t idx[5];
    ftc_sampler g = {0, 0, 1};
    assert_int_equal(ftc_sample(l, 5, &g, NULL, p, idx), 1); /* lowest index wins a tie */
}

static void test_top_k_and_top_p_support(void **state) {
    (void)state;
    /* probabilities at temperature 1: softmax of log(p) = p */
    float probs[6] = {0.4f, 0.3f, 0.15f, 0.1f, 0.04f, 0.01f}, l[6], p[6];
    int32_t idx[6];
    for (int i = 0; i < 6; i++) l[i] = logf(probs[i]);
    ftc_rng r;
    ftc_rng_seed(&r, 7);
    int seen[6] = {0};
    ftc_sampler k2 = {1.0f, 2, 1.0f};
    for (int i = 0; i < 4000; i++) seen[ftc_sample(l, 6, &k2, &r, p, idx)]++;
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] + seen[3] + seen[4] + seen[5] == 0);
    /* renormalised over the top 2: 0.4/0.7 = 0.571 */
    assert_true(fabs(seen[0] / 4000.0 - 0.571) < 0.03);
    int seen_p[6] = {0};
    ftc_sampler p80 = {1.0f, 0, 0.8f}; /* 0.4+0.3 = 0.7 < 0.8, +0.15 reaches it: 3 tokens */
    for (int i = 0; i < 4000; i++) seen_p[ftc_sample(l, 6, &p80, &r, p, idx)]++;
    assert_true(seen_p[2] > 0 && seen_p[3] + seen_p[4] + seen_p[5] == 0);
    /* full distribution: frequencies follow the probabilities */
    int seen_all[6] = {0};
    ftc_sampler plain = {1.0f, 0, 1.0f};
    for (int i = 0; i < 20000; i++) seen_all[ftc_sample(l, 6, &plain, &r, p, idx)]++;
    for (int i = 0; i < 6; i++) assert_true(fabs(seen_all[i] / 20000.0 - probs[i]) < 0.015);
}

static void test_temperature_and_seed(void **state) {
    (void)state;
    float l[3] = {1.0f, 0.0f, -1.0f}, p[3];
    int32_t idx[3];
    ftc_rng a, b;
    ftc_rng_seed(&a, 3);
    ftc_rng_seed(&b, 3);
    ftc_sampler cold = {0.05f, 0, 1.0f};
    int top = 0;
    for (int i = 0; i < 1000; i++) {
        int32_t x = ftc_sample(l, 3, &cold, &a, p, idx), y = ftc_sample(l, 3, &cold, &b, p, idx);
        assert_int_equal(x, y);
        top += x == 0;
    }
    assert_true(top > 995); /* exp(-20) odds for the runner-up */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_top_k_and_top_p_support),
        cmocka_unit_test(test_temperature_and_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Metrics against values computed by hand (worked out in the comments). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include "ftc/eval.h"

#define EPS 1e-12

/* This cmocka has no assert_double_equal: compare with a tolerance and show both values. */
#define assert_close(a, b, eps) assert_close_impl((double)(a), (double)(b), (eps), #a, __FILE__, __LINE__)
static void assert_close_impl(double a, double b, double eps, const char *what, const char *file, int line) {
    if (!(fabs(a - b) <= eps)) {
        print_error("%s = %.15g, expected %.15g (tolerance %g)\n", what, a, b, eps);
        _fail(file, line);
    }
}

static void test_argmax_ties_and_nan_follow_numpy(void **state) {
    (void)state;
    const float tie[] = {1, 3, 3, 0};
    assert_int_equal(ftc_argmax(tie, 4), 1);
    const float all_equal[] = {2, 2, 2};
    assert_int_equal(ftc_argmax(all_equal, 3), 0);
    const float last[] = {-5, -4, -3};
    assert_int_equal(ftc_argmax(last, 3), 2);
    const float with_nan[] = {1, NAN, 5, NAN};
    assert_int_equal(ftc_argmax(with_nan, 4), 1); /* numpy.argmax([1, nan, 5, nan]) == 1 */
    const float one[] = {-INFINITY};
    assert_int_equal(ftc_argmax(one, 1), 0);
}

/* 4 classes; class 3 has examples but is never predicted.
 *   true: 0 0 0 1 1 2 2 3 3 3
 *   pred: 0 0 1 1 1 2 0 2 1 0
 * confusion rows (true) x cols (pred): [2 1 0 0] [0 2 0 0] [1 0 1 0] [1 1 1 0]
 * predicted counts 4 4 2 0, support 3 2 2 3, TP 2 2 1 0, accuracy 5/10
 * precision 1/2 1/2 1/2 0 (0/0 -> 0); recall 2/3 1 1/2 0
 * F1 4/7 2/3 1/2 0; macro = (4/7 + 2/3 + 1/2 + 0)/4 = 73/168
 * weighted = (3*4/7 + 2*2/3 + 2*1/2 + 3*0)/10 = 17/42 */
static void test_classification_with_never_predicted_class(void **state) {
    (void)state;
    const int y[] = {0, 0, 0, 1, 1, 2, 2, 3, 3, 3};
    const int p[] = {0, 0, 1, 1, 1, 2, 0, 2, 1, 0};
    ftc_class_metrics m;
    ftc_err e;
    assert_int_equal(ftc_class_metrics_init(&m, 4, &e), FTC_OK);
    for (int i = 0; i < 10; i++) assert_int_equal(ftc_class_metrics_add(&m, y[i], p[i], &e), FTC_OK);
    ftc_class_metrics_finish(&m);
    const int64_t confusion[16] = {2, 1, 0, 0, 0, 2, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0};
    for (int i = 0; i < 16; i++) assert_int_equal(m.confusion[i], confusion[i]);
    assert_int_equal(m.n_examples, 10);
    assert_close(m.accuracy, 0.5, EPS);
    const double prec[] = {0.5, 0.5, 0.5, 0}, rec[] = {2.0 / 3, 1, 0.5, 0}, f1[] = {4.0 / 7, 2.0 / 3, 0.5, 0};
    const int64_t support[] = {3, 2, 2, 3}, predicted[] = {4, 4, 2, 0};
    for (int c = 0; c < 4; c++) {
        assert_close(m.precision[c], prec[c], EPS);
        assert_close(m.recall[c], rec[c], EPS);
        assert_close(m.f1[c], f1[c], EPS);
        assert_int_equal(m.support[c], support[c]);
        assert_int_equal(m.predicted[c], predicted[c]);
    }
    assert_close(m.macro_f1, 73.0 / 168, EPS);
    assert_close(m.weighted_f1, 17.0 / 42, EPS);
    assert_int_equal(m.n_absent, 0);
    assert_true(isnan(m.loss)); /* no logits, no loss */
    int worst[4];
    ftc_class_metrics_worst(&m, worst);
    assert_int_equal(worst[0], 3);
    assert_int_equal(worst[1], 2);
    assert_int_equal(worst[2], 0);
    assert_int_equal(worst[3], 1);

    /* JSON carries the same numbers under the documented keys */
    const char *names[] = {"a", "b", "c", "d"};
    json_t *j = ftc_class_metrics_json(&m, names);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "task")), "classify");
    assert_close(json_real_value(json_object_get(j, "macro_f1")), 73.0 / 168, EPS);
    assert_int_equal(json_integer_value(json_object_get(j, "n_examples")), 10);
    assert_null(json_object_get(j, "loss"));
    json_t *d = json_array_get(json_object_get(j, "per_class"), 3);
    assert_string_equal(json_string_value(json_object_get(d, "label")), "d");
    assert_close(json_real_value(json_object_get(d, "precision")), 0, EPS);
    assert_int_equal(json_integer_value(json_object_get(d, "support")), 3);
    json_t *row3 = json_array_get(json_object_get(j, "confusion"), 3);
    assert_int_equal(json_integer_value(json_array_get(row3, 0)), 1);
    assert_int_equal(json_integer_value(json_array_get(row3, 3)), 0);
    json_decref(j);

    /* out-of-range classes are refused and change nothing */
    assert_int_equal(ftc_class_metrics_add(&m, 4, 0, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "true class 4"));
    assert_int_equal(ftc_class_metrics_add(&m, 0, -1, &e), FTC_E_INPUT);
    assert_int_equal(m.n_examples, 10);
    ftc_class_metrics_free(&m);
}

/* A class of the label map with neither examples nor predictions counts as F1 0 in the macro
 * average (sklearn f1_score(labels=range(K), average="macro")): true 0 1, pred 0 1, K=3 ->
 * F1 1 1 0, macro 2/3, accuracy 1. */
static void test_absent_class_counts_in_macro_average(void **state) {
    (void)state;
    ftc_class_metrics m;
    ftc_err e;
    assert_int_equal(ftc_class_metrics_init(&m, 3, &e), FTC_OK);
    assert_int_equal(ftc_class_metrics_add(&m, 0, 0, &e), FTC_OK);
    assert_int_equal(ftc_class_metrics_add(&m, 1, 1, &e), FTC_OK);
    ftc_class_metrics_finish(&m);
    assert_close(m.accuracy, 1, EPS);
    assert_close(m.macro_f1, 2.0 / 3, EPS);
    assert_close(m.weighted_f1, 1, EPS);
    assert_int_equal(m.n_absent, 1);
    ftc_class_metrics_free(&m);
    assert_int_equal(ftc_class_metrics_init(&m, 0, &e), FTC_E_INPUT);
}

/* Logits: row 0 = [0 0 0], true 2 -> tie predicts 0, loss log 3.
 *         row 1 = [0 log3 0], true 1 -> predicts 1, p = 3/5, loss log(5/3).
 * mean loss = (log 3 + log 5/3)/2 = log(5)/2; accuracy 1/2. */
static void test_classification_from_logits(void **state) {
    (void)state;
    const float logits[] = {0, 0, 0, 0, (float)log(3.0), 0};
    const int32_t labels[] = {2, 1};
    ftc_class_metrics m;
    ftc_err e;
    assert_int_equal(ftc_class_metrics_init(&m, 3, &e), FTC_OK);
    assert_int_equal(ftc_class_metrics_add_logits(&m, logits, labels, 2, &e), FTC_OK);
    ftc_class_metrics_finish(&m);
    assert_int_equal(m.confusion[2 * 3 + 0], 1);
    assert_int_equal(m.confusion[1 * 3 + 1], 1);
    assert_close(m.accuracy, 0.5, EPS);
    assert_close(m.loss, log(5.0) / 2, 1e-7);
    /* large logits do not overflow: [1000 0] with true class 1 costs 1000 */
    const float big[] = {1000, 0, -1000};
    const int32_t one[] = {1};
    assert_int_equal(ftc_class_metrics_add_logits(&m, big, one, 1, &e), FTC_OK);
    ftc_class_metrics_finish(&m);
    assert_close(m.loss, (log(5.0) + 1000) / 3, 1e-6);
    /* a bad label in a batch is refused before anything is counted */
    const int32_t bad[] = {0, 7};
    assert_int_equal(ftc_class_metrics_add_logits(&m, logits, bad, 2, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "row 1"));
    assert_int_equal(m.n_examples, 3);
    ftc_class_metrics_free(&m);
}

/* B=2, T=4, V=3. Row 0 labels [-100 2 0 -100]: position 0 predicts 2 from [0 0 0] (loss log 3,
 * argmax 0: wrong), position 1 predicts 0 from [log2 0 0] (p=1/2, loss log 2, right), position 2's
 * target is ignored, position 3 has no next token. Row 1 is all -100 (a prompt-only example).
 * loss = (log3 + log2)/2 = log(6)/2, perplexity sqrt(6), token accuracy 1/2. */
static void test_lm_metrics_shift_and_mask(void **state) {
    (void)state;
    float logits[2 * 4 * 3];
    for (int i = 0; i < 24; i++) logits[i] = (float)(i % 5) * 0.7f; /* noise where nothing is counted */
    const float p0[] = {0, 0, 0}, p1[] = {(float)log(2.0), 0, 0};
    memcpy(logits + 0, p0, sizeof p0);
    memcpy(logits + 3, p1, sizeof p1);
    const int32_t labels[] = {-100, 2, 0, -100, -100, -100, -100, -100};
    ftc_lm_metrics m;
    ftc_err e;
    ftc_lm_metrics_init(&m);
    assert_true(isnan(ftc_lm_loss(&m)));
    assert_int_equal(ftc_lm_metrics_add_logits(&m, logits, labels, 2, 4, 3, &e), FTC_OK);
    assert_int_equal(m.n_tokens, 2);
    assert_int_equal(m.n_sequences, 2);
    assert_close(ftc_lm_loss(&m), log(6.0) / 2, 1e-7);
    assert_close(ftc_lm_perplexity(&m), sqrt(6.0), 1e-6);
    assert_close(ftc_lm_token_accuracy(&m), 0.5, EPS);
    json_t *j = ftc_lm_metrics_json(&m);
    assert_non_null(j);
    assert_close(json_real_value(json_object_get(j, "perplexity")), sqrt(6.0), 1e-6);
    assert_int_equal(json_integer_value(json_object_get(j, "n_tokens")), 2);
    json_decref(j);
    /* a label outside the vocabulary names its place */
    const int32_t bad[] = {-100, 2, 3, -100};
    assert_int_equal(ftc_lm_metrics_add_logits(&m, logits, bad, 1, 4, 3, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "row 0 position 2"));
    assert_int_equal(m.n_tokens, 2);
    /* with nothing counted the JSON says null, not a made-up number */
    ftc_lm_metrics empty;
    ftc_lm_metrics_init(&empty);
    j = ftc_lm_metrics_json(&empty);
    assert_true(json_is_null(json_object_get(j, "loss")));
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argmax_ties_and_nan_follow_numpy),
        cmocka_unit_test(test_classification_with_never_predicted_class),
        cmocka_unit_test(test_absent_class_counts_in_macro_average),
        cmocka_unit_test(test_classification_from_logits),
        cmocka_unit_test(test_lm_metrics_shift_and_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Token-F1 and ROUGE-L against values worked out by hand and rouge_score's README example. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include "ftc/eval.h"

#define assert_close(a, b) assert_close_impl((double)(a), (double)(b), #a, __FILE__, __LINE__)
static void assert_close_impl(double a, double b, const char *what, const char *file, int line) {
    if (!(fabs(a - b) <= 1e-12)) {
        print_error("%s = %.15g, expected %.15g\n", what, a, b);
        _fail(file, line);
    }
}

static double f1(const char *p, const char *r) {
    double v = -1;
    ftc_err e;
    assert_int_equal(ftc_text_token_f1(p, r, &v, &e), FTC_OK);
    return v;
}

static double rl(const char *p, const char *r) {
    double v = -1;
    ftc_err e;
    assert_int_equal(ftc_text_rouge_l(p, r, &v, &e), FTC_OK);
    return v;
}

/* rouge_score's README: target "The quick brown fox jumps over the lazy dog" (9 tokens), prediction "The quick
 * brown dog jumps on the log." (8): LCS the quick brown jumps the = 5, P 5/8, R 5/9, rougeL fmeasure 0.5882. */
static void test_rouge_l_matches_rouge_score_readme(void **state) {
    (void)state;
    double p = 5.0 / 8, r = 5.0 / 9;
    assert_close(rl("The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog"),
                 2 * p * r / (p + r));
    /* the cat sat on the mat / the cat is on the mat: LCS 5 of 6 and 6 */
    assert_close(rl("the cat sat on the mat", "the cat is on the mat"), 5.0 / 6);
    /* order matters for ROUGE-L, not for token-F1 */
    assert_close(rl("mat the on", "on the mat"), 1.0 / 3);
    assert_close(f1("mat the on", "on the mat"), 1.0);
}

static void test_token_f1_counts_a_multiset_without_articles(void **state) {
    (void)state;
    /* pred: bike is at station (the x2 dropped); ref: bike is at station 5 (a dropped): common 4, P 1, R 4/5 */
    assert_close(f1("The bike is at the station.", "A bike is at station 5"), 2 * 0.8 / 1.8);
    /* repeats count once per occurrence on each side: common 1, P 1/3, R 1 */
    assert_close(f1("bike bike bike", "bike"), 0.5);
    assert_close(f1("nothing shared here", "bike"), 0.0);
}

static void test_case_punctuation_and_non_ascii_separate_tokens(void **state) {
    (void)state;
    assert_close(f1("Tap \"Unlock\"!", "tap unlock"), 1.0);
    assert_close(rl("EUR 0.15/min", "eur 0 15 min"), 1.0);
    /* as rouge_score: every non-[a-z0-9] byte separates, so "café" is the token "caf" */
    assert_close(rl("café au lait", "cafe au lait"), 2.0 / 3);
}

static void test_empty_sides(void **state) {
    (void)state;
    assert_close(f1("", ""), 1.0);        /* SQuAD: both empty agree */
    assert_close(f1("the a an", "!"), 1.0); /* articles only: no tokens either */
    assert_close(f1("bike", ""), 0.0);
    assert_close(f1("", "bike"), 0.0);
    assert_close(rl("", ""), 0.0); /* rouge_score: 0 when a side has no tokens */
    assert_close(rl("bike", "..."), 0.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rouge_l_matches_rouge_score_readme),
        cmocka_unit_test(test_token_f1_counts_a_multiset_without_articles),
        cmocka_unit_test(test_case_punctuation_and_non_ascii_separate_tokens),
        cmocka_unit_test(test_empty_sides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

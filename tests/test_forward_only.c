/* The forward-only plan (nothing trainable: one block's activations for all blocks, no gradient scratch) and
 * the loss-only LM head (ftc_model_set_loss_only) against the training plan on the same model and batch:
 *  - hidden states / logits bit-identical, loss within 1e-6 relative, the loss-only one bit-identical (causal LMs: stories260K, Llama GQA,
 *    GPT-2, Mistral, Qwen2 fixtures; encoders: BERT fixture, all-MiniLM-L6-v2 when FTC_MINILM_DIR is set);
 *  - the forward-only plan is smaller, and a parameter made trainable re-plans for training;
 *  - every plan grows at most linearly with the sequence length (nothing T x T): plan(4T) - plan(2T) <=
 *    2 (plan(2T) - plan(T)) + 64 bytes per entry of alignment (entries capped in T, such as the LM head's
 *    chunks, grow less). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/model.h"

enum { B = 2, T = 200 }; /* B T > 64: the loss-only head runs in several chunks */

static bool model_dir(char *out, size_t n, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR"), *shared = getenv("FTC_SHARED_DATA");
    if (!strcmp(name, "stories260K")) snprintf(out, n, "%s/models/stories260K-hf", shared ? shared : "../shared/data");
    else if (!strcmp(name, "minilm")) snprintf(out, n, "%s", getenv("FTC_MINILM_DIR") ? getenv("FTC_MINILM_DIR") : "");
    else snprintf(out, n, "%s/tests/fixtures/models/%s", src ? src : ".", name);
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    return *out && access(cfg, R_OK) == 0;
}

static void make_batch(int V, int Tn, int32_t *ids, uint8_t *mask) {
    for (int r = 0; r < B; r++)
        for (int t = 0; t < Tn; t++) {
            ids[r * Tn + t] = (int32_t)((1 + 7 * r + 31 * t + t * t) % V);
            mask[r * Tn + t] = r == 0 || t < Tn - 9; /* row 1 right-padded */
        }
}

static int64_t plan_bytes(ftc_model *m, int Tn) {
    ftc_err e;
    if (ftc_model_reserve(m, B, Tn, &e)) fail_msg("%s", e.msg);
    return ftc_model_activation_bytes(m);
}

static void check_linear(ftc_model *m, int Tn, const char *what) {
    int64_t a = plan_bytes(m, Tn / 4), b = plan_bytes(m, Tn / 2), c = plan_bytes(m, Tn / 4 * 4);
    printf("    %s plan: %lld / %lld / %lld bytes at T = %d / %d / %d\n", what, (long long)a, (long long)b, (long long)c,
           Tn / 4, Tn / 2, Tn / 4 * 4);
    /* a T x T entry would add 8 x its coefficient x (T/4)^2 here; capped entries (LM head chunks) add less */
    if (Tn % 4 == 0) assert_true((c - b) - 2 * (b - a) <= 64 * 200);
    else assert_true(c < 4 * b); /* Tn/2 is not 2 * Tn/4: only bounded */
}

static void run_case(const char *name, ftc_task task) {
    char dir[4096];
    if (!model_dir(dir, sizeof dir, name)) {
        printf("  SKIP %s: not found\n", name);
        return;
    }
    ftc_model *m;
    ftc_err e;
    if (ftc_model_load(dir, task, &m, &e)) fail_msg("%s: %s", name, e.msg);
    const ftc_model_config *cfg = ftc_model_config_of(m);
    int Tn = T < cfg->max_positions ? T : cfg->max_positions, V = cfg->vocab_size;
    if (cfg->sliding_window > 0 && Tn > cfg->sliding_window) Tn = cfg->sliding_window;
    int n = ftc_model_n_params(m);
    for (int i = 0; i < n; i++) ftc_model_set_trainable(m, i, false);
    int32_t ids[B * T];
    uint8_t mask[B * T];
    make_batch(V, Tn, ids, mask);
    int32_t labels[B * T];
    for (int i = 0; i < B * Tn; i++) labels[i] = mask[i] ? ids[i] : -100;
    bool lm = task == FTC_TASK_CAUSAL_LM;
    ftc_batch b = {B, Tn, ids, NULL, mask, lm ? labels : NULL};
    size_t nout = lm ? (size_t)B * Tn * V : (size_t)B * Tn * cfg->hidden_size;
    float *ref = malloc(nout * sizeof(float)), loss_fwd = 0, loss_chunked = 0, loss_train = 0;

    check_linear(m, Tn, "forward-only");
    int64_t fwd = plan_bytes(m, Tn);
    if (ftc_model_forward(m, &b, false, &loss_fwd, &e)) fail_msg("%s: %s", name, e.msg);
    memcpy(ref, lm ? ftc_model_logits(m) : ftc_model_hidden(m), nout * sizeof(float));
    if (lm) {
        assert_int_equal(ftc_model_set_loss_only(m, true, &e), FTC_OK);
        int64_t chunked = ftc_model_activation_bytes(m);
        if (ftc_model_forward(m, &b, false, &loss_chunked, &e)) fail_msg("%s: %s", name, e.msg);
        assert_null(ftc_model_logits(m));
        /* the pieces of logits instead of [B, T, V], plus each position's loss in f64 */
        assert_true(chunked <= fwd + (int64_t)B * Tn * (int64_t)sizeof(double) + 64);
        assert_int_equal(ftc_model_set_loss_only(m, false, &e), FTC_OK);
    }
    /* one trainable parameter (the last block's first norm or linear) re-plans for training */
    ftc_model_set_trainable(m, n - 1, true);
    int64_t train = ftc_model_activation_bytes(m);
    check_linear(m, Tn, "training");
    assert_int_equal(plan_bytes(m, Tn), train);
    if (ftc_model_forward(m, &b, false, &loss_train, &e)) fail_msg("%s: %s", name, e.msg);
    const float *got = lm ? ftc_model_logits(m) : ftc_model_hidden(m);
    size_t diff = 0;
    for (size_t i = 0; i < nout; i++) diff += memcmp(&got[i], &ref[i], sizeof(float)) != 0;
    printf("  %-12s activations %.2f MiB forward-only vs %.2f MiB training (B=%d T=%d); outputs differing: %zu of %zu",
           name, fwd / 1048576.0, train / 1048576.0, B, Tn, diff, nout);
    if (lm) printf("; loss %.7f / loss-only %.7f / training plan %.7f", loss_fwd, loss_chunked, loss_train);
    printf("\n");
    assert_int_equal(diff, 0);
    assert_true(fwd < train);
    if (lm) {
        assert_true(fabsf(loss_fwd - loss_train) <= 1e-6f * fabsf(loss_train));
        assert_true(fabsf(loss_chunked - loss_train) <= 1e-6f * fabsf(loss_train));
        assert_memory_equal(&loss_chunked, &loss_fwd, sizeof(float)); /* the same per-row losses, summed alike */
    }
    free(ref);
    ftc_model_free(m);
}

static void test_causal_lms(void **state) {
    (void)state;
    const char *names[] = {"stories260K", "llama_gqa", "gpt2", "mistral", "qwen2", "llama_tied"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) run_case(names[i], FTC_TASK_CAUSAL_LM);
}
static void test_encoders(void **state) {
    (void)state;
    run_case("bert_mean", FTC_TASK_ENCODE);
    run_case("minilm", FTC_TASK_ENCODE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_causal_lms),
        cmocka_unit_test(test_encoders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

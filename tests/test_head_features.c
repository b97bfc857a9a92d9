/* What the trainer's feature cache (head on a frozen backbone, docs/train.md) and length-bucketed batching
 * rely on:
 *  - padding does not change a row's logits: a row alone (no padding) and the same row in a batch padded to a
 *    longer length with junk ids behind the mask give the same logits within 1e-5 (BERT CLS+pooler, BERT mean,
 *    GPT-2 and Llama last-token fixtures; all-MiniLM-L6-v2 mean and CLS when FTC_MINILM_DIR is set);
 *  - ftc_model_head_features + ftc_model_head_forward give ftc_model_forward's logits and loss, and backward
 *    after them the same head gradients;
 *  - ftc_model_head_forward refuses a model whose backbone trains (backward could not reach it);
 *  - label smoothing (ftc_model_set_label_smoothing): the training loss and the head's gradient are the
 *    smoothed cross-entropy's, computed here from the logits; evaluation keeps the plain cross-entropy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/model.h"

#define NROWS 3
static const int row_len[NROWS] = {5, 9, 3};

static ftc_model *load_classifier(const char *dir, ftc_pooling pooling, int num_labels, int max_B, int max_T) {
    ftc_model *m;
    ftc_err e;
    if (ftc_model_load(dir, FTC_TASK_CLASSIFY, &m, &e)) fail_msg("%s: %s", dir, e.msg);
    if (ftc_model_set_classifier(m, num_labels, pooling, 99, &e)) fail_msg("%s: %s", dir, e.msg);
    if (ftc_model_reserve(m, max_B, max_T, &e)) fail_msg("%s: %s", dir, e.msg);
    return m;
}

static void fixture_dir(char *out, size_t n, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(out, n, "%s/tests/fixtures/models/%s", src ? src : ".", name);
}

/* Row r's token ids: deterministic, inside the vocabulary, BERT-like CLS start. */
static int32_t row_id(int r, int t, int V) { return t == 0 ? 1 % V : (7 + 13 * r + 29 * t) % V; }

/* Logits of each row alone vs the rows together, right-padded to the longest + extra (junk ids behind the
 * mask); returns the largest difference. */
static double padding_diff(ftc_model *m, int extra) {
    const ftc_model_config *cfg = ftc_model_config_of(m);
    int V = cfg->vocab_size;
    bool bert = cfg->family == FTC_FAMILY_BERT;
    int T = 0;
    for (int r = 0; r < NROWS; r++) T = row_len[r] > T ? row_len[r] : T;
    T += extra;
    int32_t ids[NROWS * 32], types[NROWS * 32];
    uint8_t mask[NROWS * 32];
    assert_true(T <= 16);
    for (int r = 0; r < NROWS; r++)
        for (int t = 0; t < T; t++) {
            bool real = t < row_len[r];
            ids[r * T + t] = real ? row_id(r, t, V) : (3 + 5 * t + r) % V; /* junk, not the pad id */
            types[r * T + t] = bert && real && t >= 2 ? 1 : 0;
            mask[r * T + t] = real;
        }
    ftc_err e;
    ftc_batch b = {NROWS, T, ids, bert ? types : NULL, mask, NULL};
    if (ftc_model_forward(m, &b, false, NULL, &e)) fail_msg("%s", e.msg);
    float padded[NROWS * 64];
    int nl = 0; /* the head's width: classifier.weight / score.weight is [num_labels, C] */
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (strstr(p->name, "classifier.weight") || strstr(p->name, "score.weight")) nl = (int)p->shape[0];
    }
    assert_true(nl > 0 && nl * NROWS <= 64);
    memcpy(padded, ftc_model_logits(m), (size_t)NROWS * nl * sizeof(float));
    double worst = 0;
    for (int r = 0; r < NROWS; r++) {
        int L = row_len[r];
        int32_t one_ids[32], one_types[32];
        for (int t = 0; t < L; t++) { one_ids[t] = ids[r * T + t]; one_types[t] = types[r * T + t]; }
        ftc_batch one = {1, L, one_ids, bert ? one_types : NULL, NULL, NULL};
        if (ftc_model_forward(m, &one, false, NULL, &e)) fail_msg("%s", e.msg);
        const float *lo = ftc_model_logits(m);
        for (int k = 0; k < nl; k++) worst = fmax(worst, fabs((double)lo[k] - padded[r * nl + k]));
    }
    return worst;
}

static void padding_case(const char *dir, const char *what, ftc_pooling pooling) {
    ftc_model *m = load_classifier(dir, pooling, 4, NROWS, 16); /* the fixtures have 16 positions */
    double worst = 0;
    for (int extra = 0; extra <= 7; extra += 7) worst = fmax(worst, padding_diff(m, extra));
    printf("  %-28s padded vs unpadded logits: max diff %.2e\n", what, worst);
    if (!(worst <= 1e-5)) fail_msg("%s: padding changed the logits by %.3g", what, worst);
    ftc_model_free(m);
}

static void test_padding_does_not_change_logits(void **state) {
    (void)state;
    char dir[4200];
    fixture_dir(dir, sizeof dir, "bert_cls");
    padding_case(dir, "bert_cls (CLS + pooler)", FTC_POOL_CLS);
    fixture_dir(dir, sizeof dir, "bert_mean");
    padding_case(dir, "bert_mean (mean)", FTC_POOL_MEAN);
    fixture_dir(dir, sizeof dir, "gpt2_cls");
    padding_case(dir, "gpt2_cls (last token)", FTC_POOL_LAST);
    fixture_dir(dir, sizeof dir, "llama_cls");
    padding_case(dir, "llama_cls (last token)", FTC_POOL_LAST);
}

static void test_padding_minilm(void **state) {
    (void)state;
    const char *dir = getenv("FTC_MINILM_DIR");
    if (!dir || !*dir) skip();
    padding_case(dir, "all-MiniLM-L6-v2 (mean)", FTC_POOL_MEAN);
    padding_case(dir, "all-MiniLM-L6-v2 (CLS + pooler)", FTC_POOL_CLS);
}

/* features + head alone == the whole forward, for logits, loss and the head's gradients */
static void head_split_case(const char *name, ftc_pooling pooling) {
    char dir[4200];
    fixture_dir(dir, sizeof dir, name);
    ftc_model *m = load_classifier(dir, pooling, 3, NROWS, 16);
    ftc_err e;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        const char *n = ftc_model_param(m, i)->name;
        ftc_model_set_trainable(m, i, strstr(n, "classifier") || strstr(n, "score"));
    }
    if (ftc_model_reserve(m, NROWS, 16, &e)) fail_msg("%s", e.msg);
    const ftc_model_config *cfg = ftc_model_config_of(m);
    int C = cfg->hidden_size, V = cfg->vocab_size, T = 9;
    int32_t ids[NROWS * 9], labels[NROWS] = {2, 0, 1};
    uint8_t mask[NROWS * 9];
    for (int r = 0; r < NROWS; r++)
        for (int t = 0; t < T; t++) { ids[r * T + t] = row_id(r, t, V); mask[r * T + t] = t < row_len[r]; }
    ftc_batch b = {NROWS, T, ids, NULL, mask, labels};
    float loss_full, loss_head;
    ftc_model_zero_grad(m);
    if (ftc_model_forward(m, &b, false, &loss_full, &e) || ftc_model_backward(m, &e)) fail_msg("%s", e.msg);
    float logits_full[NROWS * 3];
    memcpy(logits_full, ftc_model_logits(m), sizeof logits_full);
    ftc_param *w = NULL;
    for (int i = 0; i < ftc_model_n_params(m); i++)
        if (ftc_model_param(m, i)->trainable && ftc_model_param(m, i)->ndim == 2) w = ftc_model_param(m, i);
    assert_non_null(w);
    float *grad_full = malloc((size_t)w->numel * sizeof(float));
    memcpy(grad_full, w->grad, (size_t)w->numel * sizeof(float));

    float *feats = malloc((size_t)NROWS * C * sizeof(float));
    if (ftc_model_head_features(m, &b, feats, &e)) fail_msg("%s", e.msg);
    ftc_model_zero_grad(m);
    if (ftc_model_head_forward(m, feats, NROWS, labels, false, &loss_head, &e) || ftc_model_backward(m, &e))
        fail_msg("%s", e.msg);
    assert_memory_equal(logits_full, ftc_model_logits(m), sizeof logits_full);
    assert_true(loss_full == loss_head);
    assert_memory_equal(grad_full, w->grad, (size_t)w->numel * sizeof(float));
    /* labels out of range and oversized batches are refused, not read past */
    int32_t bad[NROWS] = {0, 3, 0};
    assert_int_equal(ftc_model_head_forward(m, feats, NROWS, bad, false, NULL, &e), FTC_E_INPUT);
    assert_int_equal(ftc_model_head_forward(m, feats, NROWS + 1, NULL, false, NULL, &e), FTC_E_USAGE);
    /* a trainable backbone: refused, naming the parameter */
    for (int i = 0; i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, true);
    if (ftc_model_reserve(m, NROWS, 16, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_head_forward(m, feats, NROWS, labels, true, NULL, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "frozen backbone"));
    printf("  %-10s features + head == forward: logits, loss %.6f, head gradient identical\n", name, loss_head);
    free(feats);
    free(grad_full);
    ftc_model_free(m);
}

static void test_head_features_equal_forward(void **state) {
    (void)state;
    head_split_case("bert_cls", FTC_POOL_CLS);
    head_split_case("bert_mean", FTC_POOL_MEAN);
    head_split_case("llama_cls", FTC_POOL_LAST);
}

/* eps = 0.2 on 3 labels: loss = mean_i [(1 - eps)(lse - z_y) + eps (lse - mean_k z_k)] while training, plain
 * cross-entropy in evaluation; the head weight's gradient = sum_i (softmax - (1 - eps) onehot - eps / K) x^T / B. */
static void test_label_smoothing(void **state) {
    (void)state;
    char dir[4200];
    fixture_dir(dir, sizeof dir, "llama_cls"); /* no dropout on the head: training mode is deterministic */
    enum { K = 3 };
    ftc_model *m = load_classifier(dir, FTC_POOL_LAST, K, NROWS, 16);
    ftc_err e;
    ftc_param *w = NULL;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        ftc_model_set_trainable(m, i, p->role == FTC_PARAM_CLASSIFIER);
        if (p->role == FTC_PARAM_CLASSIFIER && p->ndim == 2) w = p;
    }
    assert_non_null(w);
    if (ftc_model_reserve(m, NROWS, 16, &e)) fail_msg("%s", e.msg);
    int C = ftc_model_config_of(m)->hidden_size;
    float *feats = malloc((size_t)NROWS * C * sizeof(float));
    for (int i = 0; i < NROWS * C; i++) feats[i] = (float)sin(0.37 * i + 1.0) * 3.0f;
    int32_t labels[NROWS] = {2, 0, 1};
    const float eps = 0.2f;
    assert_int_equal(ftc_model_set_label_smoothing(m, 1.0f, &e), FTC_E_USAGE);
    assert_int_equal(ftc_model_set_label_smoothing(m, eps, &e), FTC_OK);
    float loss_eval, loss_train;
    if (ftc_model_head_forward(m, feats, NROWS, labels, false, &loss_eval, &e)) fail_msg("%s", e.msg);
    ftc_model_zero_grad(m);
    if (ftc_model_head_forward(m, feats, NROWS, labels, true, &loss_train, &e) || ftc_model_backward(m, &e))
        fail_msg("%s", e.msg);
    const float *z = ftc_model_logits(m);
    double ce = 0, smooth = 0, dl[NROWS][K];
    for (int i = 0; i < NROWS; i++) {
        double mx = z[i * K], se = 0, sz = 0;
        for (int k = 1; k < K; k++) mx = z[i * K + k] > mx ? z[i * K + k] : mx;
        for (int k = 0; k < K; k++) se += exp(z[i * K + k] - mx), sz += z[i * K + k];
        double lse = mx + log(se);
        ce += lse - z[i * K + labels[i]];
        smooth += (1 - eps) * (lse - z[i * K + labels[i]]) + eps * (lse - sz / K);
        for (int k = 0; k < K; k++)
            dl[i][k] = (exp(z[i * K + k] - lse) - (1 - eps) * (k == labels[i]) - eps / K) / NROWS;
    }
    assert_true(fabs(loss_eval - ce / NROWS) < 1e-5);
    assert_true(fabs(loss_train - smooth / NROWS) < 1e-5);
    assert_true(loss_train - loss_eval > 1e-3); /* the smoothed loss differs: the test can tell them apart */
    double worst = 0;
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            double g = 0;
            for (int i = 0; i < NROWS; i++) g += dl[i][k] * feats[i * C + c];
            double d = fabs(g - w->grad[k * C + c]);
            worst = d > worst ? d : worst;
        }
    assert_true(worst < 1e-5);
    printf("  label smoothing 0.2: loss %.6f (plain %.6f), head gradient within %.1e\n", loss_train, loss_eval, worst);
    free(feats);
    ftc_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_padding_does_not_change_logits),
        cmocka_unit_test(test_padding_minilm),
        cmocka_unit_test(test_head_features_equal_forward),
        cmocka_unit_test(test_label_smoothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The model's training-side behaviour: gradients vs finite differences with dropout on (BERT incl. attention
 * dropout, GPT-2), frozen parameters get no gradient and training=false switches dropout off; LoRA (exact base
 * outputs at init, A/B gradients vs finite differences, merged == unmerged); save -> load round trip
 * (GPT-2 Conv1D transposed back); random init. Finite differences: the directional derivative along each
 * tensor's own gradient, (L(w + e d) - L(w - e d)) / 2e with d = g/|g|, must equal |g| within 2% (float32 loss,
 * e = 1e-2, 3e-3 for LoRA's more curved loss; the dropout masks are replayed by restoring the model's RNG before every forward). */
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
#include "ftc/safetensors.h"

static char fixdir[4096];

static void fixture_dir(char *out, size_t n, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(out, n, "%s/tests/fixtures/models/%s", src ? src : ".", name);
}

enum { B = 2, T = 6 };
static int32_t ids[B * T] = {5, 9, 3, 17, 22, 8, 30, 4, 11, 2, 0, 0};
static int32_t lm_labels[B * T] = {5, 9, 3, 17, 22, 8, 30, 4, 11, 2, -100, -100};
static int32_t cls_labels[B] = {1, 0};
static int32_t types[B * T] = {0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1};
static uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};

static ftc_batch batch_for(const ftc_model *m) {
    bool lm = ftc_model_task(m) == FTC_TASK_CAUSAL_LM;
    bool bert = ftc_model_config_of(m)->family == FTC_FAMILY_BERT;
    ftc_batch b = {B, T, ids, bert ? types : NULL, mask, lm ? lm_labels : cls_labels};
    return b;
}

static float loss_at(ftc_model *m, const ftc_batch *b, bool training, const ftc_rng *rng) {
    ftc_err e;
    float loss;
    if (rng) *ftc_model_rng(m) = *rng;
    if (ftc_model_forward(m, b, training, &loss, &e)) fail_msg("%s", e.msg);
    return loss;
}

/* Checks every trainable tensor's gradient (or those whose name contains `only`) against finite differences. */
static int fd_check_batch(ftc_model *m, ftc_batch b, bool training, const char *only, double eps) {
    ftc_rng rng = *ftc_model_rng(m);
    ftc_err e;
    ftc_model_zero_grad(m);
    loss_at(m, &b, training, &rng);
    assert_int_equal(ftc_model_backward(m, &e), FTC_OK);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!p->trainable || (only && !strstr(p->name, only))) continue;
        double norm = 0;
        for (int64_t k = 0; k < p->numel; k++) norm += (double)p->grad[k] * p->grad[k];
        norm = sqrt(norm);
        if (norm < 1e-3) continue; /* too small for a float32 difference quotient */
        float *save = malloc((size_t)p->numel * sizeof(float)), *g = malloc((size_t)p->numel * sizeof(float));
        memcpy(save, p->data, (size_t)p->numel * sizeof(float));
        memcpy(g, p->grad, (size_t)p->numel * sizeof(float));
        double l[2];
        for (int s = 0; s < 2; s++) {
            double step = s ? -eps : eps;
            for (int64_t k = 0; k < p->numel; k++) p->data[k] = save[k] + (float)(step * g[k] / norm);
            l[s] = loss_at(m, &b, training, &rng);
        }
        memcpy(p->data, save, (size_t)p->numel * sizeof(float));
        double fd = (l[0] - l[1]) / (2 * eps), err = fabs(fd - norm) / norm;
        if (err > 2e-2) fail_msg("%s: finite difference %.6g vs |grad| %.6g (rel %.3g)", p->name, fd, norm, err);
        worst = fmax(worst, err);
        checked++;
        free(save), free(g);
    }
    print_message("finite differences: %d tensors, worst relative error %.2e\n", checked, worst);
    return checked;
}

static int fd_check(ftc_model *m, bool training, const char *only, double eps) {
    return fd_check_batch(m, batch_for(m), training, only, eps);
}

static ftc_model *create(const char *json, ftc_task task) {
    ftc_model_config cfg;
    ftc_err e;
    if (ftc_config_parse(json, strlen(json), "test config", &cfg, &e)) fail_msg("%s", e.msg);
    ftc_model *m;
    if (ftc_model_create(&cfg, task, 42, &m, &e)) fail_msg("%s", e.msg);
    ftc_config_free(&cfg);
    if (ftc_model_reserve(m, B, T, &e)) fail_msg("%s", e.msg);
    return m;
}

static const char *BERT_DROPOUT = "{\"model_type\":\"bert\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
                                  "\"num_attention_heads\":2,\"intermediate_size\":24,\"max_position_embeddings\":8,"
                                  "\"hidden_dropout_prob\":0.2,\"attention_probs_dropout_prob\":0.2,"
                                  "\"initializer_range\":0.3,\"id2label\":{\"0\":\"no\",\"1\":\"yes\"}}";
static const char *GPT2_DROPOUT = "{\"model_type\":\"gpt2\",\"vocab_size\":40,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,"
                                  "\"n_positions\":8,\"resid_pdrop\":0.2,\"attn_pdrop\":0.2,\"initializer_range\":0.3}";
static const char *LLAMA = "{\"model_type\":\"llama\",\"vocab_size\":40,\"hidden_size\":16,\"num_hidden_layers\":2,"
                           "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":24,"
                           "\"initializer_range\":0.3,\"rope_theta\":100.0}";

static void test_dropout_gradients_bert(void **state) {
    (void)state;
    ftc_model *m = create(BERT_DROPOUT, FTC_TASK_CLASSIFY);
    ftc_batch b = batch_for(m);
    ftc_rng r = *ftc_model_rng(m);
    float eval1 = loss_at(m, &b, false, NULL), eval2 = loss_at(m, &b, false, NULL);
    float train1 = loss_at(m, &b, true, &r), train2 = loss_at(m, &b, true, &r), train3 = loss_at(m, &b, true, NULL);
    assert_true(eval1 == eval2);   /* training=false: no dropout, deterministic */
    assert_true(train1 == train2); /* same RNG state: same masks */
    assert_true(train1 != eval1 && train3 != train1);
    assert_true(fd_check(m, true, NULL, 1e-2) > 20);
    ftc_model_free(m);
}

static void test_dropout_gradients_gpt2(void **state) {
    (void)state;
    ftc_model *m = create(GPT2_DROPOUT, FTC_TASK_CAUSAL_LM);
    assert_true(fd_check(m, true, NULL, 1e-2) > 15);
    ftc_model_free(m);
}

/* R-Drop: training runs each example twice (rows i and B + i, their own dropout masks), the loss is the
 * cross-entropy over the 2B rows + alpha/4 x the pairs' mean KL(p1||p2) + KL(p2||p1) (recomputed here from the
 * logits), its gradients pass finite differences through the whole network; evaluation runs each example once;
 * a model reserved for only B rows is refused. */
static void test_rdrop_bert(void **state) {
    (void)state;
    ftc_model *m = create(BERT_DROPOUT, FTC_TASK_CLASSIFY);
    ftc_batch b = batch_for(m);
    ftc_err e;
    float eval0 = loss_at(m, &b, false, NULL);
    assert_int_equal(ftc_model_set_rdrop(m, -1.0f, &e), FTC_E_USAGE);
    assert_int_equal(ftc_model_set_rdrop(m, 2.0f, &e), FTC_OK);
    float loss;
    assert_int_equal(ftc_model_forward(m, &b, true, &loss, &e), FTC_E_USAGE); /* reserved for B rows only */
    assert_true(strstr(e.msg, "R-Drop") != NULL);
    if (ftc_model_reserve(m, 2 * B, T, &e)) fail_msg("%s", e.msg);
    assert_true(loss_at(m, &b, false, NULL) == eval0); /* evaluation: once, no dropout */
    loss = loss_at(m, &b, true, NULL);
    const float *z = ftc_model_logits(m);
    int K = 2;
    double ce = 0, sym = 0, diff = 0;
    for (int r = 0; r < 2 * B; r++) {
        double lse = log(exp(z[r * K]) + exp(z[r * K + 1]));
        ce += lse - z[r * K + cls_labels[r % B]];
    }
    for (int i = 0; i < B; i++)
        for (int k = 0; k < K; k++) {
            const float *a = z + i * K, *c = z + (B + i) * K;
            double la = log(exp(a[0]) + exp(a[1])), lc = log(exp(c[0]) + exp(c[1]));
            double lp = a[k] - la, lq = c[k] - lc;
            sym += (exp(lp) - exp(lq)) * (lp - lq);
            diff = fmax(diff, fabs(a[k] - c[k]));
        }
    double ref = ce / (2 * B) + 2.0 / 4 * sym / B;
    assert_true(diff > 1e-3); /* the two passes drew different masks */
    assert_true(sym / B > 1e-6);
    assert_true(fabs(loss - ref) < 1e-5 * fmax(1.0, fabs(ref)));
    print_message("R-Drop alpha 2: loss %.6f (CE over both passes %.6f, mean symmetric KL %.3g)\n", loss, ce / (2 * B), sym / B);
    assert_true(fd_check(m, true, NULL, 1e-2) > 20);
    ftc_model_free(m);
}

/* Head-only training: frozen tensors get no gradient buffer, the head's gradient equals the full run's. */
static void test_frozen_params_have_no_grad(void **state) {
    (void)state;
    ftc_model *m = create(BERT_DROPOUT, FTC_TASK_CLASSIFY);
    ftc_batch b = batch_for(m);
    ftc_err e;
    loss_at(m, &b, false, NULL);
    ftc_model_zero_grad(m);
    assert_int_equal(ftc_model_backward(m, &e), FTC_OK);
    ftc_param *w = ftc_model_find_param(m, "classifier.weight");
    assert_non_null(w);
    float full[64];
    assert_true(w->numel <= 64);
    memcpy(full, w->grad, (size_t)w->numel * sizeof(float));
    for (int i = 0; i < ftc_model_n_params(m); i++)
        ftc_model_set_trainable(m, i, !strncmp(ftc_model_param(m, i)->name, "classifier.", 11));
    assert_int_equal(ftc_model_count_params(m, true), 2 * 16 + 2);
    assert_int_equal(ftc_model_reserve(m, B, T, &e), FTC_OK);
    loss_at(m, &b, false, NULL);
    ftc_model_zero_grad(m);
    assert_int_equal(ftc_model_backward(m, &e), FTC_OK);
    w = ftc_model_find_param(m, "classifier.weight");
    for (int64_t k = 0; k < w->numel; k++) assert_float_equal(w->grad[k], full[k], 1e-6);
    for (int i = 0; i < ftc_model_n_params(m); i++)
        if (!ftc_model_param(m, i)->trainable) assert_null(ftc_model_param(m, i)->grad);
    /* all frozen (evaluation): no backward; unfreezing after reserve makes backward work again */
    for (int i = 0; i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, false);
    assert_int_equal(ftc_model_reserve(m, B, T, &e), FTC_OK);
    assert_int_equal(ftc_model_count_params(m, true), 0);
    loss_at(m, &b, false, NULL);
    assert_int_equal(ftc_model_backward(m, &e), FTC_E_USAGE);
    ftc_model_set_trainable(m, 0, true);
    loss_at(m, &b, false, NULL);
    assert_int_equal(ftc_model_backward(m, &e), FTC_OK);
    assert_non_null(ftc_model_param(m, 0)->grad);
    ftc_model_free(m);
}

static ftc_model *load_fixture(const char *name, ftc_task task, int *V) {
    char dir[4200];
    fixture_dir(dir, sizeof dir, name);
    ftc_model *m;
    ftc_err e;
    if (ftc_model_load(dir, task, &m, &e)) fail_msg("%s", e.msg);
    if (ftc_model_reserve(m, B, T, &e)) fail_msg("%s", e.msg);
    if (V) *V = ftc_model_config_of(m)->vocab_size;
    return m;
}

static float *logits_copy(ftc_model *m, size_t n) {
    ftc_batch b = batch_for(m);
    loss_at(m, &b, false, NULL);
    float *out = malloc(n * sizeof(float));
    memcpy(out, ftc_model_logits(m), n * sizeof(float));
    return out;
}

static void lora_case(const char *fixture, const char *targets, int expect_modules) {
    int V;
    ftc_model *m = load_fixture(fixture, FTC_TASK_CAUSAL_LM, &V);
    size_t n = (size_t)B * T * V;
    int n_base = ftc_model_n_params(m);
    int64_t base_count = ftc_model_count_params(m, false);
    float *base = logits_copy(m, n);
    ftc_err e;
    assert_int_equal(ftc_model_add_lora(m, targets, 4, 8.0f, 0.0f, 3, &e), FTC_OK);
    assert_int_equal(ftc_model_n_params(m), n_base + 2 * expect_modules);
    /* at init (B = 0) the adapted model computes exactly the base model */
    float *init = logits_copy(m, n);
    assert_memory_equal(init, base, n * sizeof(float));
    /* only the adapters train; they carry PEFT names */
    int64_t lora_count = 0;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        assert_true(p->trainable == p->is_lora);
        if (p->is_lora) {
            lora_count += p->numel;
            assert_true(!strncmp(p->name, "base_model.model.", 17));
            assert_non_null(strstr(p->name, ".lora_"));
        }
    }
    assert_int_equal(ftc_model_count_params(m, true), lora_count);
    /* make B non-zero so that A has a gradient, then check both against finite differences */
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (p->is_lora && strstr(p->name, "lora_B"))
            for (int64_t k = 0; k < p->numel; k++) p->data[k] = 0.1f * (float)sin(1.7 * (double)k + i);
    }
    assert_true(fd_check(m, false, "lora_", 3e-3) >= expect_modules);
    /* merged == unmerged */
    float *unmerged = logits_copy(m, n);
    assert_int_equal(ftc_model_merge_lora(m, &e), FTC_OK);
    assert_int_equal(ftc_model_n_params(m), n_base);
    assert_int_equal(ftc_model_count_params(m, false), base_count);
    float *merged = logits_copy(m, n);
    double num = 0, den = 0, moved = 0;
    for (size_t k = 0; k < n; k++) {
        num = fmax(num, fabs((double)merged[k] - unmerged[k]));
        den = fmax(den, fabs((double)unmerged[k]));
        moved = fmax(moved, fabs((double)merged[k] - base[k]));
    }
    print_message("%s LoRA(%s): merged vs unmerged %.2e relative; adapters moved logits by %.3g\n", fixture, targets,
                  num / den, moved);
    assert_true(num / den < 1e-5);
    assert_true(moved > 1e-3);
    free(base), free(init), free(unmerged), free(merged);
    ftc_model_free(m);
}

static void test_lora_llama(void **state) { (void)state; lora_case("llama_gqa", "q_proj,v_proj", 4); }
static void test_lora_gpt2_conv1d(void **state) { (void)state; lora_case("gpt2", "c_attn, c_proj", 6); }

static void test_lora_bad_targets(void **state) {
    (void)state;
    ftc_model *m = load_fixture("llama_gqa", FTC_TASK_CAUSAL_LM, NULL);
    ftc_err e;
    assert_int_equal(ftc_model_add_lora(m, "query,value", 4, 8, 0, 1, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "q_proj"));
    print_message("%s\n", e.msg);
    if (ftc_model_add_lora(m, "all-linear", 2, 4, 0.1f, 1, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_n_params(m), 21 + 2 * 7 * 2); /* 7 linears in each of 2 layers */
    ftc_model_free(m);
}

/* Batches of more rows than the LM head differentiates at once (256): the chunked loss gradient is the
 * gradient of the mean over all counted targets. */
static void test_lm_head_chunks(void **state) {
    (void)state;
    ftc_model *m = create(LLAMA, FTC_TASK_CAUSAL_LM);
    enum { BB = 3, TT = 150 };
    static int32_t big_ids[BB * TT], big_labels[BB * TT];
    static uint8_t big_mask[BB * TT];
    for (int i = 0; i < BB * TT; i++) {
        big_ids[i] = (i * 7 + 3) % 40;
        int t = i % TT, len = TT - 40 * (i / TT); /* rows of 150, 110, 70 tokens */
        big_mask[i] = t < len;
        big_labels[i] = t < len && (i / 7) % 3 ? big_ids[i] : -100; /* chunks with and without targets */
    }
    ftc_err e;
    assert_int_equal(ftc_model_reserve(m, BB, TT, &e), FTC_OK);
    ftc_batch b = {BB, TT, big_ids, NULL, big_mask, big_labels};
    assert_true(fd_check_batch(m, b, false, NULL, 1e-2) > 10);
    ftc_model_free(m);
}

/* Gradient checkpointing gives the same loss and gradients bit for bit, dropout (replayed) included. */
static void ckpt_case(ftc_model *m) {
    ftc_batch b = batch_for(m);
    ftc_rng r0 = *ftc_model_rng(m);
    ftc_err e;
    int n = ftc_model_n_params(m);
    float **ref = calloc((size_t)n, sizeof *ref);
    float l_ref = loss_at(m, &b, true, &r0), l_ck;
    ftc_model_zero_grad(m);
    assert_int_equal(ftc_model_backward(m, &e), FTC_OK);
    for (int i = 0; i < n; i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!p->grad) continue;
        ref[i] = malloc((size_t)p->numel * sizeof(float));
        memcpy(ref[i], p->grad, (size_t)p->numel * sizeof(float));
    }
    assert_int_equal(ftc_model_set_grad_checkpoint(m, true, &e), FTC_OK);
    l_ck = loss_at(m, &b, true, &r0);
    ftc_model_zero_grad(m);
    assert_int_equal(ftc_model_backward(m, &e), FTC_OK);
    assert_true(l_ck == l_ref);
    int compared = 0;
    for (int i = 0; i < n; i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!ref[i]) continue;
        if (memcmp(ref[i], p->grad, (size_t)p->numel * sizeof(float))) fail_msg("%s differs with checkpointing", p->name);
        compared++;
        free(ref[i]);
    }
    free(ref);
    assert_true(compared > 0);
    assert_int_equal(ftc_model_set_grad_checkpoint(m, false, &e), FTC_OK);
    ftc_model_free(m);
}

static void test_grad_checkpoint_same_gradients(void **state) {
    (void)state;
    ckpt_case(create(BERT_DROPOUT, FTC_TASK_CLASSIFY));
    ckpt_case(create(GPT2_DROPOUT, FTC_TASK_CAUSAL_LM));
    ftc_model *m = create(LLAMA, FTC_TASK_CAUSAL_LM);
    ftc_err e;
    assert_int_equal(ftc_model_add_lora(m, "all-linear", 2, 4, 0.2f, 1, &e), FTC_OK);
    for (int i = 0; i < ftc_model_n_params(m); i++) { /* non-zero B so that every adapter matters */
        ftc_param *p = ftc_model_param(m, i);
        if (p->is_lora) for (int64_t k = 0; k < p->numel; k++) p->data[k] = 0.1f * (float)sin((double)k + i);
    }
    ckpt_case(m);
}

/* Bad batches are errors naming the row and position, not crashes. */
static void test_bad_batches(void **state) {
    (void)state;
    ftc_model *m = load_fixture("llama_gqa", FTC_TASK_CAUSAL_LM, NULL);
    ftc_err e;
    uint8_t left_pad[B * T] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
    ftc_batch b = {B, T, ids, NULL, left_pad, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "row 1"));
    int32_t bad_ids[B * T];
    memcpy(bad_ids, ids, sizeof bad_ids);
    bad_ids[7] = 1000;
    b = (ftc_batch){B, T, bad_ids, NULL, mask, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "token id 1000 at batch row 1, position 1"));
    b = (ftc_batch){B + 1, T, ids, NULL, NULL, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_E_USAGE); /* larger than reserved */
    b = (ftc_batch){B, T, ids, NULL, mask, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_OK);
    assert_int_equal(ftc_model_backward(m, &e), FTC_E_USAGE); /* no labels: nothing to differentiate */
    ftc_model_free(m);
}

/* LoRA on a classifier: the head trains with the adapters (PEFT's modules_to_save), the pooler stays frozen,
 * and the head's gradient passes finite differences. */
static void test_lora_classifier_head_trains(void **state) {
    (void)state;
    ftc_model *m = load_fixture("bert_cls", FTC_TASK_CLASSIFY, NULL);
    ftc_err e;
    assert_int_equal(ftc_model_set_classifier(m, 3, FTC_POOL_CLS, 1, &e), FTC_OK);
    assert_int_equal(ftc_model_add_lora(m, "query,value", 2, 4, 0, 1, &e), FTC_OK);
    assert_true(ftc_model_find_param(m, "classifier.weight")->trainable);
    assert_true(ftc_model_find_param(m, "classifier.bias")->trainable);
    assert_false(ftc_model_find_param(m, "bert.pooler.dense.weight")->trainable);
    assert_non_null(ftc_model_find_param(m, "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"));
    assert_true(fd_check(m, false, "classifier.", 1e-2) == 2);
    ftc_model_free(m);
}

static void remove_saved(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

/* save -> load gives the same model; GPT-2 Conv1D weights land in the file exactly as they were read. */
static void save_roundtrip(const char *fixture, ftc_task task) {
    int V;
    ftc_model *m = load_fixture(fixture, task, &V);
    ftc_err e;
    if (task == FTC_TASK_CLASSIFY) assert_int_equal(ftc_model_set_classifier(m, 2, FTC_POOL_CLS, 5, &e), FTC_OK);
    size_t n = task == FTC_TASK_CAUSAL_LM ? (size_t)B * T * V : (size_t)B * 2;
    float *before = logits_copy(m, n);
    char dir[] = "/tmp/ftc_save_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(ftc_model_save(m, dir, &e), FTC_OK);
    ftc_model *m2;
    if (ftc_model_load(dir, task, &m2, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_reserve(m2, B, T, &e), FTC_OK);
    if (task == FTC_TASK_CLASSIFY) assert_int_equal(ftc_model_set_classifier(m2, 2, FTC_POOL_CLS, 9, &e), FTC_OK);
    assert_int_equal(ftc_model_n_params(m2), ftc_model_n_params(m));
    float *after = logits_copy(m2, n);
    assert_memory_equal(before, after, n * sizeof(float));
    /* every tensor of the original file is in the saved one with the same bytes */
    char orig[4200], saved[4200];
    fixture_dir(orig, sizeof orig, fixture);
    snprintf(saved, sizeof saved, "%s", dir);
    ftc_st_set *a, *b;
    assert_int_equal(ftc_st_open(orig, &a, &e), FTC_OK);
    assert_int_equal(ftc_st_open(saved, &b, &e), FTC_OK);
    int same = 0;
    for (int i = 0; i < ftc_st_count(a); i++) {
        const ftc_tensor_view *t = ftc_st_get(a, i), *u = ftc_st_find(b, t->name);
        if (!strncmp(t->name, "classifier.", 11)) continue; /* replaced by the 2-label head */
        if (!u) fail_msg("saved model lacks %s", t->name);
        assert_int_equal(t->nbytes, u->nbytes);
        assert_memory_equal(t->data, u->data, t->nbytes);
        same++;
    }
    print_message("%s: saved and reloaded, %d tensors byte-identical, logits identical\n", fixture, same);
    ftc_st_close(a), ftc_st_close(b);
    free(before), free(after);
    ftc_model_free(m), ftc_model_free(m2);
    remove_saved(dir);
}

static void test_save_roundtrip(void **state) {
    (void)state;
    save_roundtrip("gpt2", FTC_TASK_CAUSAL_LM);
    save_roundtrip("llama_gqa", FTC_TASK_CAUSAL_LM);
    save_roundtrip("bert_cls", FTC_TASK_CLASSIFY);
}

static void test_save_refuses_unmerged_lora(void **state) {
    (void)state;
    ftc_model *m = load_fixture("llama_tied", FTC_TASK_CAUSAL_LM, NULL);
    ftc_err e;
    assert_int_equal(ftc_model_add_lora(m, "q_proj", 2, 4, 0, 1, &e), FTC_OK);
    assert_int_equal(ftc_model_save(m, "/tmp/ftc_never_written", &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "lora_A"));
    assert_false(ftc_is_dir("/tmp/ftc_never_written"));
    ftc_model_free(m);
}

/* A created model: init statistics as transformers (normal(0, initializer_range), ones/zeros), and a saved
 * created model loads back. */
static void test_create_init_and_save(void **state) {
    (void)state;
    ftc_model *m = create(LLAMA, FTC_TASK_CAUSAL_LM);
    ftc_param *q = ftc_model_find_param(m, "model.layers.0.self_attn.q_proj.weight");
    ftc_param *n = ftc_model_find_param(m, "model.norm.weight");
    assert_non_null(q), assert_non_null(n), assert_non_null(ftc_model_find_param(m, "lm_head.weight"));
    double s = 0, s2 = 0;
    for (int64_t k = 0; k < q->numel; k++) s += q->data[k], s2 += (double)q->data[k] * q->data[k];
    double sd = sqrt(s2 / q->numel - (s / q->numel) * (s / q->numel));
    assert_true(fabs(sd - 0.3) < 0.05);
    for (int64_t k = 0; k < n->numel; k++) assert_true(n->data[k] == 1.0f);
    assert_true(fd_check(m, false, NULL, 1e-2) > 10); /* RoPE + GQA + untied head, from scratch */
    char dir[] = "/tmp/ftc_create_XXXXXX";
    assert_non_null(mkdtemp(dir));
    ftc_err e;
    assert_int_equal(ftc_model_save(m, dir, &e), FTC_OK);
    ftc_model *m2;
    if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m2, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_reserve(m2, B, T, &e), FTC_OK);
    size_t cnt = (size_t)B * T * 40;
    float *a = logits_copy(m, cnt), *b = logits_copy(m2, cnt);
    assert_memory_equal(a, b, cnt * sizeof(float));
    assert_true(ftc_model_config_of(m2)->rope_theta == 100.0f);
    free(a), free(b);
    ftc_model_free(m), ftc_model_free(m2);
    remove_saved(dir);
}

int main(void) {
    fixture_dir(fixdir, sizeof fixdir, "");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout_gradients_bert),
        cmocka_unit_test(test_dropout_gradients_gpt2),
        cmocka_unit_test(test_rdrop_bert),
        cmocka_unit_test(test_frozen_params_have_no_grad),
        cmocka_unit_test(test_lora_llama),
        cmocka_unit_test(test_lora_gpt2_conv1d),
        cmocka_unit_test(test_lora_bad_targets),
        cmocka_unit_test(test_lora_classifier_head_trains),
        cmocka_unit_test(test_lm_head_chunks),
        cmocka_unit_test(test_grad_checkpoint_same_gradients),
        cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_save_roundtrip),
        cmocka_unit_test(test_save_refuses_unmerged_lora),
        cmocka_unit_test(test_create_init_and_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

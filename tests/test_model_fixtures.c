/* The transformer against PyTorch/transformers (fixtures from tools/gen_model_fixtures.py):
 * logits, last hidden state, loss and every parameter gradient of tiny random GPT-2, Llama (GQA/MQA, tied and
 * untied, rope_theta != 10000), Mistral, Qwen2 (q/k/v biases) and BERT models, with right padding and -100 labels;
 * classification heads (BERT pooler + CLS, mean pooling, Llama and GPT-2 last-token); padding independence; load errors
 * naming tensor and file; real weights (all-MiniLM-L6-v2, stories260K).
 * Relative error of a tensor: max|ours - ref| / max|ref| (the largest error against the tensor's scale). */
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

static const char *fixture_path(const char *rel) {
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(buf[k], sizeof buf[k], "%s/tests/fixtures/models/%s", src ? src : ".", rel);
    return buf[k];
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || isnan(d)) num = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 1e-30 ? num / den : num;
}

/* A reference tensor converted to f32 (or I32 copied), malloc'd; *n gets the element count. */
static float *ref_f32(const ftc_st_set *s, const char *name, size_t *n) {
    const ftc_tensor_view *t = ftc_st_find(s, name);
    if (!t) return NULL;
    float *out = malloc((size_t)t->numel * sizeof(float) + 1);
    ftc_err e;
    assert_int_equal(ftc_tensor_to_f32(t, out, &e), FTC_OK);
    if (n) *n = (size_t)t->numel;
    return out;
}

static int32_t *ref_i32(const ftc_st_set *s, const char *name, int *d0, int *d1) {
    if (d0) *d0 = 0;
    if (d1) *d1 = 0;
    const ftc_tensor_view *t = ftc_st_find(s, name);
    if (!t) return NULL;
    assert_int_equal(t->dtype, FTC_I32);
    int32_t *out = malloc(t->nbytes + 1);
    memcpy(out, t->data, t->nbytes);
    if (d0) *d0 = (int)t->shape[0];
    if (d1) *d1 = t->ndim > 1 ? (int)t->shape[1] : 1;
    return out;
}

typedef struct {
    ftc_st_set *ref;
    int B, T;
    int32_t *ids, *mask32, *labels, *types;
    uint8_t *mask;
} ref_inputs;

static void load_inputs(const char *name, ref_inputs *in) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/reference.safetensors", fixdir, name);
    ftc_err e;
    assert_int_equal(ftc_st_open(path, &in->ref, &e), FTC_OK);
    in->ids = ref_i32(in->ref, "input_ids", &in->B, &in->T);
    in->mask32 = ref_i32(in->ref, "attention_mask", NULL, NULL);
    in->labels = ref_i32(in->ref, "labels", NULL, NULL);
    in->types = ref_i32(in->ref, "token_type_ids", NULL, NULL);
    in->mask = malloc((size_t)in->B * in->T);
    for (int i = 0; i < in->B * in->T; i++) in->mask[i] = (uint8_t)in->mask32[i];
}

static void free_inputs(ref_inputs *in) {
    free(in->ids), free(in->mask32), free(in->labels), free(in->types), free(in->mask);
    ftc_st_close(in->ref);
}

typedef struct {
    double logits, hidden, loss, grads;
    int n_grads, n_zero;
} errors;

/* Loads fixture NAME, runs forward + backward on its inputs and compares with the reference. */
static errors check_fixture(const char *name, ftc_task task, ftc_pooling pooling) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", fixdir, name);
    ref_inputs in;
    load_inputs(name, &in);
    ftc_model *m;
    ftc_err e;
    ftc_status s = ftc_model_load(dir, task, &m, &e);
    if (s) fail_msg("%s: %s", name, e.msg);
    if (task == FTC_TASK_CLASSIFY) {
        const ftc_param *w = ftc_model_find_param(m, ftc_model_config_of(m)->family == FTC_FAMILY_BERT
                                                         ? "classifier.weight" : "score.weight");
        assert_non_null(w); /* the checkpoint's head was loaded */
        float before = w->data[0];
        assert_int_equal(ftc_model_set_classifier(m, (int)w->shape[0], pooling, 7, &e), FTC_OK);
        assert_true(ftc_model_find_param(m, w->name)->data[0] == before); /* same size: kept, not re-initialised */
    }
    assert_int_equal(ftc_model_reserve(m, in.B, in.T, &e), FTC_OK);
    ftc_batch b = {in.B, in.T, in.ids, in.types, in.mask, in.labels};
    float loss;
    s = ftc_model_forward(m, &b, false, &loss, &e);
    if (s) fail_msg("%s: %s", name, e.msg);
    errors r = {0};
    size_t n = 0;
    float *ref = ref_f32(in.ref, "logits", &n);
    size_t want = task == FTC_TASK_CAUSAL_LM ? (size_t)in.B * in.T * ftc_model_config_of(m)->vocab_size
                                             : (size_t)in.B * (size_t)ftc_model_config_of(m)->num_labels;
    if (task == FTC_TASK_CLASSIFY) want = n; /* num_labels from the head */
    assert_int_equal(n, want);
    if (task == FTC_TASK_CAUSAL_LM) { /* real positions only: a padded position's logits are meaningless */
        int V = ftc_model_config_of(m)->vocab_size;
        float *ours = malloc(n * sizeof(float));
        memcpy(ours, ftc_model_logits(m), n * sizeof(float));
        for (int i = 0; i < in.B * in.T; i++)
            if (!in.mask[i]) memset(ours + (size_t)i * V, 0, V * sizeof(float)), memset(ref + (size_t)i * V, 0, V * sizeof(float));
        r.logits = rel_err(ours, ref, n);
        free(ours);
    } else {
        r.logits = rel_err(ftc_model_logits(m), ref, n);
    }
    free(ref);
    /* hidden states: only real tokens (a padded position's state is meaningless) */
    ref = ref_f32(in.ref, "hidden", &n);
    int C = ftc_model_config_of(m)->hidden_size;
    assert_int_equal(n, (size_t)in.B * in.T * C);
    const float *h = ftc_model_hidden(m);
    double num = 0, den = 0;
    for (int i = 0; i < in.B * in.T; i++) {
        if (!in.mask[i]) continue;
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)i * C + c;
            num = fmax(num, fabs((double)h[k] - ref[k]));
            den = fmax(den, fabs((double)ref[k]));
        }
    }
    r.hidden = num / den;
    free(ref);
    float *ref_loss = ref_f32(in.ref, "loss", NULL);
    r.loss = fabs((double)loss - ref_loss[0]) / fabs((double)ref_loss[0]);
    free(ref_loss);
    ftc_model_zero_grad(m);
    s = ftc_model_backward(m, &e);
    if (s) fail_msg("%s: %s", name, e.msg);
    /* every parameter has a reference gradient and agrees with it */
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        char gname[200];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        float *g = ref_f32(in.ref, gname, &n);
        if (!g) fail_msg("%s: no reference gradient for %s", name, p->name);
        assert_int_equal(n, (size_t)p->numel);
        assert_non_null(p->grad);
        if (p->transposed) { /* reference is HF Conv1D [in,out]; ours [out,in] */
            float *t = malloc(n * sizeof(float));
            int64_t O = p->shape[0], I = p->shape[1];
            for (int64_t o = 0; o < O; o++)
                for (int64_t k = 0; k < I; k++) t[o * I + k] = g[k * O + o];
            free(g);
            g = t;
        }
        double gmax = 0;
        for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs((double)g[k]));
        double err;
        if (gmax < 1e-9) { /* mathematically zero (BERT key bias: softmax ignores a shift): ours must be ~0 too */
            double ours = 0;
            for (size_t k = 0; k < n; k++) ours = fmax(ours, fabs((double)p->grad[k]));
            err = ours < 1e-9 ? 0 : INFINITY;
            r.n_zero++;
        } else {
            err = rel_err(p->grad, g, n);
        }
        if (err > r.grads) r.grads = err;
        if (err > 1e-3) print_error("%s: gradient of %s: relative error %.3g\n", name, p->name, err);
        r.n_grads++;
        free(g);
    }
    print_message("%-10s logits %.2e  hidden %.2e  loss %.2e  grads %.2e (%d tensors, %d exactly zero)\n", name,
                  r.logits, r.hidden, r.loss, r.grads, r.n_grads, r.n_zero);
    assert_true(r.logits < 1e-4);
    assert_true(r.hidden < 1e-4);
    assert_true(r.loss < 1e-4);
    assert_true(r.grads < 1e-3);
    ftc_model_free(m);
    free_inputs(&in);
    return r;
}

static void test_gpt2(void **state) { (void)state; check_fixture("gpt2", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST); }
static void test_llama_gqa_untied(void **state) {
    (void)state;
    check_fixture("llama_gqa", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST);
}
static void test_llama_mqa_tied(void **state) {
    (void)state;
    check_fixture("llama_tied", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST);
}
static void test_qwen2_biases(void **state) { (void)state; check_fixture("qwen2", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST); }
static void test_mistral(void **state) {
    (void)state;
    check_fixture("mistral", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST);
    /* longer than its sliding window (16): refused rather than computed with plain causal attention */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/mistral", fixdir);
    ftc_model *m;
    ftc_err e;
    assert_int_equal(ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e), FTC_OK);
    assert_int_equal(ftc_model_reserve(m, 1, 17, &e), FTC_OK);
    int32_t ids[17] = {0};
    ftc_batch b = {1, 17, ids, NULL, NULL, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "sliding window of 16"));
    ftc_model_free(m);
}
static void test_llama_classify_last(void **state) {
    (void)state;
    check_fixture("llama_cls", FTC_TASK_CLASSIFY, FTC_POOL_LAST);
}
static void test_gpt2_classify_last(void **state) {
    (void)state;
    check_fixture("gpt2_cls", FTC_TASK_CLASSIFY, FTC_POOL_LAST);
}
static void test_bert_classify_pooler(void **state) {
    (void)state;
    check_fixture("bert_cls", FTC_TASK_CLASSIFY, FTC_POOL_CLS);
}
static void test_bert_classify_mean(void **state) {
    (void)state;
    check_fixture("bert_mean", FTC_TASK_CLASSIFY, FTC_POOL_MEAN);
}

/* Each sequence of a right-padded batch gives the same outputs alone, at its own length. */
static void check_padding(const char *name, ftc_task task, ftc_pooling pooling) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", fixdir, name);
    ref_inputs in;
    load_inputs(name, &in);
    ftc_model *m;
    ftc_err e;
    assert_int_equal(ftc_model_load(dir, task, &m, &e), FTC_OK);
    if (task == FTC_TASK_CLASSIFY) {
        int nl = (int)ftc_model_find_param(m, ftc_model_config_of(m)->family == FTC_FAMILY_BERT ? "classifier.weight"
                                                                                                 : "score.weight")
                     ->shape[0];
        assert_int_equal(ftc_model_set_classifier(m, nl, pooling, 1, &e), FTC_OK);
    }
    assert_int_equal(ftc_model_reserve(m, in.B, in.T, &e), FTC_OK);
    ftc_batch b = {in.B, in.T, in.ids, in.types, in.mask, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_OK);
    int V = task == FTC_TASK_CAUSAL_LM ? ftc_model_config_of(m)->vocab_size : 0;
    size_t per_row = task == FTC_TASK_CAUSAL_LM ? (size_t)in.T * V : (size_t)(int)ftc_model_find_param(
                         m, ftc_model_config_of(m)->family == FTC_FAMILY_BERT ? "classifier.weight" : "score.weight")
                         ->shape[0];
    float *batched = malloc((size_t)in.B * per_row * sizeof(float));
    memcpy(batched, ftc_model_logits(m), (size_t)in.B * per_row * sizeof(float));
    bool had_padding = false;
    for (int r = 0; r < in.B; r++) {
        int len = 0;
        while (len < in.T && in.mask[r * in.T + len]) len++;
        had_padding |= len < in.T;
        ftc_batch one = {1, len, in.ids + r * in.T, in.types ? in.types + r * in.T : NULL, NULL, NULL};
        assert_int_equal(ftc_model_forward(m, &one, false, NULL, &e), FTC_OK);
        size_t n = task == FTC_TASK_CAUSAL_LM ? (size_t)len * V : per_row;
        double err = rel_err(ftc_model_logits(m), batched + r * per_row, n);
        if (err > 1e-5) fail_msg("%s row %d (length %d): alone differs from batched by %.3g", name, r, len, err);
    }
    assert_true(had_padding);
    free(batched);
    ftc_model_free(m);
    free_inputs(&in);
}

static void test_padding_independent(void **state) {
    (void)state;
    check_padding("gpt2", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST);
    check_padding("llama_gqa", FTC_TASK_CAUSAL_LM, FTC_POOL_LAST);
    check_padding("bert_cls", FTC_TASK_CLASSIFY, FTC_POOL_CLS);
    check_padding("bert_mean", FTC_TASK_CLASSIFY, FTC_POOL_MEAN);
    check_padding("llama_cls", FTC_TASK_CLASSIFY, FTC_POOL_LAST);
    check_padding("gpt2_cls", FTC_TASK_CLASSIFY, FTC_POOL_LAST);
}

/* Copies fixture NAME to a temp dir, with tensor DROP left out or tensor RESHAPE given a wrong shape. */
static void broken_copy(const char *name, const char *drop, const char *reshape, char *out_dir) {
    strcpy(out_dir, "/tmp/ftc_model_XXXXXX");
    assert_non_null(mkdtemp(out_dir));
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s/config.json", fixdir, name);
    snprintf(dst, sizeof dst, "%s/config.json", out_dir);
    char *text;
    size_t len;
    ftc_err e;
    assert_int_equal(ftc_read_file(src, &text, &len, &e), FTC_OK);
    assert_int_equal(ftc_write_file_atomic(dst, text, len, &e), FTC_OK);
    free(text);
    snprintf(src, sizeof src, "%s/%s/model.safetensors", fixdir, name);
    ftc_st_set *st;
    assert_int_equal(ftc_st_open(src, &st, &e), FTC_OK);
    ftc_st_writer *w = ftc_st_writer_new();
    for (int i = 0; i < ftc_st_count(st); i++) {
        const ftc_tensor_view *t = ftc_st_get(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        int64_t shape[FTC_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int ndim = t->ndim;
        if (reshape && !strcmp(t->name, reshape)) { /* same bytes, rows and columns swapped */
            int64_t tmp = shape[0];
            shape[0] = shape[1], shape[1] = tmp;
            if (shape[0] == shape[1]) shape[0] /= 2, shape[1] *= 2;
        }
        assert_int_equal(ftc_st_writer_add(w, t->name, t->dtype, ndim, shape, t->data, &e), FTC_OK);
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", out_dir);
    assert_int_equal(ftc_st_writer_write(w, dst, &e), FTC_OK);
    ftc_st_writer_free(w);
    ftc_st_close(st);
}

static void remove_dir(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

static void expect_load_error(const char *name, const char *drop, const char *reshape, ftc_task task,
                              const char *must_mention) {
    char dir[64];
    broken_copy(name, drop, reshape, dir);
    ftc_model *m = (ftc_model *)1;
    ftc_err e;
    assert_int_equal(ftc_model_load(dir, task, &m, &e), FTC_E_INPUT);
    assert_null(m);
    if (!strstr(e.msg, must_mention) || !strstr(e.msg, dir)) fail_msg("error does not name tensor and file: %s", e.msg);
    print_message("%s\n", e.msg);
    remove_dir(dir);
}

static void test_load_errors_name_tensor_and_file(void **state) {
    (void)state;
    expect_load_error("llama_gqa", "model.layers.1.self_attn.k_proj.weight", NULL, FTC_TASK_CAUSAL_LM,
                      "'model.layers.1.self_attn.k_proj.weight'");
    expect_load_error("llama_gqa", "lm_head.weight", NULL, FTC_TASK_CAUSAL_LM, "'lm_head.weight'");
    expect_load_error("gpt2", NULL, "transformer.h.0.mlp.c_fc.weight", FTC_TASK_CAUSAL_LM,
                      "'transformer.h.0.mlp.c_fc.weight' has shape [128,32] but the config needs [32,128]");
    expect_load_error("bert_cls", NULL, "bert.encoder.layer.1.attention.self.query.weight", FTC_TASK_CLASSIFY,
                      "'bert.encoder.layer.1.attention.self.query.weight' has shape");
    expect_load_error("bert_cls", "bert.embeddings.word_embeddings.weight", NULL, FTC_TASK_ENCODE,
                      "embeddings.word_embeddings.weight");
}

/* Real weights: all-MiniLM-L6-v2 last hidden states and mean-pooled sentence embeddings vs transformers. */
static void test_minilm_real_weights(void **state) {
    (void)state;
    const char *dir = getenv("FTC_MINILM_DIR");
    if (!dir || !*dir || !ftc_is_dir(dir)) skip();
    ftc_st_set *ref;
    ftc_err e;
    assert_int_equal(ftc_st_open(fixture_path("minilm_ref.safetensors"), &ref, &e), FTC_OK);
    int B = 0, T = 0;
    int32_t *ids = ref_i32(ref, "input_ids", &B, &T), *mask32 = ref_i32(ref, "attention_mask", NULL, NULL),
            *types = ref_i32(ref, "token_type_ids", NULL, NULL);
    uint8_t *mask = malloc((size_t)B * T);
    for (int i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];
    ftc_model *m;
    ftc_status s = ftc_model_load(dir, FTC_TASK_ENCODE, &m, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_reserve(m, B, T, &e), FTC_OK);
    ftc_batch b = {B, T, ids, types, mask, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_OK);
    int C = ftc_model_config_of(m)->hidden_size;
    size_t n = 0;
    float *href = ref_f32(ref, "hidden", &n), *pref = ref_f32(ref, "pooled", NULL);
    assert_int_equal(n, (size_t)B * T * C);
    const float *h = ftc_model_hidden(m);
    double hmax = 0, pmax = 0;
    for (int r = 0; r < B; r++) {
        int cnt = 0;
        for (int t = 0; t < T; t++) {
            if (!mask[r * T + t]) continue;
            cnt++;
            for (int c = 0; c < C; c++) {
                size_t k = ((size_t)r * T + t) * C + c;
                hmax = fmax(hmax, fabs((double)h[k] - href[k]));
            }
        }
        for (int c = 0; c < C; c++) {
            double sum = 0;
            for (int t = 0; t < T; t++)
                if (mask[r * T + t]) sum += h[((size_t)r * T + t) * C + c];
            pmax = fmax(pmax, fabs(sum / cnt - pref[(size_t)r * C + c]));
        }
    }
    print_message("MiniLM: %d sentences, max |hidden - transformers| %.2e, max |mean-pooled - transformers| %.2e\n", B,
                  hmax, pmax);
    assert_true(B >= 5);
    assert_true(hmax < 1e-4);
    assert_true(pmax < 1e-4);
    free(href), free(pref), free(ids), free(mask32), free(types), free(mask);
    ftc_model_free(m);
    ftc_st_close(ref);
}

/* Real weights: stories260K (a tiny Llama) on a short story: loss as transformers, far below uniform ln(512). */
static void test_stories260k_loss(void **state) {
    (void)state;
    const char *data = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", data ? data : "../shared/data");
    if (!ftc_is_dir(dir)) {
        print_message("stories260K-hf not found at %s: skipped\n", dir);
        skip();
    }
    ftc_st_set *ref;
    ftc_err e;
    assert_int_equal(ftc_st_open(fixture_path("stories260k_ref.safetensors"), &ref, &e), FTC_OK);
    int B = 0, T = 0;
    int32_t *ids = ref_i32(ref, "input_ids", &B, &T);
    float *ref_loss = ref_f32(ref, "loss", NULL);
    ftc_model *m;
    ftc_status s = ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e);
    if (s) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_reserve(m, B, T, &e), FTC_OK);
    ftc_batch b = {B, T, ids, NULL, NULL, ids};
    float loss;
    assert_int_equal(ftc_model_forward(m, &b, false, &loss, &e), FTC_OK);
    double uniform = log(ftc_model_config_of(m)->vocab_size);
    print_message("stories260K: %d tokens, loss %.5f (transformers %.5f, uniform %.4f)\n", T, loss, ref_loss[0],
                  uniform);
    assert_true(loss < 0.5 * uniform);
    assert_true(fabs(loss - ref_loss[0]) / ref_loss[0] < 1e-4);
    free(ids), free(ref_loss);
    ftc_model_free(m);
    ftc_st_close(ref);
}

int main(void) {
    snprintf(fixdir, sizeof fixdir, "%s", fixture_path(""));
    fixdir[strlen(fixdir) - 1] = 0; /* no trailing slash */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama_gqa_untied),
        cmocka_unit_test(test_llama_mqa_tied),
        cmocka_unit_test(test_qwen2_biases),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_llama_classify_last),
        cmocka_unit_test(test_gpt2_classify_last),
        cmocka_unit_test(test_bert_classify_pooler),
        cmocka_unit_test(test_bert_classify_mean),
        cmocka_unit_test(test_padding_independent),
        cmocka_unit_test(test_load_errors_name_tensor_and_file),
        cmocka_unit_test(test_minilm_real_weights),
        cmocka_unit_test(test_stories260k_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

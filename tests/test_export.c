/* Export round trips inside ftc, on the tiny transformers-made fixtures:
 *   LoRA model (random non-zero B and head) -> PEFT adapter -> base + ftc_model_load_adapter: same logits;
 *   the same model merged -> HF export -> ftc_model_load: same logits (1e-5), config.json as transformers wants it;
 * the files' contents (names, shapes, adapter_config fields, target_modules), the non-HF head note, and the
 * refusals (no adapters, non-empty output, unsupported or mismatched adapters). Whether transformers and PEFT
 * compute the same logits is checked by tools/check_export.py (docs/export.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/export.h"
#include "ftc/model.h"
#include "ftc/safetensors.h"
#include "lib/test_util.h"

enum { B = 2, T = 6 };
static int32_t ids[B * T] = {5, 9, 3, 17, 22, 8, 30, 4, 11, 2, 1, 1};
static int32_t types[B * T] = {0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0};
static uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};

static char tmproot[256];

static void fixture(char *out, size_t n, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(out, n, "%s/tests/fixtures/models/%s", src ? src : ".", name);
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmproot, name); }

static ftc_model *load(const char *dir, ftc_task task) {
    ftc_model *m;
    ftc_err e;
    if (ftc_model_load(dir, task, &m, &e)) fail_msg("%s", e.msg);
    return m;
}

/* logits of the fixed batch (a copy) */
static float *logits_of(ftc_model *m, int64_t *n) {
    ftc_err e;
    if (ftc_model_reserve(m, B, T, &e)) fail_msg("%s", e.msg);
    bool bert = ftc_model_config_of(m)->family == FTC_FAMILY_BERT;
    ftc_batch b = {B, T, ids, bert ? types : NULL, mask, NULL};
    float loss;
    if (ftc_model_forward(m, &b, false, &loss, &e)) fail_msg("%s", e.msg);
    const ftc_model_config *c = ftc_model_config_of(m);
    (void)c;
    *n = ftc_model_task(m) == FTC_TASK_CAUSAL_LM ? (int64_t)B * T * c->vocab_size : 0;
    if (ftc_model_task(m) == FTC_TASK_CLASSIFY) {
        /* classify logits are [B, num_labels]: the head's rows */
        for (int i = 0; i < ftc_model_n_params(m); i++) {
            ftc_param *p = ftc_model_param(m, i);
            if (!p->is_lora && (!strcmp(p->name, "classifier.weight") || !strcmp(p->name, "score.weight")))
                *n = (int64_t)B * p->shape[0];
        }
    }
    float *out = malloc((size_t)*n * sizeof(float));
    memcpy(out, ftc_model_logits(m), (size_t)*n * sizeof(float));
    return out;
}

static double max_diff(const float *a, const float *b, int64_t n, bool causal) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        if (causal && !mask[i / (n / (B * T))]) continue; /* padded positions are not compared */
        d = fmax(d, fabs((double)a[i] - b[i]));
    }
    return d;
}

/* Gives every LoRA B (zero at init) and the head random values, so the adapter changes the outputs. */
static void perturb(ftc_model *m, uint64_t seed) {
    ftc_rng r;
    ftc_rng_seed(&r, seed);
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        bool head = !strncmp(p->name, "classifier.", 11) || !strncmp(p->name, "score.", 6);
        if (!(p->is_lora && strstr(p->name, "lora_B")) && !head) continue;
        for (int64_t k = 0; k < p->numel; k++) p->data[k] = 0.2f * ftc_rng_normal(&r);
    }
}

static json_t *read_json(const char *dir, const char *file) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) fail_msg("%s: %s", path, je.text);
    return o;
}

typedef struct {
    const char *fixture;
    ftc_task task;
    const char *targets;
    const char *want_arch;
    const char *want_targets; /* target_modules[0] expected in adapter_config.json */
    bool fan_in_fan_out;
} round_case;

static void round_trip(const round_case *rc) {
    char base[1024], peft[1024], hf[1024];
    fixture(base, sizeof base, rc->fixture);
    snprintf(peft, sizeof peft, "%s/%s_peft", tmproot, rc->fixture);
    snprintf(hf, sizeof hf, "%s/%s_hf", tmproot, rc->fixture);
    ftc_err e;
    ftc_model *m = load(base, rc->task);
    bool cls = rc->task == FTC_TASK_CLASSIFY;
    if (cls && ftc_model_set_classifier(m, 4, ftc_model_config_of(m)->family == FTC_FAMILY_BERT ? FTC_POOL_CLS
                                                                                                   : FTC_POOL_LAST,
                                        7, &e))
        fail_msg("%s", e.msg);
    if (ftc_model_add_lora(m, rc->targets, 4, 8.0f, 0.1f, 3, &e)) fail_msg("%s", e.msg);
    perturb(m, 11);
    int64_t n;
    float *want = logits_of(m, &n);

    /* the base alone differs: the comparison below can fail */
    ftc_model *plain = load(base, rc->task);
    if (cls && ftc_model_set_classifier(plain, 4, ftc_model_config_of(plain)->family == FTC_FAMILY_BERT
                                                      ? FTC_POOL_CLS : FTC_POOL_LAST, 7, &e))
        fail_msg("%s", e.msg);
    int64_t n0;
    float *base_logits = logits_of(plain, &n0);
    assert_int_equal(n0, n);
    assert_true(max_diff(want, base_logits, n, !cls) > 1e-3);
    free(base_logits);
    ftc_model_free(plain);

    const char *names[] = {"neg", "pos", "neutral", "other"};
    ftc_export_opts o = {.tokenizer_dir = NULL, .label_names = cls ? names : NULL, .n_labels = cls ? 4 : 0,
                         .base_model = base};
    if (ftc_export_peft(m, peft, &o, &e)) fail_msg("%s", e.msg);

    /* adapter_config.json as PEFT writes it */
    json_t *ac = read_json(peft, "adapter_config.json");
    assert_string_equal(json_string_value(json_object_get(ac, "peft_type")), "LORA");
    assert_string_equal(json_string_value(json_object_get(ac, "task_type")), cls ? "SEQ_CLS" : "CAUSAL_LM");
    assert_int_equal(json_integer_value(json_object_get(ac, "r")), 4);
    assert_int_equal(json_integer_value(json_object_get(ac, "lora_alpha")), 8);
    assert_true(fabs(json_number_value(json_object_get(ac, "lora_dropout")) - 0.1) < 1e-6);
    assert_string_equal(json_string_value(json_object_get(ac, "bias")), "none");
    assert_int_equal(json_is_true(json_object_get(ac, "fan_in_fan_out")), rc->fan_in_fan_out);
    assert_string_equal(json_string_value(json_object_get(ac, "base_model_name_or_path")), base);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ac, "target_modules"), 0)), rc->want_targets);
    json_t *mts = json_object_get(ac, "modules_to_save");
    if (cls) assert_string_equal(json_string_value(json_array_get(mts, 0)),
                                 ftc_model_config_of(m)->family == FTC_FAMILY_BERT ? "classifier" : "score");
    else assert_true(json_is_null(mts));
    json_decref(ac);

    /* adapter_model.safetensors: PEFT names under the task model's module paths, A [r,in], B [out,r] */
    char path[1200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", peft);
    ftc_st_set *st;
    if (ftc_st_open(path, &st, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < ftc_st_count(st); i++) {
        const ftc_tensor_view *t = ftc_st_get(st, i);
        assert_int_equal(strncmp(t->name, "base_model.model.", 17), 0);
        if (strstr(t->name, "lora_A")) assert_int_equal(t->shape[0], 4);
        if (strstr(t->name, "lora_B")) assert_int_equal(t->shape[1], 4);
        const ftc_model_config *c = ftc_model_config_of(m);
        if (strstr(t->name, "lora_")) {
            const char *px = c->family == FTC_FAMILY_GPT2 ? "base_model.model.transformer.h."
                             : c->family == FTC_FAMILY_LLAMA ? "base_model.model.model.layers."
                                                             : "base_model.model.bert.encoder.layer.";
            if (strncmp(t->name, px, strlen(px))) fail_msg("%s does not start with %s", t->name, px);
        }
    }
    ftc_st_close(st);

    /* base + adapter in ftc */
    ftc_model *ad = load(base, rc->task);
    if (ftc_model_load_adapter(ad, peft, &e)) fail_msg("%s", e.msg);
    int64_t n1;
    float *got = logits_of(ad, &n1);
    assert_int_equal(n1, n);
    double d_adapter = max_diff(want, got, n, !cls);
    free(got);
    /* merged adapters give the same as unmerged */
    if (ftc_model_merge_lora(ad, &e)) fail_msg("%s", e.msg);
    got = logits_of(ad, &n1);
    double d_adapter_merged = max_diff(want, got, n, !cls);
    free(got);
    ftc_model_free(ad);

    /* merged -> HF -> load */
    if (ftc_model_merge_lora(m, &e)) fail_msg("%s", e.msg);
    if (ftc_export_hf(m, hf, &o, &e)) fail_msg("%s", e.msg);
    ftc_model *back = load(hf, rc->task);
    got = logits_of(back, &n1);
    assert_int_equal(n1, n);
    double d_hf = max_diff(want, got, n, !cls);
    free(got);
    ftc_model_free(back);
    json_t *cfg = read_json(hf, "config.json");
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)), rc->want_arch);
    if (cls) {
        assert_int_equal(json_integer_value(json_object_get(cfg, "num_labels")), 4);
        assert_string_equal(json_string_value(json_object_get(cfg, "problem_type")), "single_label_classification");
        assert_string_equal(json_string_value(json_object_get(json_object_get(cfg, "id2label"), "2")), "neutral");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(cfg, "label2id"), "other")), 3);
        assert_null(json_object_get(cfg, "ftc_classifier_head"));
        json_t *labels = read_json(peft, "labels.json");
        assert_string_equal(json_string_value(json_array_get(labels, 1)), "pos");
        json_decref(labels);
    }
    json_decref(cfg);
    print_message("%s: max |diff| adapter %.3g, adapter merged %.3g, hf %.3g\n", rc->fixture, d_adapter,
                  d_adapter_merged, d_hf);
    assert_true(d_adapter <= 1e-5);
    assert_true(d_adapter_merged <= 1e-5);
    assert_true(d_hf <= 1e-5);
    free(want);
    ftc_model_free(m);
}

static void test_gpt2_lm(void **state) {
    (void)state;
    round_case rc = {"gpt2", FTC_TASK_CAUSAL_LM, "c_attn,c_fc", "GPT2LMHeadModel", "c_attn", true};
    round_trip(&rc);
}

static void test_llama_lm(void **state) {
    (void)state;
    /* all-linear: every projection; the short names select exactly them */
    round_case rc = {"llama_gqa", FTC_TASK_CAUSAL_LM, "all-linear", "LlamaForCausalLM", "q_proj", false};
    round_trip(&rc);
}

static void test_bert_cls(void **state) {
    (void)state;
    /* "dense" alone would also select the attention output, the FFN output and the pooler: the path
     * inside the block is needed */
    round_case rc = {"bert_cls", FTC_TASK_CLASSIFY, "query,value,intermediate.dense", "BertForSequenceClassification",
                     "attention.self.query", false};
    round_trip(&rc);
}

static void test_llama_cls(void **state) {
    (void)state;
    /* adapters in layer 0 only: no short name says that, so target_modules lists full paths */
    round_case rc = {"llama_cls", FTC_TASK_CLASSIFY, "layers.0.self_attn.q_proj,layers.0.self_attn.v_proj",
                     "LlamaForSequenceClassification", "model.layers.0.self_attn.q_proj", false};
    round_trip(&rc);
}

/* A head transformers has no class for (mean pooling): the export says so instead of claiming BertFor... */
static void test_non_hf_head(void **state) {
    (void)state;
    char base[1024], out[1024];
    fixture(base, sizeof base, "bert_mean");
    tmp_path(out, sizeof out, "bert_mean_hf");
    ftc_err e;
    ftc_model *m = load(base, FTC_TASK_CLASSIFY);
    if (ftc_model_set_classifier(m, 3, FTC_POOL_MEAN, 1, &e)) fail_msg("%s", e.msg);
    const char *why;
    assert_false(ftc_export_head_is_hf(m, &why));
    assert_non_null(strstr(why, "mean"));
    if (ftc_export_hf(m, out, NULL, &e)) fail_msg("%s", e.msg);
    json_t *cfg = read_json(out, "config.json");
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)), "BertModel");
    json_t *head = json_object_get(cfg, "ftc_classifier_head");
    assert_string_equal(json_string_value(json_object_get(head, "pooling")), "mean");
    json_decref(cfg);
    ftc_model_free(m);
}

static void write_text(const char *path, const char *text) {
    ftc_err e;
    if (ftc_write_file_atomic(path, text, strlen(text), &e)) fail_msg("%s", e.msg);
}

static void test_refusals(void **state) {
    (void)state;
    char base[1024], out[1024], path[1200];
    fixture(base, sizeof base, "llama_gqa");
    ftc_err e;
    ftc_model *m = load(base, FTC_TASK_CAUSAL_LM);
    /* no adapters */
    tmp_path(out, sizeof out, "none");
    assert_int_equal(ftc_export_peft(m, out, NULL, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "no LoRA adapters"));
    assert_false(ftc_file_exists(out));
    /* an existing non-empty directory is kept unless overwrite */
    tmp_path(out, sizeof out, "busy");
    assert_int_equal(ftc_mkdirs(out, &e), FTC_OK);
    snprintf(path, sizeof path, "%s/keep.txt", out);
    write_text(path, "x");
    assert_int_equal(ftc_export_hf(m, out, NULL, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "not empty"));
    assert_true(ftc_file_exists(path));
    ftc_export_opts o = {.overwrite = true};
    assert_int_equal(ftc_export_hf(m, out, &o, &e), FTC_OK);
    assert_false(ftc_file_exists(path));
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    assert_true(ftc_file_exists(path));
    /* unmerged adapters are not an HF model */
    if (ftc_model_add_lora(m, "q_proj", 2, 4, 0, 1, &e)) fail_msg("%s", e.msg);
    tmp_path(out, sizeof out, "unmerged");
    assert_int_equal(ftc_export_hf(m, out, NULL, &e), FTC_E_USAGE);
    assert_false(ftc_file_exists(out));
    /* a valid adapter to corrupt */
    char good[1024];
    tmp_path(good, sizeof good, "good_adapter");
    if (ftc_export_peft(m, good, NULL, &e)) fail_msg("%s", e.msg);
    ftc_model_free(m);

    /* the adapter does not fit the model or is of a kind ftc cannot apply */
    struct {
        const char *config;
        ftc_status code;
        const char *msg;
    } bad[] = {
        {"{\"peft_type\": \"PREFIX_TUNING\", \"r\": 2, \"lora_alpha\": 4}", FTC_E_UNSUPPORTED, "peft_type"},
        {"{\"peft_type\": \"LORA\", \"r\": 0, \"lora_alpha\": 4}", FTC_E_INPUT, "field r"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"use_dora\": true}", FTC_E_UNSUPPORTED, "use_dora"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"bias\": \"all\"}", FTC_E_UNSUPPORTED, "bias"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"task_type\": \"SEQ_CLS\"}", FTC_E_INPUT, "SEQ_CLS"},
        {"{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 4}", FTC_E_INPUT, "r=3"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4,", FTC_E_INPUT, "adapter_config.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/adapter_config.json", good);
        write_text(path, bad[i].config);
        ftc_model *b = load(base, FTC_TASK_CAUSAL_LM);
        assert_int_equal(ftc_model_load_adapter(b, good, &e), bad[i].code);
        if (!strstr(e.msg, bad[i].msg)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, bad[i].msg);
        ftc_model_free(b);
    }
    /* a tensor naming a module the model lacks */
    char odd[1024];
    tmp_path(odd, sizeof odd, "odd_adapter");
    assert_int_equal(ftc_mkdirs(odd, &e), FTC_OK);
    snprintf(path, sizeof path, "%s/adapter_config.json", odd);
    write_text(path, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}");
    ftc_st_writer *w = ftc_st_writer_new();
    float zeros[2 * 64] = {0};
    int64_t shape[2] = {2, 32};
    assert_int_equal(ftc_st_writer_add(w, "base_model.model.model.layers.0.self_attn.x_proj.lora_A.weight", FTC_F32, 2,
                                       shape, zeros, &e), FTC_OK);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", odd);
    assert_int_equal(ftc_st_writer_write(w, path, &e), FTC_OK);
    ftc_st_writer_free(w);
    ftc_model *b = load(base, FTC_TASK_CAUSAL_LM);
    assert_int_equal(ftc_model_load_adapter(b, odd, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "x_proj"));
    ftc_model_free(b);
    /* no adapter_config.json */
    b = load(base, FTC_TASK_CAUSAL_LM);
    assert_int_equal(ftc_model_load_adapter(b, base, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "adapter_config.json"));
    ftc_model_free(b);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(tmproot, sizeof tmproot, "test_export"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(tmproot); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_lm),     cmocka_unit_test(test_llama_lm),    cmocka_unit_test(test_bert_cls),
        cmocka_unit_test(test_llama_cls),   cmocka_unit_test(test_non_hf_head), cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

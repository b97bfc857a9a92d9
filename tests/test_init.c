/* `ftc init` then ftc_model_load: every tensor of the family is there, and the values are drawn as
 * transformers initialises them (weights normal(0, initializer_range), GPT-2's residual projections
 * normal(0, initializer_range / sqrt(2 n_layer)), zero biases, unit norm scales, a zero padding row for
 * BERT's word embeddings); bf16 storage holds exactly the f32 weights rounded to bf16.
 * tools/check_init.py compares the same files with transformers itself (not run in CI). */
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
#include "ftc/base.h"
#include "ftc/model.h"
#include "ftc/safetensors.h"
#include "lib/test_util.h"

static char g_dir[64];

static const char *GPT2_CFG =
    "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"vocab_size\": 301, \"n_positions\": 64,"
    " \"n_embd\": 64, \"n_layer\": 2, \"n_head\": 4, \"initializer_range\": 0.02}";
static const char *LLAMA_CFG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 301, \"hidden_size\": 64,"
    " \"intermediate_size\": 160, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"max_position_embeddings\": 64, \"tie_word_embeddings\": false, \"initializer_range\": 0.02}";
static const char *BERT_CFG =
    "{\"architectures\": [\"BertForSequenceClassification\"], \"model_type\": \"bert\", \"vocab_size\": 301,"
    " \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
    " \"max_position_embeddings\": 64, \"type_vocab_size\": 2, \"pad_token_id\": 0, \"initializer_range\": 0.02,"
    " \"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}}";

/* Writes the config, runs `ftc init`, returns the output directory (static buffer per call site). */
static void run_init(const char *name, const char *config_json, const char *extra, char *out, size_t n) {
    const char *ftc = getenv("FTC_BIN");
    if (!ftc) skip();
    char cfg_path[256], cmd[2048];
    snprintf(cfg_path, sizeof cfg_path, "%s/%s.json", g_dir, name);
    ftc_err e;
    assert_int_equal(ftc_write_file_atomic(cfg_path, config_json, strlen(config_json), &e), FTC_OK);
    snprintf(out, n, "%s/%s", g_dir, name);
    snprintf(cmd, sizeof cmd, "'%s' init --config '%s' --out '%s' %s >/dev/null", ftc, cfg_path, out, extra);
    assert_int_equal(system(cmd), 0);
}

static ftc_model *load(const char *dir, ftc_task task) {
    ftc_model *m = NULL;
    ftc_err e;
    ftc_status st = ftc_model_load(dir, task, &m, &e);
    if (st != FTC_OK) fail_msg("ftc_model_load(%s): %s", dir, e.msg);
    return m;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static bool is_norm(const char *name) {
    return strstr(name, "ln_") || strstr(name, "LayerNorm") || strstr(name, "norm.") || strstr(name, "layernorm");
}

/* Checks every parameter against transformers' rule; gpt2_layers > 0 scales c_proj as GPT-2 does. */
static void check_init_stats(ftc_model *m, float range, int gpt2_layers, int pad_row) {
    int n_random = 0;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        const ftc_param *p = ftc_model_param(m, i);
        const float *x = p->data;
        if (is_norm(p->name)) {
            float want = ends_with(p->name, ".bias") ? 0.0f : 1.0f;
            for (int64_t j = 0; j < p->numel; j++)
                if (x[j] != want) fail_msg("%s[%lld] = %g, want %g", p->name, (long long)j, x[j], want);
            continue;
        }
        if (ends_with(p->name, ".bias")) {
            for (int64_t j = 0; j < p->numel; j++)
                if (x[j] != 0.0f) fail_msg("%s[%lld] = %g, want 0", p->name, (long long)j, x[j]);
            continue;
        }
        int64_t skip_from = -1, skip_to = -1; /* BERT: transformers zeroes the padding_idx row */
        if (pad_row >= 0 && strstr(p->name, "word_embeddings.")) {
            int64_t cols = p->shape[1];
            skip_from = pad_row * cols;
            skip_to = skip_from + cols;
            for (int64_t j = skip_from; j < skip_to; j++)
                if (x[j] != 0.0f) fail_msg("%s: padding row %d not zero ([%lld] = %g)", p->name, pad_row, (long long)j, x[j]);
        }
        double s = 0, s2 = 0;
        int64_t n = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            if (j >= skip_from && j < skip_to) continue;
            s += x[j];
            s2 += (double)x[j] * x[j];
            n++;
        }
        double mean = s / n, sd = sqrt(s2 / n - mean * mean);
        double want = range;
        if (gpt2_layers > 0 && ends_with(p->name, "c_proj.weight")) want = range / sqrt(2.0 * gpt2_layers);
        /* n normal draws: the std is right to about 1/sqrt(2n) relative, the mean to sd/sqrt(n) */
        double tol = 5.0 / sqrt(2.0 * n);
        if (fabs(sd / want - 1.0) > tol || fabs(mean) > 5.0 * want / sqrt((double)n))
            fail_msg("%s: mean %g std %g over %lld values, want N(0, %g)", p->name, mean, sd, (long long)n, want);
        n_random++;
    }
    assert_true(n_random > 0);
}

static void test_gpt2(void **state) {
    (void)state;
    char dir[256];
    run_init("gpt2", GPT2_CFG, "--seed 3", dir, sizeof dir);
    ftc_model *m = load(dir, FTC_TASK_CAUSAL_LM);
    assert_string_equal(ftc_model_config_of(m)->model_type, "gpt2");
    assert_int_equal(ftc_model_config_of(m)->n_layers, 2);
    /* 12 tensors per block, wte, wpe, ln_f: nothing missing for transformers either */
    assert_int_equal(ftc_model_n_params(m), 2 * 12 + 4);
    check_init_stats(m, 0.02f, 2, -1);
    ftc_model_free(m);
}

static void test_llama(void **state) {
    (void)state;
    char dir[256];
    run_init("llama", LLAMA_CFG, "--seed 3", dir, sizeof dir);
    ftc_model *m = load(dir, FTC_TASK_CAUSAL_LM);
    assert_int_equal(ftc_model_config_of(m)->n_kv_heads, 2);
    const ftc_param *k = NULL;
    for (int i = 0; i < ftc_model_n_params(m); i++)
        if (strstr(ftc_model_param(m, i)->name, "layers.1.self_attn.k_proj.weight")) k = ftc_model_param(m, i);
    assert_non_null(k);
    assert_int_equal(k->numel, 2 * 16 * 64); /* GQA: kv_heads x head_dim rows */
    /* 9 per block (q k v o gate up down, 2 norms), embed_tokens, norm, lm_head (untied) */
    assert_int_equal(ftc_model_n_params(m), 2 * 9 + 3);
    check_init_stats(m, 0.02f, 0, -1);
    ftc_model_free(m);
}

static void test_bert_classifier(void **state) {
    (void)state;
    char dir[256];
    run_init("bert", BERT_CFG, "", dir, sizeof dir);
    ftc_model *m = load(dir, FTC_TASK_CLASSIFY);
    assert_int_equal(ftc_model_config_of(m)->num_labels, 3);
    int has_classifier = 0, has_pooler = 0;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        const char *name = ftc_model_param(m, i)->name;
        if (strstr(name, "classifier.weight")) { has_classifier = 1; assert_int_equal(ftc_model_param(m, i)->numel, 3 * 64); }
        if (strstr(name, "pooler.dense.weight")) has_pooler = 1;
    }
    assert_true(has_classifier);
    assert_true(has_pooler);
    check_init_stats(m, 0.02f, 0, 0);
    ftc_model_free(m);
}

/* The same seed stored as bf16 is the f32 model rounded to nearest even, tensor by tensor. */
static void test_bf16_is_rounded_f32(void **state) {
    (void)state;
    char d32[256], d16[256];
    run_init("g32", GPT2_CFG, "--seed 11", d32, sizeof d32);
    run_init("g16", GPT2_CFG, "--seed 11 --dtype bf16", d16, sizeof d16);
    ftc_model *a = load(d32, FTC_TASK_CAUSAL_LM), *b = load(d16, FTC_TASK_CAUSAL_LM);
    assert_int_equal(ftc_model_n_params(a), ftc_model_n_params(b));
    for (int i = 0; i < ftc_model_n_params(a); i++) {
        const ftc_param *p = ftc_model_param(a, i), *q = ftc_model_find_param(b, p->name);
        assert_non_null(q);
        assert_int_equal(p->numel, q->numel);
        for (int64_t j = 0; j < p->numel; j++) {
            float want = ftc_bf16_to_f32(ftc_f32_to_bf16(p->data[j]));
            if (q->data[j] != want) fail_msg("%s[%lld]: bf16 %g, want %g", p->name, (long long)j, q->data[j], want);
        }
    }
    ftc_model_free(a);
    ftc_model_free(b);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(g_dir, sizeof g_dir, "test_init"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(g_dir); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_bert_classifier),
        cmocka_unit_test(test_bf16_is_rounded_f32),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

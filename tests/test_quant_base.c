/* LoRA on a block-quantized frozen base (ftc_model_load_quant_base, docs/quant.md): storage, a LoRA run equal
 * to the same run on the dequantized f32 base up to f32 summation order, merge into f32 and save. */
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
#include "ftc/export.h"
#include "ftc/gguf.h"
#include "ftc/hf_config.h"
#include "ftc/matmul.h"
#include "ftc/model.h"
#include "ftc/ops.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "ftc/train.h"
#include "lib/test_util.h"

static ftc_rng rng;

static void fixture_dir(char *out, size_t n, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(out, n, "%s/tests/fixtures/models/%s", src ? src : ".", name);
}

enum { B = 2, T = 8, NB = 2 };
typedef struct { int32_t ids[NB * B * T], labels[NB * B * T]; uint8_t mask[NB * B * T]; } batches;

static void make_batches(batches *d, int V) {
    for (int i = 0; i < NB * B * T; i++) {
        bool real = !((i / T) & 1) || i % T < T - 2;
        d->ids[i] = real ? 1 + (int32_t)ftc_rng_below(&rng, (uint64_t)(V - 1)) : 0;
        d->labels[i] = real ? d->ids[i] : -100;
        d->mask[i] = real;
    }
}

static void train_curve(ftc_model *m, const batches *d, int steps, float *losses, double *first_grad_norm) {
    ftc_err e;
    assert_int_equal(ftc_model_reserve(m, B, T, &e), FTC_OK);
    int np = ftc_model_n_params(m);
    ftc_param **ps = malloc((size_t)np * sizeof *ps);
    for (int i = 0; i < np; i++) ps[i] = ftc_model_param(m, i);
    ftc_optimizer opt;
    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    assert_int_equal(ftc_optim_init(&opt, ps, np, &h, &e), FTC_OK);
    free(ps);
    for (int s = 0; s < steps; s++) {
        size_t off = (size_t)(s % NB) * B * T;
        ftc_batch b = {B, T, d->ids + off, NULL, d->mask + off, d->labels + off};
        ftc_model_zero_grad(m);
        if (ftc_model_forward(m, &b, true, &losses[s], &e)) fail_msg("%s", e.msg);
        if (ftc_model_backward(m, &e)) fail_msg("%s", e.msg);
        double gn = ftc_clip_grad_norm(&opt, 1.0f);
        if (s == 0) *first_grad_norm = gn;
        ftc_optim_step(&opt, 1e-2f);
        ftc_model_weights_changed(m);
    }
    ftc_optim_free(&opt);
}

static void forward_logits(ftc_model *m, const batches *d, float *out, size_t n) {
    ftc_err e;
    float loss;
    ftc_batch b = {B, T, (int32_t *)d->ids, NULL, (uint8_t *)d->mask, (int32_t *)d->labels};
    if (ftc_model_forward(m, &b, false, &loss, &e)) fail_msg("%s", e.msg);
    memcpy(out, ftc_model_logits(m), n * sizeof(float));
}

/* Both models' logits on d (into la, lb: n values each): the largest |a - b| / (1 + |a|) */
static double logits_gap(ftc_model *a, ftc_model *b, const batches *d, float *la, float *lb, size_t n) {
    ftc_err e;
    assert_int_equal(ftc_model_reserve(a, B, T, &e), FTC_OK);
    assert_int_equal(ftc_model_reserve(b, B, T, &e), FTC_OK);
    forward_logits(a, d, la, n);
    forward_logits(b, d, lb, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(la[i] - lb[i]) / (1 + fabs(la[i])));
    return worst;
}

/* The same LoRA (r 4, alpha 8, seed 7 on targets) trained LORA_STEPS steps on both: the loss curves (ca, cb), the
 * first gradient norms, and the largest relative gap between the curves */
enum { LORA_STEPS = 6 };
static double lora_curve_gap(ftc_model *a, ftc_model *b, const char *targets, const batches *d, float *ca, float *cb,
                             double *ga, double *gb) {
    ftc_err e;
    assert_int_equal(ftc_model_add_lora(a, targets, 4, 8.0f, 0.0f, 7, &e), FTC_OK);
    assert_int_equal(ftc_model_add_lora(b, targets, 4, 8.0f, 0.0f, 7, &e), FTC_OK);
    train_curve(a, d, LORA_STEPS, ca, ga);
    train_curve(b, d, LORA_STEPS, cb, gb);
    double wl = 0;
    for (int s = 0; s < LORA_STEPS; s++) wl = fmax(wl, fabs(ca[s] - cb[s]) / fabs(ca[s]));
    return wl;
}

/* Model `ref` (f32) gets, for every weight stored quantized in `q`, the dequantized values: the f32 model
 * the quantized one computes with. */
static int dequantize_into(ftc_model *ref, ftc_model *q) {
    int nq = 0;
    for (int i = 0; i < ftc_model_n_params(q); i++) {
        ftc_param *pq = ftc_model_param(q, i), *pr = ftc_model_param(ref, i);
        assert_string_equal(pq->name, pr->name);
        if (!pq->data_q) continue;
        int64_t O = pq->shape[0], I = pq->numel / O;
        assert_true(ftc_quant_tensor_bytes(pq->qtype, O, I) > 0);
        ftc_dequantize_tensor(pq->qtype, pq->data_q, pr->data, O, I);
        nq++;
    }
    return nq;
}

/* The token embedding table */
static ftc_param *token_table(ftc_model *m) {
    ftc_param *p = ftc_model_find_param(m, "model.embed_tokens.weight");
    if (!p) p = ftc_model_find_param(m, "transformer.wte.weight");
    if (!p) p = ftc_model_find_param(m, "wte.weight");
    assert_non_null(p);
    return p;
}
/* The LM head: lm_head.weight, or the token embedding it is tied to */
static ftc_param *lm_head_param(ftc_model *m) {
    ftc_param *p = ftc_model_find_param(m, "lm_head.weight");
    return p ? p : token_table(m);
}

static void quant_base_case(const char *fixture, const char *targets, int qtype, int expect_quantized) {
    char dir[4096];
    fixture_dir(dir, sizeof dir, fixture);
    ftc_model *a, *b;
    ftc_err e;
    if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &a, &e)) fail_msg("%s", e.msg);
    if (ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, qtype, &b, &e)) fail_msg("%s", e.msg);
    int V = ftc_model_config_of(a)->vocab_size;
    /* storage: quantized weights hold blocks only (no f32, no bf16), frozen, quantized from the f32 values */
    int64_t expect = 0;
    for (int i = 0; i < ftc_model_n_params(b); i++) {
        ftc_param *p = ftc_model_param(b, i), *pa = ftc_model_param(a, i);
        if (!p->data_q) {
            expect += 4 * p->numel;
            continue;
        }
        assert_null(p->data);
        assert_null(p->data_bf16);
        assert_false(p->trainable);
        int64_t O = p->shape[0], I = p->numel / O;
        size_t bytes = ftc_quant_tensor_bytes(p->qtype, O, I);
        expect += (int64_t)bytes;
        uint8_t *want = malloc(bytes);
        ftc_quantize_tensor(p->qtype, pa->data, want, O, I);
        assert_memory_equal(want, p->data_q, bytes);
        free(want);
    }
    assert_int_equal(ftc_model_param_bytes(b), expect);
    assert_int_equal(dequantize_into(a, b), expect_quantized);
    /* the LM head, tied (the token embedding) or not, is packed in Q8_0 whatever the base type (llama.cpp's
     * output-tensor rule without Q6_K, ftc_quant_type_for_output): no f32 copy */
    ftc_param *head = lm_head_param(b), *table = token_table(b);
    assert_non_null(head->data_q);
    assert_null(head->data);
    assert_int_equal(head->qtype, FTC_GGML_Q8_0);
    /* an untied token table is packed in the base's type (llama.cpp's token_embd), as the block linears */
    assert_non_null(table->data_q);
    if (table != head) assert_int_equal(table->qtype, ftc_quant_type_for_row(qtype, table->shape[1]));
    printf("  %s %s: %d weights quantized, parameter bytes %lld (f32 %lld)\n", fixture, ftc_quant_name(qtype),
           expect_quantized, (long long)ftc_model_param_bytes(b), (long long)ftc_model_param_bytes(a));
    batches d;
    make_batches(&d, V);
    size_t n = (size_t)B * T * V;
    float *la = malloc(n * 4), *lb = malloc(n * 4);
    double worst = logits_gap(a, b, &d, la, lb, n);
    assert_true(worst < 1e-5);
    /* LoRA on both: the same run up to f32 summation order (panels vs whole matmul) */
    float ca[LORA_STEPS], cb[LORA_STEPS];
    double ga, gb, wl = lora_curve_gap(a, b, targets, &d, ca, cb, &ga, &gb);
    printf("  loss %.5f -> %.5f (dequantized f32 base) vs %.5f -> %.5f (%s base): max rel diff %.2e; "
           "first grad norm %.6g vs %.6g\n", ca[0], ca[LORA_STEPS - 1], cb[0], cb[LORA_STEPS - 1], ftc_quant_name(qtype), wl,
           ga, gb);
    assert_true(wl < 1e-5);
    assert_true(fabs(ga - gb) <= 1e-5 * fabs(ga));
    assert_true(cb[LORA_STEPS - 1] < cb[0]);
    /* merge: each adapted weight becomes f32 (dequantized + adapter), the others stay quantized; save writes
     * F32 for all; the reloaded f32 model gives the merged model's logits */
    assert_int_equal(ftc_model_merge_lora(b, &e), FTC_OK);
    int still_q = 0;
    for (int i = 0; i < ftc_model_n_params(b); i++) {
        ftc_param *p = ftc_model_param(b, i);
        still_q += p->data_q != NULL;
        if (strstr(p->name, strstr(targets, "q_proj") ? "q_proj" : "c_attn")) assert_null(p->data_q);
    }
    forward_logits(b, &d, lb, n);
    char out[] = "/tmp/ftc_test_qbase_XXXXXX";
    assert_non_null(mkdtemp(out));
    assert_int_equal(ftc_model_save(b, out, &e), FTC_OK);
    ftc_model *c;
    if (ftc_model_load(out, FTC_TASK_CAUSAL_LM, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_model_reserve(c, B, T, &e), FTC_OK);
    forward_logits(c, &d, la, n);
    worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(la[i] - lb[i]) / (1 + fabs(la[i])));
    printf("  merged (%d weights still quantized), saved F32, reloaded: logits max rel diff %.2e\n", still_q, worst);
    assert_true(worst < 1e-5);
    ftc_st_set *st;
    assert_int_equal(ftc_st_open(out, &st, &e), FTC_OK);
    for (int i = 0; i < ftc_st_count(st); i++) assert_int_equal(ftc_st_get(st, i)->dtype, FTC_F32);
    ftc_st_close(st);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out), unlink(path);
    snprintf(path, sizeof path, "%s/config.json", out), unlink(path);
    rmdir(out);
    ftc_model_free(a), ftc_model_free(b), ftc_model_free(c);
    free(la), free(lb);
}

/* Where vdpbf16ps runs at the FMA's rate (AMD), a packed base's training products take bf16 operands with f32
 * accumulation at fp32 precision too (src/model/precision.c). The other cases pin the f32 products (main), which
 * must equal the dequantized f32 base's; here the bf16 products, forced: a different path (the logits differ from
 * f32's), within bf16's rounding of them, and LoRA's loss falls with them as with f32 products. */
static void test_packed_bf16_products(void **state) {
    (void)state;
    if (!ftc_matmul_set_bf16_dot("dpbf16") || strcmp(ftc_matmul_bf16_dot(), "dpbf16") != 0) {
        assert_true(ftc_matmul_set_bf16_dot("fma"));
        printf("  skipped: no AVX512-BF16 path here (FTC_MATMUL or the CPU): f32 products only\n");
        return;
    }
    char dir[4096];
    fixture_dir(dir, sizeof dir, "llama_gqa");
    ftc_model *a, *b;
    ftc_err e;
    if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &a, &e)) fail_msg("%s", e.msg);
    if (ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, FTC_GGML_Q4_0, &b, &e)) fail_msg("%s", e.msg);
    assert_int_equal(dequantize_into(a, b), 14);
    int V = ftc_model_config_of(a)->vocab_size;
    batches d;
    make_batches(&d, V);
    size_t n = (size_t)B * T * V;
    float *la = malloc(n * 4), *lb = malloc(n * 4);
    double worst = logits_gap(a, b, &d, la, lb, n);
    printf("  q4_0 base, bf16 products vs the dequantized f32 base: logits max rel diff %.2e\n", worst);
    assert_true(worst > 1e-7 && worst < 2e-2);
    float ca[LORA_STEPS], cb[LORA_STEPS];
    double ga, gb, wl = lora_curve_gap(a, b, "all-linear", &d, ca, cb, &ga, &gb);
    printf("  loss %.5f -> %.5f (f32) vs %.5f -> %.5f (bf16 products): max rel diff %.2e\n", ca[0],
           ca[LORA_STEPS - 1], cb[0], cb[LORA_STEPS - 1], wl);
    assert_true(wl < 2e-2);
    assert_true(cb[LORA_STEPS - 1] < cb[0]);
    ftc_model_free(a), ftc_model_free(b);
    free(la), free(lb);
    assert_true(ftc_matmul_set_bf16_dot("fma"));
}

/* llama_gqa: hidden 32, intermediate 48: every linear but down_proj (I = 48) fits a 32-block: 2 layers x 6 + the
 * untied head (Q8_0) + the untied token table (the base's type) */
static void test_q8_0_llama(void **state) { (void)state; quant_base_case("llama_gqa", "all-linear", FTC_GGML_Q8_0, 14); }
static void test_q4_0_llama(void **state) { (void)state; quant_base_case("llama_gqa", "q_proj,v_proj", FTC_GGML_Q4_0, 14); }
/* Q4_K's 256 fits none: Q4_1 where 32 does (ftc_quant_type_for_row) */
static void test_q4_k_falls_back(void **state) { (void)state; quant_base_case("llama_gqa", "all-linear", FTC_GGML_Q4_K, 14); }
/* GPT-2's Conv1D weights are transposed on load and on save; its LM head is tied to wte: 2 layers x 4 + wte */
static void test_q4_1_gpt2_conv1d(void **state) { (void)state; quant_base_case("gpt2", "c_attn,c_proj", FTC_GGML_Q4_1, 9); }
/* A tied LM head (SmolLM2's layout): the embedding table is packed too (Q8_0), the lookup dequantizes its rows and
 * the head's forward and input gradient run on the packed rows: the logits and a LoRA run equal the dequantized
 * f32 model's up to f32 summation order (1e-5 relative) */
static void test_q4_0_llama_tied(void **state) { (void)state; quant_base_case("llama_tied", "q_proj,v_proj", FTC_GGML_Q4_0, 13); }
static void test_q8_0_llama_tied(void **state) { (void)state; quant_base_case("llama_tied", "all-linear", FTC_GGML_Q8_0, 13); }

/* NF4 (blocks of 64): on the gpt2 fixture only the MLP's c_proj (I = 128) fits: 2 weights, + the tied wte in Q8_0 */
static void test_nf4_gpt2(void **state) { (void)state; quant_base_case("gpt2", "c_proj", FTC_QUANT_NF4, 3); }
/* NF4DQ: the same two weights (each one short group of 256 blocks) + the tied wte in Q8_0; on llama_gqa no linear's
 * input is a multiple of 64 (hidden 32), so gpt2 only */
static void test_nf4dq_gpt2(void **state) { (void)state; quant_base_case("gpt2", "c_proj", FTC_QUANT_NF4DQ, 3); }

/* A BERT classifier on a q8_0 base, as Banking77's MiniLM runs (--method head and lora): bert_cls (hidden 32,
 * intermediate 40, a pooler, a 3-class head). Quantized: per layer query/key/value/attention output and the FFN's
 * up (I = 32), and the pooler: 11 weights; the FFN's down (I = 40) fits no 32-block and stays f32, as do the
 * encoder's embedding tables and the head. The head alone (everything else frozen) and LoRA (query,value, with the
 * head, as ftc train's classify LoRA) each train as on the dequantized f32 base, up to f32 summation order. */
static void bert_classify_case(bool lora) {
    char dir[4096];
    fixture_dir(dir, sizeof dir, "bert_cls");
    ftc_model *a, *b;
    ftc_err e;
    if (ftc_model_load(dir, FTC_TASK_CLASSIFY, &a, &e)) fail_msg("%s", e.msg);
    if (ftc_model_load_quant_base(dir, FTC_TASK_CLASSIFY, FTC_GGML_Q8_0, &b, &e)) fail_msg("%s", e.msg);
    assert_int_equal(dequantize_into(a, b), 11);
    for (int i = 0; i < ftc_model_n_params(b); i++) {
        ftc_param *p = ftc_model_param(b, i);
        if (p->role == FTC_PARAM_CLASSIFIER || p->role == FTC_PARAM_EMBEDDING) assert_null(p->data_q);
        if (p->role == FTC_PARAM_POOLER && p->ndim == 2) assert_non_null(p->data_q);
    }
    enum { BB = 4, TT = 8, STEPS = 6, K = 3 };
    int V = ftc_model_config_of(a)->vocab_size;
    int32_t ids[2 * BB * TT], labels[2 * BB];
    uint8_t mask[2 * BB * TT];
    for (int i = 0; i < 2 * BB * TT; i++) {
        mask[i] = i % TT < TT - (i / TT) % 3; /* rows of 8, 7 and 6 real tokens */
        ids[i] = mask[i] ? 1 + (int32_t)ftc_rng_below(&rng, (uint64_t)(V - 1)) : 0;
    }
    for (int i = 0; i < 2 * BB; i++) labels[i] = (int32_t)ftc_rng_below(&rng, K);
    ftc_model *ms[2] = {a, b};
    float loss[2][STEPS];
    for (int k = 0; k < 2; k++) {
        ftc_model *m = ms[k];
        if (lora) assert_int_equal(ftc_model_add_lora(m, "query,value", 4, 8.0f, 0.0f, 7, &e), FTC_OK);
        for (int i = 0; i < ftc_model_n_params(m); i++)
            if (!ftc_model_param(m, i)->is_lora)
                ftc_model_set_trainable(m, i, ftc_model_param(m, i)->role == FTC_PARAM_CLASSIFIER);
        assert_int_equal(ftc_model_reserve(m, BB, TT, &e), FTC_OK);
        int np = ftc_model_n_params(m);
        ftc_param **ps = malloc((size_t)np * sizeof *ps);
        for (int i = 0; i < np; i++) ps[i] = ftc_model_param(m, i);
        ftc_optimizer opt;
        ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
        assert_int_equal(ftc_optim_init(&opt, ps, np, &h, &e), FTC_OK);
        free(ps);
        for (int s = 0; s < STEPS; s++) {
            int d = s % 2; /* two batches in turn: the loss on them falls */
            ftc_batch bt = {BB, TT, ids + d * BB * TT, NULL, mask + d * BB * TT, labels + d * BB};
            ftc_model_zero_grad(m);
            if (ftc_model_forward(m, &bt, true, &loss[k][s], &e)) fail_msg("%s", e.msg);
            if (ftc_model_backward(m, &e)) fail_msg("%s", e.msg);
            ftc_optim_step(&opt, 3e-2f);
            ftc_model_weights_changed(m);
        }
        ftc_optim_free(&opt);
    }
    double wl = 0;
    for (int s = 0; s < STEPS; s++) wl = fmax(wl, fabs(loss[0][s] - loss[1][s]) / fabs(loss[0][s]));
    printf("  bert_cls q8_0 %s: loss %.5f -> %.5f (dequantized f32 base) vs %.5f -> %.5f: max rel diff %.2e\n",
           lora ? "lora query,value + head" : "head", loss[0][0], loss[0][STEPS - 1], loss[1][0], loss[1][STEPS - 1], wl);
    assert_true(wl < 1e-5);
    assert_true(loss[1][STEPS - 2] < loss[1][0] && loss[1][STEPS - 1] < loss[1][1]); /* each batch's loss fell */
    ftc_model_free(a), ftc_model_free(b);
}
static void test_q8_0_bert_head(void **state) { (void)state; bert_classify_case(false); }
static void test_q8_0_bert_lora(void **state) { (void)state; bert_classify_case(true); }

/* The embedding lookup from a packed table: the looked-up rows dequantized, bit for bit (with GPT-2's learned
 * positions added in the same order), against ftc_embedding_forward on the dequantized table. */
static void test_embedding_rows_exact(void **state) {
    (void)state;
    const char *fixtures[] = {"llama_tied", "gpt2", "llama_gqa"};
    for (int f = 0; f < 3; f++) {
        char dir[4096];
        fixture_dir(dir, sizeof dir, fixtures[f]);
        ftc_model *q;
        ftc_err e;
        if (ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, FTC_GGML_Q4_0, &q, &e)) fail_msg("%s", e.msg);
        ftc_param *t = token_table(q), *wpe = ftc_model_find_param(q, "transformer.wpe.weight");
        if (!wpe) wpe = ftc_model_find_param(q, "wpe.weight");
        assert_non_null(t->data_q);
        int V = (int)t->shape[0], C = (int)t->shape[1];
        float *deq = malloc((size_t)V * C * sizeof(float));
        ftc_dequantize_tensor(t->qtype, t->data_q, deq, V, C);
        enum { N = 100 }; /* over 64: the pool splits the rows */
        int32_t ids[N], pos[N];
        for (int n = 0; n < N; n++) ids[n] = (int32_t)ftc_rng_below(&rng, (uint64_t)V), pos[n] = n % 8;
        ids[0] = 0, ids[1] = V - 1;
        float *a = malloc((size_t)N * C * sizeof(float)), *b = malloc((size_t)N * C * sizeof(float));
        const float *pe = wpe ? wpe->data : NULL;
        ftc_embedding_forward(a, ids, pe ? pos : NULL, NULL, deq, pe, NULL, N, C);
        ftc_embedding_forward_q(b, ids, pe ? pos : NULL, NULL, t->data_q, t->qtype, pe, NULL, N, C);
        assert_memory_equal(a, b, (size_t)N * C * sizeof(float));
        /* and the rows are the table's (not zeros, not another row) */
        if (!pe) assert_memory_equal(b + C, deq + (size_t)(V - 1) * C, (size_t)C * sizeof(float));
        free(a), free(b), free(deq);
        ftc_model_free(q);
    }
}

/* quantizing an already loaded f32 model gives the same blocks as quantizing on load; unfreezing dequantizes */
static void test_store_frozen_quant_and_unfreeze(void **state) {
    (void)state;
    char dir[4096];
    fixture_dir(dir, sizeof dir, "llama_gqa");
    ftc_model *m, *q;
    ftc_err e;
    if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e)) fail_msg("%s", e.msg);
    if (ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, FTC_GGML_Q8_0, &q, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, false);
    assert_int_equal(ftc_model_store_frozen_quant(m, FTC_GGML_Q8_0, &e), FTC_OK);
    assert_int_equal(ftc_model_param_bytes(m), ftc_model_param_bytes(q));
    ftc_param *p = ftc_model_find_param(m, "model.layers.1.self_attn.q_proj.weight");
    ftc_param *pq = ftc_model_find_param(q, "model.layers.1.self_attn.q_proj.weight");
    assert_non_null(p->data_q);
    size_t bytes = ftc_quant_row_bytes(p->qtype, p->shape[1]) * (size_t)p->shape[0];
    assert_memory_equal(p->data_q, pq->data_q, bytes);
    float *deq = malloc((size_t)p->numel * 4);
    ftc_dequantize_row(p->qtype, p->data_q, deq, p->numel);
    ftc_model_set_trainable(m, (int)(p - ftc_model_param(m, 0)), true);
    assert_null(p->data_q);
    assert_non_null(p->data);
    assert_memory_equal(p->data, deq, (size_t)p->numel * 4);
    ftc_model_free(q);
    assert_int_equal(ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, 99, &q, &e), FTC_E_USAGE);
    assert_null(q);
    free(deq);
    ftc_model_free(m);
}

/* --base-dtype: names, validation */
static void test_config(void **state) {
    (void)state;
    ftc_train_config c;
    ftc_err e;
    const char *names[] = {"q8_0", "q4_0", "q4_1", "q4_k", "nf4", "nf4dq"};
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1, FTC_GGML_Q4_K, FTC_QUANT_NF4, FTC_QUANT_NF4DQ};
    for (int k = 0; k < 6; k++) {
        ftc_train_config_defaults(&c);
        assert_int_equal(ftc_train_config_set(&c, "method", "lora", &e), FTC_OK);
        assert_int_equal(ftc_train_config_set(&c, "base-dtype", names[k], &e), FTC_OK);
        assert_int_equal(ftc_train_base_qtype(&c), types[k]);
        assert_false(ftc_train_base_bf16(&c));
        assert_string_equal(ftc_base_dtype_name(c.base_dtype), names[k]);
    }
    ftc_train_config_defaults(&c);
    assert_int_equal(ftc_train_config_set(&c, "base-dtype", "nf3", &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "nf4"));
    assert_int_equal(ftc_train_config_set(&c, "base-dtype", "bf16", &e), FTC_OK);
    assert_int_equal(ftc_train_base_qtype(&c), -1);
}

/* Loading packs each weight a piece (at most 1M values, whole rows; NF4DQ whole groups of 256 blocks) at a time
 * from the file's rows, never holding a whole weight in f32: the packed bytes equal quantizing the whole f32 weight
 * at once (ftc_quantize_tensor), from an f32 and a bf16 checkpoint, on weights of several pieces: GPT-2 768 wide
 * (Conv1D weights transposed as they are read; 3 pieces of c_fc / c_proj, q4_k in 256-blocks) and a llama 576 wide
 * like SmolLM2 (gate/up 2000 x 576: 18000 NF4DQ blocks, 70 groups and a short one across 2 pieces; untied head
 * and table); the bf16 checkpoint with q4_0 and nf4dq (what differs is the source). bf16 storage and f32 values
 * (transposed too) against the file read whole; a bf16 weight quantized later (ftc_model_store_frozen_quant, piece
 * by piece from its bits) against the whole widened weight. */
static void write_checkpoint(const char *json, const char *dir, bool bf16) {
    ftc_model_config cfg;
    ftc_err e;
    ftc_model *m;
    if (ftc_config_parse(json, strlen(json), "test config", &cfg, &e)) fail_msg("%s", e.msg);
    if (ftc_model_create(&cfg, FTC_TASK_CAUSAL_LM, 5, &m, &e)) fail_msg("%s", e.msg);
    ftc_config_free(&cfg);
    assert_int_equal(ftc_model_save(m, dir, &e), FTC_OK);
    ftc_model_free(m);
    if (!bf16) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ftc_st_set *st;
    assert_int_equal(ftc_st_open(path, &st, &e), FTC_OK);
    ftc_st_writer *w = ftc_st_writer_new();
    float **vals = calloc((size_t)ftc_st_count(st), sizeof *vals);
    for (int i = 0; i < ftc_st_count(st); i++) {
        const ftc_tensor_view *t = ftc_st_get(st, i);
        vals[i] = malloc((size_t)t->numel * sizeof(float));
        assert_int_equal(ftc_tensor_to_f32(t, vals[i], &e), FTC_OK);
        assert_int_equal(ftc_st_writer_add_f32_as(w, t->name, FTC_BF16, t->ndim, t->shape, vals[i], &e), FTC_OK);
    }
    assert_int_equal(ftc_st_writer_write(w, path, &e), FTC_OK);
    for (int i = 0; i < ftc_st_count(st); i++) free(vals[i]);
    free(vals);
    ftc_st_writer_free(w);
    ftc_st_close(st);
}

/* the file's value of param p in our [out, in] layout (GPT-2's Conv1D transposed back) */
static float *file_values_of(const char *dir, const ftc_param *p) {
    ftc_st_set *st;
    ftc_err e;
    assert_int_equal(ftc_st_open(dir, &st, &e), FTC_OK);
    const ftc_tensor_view *t = ftc_st_find(st, p->name);
    assert_non_null(t);
    float *f = malloc((size_t)p->numel * sizeof(float)), *x = malloc((size_t)p->numel * sizeof(float));
    assert_int_equal(ftc_tensor_to_f32(t, f, &e), FTC_OK);
    int64_t O = p->shape[0], I = p->numel / O;
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) x[o * I + i] = p->transposed ? f[i * O + o] : f[o * I + i];
    free(f);
    ftc_st_close(st);
    return x;
}

static void test_load_in_pieces_bit_identical(void **state) {
    (void)state;
    const char *configs[] = {
        "{\"model_type\": \"gpt2\", \"n_embd\": 768, \"n_head\": 12, \"n_layer\": 1, \"n_positions\": 32, "
        "\"vocab_size\": 1500}",
        "{\"model_type\": \"llama\", \"hidden_size\": 576, \"intermediate_size\": 2000, \"num_attention_heads\": 9, "
        "\"num_key_value_heads\": 3, \"num_hidden_layers\": 1, \"vocab_size\": 2000, \"tie_word_embeddings\": false}"};
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1, FTC_GGML_Q4_K, FTC_QUANT_NF4, FTC_QUANT_NF4DQ};
    int compared = 0, multi = 0;
    for (int c = 0; c < 2; c++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            char dir[64];
            assert_int_equal(ftc_test_tmpdir_make(dir, sizeof dir, "qpieces"), 0);
            write_checkpoint(configs[c], dir, bf16);
            ftc_model *f, *h;
            ftc_err e;
            if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &f, &e)) fail_msg("%s", e.msg);
            if (ftc_model_load_bf16_base(dir, FTC_TASK_CAUSAL_LM, &h, &e)) fail_msg("%s", e.msg);
            for (int i = 0; i < ftc_model_n_params(f); i++) { /* f32 values and bf16 storage against the file */
                ftc_param *p = ftc_model_param(f, i), *ph = ftc_model_param(h, i);
                float *x = file_values_of(dir, p);
                assert_memory_equal(p->data, x, (size_t)p->numel * sizeof(float));
                if (ph->data_bf16 && !ph->data) {
                    uint16_t *want = malloc((size_t)p->numel * sizeof(uint16_t));
                    ftc_f32_to_bf16_n(x, want, (size_t)p->numel);
                    assert_memory_equal(ph->data_bf16, want, (size_t)p->numel * sizeof(uint16_t));
                    free(want);
                }
                free(x);
            }
            for (int k = 0; k < 6; k++) {
                if (bf16 && types[k] != FTC_GGML_Q4_0 && types[k] != FTC_QUANT_NF4DQ) continue; /* the source only */
                ftc_model *q;
                if (ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, types[k], &q, &e)) fail_msg("%s", e.msg);
                for (int i = 0; i < ftc_model_n_params(q); i++) {
                    ftc_param *p = ftc_model_param(q, i), *pf = ftc_model_param(f, i);
                    if (!p->data_q) continue;
                    int64_t O = p->shape[0], I = p->numel / O;
                    size_t bytes = ftc_quant_tensor_bytes(p->qtype, O, I);
                    uint8_t *want = malloc(bytes);
                    ftc_quantize_tensor(p->qtype, pf->data, want, O, I);
                    assert_memory_equal(want, p->data_q, bytes);
                    free(want);
                    compared++;
                    multi += p->numel > (1 << 20);
                }
                ftc_model_free(q);
            }
            /* bf16-stored weights quantized afterwards: from their bits, piece by piece */
            for (int i = 0; i < ftc_model_n_params(h); i++) ftc_model_set_trainable(h, i, false);
            int nq = ftc_model_n_params(h);
            float **widened = calloc((size_t)nq, sizeof *widened);
            for (int i = 0; i < nq; i++) {
                ftc_param *p = ftc_model_param(h, i);
                if (!p->data_bf16 || p->data) continue;
                widened[i] = malloc((size_t)p->numel * sizeof(float));
                ftc_bf16_to_f32_n(p->data_bf16, widened[i], (size_t)p->numel);
            }
            assert_int_equal(ftc_model_store_frozen_quant(h, FTC_QUANT_NF4DQ, &e), FTC_OK);
            for (int i = 0; i < nq; i++) {
                ftc_param *p = ftc_model_param(h, i);
                if (widened[i] && p->data_q) {
                    int64_t O = p->shape[0], I = p->numel / O;
                    size_t bytes = ftc_quant_tensor_bytes(p->qtype, O, I);
                    uint8_t *want = malloc(bytes);
                    ftc_quantize_tensor(p->qtype, widened[i], want, O, I);
                    assert_memory_equal(want, p->data_q, bytes);
                    free(want);
                    compared++;
                    multi += p->numel > (1 << 20);
                }
                free(widened[i]);
            }
            free(widened);
            ftc_model_free(f), ftc_model_free(h);
            assert_int_equal(ftc_test_tmpdir_remove(dir), 0);
        }
    printf("  packed in pieces: %d weights bit-identical to whole-weight quantization (%d of them over 1M values)\n",
           compared, multi);
    assert_true(multi >= 40);
}

/* A LoRA run on a quantized base merged and re-quantized to the base's type (ftc export --format gguf --type base):
 * every weight of the GGUF is the base's own quantizer applied to the merged f32 model's value (an adapted weight:
 * its dequantized base plus the adapter; the others: the dequantized base), in the type the base held it: the tied
 * head Q8_0, the position table and norms f32 (GPT-2: Conv1D weights in our [out, in] order as GGUF stores them). */
static void test_merge_requantized_gguf(void **state) {
    (void)state;
    char tmp[64], gg[4096], hf[128], merged[128], ref[128], out[128];
    assert_int_equal(ftc_test_tmpdir_make(tmp, sizeof tmp, "qmerge"), 0);
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/gpt2.gguf", ftc_test_src_dir());
    snprintf(hf, sizeof hf, "%s/hf", tmp), snprintf(merged, sizeof merged, "%s/merged", tmp);
    snprintf(ref, sizeof ref, "%s/f32.gguf", tmp), snprintf(out, sizeof out, "%s/base.gguf", tmp);
    ftc_err e = {0};
    if (ftc_gguf_export_hf(gg, hf, &e)) fail_msg("%s", e.msg);
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1, FTC_GGML_Q4_K};
    for (int k = 0; k < 4; k++) {
        ftc_model *m;
        if (ftc_model_load_quant_base(hf, FTC_TASK_CAUSAL_LM, types[k], &m, &e)) fail_msg("%s", e.msg);
        assert_int_equal(ftc_model_add_lora(m, "c_attn,c_fc", 4, 8.0f, 0.0f, 7, &e), FTC_OK);
        for (int i = 0; i < ftc_model_n_params(m); i++) { /* an adapter that moves the weights */
            ftc_param *p = ftc_model_param(m, i);
            for (int64_t j = 0; p->is_lora && j < p->numel; j++) p->data[j] = 0.05f * ftc_rng_normal(&rng);
        }
        assert_int_equal(ftc_model_merge_lora(m, &e), FTC_OK);
        ftc_export_opts o = {.tokenizer_dir = hf, .overwrite = true};
        assert_int_equal(ftc_export_hf(m, merged, &o, &e), FTC_OK);
        ftc_model_free(m);
        ftc_gguf_export_opts f32 = {.type = FTC_GGML_F32}, base = {.type = types[k], .as_base = true};
        if (ftc_gguf_from_hf(merged, ref, &f32, &e) || ftc_gguf_from_hf(merged, out, &base, &e)) fail_msg("%s", e.msg);
        ftc_gguf *r, *g;
        if (ftc_gguf_open(ref, &r, &e) || ftc_gguf_open(out, &g, &e)) fail_msg("%s", e.msg);
        int blocks = 0;
        for (int i = 0; i < ftc_gguf_tensor_count(g); i++) {
            const ftc_gguf_tensor *t = ftc_gguf_tensor_at(g, i), *rt = ftc_gguf_find_tensor(r, t->name);
            assert_non_null(rt);
            int64_t n = t->shape[t->ndim - 1], rows = t->numel / n;
            int want = t->ndim == 1 || !strcmp(t->name, "position_embd.weight") ? FTC_GGML_F32
                       : !strcmp(t->name, "token_embd.weight") ? FTC_GGML_Q8_0 : ftc_quant_type_for_row(types[k], n);
            if (want < 0) want = FTC_GGML_F32;
            if (t->type != want) fail_msg("%s %s: type %d, want %d", ftc_quant_name(types[k]), t->name, t->type, want);
            if (want == FTC_GGML_F32) {
                assert_memory_equal(t->data, rt->data, rt->nbytes);
                continue;
            }
            size_t rb = ftc_quant_row_bytes(want, n);
            uint8_t *exp = malloc(rb * (size_t)rows);
            ftc_quantize_tensor(want, (const float *)rt->data, exp, rows, n);
            assert_int_equal(t->nbytes, rb * (size_t)rows);
            assert_memory_equal(exp, t->data, t->nbytes);
            free(exp);
            blocks++;
        }
        printf("  %s: %d weights of the merged GGUF = the base's quantizer on the merged f32 values\n",
               ftc_quant_name(types[k]), blocks);
        assert_true(blocks >= 9); /* 2 layers x 4 linears + the tied head */
        ftc_gguf_close(r), ftc_gguf_close(g);
    }
    assert_int_equal(ftc_test_tmpdir_remove(tmp), 0);
}

int main(void) {
    ftc_rng_seed(&rng, 18);
    /* f32 products for a packed base on every CPU: the cases compare with the dequantized f32 base to 1e-5 */
    if (!ftc_matmul_set_bf16_dot("fma")) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_llama),
        cmocka_unit_test(test_q4_0_llama),
        cmocka_unit_test(test_q4_k_falls_back),
        cmocka_unit_test(test_q4_1_gpt2_conv1d),
        cmocka_unit_test(test_q4_0_llama_tied),
        cmocka_unit_test(test_q8_0_llama_tied),
        cmocka_unit_test(test_embedding_rows_exact),
        cmocka_unit_test(test_nf4_gpt2),
        cmocka_unit_test(test_nf4dq_gpt2),
        cmocka_unit_test(test_q8_0_bert_head),
        cmocka_unit_test(test_q8_0_bert_lora),
        cmocka_unit_test(test_store_frozen_quant_and_unfreeze),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_load_in_pieces_bit_identical),
        cmocka_unit_test(test_merge_requantized_gguf),
        cmocka_unit_test(test_packed_bf16_products),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

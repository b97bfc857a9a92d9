/* KV-cache decoding (ftc_model_decode, ftc_generate) against full recomputation with ftc_model_forward:
 * at every step the cached decode's logits equal the full forward's last-position logits within 1e-4, on
 * the tiny random GPT-2, Llama (GQA, tied, rope_theta 500) and Qwen2 (q/k/v biases) fixtures, a model with
 * unmerged LoRA adapters, and the real stories260K weights. Greedy generation equals transformers' generate()
 * (tests/fixtures/generate/NAME.json from tools/gen_generate_fixtures.py). Errors: context full, ids out of the
 * vocabulary, encoder models refused. */
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
#include <jansson.h>
#include "ftc/infer.h"
#include "ftc/model.h"
#include "ftc/quant.h"

#define TOL 1e-4

static const char *src_path(const char *rel) {
    static char buf[4][8300];
    static int k;
    k = (k + 1) % 4;
    const char *src = getenv("FTC_SOURCE_DIR");
    snprintf(buf[k], sizeof buf[k], "%s/%s", src ? src : ".", rel);
    return buf[k];
}

static ftc_model *load(const char *dir) {
    ftc_model *m;
    ftc_err e;
    if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e)) fail_msg("%s: %s", dir, e.msg);
    return m;
}

/* Logits of the last position of ids[0..T) by a full forward pass. */
static void full_last_logits(ftc_model *m, const int32_t *ids, int T, float *out) {
    ftc_err e;
    ftc_batch b = {1, T, ids, NULL, NULL, NULL};
    if (ftc_model_forward(m, &b, false, NULL, &e)) fail_msg("forward: %s", e.msg);
    int V = ftc_model_config_of(m)->vocab_size;
    memcpy(out, ftc_model_logits(m) + (size_t)(T - 1) * V, (size_t)V * sizeof(float));
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double w = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= w)) w = isnan(d) ? INFINITY : d;
    }
    return w;
}

/* Feeds T random ids through a KV cache (a prefill of `prefill` tokens, then one at a time) and compares
 * every step's logits with the full forward on the prefix. Returns the largest difference. */
static double kv_vs_full(ftc_model *m, int T, int prefill, uint64_t seed) {
    const ftc_model_config *cfg = ftc_model_config_of(m);
    int V = cfg->vocab_size;
    ftc_err e;
    assert_int_equal(ftc_model_reserve(m, 1, T, &e), FTC_OK);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    ftc_rng r;
    ftc_rng_seed(&r, seed);
    for (int t = 0; t < T; t++) ids[t] = (int32_t)ftc_rng_below(&r, (uint64_t)V);
    float *ref = malloc((size_t)V * sizeof(float)), *all = malloc((size_t)prefill * V * sizeof(float));
    float *got = malloc((size_t)V * sizeof(float));
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, 4, &c, &e), FTC_OK); /* small: it must grow */
    double worst = 0;
    /* prefill with every position's logits: each row equals the full forward on that prefix */
    assert_int_equal(ftc_model_decode(m, c, ids, prefill, all, true, &e), FTC_OK);
    for (int t = 1; t <= prefill; t++) {
        full_last_logits(m, ids, t, ref);
        worst = fmax(worst, max_abs_diff(all + (size_t)(t - 1) * V, ref, V));
    }
    for (int t = prefill; t < T; t++) {
        assert_int_equal(ftc_model_decode(m, c, ids + t, 1, got, false, &e), FTC_OK);
        full_last_logits(m, ids, t + 1, ref);
        worst = fmax(worst, max_abs_diff(got, ref, V));
    }
    assert_int_equal(ftc_kv_cache_len(c), T);
    assert_memory_equal(ftc_kv_cache_ids(c), ids, (size_t)T * sizeof *ids);
    ftc_kv_cache_free(c);
    free(ids), free(ref), free(all), free(got);
    return worst;
}

static void check_model_dir(const char *name, int T) {
    ftc_model *m = load(name[0] == '/' ? name : src_path(name));
    double w1 = kv_vs_full(m, T, 1, 11), w2 = kv_vs_full(m, T, T / 2, 12);
    print_message("%s: KV cache vs full recomputation, max |dlogit| %.2e (prefill 1), %.2e (prefill %d)\n", name, w1,
                  w2, T / 2);
    assert_true(w1 <= TOL && w2 <= TOL);
    ftc_model_free(m);
}

static void test_kv_gpt2(void **s) { (void)s; check_model_dir("tests/fixtures/models/gpt2", 16); }
static void test_kv_llama_gqa(void **s) { (void)s; check_model_dir("tests/fixtures/models/llama_gqa", 32); }
static void test_kv_llama_tied(void **s) { (void)s; check_model_dir("tests/fixtures/models/llama_tied", 24); }
static void test_kv_qwen2(void **s) { (void)s; check_model_dir("tests/fixtures/models/qwen2", 24); }

static void test_kv_stories260k(void **s) {
    (void)s;
    const char *shared = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", shared ? shared : "../shared/data");
    if (access(dir, R_OK)) skip();
    check_model_dir(dir, 70); /* more than one 64-position chunk in the prefill */
}

/* Decoding with bf16 weights (ftc_model_use_bf16_weights, what --precision bf16 does): the cache's logits equal
 * the full forward's at the same precision within rounding (both round activations to bf16, but in different
 * orders of f32 sums, so a value near a bf16 rounding boundary may round differently: a bound relative to the
 * logits' scale, 2%), and they stay as near the f32 model's. The block weights then take 2 bytes each. */
static void check_bf16(const char *dir, int T) {
    ftc_model *m = load(dir), *f = load(dir);
    ftc_err e;
    int64_t bytes_f32 = ftc_model_param_bytes(m);
    assert_int_equal(ftc_model_use_bf16_weights(m, &e), FTC_OK);
    assert_int_equal(ftc_model_precision(m), FTC_PREC_BF16);
    assert_true(ftc_model_param_bytes(m) < bytes_f32);
    double w1 = kv_vs_full(m, T, 1, 21), w2 = kv_vs_full(m, T, T / 2, 22);
    /* against the f32 model: the same ids, last position */
    int V = ftc_model_config_of(m)->vocab_size;
    int32_t ids[64];
    for (int t = 0; t < T && t < 64; t++) ids[t] = (int32_t)((t * 7919 + 3) % V);
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, T, &c, &e), FTC_OK);
    assert_int_equal(ftc_model_decode(m, c, ids, T < 64 ? T : 64, a, false, &e), FTC_OK);
    assert_int_equal(ftc_model_reserve(f, 1, T, &e), FTC_OK);
    full_last_logits(f, ids, T < 64 ? T : 64, b);
    double vs32 = max_abs_diff(a, b, V), scale = 0;
    for (int v = 0; v < V; v++) scale = fmax(scale, fabs(b[v]));
    print_message("%s bf16: KV cache vs full forward max |dlogit| %.2e / %.2e; vs f32 %.2e (max |logit| %.2f)\n", dir, w1,
                  w2, vs32, scale);
    /* bf16 keeps 8 bits: activations carry ~0.4% relative error each way; a wrong term would be far outside */
    assert_true(w1 <= 0.02 * scale && w2 <= 0.02 * scale);
    assert_true(vs32 <= 0.02 * scale);
    ftc_kv_cache_free(c);
    free(a), free(b);
    ftc_model_free(m);
    ftc_model_free(f);
}

static void test_kv_bf16(void **s) {
    (void)s;
    check_bf16(src_path("tests/fixtures/models/llama_tied"), 24);
    check_bf16(src_path("tests/fixtures/models/qwen2"), 24);
    const char *shared = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", shared ? shared : "../shared/data");
    if (access(dir, R_OK) == 0) check_bf16(dir, 40);
}

/* Decoding on a quantized base (ftc_model_use_quant_weights, what generate/chat/serve --base-dtype do): the LM head
 * is packed in Q8_0, tied to the token embedding (the table then has no f32 copy) or not (the untied table is packed
 * in the base's type); the lookup dequantizes the rows it reads. Generation's products on the packed weights take
 * 8-bit activations (issue 24: each row of X rounded to blocks of 32 int8, one scale each, integer block dots, as
 * llama.cpp) for one token, batches and prompt chunks (past 16 tokens through the int8 GEMM, ftc_qgemm_q8act_forward:
 * the third run below prefills all T positions in one chunk); the full forward keeps f32 activations. An activation is then off by at most half its block's step (max|x| / 254 of its block), the
 * order of bf16's rounding: the cache's logits (prefill and one token at a time) equal the same model's full
 * forward, and the full forward of an f32 model holding the dequantized weights, within the bf16 check's bound (2%
 * of the logits' scale); a wrong block or row would be far outside (measured 0.4-0.7% on the fixtures, 1.8% on stories260K). */
static void check_quant(const char *dir, int qtype, int T) {
    ftc_model *m = load(dir), *f = load(dir);
    ftc_err e;
    int64_t bytes_f32 = ftc_model_param_bytes(m);
    assert_int_equal(ftc_model_use_quant_weights(m, qtype, &e), FTC_OK);
    int n_q = 0;
    bool head_packed = false;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i), *pf = ftc_model_param(f, i);
        if (!p->data_q) continue;
        assert_null(p->data);
        int64_t O = p->shape[0];
        ftc_dequantize_tensor(p->qtype, p->data_q, pf->data, O, p->numel / O);
        if (strstr(p->name, "lm_head.weight") || ((strstr(p->name, "embed_tokens.weight") || strstr(p->name, "wte.weight")) &&
                                                  !ftc_model_find_param(m, "lm_head.weight")))
            head_packed = p->qtype == FTC_GGML_Q8_0;
        n_q++;
    }
    assert_true(head_packed);
    double w1 = kv_vs_full(m, T, 1, 41), w2 = kv_vs_full(m, T, T / 2, 42), w3 = kv_vs_full(m, T, T, 43);
    /* the quantized model's decode against the dequantized f32 model's full forward, at every step */
    int V = ftc_model_config_of(m)->vocab_size;
    int32_t ids[128];
    assert_true(T <= 128);
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 7919 + 3) % V);
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, T, &c, &e), FTC_OK);
    assert_int_equal(ftc_model_reserve(f, 1, T, &e), FTC_OK);
    double vs32 = 0, scale = 0;
    for (int t = 0; t < T; t++) {
        assert_int_equal(ftc_model_decode(m, c, ids + t, 1, a, false, &e), FTC_OK);
        full_last_logits(f, ids, t + 1, b);
        vs32 = fmax(vs32, max_abs_diff(a, b, V));
        for (int v = 0; v < V; v++) scale = fmax(scale, fabs(b[v]));
    }
    print_message("%s %s: %d weights packed (head in q8_0), %lld bytes (f32 %lld); KV cache vs full forward max "
                  "|dlogit| %.2e / %.2e / %.2e (prefill 1, %d, %d); vs the dequantized f32 model %.2e (max |logit| %.2f)\n",
                  dir, ftc_quant_name(qtype), n_q, (long long)ftc_model_param_bytes(m), (long long)bytes_f32, w1, w2, w3,
                  T / 2, T, vs32, scale);
    assert_true(w1 <= 0.03 * scale && w2 <= 0.03 * scale && w3 <= 0.03 * scale && vs32 <= 0.03 * scale);
    ftc_kv_cache_free(c);
    free(a), free(b);
    ftc_model_free(m);
    ftc_model_free(f);
}

static void test_kv_quant_tied(void **s) {
    (void)s;
    check_quant(src_path("tests/fixtures/models/llama_tied"), FTC_GGML_Q4_0, 24);
    check_quant(src_path("tests/fixtures/models/gpt2"), FTC_GGML_Q8_0, 16);
    check_quant(src_path("tests/fixtures/models/qwen2"), FTC_GGML_Q8_0, 32); /* a 32-token prefill: the int8 GEMM */
    check_quant(src_path("tests/fixtures/models/llama_gqa"), FTC_GGML_Q4_0, 24); /* untied: table q4_0, head q8_0 */
    const char *shared = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", shared ? shared : "../shared/data");
    if (access(dir, R_OK) == 0) { /* prefills of 35 and 70 rows: the int8 GEMM */
        check_quant(dir, FTC_GGML_Q8_0, 70);
        check_quant(dir, FTC_GGML_Q4_0, 70);
    }
}

/* A prompt longer than one prefill chunk (256 positions; attention in steps of 64 queries): every position's
 * logits equal the full forward's rows (causal, so row t is the forward on the prefix 0..t). */
static void test_prefill_chunks(void **s) {
    (void)s;
    const char *shared = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", shared ? shared : "../shared/data");
    if (access(dir, R_OK)) skip();
    ftc_model *m = load(dir);
    enum { T = 300 };
    int V = ftc_model_config_of(m)->vocab_size;
    ftc_err e;
    assert_int_equal(ftc_model_reserve(m, 1, T, &e), FTC_OK);
    int32_t ids[T];
    ftc_rng r;
    ftc_rng_seed(&r, 31);
    for (int t = 0; t < T; t++) ids[t] = (int32_t)ftc_rng_below(&r, (uint64_t)V);
    float *all = malloc((size_t)T * V * sizeof(float));
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, 8, &c, &e), FTC_OK);
    assert_int_equal(ftc_model_decode(m, c, ids, 7, all, true, &e), FTC_OK); /* a cached prefix first */
    assert_int_equal(ftc_model_decode(m, c, ids + 7, T - 7, all + (size_t)7 * V, true, &e), FTC_OK);
    ftc_batch b = {1, T, ids, NULL, NULL, NULL};
    assert_int_equal(ftc_model_forward(m, &b, false, NULL, &e), FTC_OK);
    double w = max_abs_diff(all, ftc_model_logits(m), T * V);
    print_message("stories260K: prefill of %d positions vs full forward, max |dlogit| %.2e\n", T, w);
    assert_true(w <= TOL);
    ftc_kv_cache_free(c);
    free(all);
    ftc_model_free(m);
}

/* Unmerged LoRA adapters (B made non-zero so they matter) are applied by the decode path too. */
static void test_kv_lora(void **s) {
    (void)s;
    ftc_model *m = load(src_path("tests/fixtures/models/llama_gqa"));
    ftc_err e;
    assert_int_equal(ftc_model_add_lora(m, "q_proj,v_proj,down_proj", 4, 8.0f, 0.0f, 3, &e), FTC_OK);
    ftc_rng r;
    ftc_rng_seed(&r, 5);
    int n_lora = 0;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!p->is_lora) continue;
        n_lora++;
        for (int64_t j = 0; j < p->numel; j++) p->data[j] = 0.2f * ftc_rng_normal(&r);
    }
    assert_true(n_lora > 0);
    double w = kv_vs_full(m, 20, 5, 13);
    print_message("llama_gqa + LoRA: max |dlogit| %.2e\n", w);
    assert_true(w <= TOL);
    ftc_model_free(m);
}

/* Greedy generation with the cache equals greedy generation by full recomputation, token for token. */
static void test_generate_greedy_equals_recompute(void **s) {
    (void)s;
    ftc_model *m = load(src_path("tests/fixtures/models/llama_tied"));
    int V = ftc_model_config_of(m)->vocab_size, T = 24, P = 3;
    ftc_err e;
    assert_int_equal(ftc_model_reserve(m, 1, T, &e), FTC_OK);
    int32_t seq[24] = {1, 7, 9};
    float *lg = malloc((size_t)V * sizeof(float));
    for (int t = P; t < T; t++) {
        full_last_logits(m, seq, t, lg);
        int best = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        seq[t] = best;
    }
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, 8, &c, &e), FTC_OK);
    ftc_generate_opts o = {.max_new_tokens = T - P, .sampler = {0.0f, 0, 1.0f}};
    int32_t out[24];
    int n;
    ftc_gen_stop why;
    assert_int_equal(ftc_generate(m, c, seq, P, &o, out, &n, &why, &e), FTC_OK);
    assert_int_equal(n, T - P);
    assert_int_equal(why, FTC_GEN_MAX_TOKENS);
    assert_memory_equal(out, seq + P, (size_t)n * sizeof(int32_t));
    assert_int_equal(ftc_kv_cache_len(c), T - 1); /* the last token was never fed */
    /* a stop token ends generation before it is emitted */
    ftc_kv_cache_reset(c);
    int32_t stop = seq[P + 4];
    o.stop_ids = &stop, o.n_stop = 1;
    assert_int_equal(ftc_generate(m, c, seq, P, &o, out, &n, &why, &e), FTC_OK);
    int first = P;
    while (seq[first] != stop) first++;
    assert_int_equal(n, first - P);
    assert_int_equal(why, FTC_GEN_STOP_TOKEN);
    ftc_kv_cache_free(c);
    free(lg);
    ftc_model_free(m);
}

/* Sampling with the same seed gives the same tokens; a continuation (n_prompt 0) reuses the cache. */
static void test_generate_seeded_and_continue(void **s) {
    (void)s;
    ftc_model *m = load(src_path("tests/fixtures/models/gpt2"));
    ftc_err e;
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, 16, &c, &e), FTC_OK);
    ftc_generate_opts o = {.max_new_tokens = 6, .sampler = {1.0f, 20, 0.9f}, .seed = 42};
    int32_t prompt[2] = {5, 6}, a[6], b[6];
    int na, nb;
    assert_int_equal(ftc_generate(m, c, prompt, 2, &o, a, &na, NULL, &e), FTC_OK);
    ftc_kv_cache_reset(c);
    assert_int_equal(ftc_generate(m, c, prompt, 2, &o, b, &nb, NULL, &e), FTC_OK);
    assert_int_equal(na, 6);
    assert_int_equal(nb, 6);
    assert_memory_equal(a, b, sizeof a);
    /* context: 16 positions; 2 + 5 fed so far (the 6th token is not), continuing stops when full */
    assert_int_equal(ftc_kv_cache_len(c), 7);
    o.max_new_tokens = 100;
    int32_t more[100];
    int nm;
    ftc_gen_stop why;
    assert_int_equal(ftc_model_decode(m, c, &b[5], 1, (float[67]){0}, false, &e), FTC_OK);
    assert_int_equal(ftc_generate(m, c, NULL, 0, &o, more, &nm, &why, &e), FTC_OK);
    assert_int_equal(why, FTC_GEN_CONTEXT_FULL);
    assert_int_equal(ftc_kv_cache_len(c), 16);
    assert_int_equal(nm, 16 - 8 + 1); /* 8 more fed, plus the last one sampled from position 15 */
    /* decoding beyond the context is an error naming both numbers */
    float lg[67];
    assert_int_equal(ftc_model_decode(m, c, prompt, 1, lg, false, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "17 positions needed, the model has 16"));
    ftc_kv_cache_reset(c);
    int32_t bad = 67;
    assert_int_equal(ftc_model_decode(m, c, &bad, 1, lg, false, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "token id 67"));
    ftc_kv_cache_free(c);
    ftc_model_free(m);
}

/* transformers' greedy generate() on the same token ids (tests/fixtures/generate/NAME.json). */
static void check_hf_fixture(const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "tests/fixtures/generate/%s.json", name);
    json_error_t je;
    json_t *fx = json_load_file(src_path(path), 0, &je);
    if (!fx) fail_msg("%s: %s", path, je.text);
    const char *model = json_string_value(json_object_get(fx, "model"));
    char dir[8300];
    if (!strncmp(model, "$FTC_SHARED_DATA/", 17)) {
        const char *shared = getenv("FTC_SHARED_DATA");
        snprintf(dir, sizeof dir, "%s/%s", shared ? shared : "../shared/data", model + 17);
        if (access(dir, R_OK)) {
            json_decref(fx);
            skip();
        }
    } else {
        snprintf(dir, sizeof dir, "%s", src_path(model));
    }
    json_t *jp = json_object_get(fx, "prompt"), *jo = json_object_get(fx, "output");
    int np = (int)json_array_size(jp), no = (int)json_array_size(jo);
    int max_new = (int)json_integer_value(json_object_get(fx, "max_new_tokens"));
    int32_t eos = (int32_t)json_integer_value(json_object_get(fx, "eos_token_id"));
    int32_t *prompt = malloc((size_t)np * sizeof *prompt), *want = malloc((size_t)no * sizeof *want);
    int32_t *got = malloc((size_t)max_new * sizeof *got);
    for (int i = 0; i < np; i++) prompt[i] = (int32_t)json_integer_value(json_array_get(jp, (size_t)i));
    for (int i = 0; i < no; i++) want[i] = (int32_t)json_integer_value(json_array_get(jo, (size_t)i));
    bool ends_eos = no > 0 && want[no - 1] == eos;
    ftc_model *m = load(dir);
    ftc_err e;
    ftc_kv_cache *c;
    assert_int_equal(ftc_kv_cache_create(m, np + max_new, &c, &e), FTC_OK);
    ftc_generate_opts o = {.max_new_tokens = max_new, .sampler = {0.0f, 0, 1.0f}, .stop_ids = &eos, .n_stop = 1};
    int n;
    ftc_gen_stop why;
    if (ftc_generate(m, c, prompt, np, &o, got, &n, &why, &e)) fail_msg("%s: %s", name, e.msg);
    /* transformers keeps the EOS it stopped at; ours reports it as the stop reason */
    assert_int_equal(n, ends_eos ? no - 1 : no);
    assert_int_equal(why, ends_eos ? FTC_GEN_STOP_TOKEN : FTC_GEN_MAX_TOKENS);
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("%s: token %d is %d, transformers generated %d", name, i, got[i], want[i]);
    print_message("%s: %d tokens as transformers' generate()%s\n", name, n, ends_eos ? ", then EOS" : "");
    ftc_kv_cache_free(c);
    ftc_model_free(m);
    free(prompt), free(want), free(got);
    json_decref(fx);
}

static void test_hf_gpt2(void **s) { (void)s; check_hf_fixture("gpt2"); }
static void test_hf_llama_gqa(void **s) { (void)s; check_hf_fixture("llama_gqa"); }
static void test_hf_llama_tied(void **s) { (void)s; check_hf_fixture("llama_tied"); }
static void test_hf_qwen2(void **s) { (void)s; check_hf_fixture("qwen2"); }
static void test_hf_stories260k(void **s) { (void)s; check_hf_fixture("stories260k"); }

static void test_encoder_refused(void **s) {
    (void)s;
    ftc_model *m;
    ftc_err e;
    assert_int_equal(ftc_model_load(src_path("tests/fixtures/models/bert_cls"), FTC_TASK_CLASSIFY, &m, &e), FTC_OK);
    ftc_kv_cache *c = (ftc_kv_cache *)&e;
    assert_int_equal(ftc_kv_cache_create(m, 8, &c, &e), FTC_E_UNSUPPORTED);
    assert_null(c);
    assert_non_null(strstr(e.msg, "decoder"));
    ftc_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_gpt2),
        cmocka_unit_test(test_kv_llama_gqa),
        cmocka_unit_test(test_kv_llama_tied),
        cmocka_unit_test(test_kv_qwen2),
        cmocka_unit_test(test_kv_stories260k),
        cmocka_unit_test(test_kv_lora),
        cmocka_unit_test(test_kv_bf16),
        cmocka_unit_test(test_kv_quant_tied),
        cmocka_unit_test(test_prefill_chunks),
        cmocka_unit_test(test_generate_greedy_equals_recompute),
        cmocka_unit_test(test_generate_seeded_and_continue),
        cmocka_unit_test(test_hf_gpt2),
        cmocka_unit_test(test_hf_llama_gqa),
        cmocka_unit_test(test_hf_llama_tied),
        cmocka_unit_test(test_hf_qwen2),
        cmocka_unit_test(test_hf_stories260k),
        cmocka_unit_test(test_encoder_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

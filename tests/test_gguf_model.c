/* GGUF models and tokenizers to Hugging Face directories (src/io/gguf_hf.c):
 * - the tiny fixture models converted as llama.cpp converts them (tools/gen_gguf_model_fixtures.py: names,
 *   llama Q/K permutation, GPT-2 Conv1D transpose) come back bit-identical to the original checkpoints,
 *   with the same config;
 * - tokenizers rebuilt from tokenizer.ggml.* (GGUFs written here from the shared GPT-2 tokenizer.json and
 *   the Llama 2 tokenizer.model, as llama.cpp's converter writes them) give HF's ids on the tokenizer corpus. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/gguf.h"
#include "ftc/hf_config.h"
#include "ftc/model.h"
#include "ftc/safetensors.h"
#include "ftc/tokenizer.h"
#include "lib/test_util.h"

static char tmpdir[64];

static void round_trip(const char *name) {
    char gg[4096], orig[4096], out[4096];
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/%s.gguf", ftc_test_src_dir(), name);
    snprintf(orig, sizeof orig, "%s/tests/fixtures/models/%s", ftc_test_src_dir(), name);
    snprintf(out, sizeof out, "%s/%s", tmpdir, name);
    ftc_err e = {0};
    if (ftc_gguf_export_hf(gg, out, &e)) fail_msg("%s", e.msg);
    ftc_st_set *a, *b;
    if (ftc_st_open(orig, &a, &e) || ftc_st_open(out, &b, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_st_count(a), ftc_st_count(b));
    for (int i = 0; i < ftc_st_count(a); i++) {
        const ftc_tensor_view *x = ftc_st_get(a, i), *y = ftc_st_find(b, x->name);
        if (!y) fail_msg("%s: tensor %s missing from the export", name, x->name);
        assert_int_equal(x->ndim, y->ndim);
        for (int d = 0; d < x->ndim; d++) assert_int_equal(x->shape[d], y->shape[d]);
        assert_int_equal(y->dtype, FTC_F32);
        if (memcmp(x->data, y->data, x->nbytes)) fail_msg("%s: tensor %s differs", name, x->name);
    }
    printf("%-10s %d tensors bit-identical to the original checkpoint\n", name, ftc_st_count(a));
    ftc_st_close(a);
    ftc_st_close(b);
    ftc_model_config ca, cb;
    if (ftc_config_load(orig, &ca, &e) || ftc_config_load(out, &cb, &e)) fail_msg("%s", e.msg);
    assert_string_equal(ca.model_type, cb.model_type);
    assert_int_equal(ca.family, cb.family);
    assert_int_equal(ca.n_layers, cb.n_layers);
    assert_int_equal(ca.hidden_size, cb.hidden_size);
    assert_int_equal(ca.n_heads, cb.n_heads);
    assert_int_equal(ca.n_kv_heads, cb.n_kv_heads);
    assert_int_equal(ca.head_dim, cb.head_dim);
    assert_int_equal(ca.intermediate_size, cb.intermediate_size);
    assert_int_equal(ca.vocab_size, cb.vocab_size);
    assert_int_equal(ca.max_positions, cb.max_positions);
    assert_true(ca.norm_eps == cb.norm_eps);
    assert_true(ca.rope_theta == cb.rope_theta);
    assert_int_equal(ca.tie_word_embeddings, cb.tie_word_embeddings);
    assert_int_equal(ca.attention_bias, cb.attention_bias);
    assert_int_equal(ca.activation, cb.activation);
    ftc_config_free(&ca);
    ftc_config_free(&cb);
    ftc_model *m;
    if (ftc_model_load(out, FTC_TASK_CAUSAL_LM, &m, &e)) fail_msg("%s", e.msg);
    ftc_model_free(m);
    ftc_tokenizer *t;
    if (ftc_tokenizer_load(out, &t, &e)) fail_msg("%s", e.msg);
    ftc_tokenizer_free(t);
}

static void test_llama_gqa(void **state) { (void)state; round_trip("llama_gqa"); }
static void test_llama_tied(void **state) { (void)state; round_trip("llama_tied"); }
static void test_qwen2(void **state) { (void)state; round_trip("qwen2"); }
static void test_gpt2(void **state) { (void)state; round_trip("gpt2"); }

static void test_errors(void **state) {
    (void)state;
    char gg[4096], out[4096];
    ftc_err e = {0};
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/dequant.gguf", ftc_test_src_dir());
    snprintf(out, sizeof out, "%s/bad", tmpdir);
    assert_int_equal(ftc_gguf_export_hf(gg, out, &e), FTC_E_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "architecture 'test' is not supported"));
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/meta.gguf", ftc_test_src_dir());
    assert_int_equal(ftc_gguf_export_hf(gg, out, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "missing metadata key 'llama.block_count'"));
    assert_true(ftc_is_gguf_path(gg));
    assert_false(ftc_is_gguf_path(tmpdir));
    char r[4096];
    assert_int_equal(ftc_gguf_resolve(tmpdir, r, sizeof r, &e), FTC_OK);
    assert_string_equal(r, tmpdir);
}

/* ---- a tokenizer-only GGUF writer ---- */
typedef struct { uint8_t *b; size_t n, cap; } buf;
static void put(buf *x, const void *p, size_t n) {
    if (x->n + n > x->cap) { x->cap = (x->n + n) * 2 + 64; x->b = realloc(x->b, x->cap); }
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void u32(buf *x, uint32_t v) { put(x, &v, 4); }
static void u64(buf *x, uint64_t v) { put(x, &v, 8); }
static void strn(buf *x, const char *s, size_t n) { u64(x, n); put(x, s, n); }
static void str(buf *x, const char *s) { strn(x, s, strlen(s)); }
static void kv_str(buf *x, const char *k, const char *v) { str(x, k); u32(x, FTC_GGUF_STRING); str(x, v); }
static void kv_u32(buf *x, const char *k, uint32_t v) { str(x, k); u32(x, FTC_GGUF_U32); u32(x, v); }
static void kv_bool(buf *x, const char *k, bool v) { str(x, k); u32(x, FTC_GGUF_BOOL); put(x, &(uint8_t){v}, 1); }
static void arr_head(buf *x, const char *k, uint32_t elem, uint64_t n) {
    str(x, k);
    u32(x, FTC_GGUF_ARRAY);
    u32(x, elem);
    u64(x, n);
}
static void write_buf(const buf *x, const char *path) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x->b, 1, x->n, f), x->n);
    fclose(f);
}

/* ids of every corpus line against HF's (tests/fixtures/tok_<name>.0.jsonl); returns mismatches */
static size_t compare_corpus(const char *label, const char *dir, const char *fixture) {
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/fixtures/tokenizer_corpus.jsonl", ftc_test_src_dir());
    json_t *corpus = ftc_test_load_jsonl(p);
    snprintf(p, sizeof p, "%s/tests/fixtures/tok_%s.0.jsonl", ftc_test_src_dir(), fixture);
    json_t *fix = ftc_test_load_jsonl(p);
    assert_non_null(corpus);
    assert_non_null(fix);
    assert_int_equal(json_array_size(corpus), json_array_size(fix));
    ftc_tokenizer *t;
    ftc_err e = {0};
    if (ftc_tokenizer_load(dir, &t, &e)) fail_msg("%s", e.msg);
    ftc_ids ids = {0};
    size_t bad = 0, tokens = 0, dec_bad = 0;
    for (size_t i = 0; i < json_array_size(corpus); i++) {
        json_t *text = json_array_get(corpus, i), *want = json_array_get(json_array_get(fix, i), 0);
        ids.n = 0;
        ftc_status st = ftc_tokenizer_encode(t, json_string_value(text), json_string_length(text), true, 0, &ids, &e);
        bool same = !st && ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        tokens += json_array_size(want);
        if (!same && bad++ < 3) fprintf(stderr, "%s: line %zu differs\n", label, i + 1);
        if (!same) continue;
        const char *want_dec = json_string_value(json_array_get(json_array_get(fix, i), 1));
        char *dec = NULL;
        if (ftc_tokenizer_decode(t, ids.ids, ids.n, true, &dec, &e) || strcmp(dec, want_dec)) dec_bad++;
        free(dec);
    }
    printf("%-18s lines %zu, tokens %zu, id mismatches %zu, decode mismatches %zu\n", label, json_array_size(corpus),
           tokens, bad, dec_bad);
    ftc_ids_free(&ids);
    ftc_tokenizer_free(t);
    json_decref(corpus);
    json_decref(fix);
    return bad + dec_bad;
}

static void test_tokenizer_gpt2(void **state) {
    (void)state;
    const char *shared = getenv("FTC_SHARED_DATA");
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizers/gpt2/tokenizer.json", shared ? shared : "");
    if (!shared || !ftc_file_exists(p)) { skip(); return; }
    json_t *j = json_load_file(p, 0, NULL);
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab"),
           *merges = json_object_get(json_object_get(j, "model"), "merges");
    size_t V = json_object_size(vocab);
    const char **tok = calloc(V, sizeof *tok);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) tok[json_integer_value(v)] = k;
    buf x = {0};
    put(&x, "GGUF", 4);
    u32(&x, 3);
    u64(&x, 0);
    u64(&x, 7);
    kv_str(&x, "tokenizer.ggml.model", "gpt2");
    kv_str(&x, "tokenizer.ggml.pre", "gpt2");
    arr_head(&x, "tokenizer.ggml.tokens", FTC_GGUF_STRING, V);
    for (size_t i = 0; i < V; i++) str(&x, tok[i]);
    arr_head(&x, "tokenizer.ggml.token_type", FTC_GGUF_I32, V);
    for (size_t i = 0; i < V; i++) u32(&x, i == 50256 ? 3 : 1);
    arr_head(&x, "tokenizer.ggml.merges", FTC_GGUF_STRING, json_array_size(merges));
    for (size_t i = 0; i < json_array_size(merges); i++) str(&x, json_string_value(json_array_get(merges, i)));
    kv_u32(&x, "tokenizer.ggml.bos_token_id", 50256);
    kv_u32(&x, "tokenizer.ggml.eos_token_id", 50256);
    snprintf(p, sizeof p, "%s/gpt2-tok.gguf", tmpdir);
    write_buf(&x, p);
    free(x.b);
    free(tok);
    json_decref(j);
    char out[4096];
    snprintf(out, sizeof out, "%s/gpt2-tok", tmpdir);
    ftc_err e = {0};
    if (ftc_gguf_write_tokenizer(p, out, &e)) fail_msg("%s", e.msg);
    assert_int_equal(compare_corpus("gpt2 from GGUF", out, "gpt2"), 0);
}

/* tokenizer.model (sentencepiece ModelProto): pieces = field 1 {1: piece, 2: score (float), 3: type} */
static uint64_t varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (int s = 0; *p < end && s < 64; s += 7) {
        uint8_t c = *(*p)++;
        v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) break;
    }
    return v;
}

static void test_tokenizer_llama2(void **state) {
    (void)state;
    const char *shared = getenv("FTC_SHARED_DATA");
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizers/llama2/tokenizer.model", shared ? shared : "");
    if (!shared || !ftc_file_exists(p)) { skip(); return; }
    char *data;
    size_t len;
    ftc_err e = {0};
    assert_int_equal(ftc_read_file(p, &data, &len, &e), FTC_OK);
    size_t cap = 40000, n = 0;
    const char **piece = calloc(cap, sizeof *piece);
    size_t *plen = calloc(cap, sizeof *plen);
    float *score = calloc(cap, sizeof *score);
    int *type = calloc(cap, sizeof *type);
    const uint8_t *q = (const uint8_t *)data, *end = q + len;
    while (q < end) {
        uint64_t key = varint(&q, end);
        int wt = (int)(key & 7);
        if (wt == 0) { varint(&q, end); continue; }
        if (wt == 1) { q += 8; continue; }
        if (wt == 5) { q += 4; continue; }
        uint64_t l = varint(&q, end);
        const uint8_t *sub = q, *send = q + l;
        q = send;
        if ((key >> 3) != 1) continue;
        assert_true(n < cap);
        type[n] = 1;
        while (sub < send) {
            uint64_t k2 = varint(&sub, send);
            int w2 = (int)(k2 & 7), f2 = (int)(k2 >> 3);
            if (w2 == 2) {
                uint64_t l2 = varint(&sub, send);
                if (f2 == 1) piece[n] = (const char *)sub, plen[n] = l2;
                sub += l2;
            } else if (w2 == 5) {
                if (f2 == 2) memcpy(&score[n], sub, 4);
                sub += 4;
            } else if (w2 == 0) {
                uint64_t v = varint(&sub, send);
                if (f2 == 3) type[n] = (int)v;
            } else sub += 8;
        }
        n++;
    }
    assert_int_equal(n, 32000);
    buf x = {0};
    put(&x, "GGUF", 4);
    u32(&x, 3);
    u64(&x, 0);
    u64(&x, 9);
    kv_str(&x, "tokenizer.ggml.model", "llama");
    arr_head(&x, "tokenizer.ggml.tokens", FTC_GGUF_STRING, n);
    for (size_t i = 0; i < n; i++) strn(&x, piece[i], plen[i]);
    arr_head(&x, "tokenizer.ggml.scores", FTC_GGUF_F32, n);
    for (size_t i = 0; i < n; i++) put(&x, &score[i], 4);
    arr_head(&x, "tokenizer.ggml.token_type", FTC_GGUF_I32, n);
    for (size_t i = 0; i < n; i++) u32(&x, (uint32_t)type[i]);
    kv_u32(&x, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&x, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(&x, "tokenizer.ggml.unknown_token_id", 0);
    kv_bool(&x, "tokenizer.ggml.add_bos_token", true);
    kv_bool(&x, "tokenizer.ggml.add_eos_token", false);
    snprintf(p, sizeof p, "%s/llama2-tok.gguf", tmpdir);
    write_buf(&x, p);
    free(x.b);
    free(piece), free(plen), free(score), free(type), free(data);
    char out[4096];
    snprintf(out, sizeof out, "%s/llama2-tok", tmpdir);
    if (ftc_gguf_write_tokenizer(p, out, &e)) fail_msg("%s", e.msg);
    assert_int_equal(compare_corpus("llama2 from GGUF", out, "llama2"), 0);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(tmpdir, sizeof tmpdir, "ggm"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(tmpdir); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_gqa), cmocka_unit_test(test_llama_tied),      cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_gpt2),      cmocka_unit_test(test_errors),          cmocka_unit_test(test_tokenizer_gpt2),
        cmocka_unit_test(test_tokenizer_llama2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* GGUF out (src/io/gguf_from_hf.c, gguf_write.c):
 * - every --type: each 2-D weight is exactly ftc's quantizer / f16 / bf16 rounding of the f32 export's values (so a
 *   quantized export loads as the dequantized weights; the quantizers are bit-identical to gguf.quants, test_quant.c),
 *   rows that are not whole blocks fall back (Q4_K -> Q4_1, else F16), norms stay F32;
 * - a SentencePiece-style tokenizer (stories260K, byte-fallback BPE) goes into tokenizer.ggml.* (scores from the
 *   merge ranks) and comes back with HF's ids on the 2,353-line tokenizer corpus. */
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
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "ftc/tokenizer.h"
#include "lib/test_util.h"

static char tmpdir[64];

static void check_type(const char *hf, const char *ref_path, int type, const char *label) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.gguf", tmpdir, label);
    ftc_err e = {0};
    ftc_gguf_export_opts o = {.type = type};
    if (ftc_gguf_from_hf(hf, p, &o, &e)) fail_msg("%s", e.msg);
    ftc_gguf *ref, *g;
    if (ftc_gguf_open(ref_path, &ref, &e) || ftc_gguf_open(p, &g, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_gguf_tensor_count(ref), ftc_gguf_tensor_count(g));
    int n2 = 0, fell_back = 0;
    for (int i = 0; i < ftc_gguf_tensor_count(g); i++) {
        const ftc_gguf_tensor *t = ftc_gguf_tensor_at(g, i), *r = ftc_gguf_find_tensor(ref, t->name);
        assert_non_null(r);
        assert_int_equal(r->type, FTC_GGML_F32);
        assert_int_equal(t->ndim, r->ndim);
        if (t->ndim == 1) {
            assert_int_equal(t->type, FTC_GGML_F32);
            assert_memory_equal(t->data, r->data, r->nbytes);
            continue;
        }
        int64_t n = r->shape[1], rows = r->numel / n;
        int want = type;
        if (type != FTC_GGML_F16 && type != FTC_GGML_BF16) {
            want = ftc_quant_type_for_row(type, n);
            if (want < 0) want = FTC_GGML_F16;
        }
        if (want != type) fell_back++;
        if (t->type != want) fail_msg("%s %s: type %d, want %d", label, t->name, t->type, want);
        const float *v = (const float *)r->data;
        uint8_t *exp = malloc(t->nbytes);
        assert_non_null(exp);
        if (want == FTC_GGML_F16 || want == FTC_GGML_BF16) {
            uint16_t *h = (uint16_t *)exp;
            for (int64_t k = 0; k < r->numel; k++) h[k] = want == FTC_GGML_F16 ? ftc_f32_to_f16(v[k]) : ftc_f32_to_bf16(v[k]);
        } else {
            size_t rb = ftc_quant_row_bytes(want, n);
            for (int64_t k = 0; k < rows; k++) ftc_quantize_row(want, v + k * n, exp + (size_t)k * rb, n);
        }
        if (memcmp(exp, t->data, t->nbytes)) fail_msg("%s %s: bytes differ from ftc's encoding of the f32 export", label, t->name);
        free(exp);
        n2++;
    }
    printf("%-5s %d weights equal to the encoding of the f32 export (%d fell back)\n", label, n2, fell_back);
    ftc_gguf_close(ref);
    ftc_gguf_close(g);
}

static void test_types(void **state) {
    (void)state;
    char gg[4096], hf[4200], ref[4200];
    snprintf(gg, sizeof gg, "%s/tests/fixtures/gguf/llama_gqa.gguf", ftc_test_src_dir());
    snprintf(hf, sizeof hf, "%s/hf", tmpdir);
    snprintf(ref, sizeof ref, "%s/f32.gguf", tmpdir);
    ftc_err e = {0};
    if (ftc_gguf_export_hf(gg, hf, &e)) fail_msg("%s", e.msg);
    if (ftc_gguf_from_hf(hf, ref, NULL, &e)) fail_msg("%s", e.msg);
    /* the f32 export holds the fixture's tensors (written as llama.cpp's converter does) bit for bit */
    ftc_gguf *a, *b;
    if (ftc_gguf_open(gg, &a, &e) || ftc_gguf_open(ref, &b, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_gguf_tensor_count(a), ftc_gguf_tensor_count(b));
    for (int i = 0; i < ftc_gguf_tensor_count(a); i++) {
        const ftc_gguf_tensor *x = ftc_gguf_tensor_at(a, i), *y = ftc_gguf_find_tensor(b, x->name);
        assert_non_null(y);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    ftc_gguf_close(a);
    ftc_gguf_close(b);
    check_type(hf, ref, FTC_GGML_F16, "f16");
    check_type(hf, ref, FTC_GGML_BF16, "bf16");
    check_type(hf, ref, FTC_GGML_Q8_0, "q8_0");
    check_type(hf, ref, FTC_GGML_Q4_0, "q4_0");
    check_type(hf, ref, FTC_GGML_Q4_K, "q4_k");
}

static void test_spm_tokenizer(void **state) {
    (void)state;
    const char *shared = getenv("FTC_SHARED_DATA");
    char hf[4096], out[4200], tokdir[4200], p[4200];
    snprintf(hf, sizeof hf, "%s/models/stories260K-hf", shared ? shared : "");
    snprintf(p, sizeof p, "%s/tokenizer.json", hf);
    if (!shared || !ftc_file_exists(p)) { skip(); return; }
    snprintf(out, sizeof out, "%s/stories.gguf", tmpdir);
    snprintf(tokdir, sizeof tokdir, "%s/stories_tok", tmpdir);
    ftc_err e = {0};
    if (ftc_gguf_from_hf(hf, out, NULL, &e)) fail_msg("%s", e.msg);
    ftc_gguf *g;
    if (ftc_gguf_open(out, &g, &e)) fail_msg("%s", e.msg);
    const char *model = NULL;
    assert_int_equal(ftc_gguf_get_str(g, "tokenizer.ggml.model", false, &model, &e), FTC_OK);
    assert_string_equal(model, "llama");
    assert_non_null(ftc_gguf_find(g, "tokenizer.ggml.scores"));
    ftc_gguf_close(g);
    if (ftc_gguf_write_tokenizer(out, tokdir, &e)) fail_msg("%s", e.msg);
    snprintf(p, sizeof p, "%s/tests/fixtures/tokenizer_corpus.jsonl", ftc_test_src_dir());
    json_t *corpus = ftc_test_load_jsonl(p);
    snprintf(p, sizeof p, "%s/tests/fixtures/tok_stories260K.0.jsonl", ftc_test_src_dir());
    json_t *fix = ftc_test_load_jsonl(p);
    assert_non_null(corpus);
    assert_non_null(fix);
    ftc_tokenizer *t;
    if (ftc_tokenizer_load(tokdir, &t, &e)) fail_msg("%s", e.msg);
    ftc_ids ids = {0};
    size_t bad = 0, tokens = 0;
    for (size_t i = 0; i < json_array_size(corpus); i++) {
        json_t *text = json_array_get(corpus, i), *want = json_array_get(json_array_get(fix, i), 0);
        ids.n = 0;
        ftc_status st = ftc_tokenizer_encode(t, json_string_value(text), json_string_length(text), true, 0, &ids, &e);
        bool same = !st && ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        tokens += json_array_size(want);
        if (!same && bad++ < 3) fprintf(stderr, "stories260K via GGUF: line %zu differs\n", i + 1);
    }
    printf("stories260K tokenizer -> GGUF -> back: lines %zu, tokens %zu, id mismatches %zu\n", json_array_size(corpus),
           tokens, bad);
    assert_int_equal(bad, 0);
    ftc_ids_free(&ids);
    ftc_tokenizer_free(t);
    json_decref(corpus);
    json_decref(fix);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(tmpdir, sizeof tmpdir, "gge"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(tmpdir); }

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_types), cmocka_unit_test(test_spm_tokenizer)};
    return cmocka_run_group_tests(tests, setup, teardown);
}

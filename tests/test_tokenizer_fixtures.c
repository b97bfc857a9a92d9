/* Tokenizers against Hugging Face `tokenizers`: every text of tests/fixtures/tokenizer_corpus.jsonl must
 * give exactly HF's ids, and decode(ids) exactly HF's decode (fixtures: tools/gen_tokenizer_fixtures.py).
 * The older file sets (vocab.json+merges.txt, vocab.txt) must give the same ids as tokenizer.json. */
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
#include "ftc/tokenizer.h"
#include "lib/test_util.h"

static json_t *corpus;

/* All tok_<name>.N.jsonl chunks, concatenated. */
static json_t *load_fixture(const char *name) {
    json_t *all = json_array();
    for (int i = 0;; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tests/fixtures/tok_%s.%d.jsonl", ftc_test_src_dir(), name, i);
        if (!ftc_file_exists(p)) break;
        json_t *c = ftc_test_load_jsonl(p);
        if (!c) { json_decref(all); return NULL; }
        json_array_extend(all, c);
        json_decref(c);
    }
    if (!json_array_size(all)) { json_decref(all); return NULL; }
    return all;
}

static int setup(void **state) {
    (void)state;
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/fixtures/tokenizer_corpus.jsonl", ftc_test_src_dir());
    corpus = ftc_test_load_jsonl(p);
    return corpus ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    json_decref(corpus);
    return 0;
}

/* Compares one tokenizer with its fixture; returns the number of mismatching lines. */
static size_t check(const char *label, const ftc_tokenizer *t, json_t *fix, bool check_decode) {
    size_t lines = json_array_size(corpus), tokens = 0, bad_ids = 0, bad_dec = 0;
    assert_int_equal(json_array_size(fix), lines);
    ftc_ids ids = {0};
    for (size_t i = 0; i < lines; i++) {
        json_t *text = json_array_get(corpus, i), *want = json_array_get(json_array_get(fix, i), 0);
        const char *want_dec = json_string_value(json_array_get(json_array_get(fix, i), 1));
        ftc_err err;
        ids.n = 0;
        ftc_status st = ftc_tokenizer_encode(t, json_string_value(text), json_string_length(text), true, 0, &ids, &err);
        bool same = st == FTC_OK && ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        tokens += json_array_size(want);
        if (!same) {
            if (bad_ids++ < 5) {
                char *w = json_dumps(want, JSON_COMPACT), *tx = json_dumps(text, JSON_ENCODE_ANY);
                fprintf(stderr, "%s line %zu %s\n  want %s\n  got ", label, i + 1, tx, w);
                for (size_t k = 0; k < ids.n; k++) fprintf(stderr, "%d,", ids.ids[k]);
                fprintf(stderr, " %s\n", st ? err.msg : "");
                free(w);
                free(tx);
            }
            continue;
        }
        if (!check_decode) continue;
        char *dec = NULL;
        st = ftc_tokenizer_decode(t, ids.ids, ids.n, true, &dec, &err);
        if (st || strlen(dec) != strlen(want_dec) || strcmp(dec, want_dec)) {
            if (bad_dec++ < 5) {
                json_t *a = json_string(dec ? dec : ""), *b = json_string(want_dec);
                char *sa = json_dumps(a, JSON_ENCODE_ANY), *sb = json_dumps(b, JSON_ENCODE_ANY);
                fprintf(stderr, "%s line %zu decode\n  want %s\n  got  %s\n", label, i + 1, sb, sa ? sa : "(invalid)");
                free(sa); free(sb);
                json_decref(a); json_decref(b);
            }
        }
        free(dec);
    }
    ftc_ids_free(&ids);
    printf("%-28s lines %zu, tokens %zu, id mismatches %zu, decode mismatches %zu\n", label, lines, tokens, bad_ids,
           bad_dec);
    return bad_ids + bad_dec;
}

static void run_one(const char *name, const char *dir, bool legacy_too) {
    if (!dir || !ftc_is_dir(dir)) { printf("%s: directory absent, skipped\n", name); return; }
    json_t *fix = load_fixture(name);
    assert_non_null(fix);
    ftc_tokenizer *t;
    ftc_err err;
    char tj[4096];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    char *text;
    size_t len;
    assert_int_equal(ftc_read_file(tj, &text, &len, &err), FTC_OK);
    if (ftc_tokenizer_from_json(text, len, tj, &t, &err)) fail_msg("%s", err.msg);
    free(text);
    size_t bad = check(name, t, fix, true);
    ftc_tokenizer_free(t);
    if (legacy_too) {
        if (ftc_tokenizer_load_legacy(dir, &t, &err)) fail_msg("%s", err.msg);
        char label[128];
        snprintf(label, sizeof label, "%s (legacy files)", name);
        bad += check(label, t, fix, true);
        ftc_tokenizer_free(t);
    }
    json_decref(fix);
    assert_int_equal(bad, 0);
}

static char *data_path(const char *rel) {
    static char buf[8][4096];
    static int k;
    const char *d = getenv("FTC_SHARED_DATA");
    char *b = buf[k++ % 8];
    snprintf(b, 4096, "%s/%s", d ? d : "../shared/data", rel);
    return b;
}

static void test_gpt2(void **s) { (void)s; run_one("gpt2", data_path("tokenizers/gpt2"), true); }
static void test_bert(void **s) { (void)s; run_one("bert-base-uncased", data_path("tokenizers/bert-base-uncased"), true); }
static void test_minilm(void **s) {
    (void)s;
    const char *d = getenv("FTC_MINILM_DIR");
    if (!d || !*d) skip();
    run_one("minilm", d, true);
}
static void test_llama2(void **s) { (void)s; run_one("llama2", data_path("tokenizers/llama2"), false); }
static void test_stories(void **s) { (void)s; run_one("stories260K", data_path("models/stories260K-hf"), false); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),   cmocka_unit_test(test_bert),    cmocka_unit_test(test_minilm),
        cmocka_unit_test(test_llama2), cmocka_unit_test(test_stories),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

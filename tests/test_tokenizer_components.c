/* The tokenizer components the shared tokenizers do not use (NFD/NFKC/Strip/Replace-regex normalizers,
 * Split behaviours, Whitespace, Punctuation, Digits, Metaspace, Llama-3-style Split+ByteLevel, Bert/Roberta/
 * Template post-processors, Metaspace/Strip decoders, added tokens with lstrip/rstrip/single_word/normalized),
 * each swapped into a real tokenizer.json and compared with HF tokenizers (tools/gen_tokenizer_components.py).
 * Also: pairs, truncation, invalid UTF-8 and unsupported components. */
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

static ftc_tokenizer *load_base(const char *base, json_t *override, json_t *model_patch) {
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizers/%s/tokenizer.json", ftc_test_shared_dir(), base);
    json_t *root = json_load_file(p, 0, NULL);
    assert_non_null(root);
    const char *k;
    json_t *v;
    json_object_foreach(override, k, v) json_object_set(root, k, v);
    json_object_foreach(model_patch, k, v) json_object_set(json_object_get(root, "model"), k, v);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    ftc_tokenizer *t;
    ftc_err err;
    if (ftc_tokenizer_from_json(text, strlen(text), p, &t, &err)) fail_msg("%s", err.msg);
    free(text);
    return t;
}

static void run_case(const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/fixtures/tokcomp_%s.json", ftc_test_src_dir(), name);
    json_error_t je;
    json_t *fx = json_load_file(p, JSON_ALLOW_NUL, &je);
    if (!fx) fail_msg("%s: %s", p, je.text);
    ftc_tokenizer *t = load_base(json_string_value(json_object_get(fx, "base")), json_object_get(fx, "override"),
                                 json_object_get(fx, "model_patch"));
    json_t *lines = json_object_get(fx, "lines");
    size_t bad_ids = 0, bad_dec = 0, tokens = 0;
    ftc_ids ids = {0};
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *row = json_array_get(lines, i);
        json_t *text = json_array_get(corpus, (size_t)json_integer_value(json_array_get(row, 0)));
        json_t *want = json_array_get(row, 1);
        ftc_err err;
        ids.n = 0;
        ftc_status st = ftc_tokenizer_encode(t, json_string_value(text), json_string_length(text), true, 0, &ids, &err);
        bool same = !st && ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        tokens += json_array_size(want);
        if (!same) {
            if (bad_ids++ < 3) {
                char *w = json_dumps(want, JSON_COMPACT), *tx = json_dumps(text, JSON_ENCODE_ANY);
                fprintf(stderr, "%s: %s\n  want %s\n  got  ", name, tx, w);
                for (size_t k = 0; k < ids.n; k++) fprintf(stderr, "%d,", ids.ids[k]);
                fprintf(stderr, "%s\n", st ? err.msg : "");
                free(w); free(tx);
            }
            continue;
        }
        char *dec = NULL;
        const char *wd = json_string_value(json_array_get(row, 2));
        if (ftc_tokenizer_decode(t, ids.ids, ids.n, false, &dec, &err) || strcmp(dec, wd)) {
            if (bad_dec++ < 3) fprintf(stderr, "%s decode\n  want '%s'\n  got  '%s'\n", name, wd, dec ? dec : "");
        }
        free(dec);
    }
    printf("%-18s lines %zu, tokens %zu, id mismatches %zu, decode mismatches %zu\n", name, json_array_size(lines),
           tokens, bad_ids, bad_dec);
    ftc_ids_free(&ids);
    ftc_tokenizer_free(t);
    json_decref(fx);
    assert_int_equal(bad_ids + bad_dec, 0);
}

static void test_wordpiece(void **s) { (void)s; run_case("wordpiece"); }
static void test_wordpiece_split(void **s) { (void)s; run_case("wordpiece_split"); }
static void test_bytelevel_llama3(void **s) { (void)s; run_case("bytelevel_llama3"); }
static void test_bytelevel_prefix(void **s) { (void)s; run_case("bytelevel_prefix"); }
static void test_metaspace(void **s) { (void)s; run_case("metaspace"); }
static void test_metaspace_always(void **s) { (void)s; run_case("metaspace_always"); }

static ftc_tokenizer *load_dir(const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizers/%s", ftc_test_shared_dir(), name);
    ftc_tokenizer *t;
    ftc_err err;
    if (ftc_tokenizer_load(p, &t, &err)) fail_msg("%s", err.msg);
    return t;
}

/* BERT pair + truncation: the ids HF tokenizers gives for ("hello world", "second text") */
static void test_pair_and_truncation(void **s) {
    (void)s;
    ftc_tokenizer *t = load_dir("bert-base-uncased");
    ftc_ids ids = {0}, types = {0};
    ftc_err err;
    const char *a = "hello world", *b = "second text";
    assert_int_equal(ftc_tokenizer_encode_pair(t, a, strlen(a), b, strlen(b), 0, &ids, &types, &err), FTC_OK);
    int32_t want[] = {101, 7592, 2088, 102, 2117, 3793, 102}, wt[] = {0, 0, 0, 0, 1, 1, 1};
    assert_int_equal(ids.n, 7);
    assert_memory_equal(ids.ids, want, sizeof want);
    assert_memory_equal(types.ids, wt, sizeof wt);
    /* max_len 6 leaves 3 for the texts; HF's LongestFirst on equal lengths keeps 1 of the first, 2 of the second */
    ids.n = types.n = 0;
    assert_int_equal(ftc_tokenizer_encode_pair(t, a, strlen(a), b, strlen(b), 6, &ids, &types, &err), FTC_OK);
    int32_t want6[] = {101, 7592, 102, 2117, 3793, 102};
    assert_int_equal(ids.n, 6);
    assert_memory_equal(ids.ids, want6, sizeof want6);
    ids.n = 0;
    assert_int_equal(ftc_tokenizer_encode(t, a, strlen(a), true, 3, &ids, &err), FTC_OK);
    int32_t want3[] = {101, 7592, 102};
    assert_int_equal(ids.n, 3);
    assert_memory_equal(ids.ids, want3, sizeof want3);
    ftc_special_ids sp = ftc_tokenizer_special(t);
    assert_int_equal(sp.cls, 101);
    assert_int_equal(sp.sep, 102);
    assert_int_equal(sp.pad, 0);
    assert_int_equal(sp.mask, 103);
    assert_int_equal(sp.unk, 100);
    assert_true(ftc_tokenizer_is_special(t, 101));
    assert_false(ftc_tokenizer_is_special(t, 7592));
    assert_int_equal(ftc_tokenizer_vocab_size(t), 30522);
    assert_int_equal(ftc_tokenizer_token_to_id(t, "hello"), 7592);
    assert_string_equal(ftc_tokenizer_id_to_token(t, 7592), "hello");
    assert_null(ftc_tokenizer_id_to_token(t, 30522));
    ftc_ids_free(&ids);
    ftc_ids_free(&types);
    ftc_tokenizer_free(t);
}

static void test_invalid_utf8_and_decode_oddities(void **s) {
    (void)s;
    ftc_tokenizer *t = load_dir("gpt2");
    ftc_ids ids = {0};
    ftc_err err;
    assert_int_equal(ftc_tokenizer_encode(t, "ok\xff", 3, true, 0, &ids, &err), FTC_E_INPUT);
    assert_string_equal(err.msg, "invalid UTF-8 in the text at byte 2");
    assert_int_equal(ids.n, 0);
    assert_int_equal(ftc_tokenizer_encode(t, "a\xed\xa0\x80", 4, true, 0, &ids, &err), FTC_E_INPUT); /* surrogate */
    /* a lone byte token decodes to U+FFFD as Rust's from_utf8_lossy; unknown ids are dropped (HF) */
    int32_t part[] = {447, -3, 999999, 99};
    char *out;
    assert_int_equal(ftc_tokenizer_decode(t, part, 4, true, &out, &err), FTC_OK);
    assert_string_equal(out, "\xE2\x80\xA6"); /* HF: decode([447, 99]) = "…", decode([447]) = U+FFFD */
    free(out);
    assert_int_equal(ftc_tokenizer_decode(t, part, 1, true, &out, &err), FTC_OK);
    assert_string_equal(out, "\xEF\xBF\xBD");
    free(out);
    ftc_ids_free(&ids);
    ftc_tokenizer_free(t);
}

/* batch encode (threads) gives the same ids as one-by-one; an invalid text fails the batch, naming its index */
static void test_batch(void **s) {
    (void)s;
    ftc_tokenizer *t = load_dir("gpt2");
    size_t n = json_array_size(corpus);
    const char **texts = malloc(n * sizeof *texts);
    size_t *lens = malloc(n * sizeof *lens);
    ftc_ids *outs = calloc(n, sizeof *outs);
    for (size_t i = 0; i < n; i++) {
        texts[i] = json_string_value(json_array_get(corpus, i));
        lens[i] = json_string_length(json_array_get(corpus, i));
    }
    ftc_err err;
    assert_int_equal(ftc_tokenizer_encode_batch(t, texts, lens, n, true, 0, outs, 2, &err), FTC_OK);
    ftc_ids one = {0};
    for (size_t i = 0; i < n; i++) {
        one.n = 0;
        assert_int_equal(ftc_tokenizer_encode(t, texts[i], lens[i], true, 0, &one, &err), FTC_OK);
        assert_int_equal(one.n, outs[i].n);
        if (one.n) assert_memory_equal(one.ids, outs[i].ids, one.n * sizeof *one.ids);
    }
    texts[7] = "bad \xff";
    lens[7] = 5;
    assert_int_equal(ftc_tokenizer_encode_batch(t, texts, lens, n, true, 0, outs, 2, &err), FTC_E_INPUT);
    assert_string_equal(err.msg, "text 7: invalid UTF-8 in the text at byte 4");
    for (size_t i = 0; i < n; i++) ftc_ids_free(&outs[i]);
    ftc_ids_free(&one);
    free(outs); free(texts); free(lens);
    ftc_tokenizer_free(t);
}

/* ignore_merges (Llama 3): a pre-token found in the vocab is one token. Ids from HF tokenizers 0.23.3 for
 * "abc abcab" with vocab a b c ab bc abc and merges (a b), (b c): [3,2,3,2,3] without, [5,3,2,3] with. */
static void test_ignore_merges(void **s) {
    (void)s;
    for (int im = 0; im < 2; im++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,"
                 "\"bc\":4,\"abc\":5},\"merges\":[[\"a\",\"b\"],[\"b\",\"c\"]]},"
                 "\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"}}",
                 im ? "true" : "false");
        ftc_tokenizer *t;
        ftc_err err;
        if (ftc_tokenizer_from_json(json, strlen(json), "t.json", &t, &err)) fail_msg("%s", err.msg);
        ftc_ids ids = {0};
        assert_int_equal(ftc_tokenizer_encode(t, "abc abcab", 9, true, 0, &ids, &err), FTC_OK);
        int32_t without[] = {3, 2, 3, 2, 3}, with[] = {5, 3, 2, 3};
        assert_int_equal(ids.n, im ? 4 : 5);
        assert_memory_equal(ids.ids, im ? with : without, ids.n * sizeof *ids.ids);
        char *dec;
        assert_int_equal(ftc_tokenizer_decode(t, ids.ids, ids.n, true, &dec, &err), FTC_OK);
        assert_string_equal(dec, im ? "abc ab c ab" : "ab c ab c ab"); /* no decoder: tokens joined by spaces */
        free(dec);
        ftc_ids_free(&ids);
        ftc_tokenizer_free(t);
    }
}

static void test_unsupported_components(void **s) {
    (void)s;
    struct { const char *json, *msg; } cases[] = {
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "unsupported: model Unigram"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0},\"unk_token\":\"[UNK]\"},\"normalizer\":{\"type\":\"Precompiled\"}}",
         "unsupported: normalizer Precompiled"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0},\"unk_token\":\"[UNK]\"},\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}}",
         "unsupported: pre_tokenizer UnicodeScripts"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0},\"unk_token\":\"[UNK]\"},\"decoder\":{\"type\":\"CTC\"}}",
         "unsupported: decoder CTC"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"dropout\":0.1}}", "unsupported: BPE dropout"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", "merge 0 ('a' 'b') uses a token missing"},
        {"{\"model\":", "line 1 column"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ftc_tokenizer *t = NULL;
        ftc_err err;
        ftc_status st = ftc_tokenizer_from_json(cases[i].json, strlen(cases[i].json), "x.json", &t, &err);
        assert_int_not_equal(st, FTC_OK);
        assert_null(t);
        if (!strstr(err.msg, cases[i].msg)) fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordpiece),        cmocka_unit_test(test_wordpiece_split),
        cmocka_unit_test(test_bytelevel_llama3), cmocka_unit_test(test_bytelevel_prefix),
        cmocka_unit_test(test_metaspace),        cmocka_unit_test(test_metaspace_always),
        cmocka_unit_test(test_ignore_merges),
        cmocka_unit_test(test_pair_and_truncation), cmocka_unit_test(test_invalid_utf8_and_decode_oddities),
        cmocka_unit_test(test_unsupported_components), cmocka_unit_test(test_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

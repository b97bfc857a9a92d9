/* Task data through real tokenizers: token ids and loss labels of every chat template, prompt/completion and
 * classification truncation equal the fixtures made with transformers (apply_chat_template, offsets for the
 * labels; tools/gen_data_fixtures.py -> tests/fixtures/data/templates.json). */
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
#include "ftc/data.h"

static const char *shared(void) {
    const char *s = getenv("FTC_SHARED_DATA");
    return s ? s : "../shared/data";
}

static ftc_tokenizer *load_tok(const char *name) {
    const char *sub = !strcmp(name, "gpt2") ? "tokenizers/gpt2" : !strcmp(name, "llama2") ? "tokenizers/llama2"
                    : !strcmp(name, "stories260K") ? "models/stories260K-hf" : "tokenizers/bert-base-uncased";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", shared(), sub);
    if (!ftc_is_dir(dir)) return NULL;
    ftc_tokenizer *t;
    ftc_err e;
    if (ftc_tokenizer_load(dir, &t, &e) != FTC_OK) fail_msg("%s", e.msg);
    return t;
}

static void record_from_json(json_t *msgs, ftc_record *rec) {
    memset(rec, 0, sizeof *rec);
    rec->format = FTC_FMT_CHAT;
    rec->n_msgs = (int)json_array_size(msgs);
    rec->msgs = calloc((size_t)rec->n_msgs, sizeof *rec->msgs);
    for (int i = 0; i < rec->n_msgs; i++) {
        json_t *m = json_array_get(msgs, (size_t)i);
        const char *role = json_string_value(json_object_get(m, "role"));
        rec->msgs[i].role = !strcmp(role, "system") ? FTC_ROLE_SYSTEM : !strcmp(role, "user") ? FTC_ROLE_USER : FTC_ROLE_ASSISTANT;
        rec->msgs[i].content = strdup(json_string_value(json_object_get(m, "content")));
        json_t *w = json_object_get(m, "weight");
        rec->msgs[i].weight = w ? (int)json_integer_value(w) : 1;
    }
}

static void assert_ids(const int32_t *got, int n, json_t *want, const char *what) {
    if ((size_t)n != json_array_size(want)) fail_msg("%s: %d ids, want %zu", what, n, json_array_size(want));
    for (int i = 0; i < n; i++)
        if (got[i] != json_integer_value(json_array_get(want, (size_t)i)))
            fail_msg("%s: id %d is %d, want %lld", what, i, got[i], (long long)json_integer_value(json_array_get(want, (size_t)i)));
}

static void test_templates_ids_and_labels(void **state) {
    (void)state;
    json_error_t je;
    json_t *f = json_load_file("tests/fixtures/data/templates.json", 0, &je);
    assert_non_null(f);
    const char *toks[] = {"gpt2", "llama2", "stories260K"};
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        ftc_tokenizer *t = load_tok(toks[k]);
        if (!t) { json_decref(f); skip(); }
        ftc_data_encoder enc;
        ftc_data_encoder_from_tokenizer(t, &enc);
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(f, "cases"), i, c) {
            if (strcmp(json_string_value(json_object_get(c, "tokenizer")), toks[k])) continue;
            const char *tname = json_string_value(json_object_get(c, "template"));
            ftc_record rec;
            ftc_encode_opts o = {.task = FTC_TASK_CAUSAL_LM};
            ftc_err e;
            ftc_chat_template *tmpl = NULL;
            if (!strcmp(tname, "completion")) {
                memset(&rec, 0, sizeof rec);
                rec.format = FTC_FMT_COMPLETION;
                rec.prompt = strdup(json_string_value(json_object_get(c, "prompt")));
                rec.completion = strdup(json_string_value(json_object_get(c, "completion")));
            } else {
                assert_int_equal(ftc_chat_template_preset(tname, &tmpl, &e), FTC_OK);
                o.tmpl = tmpl;
                record_from_json(json_array_get(json_object_get(f, "conversations"),
                                                (size_t)json_integer_value(json_object_get(c, "conversation"))), &rec);
            }
            ftc_example ex;
            if (ftc_data_encode_record(&rec, &o, &enc, NULL, "fixture", &ex, NULL, &e) != FTC_OK) fail_msg("%s", e.msg);
            char what[128];
            snprintf(what, sizeof what, "%s/%s/%zu ids", toks[k], tname, i);
            assert_ids(ex.ids, ex.len, json_object_get(c, "ids"), what);
            snprintf(what, sizeof what, "%s/%s/%zu labels", toks[k], tname, i);
            assert_ids(ex.labels, ex.len, json_object_get(c, "labels"), what);
            ftc_example_free(&ex);
            ftc_record_clear(&rec);
            ftc_chat_template_free(tmpl);
            checked++;
        }
        ftc_tokenizer_free(t);
    }
    assert_int_equal(checked, 51);
    json_decref(f);
}

static void test_classify_truncation_as_transformers(void **state) {
    (void)state;
    ftc_tokenizer *t = load_tok("bert");
    if (!t) skip();
    ftc_data_encoder enc;
    ftc_data_encoder_from_tokenizer(t, &enc);
    json_error_t je;
    json_t *f = json_load_file("tests/fixtures/data/templates.json", 0, &je);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(f, "classify"), i, c) {
        ftc_record rec = {.format = FTC_FMT_LABEL, .text = (char *)json_string_value(json_object_get(c, "text")),
                          .label = "x"};
        const char *keys[] = {"ids", "right8", "left8"};
        for (int k = 0; k < 3; k++) {
            ftc_encode_opts o = {.task = FTC_TASK_CLASSIFY, .max_len = k ? 8 : 0,
                                 .truncation = k == 2 ? FTC_TRUNC_LEFT : FTC_TRUNC_RIGHT};
            ftc_example ex;
            ftc_err e;
            if (ftc_data_encode_record(&rec, &o, &enc, NULL, "fixture", &ex, NULL, &e) != FTC_OK) fail_msg("%s", e.msg);
            assert_ids(ex.ids, ex.len, json_object_get(c, keys[k]), keys[k]);
            ftc_example_free(&ex);
        }
    }
    json_decref(f);
    ftc_tokenizer_free(t);
}

static void test_text_pairs_as_transformers(void **state) {
    (void)state;
    ftc_tokenizer *t = load_tok("bert");
    if (!t) skip();
    ftc_data_encoder enc;
    ftc_data_encoder_from_tokenizer(t, &enc);
    json_error_t je;
    json_t *f = json_load_file("tests/fixtures/data/templates.json", 0, &je);
    size_t i;
    json_t *c;
    int n = 0;
    json_array_foreach(json_object_get(f, "pairs"), i, c) {
        ftc_record rec = {.format = FTC_FMT_LABEL, .text = (char *)json_string_value(json_object_get(c, "text")),
                          .text_pair = (char *)json_string_value(json_object_get(c, "text_pair")), .label = "x"};
        for (int k = 0; k < 2; k++) {
            ftc_encode_opts o = {.task = FTC_TASK_CLASSIFY, .max_len = k ? 12 : 0};
            ftc_example ex;
            ftc_err e;
            bool cut;
            if (ftc_data_encode_record(&rec, &o, &enc, NULL, "fixture", &ex, &cut, &e) != FTC_OK) fail_msg("%s", e.msg);
            assert_ids(ex.ids, ex.len, json_object_get(c, k ? "ids12" : "ids"), "pair ids");
            assert_ids(ex.type_ids, ex.len, json_object_get(c, k ? "type_ids12" : "type_ids"), "pair type ids");
            if (k) assert_int_equal(cut, json_array_size(json_object_get(c, "ids")) > 12);
            ftc_example_free(&ex);
            n++;
        }
    }
    assert_int_equal(n, 4);
    json_decref(f);
    ftc_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates_ids_and_labels),
        cmocka_unit_test(test_classify_truncation_as_transformers),
        cmocka_unit_test(test_text_pairs_as_transformers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

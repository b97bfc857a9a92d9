/* The Jinja interpreter against Python's jinja2 in transformers' chat-template environment
 * (tools/gen_template_fixtures.py -> tests/fixtures/jinja/):
 *   - every real model template x every conversation x add_generation_prompt renders byte-identical text,
 *     or fails where Python raised, and {% generation %} spans match transformers' character offsets;
 *   - small snippets, one language feature each, render identically (or fail where Python fails);
 *   - errors name the template, line and column; runaway templates stop at the step and size limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/data.h"
#include "ftc/jinja.h"
#include "ftc/tokenizer.h"

#define FX "tests/fixtures/jinja"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* characters in s[0..n) (the fixtures count Python str offsets) */
static size_t chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Renders one fixture case; returns true when it matches. why gets a short description otherwise. */
static bool check_case(const ftc_jinja *t, json_t *vars, json_t *c, int64_t now, char *why, size_t why_n) {
    ftc_jinja_opts o = {.now = now};
    ftc_jinja_output out;
    ftc_err e;
    ftc_status s = ftc_jinja_render(t, vars, &o, &out, &e);
    json_t *want = json_object_get(c, "text");
    if (!want) {
        if (s == FTC_OK) {
            snprintf(why, why_n, "Python raised (%s) but ftc rendered %.80s", json_string_value(json_object_get(c, "error")), out.text);
            ftc_jinja_output_free(&out);
            return false;
        }
        return true;
    }
    if (s != FTC_OK) {
        snprintf(why, why_n, "ftc failed: %.300s", e.msg);
        return false;
    }
    bool ok = out.len == json_string_length(want) && !memcmp(out.text, json_string_value(want), out.len);
    if (!ok) {
        size_t i = 0, wl = json_string_length(want);
        const char *w = json_string_value(want);
        while (i < out.len && i < wl && out.text[i] == w[i]) i++;
        snprintf(why, why_n, "differs at byte %zu: want \"%.60s\" got \"%.60s\"", i, w + i, out.text + i);
    }
    json_t *gen = json_object_get(c, "generation");
    size_t ng = gen ? json_array_size(gen) : 0;
    if (ok && (size_t)out.n_gen != ng) {
        snprintf(why, why_n, "%d generation spans, want %zu", out.n_gen, ng);
        ok = false;
    }
    for (size_t k = 0; ok && k < ng; k++) {
        json_t *span = json_array_get(gen, k);
        size_t a = chars(out.text, out.gen[k].start), b = chars(out.text, out.gen[k].end);
        if ((json_int_t)a != json_integer_value(json_array_get(span, 0)) ||
            (json_int_t)b != json_integer_value(json_array_get(span, 1))) {
            snprintf(why, why_n, "generation span %zu is [%zu, %zu), want [%lld, %lld)", k, a, b,
                     (long long)json_integer_value(json_array_get(span, 0)), (long long)json_integer_value(json_array_get(span, 1)));
            ok = false;
        }
    }
    ftc_jinja_output_free(&out);
    return ok;
}

/* The table the issue asks for: per template, renders compared and mismatches. */
static void test_real_templates(void **state) {
    (void)state;
    json_error_t je;
    json_t *convs = json_load_file(FX "/conversations.json", 0, &je);
    assert_non_null(convs);
    DIR *d = opendir(FX "/renders");
    assert_non_null(d);
    char *names[512];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512)
        if (strstr(de->d_name, ".json")) names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    int total = 0, mismatches = 0, raised = 0, templates = 0;
    printf("%-52s %7s %6s %10s\n", "template", "renders", "raise", "mismatches");
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, FX "/renders/%s", names[i]);
        json_t *f = json_load_file(path, 0, &je);
        assert_non_null(f);
        const char *name = json_string_value(json_object_get(f, "template"));
        snprintf(path, sizeof path, FX "/templates/%s.jinja", name);
        size_t len = 0;
        char *src = read_file(path, &len);
        assert_non_null(src);
        ftc_jinja *t;
        ftc_err e;
        if (ftc_jinja_compile(name, src, len, &t, &e) != FTC_OK) fail_msg("%s", e.msg);
        int64_t now = json_integer_value(json_object_get(f, "now"));
        json_t *special = json_object_get(f, "special_tokens");
        int bad = 0, cases = 0, err_cases = 0;
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(f, "cases"), k, c) {
            json_t *conv = json_array_get(convs, (size_t)json_integer_value(json_object_get(c, "conversation")));
            json_t *vars = json_object();
            if (json_object_get(c, "vars")) { /* a template's own example variables, as they were passed */
                json_object_update(vars, json_object_get(c, "vars"));
                conv = NULL;
            }
            if (conv) {
                json_object_set(vars, "messages", json_object_get(conv, "seen"));
                json_t *tools = json_object_get(conv, "tools");
                json_object_set_new(vars, "tools", tools ? json_incref(tools) : json_null());
                json_object_set_new(vars, "documents", json_null());
                json_object_set(vars, "add_generation_prompt", json_object_get(c, "add_generation_prompt"));
                json_object_update(vars, special);
                json_t *kw = json_object_get(conv, "kwargs");
                if (kw) json_object_update(vars, kw);
            }
            char why[400];
            if (!check_case(t, vars, c, now, why, sizeof why)) {
                bad++;
                printf("  MISMATCH %s case %zu: %s\n", name, k, why);
            }
            err_cases += json_object_get(c, "error") != NULL;
            cases++;
            json_decref(vars);
        }
        printf("%-52s %7d %6d %10d\n", name, cases, err_cases, bad);
        total += cases, mismatches += bad, raised += err_cases, templates++;
        ftc_jinja_free(t);
        free(src);
        json_decref(f);
        free(names[i]);
    }
    printf("%-52s %7d %6d %10d\n", "TOTAL", total, raised, mismatches);
    printf("%d templates x %zu conversations x add_generation_prompt on/off, and the templates' own example "
           "variables\n", templates, json_array_size(convs));
    json_decref(convs);
    assert_true(templates >= 20);
    assert_int_equal(mismatches, 0);
}

static void test_snippets(void **state) {
    (void)state;
    json_error_t je;
    json_t *f = json_load_file(FX "/snippets.json", 0, &je);
    assert_non_null(f);
    json_t *vars = json_object_get(f, "vars");
    int64_t now = json_integer_value(json_object_get(f, "now"));
    int bad = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(f, "cases"), i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        ftc_jinja *t;
        ftc_err e;
        char why[400];
        if (ftc_jinja_compile("snippet", src, strlen(src), &t, &e) != FTC_OK) {
            if (json_object_get(c, "text")) {
                printf("  snippet %zu: %s\n    ftc cannot compile it: %s\n", i, src, e.msg);
                bad++;
            }
            continue;
        }
        if (!check_case(t, vars, c, now, why, sizeof why)) {
            printf("  snippet %zu: %s\n    %s\n", i, src, why);
            bad++;
        }
        ftc_jinja_free(t);
    }
    printf("%zu snippets, %d mismatches\n", json_array_size(json_object_get(f, "cases")), bad);
    json_decref(f);
    assert_int_equal(bad, 0);
}

static void expect_error(const char *src, const char *vars_json, const char *want) {
    ftc_jinja *t;
    ftc_err e;
    ftc_status s = ftc_jinja_compile("tpl", src, strlen(src), &t, &e);
    if (s == FTC_OK) {
        json_t *vars = json_loads(vars_json, 0, NULL);
        ftc_jinja_output out;
        ftc_jinja_opts o = {.max_steps = 100000, .max_output = 1 << 20};
        s = ftc_jinja_render(t, vars, &o, &out, &e);
        if (s == FTC_OK) ftc_jinja_output_free(&out);
        json_decref(vars);
        ftc_jinja_free(t);
    }
    assert_int_equal(s, FTC_E_INPUT);
    if (strcmp(e.msg, want)) fail_msg("error \"%s\", want \"%s\"", e.msg, want);
}

static void test_errors_name_line_and_column(void **state) {
    (void)state;
    expect_error("Hello\n{% if x %}\n  {% foo %}\n{% endif %}", "{}", "tpl:3:6: Encountered unknown tag 'foo'.");
    expect_error("a\n  {{ messages[0].role.x.y }}", "{\"messages\": [{\"role\": \"user\"}]}", "tpl:2:24: 'str object' has no attribute 'x'");
    expect_error("{% for m in messages %}\n{{ raise_exception('roles must alternate') }}{% endfor %}",
                 "{\"messages\": [1]}", "tpl:2:4: roles must alternate");
    expect_error("{{ 'a' + 1 }}", "{}", "tpl:1:8: can only concatenate str (not \"int\") to str");
    expect_error("{% for x in y %}", "{}", "tpl:1:17: Unexpected end of template. Jinja was looking for the following tags: 'endfor' or 'else'.");
    expect_error("{{ x | nofilter }}", "{}", "tpl:1:8: No filter named 'nofilter'.");
    expect_error("{{ 'unclosed }}", "{}", "tpl:1:4: unexpected char ''' at 3 (a string that is not closed)");
    expect_error("{{ x }", "{}", "tpl:1:6: unexpected '}'");
    expect_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{}", "tpl:1:19: maximum recursion depth exceeded in macro 'f'");
    expect_error("{% for i in range(100) %}{% for j in range(100) %}{% for k in range(100) %}{% endfor %}{% endfor %}{% endfor %}",
                 "{}", "tpl:1:54: the template ran for more than 100000 steps (a runaway loop?)");
    expect_error("{{ 'x' * 10000000 }}", "{}", "tpl:1:8: a string would pass 1048576 bytes");
    expect_error("{{ range(1000000) }}", "{}", "tpl:1:4: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    expect_error("{{ [].append(1) }}", "{}", "tpl:1:6: access to attribute 'append' of 'list' object is unsafe.");
    expect_error("{% set ns = namespace() %}{% set ns._x = 1 %}", "{}",
                 "tpl:1:34: Chat templates cannot store underscore-prefixed attributes on a namespace, but got '_x'. Please rename the attribute.");
    char bad[] = "ok \xff";
    ftc_jinja *t;
    ftc_err e;
    assert_int_equal(ftc_jinja_compile("bad", bad, sizeof bad - 1, &t, &e), FTC_E_INPUT);
    assert_string_equal(e.msg, "bad:1: invalid UTF-8 at byte 3; a template must be UTF-8 text");
}

/* Tokens and mask of one rendering against transformers' input_ids and assistant_masks; returns mismatching
 * tokens (ids that differ count as all). */
static int compare_mask(const ftc_chat_template *t, json_t *msgs, const char *bos, const char *eos, int64_t now,
                        const ftc_data_encoder *enc, json_t *c, int *trained) {
    ftc_rendered r;
    ftc_err e;
    ftc_render_opts o = {.bos = bos, .eos = eos, .now = now};
    if (ftc_template_render_messages(t, msgs, &o, &r, &e) != FTC_OK) fail_msg("%s", e.msg);
    ftc_example ex;
    if (ftc_data_encode_rendered(&r, false, enc, &ex, &e) != FTC_OK) fail_msg("%s", e.msg);
    json_t *ids = json_object_get(c, "ids"), *mask = json_object_get(c, "mask");
    int bad = 0;
    *trained = 0;
    if ((size_t)ex.len != json_array_size(ids)) {
        bad = ex.len > (int)json_array_size(ids) ? ex.len : (int)json_array_size(ids);
    } else {
        for (int i = 0; i < ex.len; i++) {
            bool want = json_integer_value(json_array_get(mask, (size_t)i)) != 0, got = ex.labels[i] != -100;
            bad += ex.ids[i] != json_integer_value(json_array_get(ids, (size_t)i)) || want != got;
            *trained += got;
        }
    }
    ftc_example_free(&ex);
    ftc_rendered_free(&r);
    return bad;
}

/* The loss mask against transformers' return_assistant_tokens_mask (tools/gen_template_fixtures.py): for templates
 * with {% generation %} blocks, and for presets whose answers are marked that way: the unmarked preset, where ftc
 * finds the answers from renders of message prefixes, must give the same mask. */
static void test_masks_as_transformers(void **state) {
    (void)state;
    const char *sh = getenv("FTC_SHARED_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizers/gpt2", sh ? sh : "../shared/data");
    if (!ftc_is_dir(dir)) skip();
    json_error_t je;
    json_t *f = json_load_file(FX "/masks.json", 0, &je), *convs = json_load_file(FX "/conversations.json", 0, &je);
    assert_non_null(f);
    assert_non_null(convs);
    int cases = 0, bad_total = 0;
    int64_t now = json_integer_value(json_object_get(f, "now"));
    ftc_tokenizer *tok = NULL;
    const char *last_name = NULL;
    printf("%-8s %-28s %-6s %7s %8s %9s\n", "tokenizer", "template", "conv", "tokens", "trained", "mismatch");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(f, "cases"), i, c) {
        const char *tname = json_string_value(json_object_get(c, "tokenizer"));
        const char *name = json_string_value(json_object_get(c, "template"));
        ftc_err e;
        if (!last_name || strcmp(last_name, tname)) { /* the cases come grouped by tokenizer */
            ftc_tokenizer_free(tok);
            snprintf(dir, sizeof dir, "%s/tokenizers/%s", sh ? sh : "../shared/data", tname);
            if (ftc_tokenizer_load(dir, &tok, &e) != FTC_OK) fail_msg("%s", e.msg);
            last_name = tname;
        }
        ftc_data_encoder enc;
        ftc_data_encoder_from_tokenizer(tok, &enc);
        json_t *be = json_object_get(json_object_get(f, "bos_eos"), tname);
        const char *bos = json_string_value(json_array_get(be, 0)), *eos = json_string_value(json_array_get(be, 1));
        json_t *conv = json_array_get(convs, (size_t)json_integer_value(json_object_get(c, "conversation")));
        json_t *msgs = json_object_get(conv, "messages");
        ftc_chat_template *t;
        json_t *marked = json_object_get(c, "marked_source");
        if (marked) {
            assert_int_equal(ftc_chat_template_from_text(name, json_string_value(marked), json_string_length(marked), &t, &e), FTC_OK);
        } else {
            char path[512];
            size_t len = 0;
            snprintf(path, sizeof path, FX "/templates/%s.jinja", name);
            char *src = read_file(path, &len);
            assert_int_equal(ftc_chat_template_from_text(name, src, len, &t, &e), FTC_OK);
            free(src);
        }
        int trained, bad = compare_mask(t, msgs, bos, eos, now, &enc, c, &trained);
        long long conv_i = (long long)json_integer_value(json_object_get(c, "conversation"));
        printf("%-8s %-28s %-6lld %7zu %8d %9d\n", tname, name, conv_i, json_array_size(json_object_get(c, "ids")), trained, bad);
        bad_total += bad;
        cases++;
        ftc_chat_template_free(t);
        const char *preset = json_string_value(json_object_get(c, "unmarked_preset"));
        if (preset) { /* the same answers found without the blocks */
            assert_int_equal(ftc_chat_template_preset(preset, &t, &e), FTC_OK);
            bad = compare_mask(t, msgs, bos, eos, now, &enc, c, &trained);
            printf("%-8s %-28s %-6lld %7zu %8d %9d\n", tname, preset, conv_i, json_array_size(json_object_get(c, "ids")),
                   trained, bad);
            bad_total += bad;
            cases++;
            ftc_chat_template_free(t);
        }
    }
    ftc_tokenizer_free(tok);
    printf("%d renders, %d tokens whose mask differs from transformers'\n", cases, bad_total);
    json_decref(f);
    json_decref(convs);
    assert_int_equal(bad_total, 0);
}

/* Masks for any template: every real template that renders a conversation with answers (as Python did) gives
 * a mask through the chat-template layer, and each trained piece holds an answer's content. */
static void test_masks_for_every_template(void **state) {
    (void)state;
    json_error_t je;
    json_t *convs = json_load_file(FX "/conversations.json", 0, &je);
    DIR *d = opendir(FX "/renders");
    assert_non_null(d);
    struct dirent *de;
    int templates = 0, renders = 0, answers = 0, failed = 0;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".json")) continue;
        char path[512];
        snprintf(path, sizeof path, FX "/renders/%s", de->d_name);
        json_t *f = json_load_file(path, 0, &je);
        const char *name = json_string_value(json_object_get(f, "template"));
        if (strstr(name, "Llama-Guard")) { /* a safety classifier's prompt: the conversation is its input, no answers */
            json_decref(f);
            continue;
        }
        snprintf(path, sizeof path, FX "/templates/%s.jinja", name);
        size_t len = 0;
        char *src = read_file(path, &len);
        ftc_chat_template *t;
        ftc_err e;
        assert_int_equal(ftc_chat_template_from_text(name, src, len, &t, &e), FTC_OK);
        json_t *special = json_object_get(f, "special_tokens");
        size_t k;
        json_t *c;
        bool any = false;
        json_array_foreach(json_object_get(f, "cases"), k, c) {
            if (!json_object_get(c, "text") || json_is_true(json_object_get(c, "add_generation_prompt")) ||
                json_object_get(c, "vars"))
                continue;
            json_t *conv = json_array_get(convs, (size_t)json_integer_value(json_object_get(c, "conversation")));
            json_t *msgs = json_object_get(conv, "messages"), *vars = json_deep_copy(special);
            if (json_object_get(conv, "tools")) json_object_set(vars, "tools", json_object_get(conv, "tools"));
            if (json_object_get(conv, "kwargs")) json_object_update(vars, json_object_get(conv, "kwargs"));
            ftc_render_opts o = {.vars = vars, .now = json_integer_value(json_object_get(f, "now"))};
            ftc_rendered r;
            if (ftc_template_render_messages(t, msgs, &o, &r, &e) != FTC_OK) {
                printf("  %s conversation %zu: %s\n", name, k / 2, e.msg);
                failed++;
                json_decref(vars);
                continue;
            }
            assert_string_equal(r.text, json_string_value(json_object_get(c, "text")));
            size_t m;
            json_t *msg;
            json_array_foreach(msgs, m, msg) {
                const char *content = json_string_value(json_object_get(msg, "content"));
                if (strcmp(json_string_value(json_object_get(msg, "role")), "assistant") || !content || !content[0]) continue;
                /* the answer's last word, in a trained piece */
                const char *w = content + strlen(content);
                while (w > content && (w[-1] == ' ' || w[-1] == '\n')) w--;
                const char *wend = w;
                while (w > content && w[-1] != ' ' && w[-1] != '\n') w--;
                bool in = false;
                for (int p = 0; p < r.n && !in; p++) {
                    if (!r.trained[p]) continue;
                    size_t a = r.starts[p], b = p + 1 < r.n ? r.starts[p + 1] : r.len;
                    for (size_t x = a; x + (size_t)(wend - w) <= b && !in; x++) in = !memcmp(r.text + x, w, (size_t)(wend - w));
                }
                if (!in) {
                    printf("  %s conversation %zu: \"%.*s\" is not trained\n", name, k / 2, (int)(wend - w), w);
                    failed++;
                }
                answers++;
            }
            ftc_rendered_free(&r);
            json_decref(vars);
            renders++;
            any = true;
        }
        templates += any;
        ftc_chat_template_free(t);
        free(src);
        json_decref(f);
    }
    closedir(d);
    json_decref(convs);
    printf("%d templates, %d conversations rendered with masks, %d answers trained, %d failures\n", templates, renders,
           answers, failed);
    assert_int_equal(failed, 0);
}

/* What ftc chat stops at: the end-of-turn each template writes after an answer, found by a probe render. */
static void test_end_of_turn(void **state) {
    (void)state;
    static const struct {
        const char *tmpl, *bos, *eos, *want; /* tmpl: a preset or a fixture template */
    } cases[] = {
        {"chatml", "<s>", "</s>", "<|im_end|>"},
        {"llama3", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>"},
        {"llama2", "<s>", "</s>", "</s>"},
        {"zephyr", "<s>", "</s>", "</s>"},
        {"plain", "<s>", "</s>", "</s>"},
        {"HuggingFaceTB-SmolLM2-135M-Instruct", "<|im_start|>", "<|im_end|>", "<|im_end|>"},
        {"google-gemma-2-2b-it", "<bos>", "<eos>", "<end_of_turn>"},
        {"microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", "<|end|>"},
        {"mistralai-Mixtral-8x7B-Instruct-v0.1", "<s>", "</s>", "</s>"},
        {"meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>"},
        {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>"},
        {"CohereForAI-c4ai-command-r-plus", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>"},
        {"upstage-SOLAR-10.7B-Instruct-v1.0", "<s>", "</s>", NULL}, /* writes nothing after an answer */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ftc_chat_template *t;
        ftc_err e;
        if (ftc_chat_template_preset_source(cases[i].tmpl)) {
            assert_int_equal(ftc_chat_template_preset(cases[i].tmpl, &t, &e), FTC_OK);
        } else {
            char path[512];
            size_t len = 0;
            snprintf(path, sizeof path, FX "/templates/%s.jinja", cases[i].tmpl);
            char *src = read_file(path, &len);
            assert_non_null(src);
            assert_int_equal(ftc_chat_template_from_text(cases[i].tmpl, src, len, &t, &e), FTC_OK);
            free(src);
        }
        ftc_render_opts o = {.bos = cases[i].bos, .eos = cases[i].eos};
        char *eot = NULL;
        assert_int_equal(ftc_chat_template_end_of_turn(t, &o, &eot, &e), FTC_OK);
        if (cases[i].want) {
            if (!eot || strcmp(eot, cases[i].want)) fail_msg("%s: end of turn %s, want %s", cases[i].tmpl, eot ? eot : "(none)", cases[i].want);
        } else {
            assert_null(eot);
        }
        free(eot);
        ftc_chat_template_free(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snippets),
        cmocka_unit_test(test_real_templates),
        cmocka_unit_test(test_errors_name_line_and_column),
        cmocka_unit_test(test_masks_as_transformers),
        cmocka_unit_test(test_end_of_turn),
        cmocka_unit_test(test_masks_for_every_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

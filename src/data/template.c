/* Chat templates, rendered in C exactly as the official Jinja templates render them with transformers'
 * apply_chat_template (trim_blocks, lstrip_blocks), in pieces marked trained or not:
 *   chatml  <|im_start|>{role}\n{content}<|im_end|>\n                      trained: content<|im_end|>
 *   llama3  [bos]<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>   trained: content<|eot_id|>
 *   llama2  {bos}[INST] [<<SYS>>\n{system}\n<</SYS>>\n\n]{user} [/INST] {answer} {eos}  trained: " answer eos"
 *   zephyr  <|{role}|>\n{content}{eos}\n                                    trained: content{eos}
 *   plain   [{system}\n\n]### Question:\n{user}\n\n### Answer:\n{answer}{eos}[\n\n...]  trained: answer{eos}
 * The Jinja sources below are the templates as published with the models (chatml as in transformers'
 * docs, Llama-3-8B-Instruct, Llama-2-7b-chat-hf, zephyr-7b-beta); they are used to recognise a model's
 * tokenizer_config.json "chat_template", never executed. */
#include "data_internal.h"
#include "ftc/base.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const JINJA_CHATML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char *const JINJA_LLAMA3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
static const char *const JINJA_LLAMA2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
static const char *const JINJA_ZEPHYR =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% "
    "elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif "
    "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

static const char *const NAMES[] = {"none", "chatml", "llama3", "llama2", "zephyr", "plain"};

const char *ftc_template_name(ftc_template t) { return (unsigned)t < 6 ? NAMES[t] : "?"; }

ftc_status ftc_template_parse(const char *s, ftc_template *out, ftc_err *err) {
    for (int i = 1; i < 6; i++)
        if (!strcmp(s, NAMES[i])) { *out = (ftc_template)i; return FTC_OK; }
    return ftc_errf(err, FTC_E_USAGE, "unknown chat template '%s' (use chatml, llama3, llama2, zephyr or plain)", s);
}

const char *ftc_template_jinja(ftc_template t) {
    switch (t) {
    case FTC_TEMPLATE_CHATML: return JINJA_CHATML;
    case FTC_TEMPLATE_LLAMA3: return JINJA_LLAMA3;
    case FTC_TEMPLATE_LLAMA2: return JINJA_LLAMA2;
    case FTC_TEMPLATE_ZEPHYR: return JINJA_ZEPHYR;
    default: return NULL;
    }
}

/* Equal when the texts match after dropping all whitespace (templates differ in indentation and line breaks
 * that trim_blocks removes anyway). Whitespace inside string literals is written as \n escapes in the known
 * templates except zephyr's, whose literal line breaks are significant, hence the exact check first. */
static bool same_template(const char *a, const char *b) {
    if (!strcmp(a, b)) return true;
    for (;;) {
        while (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r') a++;
        while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r') b++;
        if (!*a || !*b) return !*a && !*b;
        if (*a++ != *b++) return false;
    }
}

ftc_status ftc_template_from_model_dir(const char *dir, ftc_template *out, bool *unknown, ftc_err *err) {
    *out = FTC_TEMPLATE_NONE;
    if (unknown) *unknown = false;
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!ftc_file_exists(path)) return FTC_OK;
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    if (!cfg) return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: not valid JSON: %s", path, je.line, je.column, je.text);
    json_t *t = json_object_get(cfg, "chat_template");
    const char *src = json_is_string(t) ? json_string_value(t) : NULL;
    /* a list of named templates: the one called "default" */
    if (json_is_array(t)) {
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) {
            json_t *name = json_object_get(v, "name");
            if (json_is_string(name) && !strcmp(json_string_value(name), "default") &&
                json_is_string(json_object_get(v, "template")))
                src = json_string_value(json_object_get(v, "template"));
        }
    }
    if (src) {
        for (int i = FTC_TEMPLATE_CHATML; i <= FTC_TEMPLATE_ZEPHYR; i++)
            if (same_template(src, ftc_template_jinja((ftc_template)i))) *out = (ftc_template)i;
        if (*out == FTC_TEMPLATE_NONE && unknown) *unknown = true;
    }
    json_decref(cfg);
    return FTC_OK;
}

/* ---- rendering ---- */
typedef struct {
    ftc_rendered *r;
    size_t cap;
    int piece_cap;
    bool all_trained;
    bool oom;
} builder;

static void put(builder *b, const char *s, size_t n, bool trained) {
    if (b->oom || n == 0) return;
    ftc_rendered *r = b->r;
    trained = trained || b->all_trained;
    if (r->n == 0 || r->trained[r->n - 1] != trained) { /* a new piece */
        if (r->n == b->piece_cap) {
            int cap = b->piece_cap ? 2 * b->piece_cap : 8;
            size_t *st = realloc(r->starts, (size_t)cap * sizeof *st);
            if (st) r->starts = st;
            bool *tr = realloc(r->trained, (size_t)cap * sizeof *tr);
            if (tr) r->trained = tr;
            if (!st || !tr) { b->oom = true; return; }
            b->piece_cap = cap;
        }
        r->starts[r->n] = r->len;
        r->trained[r->n] = trained;
        r->n++;
    }
    if (r->len + n + 1 > b->cap) {
        size_t cap = (r->len + n + 1) * 2;
        char *t = realloc(r->text, cap);
        if (!t) { b->oom = true; return; }
        r->text = t;
        b->cap = cap;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
}
static void puts_(builder *b, const char *s, bool trained) { put(b, s, strlen(s), trained); }

/* Python's str.strip() for the ASCII whitespace the templates meet in practice. */
static void stripped(const char *s, const char **start, size_t *n) {
    const char *e = s + strlen(s);
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\f' || e[-1] == '\v'))
        e--;
    *start = s;
    *n = (size_t)(e - s);
}

static const char *role_name(ftc_role r) {
    return r == FTC_ROLE_SYSTEM ? "system" : r == FTC_ROLE_USER ? "user" : "assistant";
}

void ftc_rendered_free(ftc_rendered *r) {
    free(r->text);
    free(r->starts);
    free(r->trained);
    memset(r, 0, sizeof *r);
}

static ftc_status render_chat(ftc_template t, const ftc_record *rec, const char *bos, const char *eos, builder *b,
                              ftc_err *err) {
    const ftc_chat_msg *m = rec->msgs;
    int n = rec->n_msgs;
    switch (t) {
    case FTC_TEMPLATE_CHATML:
        for (int i = 0; i < n; i++) {
            bool train = m[i].role == FTC_ROLE_ASSISTANT && m[i].weight;
            puts_(b, "<|im_start|>", false);
            puts_(b, role_name(m[i].role), false);
            puts_(b, "\n", false);
            puts_(b, m[i].content, train);
            puts_(b, "<|im_end|>", train);
            puts_(b, "\n", false);
        }
        return FTC_OK;
    case FTC_TEMPLATE_LLAMA3:
        for (int i = 0; i < n; i++) {
            bool train = m[i].role == FTC_ROLE_ASSISTANT && m[i].weight;
            const char *s;
            size_t len;
            stripped(m[i].content, &s, &len);
            if (i == 0) puts_(b, bos, false);
            puts_(b, "<|start_header_id|>", false);
            puts_(b, role_name(m[i].role), false);
            puts_(b, "<|end_header_id|>\n\n", false);
            put(b, s, len, train);
            puts_(b, "<|eot_id|>", train);
        }
        return FTC_OK;
    case FTC_TEMPLATE_LLAMA2: {
        int first = 0;
        const char *system = NULL;
        if (n && m[0].role == FTC_ROLE_SYSTEM) { system = m[0].content; first = 1; }
        for (int i = first; i < n; i++) {
            bool want_user = (i - first) % 2 == 0;
            if ((m[i].role == FTC_ROLE_USER) != want_user || m[i].role == FTC_ROLE_SYSTEM)
                return ftc_errf(err, FTC_E_INPUT,
                                "messages[%d]: the llama2 template needs roles alternating user/assistant/... after an "
                                "optional first system message",
                                i);
            const char *s;
            size_t len;
            if (m[i].role == FTC_ROLE_USER) {
                puts_(b, bos, false);
                puts_(b, "[INST] ", false);
                if (i == first && system) {
                    /* ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content).strip(): only the end of the user
                     * content is trimmed */
                    puts_(b, "<<SYS>>\n", false);
                    puts_(b, system, false);
                    puts_(b, "\n<</SYS>>\n\n", false);
                    const char *u = m[i].content;
                    stripped(u, &s, &len);
                    put(b, u, (size_t)(s - u) + len, false);
                } else {
                    stripped(m[i].content, &s, &len);
                    put(b, s, len, false);
                }
                puts_(b, " [/INST]", false);
            } else {
                bool train = m[i].weight != 0;
                stripped(m[i].content, &s, &len);
                puts_(b, " ", train);
                put(b, s, len, train);
                puts_(b, " ", train);
                puts_(b, eos, train);
            }
        }
        return FTC_OK;
    }
    case FTC_TEMPLATE_ZEPHYR:
        for (int i = 0; i < n; i++) {
            bool train = m[i].role == FTC_ROLE_ASSISTANT && m[i].weight;
            puts_(b, "<|", false);
            puts_(b, role_name(m[i].role), false);
            puts_(b, "|>\n", false);
            puts_(b, m[i].content, train);
            puts_(b, eos, train);
            puts_(b, "\n", false);
        }
        return FTC_OK;
    case FTC_TEMPLATE_PLAIN:
        for (int i = 0; i < n; i++) {
            if (i) puts_(b, "\n\n", false);
            if (m[i].role == FTC_ROLE_SYSTEM) {
                puts_(b, m[i].content, false);
            } else if (m[i].role == FTC_ROLE_USER) {
                puts_(b, "### Question:\n", false);
                puts_(b, m[i].content, false);
            } else {
                bool train = m[i].weight != 0;
                puts_(b, "### Answer:\n", false);
                puts_(b, m[i].content, train);
                puts_(b, eos, train);
            }
        }
        return FTC_OK;
    default:
        return ftc_errf(err, FTC_E_USAGE, "chat data needs a chat template: the model's tokenizer_config.json has none "
                                          "we know; choose one with --chat-template (chatml, llama3, llama2, zephyr, plain)");
    }
}

ftc_status ftc_template_render(ftc_template t, const ftc_record *rec, const char *bos, const char *eos,
                               bool train_on_inputs, ftc_rendered *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    builder b = {out, 0, 0, train_on_inputs, false};
    if (!bos) bos = "";
    if (!eos) eos = "";
    ftc_status s = FTC_OK;
    switch (rec->format) {
    case FTC_FMT_CHAT: s = render_chat(t, rec, bos, eos, &b, err); break;
    case FTC_FMT_COMPLETION:
        puts_(&b, rec->prompt, false);
        puts_(&b, rec->completion, true);
        puts_(&b, eos, true);
        break;
    case FTC_FMT_TEXT:
        puts_(&b, rec->text, true);
        puts_(&b, eos, true);
        break;
    default: s = ftc_errf(err, FTC_E_INTERNAL, "records of format '%s' are not rendered", ftc_data_format_name(rec->format));
    }
    if (s == FTC_OK && b.oom) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK && !out->text) { /* nothing rendered */
        out->text = calloc(1, 1);
        if (!out->text) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    if (s != FTC_OK) ftc_rendered_free(out);
    return s;
}

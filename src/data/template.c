/* Chat templates: the model's own Jinja chat_template (tokenizer_config.json, chat_template.jinja, a GGUF's
 * tokenizer.chat_template) or a named preset, rendered by the Jinja interpreter (src/data/jinja/) exactly as
 * transformers' apply_chat_template renders it, plus which bytes of the rendering are trained.
 *
 * Trained text (the loss mask): the answers of the assistant messages, each with the end-of-turn marker the
 * template writes after it (<|im_end|>, <|eot_id|>, </s>), and nothing else. Found from the rendering itself,
 * for any template:
 *   - a template with {% generation %} blocks (transformers' return_assistant_tokens_mask markup): the text
 *     those blocks wrote;
 *   - otherwise, for assistant message i: render messages[:i] with the generation prompt (P) and messages[:i+1]
 *     without it (Q). The answer is what Q adds to P, without trailing whitespace (chatml's "\n" after
 *     <|im_end|> is not trained), located in the whole rendering: at the same offset when the template renders
 *     earlier messages the same way whatever follows (nearly all do), else found by searching forward.
 * Presets: chatml, llama3, llama2, zephyr (the official Jinja sources of those models) and plain (### Question /
 * ### Answer for base models, the only one encoded with the tokenizer's own BOS). */
#include "data_internal.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include "ftc/jinja.h"
#include <jansson.h>
#include <stdio.h>
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
/* ftc's own format for base models: a blank line between messages; the answer ends with EOS */
static const char *const JINJA_PLAIN =
    "{%- for message in messages -%}\n"
    "{%- if not loop.first %}{{ '\\n\\n' }}{% endif -%}\n"
    "{%- if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{%- elif message['role'] == 'user' %}{{ '### Question:\\n' + message['content'] }}\n"
    "{%- else %}{{ '### Answer:\\n' + message['content'] + eos_token }}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt %}{{ ('\\n\\n' if messages else '') + '### Answer:\\n' }}{% endif -%}\n";

static const struct {
    const char *name, *jinja;
} PRESETS[] = {{"chatml", JINJA_CHATML}, {"llama3", JINJA_LLAMA3}, {"llama2", JINJA_LLAMA2},
               {"zephyr", JINJA_ZEPHYR}, {"plain", JINJA_PLAIN}};
#define N_PRESETS (int)(sizeof PRESETS / sizeof PRESETS[0])

struct ftc_chat_template {
    char *name;        /* "chatml", "model", a file path, "DIR/tokenizer_config.json" */
    char *source;      /* the Jinja text */
    ftc_jinja *jinja;
    json_t *special;   /* special tokens from the model's tokenizer_config.json (bos_token, ...), or NULL */
    bool plain;        /* the plain preset: encoded with the tokenizer's special tokens; a new question ends a reply */
};

const char *ftc_chat_template_preset_source(const char *name) {
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(PRESETS[i].name, name)) return PRESETS[i].jinja;
    return NULL;
}

ftc_status ftc_chat_template_from_text(const char *name, const char *src, size_t len, ftc_chat_template **out,
                                       ftc_err *err) {
    *out = NULL;
    ftc_chat_template *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name)) || !(t->source = malloc(len + 1))) {
        ftc_chat_template_free(t);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    memcpy(t->source, src, len);
    t->source[len] = 0;
    ftc_status s = ftc_jinja_compile(name, src, len, &t->jinja, err);
    if (s != FTC_OK) {
        ftc_chat_template_free(t);
        return s;
    }
    /* the plain preset, also when a run recorded its text */
    t->plain = len == strlen(JINJA_PLAIN) && !memcmp(src, JINJA_PLAIN, len);
    *out = t;
    return FTC_OK;
}

ftc_status ftc_chat_template_preset(const char *name, ftc_chat_template **out, ftc_err *err) {
    const char *src = ftc_chat_template_preset_source(name);
    *out = NULL;
    if (!src)
        return ftc_errf(err, FTC_E_USAGE, "unknown chat template '%s' (use chatml, llama3, llama2, zephyr, plain, model "
                                          "or a .jinja file)", name);
    return ftc_chat_template_from_text(name, src, strlen(src), out, err);
}

void ftc_chat_template_free(ftc_chat_template *t) {
    if (!t) return;
    ftc_jinja_free(t->jinja);
    json_decref(t->special);
    free(t->name);
    free(t->source);
    free(t);
}

const char *ftc_chat_template_name(const ftc_chat_template *t) { return t ? t->name : "none"; }
const char *ftc_chat_template_source(const ftc_chat_template *t) { return t->source; }
bool ftc_chat_template_adds_special(const ftc_chat_template *t) { return t->plain; }
const char *ftc_chat_template_stop_text(const ftc_chat_template *t) { return t->plain ? "\n\n### Question:" : NULL; }

/* A token in tokenizer_config.json: "text" or an AddedToken object {"content": "text", ...}. */
static json_t *token_text(json_t *v) {
    if (json_is_string(v)) return v;
    if (json_is_object(v) && json_is_string(json_object_get(v, "content"))) return json_object_get(v, "content");
    return NULL;
}

/* The special tokens transformers passes to the template: every "*_token" naming a token, and the list of
 * additional special tokens. */
static json_t *special_tokens_of(json_t *cfg) {
    json_t *sp = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v) {
        size_t n = strlen(k);
        json_t *text = token_text(v);
        if (n > 6 && !strcmp(k + n - 6, "_token") && text) json_object_set(sp, k, text);
        if (!strcmp(k, "additional_special_tokens") && json_is_array(v)) {
            json_t *list = json_array();
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) if (token_text(x)) json_array_append(list, token_text(x));
            json_object_set_new(sp, k, list);
        }
    }
    return sp;
}

ftc_status ftc_chat_template_from_model_dir(const char *dir, ftc_chat_template **out, ftc_err *err) {
    *out = NULL;
    char path[4200], name[4300];
    json_t *cfg = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (ftc_file_exists(path)) {
        json_error_t je;
        cfg = ftc_json_load_file(path, 0, &je);
        if (!cfg) return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: not valid JSON: %s", path, je.line, je.column, je.text);
    }
    json_t *t = json_object_get(cfg, "chat_template");
    const char *src = json_is_string(t) ? json_string_value(t) : NULL;
    size_t len = json_is_string(t) ? json_string_length(t) : 0;
    snprintf(name, sizeof name, "%s chat_template", path);
    if (json_is_array(t)) { /* a list of named templates: the one called "default" */
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) {
            json_t *nm = json_object_get(v, "name"), *tx = json_object_get(v, "template");
            if (json_is_string(nm) && !strcmp(json_string_value(nm), "default") && json_is_string(tx))
                src = json_string_value(tx), len = json_string_length(tx);
        }
        snprintf(name, sizeof name, "%s chat_template \"default\"", path);
    } else if (t && !json_is_null(t) && !src) {
        json_decref(cfg);
        return ftc_errf(err, FTC_E_INPUT, "%s: \"chat_template\" must be a string or a list of {\"name\", \"template\"}", path);
    }
    char *file_text = NULL;
    if (!src) { /* newer transformers save it beside: chat_template.jinja */
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        if (ftc_file_exists(path)) {
            ftc_status s = ftc_read_file(path, &file_text, &len, err);
            if (s != FTC_OK) {
                json_decref(cfg);
                return s;
            }
            src = file_text;
            snprintf(name, sizeof name, "%s", path);
        }
    }
    ftc_status s = FTC_OK;
    if (src) {
        s = ftc_chat_template_from_text(name, src, len, out, err);
        if (s == FTC_OK && cfg) (*out)->special = special_tokens_of(cfg);
    }
    free(file_text);
    json_decref(cfg);
    return s;
}

ftc_status ftc_chat_template_choose(const char *value, const char *model_dir, ftc_chat_template **out, ftc_err *err) {
    *out = NULL;
    if (!value || !value[0] || !strcmp(value, "model")) {
        if (!model_dir) return FTC_OK;
        ftc_status s = ftc_chat_template_from_model_dir(model_dir, out, err);
        if (s == FTC_OK && !*out && value && !strcmp(value, "model"))
            s = ftc_errf(err, FTC_E_INPUT, "%s has no chat template (tokenizer_config.json \"chat_template\" or "
                                           "chat_template.jinja)", model_dir);
        return s;
    }
    if (ftc_chat_template_preset_source(value)) return ftc_chat_template_preset(value, out, err);
    size_t n = strlen(value);
    if (strchr(value, '/') || (n > 6 && !strcmp(value + n - 6, ".jinja")) || ftc_file_exists(value)) {
        char *text;
        size_t len;
        ftc_status s = ftc_read_file(value, &text, &len, err);
        if (s != FTC_OK) return s;
        s = ftc_chat_template_from_text(value, text, len, out, err);
        free(text);
        return s;
    }
    return ftc_chat_template_preset(value, out, err); /* the unknown-name error */
}

/* ---- rendering ---- */
void ftc_rendered_free(ftc_rendered *r) {
    free(r->text);
    free(r->starts);
    free(r->trained);
    memset(r, 0, sizeof *r);
}

/* Messages as transformers hands them to the template: keys whose value is null dropped, the reasoning of an
 * assistant message also under "thinking" and "reasoning_content" (transformers' _alias_reasoning_fields),
 * and ftc's own "weight" removed. */
static json_t *normalize_messages(const json_t *msgs, ftc_err *err) {
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            json_decref(out);
            ftc_errf(err, FTC_E_INPUT, "messages[%zu] must be an object", i);
            return NULL;
        }
        json_t *reasoning = NULL;
        static const char *const fields[] = {"reasoning_content", "thinking", "reasoning"};
        for (int f = 0; f < 3 && !reasoning; f++) {
            json_t *v = json_object_get(m, fields[f]);
            if (v && !json_is_null(v)) reasoning = v;
        }
        json_t *c = json_object();
        if (reasoning) json_object_set(c, "thinking", reasoning);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)m, k, v) if (!json_is_null(v) && strcmp(k, "weight")) json_object_set(c, k, v);
        if (reasoning) json_object_set(c, "reasoning_content", reasoning);
        json_array_append_new(out, c);
    }
    return out;
}

/* The variables of one render: what transformers passes (messages, tools, documents, add_generation_prompt,
 * the special tokens, extra keyword arguments). */
static ftc_status render_once(const ftc_chat_template *t, json_t *msgs, size_t n_msgs, bool agp,
                              const ftc_render_opts *o, ftc_jinja_output *out, ftc_err *err) {
    json_t *vars = json_object(), *part = json_array();
    for (size_t i = 0; i < n_msgs; i++) json_array_append(part, json_array_get(msgs, i));
    json_object_set_new(vars, "messages", part);
    json_object_set_new(vars, "tools", json_null());
    json_object_set_new(vars, "documents", json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(agp));
    if (o->bos && o->bos[0]) json_object_set_new(vars, "bos_token", json_string(o->bos));
    if (o->eos && o->eos[0]) json_object_set_new(vars, "eos_token", json_string(o->eos));
    if (t->special) json_object_update(vars, t->special);
    if (o->vars) json_object_update(vars, (json_t *)o->vars);
    ftc_jinja_opts jo = {.now = o->now};
    ftc_status s = ftc_jinja_render(t->jinja, vars, &jo, out, err);
    json_decref(vars);
    return s;
}

typedef struct {
    size_t start, end;
} span;

/* Pieces from sorted, non-overlapping trained spans. */
static ftc_status make_pieces(ftc_jinja_output *full, const span *sp, int n, ftc_rendered *out, ftc_err *err) {
    out->text = full->text;
    out->len = full->len;
    full->text = NULL;
    out->starts = malloc((size_t)(2 * n + 1) * sizeof *out->starts);
    out->trained = malloc((size_t)(2 * n + 1) * sizeof *out->trained);
    if (!out->starts || !out->trained) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (sp[i].end <= sp[i].start) continue;
        if (sp[i].start > at) out->starts[out->n] = at, out->trained[out->n++] = false;
        out->starts[out->n] = sp[i].start, out->trained[out->n++] = true;
        at = sp[i].end;
    }
    if (at < out->len || out->n == 0) out->starts[out->n] = at, out->trained[out->n++] = false;
    return FTC_OK;
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

static const char *find_from(const char *h, size_t hn, size_t from, const char *n, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    for (size_t i = from; i + nn <= hn; i++)
        if (h[i] == n[0] && !memcmp(h + i, n, nn)) return h + i;
    return NULL;
}

static bool starts_with(const ftc_jinja_output *full, const ftc_jinja_output *part) {
    return part->len <= full->len && !memcmp(full->text, part->text, part->len);
}

/* Where answer i (an assistant message) lies in the full rendering: see the comment at the top.
 *   start: where P (messages[:i] + generation prompt) and Q (messages[:i+1]) part;
 *   end: the end of Q, or of Q' (messages[:i+1] + generation prompt) when the full rendering continues with
 *        all of Q' (a template that closes a turn only when something follows: Qwen1.5's <|im_end|>), or where
 *        Q and the full rendering part (a template that ends the conversation differently: Phi-3's eos_token),
 *        not inside a marker both continue with ("<|end|>\n<|" -> "<|end|>\n");
 *   without trailing whitespace. */
static ftc_status answer_span(const ftc_chat_template *t, json_t *msgs, size_t i, const ftc_render_opts *o,
                              const ftc_jinja_output *full, size_t cursor, span *sp, bool *found, ftc_err *err) {
    ftc_jinja_output p = {0}, q = {0}, q2 = {0};
    *found = false;
    ftc_status s = render_once(t, msgs, i, true, o, &p, err);
    if (s != FTC_OK && i == 0) { /* a template that cannot render no messages: the answer starts the text */
        p.text = calloc(1, 1);
        s = p.text ? FTC_OK : ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    if (s == FTC_OK) s = render_once(t, msgs, i + 1, false, o, &q, err);
    if (s == FTC_OK && render_once(t, msgs, i + 1, true, o, &q2, NULL) != FTC_OK) q2.len = 0, q2.text = NULL;
    if (s != FTC_OK) {
        ftc_jinja_output_free(&p);
        ftc_jinja_output_free(&q);
        return ftc_err_prefix(err, "rendering messages[0..%zu] to find where answer %zu starts", i, i);
    }
    size_t start = 0;
    while (start < p.len && start < q.len && p.text[start] == q.text[start]) start++;
    if (start < p.len) /* P's generation prompt and the answer part inside a marker ("<think>" / "</think>") */
        for (size_t b = start; b > 0; b--) {
            char c = q.text[b - 1];
            if (c == '>' || c == ']' || is_ws(c)) break;
            if (c == '<' || c == '[') { start = b - 1; break; }
        }
    size_t end;
    bool in_place = start >= cursor && start <= full->len && !memcmp(full->text, q.text, start);
    if (q2.text && q2.len > q.len && starts_with(full, &q2) && !memcmp(q2.text, q.text, start)) {
        end = q2.len;
    } else if (starts_with(full, &q)) {
        end = q.len;
    } else {
        end = start;
        while (end < q.len && end < full->len && q.text[end] == full->text[end]) end++;
        /* not inside a marker that both go on with: back to its '<' or '[' */
        for (size_t b = end; b > start; b--) {
            char c = q.text[b - 1];
            if (c == '>' || c == ']' || is_ws(c)) break;
            if (c == '<' || c == '[') { end = b - 1; break; }
        }
        if (end <= start) end = q.len, in_place = false; /* nothing in common: search below */
    }
    const char *src = in_place ? full->text : q.text;
    while (end > start && is_ws(src[end - 1])) end--;
    if (end > start && in_place) {
        sp->start = start, sp->end = end, *found = true;
    } else if (end > start) { /* the template renders the answer elsewhere once more follows: find it */
        const char *hit = find_from(full->text, full->len, cursor, q.text + start, end - start);
        if (hit) sp->start = (size_t)(hit - full->text), sp->end = sp->start + (end - start), *found = true;
        /* or differently (Qwen3 drops the thinking of earlier answers): its content and what follows it in Q
         * (the end-of-turn), as they stand in the full rendering */
        const char *content = json_string_value(json_object_get(json_array_get(msgs, i), "content"));
        size_t cl = content ? strlen(content) : 0;
        while (cl && is_ws(content[cl - 1])) cl--;
        while (cl && is_ws(content[0])) content++, cl--;
        const char *in_q = !hit && cl ? find_from(q.text, end, start, content, cl) : NULL;
        if (!hit && !cl) { /* an empty answer: its end-of-turn, the last word of what Q adds */
            size_t w = end;
            while (w > start && !is_ws(q.text[w - 1])) w--;
            in_q = q.text + w;
        }
        if (in_q) { /* Q's text from the content to its end, in the full rendering */
            size_t n = end - (size_t)(in_q - q.text);
            const char *c2 = find_from(full->text, full->len, cursor, in_q, n);
            if (c2) sp->start = (size_t)(c2 - full->text), sp->end = sp->start + n, *found = true;
        }
    } else {
        *found = true; /* the template writes nothing for this answer */
        sp->start = sp->end = cursor > start ? cursor : start;
    }
    ftc_jinja_output_free(&p);
    ftc_jinja_output_free(&q);
    ftc_jinja_output_free(&q2);
    return FTC_OK;
}

ftc_status ftc_template_render_messages(const ftc_chat_template *t, const json_t *messages, const ftc_render_opts *o,
                                        ftc_rendered *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    if (!json_is_array(messages)) return ftc_errf(err, FTC_E_INPUT, "\"messages\" must be a list");
    ftc_render_opts def = {0};
    if (!o) o = &def;
    json_t *msgs = normalize_messages(messages, err);
    if (!msgs) return FTC_E_INPUT;
    size_t n = json_array_size(msgs);
    bool *train = calloc(n + 1, sizeof *train); /* assistant messages with weight 1 (the default) */
    int n_assistant = 0;
    for (size_t i = 0; i < n && train; i++) {
        json_t *m = json_array_get(messages, i), *w = json_object_get(m, "weight");
        const char *role = json_string_value(json_object_get(m, "role"));
        bool assistant = role && !strcmp(role, "assistant");
        n_assistant += assistant;
        train[i] = assistant && !(json_is_integer(w) && json_integer_value(w) == 0) && !json_is_false(w);
    }
    ftc_jinja_output full = {0};
    span *sp = malloc((n + 1 + (size_t)0) * sizeof *sp);
    ftc_status s = train && sp ? render_once(t, msgs, n, o->add_generation_prompt, o, &full, err)
                               : ftc_errf(err, FTC_E_NOMEM, "out of memory");
    int nsp = 0;
    if (s == FTC_OK && o->train_on_inputs) {
        sp[nsp++] = (span){0, full.len};
    } else if (s == FTC_OK && ftc_jinja_has_generation(t->jinja)) {
        /* {% generation %} blocks: block k is answer k when the counts agree (so weights apply) */
        span *g = realloc(sp, (size_t)(full.n_gen + 1) * sizeof *sp);
        if (!g) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        else sp = g;
        int k = 0;
        bool weights = full.n_gen == n_assistant;
        for (size_t i = 0; s == FTC_OK && i < n && weights; i++) {
            const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
            if (!role || strcmp(role, "assistant")) continue;
            if (train[i]) sp[nsp++] = (span){full.gen[k].start, full.gen[k].end};
            k++;
        }
        if (s == FTC_OK && !weights) {
            for (size_t i = 0; i < n; i++)
                if (!train[i] && json_object_get(json_array_get(messages, i), "weight"))
                    s = ftc_errf(err, FTC_E_INPUT, "%s: its {%% generation %%} blocks (%d) do not match the assistant "
                                                   "messages (%d) one to one, so \"weight\": 0 cannot be applied",
                                 t->name, full.n_gen, n_assistant);
            for (int j = 0; s == FTC_OK && j < full.n_gen; j++) sp[nsp++] = (span){full.gen[j].start, full.gen[j].end};
        }
        /* spans in order, without overlap */
        for (int a = 1; a < nsp; a++)
            for (int b = a; b > 0 && sp[b - 1].start > sp[b].start; b--) {
                span x = sp[b]; sp[b] = sp[b - 1]; sp[b - 1] = x;
            }
        for (int a = 1; a < nsp; a++)
            if (sp[a].start < sp[a - 1].end) sp[a].start = sp[a - 1].end < sp[a].end ? sp[a - 1].end : sp[a].end;
    } else if (s == FTC_OK) {
        size_t cursor = 0;
        for (size_t i = 0; s == FTC_OK && i < n; i++) {
            const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
            if (!role || strcmp(role, "assistant")) continue;
            span a;
            bool found;
            s = answer_span(t, msgs, i, o, &full, cursor, &a, &found, err);
            if (s == FTC_OK && !found)
                s = ftc_errf(err, FTC_E_INPUT, "%s renders assistant message %zu differently once later messages follow, "
                                               "so its answer cannot be located in the conversation; mark the answers "
                                               "with {%% generation %%} ... {%% endgeneration %%} in the template",
                             t->name, i);
            if (s == FTC_OK) {
                if (train[i]) sp[nsp++] = a;
                cursor = a.end;
            }
        }
    }
    if (s == FTC_OK) s = make_pieces(&full, sp, nsp, out, err);
    if (s != FTC_OK) ftc_rendered_free(out);
    ftc_jinja_output_free(&full);
    free(sp);
    free(train);
    json_decref(msgs);
    return s;
}

static const char *role_name(ftc_role r) {
    return r == FTC_ROLE_SYSTEM ? "system" : r == FTC_ROLE_USER ? "user" : "assistant";
}

/* A record's messages as JSON (with weight 0 where the answer is not trained). */
json_t *ftc_record_messages_json(const ftc_record *rec) {
    json_t *a = json_array();
    for (int i = 0; i < rec->n_msgs; i++) {
        json_t *m = json_pack("{s:s, s:s}", "role", role_name(rec->msgs[i].role), "content", rec->msgs[i].content);
        if (rec->msgs[i].role == FTC_ROLE_ASSISTANT && !rec->msgs[i].weight) json_object_set_new(m, "weight", json_integer(0));
        json_array_append_new(a, m);
    }
    return a;
}

/* prompt (untrained) + completion + EOS (trained), or a text all trained with EOS */
static ftc_status render_plain_text(const char *untrained, const char *trained, const char *eos, bool train_all,
                                    ftc_rendered *out, ftc_err *err) {
    size_t a = strlen(untrained), b = strlen(trained), e = eos ? strlen(eos) : 0;
    out->text = malloc(a + b + e + 1);
    out->starts = malloc(2 * sizeof *out->starts);
    out->trained = malloc(2 * sizeof *out->trained);
    if (!out->text || !out->starts || !out->trained) {
        ftc_rendered_free(out);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    memcpy(out->text, untrained, a);
    memcpy(out->text + a, trained, b);
    if (e) memcpy(out->text + a + b, eos, e);
    out->len = a + b + e;
    out->text[out->len] = 0;
    if (a && !train_all) out->starts[out->n] = 0, out->trained[out->n++] = false;
    out->starts[out->n] = train_all ? 0 : a, out->trained[out->n++] = true;
    return FTC_OK;
}

ftc_status ftc_template_render(const ftc_chat_template *t, const ftc_record *rec, const ftc_render_opts *o,
                               ftc_rendered *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    ftc_render_opts def = {0};
    if (!o) o = &def;
    switch (rec->format) {
    case FTC_FMT_CHAT: {
        if (!t)
            return ftc_errf(err, FTC_E_USAGE, "chat data needs a chat template: the model has none (tokenizer_config.json "
                                              "\"chat_template\"); choose one with --chat-template (chatml, llama3, llama2, "
                                              "zephyr, plain or a .jinja file)");
        json_t *msgs = ftc_record_messages_json(rec);
        ftc_status s = msgs ? ftc_template_render_messages(t, msgs, o, out, err) : ftc_errf(err, FTC_E_NOMEM, "out of memory");
        json_decref(msgs);
        return s;
    }
    case FTC_FMT_COMPLETION: return render_plain_text(rec->prompt, rec->completion, o->eos, o->train_on_inputs, out, err);
    case FTC_FMT_TEXT: return render_plain_text("", rec->text, o->eos, true, out, err);
    default:
        return ftc_errf(err, FTC_E_INTERNAL, "records of format '%s' are not rendered", ftc_data_format_name(rec->format));
    }
}

/* ---- end of turn ---- */
ftc_status ftc_chat_template_end_of_turn(const ftc_chat_template *t, const ftc_render_opts *o, char **eot, ftc_err *err) {
    *eot = NULL;
    /* an answer between two user messages: what the template writes after it before the next turn */
    static const char *const probes[] = {
        "[{\"role\": \"user\", \"content\": \"Hello\"}, {\"role\": \"assistant\", \"content\": \"ftc-probe-answer\"}, "
        "{\"role\": \"user\", \"content\": \"Thanks\"}]",
        "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Hello\"}, "
        "{\"role\": \"assistant\", \"content\": \"ftc-probe-answer\"}, {\"role\": \"user\", \"content\": \"Thanks\"}]",
        "[{\"role\": \"user\", \"content\": \"Hello\"}, {\"role\": \"assistant\", \"content\": \"ftc-probe-answer\"}]",
    };
    ftc_render_opts po = *o;
    po.add_generation_prompt = false;
    po.train_on_inputs = false;
    for (int k = 0; k < 3; k++) {
        json_t *msgs = json_loads(probes[k], 0, NULL);
        ftc_rendered r;
        ftc_err e2;
        ftc_status s = ftc_template_render_messages(t, msgs, &po, &r, &e2);
        json_decref(msgs);
        if (s == FTC_E_NOMEM) return ftc_errf(err, s, "%s", e2.msg);
        if (s != FTC_OK) continue;
        for (int p = 0; p < r.n; p++) {
            if (!r.trained[p]) continue;
            size_t a = r.starts[p], b = p + 1 < r.n ? r.starts[p + 1] : r.len;
            const char *hit = find_from(r.text, b, a, "ftc-probe-answer", 16);
            if (!hit) continue;
            size_t from = (size_t)(hit - r.text) + 16;
            while (from < b && is_ws(r.text[from])) from++;
            if (from < b) {
                *eot = malloc(b - from + 1);
                if (!*eot) {
                    ftc_rendered_free(&r);
                    return ftc_errf(err, FTC_E_NOMEM, "out of memory");
                }
                memcpy(*eot, r.text + from, b - from);
                (*eot)[b - from] = 0;
            }
        }
        ftc_rendered_free(&r);
        return FTC_OK;
    }
    return FTC_OK;
}

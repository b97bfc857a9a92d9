/* JSONL records: one JSON object per line, parsed with jansson, validated against the data format with
 * messages that point at the offending value (file:line:column). The checks include those of OpenAI's
 * chat fine-tuning data guide: not an object, missing messages list, message missing role/content,
 * unrecognized message key, unrecognized role, missing content, no assistant message. */
#include "data_internal.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- locating a value in a line that jansson already accepted, so errors can name a column ---- */
static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static const char *skip_string(const char *p, const char *e) {
    for (p++; p < e && *p != '"'; p++)
        if (*p == '\\') p++;
    return p < e ? p + 1 : e;
}

static const char *skip_value(const char *p, const char *e) {
    p = skip_ws(p, e);
    if (p >= e) return e;
    if (*p == '"') return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1, e);
        while (p < e && *p != close) {
            if (close == '}') { p = skip_string(skip_ws(p, e), e); p = skip_ws(p, e) + 1; }
            p = skip_ws(skip_value(p, e), e);
            if (p < e && *p == ',') p = skip_ws(p + 1, e);
        }
        return p < e ? p + 1 : e;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t') p++;
    return p;
}

/* Steps: a key (key != NULL) or an array index. Returns the start of the value, or the start of the deepest
 * container reached when a step is absent. */
typedef struct { const char *key; int index; } path_step;

static const char *locate(const char *line, size_t len, const path_step *steps, int n) {
    const char *p = skip_ws(line, line + len), *e = line + len;
    for (int s = 0; s < n; s++) {
        const char *container = p;
        if (steps[s].key && *p == '{') {
            size_t klen = strlen(steps[s].key);
            const char *found = NULL;
            p = skip_ws(p + 1, e);
            while (p < e && *p == '"') {
                const char *k = p + 1, *kend = skip_string(p, e) - 1;
                p = skip_ws(kend + 1, e);
                if (p < e && *p == ':') p = skip_ws(p + 1, e);
                if ((size_t)(kend - k) == klen && !memcmp(k, steps[s].key, klen)) { found = p; break; }
                p = skip_ws(skip_value(p, e), e);
                if (p < e && *p == ',') p = skip_ws(p + 1, e);
            }
            if (!found) return container;
            p = found;
        } else if (!steps[s].key && *p == '[') {
            p = skip_ws(p + 1, e);
            for (int i = 0; i < steps[s].index && p < e && *p != ']'; i++) {
                p = skip_ws(skip_value(p, e), e);
                if (p < e && *p == ',') p = skip_ws(p + 1, e);
            }
            if (p >= e || *p == ']') return container;
        } else {
            return container;
        }
    }
    return p;
}

typedef struct {
    ftc_reader *r;
    const char *line;
    size_t len;
    ftc_err *err;
} ctx;

static long col_of(const ctx *c, const path_step *steps, int n) {
    return ftc_ds_char_col(c->line, (size_t)(locate(c->line, c->len, steps, n) - c->line));
}

#define FAIL_AT(c, steps, n, ...) ftc_ds_err_at((c)->err, (c)->r, (c)->r->line_no, col_of(c, steps, n), __VA_ARGS__)

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A required non-empty string field of the top-level object. */
static ftc_status get_string(const ctx *c, json_t *o, const char *key, char **out) {
    path_step st = {key, 0};
    json_t *v = json_object_get(o, key);
    if (!v) return FAIL_AT(c, &st, 0, "missing field \"%s\"", key);
    if (!json_is_string(v)) return FAIL_AT(c, &st, 1, "\"%s\" must be a string, got %s", key, type_name(v));
    if (ftc_ds_blank(json_string_value(v))) return FAIL_AT(c, &st, 1, "\"%s\" is empty", key);
    *out = ftc_ds_strndup(json_string_value(v), json_string_length(v));
    return *out ? FTC_OK : ftc_errf(c->err, FTC_E_NOMEM, "out of memory");
}

static ftc_status parse_label(const ctx *c, json_t *o, ftc_record *rec) {
    path_step st = {"label", 0};
    json_t *v = json_object_get(o, "label");
    if (!v) return FAIL_AT(c, &st, 0, "missing field \"label\"");
    char buf[32];
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        rec->label = strdup(buf);
        rec->label_is_int = true;
    } else if (json_is_string(v)) {
        if (ftc_ds_blank(json_string_value(v))) return FAIL_AT(c, &st, 1, "\"label\" is empty");
        rec->label = strdup(json_string_value(v));
    } else {
        return FAIL_AT(c, &st, 1, "\"label\" must be a string or an integer, got %s", type_name(v));
    }
    return rec->label ? FTC_OK : ftc_errf(c->err, FTC_E_NOMEM, "out of memory");
}

static ftc_status parse_messages(const ctx *c, json_t *o, ftc_record *rec) {
    path_step st[3] = {{"messages", 0}, {NULL, 0}, {NULL, 0}};
    json_t *msgs = json_object_get(o, "messages");
    if (!msgs) return FAIL_AT(c, st, 0, "missing field \"messages\"");
    if (!json_is_array(msgs)) return FAIL_AT(c, st, 1, "\"messages\" must be a list, got %s", type_name(msgs));
    size_t n = json_array_size(msgs);
    if (n == 0) return FAIL_AT(c, st, 1, "\"messages\" is empty");
    rec->msgs = calloc(n, sizeof *rec->msgs);
    if (!rec->msgs) return ftc_errf(c->err, FTC_E_NOMEM, "out of memory");
    bool has_assistant = false;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        st[1].index = (int)i;
        if (!json_is_object(m)) return FAIL_AT(c, st, 2, "messages[%zu] must be an object, got %s", i, type_name(m));
        const char *key;
        json_t *val;
        json_object_foreach(m, key, val) {
            if (strcmp(key, "role") && strcmp(key, "content") && strcmp(key, "name") && strcmp(key, "weight")) {
                st[2].key = key;
                return FAIL_AT(c, st, 3, "messages[%zu] has unknown key \"%s\" (allowed: role, content, name, weight)",
                               i, key);
            }
        }
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!role) return FAIL_AT(c, st, 2, "messages[%zu] is missing \"role\"", i);
        st[2].key = "role";
        if (!json_is_string(role))
            return FAIL_AT(c, st, 3, "messages[%zu].role must be a string, got %s", i, type_name(role));
        const char *rs = json_string_value(role);
        ftc_role r;
        if (!strcmp(rs, "system")) r = FTC_ROLE_SYSTEM;
        else if (!strcmp(rs, "user")) r = FTC_ROLE_USER;
        else if (!strcmp(rs, "assistant")) r = FTC_ROLE_ASSISTANT;
        else return FAIL_AT(c, st, 3, "messages[%zu] has unknown role \"%s\" (allowed: system, user, assistant)", i, rs);
        st[2].key = "content";
        if (!content) return FAIL_AT(c, st, 2, "messages[%zu] is missing \"content\"", i);
        if (!json_is_string(content))
            return FAIL_AT(c, st, 3, "messages[%zu].content must be a string, got %s", i, type_name(content));
        if (ftc_ds_blank(json_string_value(content))) return FAIL_AT(c, st, 3, "messages[%zu].content is empty", i);
        int weight = 1;
        json_t *w = json_object_get(m, "weight");
        if (w) {
            st[2].key = "weight";
            if (!json_is_integer(w) || (json_integer_value(w) != 0 && json_integer_value(w) != 1))
                return FAIL_AT(c, st, 3, "messages[%zu].weight must be 0 or 1", i);
            if (r != FTC_ROLE_ASSISTANT)
                return FAIL_AT(c, st, 3, "messages[%zu].weight is only allowed on assistant messages", i);
            weight = (int)json_integer_value(w);
        }
        rec->msgs[i].role = r;
        rec->msgs[i].weight = weight;
        rec->msgs[i].content = ftc_ds_strndup(json_string_value(content), json_string_length(content));
        if (!rec->msgs[i].content) return ftc_errf(c->err, FTC_E_NOMEM, "out of memory");
        rec->n_msgs = (int)i + 1;
        if (r == FTC_ROLE_ASSISTANT) has_assistant = true;
    }
    if (!has_assistant) return FAIL_AT(c, st, 1, "no assistant message in \"messages\" (nothing to train on)");
    return FTC_OK;
}

static ftc_data_format detect(json_t *o) {
    if (json_object_get(o, "messages")) return FTC_FMT_CHAT;
    if (json_object_get(o, "prompt") || json_object_get(o, "completion")) return FTC_FMT_COMPLETION;
    if (json_object_get(o, "label")) return FTC_FMT_LABEL;
    if (json_object_get(o, "text")) return FTC_FMT_TEXT;
    return FTC_FMT_AUTO;
}

ftc_status ftc_ds_jsonl_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err) {
    size_t len;
    const char *line;
    bool io;
    /* skip blank lines */
    for (;;) {
        line = ftc_ds_read_line(r, &len, &io);
        if (io) { r->done = true; return ftc_ds_read_error(r, err); }
        if (!line) { r->done = true; return FTC_OK; }
        size_t i = 0;
        while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
        if (i < len) break;
    }
    *got = true;
    rec->line = r->line_no;
    ftc_status s = ftc_ds_check_utf8(r, line, len, r->line_no, err);
    if (s != FTC_OK) return s;
    ctx c = {r, line, len, err};
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!o && json_error_code(&je) == json_error_out_of_memory)
        return ftc_errf(err, FTC_E_NOMEM, "%s:%ld: out of memory parsing the line (%zu bytes)", r->path, r->line_no, len);
    if (!o) return ftc_ds_err_at(err, r, r->line_no, je.column > 0 ? je.column : 1, "not valid JSON: %s", je.text);
    if (!json_is_object(o)) {
        s = FAIL_AT(&c, NULL, 0, "expected a JSON object, got %s", type_name(o));
        json_decref(o);
        return s;
    }
    ftc_data_format f = r->fmt;
    if (f == FTC_FMT_AUTO) {
        f = detect(o);
        if (f == FTC_FMT_AUTO) {
            s = FAIL_AT(&c, NULL, 0, "no known field: expected \"text\", \"prompt\"+\"completion\", \"messages\" or "
                                     "\"text\"+\"label\"");
            json_decref(o);
            return s;
        }
        r->fmt = f; /* the first record with known fields decides the format of the file */
    }
    rec->format = f;
    switch (f) {
    case FTC_FMT_TEXT: s = get_string(&c, o, "text", &rec->text); break;
    case FTC_FMT_LABEL:
        s = get_string(&c, o, "text", &rec->text);
        if (s == FTC_OK && json_object_get(o, "text_pair")) s = get_string(&c, o, "text_pair", &rec->text_pair);
        if (s == FTC_OK) s = parse_label(&c, o, rec);
        break;
    case FTC_FMT_COMPLETION:
        s = get_string(&c, o, "prompt", &rec->prompt);
        if (s == FTC_OK) s = get_string(&c, o, "completion", &rec->completion);
        break;
    case FTC_FMT_CHAT: s = parse_messages(&c, o, rec); break;
    default: s = ftc_errf(err, FTC_E_INTERNAL, "bad format");
    }
    json_decref(o);
    if (s != FTC_OK) {
        long line_no = rec->line;
        ftc_record_clear(rec);
        rec->line = line_no;
    }
    return s;
}

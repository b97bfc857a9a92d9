/* Request bodies of /v1/completions and /v1/chat/completions: JSON through jansson, every field the server uses
 * checked for its type and range, errors naming the field as OpenAI's do ("'temperature' must be a number"). */
#include "ftc/serve.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ftc_serve_request_free(ftc_serve_request *r) {
    free(r->model);
    free(r->prompt);
    json_decref(r->messages);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    for (int i = 0; i < r->n_inputs; i++) free(r->inputs[i]);
    free(r->inputs);
    memset(r, 0, sizeof *r);
}

static ftc_status bad(ftc_err *err, const char *fmt, const char *field) {
    return ftc_errf(err, FTC_E_INPUT, fmt, field);
}

/* A number field (ints count); absent or null leaves *out. */
static ftc_status get_number(json_t *o, const char *key, double lo, double hi, float *out, ftc_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return FTC_OK;
    if (!json_is_number(v)) return bad(err, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return ftc_errf(err, FTC_E_INPUT, "'%s' must be between %g and %g, not %g", key, lo, hi, d);
    *out = (float)d;
    return FTC_OK;
}

static ftc_status get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, bool *given,
                          ftc_err *err) {
    json_t *v = json_object_get(o, key);
    if (given) *given = false;
    if (!v || json_is_null(v)) return FTC_OK;
    if (!json_is_integer(v)) return bad(err, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return ftc_errf(err, FTC_E_INPUT, "'%s' must be between %lld and %lld, not %lld", key, lo, hi, x);
    *out = x;
    if (given) *given = true;
    return FTC_OK;
}

static ftc_status get_bool(json_t *o, const char *key, bool *out, ftc_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return FTC_OK;
    if (!json_is_boolean(v)) return bad(err, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return FTC_OK;
}

static ftc_status dup_string(json_t *v, char **out, const char *field, ftc_err *err) {
    size_t n = json_string_length(v);
    if (memchr(json_string_value(v), 0, n)) return bad(err, "'%s' must not contain NUL characters", field);
    if (!(*out = strdup(json_string_value(v)))) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    return FTC_OK;
}

static ftc_status parse_stop(json_t *o, ftc_serve_request *r, ftc_err *err) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return FTC_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return FTC_OK;
        ftc_status s = dup_string(v, &r->stop[0], "stop", err);
        if (!s) r->n_stop = 1;
        return s;
    }
    if (!json_is_array(v)) return bad(err, "'%s' must be a string or a list of strings", "stop");
    if (json_array_size(v) > FTC_SERVE_MAX_STOP)
        return ftc_errf(err, FTC_E_INPUT, "'stop' takes at most %d strings, not %zu", FTC_SERVE_MAX_STOP,
                        json_array_size(v));
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) return bad(err, "'%s' must be a string or a list of strings", "stop");
        if (json_string_length(e) == 0) continue;
        ftc_status s = dup_string(e, &r->stop[r->n_stop], "stop", err);
        if (s) return s;
        r->n_stop++;
    }
    return FTC_OK;
}

/* Chat messages: a non-empty list of objects with a string role; content a string, null (an assistant turn with
 * tool calls) or a list of parts whose text parts are joined, as OpenAI's "content parts" for text. */
static ftc_status parse_messages(json_t *o, ftc_serve_request *r, ftc_err *err) {
    json_t *v = json_object_get(o, "messages");
    if (!v) return bad(err, "'%s' is required", "messages");
    if (!json_is_array(v) || json_array_size(v) == 0) return bad(err, "'%s' must be a non-empty list", "messages");
    json_t *copy = json_array();
    if (!copy) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    r->messages = copy;
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        if (!json_is_object(m)) return ftc_errf(err, FTC_E_INPUT, "'messages[%zu]' must be an object", i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role)) return ftc_errf(err, FTC_E_INPUT, "'messages[%zu].role' must be a string", i);
        static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
        bool known = false;
        for (int k = 0; k < 5; k++) known = known || !strcmp(json_string_value(role), roles[k]);
        if (!known)
            return ftc_errf(err, FTC_E_INPUT, "'messages[%zu].role' must be system, developer, user, assistant or "
                            "tool, not '%.40s'", i, json_string_value(role));
        json_t *nm = json_deep_copy(m);
        if (!nm || json_array_append_new(copy, nm)) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        if (!strcmp(json_string_value(role), "developer")) json_object_set_new(nm, "role", json_string("system"));
        if (json_is_array(content)) {
            size_t j, total = 0;
            json_t *part;
            json_array_foreach(content, j, part) {
                json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
                if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
                    !json_is_string(text))
                    return ftc_errf(err, FTC_E_INPUT, "'messages[%zu].content[%zu]' must be a text part "
                                    "({\"type\": \"text\", \"text\": ...}): this model reads text only", i, j);
                total += json_string_length(text);
            }
            char *joined = malloc(total + 1), *p = joined;
            if (!joined) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
            json_array_foreach(content, j, part) {
                json_t *text = json_object_get(part, "text");
                memcpy(p, json_string_value(text), json_string_length(text));
                p += json_string_length(text);
            }
            *p = 0;
            int rc = json_object_set_new(nm, "content", json_stringn(joined, total));
            free(joined);
            if (rc) return ftc_errf(err, FTC_E_INPUT, "'messages[%zu].content' is not valid UTF-8", i);
        } else if (!json_is_string(content) && !(json_is_null(content) || !content)) {
            return ftc_errf(err, FTC_E_INPUT, "'messages[%zu].content' must be a string or a list of text parts", i);
        } else if (!content || json_is_null(content)) {
            json_object_set_new(nm, "content", json_string(""));
        }
    }
    return FTC_OK;
}

/* classify and embeddings: "input", a string or a non-empty list of strings */
static ftc_status parse_inputs(json_t *o, ftc_serve_request *r, ftc_err *err) {
    json_t *v = json_object_get(o, "input");
    if (!v) return bad(err, "'%s' is required", "input");
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v))
        return bad(err, "'%s' must be a string or a list of strings", "input");
    if (n == 0) return bad(err, "'%s' must not be an empty list", "input");
    if (n > FTC_SERVE_MAX_INPUTS)
        return ftc_errf(err, FTC_E_INPUT, "'input' takes at most %d texts per request, not %zu", FTC_SERVE_MAX_INPUTS, n);
    if (!(r->inputs = calloc(n, sizeof *r->inputs))) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(e))
            return ftc_errf(err, FTC_E_INPUT, "'input[%zu]' must be a string (token ids are not taken)", i);
        ftc_status s = dup_string(e, &r->inputs[i], "input", err);
        if (s) return s;
        r->n_inputs++;
    }
    return FTC_OK;
}

/* Deepest nesting of arrays and objects outside strings: refused past a limit before jansson's recursive
 * parser sees it (a request needs 4 levels; 10,000 brackets would use its stack). */
static int max_depth(const char *p, size_t n) {
    int d = 0, deepest = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '[' || c == '{') deepest = ++d > deepest ? d : deepest;
        else if ((c == ']' || c == '}') && d > 0) d--;
    }
    return deepest;
}

ftc_status ftc_serve_parse_request(const char *body, size_t len, ftc_serve_kind kind, ftc_serve_request *r,
                                   ftc_err *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->temperature = 1.0f, r->top_p = 1.0f, r->max_tokens = -1, r->n = 1, r->logprobs = -1;
    if (max_depth(body, len) > 32) return ftc_errf(err, FTC_E_INPUT, "the body nests arrays and objects deeper than 32");
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) return ftc_errf(err, FTC_E_INPUT, "the body is not valid JSON: %s at line %d column %d", je.text, je.line,
                            je.column);
    ftc_status s = FTC_OK;
    long long x = 0;
    bool given;
    if (!json_is_object(o)) {
        s = ftc_errf(err, FTC_E_INPUT, "the body must be a JSON object");
        goto done;
    }
    json_t *model = json_object_get(o, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            s = bad(err, "'%s' must be a string", "model");
            goto done;
        }
        if ((s = dup_string(model, &r->model, "model", err))) goto done;
    }
    if (kind == FTC_SERVE_CLASSIFY || kind == FTC_SERVE_EMBED) {
        if ((s = parse_inputs(o, r, err))) goto done;
        if (kind == FTC_SERVE_CLASSIFY) {
            if ((s = get_int(o, "top", 0, 1 << 20, &x, &given, err))) goto done;
            if (given) r->top = (int)x;
        } else {
            json_t *f = json_object_get(o, "encoding_format");
            if (f && !json_is_null(f) && (!json_is_string(f) || (strcmp(json_string_value(f), "float") &&
                                                                  strcmp(json_string_value(f), "base64")))) {
                s = bad(err, "'%s' must be \"float\" or \"base64\"", "encoding_format");
                goto done;
            }
            r->base64 = f && json_is_string(f) && !strcmp(json_string_value(f), "base64");
            json_t *d = json_object_get(o, "dimensions");
            if (d && !json_is_null(d)) {
                s = ftc_errf(err, FTC_E_INPUT, "'dimensions' is not supported: the model's embeddings have its hidden size");
                goto done;
            }
        }
        goto done;
    }
    if (kind == FTC_SERVE_COMPLETION) {
        json_t *p = json_object_get(o, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (!p) s = bad(err, "'%s' is required", "prompt");
        else if (json_is_array(p) && json_array_size(p) > 1 && json_is_string(json_array_get(p, 0)))
            s = ftc_errf(err, FTC_E_INPUT, "'prompt' as a list of several strings is not supported: send one "
                         "request per prompt");
        else if (!json_is_string(p)) s = bad(err, "'%s' must be a string", "prompt");
        else s = dup_string(p, &r->prompt, "prompt", err);
        if (s) goto done;
    } else if ((s = parse_messages(o, r, err))) {
        goto done;
    }
    if ((s = get_number(o, "temperature", 0.0, 2.0, &r->temperature, err)) ||
        (s = get_number(o, "top_p", 0.0, 1.0, &r->top_p, err)))
        goto done;
    if (r->top_p <= 0.0f) r->top_p = 1e-9f; /* 0: only the most likely token, as a tiny nucleus keeps */
    if ((s = get_int(o, "top_k", 0, 1 << 30, &x, &given, err))) goto done;
    if (given) r->top_k = (int)x;
    const char *mt = json_object_get(o, "max_completion_tokens") && !json_is_null(json_object_get(o, "max_completion_tokens"))
                         ? "max_completion_tokens" : "max_tokens";
    if ((s = get_int(o, mt, 0, 1 << 24, &x, &given, err))) goto done;
    if (given) r->max_tokens = (int)x;
    if ((s = get_int(o, "n", 1, FTC_SERVE_MAX_N, &x, &given, err))) goto done;
    if (given) r->n = (int)x;
    if ((s = get_int(o, "seed", INT64_MIN, INT64_MAX, &x, &r->has_seed, err))) goto done;
    r->seed = (uint64_t)x;
    if ((s = parse_stop(o, r, err))) goto done;
    if ((s = get_bool(o, "stream", &r->stream, err))) goto done;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            s = bad(err, "'%s' must be an object", "stream_options");
            goto done;
        }
        if ((s = get_bool(so, "include_usage", &r->include_usage, err))) goto done;
    }
    if (kind == FTC_SERVE_COMPLETION) {
        if ((s = get_int(o, "logprobs", 0, 5, &x, &given, err))) goto done;
        if (given) r->logprobs = (int)x;
    } else {
        bool want = false;
        if ((s = get_bool(o, "logprobs", &want, err))) goto done;
        if ((s = get_int(o, "top_logprobs", 0, FTC_SERVE_MAX_TOP_LOGPROBS, &x, &given, err))) goto done;
        if (given && !want) {
            s = ftc_errf(err, FTC_E_INPUT, "'top_logprobs' needs 'logprobs': true");
            goto done;
        }
        if (want) r->logprobs = given ? (int)x : 0;
    }
done:
    json_decref(o);
    if (s) ftc_serve_request_free(r);
    return s;
}

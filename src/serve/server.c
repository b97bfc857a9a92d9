/* The HTTP side of ftc serve, on civetweb: routes, API keys, body limits, OpenAI's response and error shapes,
 * server-sent events. Handler threads never touch the model: they queue a job for the engine (engine.c) and
 * wait on the job's condition variable, writing text as the engine publishes it. */
#include "serve/serve_internal.h"
#include "ftc/hf_config.h"
#include "ftc/quant.h"
#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void logf_(ftc_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(ftc_server *s, const char *fmt, ...) {
    if (!s->o.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_ctx, line);
}

/* ---- the client's socket ---- */

static int port_of(const struct sockaddr_storage *a, char *host, size_t n) {
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        if (host && !inet_ntop(AF_INET, &v4->sin_addr, host, (socklen_t)n)) return -1;
        return ntohs(v4->sin_port);
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
        if (host && !inet_ntop(AF_INET6, &v6->sin6_addr, host, (socklen_t)n)) return -1;
        return ntohs(v6->sin6_port);
    }
    return -1;
}

/* The socket of the request's connection, or -1. civetweb (1.15) keeps it to itself, so it is found among the
 * process's descriptors as the one connected from the request's remote address and port to the server's port
 * (a client of this same process has those the other way round). The engine polls it between decode steps to
 * notice a client that has gone (engine.c, check_clients). Linux: /proc/self/fd. */
static int conn_fd(const struct mg_request_info *ri) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d));) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || fd < 0 || fd > 1 << 30 || fd == dirfd(d)) continue;
        struct sockaddr_storage local, peer;
        socklen_t ll = sizeof local, lp = sizeof peer;
        char host[INET6_ADDRSTRLEN];
        if (getsockname((int)fd, (struct sockaddr *)&local, &ll) || getpeername((int)fd, (struct sockaddr *)&peer, &lp))
            continue;
        if (port_of(&local, NULL, 0) == ri->server_port && port_of(&peer, host, sizeof host) == ri->remote_port &&
            !strcmp(host, ri->remote_addr))
            found = (int)fd;
    }
    closedir(d);
    return found;
}

/* ---- responses ---- */

static int send_body(struct mg_connection *conn, int status, const char *type, const char *body, size_t len,
                     bool close) {
    char n[32];
    snprintf(n, sizeof n, "%zu", len);
    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Content-Type", type, -1);
    mg_response_header_add(conn, "Content-Length", n, -1);
    if (close) mg_response_header_add(conn, "Connection", "close", -1);
    mg_response_header_send(conn);
    if (len) mg_write(conn, body, len);
    return status;
}

/* Sends and frees o. */
static int send_json(struct mg_connection *conn, int status, json_t *o) {
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return send_body(conn, 500, "application/json",
                                "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                                "\"code\":null}}", 86, false);
    int r = send_body(conn, status, "application/json", text, strlen(text), false);
    free(text);
    return r;
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: case 400: case 405: return "invalid_request_error";
    case 503: return "server_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static json_t *error_json(int status, const char *message, const char *code) {
    return json_pack("{s:{s:s,s:s,s:n,s:s?}}", "error", "message", message, "type", error_type(status), "param",
                     "code", code);
}

static int send_error(ftc_server *s, struct mg_connection *conn, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int send_error(ftc_server *s, struct mg_connection *conn, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    logf_(s, "%s %s -> %d %s", ri->request_method, ri->local_uri ? ri->local_uri : "?", status, msg);
    if (status == 413) { /* the body was not read: the connection cannot carry another request */
        json_t *o = error_json(status, msg, code);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        int r = send_body(conn, status, "application/json", text ? text : "{}", text ? strlen(text) : 2, true);
        free(text);
        return r;
    }
    return send_json(conn, status, error_json(status, msg, code));
}

/* Text as a JSON string; bytes that are not UTF-8 (never expected from the text stream) become U+FFFD. */
static json_t *jstr(const char *p, size_t n) {
    json_t *v = json_stringn(p, n);
    if (v) return v;
    char *buf = malloc(3 * n + 1), *q = buf;
    if (!buf) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *t = len && i + len <= n ? json_stringn(p + i, (size_t)len) : NULL;
        if (t) {
            memcpy(q, p + i, (size_t)len);
            q += len, i += (size_t)len;
            json_decref(t);
        } else {
            memcpy(q, "\xEF\xBF\xBD", 3);
            q += 3, i++;
        }
    }
    v = json_stringn(buf, (size_t)(q - buf));
    free(buf);
    return v;
}

/* ---- logprobs in OpenAI's two shapes ---- */

static json_t *bytes_of(const char *t) {
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)t; a && *p; p++) json_array_append_new(a, json_integer(*p));
    return a;
}

/* chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}]} for lps[from..to) */
static json_t *chat_logprobs(const ftc_sv_choice *c, int from, int to) {
    json_t *content = json_array();
    for (int i = from; content && i < to; i++) {
        const ftc_sv_logprob *lp = &c->lps[i];
        json_t *top = json_array();
        for (int k = 0; top && k < lp->n_top; k++)
            json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", jstr(lp->top[k].text, strlen(lp->top[k].text)),
                                                 "logprob", (double)lp->top[k].logprob, "bytes", bytes_of(lp->top[k].text)));
        json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", jstr(lp->tok.text, strlen(lp->tok.text)),
                                                 "logprob", (double)lp->tok.logprob, "bytes", bytes_of(lp->tok.text),
                                                 "top_logprobs", top));
    }
    return json_pack("{s:o}", "content", content);
}

/* completions: {tokens, token_logprobs, top_logprobs: [{text: lp}], text_offset} */
static json_t *completion_logprobs(const ftc_sv_choice *c, int from, int to, size_t base) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = from; i < to; i++) {
        const ftc_sv_logprob *lp = &c->lps[i];
        json_array_append_new(tokens, jstr(lp->tok.text, strlen(lp->tok.text)));
        json_array_append_new(lps, json_real(lp->tok.logprob));
        json_t *top = json_object();
        for (int k = 0; k < lp->n_top; k++) json_object_set_new(top, lp->top[k].text, json_real(lp->top[k].logprob));
        json_array_append_new(tops, top);
        size_t start = i ? c->lps[i - 1].end : 0;
        json_array_append_new(offs, json_integer((json_int_t)(base + start)));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* Tokens whose text lies within the first n bytes of the answer. */
static int lps_within(const ftc_sv_choice *c, size_t n) {
    int k = 0;
    while (k < c->n_lps && c->lps[k].end <= n) k++;
    return k;
}

/* ---- routes ---- */

static bool authorized(ftc_server *s, struct mg_connection *conn) {
    if (!s->api_key) return true;
    const char *h = mg_get_header(conn, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned diff = a != b;
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(h[i] ^ s->api_key[i]); /* no early exit */
    return diff == 0;
}

static const char *task_name(ftc_task t) {
    return t == FTC_TASK_CAUSAL_LM ? "causal-lm" : t == FTC_TASK_CLASSIFY ? "classify" : "encode";
}

static json_t *model_json(ftc_server *s) {
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:i}", "id", s->model_id, "object", "model", "created",
                          (json_int_t)s->created, "owned_by", "ftc", "task", task_name(s->task), "context_length",
                          s->task == FTC_TASK_CAUSAL_LM ? s->ctx : s->max_len);
    if (o && s->task == FTC_TASK_CLASSIFY) {
        json_t *l = json_array();
        for (int i = 0; i < s->num_labels; i++) json_array_append_new(l, json_string(s->labels[i]));
        json_object_set_new(o, "labels", l);
    }
    return o;
}

static json_t *usage_json(const ftc_sv_job *j) {
    int out = 0;
    for (int i = 0; i < j->req.n; i++) out += j->ch[i].tokens;
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", j->n_prompt, "completion_tokens", out, "total_tokens",
                     j->n_prompt + out);
}

static const float *sort_base;
static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER; /* qsort has no context argument */
static int by_score(const void *a, const void *b) {
    float x = sort_base[*(const int *)a], y = sort_base[*(const int *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

static char *base64_floats(const float *v, int n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4;
    unsigned char *b = malloc(len ? len : 1);
    char *out = malloc((len + 2) / 3 * 4 + 1), *q = out;
    if (!b || !out) {
        free(b), free(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) { /* little-endian float32, as numpy's frombuffer(dtype="float32") reads it */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[4 * i + k] = (unsigned char)(u >> (8 * k));
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16 | (i + 1 < len ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < len ? b[i + 2] : 0);
        *q++ = tab[w >> 18 & 63];
        *q++ = tab[w >> 12 & 63];
        *q++ = i + 1 < len ? tab[w >> 6 & 63] : '=';
        *q++ = i + 2 < len ? tab[w & 63] : '=';
    }
    *q = 0;
    free(b);
    return out;
}

static json_t *inputs_response(ftc_server *s, ftc_sv_job *j) {
    json_t *data = json_array();
    bool cls = j->req.kind == FTC_SERVE_CLASSIFY;
    int dim = cls ? s->num_labels : s->hidden;
    int *order = cls ? malloc((size_t)dim * sizeof *order) : NULL;
    if (cls && !order) return NULL;
    for (int i = 0; data && i < j->req.n_inputs; i++) {
        const float *v = j->vecs + (size_t)i * dim;
        if (cls) {
            for (int k = 0; k < dim; k++) order[k] = k;
            pthread_mutex_lock(&sort_mu);
            sort_base = v;
            qsort(order, (size_t)dim, sizeof *order, by_score);
            pthread_mutex_unlock(&sort_mu);
            int top = j->req.top > 0 && j->req.top < dim ? j->req.top : dim;
            json_t *labels = json_array();
            for (int k = 0; k < top; k++)
                json_array_append_new(labels, json_pack("{s:s,s:f}", "label", s->labels[order[k]], "score",
                                                        (double)v[order[k]]));
            json_array_append_new(data, json_pack("{s:s,s:i,s:s,s:f,s:o}", "object", "classification", "index", i,
                                                  "label", s->labels[order[0]], "score", (double)v[order[0]], "labels",
                                                  labels));
        } else {
            json_t *e;
            if (j->req.base64) {
                char *b = base64_floats(v, dim);
                e = b ? json_string(b) : NULL;
                free(b);
            } else {
                e = json_array();
                for (int k = 0; e && k < dim; k++) json_array_append_new(e, json_real(v[k]));
            }
            json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", e));
        }
    }
    free(order);
    return json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model", s->model_id, "usage",
                     "prompt_tokens", j->in_tokens, "total_tokens", j->in_tokens);
}

static json_t *full_response(ftc_server *s, ftc_sv_job *j) {
    if (j->req.kind == FTC_SERVE_CLASSIFY || j->req.kind == FTC_SERVE_EMBED) return inputs_response(s, j);
    bool chat = j->req.kind == FTC_SERVE_CHAT;
    json_t *choices = json_array();
    for (int i = 0; i < j->req.n; i++) {
        ftc_sv_choice *c = &j->ch[i];
        json_t *text = jstr(c->text ? c->text : "", c->len);
        json_t *lp = json_null();
        if (j->req.logprobs >= 0) {
            json_decref(lp);
            int n = lps_within(c, c->len);
            lp = chat ? chat_logprobs(c, 0, n) : completion_logprobs(c, 0, n, 0);
        }
        json_t *ch = chat ? json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", i, "message", "role", "assistant",
                                      "content", text, "logprobs", lp, "finish_reason", c->finish ? c->finish : "length")
                          : json_pack("{s:i,s:o,s:o,s:s}", "index", i, "text", text, "logprobs", lp, "finish_reason",
                                      c->finish ? c->finish : "length");
        json_array_append_new(choices, ch);
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", j->id, "object", chat ? "chat.completion" : "text_completion",
                     "created", (json_int_t)j->created, "model", s->model_id, "choices", choices, "usage",
                     usage_json(j));
}

/* SSE: data: JSON\n\n. False when the client is gone. */
static bool sse_send(struct mg_connection *conn, json_t *o) {
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return false;
    size_t n = strlen(text);
    char *buf = malloc(n + 9);
    if (!buf) {
        free(text);
        return false;
    }
    memcpy(buf, "data: ", 6);
    memcpy(buf + 6, text, n);
    memcpy(buf + 6 + n, "\n\n", 2);
    bool ok = mg_write(conn, buf, n + 8) == (int)(n + 8);
    free(buf);
    free(text);
    return ok;
}

static json_t *chunk(ftc_server *s, ftc_sv_job *j, json_t *choices) {
    bool chat = j->req.kind == FTC_SERVE_CHAT;
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", j->id, "object", chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", s->model_id, "choices", choices);
}

/* Writes the job's chunks as the engine produces them. mu is held on entry and exit. */
static void stream(ftc_server *s, struct mg_connection *conn, ftc_sv_job *j) {
    bool chat = j->req.kind == FTC_SERVE_CHAT;
    size_t sent[FTC_SERVE_MAX_N] = {0};
    int lp_sent[FTC_SERVE_MAX_N] = {0};
    bool role_sent[FTC_SERVE_MAX_N] = {0}, fin_sent[FTC_SERVE_MAX_N] = {0};
    bool ok = true;
    for (;;) {
        if (j->cancelled) { /* the engine saw the connection close */
            ok = false;
            break;
        }
        bool all = true, progressed = false; /* mu is dropped while writing: a pass that wrote looks again */
        for (int i = 0; i < j->req.n && ok; i++) {
            ftc_sv_choice *c = &j->ch[i];
            json_t *delta = NULL;
            bool any = false;
            if (chat && !role_sent[i]) {
                delta = json_pack("{s:s,s:s}", "role", "assistant", "content", "");
                role_sent[i] = any = true;
            }
            json_t *lp = json_null();
            if (c->shown > sent[i]) {
                json_t *t = jstr(c->text + sent[i], c->shown - sent[i]);
                int n = lps_within(c, c->shown);
                if (j->req.logprobs >= 0 && n > lp_sent[i]) {
                    json_decref(lp);
                    lp = chat ? chat_logprobs(c, lp_sent[i], n) : completion_logprobs(c, lp_sent[i], n, 0);
                    lp_sent[i] = n;
                }
                if (chat) {
                    if (!delta) delta = json_object();
                    json_object_set_new(delta, "content", t);
                } else {
                    delta = t;
                }
                sent[i] = c->shown;
                any = true;
            }
            bool fin = c->finish && sent[i] == c->shown && !fin_sent[i];
            if (any || fin) {
                if (!delta) delta = chat ? json_object() : json_string("");
                json_t *ch = chat ? json_pack("{s:i,s:o,s:o,s:o}", "index", i, "delta", delta, "logprobs", lp,
                                              "finish_reason", fin ? json_string(c->finish) : json_null())
                                  : json_pack("{s:i,s:o,s:o,s:o}", "index", i, "text", delta, "logprobs", lp,
                                              "finish_reason", fin ? json_string(c->finish) : json_null());
                if (fin) fin_sent[i] = true;
                progressed = true;
                json_t *o = chunk(s, j, json_pack("[o]", ch));
                pthread_mutex_unlock(&s->mu);
                ok = sse_send(conn, o);
                pthread_mutex_lock(&s->mu);
            } else {
                json_decref(lp);
            }
            all = all && fin_sent[i];
        }
        if (!ok) {
            j->cancelled = true; /* the engine ends the job's choices at their next token */
            break;
        }
        if (all || j->status) break;
        if (!progressed) pthread_cond_wait(&j->cv, &s->mu);
    }
    while (!j->released) pthread_cond_wait(&j->cv, &s->mu);
    if (!ok) return;
    if (j->cancelled) return;
    if (j->req.include_usage) {
        json_t *o = chunk(s, j, json_array());
        json_object_set_new(o, "usage", usage_json(j));
        pthread_mutex_unlock(&s->mu);
        ok = sse_send(conn, o);
        pthread_mutex_lock(&s->mu);
    }
    if (ok) {
        pthread_mutex_unlock(&s->mu);
        mg_write(conn, "data: [DONE]\n\n", 14);
        pthread_mutex_lock(&s->mu);
    }
}

static int completions(ftc_server *s, struct mg_connection *conn, ftc_serve_kind kind) {
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->content_length > (long long)s->o.max_body)
        return send_error(s, conn, 413, "request_too_large", "the body is %lld bytes; this server takes at most %zu",
                          ri->content_length, s->o.max_body);
    size_t cap = 4096, len = 0;
    char *body = malloc(cap);
    if (!body) return send_error(s, conn, 500, "server_error", "out of memory");
    for (;;) {
        if (len == cap) {
            if (cap > s->o.max_body) break;
            char *b = realloc(body, cap * 2);
            if (!b) {
                free(body);
                return send_error(s, conn, 500, "server_error", "out of memory");
            }
            body = b, cap *= 2;
        }
        int r = mg_read(conn, body + len, cap - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    if (len > s->o.max_body) {
        free(body);
        return send_error(s, conn, 413, "request_too_large", "the body is over %zu bytes, this server's limit",
                          s->o.max_body);
    }
    ftc_sv_job *j = ftc_sv_job_new();
    if (!j) {
        free(body);
        return send_error(s, conn, 500, "server_error", "out of memory");
    }
    ftc_err err;
    ftc_status st = ftc_serve_parse_request(body, len, kind, &j->req, &err);
    free(body);
    if (st) {
        ftc_sv_job_free(j);
        return send_error(s, conn, st == FTC_E_NOMEM ? 500 : 400, NULL, "%s", err.msg);
    }
    if (j->req.model && strcmp(j->req.model, s->model_id)) {
        int r = send_error(s, conn, 400, "model_not_found", "the model '%.200s' does not exist; this server has '%s'",
                           j->req.model, s->model_id);
        ftc_sv_job_free(j);
        return r;
    }
    pthread_mutex_lock(&s->mu);
    unsigned long long seq = ++s->counter;
    if (!j->req.has_seed) j->req.seed = ((uint64_t)time(NULL) << 20) ^ (seq * 0x9E3779B97F4A7C15ull);
    snprintf(j->id, sizeof j->id, "%s-%llx%04llx", kind == FTC_SERVE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), seq & 0xffff);
    j->created = (long long)time(NULL);
    j->fd = conn_fd(ri);
    if (!ftc_sv_enqueue(s, j)) {
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        ftc_sv_job_free(j);
        return stopping ? send_error(s, conn, 503, "server_shutting_down", "the server is shutting down")
                        : send_error(s, conn, 503, "server_busy", "every slot is busy and %d requests are waiting; "
                                     "retry later", s->o.queue);
    }
    double t0 = ftc_now();
    /* wait for the engine to prepare the job (a refusal ends it here) */
    while (!j->released && !j->prepared) pthread_cond_wait(&j->cv, &s->mu);
    int status = 200;
    if (j->status && j->released && !j->prepared) {
        status = j->status;
        bool gone = j->cancelled;
        pthread_mutex_unlock(&s->mu);
        if (gone) logf_(s, "%s %s -> %d: %s: the client went away while it waited", ri->request_method, ri->local_uri,
                        status, j->id);
        else send_error(s, conn, status, j->error_code, "%s", j->error);
        ftc_sv_job_free(j);
        return status;
    }
    if (j->req.stream) {
        mg_response_header_start(conn, 200);
        mg_response_header_add(conn, "Content-Type", "text/event-stream", -1);
        mg_response_header_add(conn, "Cache-Control", "no-cache", -1);
        mg_response_header_add(conn, "Connection", "close", -1);
        pthread_mutex_unlock(&s->mu);
        mg_response_header_send(conn);
        pthread_mutex_lock(&s->mu);
        stream(s, conn, j);
        pthread_mutex_unlock(&s->mu);
    } else {
        while (!j->released) pthread_cond_wait(&j->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        if (j->cancelled) status = 499; /* nginx's "client closed request": nothing is sent */
        else if (j->status) status = send_error(s, conn, j->status, j->error_code, "%s", j->error);
        else send_json(conn, 200, full_response(s, j));
    }
    /* the engine no longer writes the job: its fields are read without mu */
    int out = 0;
    for (int i = 0; i < j->req.n; i++) out += j->ch[i].tokens;
    if (j->cancelled)
        logf_(s, "%s: the client went away; its slots are freed", j->id);
    logf_(s, "%s %s -> %d: %s, prompt %d tokens, %d generated in %.3f s", ri->request_method, ri->local_uri, status,
          j->id, j->n_prompt, out, ftc_now() - t0);
    ftc_sv_job_free(j);
    return status;
}

static const char *task_noun(ftc_task t) {
    return t == FTC_TASK_CAUSAL_LM ? "causal LM" : t == FTC_TASK_CLASSIFY ? "classifier" : "text encoder";
}
static const char *task_route(ftc_task t) {
    return t == FTC_TASK_CAUSAL_LM ? "/v1/completions or /v1/chat/completions"
           : t == FTC_TASK_CLASSIFY ? "/v1/classify" : "/v1/embeddings";
}

static int handle(struct mg_connection *conn) {
    const struct mg_request_info *ri = mg_get_request_info(conn);
    ftc_server *s = ri->user_data;
    const char *m = ri->request_method, *u = ri->local_uri ? ri->local_uri : "";
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    if (!strcmp(u, "/health")) {
        if (!get) return send_error(s, conn, 405, "method_not_allowed", "%s /health: use GET", m);
        /* the scheduler's state, for load balancers and tests: slots decoding, requests waiting for one */
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        int busy = 0;
        for (int i = 0; i < s->n_slots; i++) busy += s->slots[i].c != NULL;
        int queued = s->queued;
        pthread_mutex_unlock(&s->mu);
        json_t *o = json_pack("{s:s,s:i,s:i,s:i}", "status", stopping ? "stopping" : "ok", "slots", s->n_slots,
                              "slots_busy", busy, "queued", queued);
        return send_json(conn, stopping ? 503 : 200, o);
    }
    if (!strcmp(u, "/")) { /* the chat page; its API calls carry the key the user types in */
        if (!get) return send_error(s, conn, 405, "method_not_allowed", "%s /: use GET", m);
        size_t n;
        const char *page = ftc_sv_page(&n);
        return send_body(conn, 200, "text/html; charset=utf-8", page, n, false);
    }
    if (strncmp(u, "/v1/", 4) == 0 && !authorized(s, conn))
        return send_error(s, conn, 401, "invalid_api_key", "%s", mg_get_header(conn, "Authorization")
                          ? "Incorrect API key provided" : "Missing API key: send 'Authorization: Bearer KEY'");
    static const char *const routes[] = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/classify",
                                         "/v1/embeddings"};
    int route = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(u, routes[i])) route = i;
    if (route < 0 && !strncmp(u, "/v1/models/", 11)) {
        if (!get) return send_error(s, conn, 405, "method_not_allowed", "%s %s: use GET", m, u);
        if (strcmp(u + 11, s->model_id))
            return send_error(s, conn, 404, "model_not_found", "the model '%.200s' does not exist", u + 11);
        return send_json(conn, 200, model_json(s));
    }
    if (route < 0) return send_error(s, conn, 404, "not_found", "no route %s %.200s", m, u);
    if (route == 0) {
        if (!get) return send_error(s, conn, 405, "method_not_allowed", "%s %s: use GET", m, u);
        return send_json(conn, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", model_json(s)));
    }
    if (!post) return send_error(s, conn, 405, "method_not_allowed", "%s %s: use POST", m, u);
    static const ftc_serve_kind kinds[] = {0, FTC_SERVE_COMPLETION, FTC_SERVE_CHAT, FTC_SERVE_CLASSIFY, FTC_SERVE_EMBED};
    static const ftc_task needs[] = {0, FTC_TASK_CAUSAL_LM, FTC_TASK_CAUSAL_LM, FTC_TASK_CLASSIFY, FTC_TASK_ENCODE};
    if (needs[route] != s->task)
        return send_error(s, conn, 400, "unsupported_endpoint", "%s needs a %s; this server's model '%s' is a %s: use %s",
                          u, task_noun(needs[route]), s->model_id, task_noun(s->task), task_route(s->task));
    return completions(s, conn, kinds[route]);
}

/* civetweb's worker threads have 100 KiB stacks (Debian's build), too little for JSON, logging and the
 * sanitizers' redzones: each request runs on a thread of its own with 2 MiB while the worker waits. */
typedef struct {
    struct mg_connection *conn;
    int status;
} request_thread;

static void *request_main(void *p) {
    request_thread *r = p;
    ftc_server *s = mg_get_request_info(r->conn)->user_data;
    pthread_mutex_lock(&s->mu);
    s->handlers++;
    pthread_mutex_unlock(&s->mu);
    r->status = handle(r->conn);
    pthread_mutex_lock(&s->mu);
    if (--s->handlers == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int begin_request(struct mg_connection *conn) {
    request_thread r = {conn, 0};
    pthread_attr_t attr;
    pthread_t t;
    bool ok = pthread_attr_init(&attr) == 0;
    ok = ok && pthread_attr_setstacksize(&attr, 2u << 20) == 0 && pthread_create(&t, &attr, request_main, &r) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) { /* no thread: answer 503 from here, which needs little stack */
        static const char busy[] = "{\"error\":{\"message\":\"the server cannot start a thread for the request\","
                                   "\"type\":\"server_error\",\"param\":null,\"code\":\"server_busy\"}}";
        return send_body(conn, 503, "application/json", busy, sizeof busy - 1, false);
    }
    pthread_join(t, NULL);
    return r.status;
}

static int quiet_log(const struct mg_connection *conn, const char *message) {
    (void)conn, (void)message;
    return 1;
}

/* ---- start / stop ---- */

static void model_id_of(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(out, n, "%.*s", (int)(len - b), path + b);
}

ftc_status ftc_server_start(const ftc_serve_opts *o, ftc_server **out, ftc_err *err) {
    *out = NULL;
    ftc_server *s = calloc(1, sizeof *s);
    if (!s) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.slots <= 0) s->o.slots = 1;
    if (s->o.queue <= 0) s->o.queue = 16;
    if (!s->o.max_body) s->o.max_body = 1 << 20;
    s->n_slots = s->o.slots;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    ftc_status st;
    if (o->api_key && !(s->api_key = strdup(o->api_key))) {
        st = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        goto fail;
    }
    int task = o->task;
    char rc_path[8600];
    snprintf(rc_path, sizeof rc_path, "%s/config.resolved.json", o->model_path);
    if (task < 0 && !ftc_file_exists(rc_path)) { /* a plain directory: what its architectures entry names */
        ftc_model_config c;
        ftc_err e;
        if (ftc_config_load(o->model_path, &c, &e) == FTC_OK) {
            task = strstr(c.architecture, "ForSequenceClassification") ? FTC_TASK_CLASSIFY
                   : strstr(c.architecture, "ForCausalLM") || strstr(c.architecture, "LMHeadModel") ? FTC_TASK_CAUSAL_LM
                   : c.architecture[0] ? FTC_TASK_ENCODE : FTC_TASK_CAUSAL_LM;
            ftc_config_free(&c);
        }
    }
    if ((st = ftc_infer_open(o->model_path, task, &s->im, err))) goto fail;
    s->im.kv_type = o->kv_type;
    s->have_im = true;
    s->task = s->im.task;
    if ((o->bf16 || o->base_dtype) && s->task != FTC_TASK_CAUSAL_LM) {
        st = ftc_errf(err, FTC_E_USAGE, "%s: bf16 or quantized weights are for causal-lm models (as ftc generate)",
                      o->model_path);
        goto fail;
    }
    int qtype = o->base_dtype ? ftc_quant_from_name(o->base_dtype) : -1;
    if (o->base_dtype && qtype < 0) {
        st = ftc_errf(err, FTC_E_USAGE, "base dtype '%s' is not one of q8_0, q4_0, q4_1, q4_k, nf4, nf4dq", o->base_dtype);
        goto fail;
    }
    /* as ftc generate: the weights in bf16 (products in bf16), then block-quantized */
    if ((o->bf16 && (st = ftc_model_use_bf16_weights(s->im.model, err))) ||
        (qtype >= 0 && (st = ftc_model_use_quant_weights(s->im.model, qtype, err))))
        goto fail;
    if (o->model_id) snprintf(s->model_id, sizeof s->model_id, "%s", o->model_id);
    else model_id_of(o->model_path, s->model_id, sizeof s->model_id);
    s->created = (long long)time(NULL);
    int max_pos = ftc_model_config_of(s->im.model)->max_positions;
    s->ctx = o->ctx > 0 && o->ctx < max_pos ? o->ctx : max_pos;
    s->max_len = ftc_classify_max_len(&s->im);
    if (o->ctx > 0 && o->ctx < s->max_len) s->max_len = o->ctx;
    s->hidden = ftc_model_config_of(s->im.model)->hidden_size;
    if (s->task == FTC_TASK_CLASSIFY) {
        if ((s->num_labels = ftc_classify_num_labels(&s->im)) < 1) {
            st = ftc_errf(err, FTC_E_INPUT, "%s has no classification head; train one with ftc train --task classify",
                          o->model_path);
            goto fail;
        }
        if ((st = ftc_classify_labels(&s->im, o->model_path, s->num_labels, &s->labels, err))) goto fail;
    }
    if (s->task != FTC_TASK_CAUSAL_LM) goto engine;
    /* chat: the template the run trained with, else the model's own, else plain (as ftc chat) */
    if ((st = ftc_infer_chat_template(&s->im, NULL, &s->tmpl, &s->template_why, err))) goto fail;
    if (!s->tmpl) {
        s->template_why = "no template in the model: plain";
        if ((st = ftc_chat_template_preset("plain", &s->tmpl, err))) goto fail;
    }
    s->n_stop_gen = ftc_infer_generate_stop_ids(&s->im, s->stop_gen, 16);
    s->n_stop_chat = ftc_infer_stop_ids(&s->im, s->stop_chat, 12);
    if ((st = ftc_infer_template_stops(&s->im, s->tmpl, s->stop_chat, &s->n_stop_chat, 16, &s->chat_stop_text, err)))
        goto fail;
    if (!s->chat_stop_text && ftc_chat_template_stop_text(s->tmpl) &&
        !(s->chat_stop_text = strdup(ftc_chat_template_stop_text(s->tmpl)))) {
        st = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        goto fail;
    }
engine:
    if ((st = ftc_sv_engine_init(s, err))) goto fail;

    char ports[300], threads[16];
    if (strchr(s->o.host, ':')) snprintf(ports, sizeof ports, "[%s]:%d", s->o.host, s->o.port);
    else snprintf(ports, sizeof ports, "%s:%d", s->o.host, s->o.port);
    snprintf(threads, sizeof threads, "%d", s->o.slots * FTC_SERVE_MAX_N + s->o.queue + 8);
    const char *opts[] = {"listening_ports", ports, "num_threads", threads, "enable_keep_alive", "yes",
                          "request_timeout_ms", "60000", NULL};
    struct mg_callbacks cb = {0};
    cb.begin_request = begin_request;
    cb.log_message = quiet_log;
    mg_init_library(0);
    struct mg_init_data init = {.callbacks = &cb, .user_data = s, .configuration_options = opts};
    struct mg_error_data ed = {0};
    char ebuf[256] = "";
    ed.text = ebuf, ed.text_buffer_size = sizeof ebuf;
    s->mg = mg_start2(&init, &ed);
    if (!s->mg) {
        st = ftc_errf(err, FTC_E_IO, "cannot listen on %s: %s", ports, ebuf[0] ? ebuf : "civetweb failed to start");
        goto fail;
    }
    struct mg_server_port sp[4];
    int np = mg_get_server_ports(s->mg, 4, sp);
    s->port = np > 0 ? sp[0].port : s->o.port;
    *out = s;
    return FTC_OK;
fail:
    ftc_server_stop(s);
    return st;
}

int ftc_server_port(const ftc_server *s) { return s->port; }
const char *ftc_server_model_id(const ftc_server *s) { return s->model_id; }

void ftc_server_stop(ftc_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->work);
    /* the engine ends every generation at its next token (finish_reason "length") and refuses the waiting
     * requests (503); their handlers write those answers. civetweb fails every write once mg_stop has begun, so
     * it only starts when no handler is left. New requests meanwhile get 503 at once. */
    while (s->mg && s->handlers > 0) pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->mg) {
        mg_stop(s->mg);
        mg_exit_library();
    }
    ftc_sv_engine_free(s);
    ftc_chat_template_free(s->tmpl);
    free(s->chat_stop_text);
    ftc_classify_free_labels(s->labels, s->num_labels);
    if (s->have_im) ftc_infer_close(&s->im);
    free(s->api_key);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

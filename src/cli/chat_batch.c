/* ftc chat --data: answers held-out conversations one at a time, as a user would get them, and scores each
 * answer against the conversation's last assistant message (the reference): token-F1, ROUGE-L, prompt tokens,
 * time to the first token and to the whole answer. With --rag-index the conversation's user messages are
 * embedded, the K nearest index texts are put into the system message first (retrieval-augmented generation;
 * the retrieval time counts in both latencies). */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/data.h"
#include "ftc/eval.h"
#include "ftc/export.h"
#include "ftc/infer.h"
#include "ftc/retrieval.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_K 16

static const char DEFAULT_RAG_PROMPT[] =
    "Answer the customer's question using only these entries of the FAQ. If they do not answer it, say politely "
    "that you can only help with questions about the service.";

typedef struct {
    char **text;
    size_t n, cap;
} strs;

static void strs_free(strs *s) {
    for (size_t i = 0; i < s->n; i++) free(s->text[i]);
    free(s->text);
}

static ftc_status strs_push(strs *s, const char *t, ftc_err *err) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **p = realloc(s->text, cap * sizeof *p);
        if (!p) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        s->text = p, s->cap = cap;
    }
    if (!(s->text[s->n] = strdup(t))) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    s->n++;
    return FTC_OK;
}

/* The RAG index: every record's text ({"text"} or {"text", "label"}, any format ftc train reads). */
static ftc_status read_index(const char *path, strs *out, ftc_err *err) {
    ftc_reader *r;
    ftc_status s = ftc_reader_open(path, &(ftc_read_opts){0}, &r, err);
    if (s) return s;
    ftc_record rec = {0};
    bool got;
    while (!(s = ftc_reader_next(r, &rec, &got, err)) && got) {
        if (!rec.text) {
            s = ftc_errf(err, FTC_E_INPUT, "%s:%ld: an index record needs \"text\"", path, rec.line);
            break;
        }
        if ((s = strs_push(out, rec.text, err))) break;
    }
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    if (!s && out->n == 0) s = ftc_errf(err, FTC_E_INPUT, "%s: no records", path);
    return s;
}

typedef struct {
    ftc_model *m;
    ftc_tokenizer *tok;
    strs docs;
    float *keys; /* [n, dim] */
    int dim, k;
    const char *prompt;
} rag;

static void rag_free(rag *g) {
    ftc_model_free(g->m);
    ftc_tokenizer_free(g->tok);
    strs_free(&g->docs);
    free(g->keys);
}

static ftc_status rag_open(rag *g, const char *model, const char *index, int k, ftc_err *err) {
    ftc_status s = read_index(index, &g->docs, err);
    if (!s) s = ftc_tokenizer_load(model, &g->tok, err);
    if (!s) s = ftc_model_load(model, FTC_TASK_ENCODE, &g->m, err);
    if (s) return s;
    g->dim = ftc_model_config_of(g->m)->hidden_size;
    g->k = k < (int)g->docs.n ? k : (int)g->docs.n;
    if (!(g->keys = malloc(sizeof(float) * g->docs.n * (size_t)g->dim))) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    return ftc_embed_texts(g->m, g->tok, (const char *const *)g->docs.text, g->docs.n, 256, 32, g->keys, err);
}

/* The K most similar index entries to query (cosine; the lower index wins a tie), most similar first. */
static ftc_status rag_top(const rag *g, const char *query, int *top, ftc_err *err) {
    float q[4096], best[MAX_K];
    if (g->dim > 4096) return ftc_errf(err, FTC_E_INPUT, "the retrieval model's hidden size %d is over 4096", g->dim);
    ftc_status s = ftc_embed_texts(g->m, g->tok, &query, 1, 256, 1, q, err);
    if (s) return s;
    int n = 0;
    for (size_t i = 0; i < g->docs.n; i++) {
        float d = 0;
        for (int c = 0; c < g->dim; c++) d += q[c] * g->keys[i * (size_t)g->dim + c];
        int at = n < g->k ? n : g->k;
        while (at > 0 && d > best[at - 1]) at--;
        if (at >= g->k) continue;
        int last = n < g->k ? n : g->k - 1;
        for (int j = last; j > at; j--) best[j] = best[j - 1], top[j] = top[j - 1];
        best[at] = d, top[at] = (int)i;
        if (n < g->k) n++;
    }
    return FTC_OK;
}

/* system + the RAG prompt + the retrieved entries, numbered: a new string. */
static char *rag_system(const rag *g, const char *system, const int *top) {
    size_t len = strlen(system) + strlen(g->prompt) + 8;
    for (int i = 0; i < g->k; i++) len += strlen(g->docs.text[top[i]]) + 16;
    char *s = malloc(len);
    if (!s) return NULL;
    size_t at = (size_t)snprintf(s, len, "%s%s%s\n", system, system[0] ? "\n\n" : "", g->prompt);
    for (int i = 0; i < g->k; i++) at += (size_t)snprintf(s + at, len - at, "\n%d. %s", i + 1, g->docs.text[top[i]]);
    return s;
}

typedef struct {
    double t0, first;
} timing;

static void on_text(void *ctx, const char *text) {
    timing *t = ctx;
    if (t->first == 0 && text[0]) t->first = ftc_now();
}

static const char *stop_name(ftc_gen_stop s) {
    return s == FTC_GEN_STOP_TOKEN ? "end_of_turn" : s == FTC_GEN_MAX_TOKENS ? "max_tokens" : "context_full";
}

static json_t *messages_json(const ftc_record *rec, const char *system, int skip_system) {
    json_t *a = json_array();
    static const char *role[] = {"system", "user", "assistant"};
    if (system) json_array_append_new(a, json_pack("{s:s, s:s}", "role", "system", "content", system));
    for (int i = skip_system; i < rec->n_msgs; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "role", role[rec->msgs[i].role], "content", rec->msgs[i].content));
    return a;
}

int cli_chat_batch(const cli_chat_batch_args *a) {
    ftc_err err;
    int rc = 0;
    rag g = {0};
    g.prompt = a->rag_prompt ? a->rag_prompt : DEFAULT_RAG_PROMPT;
    ftc_infer_model im = {0};
    bool im_open = false;
    ftc_chat_template *t = NULL;
    ftc_reader *r = NULL;
    ftc_record rec = {0};
    json_t *rag_out = json_array();
    double sum_f1 = 0, sum_rl = 0, sum_prompt = 0, sum_gen = 0, sum_ttft = 0, sum_lat = 0;
    long n = 0, n_eot = 0;
    if (!rag_out) return cli_fail("chat", &(ftc_err){FTC_E_NOMEM, "out of memory"});
    if (a->rag_index && rag_open(&g, a->rag_model, a->rag_index, a->rag_k, &err)) goto fail;
    if (ftc_infer_open(a->model, FTC_TASK_CAUSAL_LM, &im, &err)) goto fail;
    im.kv_type = a->kv_type;
    im_open = true;
    if (a->adapter && (ftc_model_load_adapter(im.model, a->adapter, &err) || ftc_model_merge_lora(im.model, &err)))
        goto fail;
    const char *why;
    ftc_status s = ftc_infer_chat_template(&im, a->chat_template, &t, &why, &err);
    if (s == FTC_E_USAGE) {
        rc = cli_usage_error("chat", "%s", err.msg);
        goto done;
    }
    if (s) goto fail;
    if (!t && ftc_chat_template_preset("plain", &t, &err)) goto fail;
    if (ftc_reader_open(a->data, &(ftc_read_opts){.format = FTC_FMT_CHAT}, &r, &err)) goto fail;
    bool got;
    while (!(s = ftc_reader_next(r, &rec, &got, &err)) && got) {
        int last = rec.n_msgs - 1;
        if (rec.msgs[last].role != FTC_ROLE_ASSISTANT || last < 1 || rec.msgs[last - 1].role != FTC_ROLE_USER) {
            ftc_errf(&err, FTC_E_INPUT, "%s:%ld: a conversation to answer must end with a user message and the "
                     "reference assistant answer", a->data, rec.line);
            goto fail;
        }
        int first = rec.msgs[0].role == FTC_ROLE_SYSTEM ? 1 : 0;
        const char *system = first ? rec.msgs[0].content : "";
        timing tm = {ftc_now(), 0};
        char *sys = NULL;
        json_t *retrieved = NULL;
        if (a->rag_index) {
            size_t qlen = 1;
            for (int i = first; i < last; i++)
                if (rec.msgs[i].role == FTC_ROLE_USER) qlen += strlen(rec.msgs[i].content) + 1;
            char *q = malloc(qlen);
            int top[MAX_K];
            if (!q) {
                ftc_errf(&err, FTC_E_NOMEM, "out of memory");
                goto fail;
            }
            q[0] = 0;
            for (int i = first; i < last; i++)
                if (rec.msgs[i].role == FTC_ROLE_USER) strcat(strcat(q, q[0] ? " " : ""), rec.msgs[i].content);
            s = rag_top(&g, q, top, &err);
            free(q);
            if (s) goto fail;
            if (!(sys = rag_system(&g, system, top))) {
                ftc_errf(&err, FTC_E_NOMEM, "out of memory");
                goto fail;
            }
            retrieved = json_array();
            for (int i = 0; i < g.k; i++) json_array_append_new(retrieved, json_integer(top[i]));
            json_array_append_new(rag_out, json_pack("{s:o}", "messages", messages_json(&rec, sys, first)));
        }
        ftc_chat *c;
        if (ftc_chat_create(&im, t, sys ? sys : first ? system : NULL, &c, &err)) {
            free(sys);
            json_decref(retrieved);
            goto fail;
        }
        free(sys);
        s = FTC_OK;
        for (int i = first; i < last - 1 && !s; i++) s = ftc_chat_add(c, rec.msgs[i].role, rec.msgs[i].content, &err);
        char *reply = NULL;
        ftc_chat_stats st;
        ftc_chat_opts o = {.max_new_tokens = a->max_tokens, .sampler = a->sampler, .seed = (uint64_t)a->seed,
                           .on_text = on_text, .ctx = &tm};
        if (!s) s = ftc_chat_reply(c, rec.msgs[last - 1].content, &o, &reply, &st, &err);
        double t1 = ftc_now();
        ftc_chat_free(c);
        double f1 = 0, rl = 0;
        if (!s) s = ftc_text_token_f1(reply, rec.msgs[last].content, &f1, &err);
        if (!s) s = ftc_text_rouge_l(reply, rec.msgs[last].content, &rl, &err);
        if (s) {
            free(reply);
            json_decref(retrieved);
            goto fail;
        }
        double ttft = 1000 * ((tm.first ? tm.first : t1) - tm.t0), lat = 1000 * (t1 - tm.t0);
        json_t *o_line = json_pack("{s:I, s:s, s:s, s:s, s:i, s:i, s:s, s:f, s:f, s:f, s:f}", "line",
                                   (json_int_t)rec.line, "question", rec.msgs[last - 1].content, "answer", reply,
                                   "reference", rec.msgs[last].content, "prompt_tokens", st.prompt_tokens,
                                   "generated_tokens", st.generated_tokens, "stop", stop_name(st.stop), "ttft_ms",
                                   ttft, "latency_ms", lat, "token_f1", f1, "rouge_l", rl);
        free(reply);
        if (o_line && retrieved) json_object_set_new(o_line, "retrieved", retrieved);
        else json_decref(retrieved);
        char *line = o_line ? json_dumps(o_line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;
        json_decref(o_line);
        if (!line) {
            ftc_errf(&err, FTC_E_NOMEM, "out of memory");
            goto fail;
        }
        puts(line);
        free(line);
        fflush(stdout);
        if ((rc = cli_check_stdout("chat"))) goto done;
        n++;
        n_eot += st.stop == FTC_GEN_STOP_TOKEN;
        sum_f1 += f1, sum_rl += rl, sum_prompt += st.prompt_tokens, sum_gen += st.generated_tokens;
        sum_ttft += ttft, sum_lat += lat;
        if (a->progress) fprintf(stderr, "\rftc chat: %ld answered", n);
    }
    if (s) goto fail;
    if (a->progress && n) fputc('\n', stderr);
    if (n == 0) {
        ftc_errf(&err, FTC_E_INPUT, "%s: no conversations", a->data);
        goto fail;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_t *sum = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "n", (json_int_t)n, "token_f1", sum_f1 / n,
                            "rouge_l", sum_rl / n, "prompt_tokens", sum_prompt / n, "generated_tokens", sum_gen / n,
                            "ttft_ms", sum_ttft / n, "latency_ms", sum_lat / n, "end_of_turn_share",
                            (double)n_eot / n, "peak_rss_mb", ru.ru_maxrss / 1024.0);
    char *text = sum ? json_dumps(sum, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(sum);
    if (!text) {
        ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        goto fail;
    }
    fprintf(stderr, "ftc chat: %ld conversations: token-F1 %.4f, ROUGE-L %.4f, %.1f prompt tokens, first token %.0f ms, "
            "answer %.0f ms, %.0f%% ended at the end of turn\n", n, sum_f1 / n, sum_rl / n, sum_prompt / n,
            sum_ttft / n, sum_lat / n, 100.0 * n_eot / n);
    if (a->summary) {
        size_t len = strlen(text);
        text[len] = '\n'; /* json_dumps leaves room for the NUL: write it as the final newline */
        s = ftc_write_file_atomic(a->summary, text, len + 1, &err);
    }
    free(text);
    if (s) goto fail;
    if (a->rag_out) {
        size_t cap = 0, len = 0;
        char *buf = NULL;
        for (size_t i = 0; i < json_array_size(rag_out) && !s; i++) {
            char *l = json_dumps(json_array_get(rag_out, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
            size_t ll = l ? strlen(l) : 0;
            if (l && len + ll + 2 > cap) {
                cap = (len + ll + 2) * 2;
                char *b = realloc(buf, cap);
                if (!b) free(l), l = NULL;
                else buf = b;
            }
            if (!l) s = ftc_errf(&err, FTC_E_NOMEM, "out of memory");
            else {
                memcpy(buf + len, l, ll);
                len += ll;
                buf[len++] = '\n';
                free(l);
            }
        }
        if (!s) s = ftc_write_file_atomic(a->rag_out, buf ? buf : "", len, &err);
        free(buf);
        if (s) goto fail;
    }
    goto done;
fail:
    rc = cli_fail("chat", &err);
done:
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    json_decref(rag_out);
    ftc_chat_template_free(t);
    if (im_open) ftc_infer_close(&im);
    rag_free(&g);
    return rc;
}

/* The model side of ftc serve: one thread owns the model, the tokenizer and the slots (a KV cache each). It
 * takes queued jobs, renders and tokenizes them, gives each choice a free slot, and steps every busy slot by
 * one token per round: sample from the slot's logits (ftc_sample, the sampler ftc generate uses, with the
 * choice's own RNG), detokenize incrementally (ftc_text_stream), cut at a stop string, hold back text that may
 * still become one, then run the token through the model. A choice of a request with seed S samples exactly as
 * `ftc generate --seed S+index` does. */
#include "serve/serve_internal.h"
#include "ftc/matmul.h"
#include "ftc/retrieval.h"
#include <errno.h>
#include <math.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

ftc_sv_job *ftc_sv_job_new(void) {
    ftc_sv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    if (pthread_cond_init(&j->cv, NULL)) {
        free(j);
        return NULL;
    }
    for (int i = 0; i < FTC_SERVE_MAX_N; i++) j->ch[i].slot = -1;
    j->fd = -1;
    return j;
}

static void free_lp(ftc_sv_logprob *lp) {
    free(lp->tok.text);
    for (int k = 0; k < lp->n_top; k++) free(lp->top[k].text);
}

void ftc_sv_job_free(ftc_sv_job *j) {
    if (!j) return;
    for (int i = 0; i < FTC_SERVE_MAX_N; i++) {
        ftc_sv_choice *c = &j->ch[i];
        free(c->text);
        if (c->ts_init) ftc_text_stream_free(&c->ts);
        for (int k = 0; k < c->n_lps; k++) free_lp(&c->lps[k]);
        free(c->lps);
    }
    free(j->prompt);
    free(j->vecs);
    ftc_serve_request_free(&j->req);
    pthread_cond_destroy(&j->cv);
    free(j);
}

bool ftc_sv_enqueue(ftc_server *s, ftc_sv_job *j) {
    if (s->stopping || s->queued >= s->o.queue) return false;
    j->next = NULL;
    if (s->qtail) s->qtail->next = j;
    else s->qhead = j;
    s->qtail = j;
    s->queued++;
    pthread_cond_signal(&s->work);
    return true;
}

static ftc_sv_job *dequeue_head(ftc_server *s) {
    ftc_sv_job *j = s->qhead;
    if (!j) return NULL;
    s->qhead = j->next;
    if (!s->qhead) s->qtail = NULL;
    s->queued--;
    j->next = NULL;
    return j;
}

/* Ends a job before any choice ran (mu held). */
static void reject(ftc_sv_job *j, int status, const char *code, const char *msg) {
    j->status = status;
    j->error_code = code;
    if (msg != j->error) snprintf(j->error, sizeof j->error, "%s", msg);
    j->released = true;
    pthread_cond_broadcast(&j->cv);
}

/* Renders (chat) or tokenizes the prompt and fixes the token budget. Engine thread, mu not held. Returns the
 * HTTP status of a refusal (0 ok) with its message in j->error. */
static int prepare(ftc_server *s, ftc_sv_job *j) {
    ftc_err err;
    ftc_ids ids = {0};
    ftc_status st;
    ftc_serve_request *r = &j->req;
    if (r->kind == FTC_SERVE_CHAT) {
        ftc_special_ids sp = ftc_tokenizer_special(s->im.tok);
        const char *bos = sp.bos >= 0 ? ftc_tokenizer_id_to_token(s->im.tok, sp.bos) : "";
        const char *eos = sp.eos >= 0 ? ftc_tokenizer_id_to_token(s->im.tok, sp.eos) : "";
        ftc_render_opts ro = {.bos = bos, .eos = eos, .add_generation_prompt = true};
        ftc_rendered rd;
        st = ftc_template_render_messages(s->tmpl, r->messages, &ro, &rd, &err);
        if (st == FTC_OK) {
            st = ftc_tokenizer_encode(s->im.tok, rd.text, rd.len, ftc_chat_template_adds_special(s->tmpl), 0, &ids,
                                      &err);
            ftc_rendered_free(&rd);
        } else {
            ftc_err_prefix(&err, "messages");
        }
    } else {
        st = ftc_tokenizer_encode(s->im.tok, r->prompt, strlen(r->prompt), true, 0, &ids, &err);
        if (st == FTC_OK && ids.n == 0) { /* as ftc generate: an empty prompt starts from BOS */
            int32_t bos = ftc_tokenizer_special(s->im.tok).bos;
            if (bos < 0) bos = ftc_model_config_of(s->im.model)->bos_token_id;
            if (bos < 0 || bos >= s->V)
                st = ftc_errf(&err, FTC_E_INPUT, "the prompt is empty and the model defines no BOS token to start from");
            else if (!(ids.ids = malloc(sizeof *ids.ids)))
                st = ftc_errf(&err, FTC_E_NOMEM, "out of memory");
            else
                ids.ids[0] = bos, ids.n = 1, ids.cap = 1;
        }
    }
    if (st) {
        ftc_ids_free(&ids);
        snprintf(j->error, sizeof j->error, "%s", err.msg);
        j->error_code = st == FTC_E_NOMEM ? "server_error" : NULL;
        return st == FTC_E_NOMEM || st == FTC_E_INTERNAL ? 500 : 400;
    }
    if (ids.n == 0) {
        ftc_ids_free(&ids);
        snprintf(j->error, sizeof j->error, "the messages render to no tokens with the chat template");
        return 400;
    }
    if ((int)ids.n >= s->ctx) {
        snprintf(j->error, sizeof j->error, "the prompt is %zu tokens; this server's context is %d positions "
                 "(the prompt must leave room for at least one token)", ids.n, s->ctx);
        j->error_code = "context_length_exceeded";
        ftc_ids_free(&ids);
        return 400;
    }
    j->prompt = ids.ids;
    j->n_prompt = (int)ids.n;
    int room = s->ctx - j->n_prompt + 1; /* the last token is sampled, never fed */
    int want = r->max_tokens >= 0 ? r->max_tokens : r->kind == FTC_SERVE_COMPLETION ? 16 : room;
    j->max_new = want < room ? want : room;
    for (int i = 0; i < r->n; i++) {
        ftc_sv_choice *c = &j->ch[i];
        c->job = j, c->index = i;
        ftc_rng_seed(&c->rng, r->seed + (uint64_t)i);
        if (ftc_text_stream_init(&c->ts, s->im.tok, j->prompt, (size_t)j->n_prompt, &err)) {
            snprintf(j->error, sizeof j->error, "%s", err.msg);
            return 500;
        }
        c->ts_init = true;
    }
    j->prepared = true;
    return 0;
}

/* mu held */
static void finish(ftc_server *s, ftc_sv_choice *c, const char *why) {
    c->finish = why;
    c->shown = c->len; /* text held back as a possible stop string is the answer's after all */
    if (c->slot >= 0) s->slots[c->slot].c = NULL;
    ftc_sv_job *j = c->job;
    j->n_finished++;
    if (j->n_finished == j->req.n) j->released = true;
    pthread_cond_broadcast(&j->cv);
}

static bool is_stop_id(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of stop. */
static size_t partial_stop(const char *s, size_t n, const char *stop) {
    size_t k = strlen(stop);
    for (size_t m = k - 1; m > 0; m--)
        if (m <= n && !memcmp(s + n - m, stop, m)) return m;
    return 0;
}

/* Appends piece; cuts the text at the first stop string (true when one completed), else holds back what may
 * still become one. mu held. */
static bool add_text(ftc_server *s, ftc_sv_choice *c, const char *piece, bool *oom) {
    size_t n = strlen(piece);
    if (c->len + n + 1 > c->cap) {
        size_t cap = (c->len + n + 1) * 2;
        char *t = realloc(c->text, cap);
        if (!t) return *oom = true, false;
        c->text = t, c->cap = cap;
    }
    memcpy(c->text + c->len, piece, n + 1);
    size_t from = c->shown; /* a stop string starts after what was shown */
    c->len += n;
    const char *stops[FTC_SERVE_MAX_STOP + 1];
    int ns = 0;
    for (int i = 0; i < c->job->req.n_stop; i++) stops[ns++] = c->job->req.stop[i];
    if (c->job->req.kind == FTC_SERVE_CHAT && s->chat_stop_text) stops[ns++] = s->chat_stop_text;
    size_t cut = c->len;
    bool hit = false;
    for (int i = 0; i < ns; i++) {
        const char *h = memmem(c->text + from, c->len - from, stops[i], strlen(stops[i]));
        if (h && (size_t)(h - c->text) < cut) cut = (size_t)(h - c->text), hit = true;
    }
    if (hit) {
        c->len = cut;
        c->text[cut] = 0;
        c->shown = cut;
        return true;
    }
    size_t hold = 0;
    for (int i = 0; i < ns; i++) {
        size_t m = partial_stop(c->text, c->len, stops[i]);
        if (m > hold) hold = m;
    }
    if (c->len - hold > c->shown) c->shown = c->len - hold;
    return false;
}

/* The text a token adds after prev, as the detokenizer streams it: decode(prev, id) minus decode(prev), so
 * SentencePiece's leading space stays (decoding a lone "\u2581the" drops it). Special tokens included. */
static char *token_text(ftc_server *s, int32_t prev, int32_t id) {
    char *both = NULL, *one = NULL;
    ftc_err err;
    int32_t pair[2] = {prev, id};
    if (prev >= 0 && !ftc_tokenizer_decode(s->im.tok, pair, 2, false, &both, &err) &&
        !ftc_tokenizer_decode(s->im.tok, pair, 1, false, &one, &err) && !strncmp(both, one, strlen(one))) {
        char *t = strdup(both + strlen(one));
        free(both), free(one);
        return t ? t : strdup("");
    }
    free(both), free(one);
    if (ftc_tokenizer_decode(s->im.tok, &id, 1, false, &one, &err)) return strdup("");
    return one;
}

/* log-softmax of the slot's logits: the chosen token's and the k most likely. */
static bool record_logprobs(ftc_server *s, ftc_sv_slot *sl, ftc_sv_choice *c, int32_t prev, int32_t id, int k,
                            size_t end) {
    if (c->n_lps == c->cap_lps) {
        int cap = c->cap_lps ? 2 * c->cap_lps : 32;
        ftc_sv_logprob *p = realloc(c->lps, (size_t)cap * sizeof *p);
        if (!p) return false;
        c->lps = p, c->cap_lps = cap;
    }
    const float *x = sl->logits;
    int V = s->V;
    double mx = x[0];
    for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    ftc_sv_logprob *lp = &c->lps[c->n_lps++];
    memset(lp, 0, sizeof *lp);
    lp->tok = (ftc_sv_alt){id, (float)(x[id] - lse), token_text(s, prev, id)};
    lp->end = end;
    /* the k largest, ties to the lower id (as ftc_sample's greedy pick) */
    for (int t = 0; t < k && t < V; t++) {
        int best = -1;
        for (int i = 0; i < V; i++) {
            bool taken = false;
            for (int q = 0; q < t && !taken; q++) taken = lp->top[q].id == i;
            if (!taken && (best < 0 || x[i] > x[best])) best = i;
        }
        lp->top[t] = (ftc_sv_alt){best, (float)(x[best] - lse), token_text(s, prev, best)};
        lp->n_top = t + 1;
    }
    return true;
}

/* mu held */
static void fail_choice(ftc_sv_choice *c, const ftc_err *err) {
    ftc_sv_job *j = c->job;
    j->status = 500;
    j->error_code = "server_error";
    snprintf(j->error, sizeof j->error, "%s", err->msg);
}

/* One token for the choice in slot sl: samples from the slot's logits and publishes the text. Returns the token
 * to run through the model next (the engine batches them over the slots), -1 when the choice has ended.
 * Engine thread, mu not held. */
static int32_t step(ftc_server *s, ftc_sv_slot *sl) {
    ftc_sv_choice *c = sl->c;
    ftc_sv_job *j = c->job;
    ftc_err err;
    pthread_mutex_lock(&s->mu);
    bool stop_now = j->cancelled || s->stopping;
    if (stop_now) finish(s, c, "length");
    pthread_mutex_unlock(&s->mu);
    if (stop_now) return -1;
    ftc_model *m = s->im.model;
    if (!sl->prefilled) {
        ftc_kv_cache_reset(sl->cache);
        if (ftc_model_decode(m, sl->cache, j->prompt, j->n_prompt, sl->logits, false, &err)) goto fail;
        sl->prefilled = true;
    }
    if (j->max_new == 0) {
        pthread_mutex_lock(&s->mu);
        finish(s, c, "length");
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    ftc_sampler smp = {j->req.temperature, j->req.top_k, j->req.top_p};
    int32_t next = ftc_sample(sl->logits, s->V, &smp, &c->rng, sl->prob, sl->idx);
    const int32_t *stops = j->req.kind == FTC_SERVE_CHAT ? s->stop_chat : s->stop_gen;
    int n_stops = j->req.kind == FTC_SERVE_CHAT ? s->n_stop_chat : s->n_stop_gen;
    if (is_stop_id(stops, n_stops, next)) {
        char *tail = NULL;
        if (ftc_text_stream_flush(&c->ts, &tail, &err)) goto fail;
        pthread_mutex_lock(&s->mu);
        bool oom = false;
        add_text(s, c, tail, &oom);
        finish(s, c, "stop");
        pthread_mutex_unlock(&s->mu);
        free(tail);
        return -1;
    }
    c->tokens++;
    char *piece = NULL;
    if (ftc_text_stream_push(&c->ts, next, &piece, &err)) goto fail;
    bool last = c->tokens >= j->max_new || ftc_kv_cache_len(sl->cache) >= s->ctx;
    char *tail = NULL;
    if (last && ftc_text_stream_flush(&c->ts, &tail, &err)) {
        free(piece);
        goto fail;
    }
    int32_t prev = c->tokens > 1 ? c->prev : j->prompt[j->n_prompt - 1];
    c->prev = next;
    pthread_mutex_lock(&s->mu);
    bool oom = false;
    /* the token's text ends here; a token cut by a stop string ends past the answer and is not reported */
    size_t end = c->len + strlen(piece) + (tail ? strlen(tail) : 0);
    bool hit = add_text(s, c, piece, &oom);
    if (!hit && tail) hit = add_text(s, c, tail, &oom);
    bool lp_ok = j->req.logprobs < 0 || record_logprobs(s, sl, c, prev, next, j->req.logprobs, end);
    if (hit) finish(s, c, "stop");
    else if (last || oom || !lp_ok) finish(s, c, "length");
    else pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&s->mu);
    free(piece);
    free(tail);
    if (hit || last || oom || !lp_ok) return -1;
    return next;
fail:
    pthread_mutex_lock(&s->mu);
    fail_choice(c, &err);
    finish(s, c, "length");
    pthread_mutex_unlock(&s->mu);
    return -1;
}

/* /v1/classify and /v1/embeddings: the whole request at once, in batches (engine thread, mu not held). */
static void run_inputs(ftc_server *s, ftc_sv_job *j) {
    ftc_err err;
    ftc_status st = FTC_OK;
    int n = j->req.n_inputs, dim = j->req.kind == FTC_SERVE_CLASSIFY ? s->num_labels : s->hidden;
    ftc_ids *ids = calloc((size_t)n, sizeof *ids);
    j->vecs = malloc((size_t)n * dim * sizeof(float));
    if (!ids || !j->vecs) st = ftc_errf(&err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; !st && i < n; i++) {
        st = ftc_classify_encode(&s->im, j->req.inputs[i], s->max_len, &ids[i], &err);
        if (st) ftc_err_prefix(&err, "input[%d]", i);
        else j->in_tokens += (int)ids[i].n;
    }
    enum { BATCH = 16 };
    for (int b = 0; !st && b < n; b += BATCH) {
        int k = n - b < BATCH ? n - b : BATCH;
        if (j->req.kind == FTC_SERVE_CLASSIFY)
            st = ftc_classify_ids(&s->im, ids + b, k, dim, j->vecs + (size_t)b * dim, &err);
        else
            st = ftc_embed_texts(s->im.model, s->im.tok, (const char *const *)j->req.inputs + b, (size_t)k, s->max_len,
                                 k, j->vecs + (size_t)b * dim, &err);
    }
    for (int i = 0; ids && i < n; i++) ftc_ids_free(&ids[i]);
    free(ids);
    pthread_mutex_lock(&s->mu);
    if (st) {
        j->status = st == FTC_E_NOMEM || st == FTC_E_INTERNAL ? 500 : 400;
        snprintf(j->error, sizeof j->error, "%s", err.msg);
    }
    j->prepared = true;
    j->released = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&s->mu);
}

/* After poll: whether the peer closed (or half-closed) its side, or the socket failed. Bytes the client sent
 * (a pipelined request) are left unread and do not count; a read end that is at end of file does. */
static bool client_gone(const struct pollfd *p) {
    if (p->revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return true;
    if (!(p->revents & POLLIN)) return false;
    char c;
    ssize_t r = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void watch(ftc_server *s, ftc_sv_job *j, int *n) {
    for (int k = 0; k < *n; k++)
        if (s->pjobs[k] == j) return; /* n > 1 puts a job in several slots */
    if (j->fd < 0 || j->cancelled) return;
    s->pjobs[*n] = j;
    s->pfds[(*n)++] = (struct pollfd){j->fd, POLLIN | POLLRDHUP, 0};
}

/* Cancels the generation jobs (in a slot or waiting) whose client has gone: one poll(2) over their sockets,
 * without waiting, before every decode step, so a closed connection frees its slot at the next token whether
 * the answer is streamed or not, and a waiting one leaves the queue at once (499, nothing is sent). A handler
 * keeps its connection (and socket) open until the engine releases its job, so every fd polled here is the
 * job's. mu held, engine thread. */
static void check_clients(ftc_server *s) {
    int want = s->n_slots + s->queued;
    if (want > s->cap_pfds) {
        struct pollfd *p = realloc(s->pfds, (size_t)want * sizeof *p);
        if (p) s->pfds = p;
        ftc_sv_job **q = realloc(s->pjobs, (size_t)want * sizeof *q);
        if (q) s->pjobs = q;
        if (!p || !q) return; /* no memory: the check waits for a later step */
        s->cap_pfds = want;
    }
    int n = 0;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].c) watch(s, s->slots[i].c->job, &n);
    for (ftc_sv_job *j = s->qhead; j && n < want; j = j->next) watch(s, j, &n);
    if (n == 0 || poll(s->pfds, (nfds_t)n, 0) <= 0) return;
    for (int k = 0; k < n; k++)
        if (client_gone(&s->pfds[k])) s->pjobs[k]->cancelled = true;
    /* out of the queue, wherever they wait (one with choices in slots ends there, at its next token) */
    for (ftc_sv_job **pp = &s->qhead, *prev = NULL; *pp;) {
        ftc_sv_job *j = *pp;
        if (!j->cancelled || j->n_admitted > 0) {
            prev = j, pp = &j->next;
            continue;
        }
        *pp = j->next;
        if (s->qtail == j) s->qtail = prev;
        s->queued--;
        j->next = NULL;
        reject(j, 499, "client_closed", "the client went away");
    }
}

static void *engine_main(void *p) {
    ftc_server *s = p;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int busy = 0;
        for (int i = 0; i < s->n_slots; i++) busy += s->slots[i].c != NULL;
        if (!busy && !s->qhead) {
            if (s->stopping) break;
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        check_clients(s);
        /* admit: each choice of the job at the queue's head into a free slot */
        while (s->qhead) {
            ftc_sv_job *j = s->qhead;
            if (s->stopping || j->cancelled) {
                dequeue_head(s);
                if (j->n_admitted == 0 && j->cancelled) reject(j, 499, "client_closed", "the client went away");
                else if (j->n_admitted == 0) reject(j, 503, "server_shutting_down", "the server is shutting down");
                else for (int i = j->n_admitted; i < j->req.n; i++) finish(s, &j->ch[i], "length"), j->n_admitted++;
                continue;
            }
            if (j->req.kind == FTC_SERVE_CLASSIFY || j->req.kind == FTC_SERVE_EMBED) {
                dequeue_head(s);
                pthread_mutex_unlock(&s->mu);
                run_inputs(s, j);
                pthread_mutex_lock(&s->mu);
                continue;
            }
            if (!j->prepared) {
                pthread_mutex_unlock(&s->mu);
                int st = prepare(s, j);
                pthread_mutex_lock(&s->mu);
                if (st) {
                    dequeue_head(s);
                    reject(j, st, j->error_code, j->error);
                    continue;
                }
            }
            int free_slot = -1;
            for (int i = 0; i < s->n_slots && free_slot < 0; i++)
                if (!s->slots[i].c) free_slot = i;
            if (free_slot < 0) break;
            ftc_sv_choice *c = &j->ch[j->n_admitted++];
            c->slot = free_slot;
            s->slots[free_slot].c = c;
            s->slots[free_slot].prefilled = false;
            if (j->n_admitted == j->req.n) dequeue_head(s);
        }
        pthread_mutex_unlock(&s->mu);
        /* a token for every busy slot, then one pass of the model over all the slots that go on */
        int n = 0;
        for (int i = 0; i < s->n_slots; i++) {
            if (!s->slots[i].c) continue;
            int32_t next = step(s, &s->slots[i]);
            if (next >= 0) s->batch_slot[n] = i, s->batch_ids[n] = next, s->batch_caches[n++] = s->slots[i].cache;
        }
        ftc_err err;
        ftc_status st = n ? ftc_model_decode_batch(s->im.model, s->batch_caches, s->batch_ids, n, s->batch_logits, &err)
                          : FTC_OK;
        for (int k = 0; k < n; k++) {
            ftc_sv_slot *sl = &s->slots[s->batch_slot[k]];
            if (st == FTC_OK) {
                memcpy(sl->logits, s->batch_logits + (size_t)k * s->V, (size_t)s->V * sizeof(float));
                continue;
            }
            pthread_mutex_lock(&s->mu);
            fail_choice(sl->c, &err);
            finish(s, sl->c, "length");
            pthread_mutex_unlock(&s->mu);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    ftc_matmul_thread_release();
    return NULL;
}

ftc_status ftc_sv_engine_init(ftc_server *s, ftc_err *err) {
    s->V = ftc_model_config_of(s->im.model)->vocab_size;
    if (s->task != FTC_TASK_CAUSAL_LM) s->n_slots = 0;
    s->slots = calloc((size_t)(s->n_slots ? s->n_slots : 1), sizeof *s->slots);
    if (!s->slots) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; s->task == FTC_TASK_CAUSAL_LM && i < s->n_slots; i++) {
        ftc_sv_slot *sl = &s->slots[i];
        ftc_status st = ftc_kv_cache_create_typed(s->im.model, s->ctx < 256 ? s->ctx : 256, s->im.kv_type, &sl->cache, err);
        if (st) return st;
        sl->logits = malloc((size_t)s->V * sizeof(float));
        sl->prob = malloc((size_t)s->V * sizeof(float));
        sl->idx = malloc((size_t)s->V * sizeof(int32_t));
        if (!sl->logits || !sl->prob || !sl->idx) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    s->batch_logits = malloc((size_t)(s->n_slots ? s->n_slots : 1) * s->V * sizeof(float));
    s->batch_caches = calloc((size_t)(s->n_slots ? s->n_slots : 1), sizeof *s->batch_caches);
    s->batch_ids = calloc((size_t)(s->n_slots ? s->n_slots : 1), sizeof *s->batch_ids);
    s->batch_slot = calloc((size_t)(s->n_slots ? s->n_slots : 1), sizeof *s->batch_slot);
    if (!s->batch_logits || !s->batch_caches || !s->batch_ids || !s->batch_slot)
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (pthread_create(&s->engine, NULL, engine_main, s))
        return ftc_errf(err, FTC_E_INTERNAL, "cannot start the engine thread");
    s->engine_started = true;
    return FTC_OK;
}

void ftc_sv_engine_free(ftc_server *s) {
    if (s->engine_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->engine, NULL);
        s->engine_started = false;
    }
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        ftc_kv_cache_free(s->slots[i].cache);
        free(s->slots[i].logits), free(s->slots[i].prob), free(s->slots[i].idx);
    }
    free(s->slots);
    s->slots = NULL;
    free(s->batch_logits), free(s->batch_caches), free(s->batch_ids), free(s->batch_slot);
    free(s->pfds), free(s->pjobs);
    s->pfds = NULL, s->pjobs = NULL;
}

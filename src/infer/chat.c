/* A chat session: the conversation so far, rendered with the chat template the model was trained with, and
 * one KV cache. Each turn renders the whole conversation plus the template's generation prompt, keeps the
 * cached positions that match the rendering's tokens (normally everything up to the new user message) and
 * runs only the rest, then generates the reply. Rendering and tokenizing exactly as the data layer did for
 * training (ftc_template_render; BOS written by the template itself except for the plain template) keeps
 * the prompt in the format the model learned. */
#include "ftc/infer.h"
#include <stdlib.h>
#include <string.h>

struct ftc_chat {
    ftc_infer_model *im;
    const ftc_chat_template *tmpl;
    ftc_kv_cache *cache;
    ftc_chat_msg *msgs;
    int n, cap;
    int n_system;          /* a system message stays across /reset */
    const char *bos, *eos; /* token texts */
    int32_t stop[16];
    int n_stop;
    char *stop_text;       /* an end-of-turn that is not one token, or plain's next "### Question:" */
};

static ftc_status push_msg(ftc_chat *c, ftc_role role, const char *text, ftc_err *err) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        ftc_chat_msg *m = realloc(c->msgs, (size_t)cap * sizeof *m);
        if (!m) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        c->msgs = m, c->cap = cap;
    }
    char *copy = strdup(text);
    if (!copy) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    c->msgs[c->n++] = (ftc_chat_msg){role, copy, 1};
    return FTC_OK;
}

static void pop_msgs(ftc_chat *c, int keep) {
    while (c->n > keep) free(c->msgs[--c->n].content);
}

ftc_status ftc_chat_create(ftc_infer_model *im, const ftc_chat_template *t, const char *system, ftc_chat **out,
                           ftc_err *err) {
    *out = NULL;
    if (!t) return ftc_errf(err, FTC_E_USAGE, "chat needs a chat template");
    ftc_chat *c = calloc(1, sizeof *c);
    if (!c) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    c->im = im, c->tmpl = t;
    ftc_special_ids sp = ftc_tokenizer_special(im->tok);
    c->bos = sp.bos >= 0 ? ftc_tokenizer_id_to_token(im->tok, sp.bos) : "";
    c->eos = sp.eos >= 0 ? ftc_tokenizer_id_to_token(im->tok, sp.eos) : "";
    /* EOS ids (config, generation_config.json, tokenizer) and the end-of-turn the template writes after answers */
    c->n_stop = ftc_infer_stop_ids(im, c->stop, 12);
    ftc_status s = ftc_infer_template_stops(im, t, c->stop, &c->n_stop, 16, &c->stop_text, err);
    if (s == FTC_OK && !c->stop_text && ftc_chat_template_stop_text(t) && !(c->stop_text = strdup(ftc_chat_template_stop_text(t))))
        s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) s = ftc_kv_cache_create_typed(im->model, 256, im->kv_type, &c->cache, err);
    if (s == FTC_OK && system && system[0]) {
        s = push_msg(c, FTC_ROLE_SYSTEM, system, err);
        c->n_system = 1;
    }
    if (s) {
        ftc_chat_free(c);
        return s;
    }
    *out = c;
    return FTC_OK;
}

void ftc_chat_free(ftc_chat *c) {
    if (!c) return;
    pop_msgs(c, 0);
    free(c->msgs);
    free(c->stop_text);
    ftc_kv_cache_free(c->cache);
    free(c);
}

void ftc_chat_reset(ftc_chat *c) {
    pop_msgs(c, c->n_system);
    ftc_kv_cache_reset(c->cache);
}

int ftc_chat_turns(const ftc_chat *c) { return c->n - c->n_system; }

/* Tokens of the conversation + the generation prompt, rendered by the template as training rendered it. */
static ftc_status render_ids(ftc_chat *c, ftc_ids *ids, ftc_err *err) {
    ftc_record rec = {0};
    rec.format = FTC_FMT_CHAT;
    rec.msgs = c->msgs, rec.n_msgs = c->n;
    ftc_rendered r;
    ftc_render_opts o = {.bos = c->bos, .eos = c->eos, .add_generation_prompt = true};
    ftc_status s = ftc_template_render(c->tmpl, &rec, &o, &r, err);
    if (s) return s;
    ids->n = 0;
    s = ftc_tokenizer_encode(c->im->tok, r.text, r.len, ftc_chat_template_adds_special(c->tmpl), 0, ids, err);
    ftc_rendered_free(&r);
    return s;
}

typedef struct {
    ftc_chat *c;
    ftc_text_stream ts;
    char *reply;
    size_t len, cap, shown; /* reply[0..shown) handed to on_text */
    bool stopped_by_text, failed;
    ftc_err err;
    void (*on_text)(void *ctx, const char *text);
    void *ctx;
} turn_ctx;

/* Length of the longest suffix of s[0..n) that is a proper prefix of stop (text that may still become it). */
static size_t partial_stop(const char *s, size_t n, const char *stop) {
    size_t k = strlen(stop);
    for (size_t m = k - 1; m > 0; m--)
        if (m <= n && !memcmp(s + n - m, stop, m)) return m;
    return 0;
}

static bool turn_token(void *p, int32_t id) {
    turn_ctx *t = p;
    char *piece;
    if (ftc_text_stream_push(&t->ts, id, &piece, &t->err)) return t->failed = true, false;
    size_t n = strlen(piece);
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *r = realloc(t->reply, cap);
        if (!r) {
            free(piece);
            ftc_errf(&t->err, FTC_E_NOMEM, "out of memory");
            return t->failed = true, false;
        }
        t->reply = r, t->cap = cap;
    }
    memcpy(t->reply + t->len, piece, n + 1);
    t->len += n;
    free(piece);
    size_t show = t->len;
    const char *stop = t->c->stop_text;
    if (stop) {
        char *hit = strstr(t->reply, stop);
        if (hit) {
            t->len = (size_t)(hit - t->reply);
            t->reply[t->len] = 0;
            t->stopped_by_text = true;
            show = t->len;
        } else {
            show = t->len - partial_stop(t->reply, t->len, stop);
        }
    }
    if (show > t->shown && t->on_text) {
        char save = t->reply[show];
        t->reply[show] = 0;
        t->on_text(t->ctx, t->reply + t->shown);
        t->reply[show] = save;
    }
    if (show > t->shown) t->shown = show;
    return !t->stopped_by_text;
}

ftc_status ftc_chat_reply(ftc_chat *c, const char *user, const ftc_chat_opts *o, char **reply, ftc_chat_stats *st,
                          ftc_err *err) {
    *reply = NULL;
    memset(st, 0, sizeof *st);
    ftc_status s = push_msg(c, FTC_ROLE_USER, user, err);
    if (s) return s;
    ftc_ids ids = {0};
    int max_pos = ftc_kv_cache_max_len(c->cache);
    /* the oldest exchanges leave when the conversation outgrows the context (a system message stays) */
    for (;;) {
        if ((s = render_ids(c, &ids, err))) goto fail;
        if (ids.n == 0) {
            s = ftc_errf(err, FTC_E_INPUT, "the conversation renders to no tokens with the template %s",
                         ftc_chat_template_name(c->tmpl));
            goto fail;
        }
        if ((int)ids.n + 1 < max_pos) break;
        if (c->n - c->n_system <= 1) {
            s = ftc_errf(err, FTC_E_INPUT, "the message is %zu tokens with the template; the model's context is %d",
                         ids.n, max_pos);
            goto fail;
        }
        int drop = c->n_system + 1 < c->n - 1 && c->msgs[c->n_system + 1].role == FTC_ROLE_ASSISTANT ? 2 : 1;
        for (int k = 0; k < drop; k++) free(c->msgs[c->n_system + k].content);
        memmove(c->msgs + c->n_system, c->msgs + c->n_system + drop,
                (size_t)(c->n - c->n_system - drop) * sizeof *c->msgs);
        c->n -= drop;
        st->dropped_messages += drop;
    }
    /* reuse the cached positions the new rendering shares; at least one token is run to get logits */
    const int32_t *cached = ftc_kv_cache_ids(c->cache);
    int keep = 0, have = ftc_kv_cache_len(c->cache);
    while (keep < have && keep < (int)ids.n && cached[keep] == ids.ids[keep]) keep++;
    if (keep == (int)ids.n) keep--;
    ftc_kv_cache_truncate(c->cache, keep);
    st->prompt_tokens = (int)ids.n, st->reused_tokens = keep;
    int room = max_pos - (int)ids.n + 1;
    int max_new = o->max_new_tokens < room ? o->max_new_tokens : room;
    turn_ctx t = {.c = c, .on_text = o->on_text, .ctx = o->ctx};
    int32_t *out = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof *out);
    if (!out) {
        s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((s = ftc_text_stream_init(&t.ts, c->im->tok, ids.ids, ids.n, err))) {
        free(out);
        goto fail;
    }
    ftc_generate_opts g = {.max_new_tokens = max_new, .sampler = o->sampler, .rng = o->rng, .seed = o->seed,
                           .stop_ids = c->stop, .n_stop = c->n_stop, .on_token = turn_token, .ctx = &t};
    int n = 0;
    ftc_gen_stop why;
    s = ftc_generate(c->im->model, c->cache, ids.ids + keep, (int)ids.n - keep, &g, out, &n, &why, err);
    free(out);
    if (s == FTC_OK && t.failed) s = ftc_errf(err, t.err.code, "%s", t.err.msg);
    if (s == FTC_OK && !t.stopped_by_text) { /* text held back at the end (an incomplete character, a partial stop) */
        char *tail = NULL;
        s = ftc_text_stream_flush(&t.ts, &tail, err);
        if (s == FTC_OK && tail[0]) {
            size_t nt = strlen(tail);
            char *r = realloc(t.reply, t.len + nt + 1);
            if (!r) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
            else {
                t.reply = r;
                memcpy(t.reply + t.len, tail, nt + 1);
                t.len += nt;
            }
        }
        free(tail);
        if (s == FTC_OK && t.len > t.shown && o->on_text) o->on_text(o->ctx, t.reply + t.shown);
    }
    ftc_text_stream_free(&t.ts);
    if (s) {
        free(t.reply);
        goto fail;
    }
    if (!t.reply) t.reply = calloc(1, 1);
    st->generated_tokens = n;
    st->stop = t.stopped_by_text ? FTC_GEN_STOP_TOKEN : why;
    /* a reply cut at a stop text (plain: the next question) loses the blank line before it */
    while (t.len && (t.reply[t.len - 1] == '\n' || t.reply[t.len - 1] == ' ') && t.stopped_by_text) t.reply[--t.len] = 0;
    if ((s = push_msg(c, FTC_ROLE_ASSISTANT, t.reply, err))) {
        free(t.reply);
        pop_msgs(c, c->n - 2 >= c->n_system ? c->n - 2 : c->n_system);
        ftc_ids_free(&ids);
        return s;
    }
    *reply = t.reply;
    ftc_ids_free(&ids);
    return FTC_OK;
fail:
    pop_msgs(c, c->n - 1 >= c->n_system ? c->n - 1 : c->n_system); /* the user message did not get an answer */
    ftc_ids_free(&ids);
    return s;
}

ftc_status ftc_chat_add(ftc_chat *c, ftc_role role, const char *text, ftc_err *err) {
    if (role == FTC_ROLE_SYSTEM) return ftc_errf(err, FTC_E_USAGE, "a system message is given to ftc_chat_create");
    return push_msg(c, role, text, err);
}

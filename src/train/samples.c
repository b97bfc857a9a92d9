/* Sample answers for the run report: a few prompts from the run's own data answered greedily by the base model
 * (before training) and by the tuned one (after), so the report shows what tuning changed in words. Decoding is
 * the inference code's (ftc_generate with a KV cache); this file only picks prompts and keeps the strings. */
#include "ftc/train.h"
#include "ftc/base.h"
#include "ftc/eval.h"
#include "ftc/infer.h"
#include "ftc/tokenizer.h"
#include <jansson.h>
#include <utf8proc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_STOP = 12, SHORT_PROMPT = 16 };

typedef struct {
    int32_t *ids;
    int n;
    char *prompt, *base, *tuned;
} sample;

struct ftc_samples {
    ftc_tokenizer *tok;
    char tokenizer_dir[FTC_PATH_MAX];
    int max_tokens;
    sample *v;
    int n;
};

int ftc_samples_count(const ftc_samples *s) { return s ? s->n : 0; }

void ftc_samples_free(ftc_samples *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->v[i].ids), free(s->v[i].prompt), free(s->v[i].base), free(s->v[i].tuned);
    free(s->v);
    ftc_tokenizer_free(s->tok);
    free(s);
}

/* Where the answer of e begins: its first trained target; when everything trains (plain text, or
 * train_on_inputs), after the first half, at most SHORT_PROMPT tokens. 0: nothing to prompt with. */
static int prompt_len(const ftc_example *e) {
    int p = 0;
    if (e->labels) {
        for (int t = 1; t < e->len; t++)
            if (e->labels[t] != FTC_IGNORE_INDEX) { p = t; break; }
        if (p == 0) return 0; /* nothing trains in it: no answer to compare */
    }
    if (p <= 1) { /* the whole example trains: prompt with its beginning */
        p = e->len / 2;
        if (p > SHORT_PROMPT) p = SHORT_PROMPT;
        if (p < 1) p = e->len >= 1 ? 1 : 0;
    }
    return p;
}

static bool seen(const ftc_samples *s, const int32_t *ids, int n) {
    for (int i = 0; i < s->n; i++)
        if (s->v[i].n == n && !memcmp(s->v[i].ids, ids, (size_t)n * sizeof *ids)) return true;
    return false;
}

/* EOS as the inference code finds it, plus the chat templates' end-of-turn tokens (as ftc chat stops). */
static int stop_ids(const ftc_samples *s, ftc_model *m, int32_t *out) {
    ftc_infer_model im = {.model = m, .tok = s->tok, .task = FTC_TASK_CAUSAL_LM};
    snprintf(im.model_dir, sizeof im.model_dir, "%s", s->tokenizer_dir);
    int n = ftc_infer_stop_ids(&im, out, MAX_STOP - 4);
    static const char *const ends[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"};
    int V = ftc_model_config_of(m)->vocab_size;
    for (int i = 0; i < 4; i++) {
        int32_t id = ftc_tokenizer_token_to_id(s->tok, ends[i]);
        bool dup = false;
        for (int j = 0; j < n; j++) dup = dup || out[j] == id;
        if (id >= 0 && id < V && !dup) out[n++] = id;
    }
    return n;
}

/* The text ids[n] add after the prompt, decoded in its context (a leading space stays), as ftc generate prints. */
static ftc_status decode_after(const ftc_tokenizer *tok, const int32_t *prompt, int n_prompt, const int32_t *ids, int n,
                               char **text, ftc_err *err) {
    *text = NULL;
    ftc_text_stream ts;
    ftc_status st = ftc_text_stream_init(&ts, tok, prompt, (size_t)n_prompt, err);
    if (st != FTC_OK) return st;
    size_t len = 0;
    char *buf = calloc(1, 1);
    for (int i = 0; st == FTC_OK && buf && i <= n; i++) {
        char *piece = NULL;
        st = i < n ? ftc_text_stream_push(&ts, ids[i], &piece, err) : ftc_text_stream_flush(&ts, &piece, err);
        size_t k = piece ? strlen(piece) : 0;
        char *b = st == FTC_OK ? realloc(buf, len + k + 1) : buf;
        if (!b) free(buf);
        buf = b;
        if (buf && k) memcpy(buf + len, piece, k + 1), len += k;
        free(piece);
    }
    ftc_text_stream_free(&ts);
    if (st == FTC_OK && !buf) st = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (st != FTC_OK) free(buf);
    else *text = buf;
    return st;
}

/* Greedy answers of m to every prompt; answer(i) receives each malloc'd text. */
static ftc_status answer_all(ftc_samples *s, ftc_model *m, bool tuned, ftc_err *err) {
    int32_t stop[MAX_STOP];
    int n_stop = stop_ids(s, m, stop);
    int32_t *out = malloc((size_t)s->max_tokens * sizeof *out);
    if (!out) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_kv_cache *cache = NULL;
    ftc_status st = ftc_kv_cache_create(m, 0, &cache, err);
    for (int i = 0; st == FTC_OK && i < s->n; i++) {
        ftc_kv_cache_reset(cache);
        ftc_generate_opts o = {.max_new_tokens = s->max_tokens, .sampler = {0.0f, 0, 1.0f}, .stop_ids = stop,
                               .n_stop = n_stop};
        int n_out = 0;
        if ((st = ftc_generate(m, cache, s->v[i].ids, s->v[i].n, &o, out, &n_out, NULL, err)) != FTC_OK) break;
        char *text = NULL;
        if ((st = decode_after(s->tok, s->v[i].ids, s->v[i].n, out, n_out, &text, err)) != FTC_OK) break;
        if (tuned) s->v[i].tuned = text;
        else s->v[i].base = text;
    }
    ftc_kv_cache_free(cache);
    free(out);
    return st;
}

ftc_status ftc_samples_begin(ftc_model *base, const char *tokenizer_dir, const ftc_dataset *d, int n, int max_tokens,
                             ftc_samples **out, ftc_err *err) {
    *out = NULL;
    ftc_samples *s = calloc(1, sizeof *s);
    if (!s || !(s->v = calloc((size_t)(n > 0 ? n : 1), sizeof *s->v))) {
        free(s);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    snprintf(s->tokenizer_dir, sizeof s->tokenizer_dir, "%s", tokenizer_dir);
    s->max_tokens = max_tokens > 0 ? max_tokens : 1;
    ftc_status st = ftc_tokenizer_load(tokenizer_dir, &s->tok, err);
    /* the prompt plus the answer must fit the model's context */
    int room = ftc_model_config_of(base)->max_positions - s->max_tokens;
    for (int i = 0; st == FTC_OK && i < d->n && s->n < n; i++) {
        const ftc_example *e = &d->ex[i];
        int p = prompt_len(e);
        if (p < 1 || (room > 0 && p > room) || seen(s, e->ids, p)) continue;
        sample *x = &s->v[s->n];
        x->ids = malloc((size_t)p * sizeof *x->ids);
        if (!x->ids) { st = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
        memcpy(x->ids, e->ids, (size_t)p * sizeof *x->ids);
        x->n = p;
        s->n++;
        /* shown as rendered (template markers included), without a leading BOS */
        int skip = x->n > 1 && x->ids[0] == ftc_tokenizer_special(s->tok).bos ? 1 : 0;
        st = ftc_tokenizer_decode(s->tok, x->ids + skip, (size_t)(x->n - skip), false, &x->prompt, err);
    }
    if (st == FTC_OK) st = answer_all(s, base, false, err);
    if (st != FTC_OK) {
        ftc_samples_free(s);
        return ftc_err_prefix(err, "sample answers");
    }
    *out = s;
    return FTC_OK;
}

/* A JSON string of text; bytes that are not UTF-8 (an answer cut inside a character) become U+FFFD. */
static json_t *json_text(const char *text) {
    json_t *j = json_string(text);
    if (j) return j;
    size_t n = strlen(text), k = 0;
    char *clean = malloc(3 * n + 1);
    if (!clean) return NULL;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(n - i), &c);
        if (l < 1) c = 0xFFFD, l = 1;
        k += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)clean + k);
        i += (size_t)l;
    }
    clean[k] = 0;
    j = json_string(clean);
    free(clean);
    return j;
}

ftc_status ftc_samples_write(ftc_samples *s, ftc_model *tuned, const char *path, ftc_err *err) {
    ftc_status st = answer_all(s, tuned, true, err);
    if (st != FTC_OK) return ftc_err_prefix(err, "sample answers");
    size_t len = 0, cap = 1024;
    char *buf = malloc(cap);
    for (int i = 0; buf && i < s->n; i++) {
        json_t *o = json_pack("{s:o, s:o, s:o}", "prompt", json_text(s->v[i].prompt), "base",
                              json_text(s->v[i].base), "tuned", json_text(s->v[i].tuned));
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        size_t n = line ? strlen(line) : 0;
        if (line && len + n + 2 > cap) {
            while (len + n + 2 > cap) cap *= 2;
            char *b = realloc(buf, cap);
            if (!b) free(buf);
            buf = b;
        }
        if (!line || !buf) {
            free(line);
            free(buf);
            return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        }
        memcpy(buf + len, line, n);
        len += n;
        buf[len++] = '\n';
        free(line);
    }
    if (!buf) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    st = ftc_write_file_atomic(path, buf, len, err);
    free(buf);
    return st;
}

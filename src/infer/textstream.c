/* Streaming detokenization: text for tokens as they arrive, printed exactly once. Each step decodes a small
 * window that starts a few tokens back (so decoders that depend on the neighbours, such as SentencePiece's
 * leading-space rule or byte-level merges, see the same context as the whole decode) and emits what the new
 * token added. A multi-byte character split over byte-fallback tokens decodes to U+FFFD until its last byte
 * arrives, so nothing is emitted while the window's text ends in U+FFFD. */
#include "ftc/infer.h"
#include <stdlib.h>
#include <string.h>

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

static bool ends_incomplete(const char *s, size_t n) {
    return n >= 3 && !memcmp(s + n - 3, REPLACEMENT, 3);
}

static ftc_status push_id(ftc_text_stream *s, int32_t id, ftc_err *err) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        int32_t *p = realloc(s->ids, cap * sizeof *p);
        if (!p) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        s->ids = p, s->cap = cap;
    }
    s->ids[s->n++] = id;
    return FTC_OK;
}

ftc_status ftc_text_stream_init(ftc_text_stream *s, const ftc_tokenizer *t, const int32_t *context, size_t n,
                                ftc_err *err) {
    memset(s, 0, sizeof *s);
    s->tok = t;
    /* only the last few context tokens matter for how the next ones decode */
    size_t keep = n < 6 ? n : 6;
    for (size_t i = n - keep; i < n; i++) {
        ftc_status st = push_id(s, context[i], err);
        if (st) return st;
    }
    s->prefix = 0, s->read = s->n;
    return FTC_OK;
}

static ftc_status decode(const ftc_text_stream *s, size_t from, size_t to, char **out, ftc_err *err) {
    return ftc_tokenizer_decode(s->tok, s->ids + from, to - from, true, out, err);
}

ftc_status ftc_text_stream_push(ftc_text_stream *s, int32_t id, char **piece, ftc_err *err) {
    *piece = NULL;
    ftc_status st = push_id(s, id, err);
    if (st) return st;
    char *before = NULL, *after = NULL;
    if ((st = decode(s, s->prefix, s->read, &before, err)) || (st = decode(s, s->prefix, s->n, &after, err))) {
        free(before);
        return st;
    }
    size_t nb = strlen(before), na = strlen(after);
    if (na > nb && !ends_incomplete(after, na) && !strncmp(before, after, nb)) {
        memmove(after, after + nb, na - nb + 1);
        *piece = after;
        after = NULL;
        s->prefix = s->read, s->read = s->n;
        /* keep the buffer short: drop tokens before the window */
        if (s->prefix > 64) {
            memmove(s->ids, s->ids + s->prefix, (s->n - s->prefix) * sizeof *s->ids);
            s->n -= s->prefix, s->read -= s->prefix, s->prefix = 0;
        }
    }
    free(before), free(after);
    if (!*piece) *piece = calloc(1, 1);
    return *piece ? FTC_OK : ftc_errf(err, FTC_E_NOMEM, "out of memory");
}

ftc_status ftc_text_stream_flush(ftc_text_stream *s, char **piece, ftc_err *err) {
    *piece = NULL;
    char *before = NULL, *after = NULL;
    ftc_status st;
    if ((st = decode(s, s->prefix, s->read, &before, err)) || (st = decode(s, s->prefix, s->n, &after, err))) {
        free(before);
        return st;
    }
    size_t nb = strlen(before), na = strlen(after);
    if (na > nb && !strncmp(before, after, nb)) memmove(after, after + nb, na - nb + 1);
    else after[0] = 0;
    free(before);
    s->prefix = s->read = s->n;
    *piece = after;
    return FTC_OK;
}

void ftc_text_stream_free(ftc_text_stream *s) {
    free(s->ids);
    memset(s, 0, sizeof *s);
}

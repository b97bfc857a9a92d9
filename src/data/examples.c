/* Records -> training examples: token ids, the causal-lm loss labels (HF convention: the id where the token
 * is trained, -100 where not) or the class index, truncation and packing.
 *
 * The loss mask comes from the rendered pieces: the whole text is tokenized once (so ids are exactly what
 * the tokenizer gives for the text), and the token index where a piece starts is the length of the common
 * prefix of the ids of the text before the piece and the ids of the whole. */
#include "data_internal.h"
#include <stdlib.h>
#include <string.h>

#define IGNORE_INDEX (-100)

void ftc_example_free(ftc_example *e) {
    free(e->ids);
    free(e->labels);
    free(e->type_ids);
    memset(e, 0, sizeof *e);
}

int ftc_example_trained_tokens(const ftc_example *e) {
    if (!e->labels) return e->len > 0 ? e->len - 1 : 0;
    int n = 0;
    for (int i = 1; i < e->len; i++) n += e->labels[i] != IGNORE_INDEX;
    return n;
}

static ftc_status encode(const ftc_data_encoder *enc, const char *text, size_t len, bool special, ftc_ids *out,
                         ftc_err *err) {
    out->n = 0;
    return enc->encode(enc->ctx, text, len, special, out, err);
}

static size_t common_prefix(const ftc_ids *a, const ftc_ids *b) {
    size_t n = a->n < b->n ? a->n : b->n, i = 0;
    while (i < n && a->ids[i] == b->ids[i]) i++;
    return i;
}

/* The index of the first token of full that starts at or after the end of the text that prefix encodes.
 * Usually prefix is a prefix of full. Where it is not (whitespace or a word merged differently across the
 * boundary), the tokens after the common part are placed by the length of their decoded text, so a token
 * that starts before the boundary belongs to the piece before, as with transformers' offsets. */
static size_t piece_start(const ftc_data_encoder *enc, const ftc_ids *prefix, const ftc_ids *full, ftc_status *s,
                          ftc_err *err) {
    size_t k = common_prefix(prefix, full);
    if (k == prefix->n || !enc->decode) return k;
    char *want = NULL;
    *s = enc->decode(enc->ctx, prefix->ids, prefix->n, &want, err);
    if (*s != FTC_OK) return k;
    size_t target = strlen(want);
    free(want);
    for (size_t j = k + 1; j <= full->n; j++) {
        char *got = NULL;
        *s = enc->decode(enc->ctx, full->ids, j, &got, err);
        if (*s != FTC_OK) return k;
        size_t len = strlen(got);
        free(got);
        /* full[0..j) covers the prefix text: token j-1 started before the boundary, j is the first after */
        if (len >= target) return j;
    }
    return full->n;
}

/* Keeps max_len of n entries of each array: the first (right truncation) or the last (left). */
static void truncate_arrays(int32_t *a, int32_t *b, int n, int max_len, ftc_truncation t) {
    if (t == FTC_TRUNC_LEFT) {
        memmove(a, a + (n - max_len), (size_t)max_len * sizeof *a);
        if (b) memmove(b, b + (n - max_len), (size_t)max_len * sizeof *b);
    }
}

ftc_status ftc_data_encode_rendered(const ftc_rendered *r, bool add_special, const ftc_data_encoder *enc,
                                   ftc_example *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    ftc_ids full = {0}, prefix = {0};
    ftc_status s = encode(enc, r->text, r->len, add_special, &full, err);
    int32_t *labels = NULL;
    if (s == FTC_OK && full.n > 0) {
        labels = malloc(full.n * sizeof *labels);
        if (!labels) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    size_t begin = 0; /* token where the current piece starts */
    for (int p = 0; s == FTC_OK && p < r->n; p++) {
        size_t end = full.n;
        if (p + 1 < r->n) {
            s = encode(enc, r->text, r->starts[p + 1], add_special, &prefix, err);
            if (s != FTC_OK) break;
            end = piece_start(enc, &prefix, &full, &s, err);
            if (end < begin) end = begin;
        }
        for (size_t i = begin; i < end; i++) labels[i] = r->trained[p] ? full.ids[i] : IGNORE_INDEX;
        begin = end;
    }
    /* tokens after the last piece (a post-processor's trailing special token) are not trained */
    for (size_t i = begin; s == FTC_OK && i < full.n; i++) labels[i] = IGNORE_INDEX;
    free(prefix.ids);
    if (s != FTC_OK) {
        free(full.ids);
        free(labels);
        return s;
    }
    out->ids = full.ids;
    out->labels = labels;
    out->len = (int)full.n;
    return FTC_OK;
}

static ftc_status encode_lm(const ftc_record *rec, const ftc_encode_opts *o, const ftc_data_encoder *enc,
                            const char *path, ftc_example *out, bool *truncated, ftc_err *err) {
    ftc_rendered r;
    ftc_render_opts ro = {.bos = enc->bos_text, .eos = enc->eos_text, .train_on_inputs = o->train_on_inputs};
    ftc_status s = ftc_template_render(o->tmpl, rec, &ro, &r, err);
    if (s != FTC_OK) return ftc_err_prefix(err, "%s:%ld", path, rec->line);
    /* chat templates write BOS themselves (as apply_chat_template, which encodes without special tokens);
     * the other formats and the plain preset get the tokenizer's own (BOS for Llama, nothing for GPT-2) */
    bool special = rec->format != FTC_FMT_CHAT || ftc_chat_template_adds_special(o->tmpl);
    s = ftc_data_encode_rendered(&r, special, enc, out, err);
    ftc_rendered_free(&r);
    if (s != FTC_OK) return ftc_err_prefix(err, "%s:%ld", path, rec->line);
    if (o->max_len > 0 && out->len > o->max_len) {
        truncate_arrays(out->ids, out->labels, out->len, o->max_len, o->truncation);
        out->len = o->max_len;
        if (truncated) *truncated = true;
    }
    return FTC_OK;
}

static ftc_status encode_classify(const ftc_record *rec, const ftc_encode_opts *o, const ftc_data_encoder *enc,
                                  const ftc_label_map *labels, const char *path, ftc_example *out, bool *truncated,
                                  ftc_err *err) {
    if (rec->format != FTC_FMT_LABEL)
        return ftc_errf(err, FTC_E_INPUT, "%s:%ld: classification needs records with a label (format 'label'), not '%s'",
                        path, rec->line, ftc_data_format_name(rec->format));
    int k = -1;
    if (labels) {
        k = ftc_label_map_find(labels, rec->label);
        if (k < 0)
            return ftc_errf(err, FTC_E_INPUT, "%s:%ld: label \"%s\" never appears in the training labels", path,
                            rec->line, rec->label);
    }
    ftc_ids full = {0};
    if (rec->text_pair) {
        /* pairs: the tokenizer's pair template ([CLS] a [SEP] b [SEP]), token types, longest-first truncation */
        if (!enc->encode_pair)
            return ftc_errf(err, FTC_E_UNSUPPORTED, "%s:%ld: text pairs need a tokenizer that encodes pairs", path,
                            rec->line);
        ftc_ids types = {0};
        ftc_status s = enc->encode_pair(enc->ctx, rec->text, strlen(rec->text), rec->text_pair, strlen(rec->text_pair),
                                        o->max_len, &full, &types, err);
        if (s != FTC_OK || types.n != full.n) {
            free(full.ids);
            free(types.ids);
            if (s == FTC_OK) s = ftc_errf(err, FTC_E_INTERNAL, "token types and ids differ in length");
            return ftc_err_prefix(err, "%s:%ld", path, rec->line);
        }
        if (truncated) { /* was anything cut? compare with the untruncated length */
            ftc_ids all = {0}, all_types = {0};
            if (o->max_len > 0 && enc->encode_pair(enc->ctx, rec->text, strlen(rec->text), rec->text_pair,
                                                   strlen(rec->text_pair), 0, &all, &all_types, err) == FTC_OK)
                *truncated = all.n > full.n;
            free(all.ids);
            free(all_types.ids);
        }
        out->ids = full.ids;
        out->type_ids = types.ids;
        out->len = (int)full.n;
        out->label = k;
        return FTC_OK;
    }
    ftc_status s = encode(enc, rec->text, strlen(rec->text), true, &full, err);
    if (s != FTC_OK) { free(full.ids); return ftc_err_prefix(err, "%s:%ld", path, rec->line); }
    int n = (int)full.n;
    if (o->max_len > 0 && n > o->max_len) {
        /* keep the special tokens the post-processor put around the text ([CLS] .. [SEP]) */
        ftc_ids bare = {0};
        s = encode(enc, rec->text, strlen(rec->text), false, &bare, err);
        if (s != FTC_OK) { free(full.ids); free(bare.ids); return ftc_err_prefix(err, "%s:%ld", path, rec->line); }
        size_t lead = 0, extra = full.n - (bare.n <= full.n ? bare.n : full.n);
        for (size_t off = 0; off <= extra; off++)
            if (bare.n && !memcmp(full.ids + off, bare.ids, bare.n * sizeof *bare.ids)) { lead = off; break; }
        size_t trail = extra - lead;
        free(bare.ids);
        if ((size_t)o->max_len <= lead + trail) {
            free(full.ids);
            return ftc_errf(err, FTC_E_INPUT, "%s:%ld: --max-len %d leaves no room for text between the special tokens",
                            path, rec->line, o->max_len);
        }
        size_t keep = (size_t)o->max_len - lead - trail, body = full.n - lead - trail;
        int32_t *ids = full.ids;
        size_t from = lead + (o->truncation == FTC_TRUNC_LEFT ? body - keep : 0);
        memmove(ids + lead, ids + from, keep * sizeof *ids);
        memmove(ids + lead + keep, ids + full.n - trail, trail * sizeof *ids);
        n = o->max_len;
        if (truncated) *truncated = true;
    }
    out->ids = full.ids;
    out->len = n;
    out->label = k;
    return FTC_OK;
}

ftc_status ftc_data_encode_record(const ftc_record *rec, const ftc_encode_opts *o, const ftc_data_encoder *enc,
                                  const ftc_label_map *labels, const char *path, ftc_example *out, bool *truncated,
                                  ftc_err *err) {
    memset(out, 0, sizeof *out);
    if (truncated) *truncated = false;
    if (o->task == FTC_TASK_CLASSIFY) return encode_classify(rec, o, enc, labels, path, out, truncated, err);
    if (rec->format == FTC_FMT_LABEL)
        return ftc_errf(err, FTC_E_INPUT, "%s:%ld: labelled records are for --task classify, not causal-lm", path,
                        rec->line);
    return encode_lm(rec, o, enc, path, out, truncated, err);
}

ftc_status ftc_data_pack(ftc_dataset *d, int max_len, ftc_err *err) {
    if (max_len <= 1) return ftc_errf(err, FTC_E_USAGE, "--pack needs --max-len of at least 2");
    int64_t total = 0;
    for (int i = 0; i < d->n; i++) total += d->ex[i].len;
    int n_seq = (int)((total + max_len - 1) / max_len);
    ftc_example *seqs = calloc(n_seq ? (size_t)n_seq : 1, sizeof *seqs);
    if (!seqs) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    int cur = -1;
    int64_t pos = 0;
    for (int i = 0; i < d->n; i++) {
        ftc_example *e = &d->ex[i];
        for (int t = 0; t < e->len; t++, pos++) {
            if (pos % max_len == 0) {
                cur++;
                int len = (int)(total - pos < max_len ? total - pos : max_len);
                seqs[cur].ids = malloc((size_t)len * sizeof(int32_t));
                seqs[cur].labels = malloc((size_t)len * sizeof(int32_t));
                if (!seqs[cur].ids || !seqs[cur].labels) {
                    for (int k = 0; k <= cur; k++) ftc_example_free(&seqs[k]);
                    free(seqs);
                    return ftc_errf(err, FTC_E_NOMEM, "out of memory");
                }
            }
            ftc_example *s = &seqs[cur];
            s->ids[s->len] = e->ids[t];
            /* the first token of an example is never a target: it would be predicted from the previous one */
            s->labels[s->len] = t == 0 ? IGNORE_INDEX : e->labels ? e->labels[t] : e->ids[t];
            s->len++;
        }
    }
    for (int i = 0; i < d->n; i++) ftc_example_free(&d->ex[i]);
    free(d->ex);
    d->ex = seqs;
    d->n = cur + 1;
    return FTC_OK;
}

/* Models (BPE by merge rank with a heap, WordPiece greedy longest match) and decoders. */
#include "tokenize/tk.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOMEM(err) ftc_errf(err, FTC_E_NOMEM, "out of memory while tokenizing")

/* ---------------- BPE ---------------- */
typedef struct {
    int32_t rank, pos, merged;
} merge_cand;
static inline bool cand_less(merge_cand a, merge_cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }
static void heap_push(merge_cand *h, size_t *n, merge_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}
static merge_cand heap_pop(merge_cand *h, size_t *n) {
    merge_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        merge_cand best = last;
        if (l < *n && cand_less(h[l], best)) { m = l; best = h[l]; }
        if (r < *n && cand_less(h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = last;
    return top;
}

/* Merges the symbol ids sym[0..n) in place by rank; returns the new count. */
static size_t bpe_merge(const tk_pairmap *merges, int32_t *sym, size_t n, int32_t *prev, int32_t *next,
                        merge_cand *heap) {
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t rank, m;
        if (ftc_tk_pairmap_get(merges, sym[i], sym[i + 1], &rank, &m)) heap_push(heap, &hn, (merge_cand){rank, (int32_t)i, m});
    }
    while (hn) {
        merge_cand c = heap_pop(heap, &hn);
        int32_t l = c.pos, r = next[l];
        if (sym[l] < 0 || r < 0) continue;
        int32_t rank, m;
        if (!ftc_tk_pairmap_get(merges, sym[l], sym[r], &rank, &m) || m != c.merged || rank != c.rank) continue;
        sym[l] = m;
        sym[r] = -1;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        if (prev[l] >= 0 && ftc_tk_pairmap_get(merges, sym[prev[l]], sym[l], &rank, &m))
            heap_push(heap, &hn, (merge_cand){rank, prev[l], m});
        if (next[l] >= 0 && ftc_tk_pairmap_get(merges, sym[l], sym[next[l]], &rank, &m))
            heap_push(heap, &hn, (merge_cand){rank, l, m});
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++) if (sym[i] >= 0) sym[w++] = sym[i];
    return w;
}

/* Direct-mapped word cache shared by threads (guarded by a mutex). */
#define CACHE_MAX_WORD 64
static bool cache_get(ftc_tokenizer *t, const char *s, size_t n, uint64_t h, ftc_ids *out, bool *hit) {
    *hit = false;
    if (!t->cache) return true;
    bool ok = true;
    pthread_mutex_lock(&t->cache_lock);
    tk_cache_entry *e = &t->cache[h & (t->cache_cap - 1)];
    if (e->key && e->hash == h && e->klen == n && !memcmp(e->key, s, n)) {
        *hit = true;
        for (uint32_t i = 0; i < e->n && ok; i++) ok = ftc_tk_ids_push(out, e->ids[i]);
    }
    pthread_mutex_unlock(&t->cache_lock);
    return ok;
}
static void cache_put(ftc_tokenizer *t, const char *s, size_t n, uint64_t h, const int32_t *ids, size_t k) {
    if (!t->cache) return;
    char *key = malloc(n + 1);
    int32_t *v = malloc((k ? k : 1) * sizeof *v);
    if (!key || !v) { free(key); free(v); return; }
    memcpy(key, s, n);
    memcpy(v, ids, k * sizeof *v);
    pthread_mutex_lock(&t->cache_lock);
    tk_cache_entry *e = &t->cache[h & (t->cache_cap - 1)];
    free(e->key);
    free(e->ids);
    *e = (tk_cache_entry){v, (uint32_t)k, key, (uint32_t)n, h};
    pthread_mutex_unlock(&t->cache_lock);
}

static ftc_status bpe_word(const ftc_tokenizer *tc, const char *s, size_t n, bool raw_bytes, ftc_ids *out,
                           ftc_err *err) {
    ftc_tokenizer *t = (ftc_tokenizer *)tc; /* the cache is the only mutable part */
    if (!n) return FTC_OK;
    if (t->ignore_merges) {
        int32_t id = -1;
        if (raw_bytes) {
            tk_buf b = {0};
            for (size_t i = 0; i < n; i++)
                if (!ftc_tk_buf_put_cp(&b, ftc_tk_byte_to_cp((uint8_t)s[i]))) { ftc_tk_buf_free(&b); return NOMEM(err); }
            id = ftc_tk_map_get(&t->vocab, b.p, b.n);
            ftc_tk_buf_free(&b);
        } else id = ftc_tk_map_get(&t->vocab, s, n);
        if (id >= 0) return ftc_tk_ids_push(out, id) ? FTC_OK : NOMEM(err);
    }
    uint64_t h = 0;
    bool use_cache = n <= CACHE_MAX_WORD;
    if (use_cache) {
        bool hit;
        h = ftc_tk_hash(s, n);
        if (!cache_get(t, s, n, h, out, &hit)) return NOMEM(err);
        if (hit) return FTC_OK;
    }
    /* n bytes give at most n symbols */
    int32_t stack_buf[4 * 128];
    merge_cand stack_heap[3 * 128 + 1];
    int32_t *mem = stack_buf;
    merge_cand *heap = stack_heap;
    if (n > 128) {
        mem = malloc(4 * n * sizeof *mem);
        heap = malloc((3 * n + 1) * sizeof *heap);
        if (!mem || !heap) { free(mem == stack_buf ? NULL : mem); free(heap == stack_heap ? NULL : heap); return NOMEM(err); }
    }
    int32_t *sym = mem, *prev = mem + n, *next = mem + 2 * n;
    size_t k = 0;
    if (raw_bytes) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_ids[(uint8_t)s[i]];
            if (id >= 0) sym[k++] = id;
            else if (t->unk_id >= 0 && !(t->fuse_unk && k && sym[k - 1] == t->unk_id)) sym[k++] = t->unk_id;
        }
    } else {
        bool pending_unk = false;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int l = ftc_tk_utf8_next(s, n, i, &cp);
            if (!l) l = 1;
            int32_t id = ftc_tk_map_get(&t->vocab, s + i, (size_t)l);
            if (id >= 0) {
                sym[k++] = id;
                pending_unk = false;
            } else {
                bool done = false;
                if (t->byte_fallback) {
                    bool all = true;
                    for (int j = 0; j < l; j++) all = all && t->byte_ids[(uint8_t)s[i + (size_t)j]] >= 0;
                    if (all) {
                        for (int j = 0; j < l; j++) sym[k++] = t->byte_ids[(uint8_t)s[i + (size_t)j]];
                        done = true;
                        pending_unk = false;
                    }
                }
                if (!done && t->unk_id >= 0) {
                    if (!(t->fuse_unk && pending_unk)) sym[k++] = t->unk_id;
                    pending_unk = true;
                }
            }
            i += (size_t)l;
        }
    }
    k = bpe_merge(&t->merges, sym, k, prev, next, heap);
    bool ok = true;
    for (size_t i = 0; i < k && ok; i++) ok = ftc_tk_ids_push(out, sym[i]);
    if (ok && use_cache) cache_put(t, s, n, h, sym, k);
    if (mem != stack_buf) { free(mem); free(heap); }
    return ok ? FTC_OK : NOMEM(err);
}

/* SentencePiece-style BPE sees a whole text as one word. When no vocab token has U+2581 after another
 * character (checked at load: t->meta_boundaries), no merge can cross the start of a "x▁" boundary, so
 * the word is cut there and each short part goes through the word cache: same ids, much faster. */
static ftc_status bpe_encode(const ftc_tokenizer *t, const char *s, size_t n, bool raw_bytes, ftc_ids *out,
                             ftc_err *err) {
    if (raw_bytes || !t->meta_boundaries || n <= CACHE_MAX_WORD) return bpe_word(t, s, n, raw_bytes, out, err);
    size_t a = 0;
    for (size_t i = 1; i + 3 <= n; i++) {
        if ((uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81 &&
            !(i >= 3 && (uint8_t)s[i - 3] == 0xE2 && (uint8_t)s[i - 2] == 0x96 && (uint8_t)s[i - 1] == 0x81)) {
            ftc_status st = bpe_word(t, s + a, i - a, false, out, err);
            if (st) return st;
            a = i;
        }
    }
    return bpe_word(t, s + a, n - a, false, out, err);
}

/* ---------------- WordPiece ---------------- */
static ftc_status wordpiece_encode(const ftc_tokenizer *t, const char *s, size_t n, ftc_ids *out, ftc_err *err) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((uint8_t)s[i] & 0xC0) != 0x80;
    if ((int)chars > t->max_input_chars) return ftc_tk_ids_push(out, t->unk_id) ? FTC_OK : NOMEM(err);
    size_t o0 = out->n;
    char stackbuf[512];
    size_t pl = t->wp_prefix_len;
    char *buf = n + pl <= sizeof stackbuf ? stackbuf : malloc(n + pl);
    if (!buf) return NOMEM(err);
    memcpy(buf, t->wp_prefix, pl);
    size_t start = 0;
    bool bad = false;
    while (start < n) {
        size_t end = n;
        size_t limit = start + t->max_tok_len;
        if (end > limit) {
            end = limit;
            while (end > start && ((uint8_t)s[end] & 0xC0) == 0x80) end--;
        }
        int32_t id = -1;
        while (end > start) {
            if (start == 0) id = ftc_tk_map_get(&t->vocab, s, end);
            else {
                memcpy(buf + pl, s + start, end - start);
                id = ftc_tk_map_get(&t->vocab, buf, pl + end - start);
            }
            if (id >= 0) break;
            end--;
            while (end > start && ((uint8_t)s[end] & 0xC0) == 0x80) end--;
        }
        if (id < 0) { bad = true; break; }
        if (!ftc_tk_ids_push(out, id)) { if (buf != stackbuf) free(buf); return NOMEM(err); }
        start = end;
    }
    if (buf != stackbuf) free(buf);
    if (bad) {
        out->n = o0;
        if (t->unk_id < 0) return ftc_errf(err, FTC_E_INPUT, "WordPiece: no unk_token for an unknown word");
        return ftc_tk_ids_push(out, t->unk_id) ? FTC_OK : NOMEM(err);
    }
    return FTC_OK;
}

ftc_status ftc_tk_model_encode(const ftc_tokenizer *t, const char *s, size_t n, bool raw_bytes, ftc_ids *out,
                           ftc_err *err) {
    if (t->is_wordpiece) return wordpiece_encode(t, s, n, out, err);
    return bpe_encode(t, s, n, raw_bytes, out, err);
}

/* ---------------- decoders ---------------- */
static bool replace_all(tk_buf *b, const char *pat, const char *rep) {
    size_t pl = strlen(pat), rl = strlen(rep);
    if (!pl || !b->n) return true;
    tk_buf o = {0};
    size_t i = 0;
    while (i < b->n) {
        if (i + pl <= b->n && !memcmp(b->p + i, pat, pl)) {
            if (!ftc_tk_buf_put(&o, rep, rl)) { ftc_tk_buf_free(&o); return false; }
            i += pl;
        } else {
            if (!ftc_tk_buf_putc(&o, b->p[i])) { ftc_tk_buf_free(&o); return false; }
            i++;
        }
    }
    ftc_tk_buf_free(b);
    *b = o;
    return true;
}
static bool set_buf(tk_buf *b, const char *s, size_t n) {
    tk_buf o = {0};
    if (!ftc_tk_buf_put(&o, s, n)) return false;
    ftc_tk_buf_free(b);
    *b = o;
    return true;
}

static int parse_byte_token(const tk_buf *b) {
    /* "<0xAB>" */
    if (b->n != 6 || memcmp(b->p, "<0x", 3) || b->p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

ftc_status ftc_tk_decode_tokens(const tk_decoder *d, tk_buf *toks, size_t *n_toks, ftc_err *err) {
    size_t n = *n_toks;
    switch (d->kind) {
    case DEC_SEQUENCE:
        for (size_t k = 0; k < d->n_items; k++) {
            ftc_status st = ftc_tk_decode_tokens(&d->items[k], toks, n_toks, err);
            if (st) return st;
        }
        return FTC_OK;
    case DEC_BYTELEVEL: {
        if (!n) return FTC_OK;
        tk_buf bytes = {0}, out = {0};
        for (size_t i = 0; i < n; i++) {
            size_t o0 = bytes.n;
            bool all = true;
            for (size_t j = 0; j < toks[i].n;) {
                uint32_t cp;
                int l = ftc_tk_utf8_next(toks[i].p, toks[i].n, j, &cp);
                int b = l ? ftc_tk_cp_to_byte(cp) : -1;
                if (b < 0) { all = false; break; }
                if (!ftc_tk_buf_putc(&bytes, (char)b)) goto nomem_bl;
                j += (size_t)l;
            }
            if (!all) {
                bytes.n = o0;
                if (!ftc_tk_buf_put(&bytes, toks[i].p, toks[i].n)) goto nomem_bl;
            }
        }
        if (!ftc_tk_buf_reserve(&out, bytes.n) || !ftc_tk_utf8_lossy(&out, (const uint8_t *)bytes.p, bytes.n)) goto nomem_bl;
        for (size_t i = 0; i < n; i++) ftc_tk_buf_free(&toks[i]);
        toks[0] = out;
        *n_toks = 1;
        ftc_tk_buf_free(&bytes);
        return FTC_OK;
    nomem_bl:
        ftc_tk_buf_free(&bytes);
        ftc_tk_buf_free(&out);
        return NOMEM(err);
    }
    case DEC_WORDPIECE: {
        static const char *clean[][2] = {{" .", "."},     {" ?", "?"},     {" !", "!"},           {" ,", ","},
                                         {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},         {" do not", " don't"},
                                         {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"}};
        size_t pl = strlen(d->prefix);
        for (size_t i = 0; i < n; i++) {
            tk_buf *b = &toks[i];
            if (i != 0) {
                if (pl && b->n >= pl && !memcmp(b->p, d->prefix, pl)) {
                    memmove(b->p, b->p + pl, b->n - pl);
                    b->n -= pl;
                    if (b->p) b->p[b->n] = 0;
                } else {
                    tk_buf o = {0};
                    if (!ftc_tk_buf_putc(&o, ' ') || !ftc_tk_buf_put(&o, b->p, b->n)) { ftc_tk_buf_free(&o); return NOMEM(err); }
                    ftc_tk_buf_free(b);
                    *b = o;
                }
            }
            if (d->cleanup)
                for (size_t k = 0; k < sizeof clean / sizeof *clean; k++)
                    if (!replace_all(b, clean[k][0], clean[k][1])) return NOMEM(err);
        }
        return FTC_OK;
    }
    case DEC_METASPACE: {
        for (size_t i = 0; i < n; i++) {
            if (!replace_all(&toks[i], d->replacement, " ")) return NOMEM(err);
            if (i == 0 && d->prepend_scheme != 2 && toks[i].n && toks[i].p[0] == ' ')
                if (!set_buf(&toks[i], toks[i].p + 1, toks[i].n - 1)) return NOMEM(err);
        }
        return FTC_OK;
    }
    case DEC_REPLACE:
        for (size_t i = 0; i < n; i++) {
            if (!d->regex) {
                if (!replace_all(&toks[i], d->pattern, d->content)) return NOMEM(err);
            } else {
                tk_normalizer rn = {.kind = NORM_REPLACE, .str = d->content, .re = d->re};
                tk_buf o = {0};
                ftc_status st = ftc_tk_normalize(&rn, toks[i].p ? toks[i].p : "", toks[i].n, &o, err);
                if (st) { ftc_tk_buf_free(&o); return st; }
                ftc_tk_buf_free(&toks[i]);
                toks[i] = o;
            }
        }
        return FTC_OK;
    case DEC_BYTEFALLBACK: {
        /* runs of <0xXX> tokens become their bytes if valid UTF-8, else one U+FFFD per byte */
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            if (parse_byte_token(&toks[i]) < 0) {
                if (w != i) { toks[w] = toks[i]; toks[i] = (tk_buf){0}; }
                w++;
                i++;
                continue;
            }
            size_t j = i;
            tk_buf bytes = {0};
            while (j < n) {
                int v = parse_byte_token(&toks[j]);
                if (v < 0) break;
                if (!ftc_tk_buf_putc(&bytes, (char)v)) { ftc_tk_buf_free(&bytes); return NOMEM(err); }
                j++;
            }
            tk_buf o = {0};
            bool ok;
            if (ftc_tk_utf8_check(bytes.p, bytes.n) == bytes.n) ok = ftc_tk_buf_put(&o, bytes.p, bytes.n);
            else {
                ok = true;
                for (size_t k = 0; k < bytes.n && ok; k++) ok = ftc_tk_buf_put(&o, "\xEF\xBF\xBD", 3);
            }
            ftc_tk_buf_free(&bytes);
            if (!ok) { ftc_tk_buf_free(&o); return NOMEM(err); }
            for (size_t k = i; k < j; k++) ftc_tk_buf_free(&toks[k]);
            toks[w++] = o;
            i = j;
        }
        *n_toks = w;
        return FTC_OK;
    }
    case DEC_FUSE: {
        if (n <= 1) return FTC_OK;
        tk_buf o = {0};
        for (size_t i = 0; i < n; i++) {
            if (!ftc_tk_buf_put(&o, toks[i].p, toks[i].n)) { ftc_tk_buf_free(&o); return NOMEM(err); }
            ftc_tk_buf_free(&toks[i]);
        }
        toks[0] = o;
        *n_toks = 1;
        return FTC_OK;
    }
    case DEC_STRIP: {
        /* per token: drop up to `start` leading and `stop` trailing copies of the content char */
        for (size_t i = 0; i < n; i++) {
            tk_buf *b = &toks[i];
            size_t a = 0, e = b->n;
            for (int k = 0; k < d->start && a < e; k++) {
                uint32_t cp;
                int l = ftc_tk_utf8_next(b->p, e, a, &cp);
                if (!l || cp != d->strip_cp) break;
                a += (size_t)l;
            }
            for (int k = 0; k < d->stop && e > a; k++) {
                size_t j = e - 1;
                while (j > a && ((uint8_t)b->p[j] & 0xC0) == 0x80) j--;
                uint32_t cp;
                int l = ftc_tk_utf8_next(b->p, e, j, &cp);
                if (!l || cp != d->strip_cp) break;
                e = j;
            }
            if ((a || e != b->n) && !set_buf(b, b->p + a, e - a)) return NOMEM(err);
        }
        return FTC_OK;
    }
    case DEC_BPE:
        for (size_t i = 0; i < n; i++) {
            if (!replace_all(&toks[i], d->prefix, i + 1 == n ? "" : " ")) return NOMEM(err);
        }
        return FTC_OK;
    }
    return ftc_errf(err, FTC_E_INTERNAL, "unknown decoder");
}

/* Normalizers and pre-tokenizers with the semantics of HF tokenizers (we only need the ids,
 * so no offset tracking). */
#include "tokenize/tk.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define NOMEM(err) ftc_errf(err, FTC_E_NOMEM, "out of memory while tokenizing")

/* ---------------- normalizers ---------------- */
static bool is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static ftc_status unicode_form(const char *s, size_t n, int opts, tk_buf *out, ftc_err *err) {
    if (!n) return FTC_OK;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opts);
    if (r < 0) {
        free(dst);
        return ftc_errf(err, FTC_E_INPUT, "unicode normalization failed: %s", utf8proc_errmsg(r));
    }
    bool ok = ftc_tk_buf_put(out, dst, (size_t)r);
    free(dst);
    return ok ? FTC_OK : NOMEM(err);
}

/* Rust char::to_lowercase: simple mapping except U+0130 (the one unconditional multi-char lowercase). */
static bool put_lower(tk_buf *b, uint32_t c) {
    if (c < 0x80) return ftc_tk_buf_putc(b, (char)((c >= 'A' && c <= 'Z') ? c + 32 : c));
    if (c == 0x130) return ftc_tk_buf_put(b, "i\xCC\x87", 3);
    return ftc_tk_buf_put_cp(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
}

/* BertNormalizer drops nonspacing marks (Mn); the StripAccents normalizer drops every mark (M*). */
static ftc_status strip_accents(const char *s, size_t n, tk_buf *out, bool all_marks, ftc_err *err) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = ftc_tk_utf8_next(s, n, i, &c);
        if (!l) return ftc_errf(err, FTC_E_INTERNAL, "invalid UTF-8 inside the normalizer");
        bool drop;
        if (all_marks) {
            utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
            drop = k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
        } else drop = ftc_tk_is_mark_nonspacing(c);
        if (!drop && !ftc_tk_buf_put(out, s + i, (size_t)l)) return NOMEM(err);
        i += (size_t)l;
    }
    return FTC_OK;
}

static ftc_status norm_one(const tk_normalizer *nz, const char *s, size_t n, tk_buf *out, ftc_err *err) {
    ftc_status st = FTC_OK;
    switch (nz->kind) {
    case NORM_NFC: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out, err);
    case NORM_NFD: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out, err);
    case NORM_NFKC: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out, err);
    case NORM_NFKD: return unicode_form(s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out, err);
    case NORM_LOWERCASE:
        for (size_t i = 0; i < n;) {
            uint32_t c;
            int l = ftc_tk_utf8_next(s, n, i, &c);
            if (!l) return ftc_errf(err, FTC_E_INTERNAL, "invalid UTF-8 inside the normalizer");
            if (!put_lower(out, c)) return NOMEM(err);
            i += (size_t)l;
        }
        return FTC_OK;
    case NORM_STRIP_ACCENTS: return strip_accents(s, n, out, true, err);
    case NORM_PREPEND:
        if (n && (!ftc_tk_buf_put(out, nz->str, strlen(nz->str)) || !ftc_tk_buf_put(out, s, n))) return NOMEM(err);
        return FTC_OK;
    case NORM_STRIP: {
        size_t a = 0, b = n;
        uint32_t c;
        if (nz->strip_left)
            while (a < b) { int l = ftc_tk_utf8_next(s, n, a, &c); if (!l || !ftc_tk_is_whitespace(c)) break; a += (size_t)l; }
        if (nz->strip_right)
            while (b > a) {
                size_t k = b - 1;
                while (k > a && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
                int l = ftc_tk_utf8_next(s, n, k, &c);
                if (!l || !ftc_tk_is_whitespace(c)) break;
                b = k;
            }
        return ftc_tk_buf_put(out, s + a, b - a) ? FTC_OK : NOMEM(err);
    }
    case NORM_REPLACE: {
        struct rctx { tk_buf *out; const char *s; size_t last; const char *content; } c = {out, s, 0, nz->str};
        bool ok = true;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(nz->re.code, NULL);
        if (!md) return NOMEM(err);
        size_t pos = 0;
        while (pos <= n) {
            int rc = nz->re.jit ? pcre2_jit_match(nz->re.code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL)
                                : pcre2_match(nz->re.code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                pcre2_match_data_free(md);
                return ftc_errf(err, FTC_E_INPUT, "normalizer Replace: regex match limit reached");
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] < ov[0]) break;
            ok = ok && ftc_tk_buf_put(out, s + c.last, ov[0] - c.last) && ftc_tk_buf_put(out, c.content, strlen(c.content));
            c.last = ov[1];
            if (ov[1] == ov[0]) {
                if (ov[0] >= n) break;
                uint32_t cp;
                int l = ftc_tk_utf8_next(s, n, ov[0], &cp);
                pos = ov[0] + (size_t)(l ? l : 1);
            } else pos = ov[1];
        }
        pcre2_match_data_free(md);
        ok = ok && ftc_tk_buf_put(out, s + c.last, n - c.last);
        return ok ? FTC_OK : NOMEM(err);
    }
    case NORM_BERT: {
        tk_buf a = {0}, b = {0};
        for (size_t i = 0; i < n;) {
            uint32_t c;
            int l = ftc_tk_utf8_next(s, n, i, &c);
            if (!l) { st = ftc_errf(err, FTC_E_INTERNAL, "invalid UTF-8 inside the normalizer"); goto bert_done; }
            i += (size_t)l;
            if (nz->clean_text) {
                if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && ftc_tk_is_other(c))) continue;
                if (ftc_tk_is_whitespace(c)) c = ' ';
            }
            bool ok;
            if (nz->chinese && is_chinese(c)) ok = ftc_tk_buf_putc(&a, ' ') && ftc_tk_buf_put_cp(&a, c) && ftc_tk_buf_putc(&a, ' ');
            else ok = ftc_tk_buf_put_cp(&a, c);
            if (!ok) { st = NOMEM(err); goto bert_done; }
        }
        if (nz->strip_accents) {
            if ((st = unicode_form(a.p, a.n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, &b, err))) goto bert_done;
            a.n = 0;
            if ((st = strip_accents(b.p, b.n, &a, false, err))) goto bert_done;
        }
        if (nz->lowercase) {
            tk_normalizer low = {.kind = NORM_LOWERCASE};
            st = norm_one(&low, a.p, a.n, out, err);
        } else if (!ftc_tk_buf_put(out, a.p, a.n)) st = NOMEM(err);
    bert_done:
        ftc_tk_buf_free(&a);
        ftc_tk_buf_free(&b);
        return st;
    }
    case NORM_SEQUENCE: {
        tk_buf cur = {0}, nxt = {0};
        if (!ftc_tk_buf_put(&cur, s, n)) return NOMEM(err);
        for (size_t k = 0; k < nz->n_items && !st; k++) {
            nxt.n = 0;
            if (!ftc_tk_buf_reserve(&nxt, 0)) { st = NOMEM(err); break; }
            st = norm_one(&nz->items[k], cur.p, cur.n, &nxt, err);
            tk_buf t = cur; cur = nxt; nxt = t;
        }
        if (!st && !ftc_tk_buf_put(out, cur.p, cur.n)) st = NOMEM(err);
        ftc_tk_buf_free(&cur);
        ftc_tk_buf_free(&nxt);
        return st;
    }
    }
    return ftc_errf(err, FTC_E_INTERNAL, "unknown normalizer");
}

ftc_status ftc_tk_normalize(const tk_normalizer *nz, const char *s, size_t n, tk_buf *out, ftc_err *err) {
    if (!nz) return ftc_tk_buf_put(out, s, n) ? FTC_OK : NOMEM(err);
    if (!ftc_tk_buf_reserve(out, n)) return NOMEM(err);
    return norm_one(nz, s, n, out, err);
}

/* ---------------- pre-tokenizers ---------------- */
/* A piece split into parts [a,b) flagged as delimiter match or not, combined as HF's SplitDelimiterBehavior. */
typedef struct {
    size_t *a, *b;
    bool *m;
    size_t n, cap;
} parts;
static bool parts_add(parts *p, size_t a, size_t b, bool m) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        size_t *na = realloc(p->a, cap * sizeof *na);
        if (!na) return false;
        p->a = na;
        size_t *nb = realloc(p->b, cap * sizeof *nb);
        if (!nb) return false;
        p->b = nb;
        bool *nm = realloc(p->m, cap * sizeof *nm);
        if (!nm) return false;
        p->m = nm;
        p->cap = cap;
    }
    p->a[p->n] = a; p->b[p->n] = b; p->m[p->n] = m;
    p->n++;
    return true;
}
static void parts_free(parts *p) { free(p->a); free(p->b); free(p->m); memset(p, 0, sizeof *p); }

/* Emits the pieces of one split piece into out (offsets into the same text). */
static bool apply_behavior(const parts *p, tk_split_behavior bh, tk_pieces *out) {
    size_t o0 = out->n;
    bool prev = false;
    switch (bh) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < p->n; i++) if (!ftc_tk_pieces_add(out, p->a[i], p->b[i])) return false;
        break;
    case SPLIT_REMOVED:
        for (size_t i = 0; i < p->n; i++) if (!p->m[i] && !ftc_tk_pieces_add(out, p->a[i], p->b[i])) return false;
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < p->n; i++) {
            if (p->m[i] && !prev && out->n > o0) out->end[out->n - 1] = p->b[i];
            else if (!ftc_tk_pieces_add(out, p->a[i], p->b[i])) return false;
            prev = p->m[i];
        }
        break;
    case SPLIT_MERGED_NEXT: {
        /* walk backwards, then reverse what was added */
        for (size_t k = p->n; k-- > 0;) {
            if (p->m[k] && !prev && out->n > o0) out->start[out->n - 1] = p->a[k];
            else if (!ftc_tk_pieces_add(out, p->a[k], p->b[k])) return false;
            prev = p->m[k];
        }
        for (size_t i = o0, j = out->n - 1; i < j && j != (size_t)-1; i++, j--) {
            size_t t = out->start[i]; out->start[i] = out->start[j]; out->start[j] = t;
            t = out->end[i]; out->end[i] = out->end[j]; out->end[j] = t;
        }
        break;
    }
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < p->n; i++) {
            if (p->m[i] == prev && out->n > o0) out->end[out->n - 1] = p->b[i];
            else if (!ftc_tk_pieces_add(out, p->a[i], p->b[i])) return false;
            prev = p->m[i];
        }
        break;
    }
    /* HF drops empty pieces */
    size_t w = o0;
    for (size_t i = o0; i < out->n; i++)
        if (out->end[i] > out->start[i]) { out->start[w] = out->start[i]; out->end[w] = out->end[i]; w++; }
    out->n = w;
    return true;
}

typedef struct {
    parts *p;
    size_t base, last;
    bool invert, fail;
} match_ctx;
static bool on_match(void *v, size_t a, size_t b) {
    match_ctx *c = v;
    a += c->base; b += c->base;
    if (a > c->last && !parts_add(c->p, c->last, a, c->invert)) return false;
    if (!parts_add(c->p, a, b, !c->invert)) return false;
    c->last = b;
    return true;
}
/* Regex matches of piece [s,e) as parts covering it. */
static bool regex_parts(const tk_regex *re, const tk_buf *text, size_t s, size_t e, bool invert, parts *p,
                        pcre2_match_data *md) {
    match_ctx c = {p, s, s, invert, false};
    if (!ftc_tk_regex_each(re, text->p + s, e - s, md, on_match, &c)) return false;
    if (c.last < e && !parts_add(p, c.last, e, invert)) return false;
    return true;
}

/* Splits every piece by a per-code-point class: cls returns 0 = keep, 1 = delimiter */
typedef int (*cp_class)(uint32_t c, const void *arg);
static bool class_parts(const tk_buf *text, size_t s, size_t e, cp_class cls, const void *arg, bool runs, parts *p) {
    size_t last = s;
    for (size_t i = s; i < e;) {
        uint32_t c;
        int l = ftc_tk_utf8_next(text->p, e, i, &c);
        if (!l) l = 1, c = 0xFFFD;
        if (cls(c, arg)) {
            size_t j = i + (size_t)l;
            if (runs)
                while (j < e) {
                    uint32_t d;
                    int m = ftc_tk_utf8_next(text->p, e, j, &d);
                    if (!m || !cls(d, arg)) break;
                    j += (size_t)m;
                }
            if (i > last && !parts_add(p, last, i, false)) return false;
            if (!parts_add(p, i, j, true)) return false;
            last = j;
            i = j;
        } else i += (size_t)l;
    }
    if (last < e && !parts_add(p, last, e, false)) return false;
    return true;
}
static int cls_ws(uint32_t c, const void *a) { (void)a; return ftc_tk_is_whitespace(c); }
static bool is_bert_punct(uint32_t c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126) ||
           ftc_tk_is_punct_cat(c);
}
static int cls_punct(uint32_t c, const void *a) { (void)a; return is_bert_punct(c); }
static int cls_digit(uint32_t c, const void *a) {
    (void)a;
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}
static int cls_cp(uint32_t c, const void *a) { return c == *(const uint32_t *)a; }

/* Rebuilds p with every piece transformed: f appends the new piece text to out. */
typedef bool (*piece_fn)(const tk_pretok *pt, const char *s, size_t n, bool first, tk_buf *out);
static bool rewrite(const tk_pretok *pt, tk_pieces *p, bool at_start, piece_fn f) {
    tk_pieces q = {0};
    for (size_t i = 0; i < p->n; i++) {
        size_t s = q.text.n;
        if (!ftc_tk_buf_reserve(&q.text, 0)) goto fail;
        if (!f(pt, p->text.p + p->start[i], p->end[i] - p->start[i], at_start && i == 0 && p->start[i] == 0, &q.text))
            goto fail;
        if (!ftc_tk_pieces_add(&q, s, q.text.n)) goto fail;
    }
    ftc_tk_pieces_free(p);
    *p = q;
    return true;
fail:
    ftc_tk_pieces_free(&q);
    return false;
}
static bool f_prefix_space(const tk_pretok *pt, const char *s, size_t n, bool first, tk_buf *out) {
    (void)first;
    if (pt->add_prefix_space && (n == 0 || s[0] != ' ') && !ftc_tk_buf_putc(out, ' ')) return false;
    return ftc_tk_buf_put(out, s, n);
}
static bool f_metaspace(const tk_pretok *pt, const char *s, size_t n, bool first, tk_buf *out) {
    size_t rl = strlen(pt->replacement);
    bool starts = n >= rl && !memcmp(s, pt->replacement, rl);
    bool starts_space = n && s[0] == ' ';
    if (!starts && !starts_space && (pt->prepend_scheme == 0 || (pt->prepend_scheme == 1 && first)))
        if (!ftc_tk_buf_put(out, pt->replacement, rl)) return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { if (!ftc_tk_buf_put(out, pt->replacement, rl)) return false; }
        else if (!ftc_tk_buf_putc(out, s[i])) return false;
    }
    return true;
}

static ftc_status split_all(const tk_pretok *pt, tk_pieces *p, ftc_err *err) {
    tk_pieces q = {0};
    parts pr = {0};
    pcre2_match_data *md = NULL;
    q.text = p->text;
    memset(&p->text, 0, sizeof p->text);
    const tk_regex *re = pt->re.code ? &pt->re : NULL;
    if (re && !(md = pcre2_match_data_create_from_pattern(re->code, NULL))) goto nomem;
    for (size_t i = 0; i < p->n; i++) {
        size_t s = p->start[i], e = p->end[i];
        pr.n = 0;
        bool ok;
        tk_split_behavior bh = pt->behavior;
        switch (pt->kind) {
        case PRE_BYTELEVEL: ok = regex_parts(re, &q.text, s, e, false, &pr, md); bh = SPLIT_ISOLATED; break;
        case PRE_SPLIT: ok = regex_parts(re, &q.text, s, e, pt->invert, &pr, md); break;
        case PRE_WHITESPACE: ok = regex_parts(re, &q.text, s, e, true, &pr, md); bh = SPLIT_REMOVED; break;
        case PRE_WHITESPACE_SPLIT: ok = class_parts(&q.text, s, e, cls_ws, NULL, true, &pr); bh = SPLIT_REMOVED; break;
        case PRE_PUNCTUATION: ok = class_parts(&q.text, s, e, cls_punct, NULL, false, &pr); break;
        case PRE_DIGITS:
            ok = class_parts(&q.text, s, e, cls_digit, NULL, !pt->individual_digits, &pr);
            bh = SPLIT_ISOLATED;
            break;
        case PRE_METASPACE: {
            uint32_t cp;
            ftc_tk_utf8_next(pt->replacement, strlen(pt->replacement), 0, &cp);
            ok = class_parts(&q.text, s, e, cls_cp, &cp, false, &pr);
            bh = SPLIT_MERGED_NEXT;
            break;
        }
        default: ok = false;
        }
        if (!ok || !apply_behavior(&pr, bh, &q)) goto nomem;
    }
    if (md) pcre2_match_data_free(md);
    parts_free(&pr);
    ftc_tk_pieces_free(p);
    *p = q;
    return FTC_OK;
nomem:
    if (md) pcre2_match_data_free(md);
    parts_free(&pr);
    p->text = q.text;
    q.text = (tk_buf){0};
    ftc_tk_pieces_free(&q);
    return ftc_errf(err, FTC_E_INPUT, "pre-tokenizer: out of memory or regex match limit reached");
}

/* BertPreTokenizer: whitespace removed, then each punctuation char isolated. */
static ftc_status bert_split(tk_pieces *p, ftc_err *err) {
    tk_pieces q = {0};
    parts a = {0}, b = {0};
    q.text = p->text;
    memset(&p->text, 0, sizeof p->text);
    bool ok = true;
    for (size_t i = 0; i < p->n && ok; i++) {
        a.n = 0;
        ok = class_parts(&q.text, p->start[i], p->end[i], cls_ws, NULL, true, &a);
        for (size_t k = 0; ok && k < a.n; k++) {
            if (a.m[k] || a.b[k] == a.a[k]) continue;
            b.n = 0;
            ok = class_parts(&q.text, a.a[k], a.b[k], cls_punct, NULL, false, &b) &&
                 apply_behavior(&b, SPLIT_ISOLATED, &q);
        }
    }
    parts_free(&a);
    parts_free(&b);
    ftc_tk_pieces_free(p);
    *p = q;
    return ok ? FTC_OK : NOMEM(err);
}

ftc_status ftc_tk_pretokenize(const tk_pretok *pt, tk_pieces *p, bool at_start, ftc_err *err) {
    if (!pt) return FTC_OK;
    switch (pt->kind) {
    case PRE_SEQUENCE:
        for (size_t k = 0; k < pt->n_items; k++) {
            ftc_status st = ftc_tk_pretokenize(&pt->items[k], p, at_start, err);
            if (st) return st;
        }
        return FTC_OK;
    case PRE_BYTELEVEL:
        if (pt->add_prefix_space && !rewrite(pt, p, at_start, f_prefix_space)) return NOMEM(err);
        if (pt->use_regex) return split_all(pt, p, err);
        return FTC_OK;
    case PRE_METASPACE:
        if (!rewrite(pt, p, at_start, f_metaspace)) return NOMEM(err);
        if (pt->meta_split) return split_all(pt, p, err);
        return FTC_OK;
    case PRE_BERT: return bert_split(p, err);
    default: return split_all(pt, p, err);
    }
}

void ftc_tk_normalizer_free(tk_normalizer *n) {
    if (!n) return;
    free(n->str);
    ftc_tk_regex_free(&n->re);
    for (size_t i = 0; i < n->n_items; i++) ftc_tk_normalizer_free(&n->items[i]);
    free(n->items);
}
void ftc_tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    ftc_tk_regex_free(&p->re);
    for (size_t i = 0; i < p->n_items; i++) ftc_tk_pretok_free(&p->items[i]);
    free(p->items);
}
void ftc_tk_decoder_free(tk_decoder *d) {
    if (!d) return;
    free(d->prefix);
    free(d->pattern);
    free(d->content);
    ftc_tk_regex_free(&d->re);
    for (size_t i = 0; i < d->n_items; i++) ftc_tk_decoder_free(&d->items[i]);
    free(d->items);
}

/* Tokenizer building blocks: byte strings, hash maps, UTF-8 and Unicode properties, PCRE2 regexes. */
#include "tokenize/tk.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- tk_buf ---- */
bool ftc_tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}
bool ftc_tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (!ftc_tk_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}
bool ftc_tk_buf_putc(tk_buf *b, char c) { return ftc_tk_buf_put(b, &c, 1); }
bool ftc_tk_buf_put_cp(tk_buf *b, uint32_t cp) {
    char u[4];
    int n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 63)); u[2] = (char)(0x80 | (cp & 63)); n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 63));
        u[2] = (char)(0x80 | ((cp >> 6) & 63)); u[3] = (char)(0x80 | (cp & 63)); n = 4;
    }
    return ftc_tk_buf_put(b, u, (size_t)n);
}
void ftc_tk_buf_free(tk_buf *b) { free(b->p); memset(b, 0, sizeof *b); }

bool ftc_tk_ids_push(ftc_ids *ids, int32_t v) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *p = realloc(ids->ids, cap * sizeof *p);
        if (!p) return false;
        ids->ids = p;
        ids->cap = cap;
    }
    ids->ids[ids->n++] = v;
    return true;
}

/* ---- string map: open addressing, FNV-1a ---- */
uint64_t ftc_tk_hash(const void *s, size_t n) {
    const uint8_t *p = s;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}
static bool map_grow(tk_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    tk_map nm = {calloc(cap, sizeof(char *)), calloc(cap, sizeof(uint32_t)), calloc(cap, sizeof(int32_t)),
                 calloc(cap, sizeof(uint64_t)), cap, m->count};
    if (!nm.keys || !nm.klen || !nm.vals || !nm.hashes) {
        free(nm.keys); free(nm.klen); free(nm.vals); free(nm.hashes);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = m->hashes[i] & (cap - 1);
        while (nm.keys[j]) j = (j + 1) & (cap - 1);
        nm.keys[j] = m->keys[i]; nm.klen[j] = m->klen[i]; nm.vals[j] = m->vals[i]; nm.hashes[j] = m->hashes[i];
    }
    free(m->keys); free(m->klen); free(m->vals); free(m->hashes);
    *m = nm;
    return true;
}
bool ftc_tk_map_put(tk_map *m, const char *k, size_t n, int32_t v) {
    if ((m->count + 1) * 2 > m->cap && !map_grow(m)) return false;
    uint64_t h = ftc_tk_hash(k, n);
    size_t j = h & (m->cap - 1);
    while (m->keys[j]) {
        if (m->hashes[j] == h && m->klen[j] == n && !memcmp(m->keys[j], k, n)) { m->vals[j] = v; return true; }
        j = (j + 1) & (m->cap - 1);
    }
    char *c = malloc(n + 1);
    if (!c) return false;
    memcpy(c, k, n);
    c[n] = 0;
    m->keys[j] = c; m->klen[j] = (uint32_t)n; m->vals[j] = v; m->hashes[j] = h;
    m->count++;
    return true;
}
int32_t ftc_tk_map_get(const tk_map *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    uint64_t h = ftc_tk_hash(k, n);
    size_t j = h & (m->cap - 1);
    while (m->keys[j]) {
        if (m->hashes[j] == h && m->klen[j] == n && !memcmp(m->keys[j], k, n)) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}
void ftc_tk_map_free(tk_map *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys); free(m->klen); free(m->vals); free(m->hashes);
    memset(m, 0, sizeof *m);
}

/* ---- pair map ---- */
static inline uint64_t pair_hash(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
    return k;
}
static bool pairmap_grow(tk_pairmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    tk_pairmap nm = {calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(int32_t)), calloc(cap, sizeof(int32_t)), cap,
                     m->count};
    if (!nm.keys || !nm.rank || !nm.merged) { free(nm.keys); free(nm.rank); free(nm.merged); return false; }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = pair_hash(m->keys[i]) & (cap - 1);
        while (nm.keys[j]) j = (j + 1) & (cap - 1);
        nm.keys[j] = m->keys[i]; nm.rank[j] = m->rank[i]; nm.merged[j] = m->merged[i];
    }
    free(m->keys); free(m->rank); free(m->merged);
    *m = nm;
    return true;
}
bool ftc_tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((m->count + 1) * 2 > m->cap && !pairmap_grow(m)) return false;
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t j = pair_hash(k) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == k) return true; /* first (lowest rank) wins, as HF */
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = k; m->rank[j] = rank; m->merged[j] = merged;
    m->count++;
    return true;
}
bool ftc_tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    if (!m->cap) return false;
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t j = pair_hash(k) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == k) { *rank = m->rank[j]; *merged = m->merged[j]; return true; }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}
void ftc_tk_pairmap_free(tk_pairmap *m) {
    free(m->keys); free(m->rank); free(m->merged);
    memset(m, 0, sizeof *m);
}

/* ---- UTF-8 ---- */
int ftc_tk_utf8_next(const char *str, size_t n, size_t i, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)str;
    uint8_t c = s[i];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (i + (size_t)len > n) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}
size_t ftc_tk_utf8_check(const char *s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) { i++; continue; }
        int l = ftc_tk_utf8_next(s, n, i, &cp);
        if (!l) return i;
        i += (size_t)l;
    }
    return n;
}

/* Rust's from_utf8_lossy replaces each maximal prefix of a valid sequence (or a lone bad byte) by U+FFFD. */
bool ftc_tk_utf8_lossy(tk_buf *out, const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int l = ftc_tk_utf8_next((const char *)s, n, i, &cp);
        if (l) {
            if (!ftc_tk_buf_put(out, s + i, (size_t)l)) return false;
            i += (size_t)l;
            continue;
        }
        /* length of the maximal valid prefix */
        uint8_t c = s[i];
        size_t k = 1;
        int need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        for (int j = 0; j < need && i + k < n; j++) {
            uint8_t d = s[i + k];
            if (j == 0 ? (d < lo || d > hi) : ((d & 0xC0) != 0x80)) break;
            k++;
        }
        if (!ftc_tk_buf_put(out, "\xEF\xBF\xBD", 3)) return false;
        i += k;
    }
    return true;
}

/* ---- Unicode properties ---- */
bool ftc_tk_is_whitespace(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
bool ftc_tk_is_alnum(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    /* Rust: Alphabetic property or Numeric (Nd, Nl, No). Alphabetic ~ L*, Nl, Other_Alphabetic (some Mn/Mc). */
    switch (k) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return true;
    default: return false;
    }
}
bool ftc_tk_is_punct_cat(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}
bool ftc_tk_is_mark_nonspacing(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN; }
/* HF's BertNormalizer uses the unicode_categories crate: its "other" tables hold Cc, Cf, Co, Cs but no
 * unassigned (Cn) code points, and predate the format characters added in Unicode 11-15. */
bool ftc_tk_is_other(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k == UTF8PROC_CATEGORY_CF && (c == 0x0890 || c == 0x0891 || c == 0x08E2 || c == 0x110CD ||
                                      (c >= 0x13430 && c <= 0x1343F)))
        return false;
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CS ||
           k == UTF8PROC_CATEGORY_CO;
}

/* ---- byte-level alphabet (GPT-2): printable bytes map to themselves, the rest to U+0100.. ---- */
static bool byte_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }
uint32_t ftc_tk_byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    int k = 0;
    for (int i = 0; i < b; i++) if (!byte_printable(i)) k++;
    return 256u + (uint32_t)k;
}
int ftc_tk_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    int k = (int)cp - 256;
    for (int i = 0; i < 256; i++)
        if (!byte_printable(i) && k-- == 0) return i;
    return -1;
}

/* ---- regex ---- */
ftc_status ftc_tk_regex_compile(tk_regex *r, const char *pattern, size_t len, bool literal, ftc_err *err) {
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
    if (literal) opts = (opts & ~PCRE2_UCP) | PCRE2_LITERAL;
    r->code = pcre2_compile((PCRE2_SPTR)pattern, len, opts & ~PCRE2_NO_UTF_CHECK, &ec, &eo, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ftc_errf(err, FTC_E_UNSUPPORTED, "unsupported: regex '%.*s' (%s at offset %zu)", (int)(len > 200 ? 200 : len),
                        pattern, (char *)msg, (size_t)eo);
    }
    r->jit = pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE) == 0;
    return FTC_OK;
}
void ftc_tk_regex_free(tk_regex *r) {
    if (r->code) pcre2_code_free(r->code);
    r->code = NULL;
}
bool ftc_tk_regex_each(const tk_regex *r, const char *s, size_t n, pcre2_match_data *md, tk_match_cb cb, void *ctx) {
    pcre2_match_data *own = NULL;
    if (!md) {
        own = md = pcre2_match_data_create_from_pattern(r->code, NULL);
        if (!md) return false;
    }
    size_t pos = 0;
    bool ok = true;
    while (pos <= n) {
        int rc = r->jit ? pcre2_jit_match(r->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL)
                        : pcre2_match(r->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { ok = false; break; } /* match/heap/JIT stack limit: an error, never a silent wrong split */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b < a) break; /* \K oddities */
        if (!cb(ctx, a, b)) { ok = false; break; }
        if (b == a) { /* empty match: step one code point */
            if (a >= n) break;
            uint32_t cp;
            int l = ftc_tk_utf8_next(s, n, a, &cp);
            pos = a + (size_t)(l ? l : 1);
        } else pos = b;
    }
    if (own) pcre2_match_data_free(own);
    return ok;
}

bool ftc_tk_pieces_add(tk_pieces *p, size_t s, size_t e) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        size_t *a = realloc(p->start, cap * sizeof *a);
        if (!a) return false;
        p->start = a;
        size_t *b = realloc(p->end, cap * sizeof *b);
        if (!b) return false;
        p->end = b;
        p->cap = cap;
    }
    p->start[p->n] = s;
    p->end[p->n] = e;
    p->n++;
    return true;
}
void ftc_tk_pieces_free(tk_pieces *p) {
    ftc_tk_buf_free(&p->text);
    free(p->start);
    free(p->end);
    memset(p, 0, sizeof *p);
}

/* Template source -> tokens, following jinja2's lexer (jinja2/lexer.py) with trim_blocks and lstrip_blocks on:
 *   - line breaks (\r\n, \r, \n) become \n and one trailing line break is dropped (keep_trailing_newline off);
 *   - text before a tag opened with '-' ({%- {{- {#-) loses its trailing whitespace;
 *   - otherwise text before {% or {# loses the spaces and tabs between the last line break (or the start of
 *     a line) and the tag, unless the tag is opened with '+' (lstrip_blocks);
 *   - a tag closed with '-' (-%} -}} -#}) eats the whitespace after it; %} and #} eat one line break after
 *     them (trim_blocks) unless closed with '+%}';
 *   - {% raw %}...{% endraw %} is text.
 * Inside tags: names, strings (Python escapes), integers (0x, 0o, 0b, _), floats, operators; a tag ends only
 * where brackets balance. */
#include "jinja_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void jc_fail(jcompile *c, int line, int col, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) ftc_errf(c->err, FTC_E_INPUT, "%s:%d:%d: %s", c->name, line, col, msg);
    else ftc_errf(c->err, FTC_E_INPUT, "%s: %s", c->name, msg);
    longjmp(c->jb, 1);
}

typedef struct {
    jcompile *c;
    const char *s;
    size_t n, pos;
    tokens *out;
    int cap;
    bool line_starting;
    int brackets[256]; /* expected closing brackets */
    int nb;
    size_t w_off, w_start; /* where(): the last offset asked, its line's start and number */
    int w_line;
} lexer;

/* line and column (1-based, column in characters) of byte offset off */
static void where(lexer *L, size_t off, int *line, int *col) {
    if (off < L->w_off) L->w_off = 0, L->w_start = 0, L->w_line = 1; /* tokens come in order: rarely taken */
    for (size_t i = L->w_off; i < off && i < L->n; i++)
        if (L->s[i] == '\n') L->w_line++, L->w_start = i + 1;
    L->w_off = off;
    *line = L->w_line;
    *col = (int)u8_len(L->s + L->w_start, off - L->w_start) + 1;
}

_Noreturn static void lfail(lexer *L, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
_Noreturn static void lfail(lexer *L, size_t off, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    where(L, off, &line, &col);
    jc_fail(L->c, line, col, "%s", msg);
}

static token *emit(lexer *L, tok_kind k, size_t off) {
    if (L->out->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 256;
        L->out->v = ja_grow(L->c->arena, L->out->v, (size_t)L->cap * sizeof(token), (size_t)cap * sizeof(token));
        L->cap = cap;
    }
    token *t = &L->out->v[L->out->n++];
    memset(t, 0, sizeof *t);
    t->k = k;
    where(L, off, &t->line, &t->col);
    return t;
}

/* whitespace (Python's \s) at s[i]: its length, 0 if none */
static size_t ws_at(const char *s, size_t n, size_t i) {
    if (i >= n) return 0;
    size_t adv;
    uint32_t cp = u8_decode(s + i, n - i, &adv);
    return py_isspace(cp) ? adv : 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t k;
    while ((k = ws_at(s, n, i))) i += k;
    return i;
}

/* end of the last non-whitespace character in s[from..to) */
static size_t rstrip_end(const char *s, size_t from, size_t to) {
    size_t end = to;
    while (end > from) {
        size_t b = end - 1;
        while (b > from && ((unsigned char)s[b] & 0xc0) == 0x80) b--;
        if (!ws_at(s, to, b)) break;
        end = b;
    }
    return end;
}

static bool all_ws(const char *s, size_t from, size_t to) {
    while (from < to) {
        size_t k = ws_at(s, to, from);
        if (!k) return false;
        from += k;
    }
    return true;
}

/* Emits text s[from..to) stripped as the tag that follows asks (sign '-', '+' or 0; block: {% or {#). */
static void emit_text(lexer *L, size_t from, size_t to, char sign, bool block) {
    if (sign == '-') {
        to = rstrip_end(L->s, from, to);
    } else if (sign != '+' && block) {
        size_t l_pos = from;
        for (size_t i = to; i > from; i--)
            if (L->s[i - 1] == '\n') { l_pos = i; break; }
        if ((l_pos > from || L->line_starting) && l_pos < to && all_ws(L->s, l_pos, to)) to = l_pos;
    }
    if (to > from) {
        token *t = emit(L, T_DATA, from);
        t->s = L->s + from;
        t->len = to - from;
    }
}

static bool starts(const lexer *L, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i + k <= L->n && !memcmp(L->s + i, lit, k);
}

/* {%(-|+)?\s*raw\s*(-%}\s*|%}) at i: the end of the match, 0 if not */
static size_t raw_begin_at(const lexer *L, size_t i, char *sign) {
    if (!starts(L, i, "{%")) return 0;
    size_t j = i + 2;
    *sign = 0;
    if (j < L->n && (L->s[j] == '-' || L->s[j] == '+')) *sign = L->s[j++];
    j = skip_ws(L->s, L->n, j);
    if (!starts(L, j, "raw")) return 0;
    j = skip_ws(L->s, L->n, j + 3);
    if (starts(L, j, "-%}")) return skip_ws(L->s, L->n, j + 3);
    if (starts(L, j, "%}")) return j + 2;
    return 0;
}

/* ---- tokens inside tags ---- */
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_name_start(unsigned char ch) { return ch == '_' || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') || ch >= 0x80; }
static bool is_name_char(unsigned char ch) { return is_name_start(ch) || is_digit((char)ch); }

/* (\d+_)*\d+ at i: end, or i */
static size_t digits_us(const char *s, size_t n, size_t i) {
    size_t j = i;
    if (j >= n || !is_digit(s[j])) return i;
    for (;;) {
        while (j < n && is_digit(s[j])) j++;
        if (j + 1 < n && s[j] == '_' && is_digit(s[j + 1])) j++;
        else return j;
    }
}

/* float_re: (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+-]?(\d+_)*\d+|\.(\d+_)*\d+) */
static size_t float_at(const lexer *L, size_t i) {
    const char *s = L->s;
    size_t n = L->n;
    if (i > 0 && s[i - 1] == '.') return 0;
    size_t j = digits_us(s, n, i);
    if (j == i) return 0;
    size_t frac = j;
    if (j < n && s[j] == '.') {
        size_t k = digits_us(s, n, j + 1);
        if (k > j + 1) frac = k;
    }
    size_t e = frac;
    if (e < n && (s[e] == 'e' || s[e] == 'E')) {
        size_t k = e + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        size_t m = digits_us(s, n, k);
        if (m > k) return m;
    }
    return frac > j ? frac : 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* integer_re: 0b(_?[01])+ | 0o(_?[0-7])+ | 0x(_?[0-9a-f])+ | [1-9](_?\d)* | 0(_?0)*; value in *v */
static size_t int_at(lexer *L, size_t i, int64_t *v) {
    const char *s = L->s;
    size_t n = L->n, j = i;
    int base = 10;
    if (j + 1 < n && s[j] == '0' && ((s[j + 1] | 0x20) == 'b' || (s[j + 1] | 0x20) == 'o' || (s[j + 1] | 0x20) == 'x')) {
        base = (s[j + 1] | 0x20) == 'b' ? 2 : (s[j + 1] | 0x20) == 'o' ? 8 : 16;
        size_t k = j + 2, start = k;
        for (;;) {
            size_t m = k;
            if (m < n && s[m] == '_') m++;
            int d = m < n ? hexval(s[m]) : -1;
            if (d < 0 || d >= base) break;
            k = m + 1;
        }
        if (k > start) j = k;
        else base = 10; /* "0x" alone: the integer 0, then a name */
    }
    if (base == 10) {
        if (j >= n || !is_digit(s[j])) return i;
        if (s[j] == '0') {
            j++;
            while (j < n && (s[j] == '0' || (s[j] == '_' && j + 1 < n && s[j + 1] == '0'))) j += s[j] == '_' ? 2 : 1;
        } else {
            j++;
            while (j < n && (is_digit(s[j]) || (s[j] == '_' && j + 1 < n && is_digit(s[j + 1])))) j += s[j] == '_' ? 2 : 1;
        }
    }
    /* value */
    uint64_t acc = 0;
    size_t k = i + (base == 10 ? 0 : 2);
    for (; k < j; k++) {
        if (s[k] == '_') continue;
        int d = hexval(s[k]);
        if (acc > (UINT64_MAX - (uint64_t)d) / (uint64_t)base || acc * base + (uint64_t)d > (uint64_t)INT64_MAX)
            lfail(L, i, "integer literal %.*s is too large", (int)(j - i), s + i);
        acc = acc * (uint64_t)base + (uint64_t)d;
    }
    *v = (int64_t)acc;
    return j;
}

/* Python's unicode-escape decoding of a string literal's body s[from..to) */
static void unescape(lexer *L, size_t from, size_t to, token *t) {
    char *out = ja_alloc(L->c->arena, (to - from) * 2 + 1), *o = out;
    const char *s = L->s;
    for (size_t i = from; i < to;) {
        if (s[i] != '\\' || i + 1 >= to) { *o++ = s[i++]; continue; }
        char e = s[i + 1];
        uint32_t cp = 0;
        int want = 0;
        switch (e) {
        case '\n': i += 2; continue;
        case '\\': *o++ = '\\'; i += 2; continue;
        case '\'': *o++ = '\''; i += 2; continue;
        case '"': *o++ = '"'; i += 2; continue;
        case 'a': *o++ = '\a'; i += 2; continue;
        case 'b': *o++ = '\b'; i += 2; continue;
        case 'f': *o++ = '\f'; i += 2; continue;
        case 'n': *o++ = '\n'; i += 2; continue;
        case 'r': *o++ = '\r'; i += 2; continue;
        case 't': *o++ = '\t'; i += 2; continue;
        case 'v': *o++ = '\v'; i += 2; continue;
        case 'x': want = 2; break;
        case 'u': want = 4; break;
        case 'U': want = 8; break;
        case 'N': lfail(L, i, "\\N{...} escapes are not supported in template strings");
        default:
            if (e >= '0' && e <= '7') {
                size_t k = i + 1;
                for (int d = 0; d < 3 && k < to && s[k] >= '0' && s[k] <= '7'; d++, k++) cp = cp * 8 + (uint32_t)(s[k] - '0');
                o += u8_encode(cp, o);
                i = k;
                continue;
            }
            *o++ = '\\'; /* an unknown escape stays as written */
            i++;
            continue;
        }
        size_t k = i + 2;
        for (int d = 0; d < want; d++, k++) {
            int h = k < to ? hexval(s[k]) : -1;
            if (h < 0) lfail(L, i, "truncated \\%c escape in a string", e);
            cp = cp * 16 + (uint32_t)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) lfail(L, i, "\\%c escape is not a valid character", e);
        o += u8_encode(cp, o);
        i = k;
    }
    *o = 0;
    t->s = out;
    t->len = (size_t)(o - out);
}

static const char *const OPS2[] = {"//", "**", "==", "!=", ">=", "<="};
static const char OPS1[] = "+-/*%~[](){}><=.:|,;";

/* Tokens of one {% %} or {{ }} tag starting at L->pos (after the opener). */
static void lex_tag(lexer *L, bool block, size_t open_at) {
    const char *s = L->s;
    size_t n = L->n;
    L->nb = 0;
    for (;;) {
        size_t i = L->pos;
        if (i >= n) {
            L->line_starting = false;
            (void)open_at;
            return; /* the parser reports the unclosed tag */
        }
        if (L->nb == 0) { /* the end of the tag */
            size_t end = 0;
            if (block) {
                if (starts(L, i, "+%}")) end = i + 3;
                else if (starts(L, i, "-%}")) end = skip_ws(s, n, i + 3);
                else if (starts(L, i, "%}")) end = i + 2 + (i + 2 < n && s[i + 2] == '\n');
            } else {
                if (starts(L, i, "-}}")) end = skip_ws(s, n, i + 3);
                else if (starts(L, i, "}}")) end = i + 2;
            }
            if (end) {
                emit(L, block ? T_BLOCK_END : T_VAR_END, i);
                L->line_starting = s[end - 1] == '\n';
                L->pos = end;
                return;
            }
        }
        size_t w = skip_ws(s, n, i);
        if (w > i) { L->pos = w; continue; }
        size_t e;
        int64_t iv;
        if ((e = float_at(L, i))) {
            char buf[128];
            size_t k = 0;
            for (size_t j = i; j < e && k + 1 < sizeof buf; j++)
                if (s[j] != '_') buf[k++] = s[j];
            buf[k] = 0;
            token *t = emit(L, T_FLOAT, i);
            t->f = strtod(buf, NULL);
            L->pos = e;
            continue;
        }
        if ((e = int_at(L, i, &iv)) > i) {
            token *t = emit(L, T_INT, i);
            t->i = iv;
            L->pos = e;
            continue;
        }
        if (is_name_start((unsigned char)s[i])) {
            e = i + 1;
            while (e < n && is_name_char((unsigned char)s[e])) e++;
            token *t = emit(L, T_NAME, i);
            t->s = ja_strndup(L->c->arena, s + i, e - i);
            t->len = e - i;
            L->pos = e;
            continue;
        }
        if (s[i] == '\'' || s[i] == '"') {
            char q = s[i];
            size_t j = i + 1;
            while (j < n && s[j] != q) j += s[j] == '\\' && j + 1 < n ? 2 : 1;
            if (j >= n) lfail(L, i, "unexpected char '%c' at %zu (a string that is not closed)", q, i);
            token *t = emit(L, T_STRING, i);
            unescape(L, i + 1, j, t);
            L->pos = j + 1;
            continue;
        }
        const char *op = NULL;
        for (int k = 0; k < 6 && !op; k++)
            if (starts(L, i, OPS2[k])) op = OPS2[k];
        char one[2] = {s[i], 0};
        if (!op && s[i] && strchr(OPS1, s[i])) op = one;
        if (!op) {
            size_t adv;
            uint32_t cp = u8_decode(s + i, n - i, &adv);
            char show[8] = {0};
            u8_encode(cp, show);
            lfail(L, i, "unexpected char '%s' at %zu", show, i);
        }
        size_t len = strlen(op);
        char ch = op[0];
        if (len == 1 && (ch == '{' || ch == '(' || ch == '[')) {
            if (L->nb == (int)(sizeof L->brackets / sizeof L->brackets[0])) lfail(L, i, "brackets nested too deeply");
            L->brackets[L->nb++] = ch == '{' ? '}' : ch == '(' ? ')' : ']';
        } else if (len == 1 && (ch == '}' || ch == ')' || ch == ']')) {
            if (!L->nb) lfail(L, i, "unexpected '%c'", ch);
            int want = L->brackets[--L->nb];
            if (want != ch) lfail(L, i, "unexpected '%c', expected '%c'", ch, want);
        }
        token *t = emit(L, T_OP, i);
        t->s = ja_strndup(L->c->arena, op, len);
        t->len = len;
        L->pos = i + len;
    }
}

void jinja_lex(jcompile *c, const char *src, size_t len, tokens *out) {
    /* newlines normalised to \n, one trailing newline dropped */
    char *s = ja_alloc(c->arena, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    lexer L = {.c = c, .s = s, .n = n, .out = out, .line_starting = true, .w_line = 1};
    out->n = 0;
    out->v = NULL;
    while (L.pos < n) {
        /* the next tag opener */
        size_t i = L.pos, q = n;
        int kind = 0; /* '#', '%', '{', 'r' (raw) */
        char sign = 0;
        size_t raw_end = 0;
        for (; i + 1 < n; i++) {
            if (s[i] != '{') continue;
            char k = s[i + 1];
            if (k == '%' && (raw_end = raw_begin_at(&L, i, &sign))) { q = i; kind = 'r'; break; }
            if (k == '#' || k == '%' || k == '{') {
                q = i;
                kind = k;
                sign = i + 2 < n && (s[i + 2] == '-' || s[i + 2] == '+') ? s[i + 2] : 0;
                break;
            }
        }
        if (!kind) { /* the rest is text */
            token *t = emit(&L, T_DATA, L.pos);
            t->s = s + L.pos;
            t->len = n - L.pos;
            break;
        }
        emit_text(&L, L.pos, q, sign, kind != '{');
        L.line_starting = false;
        if (kind == 'r') {
            /* text up to {%(-|+)?\s*endraw\s*(+%}|-%}\s*|%}\n?) */
            size_t j = raw_end, body = raw_end, end = 0;
            char esign = 0;
            L.line_starting = s[raw_end - 1] == '\n';
            for (; j + 1 < n; j++) {
                if (s[j] != '{' || s[j + 1] != '%') continue;
                size_t k = j + 2;
                char sg = 0;
                if (k < n && (s[k] == '-' || s[k] == '+')) sg = s[k++];
                k = skip_ws(s, n, k);
                if (!starts(&L, k, "endraw")) continue;
                k = skip_ws(s, n, k + 6);
                if (starts(&L, k, "+%}")) end = k + 3;
                else if (starts(&L, k, "-%}")) end = skip_ws(s, n, k + 3);
                else if (starts(&L, k, "%}")) end = k + 2 + (k + 2 < n && s[k + 2] == '\n');
                if (end) { esign = sg; break; }
            }
            if (!end) lfail(&L, q, "Missing end of raw directive");
            emit_text(&L, body, j, esign, true);
            L.line_starting = s[end - 1] == '\n';
            L.pos = end;
            continue;
        }
        size_t after = q + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t j = after, end = 0;
            for (; j + 1 < n; j++) {
                if (s[j] == '+' && starts(&L, j, "+#}")) { end = j + 3; break; }
                if (s[j] == '-' && starts(&L, j, "-#}")) { end = skip_ws(s, n, j + 3); break; }
                if (starts(&L, j, "#}")) { end = j + 2 + (j + 2 < n && s[j + 2] == '\n'); break; }
            }
            if (!end) lfail(&L, q, "Missing end of comment tag");
            L.line_starting = s[end - 1] == '\n';
            L.pos = end;
            continue;
        }
        emit(&L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, q);
        L.pos = after;
        lex_tag(&L, kind == '%', q);
    }
    emit(&L, T_EOF, n);
}

/* What templates call: jinja2's filters and tests (jinja2/filters.py, tests.py), the globals of transformers'
 * environment (range, dict, namespace, cycler, joiner, raise_exception, strftime_now) and the Python methods
 * of str, dict and list that templates use (.strip(), .split(), .items(), .get(), ...). Each follows its
 * Python definition; the comments name the Python expression it mirrors where that is not obvious. */
#include "jinja_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ---- argument binding (Python signatures) ---- */
typedef struct {
    const char *name;
    jv def; /* the default; JV_UNDEF with uname "!" means required */
} param;

/* Binds a's positional and keyword arguments to params[np] (after the first `skip` positional ones, which the
 * caller consumed); the result in out[np]. */
static void bind(jrender *r, const char *fname, jargs *a, int skip, const param *params, int np, jv *out) {
    bool given[16] = {false};
    int npos = a->npos - skip;
    if (npos > np) jr_fail(r, r->at, "%s() takes at most %d argument(s) (%d given)", fname, np, npos);
    for (int i = 0; i < npos; i++) out[i] = a->pos[skip + i], given[i] = true;
    for (int k = 0; k < a->nkw; k++) {
        int i;
        for (i = 0; i < np; i++)
            if (!strcmp(params[i].name, a->kw[k])) break;
        if (i == np) jr_fail(r, r->at, "%s() got an unexpected keyword argument '%s'", fname, a->kw[k]);
        if (given[i]) jr_fail(r, r->at, "%s() got multiple values for argument '%s'", fname, a->kw[k]);
        out[i] = a->kwv[k];
        given[i] = true;
    }
    for (int i = 0; i < np; i++) {
        if (given[i]) continue;
        if (params[i].def.k == JV_UNDEF && params[i].def.uname && !strcmp(params[i].def.uname, "!"))
            jr_fail(r, r->at, "%s() missing required argument '%s'", fname, params[i].name);
        out[i] = params[i].def;
    }
}

#define REQUIRED {.k = JV_UNDEF, .uname = "!"}

static jargs no_args(void) { return (jargs){0}; }

static int64_t want_int(jrender *r, jv v, const char *what) {
    if (v.k == JV_INT) return v.i;
    if (v.k == JV_BOOL) return v.b;
    if (v.k == JV_UNDEF && v.uname) jr_fail(r, r->at, "%s", v.uname);
    jr_fail(r, r->at, "%s must be an integer, not %s", what, jv_type_name(v));
}

static jv want_str(jrender *r, jv v, const char *what) {
    if (v.k == JV_STR) return v;
    if (v.k == JV_UNDEF && v.uname) jr_fail(r, r->at, "%s", v.uname);
    jr_fail(r, r->at, "%s must be a string, not %s", what, jv_type_name(v));
}

/* ---- string helpers ---- */
typedef struct {
    uint32_t *cp;
    size_t n;
} cps;

static cps to_cps(jrender *r, jv s) {
    cps c = {ja_alloc(&r->arena, (s.s->len + 1) * sizeof(uint32_t)), 0};
    for (size_t i = 0; i < s.s->len;) {
        size_t adv;
        c.cp[c.n++] = u8_decode(s.s->p + i, s.s->len - i, &adv);
        i += adv;
    }
    return c;
}

static jv from_cps(jrender *r, const uint32_t *cp, size_t n) {
    jbuf b = {0};
    char e[4];
    for (size_t i = 0; i < n; i++) jb_put(r, &b, e, u8_encode(cp[i], e));
    return jv_str_buf(r, &b);
}

static uint32_t cp_lower(uint32_t c) { return (uint32_t)utf8proc_tolower((utf8proc_int32_t)c); }
static uint32_t cp_upper(uint32_t c) { return (uint32_t)utf8proc_toupper((utf8proc_int32_t)c); }
static uint32_t cp_title(uint32_t c) { return (uint32_t)utf8proc_totitle((utf8proc_int32_t)c); }
static bool cp_cased(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           cp_lower(c) != c || cp_upper(c) != c;
}
static bool cp_alpha(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static bool cp_digit(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND; }
static bool cp_numeric(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* Python's full case mappings where they differ from the simple ones utf8proc gives (SpecialCasing.txt):
 * the ones met in text; upper and title forms. */
static const char *special_case(uint32_t c, bool title) {
    switch (c) {
    case 0xdf: return title ? "Ss" : "SS";
    case 0xfb00: return title ? "Ff" : "FF";
    case 0xfb01: return title ? "Fi" : "FI";
    case 0xfb02: return title ? "Fl" : "FL";
    case 0xfb03: return title ? "Ffi" : "FFI";
    case 0xfb04: return title ? "Ffl" : "FFL";
    case 0xfb05: case 0xfb06: return title ? "St" : "ST";
    default: return NULL;
    }
}

static jv map_case(jrender *r, jv s, int mode) { /* 0 lower, 1 upper, 2 capitalize, 3 title, 4 swapcase */
    cps c = to_cps(r, s);
    bool prev_cased = false;
    jbuf b = {0};
    char e[4];
    for (size_t i = 0; i < c.n; i++) {
        uint32_t x = c.cp[i], y;
        bool up = false, title = false;
        switch (mode) {
        case 0: y = cp_lower(x); break;
        case 1: y = cp_upper(x), up = true; break;
        case 2: title = i == 0; y = title ? cp_title(x) : cp_lower(x); break;
        case 3:
            title = !prev_cased;
            y = title ? cp_title(x) : cp_lower(x);
            prev_cased = cp_cased(x);
            break;
        default:
            up = cp_lower(x) == x;
            y = up ? cp_upper(x) : cp_lower(x);
            break;
        }
        const char *sp = (up || title) ? special_case(x, title) : NULL;
        if (sp) jb_puts(r, &b, sp);
        else if (mode == 0 && x == 0x130) jb_puts(r, &b, "i\xcc\x87"); /* İ -> i + combining dot */
        else jb_put(r, &b, e, u8_encode(y, e));
    }
    return jv_str_buf(r, &b);
}

static bool in_set(uint32_t x, const cps *set) {
    if (!set) return py_isspace(x);
    for (size_t i = 0; i < set->n; i++)
        if (set->cp[i] == x) return true;
    return false;
}

/* str.strip/lstrip/rstrip(chars): which 1 left, 2 right, 3 both */
static jv strip(jrender *r, jv s, jv chars, int which) {
    cps c = to_cps(r, s), set;
    cps *sp = NULL;
    if (chars.k == JV_STR) set = to_cps(r, chars), sp = &set;
    else if (chars.k != JV_NONE && chars.k != JV_UNDEF) jr_fail(r, r->at, "strip arg must be None or str");
    size_t a = 0, b = c.n;
    if (which & 1) while (a < b && in_set(c.cp[a], sp)) a++;
    if (which & 2) while (b > a && in_set(c.cp[b - 1], sp)) b--;
    return from_cps(r, c.cp + a, b - a);
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == n[0] && !memcmp(h + i, n, nn)) return h + i;
    return NULL;
}

static jv str_replace(jrender *r, jv s, jv old, jv rep, int64_t count) {
    jbuf b = {0};
    if (old.s->len == 0) { /* Python inserts between every character (and at both ends) */
        int64_t done = 0;
        for (size_t i = 0; i <= s.s->len;) {
            if (count < 0 || done < count) {
                jb_put(r, &b, rep.s->p, rep.s->len);
                done++;
            }
            if (i == s.s->len) break;
            size_t adv;
            u8_decode(s.s->p + i, s.s->len - i, &adv);
            jb_put(r, &b, s.s->p + i, adv);
            i += adv;
        }
        return jv_str_buf(r, &b);
    }
    const char *p = s.s->p, *end = p + s.s->len, *hit;
    int64_t done = 0;
    while ((count < 0 || done < count) && (hit = find_bytes(p, (size_t)(end - p), old.s->p, old.s->len))) {
        jb_put(r, &b, p, (size_t)(hit - p));
        jb_put(r, &b, rep.s->p, rep.s->len);
        p = hit + old.s->len;
        done++;
    }
    jb_put(r, &b, p, (size_t)(end - p));
    return jv_str_buf(r, &b);
}

/* str.split(sep=None, maxsplit=-1); right: rsplit */
static jv str_split(jrender *r, jv s, jv sep, int64_t maxsplit, bool right) {
    jv out = jv_list(r, 0, false);
    if (sep.k == JV_NONE || sep.k == JV_UNDEF) { /* runs of whitespace, ends ignored */
        cps c = to_cps(r, s);
        if (!right) {
            size_t i = 0;
            int64_t done = 0;
            while (i < c.n) {
                while (i < c.n && py_isspace(c.cp[i])) i++;
                if (i == c.n) break;
                if (maxsplit >= 0 && done == maxsplit) {
                    size_t e = c.n;
                    while (e > i && py_isspace(c.cp[e - 1])) e--;
                    jl_push(r, out, from_cps(r, c.cp + i, e - i));
                    break;
                }
                size_t j = i;
                while (j < c.n && !py_isspace(c.cp[j])) j++;
                jl_push(r, out, from_cps(r, c.cp + i, j - i));
                done++;
                i = j;
            }
        } else {
            jv rev = jv_list(r, 0, false);
            size_t i = c.n;
            int64_t done = 0;
            while (i > 0) {
                while (i > 0 && py_isspace(c.cp[i - 1])) i--;
                if (i == 0) break;
                if (maxsplit >= 0 && done == maxsplit) {
                    size_t b = 0;
                    while (b < i && py_isspace(c.cp[b])) b++;
                    jl_push(r, rev, from_cps(r, c.cp + b, i - b));
                    break;
                }
                size_t j = i;
                while (j > 0 && !py_isspace(c.cp[j - 1])) j--;
                jl_push(r, rev, from_cps(r, c.cp + j, i - j));
                done++;
                i = j;
            }
            for (size_t k = rev.l->n; k > 0; k--) jl_push(r, out, rev.l->v[k - 1]);
        }
        return out;
    }
    sep = want_str(r, sep, "the separator");
    if (sep.s->len == 0) jr_fail(r, r->at, "empty separator");
    const char *p = s.s->p, *end = p + s.s->len;
    if (!right) {
        int64_t done = 0;
        const char *hit;
        while ((maxsplit < 0 || done < maxsplit) && (hit = find_bytes(p, (size_t)(end - p), sep.s->p, sep.s->len))) {
            jl_push(r, out, jv_str(r, p, (size_t)(hit - p)));
            p = hit + sep.s->len;
            done++;
        }
        jl_push(r, out, jv_str(r, p, (size_t)(end - p)));
        return out;
    }
    jv rev = jv_list(r, 0, false);
    int64_t done = 0;
    const char *e = end;
    for (;;) {
        const char *hit = NULL;
        if (maxsplit < 0 || done < maxsplit)
            for (const char *q = e - sep.s->len; q >= p && (size_t)(e - p) >= sep.s->len; q--)
                if (!memcmp(q, sep.s->p, sep.s->len)) { hit = q; break; }
        if (!hit) break;
        jl_push(r, rev, jv_str(r, hit + sep.s->len, (size_t)(e - hit - sep.s->len)));
        e = hit;
        done++;
    }
    jl_push(r, rev, jv_str(r, p, (size_t)(e - p)));
    for (size_t k = rev.l->n; k > 0; k--) jl_push(r, out, rev.l->v[k - 1]);
    return out;
}

static bool is_line_break(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

/* str.splitlines(keepends) */
static jv splitlines(jrender *r, jv s, bool keepends) {
    cps c = to_cps(r, s);
    jv out = jv_list(r, 0, false);
    size_t i = 0;
    while (i < c.n) {
        size_t j = i;
        while (j < c.n && !is_line_break(c.cp[j])) j++;
        size_t eol = j;
        if (j < c.n) eol = c.cp[j] == '\r' && j + 1 < c.n && c.cp[j + 1] == '\n' ? j + 2 : j + 1;
        jl_push(r, out, from_cps(r, c.cp + i, (keepends ? eol : j) - i));
        i = eol;
    }
    return out;
}

/* sep.join(str(x) for x in items); items: a list already iterated */
static jv str_join(jrender *r, jv sep, jv items) {
    jbuf b = {0};
    for (size_t i = 0; i < items.l->n; i++) {
        if (i) jb_put(r, &b, sep.s->p, sep.s->len);
        jv_to_str(r, &b, items.l->v[i]);
    }
    return jv_str_buf(r, &b);
}

/* Python's len() */
static int64_t py_len(jrender *r, jv v) {
    switch (v.k) {
    case JV_UNDEF: return 0;
    case JV_STR: return (int64_t)u8_len(v.s->p, v.s->len);
    case JV_LIST:
        if (v.l->gen) jr_fail(r, r->at, "object of type 'generator' has no len()");
        return (int64_t)v.l->n;
    case JV_DICT: return (int64_t)v.d->n;
    case JV_LOOP: return (int64_t)v.loop->items->n;
    default: jr_fail(r, r->at, "object of type '%s' has no len()", jv_type_name(v));
    }
}

/* markupsafe.escape(v): Markup as it is, anything else str() with & < > " ' replaced */
jv jb_html_escape(jrender *r, jv v) {
    if (v.k == JV_STR && v.s->markup) return v;
    jv s = jv_str_of(r, v);
    jbuf b = {0};
    for (size_t i = 0; i < s.s->len; i++) {
        char ch = s.s->p[i];
        const char *e = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&#34;"
                      : ch == '\'' ? "&#39;" : NULL;
        if (e) jb_puts(r, &b, e);
        else jb_put(r, &b, &ch, 1);
    }
    jv out = jv_str_buf(r, &b);
    out.s->markup = true;
    return out;
}

/* ---- % formatting: 'fmt' % args ---- */
jv jb_percent_format(jrender *r, jv fmt, jv args) {
    jbuf b = {0};
    const char *s = fmt.s->p, *end = s + fmt.s->len;
    size_t argi = 0;
    bool tuple = args.k == JV_LIST && args.l->tuple, mapping = args.k == JV_DICT;
    while (s < end) {
        const char *pct = memchr(s, '%', (size_t)(end - s));
        if (!pct) { jb_put(r, &b, s, (size_t)(end - s)); break; }
        jb_put(r, &b, s, (size_t)(pct - s));
        s = pct + 1;
        if (s < end && *s == '%') { jb_put(r, &b, "%", 1); s++; continue; }
        jv arg;
        if (s < end && *s == '(') {
            const char *close = memchr(s, ')', (size_t)(end - s));
            if (!close || !mapping) jr_fail(r, r->at, "format requires a mapping");
            bool found;
            arg = jd_get(args.d, jv_str(r, s + 1, (size_t)(close - s - 1)), &found);
            if (!found) jr_fail(r, r->at, "KeyError: '%.*s'", (int)(close - s - 1), s + 1);
            s = close + 1;
        } else if (tuple) {
            if (argi >= args.l->n) jr_fail(r, r->at, "not enough arguments for format string");
            arg = args.l->v[argi++];
        } else {
            if (argi++ > 0) jr_fail(r, r->at, "not enough arguments for format string");
            arg = args;
        }
        char spec[32] = "%";
        size_t k = 1;
        while (s < end && strchr("-+ #0123456789.", *s) && k < sizeof spec - 4) spec[k++] = *s++;
        if (s >= end) jr_fail(r, r->at, "incomplete format");
        char conv = *s++;
        if (conv == 's' || conv == 'r' || conv == 'a') {
            jbuf t = {0};
            if (conv == 's') jv_to_str(r, &t, arg);
            else jv_repr(r, &t, arg);
            spec[k++] = 's';
            spec[k] = 0;
            jb_printf(r, &b, spec, t.p ? t.p : "");
        } else if (strchr("dixXo", conv)) {
            if (arg.k != JV_INT && arg.k != JV_BOOL && arg.k != JV_FLOAT)
                jr_fail(r, r->at, "%%%c format: a real number is required, not %s", conv, jv_type_name(arg));
            long long v = arg.k == JV_FLOAT ? (long long)arg.f : (long long)want_int(r, arg, "the argument");
            spec[k++] = 'l', spec[k++] = 'l', spec[k++] = conv == 'i' ? 'd' : conv;
            spec[k] = 0;
            jb_printf(r, &b, spec, v);
        } else if (strchr("eEfFgG", conv)) {
            if (arg.k != JV_INT && arg.k != JV_BOOL && arg.k != JV_FLOAT)
                jr_fail(r, r->at, "must be real number, not %s", jv_type_name(arg));
            spec[k++] = conv;
            spec[k] = 0;
            jb_printf(r, &b, spec, arg.k == JV_FLOAT ? arg.f : (double)want_int(r, arg, "the argument"));
        } else {
            jr_fail(r, r->at, "unsupported format character '%c'", conv);
        }
    }
    if (tuple && argi < args.l->n) jr_fail(r, r->at, "not all arguments converted during string formatting");
    return jv_str_buf(r, &b);
}

/* str.format(*args, **kwargs): {} {0} {name} {name[key]} {name.attr}, {{ and }}; no format specs */
static jv str_format(jrender *r, jv fmt, jargs *a) {
    jbuf b = {0};
    const char *s = fmt.s->p, *end = s + fmt.s->len;
    int auto_i = 0;
    while (s < end) {
        if (*s == '{' && s + 1 < end && s[1] == '{') { jb_put(r, &b, "{", 1); s += 2; continue; }
        if (*s == '}' && s + 1 < end && s[1] == '}') { jb_put(r, &b, "}", 1); s += 2; continue; }
        if (*s == '}') jr_fail(r, r->at, "Single '}' encountered in format string");
        if (*s != '{') { jb_put(r, &b, s++, 1); continue; }
        const char *close = memchr(s, '}', (size_t)(end - s));
        if (!close) jr_fail(r, r->at, "Single '{' encountered in format string");
        const char *f = s + 1;
        size_t flen = (size_t)(close - f);
        if (memchr(f, ':', flen) || memchr(f, '!', flen)) jr_fail(r, r->at, "format specs in str.format() are not supported");
        size_t head = 0;
        while (head < flen && f[head] != '.' && f[head] != '[') head++;
        jv v;
        if (head == 0) {
            if (auto_i >= a->npos) jr_fail(r, r->at, "Replacement index %d out of range for positional args tuple", auto_i);
            v = a->pos[auto_i++];
        } else if (f[0] >= '0' && f[0] <= '9') {
            int i = atoi(f);
            if (i >= a->npos) jr_fail(r, r->at, "Replacement index %d out of range for positional args tuple", i);
            v = a->pos[i];
        } else {
            int k;
            for (k = 0; k < a->nkw; k++)
                if (strlen(a->kw[k]) == head && !memcmp(a->kw[k], f, head)) break;
            if (k == a->nkw) jr_fail(r, r->at, "KeyError: '%.*s'", (int)head, f);
            v = a->kwv[k];
        }
        for (size_t i = head; i < flen;) { /* .attr and [key] */
            if (f[i] == '.') {
                size_t j = i + 1;
                while (j < flen && f[j] != '.' && f[j] != '[') j++;
                v = jr_getattr(r, v, ja_strndup(&r->arena, f + i + 1, j - i - 1));
                i = j;
            } else {
                const char *rb = memchr(f + i, ']', flen - i);
                if (!rb) jr_fail(r, r->at, "expected '}' before end of string");
                size_t kl = (size_t)(rb - f - i - 1);
                const char *key = f + i + 1;
                bool digits = kl > 0;
                for (size_t q = 0; q < kl; q++) digits = digits && key[q] >= '0' && key[q] <= '9';
                v = jr_getitem(r, v, digits ? jv_int(atoll(key)) : jv_str(r, key, kl));
                i = (size_t)(rb - f) + 1;
            }
        }
        jv_to_str(r, &b, v);
        s = close + 1;
    }
    return jv_str_buf(r, &b);
}

/* ---- methods ---- */
enum {
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_SPLITLINES, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER,
    M_TITLE, M_CAPITALIZE, M_SWAPCASE, M_CASEFOLD, M_REPLACE, M_FIND, M_RFIND, M_INDEX_S, M_RINDEX, M_COUNT_S,
    M_JOIN, M_FORMAT, M_ISDIGIT, M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_ISNUMERIC, M_ISDECIMAL,
    M_ZFILL, M_CENTER, M_LJUST, M_RJUST, M_REMOVEPREFIX, M_REMOVESUFFIX, M_PARTITION, M_RPARTITION,
    M_ITEMS, M_KEYS, M_VALUES, M_GET, M_COPY_D,
    M_INDEX_L, M_COUNT_L, M_COPY_L,
    M_CYCLER_NEXT, M_CYCLER_RESET, M_LOOP_CYCLE, M_LOOP_CHANGED,
    M_UNSAFE,
    /* globals */
    G_RANGE, G_DICT, G_NAMESPACE, G_CYCLER, G_JOINER, G_RAISE, G_STRFTIME,
};

typedef struct {
    const char *name;
    int id;
} named;

static const named STR_METHODS[] = {
    {"strip", M_STRIP}, {"lstrip", M_LSTRIP}, {"rstrip", M_RSTRIP}, {"split", M_SPLIT}, {"rsplit", M_RSPLIT},
    {"splitlines", M_SPLITLINES}, {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"upper", M_UPPER},
    {"lower", M_LOWER}, {"title", M_TITLE}, {"capitalize", M_CAPITALIZE}, {"swapcase", M_SWAPCASE},
    {"casefold", M_CASEFOLD}, {"replace", M_REPLACE}, {"find", M_FIND}, {"rfind", M_RFIND}, {"index", M_INDEX_S},
    {"rindex", M_RINDEX}, {"count", M_COUNT_S}, {"join", M_JOIN}, {"format", M_FORMAT}, {"isdigit", M_ISDIGIT},
    {"isalpha", M_ISALPHA}, {"isalnum", M_ISALNUM}, {"isspace", M_ISSPACE}, {"islower", M_ISLOWER},
    {"isupper", M_ISUPPER}, {"isnumeric", M_ISNUMERIC}, {"isdecimal", M_ISDECIMAL}, {"zfill", M_ZFILL},
    {"center", M_CENTER}, {"ljust", M_LJUST}, {"rjust", M_RJUST}, {"removeprefix", M_REMOVEPREFIX},
    {"removesuffix", M_REMOVESUFFIX}, {"partition", M_PARTITION}, {"rpartition", M_RPARTITION}, {NULL, 0}};
static const named DICT_METHODS[] = {{"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"get", M_GET},
                                     {"copy", M_COPY_D}, {"clear", M_UNSAFE}, {"pop", M_UNSAFE},
                                     {"popitem", M_UNSAFE}, {"setdefault", M_UNSAFE}, {"update", M_UNSAFE},
                                     {"fromkeys", M_UNSAFE}, {NULL, 0}};
static const named LIST_METHODS[] = {{"index", M_INDEX_L}, {"count", M_COUNT_L}, {"copy", M_COPY_L},
                                     {"append", M_UNSAFE}, {"extend", M_UNSAFE}, {"insert", M_UNSAFE},
                                     {"pop", M_UNSAFE}, {"remove", M_UNSAFE}, {"reverse", M_UNSAFE},
                                     {"sort", M_UNSAFE}, {"clear", M_UNSAFE}, {NULL, 0}};
static const named TUPLE_METHODS[] = {{"index", M_INDEX_L}, {"count", M_COUNT_L}, {NULL, 0}};

static jv make_func(jrender *r, int id, jv self, const char *name) {
    jfunc *f = ja_alloc(&r->arena, sizeof *f);
    f->id = id;
    f->self = self;
    f->name = name;
    jv v = {.k = JV_FUNC};
    v.fn = f;
    return v;
}

jv jb_method(jrender *r, jv obj, const char *name, bool *found) {
    const named *table = NULL;
    *found = false;
    switch (obj.k) {
    case JV_STR: table = STR_METHODS; break;
    case JV_DICT: table = DICT_METHODS; break;
    case JV_LIST: table = obj.l->tuple ? TUPLE_METHODS : LIST_METHODS; break;
    case JV_CYCLER:
        if (!strcmp(name, "current")) {
            *found = true;
            return obj.cy->items->v[obj.cy->pos];
        }
        if (!strcmp(name, "next")) { *found = true; return make_func(r, M_CYCLER_NEXT, obj, "next"); }
        if (!strcmp(name, "reset")) { *found = true; return make_func(r, M_CYCLER_RESET, obj, "reset"); }
        return jv_undef(name);
    case JV_LOOP:
        if (!strcmp(name, "cycle")) { *found = true; return make_func(r, M_LOOP_CYCLE, obj, "cycle"); }
        if (!strcmp(name, "changed")) { *found = true; return make_func(r, M_LOOP_CHANGED, obj, "changed"); }
        return jv_undef(name);
    default: return jv_undef(name);
    }
    for (int i = 0; table[i].name; i++)
        if (!strcmp(table[i].name, name)) {
            *found = true;
            if (table[i].id == M_UNSAFE) { /* the sandbox's unsafe_undefined: prints "", fails when used */
                char msg[200];
                snprintf(msg, sizeof msg, "access to attribute '%s' of '%s' object is unsafe.", name, jv_type_name(obj));
                return jv_undef(ja_strndup(&r->arena, msg, strlen(msg)));
            }
            return make_func(r, table[i].id, obj, table[i].name);
        }
    return jv_undef(name);
}

/* start/end arguments of find/count/startswith: code point indices clamped as Python slices do */
static void sub_range(jrender *r, jv s, jargs *a, int first, size_t *from, size_t *to) {
    int64_t n = (int64_t)u8_len(s.s->p, s.s->len), lo = 0, hi = n;
    if (a->npos > first && a->pos[first].k != JV_NONE) lo = want_int(r, a->pos[first], "start");
    if (a->npos > first + 1 && a->pos[first + 1].k != JV_NONE) hi = want_int(r, a->pos[first + 1], "end");
    if (lo < 0) lo = lo + n < 0 ? 0 : lo + n;
    if (hi < 0) hi = hi + n < 0 ? 0 : hi + n;
    if (lo > n) lo = n + 1; /* empty, and "" is not found past the end */
    if (hi > n) hi = n;
    *from = lo > n ? s.s->len + 1 : u8_offset(s.s->p, s.s->len, (size_t)lo);
    *to = u8_offset(s.s->p, s.s->len, (size_t)hi);
}

static int64_t cp_index(jv s, size_t byte_off) { return (int64_t)u8_len(s.s->p, byte_off); }

static jv pad(jrender *r, jv s, int64_t width, jv fill, int where) { /* 0 center, 1 ljust, 2 rjust */
    uint32_t f = ' ';
    if (fill.k == JV_STR) {
        if (u8_len(fill.s->p, fill.s->len) != 1) jr_fail(r, r->at, "The fill character must be exactly one character long");
        size_t adv;
        f = u8_decode(fill.s->p, fill.s->len, &adv);
    }
    int64_t n = (int64_t)u8_len(s.s->p, s.s->len);
    if (width <= n) return s;
    jr_check_size(r, (size_t)width * 4);
    int64_t total = width - n, left = where == 1 ? 0 : where == 2 ? total : total / 2 + (total & width & 1);
    char e[4];
    size_t el = u8_encode(f, e);
    jbuf b = {0};
    for (int64_t i = 0; i < left; i++) jb_put(r, &b, e, el);
    jb_put(r, &b, s.s->p, s.s->len);
    for (int64_t i = 0; i < total - left; i++) jb_put(r, &b, e, el);
    return jv_str_buf(r, &b);
}

static bool all_cps(jrender *r, jv s, bool (*pred)(uint32_t)) {
    cps c = to_cps(r, s);
    if (!c.n) return false;
    for (size_t i = 0; i < c.n; i++)
        if (!pred(c.cp[i])) return false;
    return true;
}
static bool pred_space(uint32_t c) { return py_isspace(c); }
static bool pred_alnum(uint32_t c) { return cp_alpha(c) || cp_numeric(c); }

static jv call_str_method(jrender *r, jfunc *f, jargs *a) {
    jv s = f->self;
    jv v[4];
    switch (f->id) {
    case M_STRIP: case M_LSTRIP: case M_RSTRIP: {
        static const param p[] = {{"chars", {.k = JV_NONE}}};
        bind(r, f->name, a, 0, p, 1, v);
        return strip(r, s, v[0], f->id == M_STRIP ? 3 : f->id == M_LSTRIP ? 1 : 2);
    }
    case M_SPLIT: case M_RSPLIT: {
        static const param p[] = {{"sep", {.k = JV_NONE}}, {"maxsplit", {.k = JV_INT, .i = -1}}};
        bind(r, f->name, a, 0, p, 2, v);
        return str_split(r, s, v[0], want_int(r, v[1], "maxsplit"), f->id == M_RSPLIT);
    }
    case M_SPLITLINES: {
        static const param p[] = {{"keepends", {.k = JV_BOOL, .b = false}}};
        bind(r, f->name, a, 0, p, 1, v);
        return splitlines(r, s, jv_truthy(v[0]));
    }
    case M_STARTSWITH: case M_ENDSWITH: {
        if (a->npos < 1) jr_fail(r, r->at, "%s() takes at least 1 argument (0 given)", f->name);
        size_t from, to;
        sub_range(r, s, a, 1, &from, &to);
        if (from > s.s->len) return jv_bool(false);
        jv pre = a->pos[0];
        jv opts = pre.k == JV_LIST && pre.l->tuple ? pre : jv_undef(NULL);
        size_t n = opts.k == JV_LIST ? opts.l->n : 1;
        for (size_t i = 0; i < n; i++) {
            jv x = opts.k == JV_LIST ? opts.l->v[i] : pre;
            if (x.k != JV_STR)
                jr_fail(r, r->at, "%s first arg must be str or a tuple of str, not %s", f->name, jv_type_name(x));
            size_t len = to > from ? to - from : 0;
            if (x.s->len > len) continue;
            const char *at = f->id == M_STARTSWITH ? s.s->p + from : s.s->p + from + len - x.s->len;
            if (!memcmp(at, x.s->p, x.s->len)) return jv_bool(true);
        }
        return jv_bool(false);
    }
    case M_UPPER: bind(r, f->name, a, 0, NULL, 0, v); return map_case(r, s, 1);
    case M_LOWER: case M_CASEFOLD: bind(r, f->name, a, 0, NULL, 0, v); return map_case(r, s, 0);
    case M_CAPITALIZE: bind(r, f->name, a, 0, NULL, 0, v); return map_case(r, s, 2);
    case M_TITLE: bind(r, f->name, a, 0, NULL, 0, v); return map_case(r, s, 3);
    case M_SWAPCASE: bind(r, f->name, a, 0, NULL, 0, v); return map_case(r, s, 4);
    case M_REPLACE: {
        static const param p[] = {{"old", REQUIRED}, {"new", REQUIRED}, {"count", {.k = JV_INT, .i = -1}}};
        bind(r, f->name, a, 0, p, 3, v);
        return str_replace(r, s, want_str(r, v[0], "old"), want_str(r, v[1], "new"), want_int(r, v[2], "count"));
    }
    case M_FIND: case M_RFIND: case M_INDEX_S: case M_RINDEX: case M_COUNT_S: {
        if (a->npos < 1) jr_fail(r, r->at, "%s() takes at least 1 argument (0 given)", f->name);
        jv sub = want_str(r, a->pos[0], "the substring");
        size_t from, to;
        sub_range(r, s, a, 1, &from, &to);
        if (f->id == M_COUNT_S) {
            if (from > s.s->len) return jv_int(0);
            if (sub.s->len == 0) return jv_int((int64_t)u8_len(s.s->p + from, to > from ? to - from : 0) + 1);
            int64_t c = 0;
            for (size_t i = from; i + sub.s->len <= to;)
                if (!memcmp(s.s->p + i, sub.s->p, sub.s->len)) c++, i += sub.s->len;
                else i++;
            return jv_int(c);
        }
        int64_t pos = -1;
        if (from <= s.s->len && from + sub.s->len <= to) {
            if (f->id == M_FIND || f->id == M_INDEX_S) {
                const char *h = find_bytes(s.s->p + from, to - from, sub.s->p, sub.s->len);
                if (h) pos = cp_index(s, (size_t)(h - s.s->p));
            } else {
                for (size_t i = to - sub.s->len + 1; i-- > from;)
                    if (!memcmp(s.s->p + i, sub.s->p, sub.s->len)) { pos = cp_index(s, i); break; }
            }
        }
        if (pos < 0 && (f->id == M_INDEX_S || f->id == M_RINDEX)) jr_fail(r, r->at, "substring not found");
        return jv_int(pos);
    }
    case M_JOIN:
        if (a->npos != 1 || a->nkw) jr_fail(r, r->at, "join() takes exactly one argument");
        {
            jv items = jr_iterate(r, a->pos[0]);
            for (size_t i = 0; i < items.l->n; i++)
                if (items.l->v[i].k != JV_STR)
                    jr_fail(r, r->at, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items.l->v[i]));
            return str_join(r, s, items);
        }
    case M_FORMAT: return str_format(r, s, a);
    case M_ISDIGIT: case M_ISDECIMAL: bind(r, f->name, a, 0, NULL, 0, v); return jv_bool(all_cps(r, s, cp_digit));
    case M_ISNUMERIC: bind(r, f->name, a, 0, NULL, 0, v); return jv_bool(all_cps(r, s, cp_numeric));
    case M_ISALPHA: bind(r, f->name, a, 0, NULL, 0, v); return jv_bool(all_cps(r, s, cp_alpha));
    case M_ISALNUM: bind(r, f->name, a, 0, NULL, 0, v); return jv_bool(all_cps(r, s, pred_alnum));
    case M_ISSPACE: bind(r, f->name, a, 0, NULL, 0, v); return jv_bool(all_cps(r, s, pred_space));
    case M_ISLOWER: case M_ISUPPER: {
        bind(r, f->name, a, 0, NULL, 0, v);
        cps c = to_cps(r, s);
        bool any = false;
        for (size_t i = 0; i < c.n; i++) {
            if (!cp_cased(c.cp[i])) continue;
            bool lower = cp_lower(c.cp[i]) == c.cp[i] && cp_upper(c.cp[i]) != c.cp[i];
            bool upper = cp_upper(c.cp[i]) == c.cp[i] && cp_lower(c.cp[i]) != c.cp[i];
            if (f->id == M_ISLOWER ? !lower : !upper) return jv_bool(false);
            any = true;
        }
        return jv_bool(any);
    }
    case M_ZFILL: {
        static const param p[] = {{"width", REQUIRED}};
        bind(r, f->name, a, 0, p, 1, v);
        int64_t w = want_int(r, v[0], "width"), n = (int64_t)u8_len(s.s->p, s.s->len);
        if (w <= n) return s;
        jr_check_size(r, (size_t)w);
        jbuf b = {0};
        size_t sign = s.s->len && (s.s->p[0] == '+' || s.s->p[0] == '-');
        jb_put(r, &b, s.s->p, sign);
        for (int64_t i = 0; i < w - n; i++) jb_put(r, &b, "0", 1);
        jb_put(r, &b, s.s->p + sign, s.s->len - sign);
        return jv_str_buf(r, &b);
    }
    case M_CENTER: case M_LJUST: case M_RJUST: {
        static const param p[] = {{"width", REQUIRED}, {"fillchar", {.k = JV_NONE}}};
        bind(r, f->name, a, 0, p, 2, v);
        return pad(r, s, want_int(r, v[0], "width"), v[1], f->id == M_CENTER ? 0 : f->id == M_LJUST ? 1 : 2);
    }
    case M_REMOVEPREFIX: case M_REMOVESUFFIX: {
        static const param p[] = {{"affix", REQUIRED}};
        bind(r, f->name, a, 0, p, 1, v);
        jv x = want_str(r, v[0], "the affix");
        if (x.s->len > s.s->len) return s;
        if (f->id == M_REMOVEPREFIX)
            return !memcmp(s.s->p, x.s->p, x.s->len) ? jv_str(r, s.s->p + x.s->len, s.s->len - x.s->len) : s;
        return !memcmp(s.s->p + s.s->len - x.s->len, x.s->p, x.s->len) ? jv_str(r, s.s->p, s.s->len - x.s->len) : s;
    }
    case M_PARTITION: case M_RPARTITION: {
        static const param p[] = {{"sep", REQUIRED}};
        bind(r, f->name, a, 0, p, 1, v);
        jv sep = want_str(r, v[0], "the separator");
        if (!sep.s->len) jr_fail(r, r->at, "empty separator");
        const char *hit = NULL;
        if (f->id == M_PARTITION) hit = find_bytes(s.s->p, s.s->len, sep.s->p, sep.s->len);
        else if (sep.s->len <= s.s->len)
            for (size_t i = s.s->len - sep.s->len + 1; i-- > 0;)
                if (!memcmp(s.s->p + i, sep.s->p, sep.s->len)) { hit = s.s->p + i; break; }
        jv t = jv_list(r, 3, true), empty = jv_str(r, "", 0);
        if (!hit) {
            jl_push(r, t, f->id == M_PARTITION ? s : empty);
            jl_push(r, t, empty);
            jl_push(r, t, f->id == M_PARTITION ? empty : s);
        } else {
            jl_push(r, t, jv_str(r, s.s->p, (size_t)(hit - s.s->p)));
            jl_push(r, t, sep);
            jl_push(r, t, jv_str(r, hit + sep.s->len, s.s->len - (size_t)(hit - s.s->p) - sep.s->len));
        }
        return t;
    }
    }
    jr_fail(r, r->at, "str.%s() is not supported", f->name);
}

static jv dict_items(jrender *r, jv d) {
    jv out = jv_list(r, d.d->n, false);
    for (size_t i = 0; i < d.d->n; i++) {
        jv t = jv_list(r, 2, true);
        jl_push(r, t, d.d->key[i]);
        jl_push(r, t, d.d->val[i]);
        jl_push(r, out, t);
    }
    return out;
}

/* ---- globals ---- */
static jv make_range(jrender *r, jargs *a) {
    if (a->nkw) jr_fail(r, r->at, "range() takes no keyword arguments");
    if (a->npos < 1 || a->npos > 3) jr_fail(r, r->at, "range expected 1 to 3 arguments, got %d", a->npos);
    int64_t start = 0, stop, step = 1;
    if (a->npos == 1) stop = want_int(r, a->pos[0], "range()'s argument");
    else {
        start = want_int(r, a->pos[0], "range()'s argument");
        stop = want_int(r, a->pos[1], "range()'s argument");
        if (a->npos == 3) step = want_int(r, a->pos[2], "range()'s argument");
    }
    if (step == 0) jr_fail(r, r->at, "range() arg 3 must not be zero");
    double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step) : ceil(((double)start - (double)stop) / (double)-step);
    if (count < 0) count = 0;
    if (count > 100000) jr_fail(r, r->at, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    jv out = jv_list(r, (size_t)count, false);
    for (int64_t i = 0; i < (int64_t)count; i++) jl_push(r, out, jv_int(start + i * step));
    return out;
}

/* dict(mapping or pairs, **kwargs) */
static jv make_dict(jrender *r, jargs *a, jv_kind kind) {
    jv d = jv_dict(r, kind);
    if (a->npos > 1) jr_fail(r, r->at, "dict expected at most 1 argument, got %d", a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.k == JV_DICT || src.k == JV_NS) {
            for (size_t i = 0; i < src.d->n; i++) jd_set(r, d.d, src.d->key[i], src.d->val[i]);
        } else {
            jv items = jr_iterate(r, src);
            for (size_t i = 0; i < items.l->n; i++) {
                jv pair = items.l->v[i];
                if (pair.k == JV_STR) pair = jr_iterate(r, pair);
                if (pair.k != JV_LIST || pair.l->n != 2)
                    jr_fail(r, r->at, "dictionary update sequence element #%zu has the wrong length", i);
                jd_set(r, d.d, pair.l->v[0], pair.l->v[1]);
            }
        }
    }
    for (int k = 0; k < a->nkw; k++) jd_set(r, d.d, jv_cstr(r, a->kw[k]), a->kwv[k]);
    if (kind == JV_NS)
        for (size_t i = 0; i < d.d->n; i++)
            if (d.d->key[i].k == JV_STR && d.d->key[i].s->p[0] == '_')
                jr_fail(r, r->at, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got "
                                  "'%s'. Please rename the attribute.", d.d->key[i].s->p);
    return d;
}

jv jb_call_builtin(jrender *r, jfunc *f, jargs *a) {
    jv v[4];
    jv self = f->self;
    if (f->id < M_ITEMS) return call_str_method(r, f, a);
    switch (f->id) {
    case M_ITEMS: bind(r, f->name, a, 0, NULL, 0, v); return dict_items(r, self);
    case M_KEYS: bind(r, f->name, a, 0, NULL, 0, v); return jr_iterate(r, self);
    case M_VALUES: {
        bind(r, f->name, a, 0, NULL, 0, v);
        jv out = jv_list(r, self.d->n, false);
        for (size_t i = 0; i < self.d->n; i++) jl_push(r, out, self.d->val[i]);
        return out;
    }
    case M_GET: {
        if (a->nkw) jr_fail(r, r->at, "get() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 2) jr_fail(r, r->at, "get expected 1 or 2 arguments, got %d", a->npos);
        bool found;
        jv got = jd_get(self.d, a->pos[0], &found);
        return found ? got : a->npos == 2 ? a->pos[1] : jv_none();
    }
    case M_COPY_D: {
        bind(r, f->name, a, 0, NULL, 0, v);
        jv d = jv_dict(r, JV_DICT);
        for (size_t i = 0; i < self.d->n; i++) jd_set(r, d.d, self.d->key[i], self.d->val[i]);
        return d;
    }
    case M_INDEX_L: case M_COUNT_L: {
        if (a->npos < 1) jr_fail(r, r->at, "%s() takes at least 1 argument (0 given)", f->name);
        int64_t c = 0;
        for (size_t i = 0; i < self.l->n; i++)
            if (jv_equal(self.l->v[i], a->pos[0])) {
                if (f->id == M_INDEX_L) return jv_int((int64_t)i);
                c++;
            }
        if (f->id == M_INDEX_L) jr_fail(r, r->at, "list.index(x): x not in list");
        return jv_int(c);
    }
    case M_COPY_L: {
        bind(r, f->name, a, 0, NULL, 0, v);
        jv out = jv_list(r, self.l->n, false);
        for (size_t i = 0; i < self.l->n; i++) jl_push(r, out, self.l->v[i]);
        return out;
    }
    case M_CYCLER_NEXT: {
        jcycler *c = self.cy;
        jv x = c->items->v[c->pos];
        c->pos = (c->pos + 1) % c->items->n;
        return x;
    }
    case M_CYCLER_RESET: self.cy->pos = 0; return jv_none();
    case M_LOOP_CYCLE:
        if (a->npos == 0) jr_fail(r, r->at, "no items for cycling given");
        return a->pos[self.loop->i % (size_t)a->npos];
    case M_LOOP_CHANGED: {
        jv now = jv_list(r, (size_t)a->npos, false);
        for (int i = 0; i < a->npos; i++) jl_push(r, now, a->pos[i]);
        if (self.loop->changed_set && jv_equal(self.loop->changed_last, now)) return jv_bool(false);
        self.loop->changed_last = now;
        self.loop->changed_set = true;
        return jv_bool(true);
    }
    case M_UNSAFE:
        jr_fail(r, r->at, "access to attribute '%s' of '%s' object is unsafe.", f->name, jv_type_name(self));
    case G_RANGE: return make_range(r, a);
    case G_DICT: return make_dict(r, a, JV_DICT);
    case G_NAMESPACE: return make_dict(r, a, JV_NS);
    case G_CYCLER: {
        if (a->npos == 0) jr_fail(r, r->at, "at least one item has to be provided");
        jcycler *c = ja_alloc(&r->arena, sizeof *c);
        jv items = jv_list(r, (size_t)a->npos, false);
        for (int i = 0; i < a->npos; i++) jl_push(r, items, a->pos[i]);
        c->items = items.l;
        jv out = {.k = JV_CYCLER};
        out.cy = c;
        return out;
    }
    case G_JOINER: {
        static const param p[] = {{"sep", {.k = JV_UNDEF}}};
        bind(r, f->name, a, 0, p, 1, v);
        jcycler *c = ja_alloc(&r->arena, sizeof *c);
        jv items = jv_list(r, 1, false);
        jl_push(r, items, v[0].k == JV_UNDEF ? jv_cstr(r, ", ") : v[0]);
        c->items = items.l;
        jv out = {.k = JV_JOINER};
        out.cy = c;
        return out;
    }
    case G_RAISE: {
        static const param p[] = {{"message", REQUIRED}};
        bind(r, f->name, a, 0, p, 1, v);
        jv msg = jv_str_of(r, v[0]);
        jr_fail(r, r->at, "%s", msg.s->p);
    }
    case G_STRFTIME: {
        static const param p[] = {{"format", REQUIRED}};
        bind(r, f->name, a, 0, p, 1, v);
        jv fmt = want_str(r, v[0], "the format");
        time_t t = (time_t)r->now;
        struct tm tm;
        localtime_r(&t, &tm);
        char out[512];
        size_t n = fmt.s->len ? strftime(out, sizeof out, fmt.s->p, &tm) : 0;
        if (fmt.s->len && n == 0 && fmt.s->len < 200) out[0] = 0;
        return jv_str(r, out, n);
    }
    }
    jr_fail(r, r->at, "'%s' is not callable", f->name);
}

void jb_install_globals(jrender *r, scope *g) {
    static const named G[] = {{"range", G_RANGE}, {"dict", G_DICT}, {"namespace", G_NAMESPACE},
                              {"cycler", G_CYCLER}, {"joiner", G_JOINER}, {"raise_exception", G_RAISE},
                              {"strftime_now", G_STRFTIME}, {NULL, 0}};
    for (int i = 0; G[i].name; i++) jd_set(r, g->vars, jv_cstr(r, G[i].name), make_func(r, G[i].id, jv_none(), G[i].name));
}

/* ---- tests ---- */
enum {
    TS_BOOLEAN, TS_CALLABLE, TS_DEFINED, TS_DIVISIBLEBY, TS_EQ, TS_ESCAPED, TS_EVEN, TS_FALSE, TS_FILTER, TS_FLOAT, TS_GE,
    TS_GT, TS_IN, TS_INTEGER, TS_ITERABLE, TS_LE, TS_LOWER, TS_LT, TS_MAPPING, TS_NE, TS_NONE, TS_NUMBER, TS_ODD, TS_SAMEAS,
    TS_SEQUENCE, TS_STRING, TS_TEST, TS_TRUE, TS_UNDEFINED, TS_UPPER,
};
static const named TESTS[] = {
    {"boolean", TS_BOOLEAN}, {"callable", TS_CALLABLE}, {"defined", TS_DEFINED}, {"divisibleby", TS_DIVISIBLEBY},
    {"eq", TS_EQ}, {"equalto", TS_EQ}, {"==", TS_EQ}, {"escaped", TS_ESCAPED}, {"even", TS_EVEN}, {"false", TS_FALSE},
    {"filter", TS_FILTER}, {"float", TS_FLOAT}, {"ge", TS_GE}, {">=", TS_GE}, {"gt", TS_GT}, {"greaterthan", TS_GT},
    {">", TS_GT}, {"in", TS_IN}, {"integer", TS_INTEGER}, {"iterable", TS_ITERABLE}, {"le", TS_LE}, {"<=", TS_LE},
    {"lower", TS_LOWER}, {"lt", TS_LT}, {"lessthan", TS_LT}, {"<", TS_LT}, {"mapping", TS_MAPPING}, {"ne", TS_NE},
    {"!=", TS_NE}, {"none", TS_NONE}, {"number", TS_NUMBER}, {"odd", TS_ODD}, {"sameas", TS_SAMEAS},
    {"sequence", TS_SEQUENCE}, {"string", TS_STRING}, {"test", TS_TEST}, {"true", TS_TRUE}, {"undefined", TS_UNDEFINED},
    {"upper", TS_UPPER}, {NULL, 0}};

int jb_test_id(const char *name) {
    for (int i = 0; TESTS[i].name; i++)
        if (!strcmp(TESTS[i].name, name)) return TESTS[i].id;
    return -1;
}

static jv one_arg(jrender *r, const char *name, jargs *a) {
    static const param p[] = {{"other", REQUIRED}};
    jv v[1];
    bind(r, name, a, 0, p, 1, v);
    return v[0];
}

static int cmp_test(jrender *r, jv a, jv b, const char *sym) {
    int c;
    if (a.k == JV_UNDEF && a.uname) jr_fail(r, r->at, "%s", a.uname);
    if (!jv_compare(a, b, &c))
        jr_fail(r, r->at, "'%s' not supported between instances of '%s' and '%s'", sym, jv_type_name(a), jv_type_name(b));
    return c;
}

static jv py_mod(jrender *r, jv a, jv b) {
    if (a.k == JV_UNDEF && a.uname) jr_fail(r, r->at, "%s", a.uname);
    bool fa = a.k == JV_FLOAT, fb = b.k == JV_FLOAT;
    if ((a.k != JV_INT && a.k != JV_BOOL && !fa) || (b.k != JV_INT && b.k != JV_BOOL && !fb))
        jr_fail(r, r->at, "unsupported operand type(s) for %%: '%s' and '%s'", jv_type_name(a), jv_type_name(b));
    if (!fa && !fb) {
        int64_t x = want_int(r, a, "x"), y = want_int(r, b, "y");
        if (y == 0) jr_fail(r, r->at, "integer division or modulo by zero");
        if (y == -1) return jv_int(0);
        int64_t m = x % y;
        if (m && ((m < 0) != (y < 0))) m += y;
        return jv_int(m);
    }
    double x = fa ? a.f : (double)want_int(r, a, "x"), y = fb ? b.f : (double)want_int(r, b, "y");
    if (y == 0) jr_fail(r, r->at, "float modulo");
    double m = fmod(x, y);
    if (m && ((m < 0) != (y < 0))) m += y;
    return jv_float(m);
}

bool jb_test(jrender *r, int id, jv v, jargs *a) {
    switch (id) {
    case TS_BOOLEAN: return v.k == JV_BOOL;
    case TS_CALLABLE: return v.k == JV_MACRO || v.k == JV_FUNC || v.k == JV_JOINER || v.k == JV_UNDEF || v.k == JV_LOOP;
    case TS_DEFINED: return v.k != JV_UNDEF;
    case TS_UNDEFINED: return v.k == JV_UNDEF;
    case TS_DIVISIBLEBY: {
        jv m = py_mod(r, v, one_arg(r, "divisibleby", a));
        return m.k == JV_INT ? m.i == 0 : m.f == 0;
    }
    case TS_EQ: return jv_equal(v, one_arg(r, "eq", a));
    case TS_NE: return !jv_equal(v, one_arg(r, "ne", a));
    case TS_LT: return cmp_test(r, v, one_arg(r, "lt", a), "<") < 0;
    case TS_LE: return cmp_test(r, v, one_arg(r, "le", a), "<=") <= 0;
    case TS_GT: return cmp_test(r, v, one_arg(r, "gt", a), ">") > 0;
    case TS_GE: return cmp_test(r, v, one_arg(r, "ge", a), ">=") >= 0;
    case TS_ESCAPED: return false;
    case TS_EVEN: case TS_ODD: {
        jv m = py_mod(r, v, jv_int(2));
        bool even = m.k == JV_INT ? m.i == 0 : m.f == 0;
        return id == TS_EVEN ? even : !even;
    }
    case TS_FALSE: return v.k == JV_BOOL && !v.b;
    case TS_TRUE: return v.k == JV_BOOL && v.b;
    case TS_FILTER: return v.k == JV_STR && jb_filter_id(v.s->p) >= 0;
    case TS_TEST: return v.k == JV_STR && jb_test_id(v.s->p) >= 0;
    case TS_FLOAT: return v.k == JV_FLOAT;
    case TS_INTEGER: return v.k == JV_INT;
    case TS_NUMBER: return v.k == JV_INT || v.k == JV_FLOAT || v.k == JV_BOOL;
    case TS_IN: {
        jv seq = one_arg(r, "in", a);
        if (seq.k == JV_STR) {
            if (v.k != JV_STR) jr_fail(r, r->at, "'in <string>' requires string as left operand, not %s", jv_type_name(v));
            return find_bytes(seq.s->p, seq.s->len, v.s->p, v.s->len) != NULL;
        }
        if (seq.k == JV_DICT) {
            bool found;
            jd_get(seq.d, v, &found);
            return found;
        }
        if (seq.k == JV_UNDEF) return false;
        if (seq.k != JV_LIST) jr_fail(r, r->at, "argument of type '%s' is not iterable", jv_type_name(seq));
        for (size_t i = 0; i < seq.l->n; i++)
            if (jv_equal(seq.l->v[i], v)) return true;
        return false;
    }
    case TS_ITERABLE: return v.k == JV_STR || v.k == JV_LIST || v.k == JV_DICT || v.k == JV_UNDEF || v.k == JV_LOOP;
    case TS_SEQUENCE: return v.k == JV_STR || v.k == JV_LIST || v.k == JV_DICT || v.k == JV_UNDEF;
    case TS_MAPPING: return v.k == JV_DICT;
    case TS_NONE: return v.k == JV_NONE;
    case TS_STRING: return v.k == JV_STR;
    case TS_LOWER: case TS_UPPER: {
        jv s = jv_str_of(r, v);
        jfunc f = {id == TS_LOWER ? M_ISLOWER : M_ISUPPER, s, id == TS_LOWER ? "islower" : "isupper"};
        jargs none = no_args();
        return jv_truthy(call_str_method(r, &f, &none));
    }
    case TS_SAMEAS: {
        jv o = one_arg(r, "sameas", a);
        if (v.k != o.k) return false;
        switch (v.k) {
        case JV_NONE: case JV_UNDEF: return v.k == JV_NONE || false;
        case JV_BOOL: return v.b == o.b;
        case JV_INT: return v.i == o.i && v.i >= -5 && v.i <= 256; /* CPython's small int cache */
        case JV_FLOAT: return false;
        case JV_STR: return v.s == o.s;
        default: return jv_equal(v, o) && v.d == o.d;
        }
    }
    }
    jr_fail(r, r->at, "unknown test");
}

/* ---- filters ---- */
enum {
    F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_DEFAULT, F_DICTSORT, F_ESCAPE, F_FORCEESCAPE, F_FIRST, F_FLOAT,
    F_FORMAT, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_PPRINT,
    F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SORT, F_STRING,
    F_SUM, F_TITLE, F_TOJSON, F_TRIM, F_TRUNCATE, F_UNIQUE, F_UPPER, F_WORDCOUNT,
};
static const named FILTERS[] = {
    {"abs", F_ABS}, {"attr", F_ATTR}, {"batch", F_BATCH}, {"capitalize", F_CAPITALIZE}, {"center", F_CENTER},
    {"count", F_COUNT}, {"d", F_DEFAULT}, {"default", F_DEFAULT}, {"dictsort", F_DICTSORT}, {"e", F_ESCAPE},
    {"escape", F_ESCAPE}, {"forceescape", F_FORCEESCAPE}, {"first", F_FIRST}, {"float", F_FLOAT}, {"format", F_FORMAT},
    {"indent", F_INDENT}, {"int", F_INT}, {"items", F_ITEMS}, {"join", F_JOIN}, {"last", F_LAST},
    {"length", F_COUNT}, {"list", F_LIST}, {"lower", F_LOWER}, {"map", F_MAP}, {"max", F_MAX}, {"min", F_MIN},
    {"pprint", F_PPRINT}, {"reject", F_REJECT}, {"rejectattr", F_REJECTATTR}, {"replace", F_REPLACE},
    {"reverse", F_REVERSE}, {"round", F_ROUND}, {"safe", F_SAFE}, {"select", F_SELECT},
    {"selectattr", F_SELECTATTR}, {"sort", F_SORT}, {"string", F_STRING}, {"sum", F_SUM}, {"title", F_TITLE},
    {"tojson", F_TOJSON}, {"trim", F_TRIM}, {"truncate", F_TRUNCATE}, {"unique", F_UNIQUE}, {"upper", F_UPPER},
    {"wordcount", F_WORDCOUNT}, {NULL, 0}};

int jb_filter_id(const char *name) {
    for (int i = 0; FILTERS[i].name; i++)
        if (!strcmp(FILTERS[i].name, name)) return FILTERS[i].id;
    return -1;
}

/* jinja's make_attrgetter: "a.b.0" -> item lookups (environment.getitem) along the path */
static jv attr_path(jrender *r, jv item, jv attribute) {
    if (attribute.k == JV_INT) return jr_getitem(r, item, attribute);
    attribute = want_str(r, attribute, "attribute");
    const char *p = attribute.s->p, *end = p + attribute.s->len;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        bool digits = len > 0;
        for (size_t i = 0; i < len; i++) digits = digits && p[i] >= '0' && p[i] <= '9';
        jv key = digits ? jv_int(atoll(p)) : jv_str(r, p, len);
        item = jr_getitem(r, item, key);
        if (!dot) break;
        p = dot + 1;
    }
    return item;
}

/* select/reject/selectattr/rejectattr */
static jv select_items(jrender *r, jv seq, jargs *a, bool by_attr, bool keep_if) {
    int first = 0;
    jv attribute = jv_undef(NULL);
    if (by_attr) {
        if (a->npos < 1) jr_fail(r, r->at, "Missing parameter for attribute name");
        attribute = a->pos[0];
        first = 1;
    }
    int test = -1;
    if (a->npos > first) {
        jv name = want_str(r, a->pos[first], "the test name");
        test = jb_test_id(name.s->p);
        if (test < 0) jr_fail(r, r->at, "No test named '%s'.", name.s->p);
    }
    jargs targs = {a->pos + first + 1, a->npos > first + 1 ? a->npos - first - 1 : 0, a->kw, a->kwv, a->nkw};
    jv out = jv_list(r, 0, false);
    out.l->gen = true;
    if (!jv_truthy(seq)) return out; /* jinja: `if value:` before iterating */
    jv items = jr_iterate(r, seq);
    for (size_t i = 0; i < items.l->n; i++) {
        jv x = by_attr ? attr_path(r, items.l->v[i], attribute) : items.l->v[i];
        bool ok = test < 0 ? jv_truthy(x) : jb_test(r, test, x, &targs);
        if (ok == keep_if) jl_push(r, out, items.l->v[i]);
    }
    return out;
}

/* sort key: the value (or its attribute), lowercased when it is a string and not case_sensitive */
static jv sort_key(jrender *r, jv x, jv attribute, bool case_sensitive) {
    if (attribute.k != JV_NONE && attribute.k != JV_UNDEF) x = attr_path(r, x, attribute);
    if (!case_sensitive && x.k == JV_STR) x = map_case(r, x, 0);
    return x;
}

static void sort_values(jrender *r, jv *vals, jv *keys, size_t n, bool reverse) {
    /* stable insertion sort (lists in templates are short) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            int c;
            if (!jv_compare(keys[j - 1], keys[j], &c))
                jr_fail(r, r->at, "'<' not supported between instances of '%s' and '%s'", jv_type_name(keys[j]),
                        jv_type_name(keys[j - 1]));
            if (reverse ? c >= 0 : c <= 0) break;
            jv t = keys[j]; keys[j] = keys[j - 1]; keys[j - 1] = t;
            t = vals[j]; vals[j] = vals[j - 1]; vals[j - 1] = t;
        }
}

static jv do_indent(jrender *r, jv s, jv width, bool first, bool blank) {
    jv ind;
    if (width.k == JV_STR) ind = width;
    else {
        int64_t w = want_int(r, width, "width");
        jbuf b = {0};
        for (int64_t i = 0; i < w; i++) jb_put(r, &b, " ", 1);
        ind = jv_str_buf(r, &b);
    }
    jbuf t = {0};
    jb_put(r, &t, s.s->p, s.s->len);
    jb_put(r, &t, "\n", 1); /* jinja's quirk: s += newline before splitlines */
    jv lines = splitlines(r, jv_str_buf(r, &t), false);
    jbuf b = {0};
    if (first) jb_put(r, &b, ind.s->p, ind.s->len);
    for (size_t i = 0; i < lines.l->n; i++) {
        jv line = lines.l->v[i];
        if (i) {
            jb_put(r, &b, "\n", 1);
            if (blank || line.s->len) jb_put(r, &b, ind.s->p, ind.s->len);
        }
        jb_put(r, &b, line.s->p, line.s->len);
    }
    return jv_str_buf(r, &b);
}

/* Python's round(x, ndigits) for floats: correctly rounded through the decimal digits */
static jv do_round(jrender *r, jv x, int64_t prec, jv method) {
    const char *m = method.k == JV_STR ? method.s->p : "common";
    if (x.k == JV_INT || x.k == JV_BOOL) {
        if (!strcmp(m, "common")) return jv_int(want_int(r, x, "value"));
        x = jv_float((double)want_int(r, x, "value"));
    }
    if (x.k != JV_FLOAT) jr_fail(r, r->at, "round() needs a number, not %s", jv_type_name(x));
    if (!strcmp(m, "common")) {
        if (!isfinite(x.f) || prec > 300) return x;
        if (prec < 0) {
            double p = pow(10.0, (double)-prec);
            return jv_float(nearbyint(x.f / p) * p);
        }
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x.f);
        return jv_float(strtod(buf, NULL));
    }
    double p = pow(10.0, (double)prec);
    if (!strcmp(m, "ceil")) return jv_float(ceil(x.f * p) / p);
    if (!strcmp(m, "floor")) return jv_float(floor(x.f * p) / p);
    jr_fail(r, r->at, "method must be common, ceil or floor");
}

/* Python's int(str, base) for base 10: whitespace, sign, digits with single underscores */
static bool parse_int(const char *s, int64_t *out) {
    while (*s == ' ' || (*s >= '\t' && *s <= '\r')) s++;
    bool neg = false;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    if (!(*s >= '0' && *s <= '9')) return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s == '_' && s[1] >= '0' && s[1] <= '9' && s[-1] != '_') continue;
        if (!(*s >= '0' && *s <= '9')) break;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v)) return false;
    }
    while (*s == ' ' || (*s >= '\t' && *s <= '\r')) s++;
    if (*s) return false;
    *out = neg ? -v : v;
    return true;
}

static bool parse_float(const char *s, double *out) {
    char *end;
    while (*s == ' ' || (*s >= '\t' && *s <= '\r')) s++;
    if (!*s) return false;
    *out = strtod(s, &end);
    if (end == s) return false;
    while (*end == ' ' || (*end >= '\t' && *end <= '\r')) end++;
    return *end == 0;
}

jv jb_filter(jrender *r, int id, jv v, jargs *a) {
    jv p[6];
    switch (id) {
    case F_ABS:
        bind(r, "abs", a, 0, NULL, 0, p);
        if (v.k == JV_INT || v.k == JV_BOOL) {
            int64_t x = want_int(r, v, "value");
            if (x == INT64_MIN) jr_fail(r, r->at, "integer overflow in abs");
            return jv_int(x < 0 ? -x : x);
        }
        if (v.k == JV_FLOAT) return jv_float(fabs(v.f));
        jr_fail(r, r->at, "bad operand type for abs(): '%s'", jv_type_name(v));
    case F_ATTR: { /* getattr(obj, name): attributes only, never items */
        static const param ps[] = {{"name", REQUIRED}};
        bind(r, "attr", a, 0, ps, 1, p);
        const char *name = want_str(r, p[0], "name").s->p;
        if (v.k == JV_DICT || v.k == JV_STR || v.k == JV_LIST) {
            bool found = false;
            jv m = name[0] != '_' ? jb_method(r, v, name, &found) : jv_undef(NULL);
            return found ? m : jv_undef(NULL);
        }
        return jr_getattr(r, v, name);
    }
    case F_BATCH: {
        static const param ps[] = {{"linecount", REQUIRED}, {"fill_with", {.k = JV_NONE}}};
        bind(r, "batch", a, 0, ps, 2, p);
        int64_t n = want_int(r, p[0], "linecount");
        if (n <= 0) jr_fail(r, r->at, "batch size must be positive");
        jv items = jr_iterate(r, v), out = jv_list(r, 0, false), cur = jv_undef(NULL);
        out.l->gen = true;
        for (size_t i = 0; i < items.l->n; i++) {
            if (cur.k == JV_UNDEF || (int64_t)cur.l->n == n) {
                cur = jv_list(r, (size_t)n, false);
                jl_push(r, out, cur);
            }
            jl_push(r, cur, items.l->v[i]);
        }
        if (cur.k == JV_LIST && p[1].k != JV_NONE)
            while ((int64_t)cur.l->n < n) jl_push(r, cur, p[1]);
        return out;
    }
    case F_CAPITALIZE: bind(r, "capitalize", a, 0, NULL, 0, p); return map_case(r, jv_str_of(r, v), 2);
    case F_CENTER: {
        static const param ps[] = {{"width", {.k = JV_INT, .i = 80}}};
        bind(r, "center", a, 0, ps, 1, p);
        return pad(r, jv_str_of(r, v), want_int(r, p[0], "width"), jv_none(), 0);
    }
    case F_COUNT: bind(r, "length", a, 0, NULL, 0, p); return jv_int(py_len(r, v));
    case F_DEFAULT: {
        static const param ps[] = {{"default_value", {.k = JV_STR}}, {"boolean", {.k = JV_BOOL, .b = false}}};
        bind(r, "default", a, 0, ps, 2, p);
        if (p[0].k == JV_STR && !p[0].s) p[0] = jv_str(r, "", 0);
        if (v.k == JV_UNDEF || (jv_truthy(p[1]) && !jv_truthy(v))) return p[0];
        return v;
    }
    case F_DICTSORT: {
        static const param ps[] = {{"case_sensitive", {.k = JV_BOOL, .b = false}},
                                   {"by", {.k = JV_UNDEF}},
                                   {"reverse", {.k = JV_BOOL, .b = false}}};
        bind(r, "dictsort", a, 0, ps, 3, p);
        if (v.k != JV_DICT) jr_fail(r, r->at, "dictsort needs a mapping, not %s", jv_type_name(v));
        bool by_value = p[1].k == JV_STR && !strcmp(p[1].s->p, "value");
        if (p[1].k == JV_STR && !by_value && strcmp(p[1].s->p, "key"))
            jr_fail(r, r->at, "You can only sort by either \"key\" or \"value\"");
        jv items = dict_items(r, v);
        size_t n = items.l->n;
        jv *keys = ja_alloc(&r->arena, (n + 1) * sizeof *keys);
        for (size_t i = 0; i < n; i++)
            keys[i] = sort_key(r, items.l->v[i].l->v[by_value ? 1 : 0], jv_none(), jv_truthy(p[0]));
        sort_values(r, items.l->v, keys, n, jv_truthy(p[2]));
        return items;
    }
    case F_ESCAPE: bind(r, "escape", a, 0, NULL, 0, p); return jb_html_escape(r, v);
    case F_FORCEESCAPE: bind(r, "forceescape", a, 0, NULL, 0, p); return jb_html_escape(r, jv_str_of(r, v));
    case F_FIRST: case F_LAST: {
        bind(r, id == F_FIRST ? "first" : "last", a, 0, NULL, 0, p);
        jv items = jr_iterate(r, v);
        if (!items.l->n) return jv_undef(id == F_FIRST ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        return items.l->v[id == F_FIRST ? 0 : items.l->n - 1];
    }
    case F_FLOAT: {
        static const param ps[] = {{"default", {.k = JV_FLOAT, .f = 0.0}}};
        bind(r, "float", a, 0, ps, 1, p);
        if (v.k == JV_FLOAT) return v;
        if (v.k == JV_INT || v.k == JV_BOOL) return jv_float((double)want_int(r, v, "value"));
        if (v.k == JV_UNDEF) jr_fail(r, r->at, "%s", v.uname ? v.uname : "a value is undefined");
        double f;
        if (v.k == JV_STR && parse_float(v.s->p, &f)) return jv_float(f);
        return p[0];
    }
    case F_FORMAT: {
        jv s = jv_str_of(r, v);
        if (a->nkw) {
            jv d = jv_dict(r, JV_DICT);
            for (int k = 0; k < a->nkw; k++) jd_set(r, d.d, jv_cstr(r, a->kw[k]), a->kwv[k]);
            return jb_percent_format(r, s, d);
        }
        jv t = jv_list(r, (size_t)a->npos, true);
        for (int i = 0; i < a->npos; i++) jl_push(r, t, a->pos[i]);
        return jb_percent_format(r, s, t);
    }
    case F_INDENT: {
        static const param ps[] = {{"width", {.k = JV_INT, .i = 4}}, {"first", {.k = JV_BOOL, .b = false}},
                                   {"blank", {.k = JV_BOOL, .b = false}}};
        bind(r, "indent", a, 0, ps, 3, p);
        return do_indent(r, jv_str_of(r, v), p[0], jv_truthy(p[1]), jv_truthy(p[2]));
    }
    case F_INT: {
        static const param ps[] = {{"default", {.k = JV_INT, .i = 0}}, {"base", {.k = JV_INT, .i = 10}}};
        bind(r, "int", a, 0, ps, 2, p);
        if (v.k == JV_INT) return v;
        if (v.k == JV_BOOL) return jv_int(v.b);
        if (v.k == JV_FLOAT) {
            if (!isfinite(v.f) || fabs(v.f) >= 9.2e18) return p[0];
            return jv_int((int64_t)v.f);
        }
        if (v.k == JV_UNDEF) jr_fail(r, r->at, "%s", v.uname ? v.uname : "a value is undefined");
        if (v.k == JV_STR) {
            int64_t i;
            double f;
            if (want_int(r, p[1], "base") == 10 && parse_int(v.s->p, &i)) return jv_int(i);
            if (want_int(r, p[1], "base") != 10) {
                char *end;
                long long x = strtoll(v.s->p, &end, (int)p[1].i);
                if (end != v.s->p && !*end) return jv_int(x);
            }
            if (parse_float(v.s->p, &f) && isfinite(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
        }
        return p[0];
    }
    case F_ITEMS:
        bind(r, "items", a, 0, NULL, 0, p);
        if (v.k == JV_UNDEF) return jv_list(r, 0, false);
        if (v.k != JV_DICT) jr_fail(r, r->at, "Can only get item pairs from a mapping.");
        {
            jv items = dict_items(r, v);
            items.l->gen = true;
            return items;
        }
    case F_JOIN: {
        static const param ps[] = {{"d", {.k = JV_STR}}, {"attribute", {.k = JV_NONE}}};
        bind(r, "join", a, 0, ps, 2, p);
        jv sep = p[0].k == JV_STR && p[0].s ? p[0] : p[0].k == JV_STR ? jv_str(r, "", 0) : jv_str_of(r, p[0]);
        jv items = jr_iterate(r, v);
        if (p[1].k != JV_NONE) {
            jv mapped = jv_list(r, items.l->n, false);
            for (size_t i = 0; i < items.l->n; i++) jl_push(r, mapped, attr_path(r, items.l->v[i], p[1]));
            items = mapped;
        }
        return str_join(r, sep, items);
    }
    case F_LIST: bind(r, "list", a, 0, NULL, 0, p); {
            jv items = jr_iterate(r, v), out = jv_list(r, items.l->n, false);
            for (size_t i = 0; i < items.l->n; i++) jl_push(r, out, items.l->v[i]);
            return out;
        }
    case F_LOWER: bind(r, "lower", a, 0, NULL, 0, p); return map_case(r, jv_str_of(r, v), 0);
    case F_UPPER: bind(r, "upper", a, 0, NULL, 0, p); return map_case(r, jv_str_of(r, v), 1);
    case F_MAP: {
        if (!jv_truthy(v)) {
            jv empty = jv_list(r, 0, false);
            empty.l->gen = true;
            return empty;
        }
        jv items = jr_iterate(r, v), out = jv_list(r, items.l->n, false);
        out.l->gen = true;
        int ai = -1, di = -1;
        for (int k = 0; k < a->nkw; k++) {
            if (!strcmp(a->kw[k], "attribute")) ai = k;
            else if (!strcmp(a->kw[k], "default")) di = k;
        }
        if (ai >= 0) {
            for (size_t i = 0; i < items.l->n; i++) {
                jv x = attr_path(r, items.l->v[i], a->kwv[ai]);
                if (x.k == JV_UNDEF && di >= 0) x = a->kwv[di];
                jl_push(r, out, x);
            }
            return out;
        }
        if (a->npos < 1) jr_fail(r, r->at, "map requires a filter argument");
        jv name = want_str(r, a->pos[0], "the filter name");
        int fid = jb_filter_id(name.s->p);
        if (fid < 0) jr_fail(r, r->at, "No filter named '%s'.", name.s->p);
        jargs fa = {a->pos + 1, a->npos - 1, a->kw, a->kwv, a->nkw};
        for (size_t i = 0; i < items.l->n; i++) jl_push(r, out, jb_filter(r, fid, items.l->v[i], &fa));
        return out;
    }
    case F_MAX: case F_MIN: {
        static const param ps[] = {{"case_sensitive", {.k = JV_BOOL, .b = false}}, {"attribute", {.k = JV_NONE}}};
        bind(r, id == F_MAX ? "max" : "min", a, 0, ps, 2, p);
        jv items = jr_iterate(r, v);
        if (!items.l->n) return jv_undef(id == F_MAX ? "No aggregated item, sequence was empty." : "No aggregated item, sequence was empty.");
        size_t best = 0;
        jv bk = sort_key(r, items.l->v[0], p[1], jv_truthy(p[0]));
        for (size_t i = 1; i < items.l->n; i++) {
            jv k = sort_key(r, items.l->v[i], p[1], jv_truthy(p[0]));
            int c;
            if (!jv_compare(k, bk, &c))
                jr_fail(r, r->at, "'<' not supported between instances of '%s' and '%s'", jv_type_name(k), jv_type_name(bk));
            if (id == F_MAX ? c > 0 : c < 0) best = i, bk = k;
        }
        return items.l->v[best];
    }
    case F_PPRINT: {
        bind(r, "pprint", a, 0, NULL, 0, p);
        jbuf b = {0};
        jv_repr(r, &b, v);
        return jv_str_buf(r, &b);
    }
    case F_REJECT: return select_items(r, v, a, false, false);
    case F_SELECT: return select_items(r, v, a, false, true);
    case F_REJECTATTR: return select_items(r, v, a, true, false);
    case F_SELECTATTR: return select_items(r, v, a, true, true);
    case F_REPLACE: {
        static const param ps[] = {{"old", REQUIRED}, {"new", REQUIRED}, {"count", {.k = JV_NONE}}};
        bind(r, "replace", a, 0, ps, 3, p);
        int64_t count = p[2].k == JV_NONE ? -1 : want_int(r, p[2], "count");
        return str_replace(r, jv_str_of(r, v), jv_str_of(r, p[0]), jv_str_of(r, p[1]), count);
    }
    case F_REVERSE: {
        bind(r, "reverse", a, 0, NULL, 0, p);
        if (v.k == JV_STR) {
            cps c = to_cps(r, v);
            for (size_t i = 0; i < c.n / 2; i++) {
                uint32_t t = c.cp[i];
                c.cp[i] = c.cp[c.n - 1 - i];
                c.cp[c.n - 1 - i] = t;
            }
            return from_cps(r, c.cp, c.n);
        }
        jv items = jr_iterate(r, v), out = jv_list(r, items.l->n, false);
        for (size_t i = items.l->n; i > 0; i--) jl_push(r, out, items.l->v[i - 1]);
        out.l->gen = true; /* reversed(): an iterator */
        return out;
    }
    case F_ROUND: {
        static const param ps[] = {{"precision", {.k = JV_INT, .i = 0}}, {"method", {.k = JV_UNDEF}}};
        bind(r, "round", a, 0, ps, 2, p);
        return do_round(r, v, want_int(r, p[0], "precision"), p[1]);
    }
    case F_STRING: bind(r, "string", a, 0, NULL, 0, p); return v.k == JV_STR ? v : jv_str_of(r, v);
    case F_SAFE: {
        bind(r, "safe", a, 0, NULL, 0, p);
        if (v.k == JV_STR && v.s->markup) return v;
        jv s = jv_str_of(r, v);
        jv out = jv_str(r, s.s->p, s.s->len);
        out.s->markup = true;
        return out;
    }
    case F_SORT: {
        static const param ps[] = {{"reverse", {.k = JV_BOOL, .b = false}}, {"case_sensitive", {.k = JV_BOOL, .b = false}},
                                   {"attribute", {.k = JV_NONE}}};
        bind(r, "sort", a, 0, ps, 3, p);
        jv items = jr_iterate(r, v), out = jv_list(r, items.l->n, false);
        size_t n = items.l->n;
        jv *keys = ja_alloc(&r->arena, (n + 1) * sizeof *keys);
        for (size_t i = 0; i < n; i++) {
            jl_push(r, out, items.l->v[i]);
            keys[i] = sort_key(r, items.l->v[i], p[2], jv_truthy(p[1]));
        }
        sort_values(r, out.l->v, keys, n, jv_truthy(p[0]));
        return out;
    }
    case F_SUM: {
        static const param ps[] = {{"attribute", {.k = JV_NONE}}, {"start", {.k = JV_INT, .i = 0}}};
        bind(r, "sum", a, 0, ps, 2, p);
        jv items = jr_iterate(r, v), acc = p[1];
        for (size_t i = 0; i < items.l->n; i++) {
            jv x = p[0].k != JV_NONE ? attr_path(r, items.l->v[i], p[0]) : items.l->v[i];
            bool fl = acc.k == JV_FLOAT || x.k == JV_FLOAT;
            if ((acc.k != JV_INT && acc.k != JV_BOOL && acc.k != JV_FLOAT) || (x.k != JV_INT && x.k != JV_BOOL && x.k != JV_FLOAT))
                jr_fail(r, r->at, "unsupported operand type(s) for +: '%s' and '%s'", jv_type_name(acc), jv_type_name(x));
            if (fl) acc = jv_float((acc.k == JV_FLOAT ? acc.f : (double)want_int(r, acc, "x")) +
                                   (x.k == JV_FLOAT ? x.f : (double)want_int(r, x, "x")));
            else {
                int64_t z;
                if (__builtin_add_overflow(want_int(r, acc, "x"), want_int(r, x, "x"), &z)) jr_fail(r, r->at, "integer overflow in sum");
                acc = jv_int(z);
            }
        }
        return acc;
    }
    case F_TITLE: {
        /* jinja's title: runs of [-\s({[<] are kept, every other run is capitalised (first upper, rest lower) */
        bind(r, "title", a, 0, NULL, 0, p);
        cps c = to_cps(r, jv_str_of(r, v));
        bool start = true;
        for (size_t i = 0; i < c.n; i++) {
            uint32_t x = c.cp[i];
            bool sep = x == '-' || x == '(' || x == '{' || x == '[' || x == '<' || py_isspace(x);
            if (sep) { start = true; continue; }
            c.cp[i] = start ? cp_upper(x) : cp_lower(x);
            start = false;
        }
        return from_cps(r, c.cp, c.n);
    }
    case F_TOJSON: {
        /* transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
        static const param ps[] = {{"ensure_ascii", {.k = JV_BOOL, .b = false}}, {"indent", {.k = JV_NONE}},
                                   {"separators", {.k = JV_NONE}}, {"sort_keys", {.k = JV_BOOL, .b = false}}};
        bind(r, "tojson", a, 0, ps, 4, p);
        const char *indent = NULL, *item_sep = NULL, *key_sep = NULL;
        if (p[1].k == JV_STR) indent = p[1].s->p;
        else if (p[1].k == JV_INT || p[1].k == JV_BOOL) {
            int64_t w = want_int(r, p[1], "indent");
            if (w > 1000) jr_fail(r, r->at, "indent is too large");
            char *sp = ja_alloc(&r->arena, (size_t)(w > 0 ? w : 0) + 1);
            for (int64_t i = 0; i < w; i++) sp[i] = ' ';
            indent = sp;
        } else if (p[1].k != JV_NONE) jr_fail(r, r->at, "indent must be an integer, a string or None");
        if (p[2].k == JV_LIST) {
            if (p[2].l->n != 2) jr_fail(r, r->at, "separators must be a pair of strings");
            item_sep = want_str(r, p[2].l->v[0], "separators").s->p;
            key_sep = want_str(r, p[2].l->v[1], "separators").s->p;
        } else if (p[2].k != JV_NONE) jr_fail(r, r->at, "separators must be a pair of strings");
        jbuf b = {0};
        jv_to_json(r, &b, v, jv_truthy(p[0]), indent, item_sep, key_sep, jv_truthy(p[3]), 0);
        return jv_str_buf(r, &b);
    }
    case F_TRIM: {
        static const param ps[] = {{"chars", {.k = JV_NONE}}};
        bind(r, "trim", a, 0, ps, 1, p);
        return strip(r, jv_str_of(r, v), p[0], 3);
    }
    case F_TRUNCATE: {
        static const param ps[] = {{"length", {.k = JV_INT, .i = 255}}, {"killwords", {.k = JV_BOOL, .b = false}},
                                   {"end", {.k = JV_UNDEF}}, {"leeway", {.k = JV_NONE}}};
        bind(r, "truncate", a, 0, ps, 4, p);
        jv s = jv_str_of(r, v), end = p[2].k == JV_UNDEF ? jv_cstr(r, "...") : jv_str_of(r, p[2]);
        int64_t length = want_int(r, p[0], "length"), leeway = p[3].k == JV_NONE ? 5 : want_int(r, p[3], "leeway");
        int64_t n = (int64_t)u8_len(s.s->p, s.s->len), el = (int64_t)u8_len(end.s->p, end.s->len);
        if (n <= length + leeway) return s;
        int64_t keep = length - el < 0 ? 0 : length - el;
        size_t cut = u8_offset(s.s->p, s.s->len, (size_t)keep);
        jbuf b = {0};
        if (jv_truthy(p[1])) {
            jb_put(r, &b, s.s->p, cut);
        } else {
            size_t sp = cut;
            while (sp > 0 && s.s->p[sp - 1] != ' ') sp--;
            jb_put(r, &b, s.s->p, sp ? sp - 1 : cut);
        }
        jb_put(r, &b, end.s->p, end.s->len);
        return jv_str_buf(r, &b);
    }
    case F_UNIQUE: {
        static const param ps[] = {{"case_sensitive", {.k = JV_BOOL, .b = false}}, {"attribute", {.k = JV_NONE}}};
        bind(r, "unique", a, 0, ps, 2, p);
        jv items = jr_iterate(r, v), out = jv_list(r, 0, false), seen = jv_list(r, 0, false);
        out.l->gen = true;
        for (size_t i = 0; i < items.l->n; i++) {
            jv k = sort_key(r, items.l->v[i], p[1], jv_truthy(p[0]));
            bool dup = false;
            for (size_t j = 0; j < seen.l->n && !dup; j++) dup = jv_equal(seen.l->v[j], k);
            if (dup) continue;
            jl_push(r, seen, k);
            jl_push(r, out, items.l->v[i]);
        }
        return out;
    }
    case F_WORDCOUNT: {
        bind(r, "wordcount", a, 0, NULL, 0, p);
        cps c = to_cps(r, jv_str_of(r, v));
        int64_t words = 0;
        bool in = false;
        for (size_t i = 0; i < c.n; i++) {
            bool w = cp_alpha(c.cp[i]) || cp_numeric(c.cp[i]) || c.cp[i] == '_';
            if (w && !in) words++;
            in = w;
        }
        return jv_int(words);
    }
    }
    jr_fail(r, r->at, "unknown filter");
}

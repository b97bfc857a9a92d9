/* Values with Python's semantics: the arena they live in, str() and repr(), truthiness, == and <, and
 * json.dumps as transformers' tojson calls it. What a template prints must be byte-identical to Python, so
 * each rule here is Python's (e.g. repr(1e-05) == '1e-05', repr of a str picks ' unless the text has ' and no "). */
#include "jinja_internal.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- arena ---- */
struct jarena_block {
    jarena_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

#define BLOCK_SIZE (64 * 1024)

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (a->limit && a->used_total + n > a->limit) {
        a->over_limit = true;
        longjmp(*a->oom, 1);
    }
    jarena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BLOCK_SIZE / 2 ? n : BLOCK_SIZE;
        jarena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) longjmp(*a->oom, 1);
        nb->cap = cap;
        nb->used = 0;
        if (cap == n && b) { /* a big one: keep filling the current block afterwards */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    a->used_total += n;
    memset(p, 0, n);
    return p;
}

void *ja_grow(jarena *a, void *p, size_t old_n, size_t new_n) {
    if (new_n <= old_n) return p;
    /* the last allocation of the head block grows in place */
    jarena_block *b = a->head;
    size_t old_r = (old_n + 15) & ~(size_t)15, new_r = (new_n + 15) & ~(size_t)15;
    if (p && b && (unsigned char *)p + old_r == b->data + b->used && b->cap - b->used >= new_r - old_r &&
        !(a->limit && a->used_total + new_r - old_r > a->limit)) {
        memset(b->data + b->used, 0, new_r - old_r);
        b->used += new_r - old_r;
        a->used_total += new_r - old_r;
        return p;
    }
    void *q = ja_alloc(a, new_n);
    if (p && old_n) memcpy(q, p, old_n);
    return q;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ja_free_all(jarena *a) {
    jarena_block *b = a->head;
    while (b) {
        jarena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used_total = 0;
}

/* ---- buffers ---- */
void jb_put(jrender *r, jbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->n + n + 1 > b->cap) {
        jr_check_size(r, b->n + n);
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = ja_grow(&r->arena, b->p, b->cap, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jb_puts(jrender *r, jbuf *b, const char *s) { jb_put(r, b, s, strlen(s)); }

void jb_printf(jrender *r, jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        jb_put(r, b, tmp, (size_t)n);
        return;
    }
    char *big = ja_alloc(&r->arena, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    jb_put(r, b, big, (size_t)n);
}

/* ---- UTF-8 ---- */
uint32_t u8_decode(const char *s, size_t n, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) { *adv = 0; return 0; }
    if (u[0] < 0x80) { *adv = 1; return u[0]; }
    int len = u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc0 ? 2 : 1;
    if ((size_t)len > n || len == 1) { *adv = 1; return u[0]; } /* not reached for valid UTF-8 */
    uint32_t cp = u[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) cp = (cp << 6) | (u[i] & 0x3f);
    *adv = (size_t)len;
    return cp;
}

size_t u8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xc0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t u8_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

size_t u8_offset(const char *s, size_t n, size_t index) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (c == index) return i;
            c++;
        }
    }
    return n;
}

/* Python's str.isspace(): Unicode White_Space minus a few, plus the ASCII separators 0x1c-0x1f. */
bool py_isspace(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f);
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* ---- constructors ---- */
jv jv_str(jrender *r, const char *s, size_t n) {
    jr_check_size(r, n);
    jstr *p = ja_alloc(&r->arena, sizeof *p + n + 1);
    p->len = n;
    if (n) memcpy(p->p, s, n);
    p->p[n] = 0;
    jv v = {.k = JV_STR};
    v.s = p;
    return v;
}
jv jv_cstr(jrender *r, const char *s) { return jv_str(r, s, strlen(s)); }
jv jv_str_buf(jrender *r, const jbuf *b) { return jv_str(r, b->p ? b->p : "", b->n); }

jv jv_list(jrender *r, size_t cap, bool tuple) {
    jlist *l = ja_alloc(&r->arena, sizeof *l);
    l->tuple = tuple;
    if (cap) {
        l->v = ja_alloc(&r->arena, cap * sizeof *l->v);
        l->cap = cap;
    }
    jv v = {.k = JV_LIST};
    v.l = l;
    return v;
}

void jl_push(jrender *r, jv list, jv item) {
    jlist *l = list.l;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        l->v = ja_grow(&r->arena, l->v, l->cap * sizeof *l->v, cap * sizeof *l->v);
        l->cap = cap;
    }
    l->v[l->n++] = item;
}

jv jv_dict(jrender *r, jv_kind k) {
    jv v = {.k = k};
    v.d = ja_alloc(&r->arena, sizeof *v.d);
    return v;
}

jv jd_get(const jdict *d, jv key, bool *found) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->key[i], key)) {
            if (found) *found = true;
            return d->val[i];
        }
    if (found) *found = false;
    return jv_undef(NULL);
}

jv jd_get_str(const jdict *d, const char *key, bool *found) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (d->key[i].k == JV_STR && d->key[i].s->len == n && !memcmp(d->key[i].s->p, key, n)) {
            if (found) *found = true;
            return d->val[i];
        }
    if (found) *found = false;
    return jv_undef(key);
}

void jd_set(jrender *r, jdict *d, jv key, jv val) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->key[i], key)) {
            d->val[i] = val;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        d->key = ja_grow(&r->arena, d->key, d->cap * sizeof *d->key, cap * sizeof *d->key);
        d->val = ja_grow(&r->arena, d->val, d->cap * sizeof *d->val, cap * sizeof *d->val);
        d->cap = cap;
    }
    d->key[d->n] = key;
    d->val[d->n] = val;
    d->n++;
}

/* ---- type names, truthiness, comparison ---- */
const char *jv_type_name(jv v) {
    switch (v.k) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return v.s->markup ? "Markup" : "str";
    case JV_LIST: return v.l->gen ? "generator" : v.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    case JV_CYCLER: return "Cycler";
    case JV_JOINER: return "Joiner";
    }
    return "object";
}

bool jv_truthy(jv v) {
    switch (v.k) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s->len != 0;
    case JV_LIST: return v.l->gen || v.l->n != 0;
    case JV_DICT: return v.d->n != 0;
    default: return true;
    }
}

static bool is_num(jv v) { return v.k == JV_BOOL || v.k == JV_INT || v.k == JV_FLOAT; }
static double num_f(jv v) { return v.k == JV_FLOAT ? v.f : v.k == JV_INT ? (double)v.i : (double)v.b; }
static int64_t num_i(jv v) { return v.k == JV_INT ? v.i : (int64_t)v.b; }

/* a <=> b for two numbers, exact for int/int. Python compares int and float exactly too; for |int| < 2^53
 * the conversion is exact, beyond it (not met in templates) this rounds. */
static int num_cmp(jv a, jv b) {
    if (a.k != JV_FLOAT && b.k != JV_FLOAT) {
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y;
    }
    double x = num_f(a), y = num_f(b);
    return x < y ? -1 : x > y ? 1 : 0; /* NaN compares as "equal" here; == handles NaN separately */
}

/* Values nest at most as deep as a template builds them (a loop can nest a list 100000 deep); beyond this
 * depth comparison gives up (unequal, unordered) instead of exhausting the stack. Python raises there. */
#define MAX_VALUE_DEPTH 400

static bool equal_d(jv a, jv b, int depth);

bool jv_equal(jv a, jv b) { return equal_d(a, b, 0); }

static bool equal_d(jv a, jv b, int depth) {
    if (depth > MAX_VALUE_DEPTH) return false;
    if (is_num(a) && is_num(b)) {
        if ((a.k == JV_FLOAT && isnan(a.f)) || (b.k == JV_FLOAT && isnan(b.f))) return false;
        return num_cmp(a, b) == 0;
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.s->len == b.s->len && !memcmp(a.s->p, b.s->p, a.s->len);
    case JV_LIST:
        if (a.l->gen || b.l->gen) return a.l == b.l;
        if (a.l->tuple != b.l->tuple || a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!equal_d(a.l->v[i], b.l->v[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            bool found;
            jv bv = jd_get(b.d, a.d->key[i], &found);
            if (!found || !equal_d(a.d->val[i], bv, depth + 1)) return false;
        }
        return true;
    case JV_NS: return a.d == b.d;
    case JV_MACRO: return a.m == b.m;
    case JV_FUNC: return a.fn == b.fn;
    case JV_LOOP: return a.loop == b.loop;
    default: return a.cy == b.cy;
    }
}

static bool compare_d(jv a, jv b, int *cmp, int depth);

bool jv_compare(jv a, jv b, int *cmp) { return compare_d(a, b, cmp, 0); }

static bool compare_d(jv a, jv b, int *cmp, int depth) {
    if (depth > MAX_VALUE_DEPTH) return false;
    if (is_num(a) && is_num(b)) {
        *cmp = num_cmp(a, b);
        return true;
    }
    if (a.k == JV_STR && b.k == JV_STR) {
        size_t n = a.s->len < b.s->len ? a.s->len : b.s->len;
        int c = memcmp(a.s->p, b.s->p, n); /* UTF-8 byte order is code point order */
        *cmp = c < 0 ? -1 : c > 0 ? 1 : a.s->len < b.s->len ? -1 : a.s->len > b.s->len;
        return true;
    }
    if (a.k == JV_LIST && b.k == JV_LIST && a.l->tuple == b.l->tuple) {
        size_t n = a.l->n < b.l->n ? a.l->n : b.l->n;
        for (size_t i = 0; i < n; i++) {
            if (equal_d(a.l->v[i], b.l->v[i], depth + 1)) continue;
            return compare_d(a.l->v[i], b.l->v[i], cmp, depth + 1);
        }
        *cmp = a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
        return true;
    }
    return false;
}

/* ---- str() and repr() ---- */
/* Python's float repr: the shortest digits that read back to the same double; fixed notation when the
 * decimal exponent is in [-4, 16), else d.ddde+XX. */
static void float_repr(double x, char *out, size_t cap, bool json) {
    if (isnan(x)) { snprintf(out, cap, json ? "NaN" : "nan"); return; }
    if (isinf(x)) { snprintf(out, cap, x > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf")); return; }
    char e[40];
    int p;
    for (p = 0; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e = [-]d[.ddd]e[+-]XX: split into sign, digits, exponent */
    const char *s = e;
    bool neg = *s == '-';
    if (neg) s++;
    char digits[40];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    int exp10 = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--; /* %.*e can pad zeros */
    digits[nd] = 0;
    char *o = out;
    size_t left = cap;
#define EMIT(...)                                                                                                      \
    do {                                                                                                               \
        int k_ = snprintf(o, left, __VA_ARGS__);                                                                       \
        if (k_ > 0 && (size_t)k_ < left) o += k_, left -= (size_t)k_;                                                  \
    } while (0)
    if (neg) EMIT("-");
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            EMIT("0.");
            for (int i = 0; i < -exp10 - 1; i++) EMIT("0");
            EMIT("%s", digits);
        } else {
            for (int i = 0; i <= exp10; i++) EMIT("%c", i < nd ? digits[i] : '0');
            EMIT(".");
            if (nd > exp10 + 1) EMIT("%s", digits + exp10 + 1);
            else EMIT("0");
        }
    } else {
        EMIT("%c", digits[0]);
        if (nd > 1) EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
#undef EMIT
}

static bool py_isprintable(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7f) return false;
    if (cp < 0x7f) return true;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    switch (c) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default: return true;
    }
}

static void str_repr(jrender *r, jbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jb_put(r, b, &q, 1);
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = u8_decode(s + i, n - i, &adv);
        if (cp == (uint32_t)q || cp == '\\') { char t[2] = {'\\', (char)cp}; jb_put(r, b, t, 2); }
        else if (cp == '\t') jb_puts(r, b, "\\t");
        else if (cp == '\n') jb_puts(r, b, "\\n");
        else if (cp == '\r') jb_puts(r, b, "\\r");
        else if (py_isprintable(cp)) jb_put(r, b, s + i, adv);
        else if (cp <= 0xff) jb_printf(r, b, "\\x%02x", cp);
        else if (cp <= 0xffff) jb_printf(r, b, "\\u%04x", cp);
        else jb_printf(r, b, "\\U%08x", cp);
        i += adv;
    }
    jb_put(r, b, &q, 1);
}

static void repr_in(jrender *r, jbuf *b, jv v, int depth);

static void seq_repr(jrender *r, jbuf *b, jv v, int depth) {
    jb_puts(r, b, v.l->tuple ? "(" : "[");
    for (size_t i = 0; i < v.l->n; i++) {
        if (i) jb_puts(r, b, ", ");
        repr_in(r, b, v.l->v[i], depth + 1);
    }
    if (v.l->tuple && v.l->n == 1) jb_puts(r, b, ",");
    jb_puts(r, b, v.l->tuple ? ")" : "]");
}

static void dict_repr(jrender *r, jbuf *b, const jdict *d, int depth) {
    jb_puts(r, b, "{");
    for (size_t i = 0; i < d->n; i++) {
        if (i) jb_puts(r, b, ", ");
        repr_in(r, b, d->key[i], depth + 1);
        jb_puts(r, b, ": ");
        repr_in(r, b, d->val[i], depth + 1);
    }
    jb_puts(r, b, "}");
}

static void repr_in(jrender *r, jbuf *b, jv v, int depth) {
    if (depth > 200) jr_fail(r, r->at, "maximum recursion depth exceeded while getting the repr of an object");
    char num[40];
    switch (v.k) {
    case JV_UNDEF: jb_puts(r, b, "Undefined"); break;
    case JV_NONE: jb_puts(r, b, "None"); break;
    case JV_BOOL: jb_puts(r, b, v.b ? "True" : "False"); break;
    case JV_INT: jb_printf(r, b, "%lld", (long long)v.i); break;
    case JV_FLOAT: float_repr(v.f, num, sizeof num, false); jb_puts(r, b, num); break;
    case JV_STR:
        if (v.s->markup) jb_puts(r, b, "Markup(");
        str_repr(r, b, v.s->p, v.s->len);
        if (v.s->markup) jb_puts(r, b, ")");
        break;
    case JV_LIST:
        if (v.l->gen) jb_puts(r, b, "<generator object>");
        else seq_repr(r, b, v, depth);
        break;
    case JV_DICT: dict_repr(r, b, v.d, depth); break;
    case JV_NS: jb_puts(r, b, "<Namespace "); dict_repr(r, b, v.d, depth); jb_puts(r, b, ">"); break;
    case JV_MACRO: jb_printf(r, b, "<Macro '%s'>", v.m->def->name ? v.m->def->name : "caller"); break;
    case JV_FUNC: jb_printf(r, b, "<built-in function %s>", v.fn->name); break;
    case JV_LOOP: jb_printf(r, b, "<LoopContext %zu/%zu>", v.loop->i + 1, v.loop->items->n); break;
    case JV_CYCLER: jb_puts(r, b, "<jinja2.utils.Cycler object>"); break;
    case JV_JOINER: jb_puts(r, b, "<jinja2.utils.Joiner object>"); break;
    }
}

void jv_repr(jrender *r, jbuf *b, jv v) { repr_in(r, b, v, 0); }

void jv_to_str(jrender *r, jbuf *b, jv v) {
    if (v.k == JV_STR) jb_put(r, b, v.s->p, v.s->len);
    else if (v.k == JV_UNDEF) return;
    else repr_in(r, b, v, 0);
}

jv jv_str_of(jrender *r, jv v) {
    if (v.k == JV_STR) return v.s->markup ? jv_str(r, v.s->p, v.s->len) : v;
    jbuf b = {0};
    jv_to_str(r, &b, v);
    return jv_str_buf(r, &b);
}

/* ---- json.dumps ---- */
static void json_str(jrender *r, jbuf *b, const char *s, size_t n, bool ensure_ascii) {
    jb_puts(r, b, "\"");
    size_t run = 0; /* bytes copied as they are, flushed before an escape */
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = u8_decode(s + i, n - i, &adv);
        const char *esc = NULL;
        char u[16];
        if (cp == '"') esc = "\\\"";
        else if (cp == '\\') esc = "\\\\";
        else if (cp == '\n') esc = "\\n";
        else if (cp == '\r') esc = "\\r";
        else if (cp == '\t') esc = "\\t";
        else if (cp == '\b') esc = "\\b";
        else if (cp == '\f') esc = "\\f";
        else if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                snprintf(u, sizeof u, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
            } else {
                snprintf(u, sizeof u, "\\u%04x", cp);
            }
            esc = u;
        }
        if (esc) {
            jb_put(r, b, s + i - run, run);
            run = 0;
            jb_puts(r, b, esc);
        } else {
            run += adv;
        }
        i += adv;
    }
    jb_put(r, b, s + n - run, run);
    jb_puts(r, b, "\"");
}

static void json_newline(jrender *r, jbuf *b, const char *indent, int level) {
    jb_puts(r, b, "\n");
    for (int i = 0; i < level; i++) jb_puts(r, b, indent);
}

/* A dict key as json.dumps writes it: strings as they are; numbers, booleans and None converted. */
static jv json_key(jrender *r, jv k) {
    char num[40];
    switch (k.k) {
    case JV_STR: return k;
    case JV_BOOL: return jv_cstr(r, k.b ? "true" : "false");
    case JV_NONE: return jv_cstr(r, "null");
    case JV_INT: snprintf(num, sizeof num, "%lld", (long long)k.i); return jv_cstr(r, num);
    case JV_FLOAT: float_repr(k.f, num, sizeof num, true); return jv_cstr(r, num);
    default: jr_fail(r, r->at, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

void jv_to_json(jrender *r, jbuf *b, jv v, bool ensure_ascii, const char *indent, const char *item_sep,
                const char *key_sep, bool sort_keys, int depth) {
    if (depth > 200) jr_fail(r, r->at, "maximum recursion depth exceeded while encoding a JSON object");
    if (!item_sep) item_sep = indent ? "," : ", ";
    if (!key_sep) key_sep = ": ";
    char num[40];
    switch (v.k) {
    case JV_NONE: jb_puts(r, b, "null"); return;
    case JV_BOOL: jb_puts(r, b, v.b ? "true" : "false"); return;
    case JV_INT: jb_printf(r, b, "%lld", (long long)v.i); return;
    case JV_FLOAT: float_repr(v.f, num, sizeof num, true); jb_puts(r, b, num); return;
    case JV_STR: json_str(r, b, v.s->p, v.s->len, ensure_ascii); return;
    case JV_LIST:
        if (v.l->gen) jr_fail(r, r->at, "Object of type generator is not JSON serializable");
        if (!v.l->n) { jb_puts(r, b, "[]"); return; }
        jb_puts(r, b, "[");
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) jb_puts(r, b, item_sep);
            if (indent) json_newline(r, b, indent, depth + 1);
            jv_to_json(r, b, v.l->v[i], ensure_ascii, indent, item_sep, key_sep, sort_keys, depth + 1);
        }
        if (indent) json_newline(r, b, indent, depth);
        jb_puts(r, b, "]");
        return;
    case JV_DICT: {
        if (!v.d->n) { jb_puts(r, b, "{}"); return; }
        size_t n = v.d->n, *order = ja_alloc(&r->arena, n * sizeof *order);
        jv *keys = ja_alloc(&r->arena, n * sizeof *keys);
        for (size_t i = 0; i < n; i++) order[i] = i, keys[i] = json_key(r, v.d->key[i]);
        if (sort_keys) { /* sorted(dct.items()): by the original keys, which must order */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0; j--) {
                    int c;
                    if (!jv_compare(v.d->key[order[j - 1]], v.d->key[order[j]], &c))
                        jr_fail(r, r->at, "'<' not supported between instances of '%s' and '%s'",
                                jv_type_name(v.d->key[order[j]]), jv_type_name(v.d->key[order[j - 1]]));
                    if (c <= 0) break;
                    size_t t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                }
        }
        jb_puts(r, b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) jb_puts(r, b, item_sep);
            if (indent) json_newline(r, b, indent, depth + 1);
            jv k = keys[order[i]];
            json_str(r, b, k.s->p, k.s->len, ensure_ascii);
            jb_puts(r, b, key_sep);
            jv_to_json(r, b, v.d->val[order[i]], ensure_ascii, indent, item_sep, key_sep, sort_keys, depth + 1);
        }
        if (indent) json_newline(r, b, indent, depth);
        jb_puts(r, b, "}");
        return;
    }
    default: jr_fail(r, r->at, "Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

jv jv_from_json(jrender *r, const json_t *j) {
    if (!j) return jv_undef(NULL);
    if (jinja_stack_exhausted(r->stack_base)) jr_fail(r, NULL, "the variables nest too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_str(r, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jv l = jv_list(r, json_array_size(j), false);
        for (size_t i = 0; i < json_array_size(j); i++) jl_push(r, l, jv_from_json(r, json_array_get(j, i)));
        return l;
    }
    case JSON_OBJECT: {
        jv d = jv_dict(r, JV_DICT);
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe((json_t *)j, tmp, k, v) jd_set(r, d.d, jv_cstr(r, k), jv_from_json(r, v));
        return d;
    }
    }
    return jv_none();
}

/* The tree walk: statements write text, expressions compute values with Python's rules.
 *
 * Scopes follow jinja2: a for loop's body gets a fresh scope each iteration (a {% set %} inside does not
 * survive the iteration, hence namespace()); if/elif/else do not open a scope; a macro runs in a new scope
 * whose parent is the scope where it was defined, read at call time (Python closures). Names resolve
 * through the chain, then the render's variables, then the globals (range, namespace, raise_exception...).
 *
 * Attribute access is jinja's sandboxed getattr: `x.name` is the attribute (a str/dict/list method) if there
 * is one, else the item x["name"]; `x["name"]` is the item, else the attribute. Missing things are undefined:
 * printed as "", falsy, iterable as empty, and an error when used further (x.undefined.y, undefined + 1). */
#include "jinja_internal.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Noreturn void jr_fail(jrender *r, const node *at, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at) ftc_errf(r->err, FTC_E_INPUT, "%s:%d:%d: %s", r->t->name, at->line, at->col, msg);
    else ftc_errf(r->err, FTC_E_INPUT, "%s: %s", r->t->name, msg);
    longjmp(r->jb, 1);
}

void jr_step(jrender *r) {
    if (++r->steps > r->max_steps)
        jr_fail(r, r->at, "the template ran for more than %lld steps (a runaway loop?)", (long long)r->max_steps);
}

void jr_check_size(jrender *r, size_t n) {
    if (n > r->max_output) jr_fail(r, r->at, "a string would pass %zu bytes", r->max_output);
}

/* ---- scopes ---- */
static scope *scope_new(jrender *r, scope *parent) {
    scope *s = ja_alloc(&r->arena, sizeof *s);
    s->parent = parent;
    s->vars = ja_alloc(&r->arena, sizeof *s->vars);
    return s;
}

/* an undefined value that says why: "'x' is undefined", "'dict object' has no attribute 'x'" */
static jv undef_msg(jrender *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static jv undef_msg(jrender *r, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jv_undef(ja_strndup(&r->arena, msg, strlen(msg)));
}

/* jinja's object_type_repr: "dict object", "None" */
static const char *type_repr(jv v, char *buf, size_t n) {
    if (v.k == JV_NONE) return "None";
    snprintf(buf, n, "%s object", jv_type_name(v));
    return buf;
}

static jv no_attribute(jrender *r, jv obj, const char *name) {
    char t[64];
    return undef_msg(r, "'%s' has no attribute '%s'", type_repr(obj, t, sizeof t), name);
}

static jv lookup_or(scope *s, const char *name, bool *found) {
    *found = false;
    for (; s; s = s->parent) {
        jv v = jd_get_str(s->vars, name, found);
        if (*found) return v;
    }
    return jv_undef(NULL);
}

static jv lookup(jrender *r, scope *s, const char *name) {
    bool found;
    jv v = lookup_or(s, name, &found);
    return found ? v : undef_msg(r, "'%s' is undefined", name);
}

static void set_var(jrender *r, scope *s, const char *name, jv v) { jd_set(r, s->vars, jv_cstr(r, name), v); }

_Noreturn static void undefined_error(jrender *r, const node *at, jv u) {
    jr_fail(r, at, "%s", u.uname ? u.uname : "a value is undefined");
}

/* ---- getattr / getitem ---- */
static jv loop_attr(jrender *r, jloop *l, const char *name, bool *found) {
    size_t n = l->items->n, i = l->i;
    *found = true;
    if (!strcmp(name, "index")) return jv_int((int64_t)i + 1);
    if (!strcmp(name, "index0")) return jv_int((int64_t)i);
    if (!strcmp(name, "revindex")) return jv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i + 1 == n);
    if (!strcmp(name, "length")) return jv_int((int64_t)n);
    if (!strcmp(name, "depth")) return jv_int(l->depth0 + 1);
    if (!strcmp(name, "depth0")) return jv_int(l->depth0);
    if (!strcmp(name, "previtem")) return i > 0 ? l->items->v[i - 1] : jv_undef("there is no previous item");
    if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->v[i + 1] : jv_undef("there is no next item");
    (void)r;
    *found = false;
    return jv_undef(name);
}

jv jr_getattr(jrender *r, jv obj, const char *name) {
    bool found = false;
    jv v;
    switch (obj.k) {
    case JV_UNDEF: undefined_error(r, r->at, obj);
    case JV_NS:
        v = jd_get_str(obj.d, name, &found);
        return found ? v : no_attribute(r, obj, name);
    case JV_LOOP:
        v = loop_attr(r, obj.loop, name, &found);
        if (found) return v;
        break;
    default: break;
    }
    if (name[0] != '_') { /* the sandbox refuses attributes starting with _ */
        v = jb_method(r, obj, name, &found);
        if (found) return v;
    }
    if (obj.k == JV_DICT) {
        v = jd_get_str(obj.d, name, &found);
        if (found) return v;
    }
    return no_attribute(r, obj, name);
}

static int64_t index_of(jv key) { return key.k == JV_BOOL ? (int64_t)key.b : key.i; }

jv jr_getitem(jrender *r, jv obj, jv key) {
    bool found = false;
    jv v;
    switch (obj.k) {
    case JV_UNDEF: undefined_error(r, r->at, obj);
    case JV_DICT:
        v = jd_get(obj.d, key, &found);
        if (found) return v;
        break;
    case JV_LIST:
        if ((key.k == JV_INT || key.k == JV_BOOL) && !obj.l->gen) {
            int64_t i = index_of(key), n = (int64_t)obj.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj.l->v[i];
            char t[64];
            return undef_msg(r, "'%s' has no element %lld", type_repr(obj, t, sizeof t), (long long)index_of(key));
        }
        break;
    case JV_STR:
        if (key.k == JV_INT || key.k == JV_BOOL) {
            int64_t i = index_of(key), n = (int64_t)u8_len(obj.s->p, obj.s->len);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                size_t a = u8_offset(obj.s->p, obj.s->len, (size_t)i), b = u8_offset(obj.s->p, obj.s->len, (size_t)i + 1);
                return jv_str(r, obj.s->p + a, b - a);
            }
            return undef_msg(r, "'str object' has no element %lld", (long long)index_of(key));
        }
        break;
    default: break;
    }
    if (key.k == JV_STR) { /* obj["name"] falls back to the attribute */
        if (obj.k == JV_DICT) {
            if (key.s->p[0] != '_') {
                v = jb_method(r, obj, key.s->p, &found);
                if (found) return v;
            }
            return no_attribute(r, obj, key.s->p);
        }
        return jr_getattr(r, obj, key.s->p);
    }
    char t[64], k[64];
    jbuf kb = {0};
    jv_repr(r, &kb, key);
    snprintf(k, sizeof k, "%s", kb.p ? kb.p : "");
    return undef_msg(r, "'%s' has no element %s", type_repr(obj, t, sizeof t), k);
}

/* Python's slice indices for a sequence of length n */
static jv do_slice(jrender *r, jv obj, jv start, jv stop, jv step) {
    if (obj.k == JV_UNDEF) undefined_error(r, r->at, obj);
    if ((obj.k != JV_LIST && obj.k != JV_STR) || (obj.k == JV_LIST && obj.l->gen))
        return undef_msg(r, "'%s' object is not subscriptable", jv_type_name(obj));
    for (int k = 0; k < 3; k++) {
        jv x = k == 0 ? start : k == 1 ? stop : step;
        if (x.k == JV_UNDEF) undefined_error(r, r->at, x);
        if (x.k != JV_NONE && x.k != JV_INT && x.k != JV_BOOL)
            jr_fail(r, r->at, "slice indices must be integers or None, not %s", jv_type_name(x));
    }
    int64_t n = obj.k == JV_LIST ? (int64_t)obj.l->n : (int64_t)u8_len(obj.s->p, obj.s->len);
    int64_t st = step.k == JV_NONE ? 1 : index_of(step);
    if (st == 0) jr_fail(r, r->at, "slice step cannot be zero");
    int64_t lo, hi;
    if (st > 0) {
        lo = start.k == JV_NONE ? 0 : index_of(start);
        hi = stop.k == JV_NONE ? n : index_of(stop);
        if (lo < 0) lo = lo + n < 0 ? 0 : lo + n;
        if (lo > n) lo = n;
        if (hi < 0) hi = hi + n < 0 ? 0 : hi + n;
        if (hi > n) hi = n;
    } else {
        lo = start.k == JV_NONE ? n - 1 : index_of(start);
        hi = stop.k == JV_NONE ? -1 : index_of(stop);
        if (lo < 0) lo = lo + n < 0 ? -1 : lo + n;
        if (lo >= n) lo = n - 1;
        if (stop.k != JV_NONE) {
            if (hi < 0) hi = hi + n < 0 ? -1 : hi + n;
            if (hi >= n) hi = n - 1;
        }
    }
    if (obj.k == JV_LIST) {
        jv out = jv_list(r, 0, obj.l->tuple);
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) jl_push(r, out, obj.l->v[i]);
        return out;
    }
    /* strings: by code point */
    size_t *offs = ja_alloc(&r->arena, ((size_t)n + 1) * sizeof *offs);
    size_t c = 0;
    for (size_t i = 0; i < obj.s->len; i++)
        if (((unsigned char)obj.s->p[i] & 0xc0) != 0x80) offs[c++] = i;
    offs[c] = obj.s->len;
    jbuf b = {0};
    if (st == 1) {
        if (hi > lo) jb_put(r, &b, obj.s->p + offs[lo], offs[hi] - offs[lo]);
    } else {
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) jb_put(r, &b, obj.s->p + offs[i], offs[i + 1] - offs[i]);
    }
    return jv_str_buf(r, &b);
}

jv jr_iterate(jrender *r, jv v) {
    switch (v.k) {
    case JV_UNDEF: return jv_list(r, 0, false);
    case JV_LIST:
        if (v.l->gen) { /* a generator runs once */
            if (v.l->consumed) return jv_list(r, 0, false);
            v.l->consumed = true;
        }
        return v;
    case JV_DICT: {
        jv l = jv_list(r, v.d->n, false);
        for (size_t i = 0; i < v.d->n; i++) jl_push(r, l, v.d->key[i]);
        return l;
    }
    case JV_STR: {
        jv l = jv_list(r, 0, false);
        for (size_t i = 0; i < v.s->len;) {
            size_t adv;
            u8_decode(v.s->p + i, v.s->len - i, &adv);
            jl_push(r, l, jv_str(r, v.s->p + i, adv));
            i += adv;
        }
        return l;
    }
    default: jr_fail(r, r->at, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- operators ---- */
static bool is_num(jv v) { return v.k == JV_BOOL || v.k == JV_INT || v.k == JV_FLOAT; }
static bool is_intlike(jv v) { return v.k == JV_BOOL || v.k == JV_INT; }
static double as_f(jv v) { return v.k == JV_FLOAT ? v.f : (double)index_of(v); }

static const char *op_symbol(int op) {
    static const char *const s[] = {"+", "-", "*", "/", "//", "%", "**"};
    return s[op];
}

_Noreturn static void bad_operands(jrender *r, int op, jv a, jv b) {
    jr_fail(r, r->at, "unsupported operand type(s) for %s: '%s' and '%s'", op_symbol(op), jv_type_name(a), jv_type_name(b));
}

static jv repeat(jrender *r, jv seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.k == JV_STR) {
        if (seq.s->len && (uint64_t)times > r->max_output / seq.s->len) jr_check_size(r, SIZE_MAX);
        jbuf b = {0};
        for (int64_t i = 0; i < times; i++) jb_put(r, &b, seq.s->p, seq.s->len);
        return jv_str_buf(r, &b);
    }
    if (seq.l->n && (uint64_t)times > r->max_output / (seq.l->n * sizeof(jv))) jr_check_size(r, SIZE_MAX);
    jv out = jv_list(r, seq.l->n * (size_t)times, seq.l->tuple);
    for (int64_t i = 0; i < times; i++)
        for (size_t j = 0; j < seq.l->n; j++) jl_push(r, out, seq.l->v[j]);
    return out;
}

jv jb_percent_format(jrender *r, jv fmt, jv args); /* builtins.c: 'fmt' % args */
jv jb_html_escape(jrender *r, jv v);              /* builtins.c: markupsafe.escape */

static jv binary(jrender *r, int op, jv a, jv b) {
    if (a.k == JV_UNDEF) undefined_error(r, r->at, a);
    if (b.k == JV_UNDEF) undefined_error(r, r->at, b);
    if (is_num(a) && is_num(b)) {
        bool ints = is_intlike(a) && is_intlike(b);
        int64_t x = ints ? index_of(a) : 0, y = ints ? index_of(b) : 0, z;
        double fx = as_f(a), fy = as_f(b);
        switch (op) {
        case OP_ADD:
            if (!ints) return jv_float(fx + fy);
            if (__builtin_add_overflow(x, y, &z)) jr_fail(r, r->at, "integer overflow in +");
            return jv_int(z);
        case OP_SUB:
            if (!ints) return jv_float(fx - fy);
            if (__builtin_sub_overflow(x, y, &z)) jr_fail(r, r->at, "integer overflow in -");
            return jv_int(z);
        case OP_MUL:
            if (!ints) return jv_float(fx * fy);
            if (__builtin_mul_overflow(x, y, &z)) jr_fail(r, r->at, "integer overflow in *");
            return jv_int(z);
        case OP_DIV:
            if (fy == 0) jr_fail(r, r->at, "division by zero");
            return jv_float(fx / fy);
        case OP_FLOORDIV:
            if (ints) {
                if (y == 0) jr_fail(r, r->at, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) jr_fail(r, r->at, "integer overflow in //");
                int64_t q = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                return jv_int(q);
            }
            if (fy == 0) jr_fail(r, r->at, "float floor division by zero");
            return jv_float(floor(fx / fy));
        case OP_MOD:
            if (ints) {
                if (y == 0) jr_fail(r, r->at, "integer division or modulo by zero");
                if (y == -1) return jv_int(0);
                int64_t m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                return jv_int(m);
            }
            if (fy == 0) jr_fail(r, r->at, "float modulo");
            {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                else if (m == 0) m = copysign(0.0, fy);
                return jv_float(m);
            }
        case OP_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if (e & 1 && __builtin_mul_overflow(acc, base, &acc)) jr_fail(r, r->at, "integer overflow in **");
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) jr_fail(r, r->at, "integer overflow in **");
                }
                return jv_int(acc);
            }
            if (fx == 0 && fy < 0) jr_fail(r, r->at, "0.0 cannot be raised to a negative power");
            return jv_float(pow(fx, fy));
        }
    }
    switch (op) {
    case OP_ADD:
        if (a.k == JV_STR && b.k == JV_STR && (a.s->markup || b.s->markup)) { /* Markup escapes the plain side */
            jv sa = a.s->markup ? a : jb_html_escape(r, a), sb = b.s->markup ? b : jb_html_escape(r, b);
            jbuf buf = {0};
            jb_put(r, &buf, sa.s->p, sa.s->len);
            jb_put(r, &buf, sb.s->p, sb.s->len);
            jv out = jv_str_buf(r, &buf);
            out.s->markup = true;
            return out;
        }
        if (a.k == JV_STR && b.k == JV_STR) {
            jr_check_size(r, a.s->len + b.s->len);
            jbuf buf = {0};
            jb_put(r, &buf, a.s->p, a.s->len);
            jb_put(r, &buf, b.s->p, b.s->len);
            return buf.p ? jv_str_buf(r, &buf) : jv_str(r, "", 0);
        }
        if (a.k == JV_LIST && b.k == JV_LIST && a.l->tuple == b.l->tuple) {
            jv out = jv_list(r, a.l->n + b.l->n, a.l->tuple);
            for (size_t i = 0; i < a.l->n; i++) jl_push(r, out, a.l->v[i]);
            for (size_t i = 0; i < b.l->n; i++) jl_push(r, out, b.l->v[i]);
            return out;
        }
        if (a.k == JV_STR) jr_fail(r, r->at, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
        if (a.k == JV_LIST)
            jr_fail(r, r->at, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b), jv_type_name(a));
        bad_operands(r, op, a, b);
    case OP_MUL:
        if ((a.k == JV_STR || a.k == JV_LIST) && is_intlike(b)) {
            jv out = repeat(r, a, index_of(b));
            if (a.k == JV_STR) out.s->markup = a.s->markup;
            return out;
        }
        if ((b.k == JV_STR || b.k == JV_LIST) && is_intlike(a)) return repeat(r, b, index_of(a));
        bad_operands(r, op, a, b);
    case OP_MOD:
        if (a.k == JV_STR) return jb_percent_format(r, a, b);
        bad_operands(r, op, a, b);
    default: bad_operands(r, op, a, b);
    }
}

static bool contains(jrender *r, jv item, jv container) {
    switch (container.k) {
    case JV_UNDEF: return false;
    case JV_STR:
        if (item.k == JV_UNDEF) undefined_error(r, r->at, item);
        if (item.k != JV_STR) jr_fail(r, r->at, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item.s->len == 0) return true;
        if (item.s->len > container.s->len) return false;
        for (size_t i = 0; i + item.s->len <= container.s->len; i++)
            if (!memcmp(container.s->p + i, item.s->p, item.s->len)) return true;
        return false;
    case JV_LIST:
        for (size_t i = 0; i < container.l->n; i++)
            if (jv_equal(container.l->v[i], item)) return true;
        return false;
    case JV_DICT: {
        bool found;
        jd_get(container.d, item, &found);
        return found;
    }
    default: jr_fail(r, r->at, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

static bool compare(jrender *r, cmpop op, jv a, jv b) {
    if (op == CMP_EQ) return jv_equal(a, b);
    if (op == CMP_NE) return !jv_equal(a, b);
    if (op == CMP_IN) return contains(r, a, b);
    if (op == CMP_NOTIN) return !contains(r, a, b);
    if (a.k == JV_UNDEF) undefined_error(r, r->at, a);
    if (b.k == JV_UNDEF) undefined_error(r, r->at, b);
    int c;
    static const char *const sym[] = {"==", "!=", "<", "<=", ">", ">="};
    if (!jv_compare(a, b, &c))
        jr_fail(r, r->at, "'%s' not supported between instances of '%s' and '%s'", sym[op], jv_type_name(a), jv_type_name(b));
    switch (op) {
    case CMP_LT: return c < 0;
    case CMP_LE: return c <= 0;
    case CMP_GT: return c > 0;
    default: return c >= 0;
    }
}

/* ---- evaluation ---- */
static jv eval(jrender *r, scope *sc, const node *n);
static void exec_body(jrender *r, scope *sc, const nodes *body);

static void collect_args(jrender *r, scope *sc, const node *n, jargs *a) {
    int extra = 0;
    jv dyn = jv_undef(NULL), dynk = jv_undef(NULL);
    if (n->dyn_args) {
        dyn = eval(r, sc, n->dyn_args);
        dyn = jr_iterate(r, dyn);
        extra = (int)dyn.l->n;
    }
    a->npos = n->args.n + extra;
    a->pos = ja_alloc(&r->arena, (size_t)(a->npos + 1) * sizeof *a->pos);
    for (int i = 0; i < n->args.n; i++) a->pos[i] = eval(r, sc, n->args.v[i]);
    for (int i = 0; i < extra; i++) a->pos[n->args.n + i] = dyn.l->v[i];
    int kextra = 0;
    if (n->dyn_kwargs) {
        dynk = eval(r, sc, n->dyn_kwargs);
        if (dynk.k != JV_DICT) jr_fail(r, r->at, "argument after ** must be a mapping, not %s", jv_type_name(dynk));
        kextra = (int)dynk.d->n;
    }
    a->nkw = n->kwargs.n + kextra;
    a->kw = ja_alloc(&r->arena, (size_t)(a->nkw + 1) * sizeof *a->kw);
    a->kwv = ja_alloc(&r->arena, (size_t)(a->nkw + 1) * sizeof *a->kwv);
    for (int i = 0; i < n->kwargs.n; i++) {
        a->kw[i] = n->kw[i];
        a->kwv[i] = eval(r, sc, n->kwargs.v[i]);
    }
    for (int i = 0; i < kextra; i++) {
        jv k = dynk.d->key[i];
        if (k.k != JV_STR) jr_fail(r, r->at, "keywords must be strings");
        a->kw[n->kwargs.n + i] = k.s->p;
        a->kwv[n->kwargs.n + i] = dynk.d->val[i];
    }
}

static jv call_macro(jrender *r, jmacro *m, jargs *a) {
    const node *def = m->def;
    const char *mname = def->name ? def->name : "caller";
    if (++r->depth > 100) jr_fail(r, r->at, "maximum recursion depth exceeded in macro '%s'", mname);
    scope *sc = scope_new(r, m->closure);
    int np = def->args.n, nd = def->kwargs.n;
    bool *given = ja_alloc(&r->arena, (size_t)np + 1);
    if (a->npos > np && !def->uses_varargs)
        jr_fail(r, r->at, "macro '%s' takes not more than %d argument(s)", mname, np);
    for (int i = 0; i < a->npos && i < np; i++) {
        set_var(r, sc, def->args.v[i]->name, a->pos[i]);
        given[i] = true;
    }
    jv kwargs = jv_dict(r, JV_DICT);
    for (int k = 0; k < a->nkw; k++) {
        int i;
        for (i = 0; i < np; i++)
            if (!strcmp(def->args.v[i]->name, a->kw[k])) break;
        if (i < np) {
            if (given[i]) jr_fail(r, r->at, "macro '%s' got multiple values for argument '%s'", mname, a->kw[k]);
            set_var(r, sc, a->kw[k], a->kwv[k]);
            given[i] = true;
        } else if (!strcmp(a->kw[k], "caller") && def->uses_caller) {
            set_var(r, sc, "caller", a->kwv[k]);
        } else if (def->uses_kwargs) {
            jd_set(r, kwargs.d, jv_cstr(r, a->kw[k]), a->kwv[k]);
        } else {
            jr_fail(r, r->at, "macro '%s' takes no keyword argument '%s'", mname, a->kw[k]);
        }
    }
    for (int i = 0; i < np; i++) {
        if (given[i]) continue;
        int d = i - (np - nd); /* defaults belong to the last nd parameters */
        const node *saved = r->at;
        jv v = d >= 0 ? eval(r, sc, def->kwargs.v[d]) : undef_msg(r, "parameter '%s' was not provided", def->args.v[i]->name);
        r->at = saved;
        set_var(r, sc, def->args.v[i]->name, v);
    }
    if (def->uses_varargs) {
        jv va = jv_list(r, 0, true);
        for (int i = np; i < a->npos; i++) jl_push(r, va, a->pos[i]);
        set_var(r, sc, "varargs", va);
    }
    if (def->uses_kwargs) set_var(r, sc, "kwargs", kwargs);
    if (def->uses_caller) {
        bool found;
        jd_get_str(sc->vars, "caller", &found);
        if (!found) set_var(r, sc, "caller", m->caller.k == JV_MACRO ? m->caller : jv_undef("No caller defined"));
    }
    jbuf buf = {0}, *saved_out = r->out;
    r->out = &buf;
    int saved_ctl = r->loop_ctl;
    exec_body(r, sc, &def->body);
    r->loop_ctl = saved_ctl;
    r->out = saved_out;
    r->depth--;
    return jv_str_buf(r, &buf);
}

jv jr_call(jrender *r, jv fn, jargs *a) {
    switch (fn.k) {
    case JV_MACRO: return call_macro(r, fn.m, a);
    case JV_FUNC: return jb_call_builtin(r, fn.fn, a);
    case JV_UNDEF: undefined_error(r, r->at, fn);
    case JV_JOINER: {
        jcycler *j = fn.cy;
        return j->pos++ ? j->items->v[0] : jv_str(r, "", 0);
    }
    default: jr_fail(r, r->at, "'%s' object is not callable", jv_type_name(fn));
    }
}

static jv eval(jrender *r, scope *sc, const node *n) {
    jr_step(r);
    if (jinja_stack_exhausted(r->stack_base)) jr_fail(r, n, "maximum recursion depth exceeded");
    const node *saved = r->at;
    r->at = n;
    jv v;
    switch (n->k) {
    case N_CONST: v = n->value; break;
    case N_NAME: v = lookup(r, sc, n->name); break;
    case N_GETATTR: {
        jv obj = eval(r, sc, n->a);
        r->at = n;
        v = jr_getattr(r, obj, n->name);
        break;
    }
    case N_GETITEM: {
        jv obj = eval(r, sc, n->a);
        if (n->b->k == N_SLICE) {
            const node *s = n->b;
            jv a = s->a ? eval(r, sc, s->a) : jv_none(), b = s->b ? eval(r, sc, s->b) : jv_none(),
               c = s->c ? eval(r, sc, s->c) : jv_none();
            r->at = n;
            v = do_slice(r, obj, a, b, c);
        } else {
            jv key = eval(r, sc, n->b);
            r->at = n;
            v = jr_getitem(r, obj, key);
        }
        break;
    }
    case N_CALL: {
        jv fn = eval(r, sc, n->a);
        jargs a;
        collect_args(r, sc, n, &a);
        r->at = n;
        v = jr_call(r, fn, &a);
        break;
    }
    case N_FILTER: {
        jv x = n->a ? eval(r, sc, n->a) : jv_undef(NULL);
        jargs a;
        collect_args(r, sc, n, &a);
        r->at = n;
        v = jb_filter(r, jb_filter_id(n->name), x, &a);
        break;
    }
    case N_TEST: {
        jv x = eval(r, sc, n->a);
        jargs a;
        collect_args(r, sc, n, &a);
        r->at = n;
        v = jv_bool(jb_test(r, jb_test_id(n->name), x, &a));
        break;
    }
    case N_NOT: v = jv_bool(!jv_truthy(eval(r, sc, n->a))); break;
    case N_NEG:
    case N_POS: {
        jv x = eval(r, sc, n->a);
        r->at = n;
        if (x.k == JV_UNDEF) undefined_error(r, n, x);
        if (n->k == N_POS) {
            if (!is_num(x)) jr_fail(r, n, "bad operand type for unary +: '%s'", jv_type_name(x));
            v = x.k == JV_BOOL ? jv_int(x.b) : x;
        } else if (x.k == JV_FLOAT) {
            v = jv_float(-x.f);
        } else if (is_intlike(x)) {
            if (index_of(x) == INT64_MIN) jr_fail(r, n, "integer overflow in unary -");
            v = jv_int(-index_of(x));
        } else {
            jr_fail(r, n, "bad operand type for unary -: '%s'", jv_type_name(x));
        }
        break;
    }
    case N_BINOP: {
        jv a = eval(r, sc, n->a), b = eval(r, sc, n->b);
        r->at = n;
        v = binary(r, n->op, a, b);
        break;
    }
    case N_CONCAT: {
        jbuf b = {0};
        for (int i = 0; i < n->args.n; i++) {
            jv x = eval(r, sc, n->args.v[i]);
            r->at = n;
            jv_to_str(r, &b, x);
        }
        v = jv_str_buf(r, &b);
        break;
    }
    case N_COMPARE: {
        jv left = eval(r, sc, n->args.v[0]);
        v = jv_bool(true);
        for (int i = 1; i < n->args.n; i++) {
            jv right = eval(r, sc, n->args.v[i]);
            r->at = n;
            if (!compare(r, n->ops[i - 1], left, right)) {
                v = jv_bool(false);
                break;
            }
            left = right;
        }
        break;
    }
    case N_AND: {
        jv a = eval(r, sc, n->a);
        v = jv_truthy(a) ? eval(r, sc, n->b) : a;
        break;
    }
    case N_OR: {
        jv a = eval(r, sc, n->a);
        v = jv_truthy(a) ? a : eval(r, sc, n->b);
        break;
    }
    case N_COND:
        if (jv_truthy(eval(r, sc, n->b))) v = eval(r, sc, n->a);
        else v = n->c ? eval(r, sc, n->c)
                      : undef_msg(r, "the inline if-expression on line %d evaluated to false and no else section was defined.", n->line);
        break;
    case N_LIST:
    case N_TUPLE:
        v = jv_list(r, (size_t)n->args.n, n->k == N_TUPLE);
        for (int i = 0; i < n->args.n; i++) jl_push(r, v, eval(r, sc, n->args.v[i]));
        break;
    case N_DICT:
        v = jv_dict(r, JV_DICT);
        for (int i = 0; i < n->args.n; i++) {
            jv k = eval(r, sc, n->args.v[i]), val = eval(r, sc, n->kwargs.v[i]);
            r->at = n;
            if (k.k == JV_LIST && !k.l->tuple) jr_fail(r, n, "unhashable type: 'list'");
            if (k.k == JV_DICT || k.k == JV_NS) jr_fail(r, n, "unhashable type: '%s'", jv_type_name(k));
            jd_set(r, v.d, k, val);
        }
        break;
    default: jr_fail(r, n, "this expression cannot be evaluated here");
    }
    r->at = saved;
    return v;
}

static void assign(jrender *r, scope *sc, const node *target, jv v) {
    if (target->k == N_NAME) {
        set_var(r, sc, target->name, v);
    } else if (target->k == N_NSREF) {
        jv ns = lookup(r, sc, target->name);
        if (ns.k != JV_NS) jr_fail(r, target, "cannot assign attribute on non-namespace object");
        if (target->attr[0] == '_')
            jr_fail(r, target, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got "
                               "'%s'. Please rename the attribute.", target->attr);
        jd_set(r, ns.d, jv_cstr(r, target->attr), v);
    } else { /* tuple unpacking */
        if (v.k == JV_UNDEF) undefined_error(r, target, v);
        jv items = jr_iterate(r, v);
        int want = target->args.n;
        if ((int)items.l->n > want) jr_fail(r, target, "too many values to unpack (expected %d)", want);
        if ((int)items.l->n < want)
            jr_fail(r, target, "not enough values to unpack (expected %d, got %zu)", want, items.l->n);
        for (int i = 0; i < want; i++) assign(r, sc, target->args.v[i], items.l->v[i]);
    }
}

static void output(jrender *r, jv v) {
    if (v.k == JV_STR) jb_put(r, r->out, v.s->p, v.s->len);
    else jv_to_str(r, r->out, v);
}

static void exec_for(jrender *r, scope *sc, const node *n) {
    jv seq = eval(r, sc, n->b);
    r->at = n;
    jv items = jr_iterate(r, seq);
    if (n->c) { /* for x in xs if cond: the loop sees only the items that pass */
        jv kept = jv_list(r, items.l->n, false);
        for (size_t i = 0; i < items.l->n; i++) {
            scope *it = scope_new(r, sc);
            assign(r, it, n->a, items.l->v[i]);
            if (jv_truthy(eval(r, it, n->c))) jl_push(r, kept, items.l->v[i]);
        }
        items = kept;
    }
    jloop *l = ja_alloc(&r->arena, sizeof *l);
    l->items = items.l;
    l->depth0 = 0; /* depth counts recursive loops only (loop(...)), which are not supported: always 1 */
    jv lv = {.k = JV_LOOP};
    lv.loop = l;
    for (size_t i = 0; i < items.l->n; i++) {
        r->at = n;
        jr_step(r); /* an empty body still costs: range(100000) nested thrice must stop */
        l->i = i;
        scope *it = scope_new(r, sc);
        assign(r, it, n->a, items.l->v[i]);
        set_var(r, it, "loop", lv);
        exec_body(r, it, &n->body);
        int ctl = r->loop_ctl;
        r->loop_ctl = 0;
        if (ctl == 1) break;
    }
    if (items.l->n == 0) exec_body(r, sc, &n->orelse);
}

static jv capture(jrender *r, scope *sc, const nodes *body) {
    jbuf buf = {0}, *saved = r->out;
    r->out = &buf;
    exec_body(r, sc, body);
    r->out = saved;
    return jv_str_buf(r, &buf);
}

static jv apply_filters(jrender *r, scope *sc, const node *f, jv v) {
    if (!f) return v;
    v = apply_filters(r, sc, f->a, v); /* filters chain inward: f->a is the one applied first */
    jargs a;
    collect_args(r, sc, f, &a);
    r->at = f;
    return jb_filter(r, jb_filter_id(f->name), v, &a);
}

static void exec_stmt(jrender *r, scope *sc, const node *n) {
    jr_step(r);
    if (jinja_stack_exhausted(r->stack_base)) jr_fail(r, n, "maximum recursion depth exceeded");
    r->at = n;
    switch (n->k) {
    case N_OUTPUT:
        for (int i = 0; i < n->args.n; i++) {
            const node *x = n->args.v[i];
            if (x->k == N_DATA) jb_put(r, r->out, x->value.s->p, x->value.s->len);
            else output(r, eval(r, sc, x));
        }
        break;
    case N_IF:
        if (jv_truthy(eval(r, sc, n->a))) exec_body(r, sc, &n->body);
        else exec_body(r, sc, &n->orelse);
        break;
    case N_FOR: exec_for(r, sc, n); break;
    case N_SET: assign(r, sc, n->a, eval(r, sc, n->b)); break;
    case N_SETBLOCK: assign(r, sc, n->a, apply_filters(r, sc, n->b, capture(r, sc, &n->body))); break;
    case N_FILTERBLOCK: output(r, apply_filters(r, sc, n->b, capture(r, sc, &n->body))); break;
    case N_MACRO: {
        jmacro *m = ja_alloc(&r->arena, sizeof *m);
        m->def = n;
        m->closure = sc;
        m->caller = jv_undef(NULL);
        jv v = {.k = JV_MACRO};
        v.m = m;
        set_var(r, sc, n->name, v);
        break;
    }
    case N_CALLBLOCK: {
        jmacro *caller = ja_alloc(&r->arena, sizeof *caller);
        caller->def = n;
        caller->closure = sc;
        caller->caller = jv_undef(NULL);
        jv cv = {.k = JV_MACRO};
        cv.m = caller;
        const node *call = n->a;
        jv fn = eval(r, sc, call->a);
        jargs a;
        collect_args(r, sc, call, &a);
        /* caller=... as one more keyword argument */
        const char **kw = ja_alloc(&r->arena, (size_t)(a.nkw + 1) * sizeof *kw);
        jv *kwv = ja_alloc(&r->arena, (size_t)(a.nkw + 1) * sizeof *kwv);
        memcpy(kw, a.kw, (size_t)a.nkw * sizeof *kw);
        memcpy(kwv, a.kwv, (size_t)a.nkw * sizeof *kwv);
        kw[a.nkw] = "caller";
        kwv[a.nkw] = cv;
        a.kw = kw, a.kwv = kwv, a.nkw++;
        r->at = n;
        output(r, jr_call(r, fn, &a));
        break;
    }
    case N_WITH: {
        scope *inner = scope_new(r, sc);
        for (int i = 0; i < n->args.n; i++) assign(r, inner, n->args.v[i], eval(r, sc, n->kwargs.v[i]));
        exec_body(r, inner, &n->body);
        break;
    }
    case N_BREAK: r->loop_ctl = 1; break;
    case N_CONTINUE: r->loop_ctl = 2; break;
    case N_GENERATION: {
        bool top = r->out == &r->root;
        size_t start = r->root.n;
        exec_body(r, sc, &n->body);
        if (top) {
            if (r->n_gen == r->cap_gen) {
                int cap = r->cap_gen ? 2 * r->cap_gen : 8;
                r->gen = ja_grow(&r->arena, r->gen, (size_t)r->cap_gen * sizeof *r->gen, (size_t)cap * sizeof *r->gen);
                r->cap_gen = cap;
            }
            r->gen[r->n_gen++] = (ftc_jinja_span){start, r->root.n};
        }
        break;
    }
    default: jr_fail(r, n, "this statement cannot run here");
    }
}

static void exec_body(jrender *r, scope *sc, const nodes *body) {
    for (int i = 0; i < body->n && !r->loop_ctl; i++) exec_stmt(r, sc, body->v[i]);
}

/* ---- public API ---- */
ftc_status ftc_jinja_compile(const char *name, const char *src, size_t len, ftc_jinja **out, ftc_err *err) {
    *out = NULL;
    ftc_jinja *t = calloc(1, sizeof *t);
    char *nm = strdup(name ? name : "template");
    if (!t || !nm) {
        free(t);
        free(nm);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    t->name = nm;
    /* the source must be UTF-8: every string operation counts characters */
    for (size_t i = 0; i < len;) {
        const unsigned char *u = (const unsigned char *)src + i;
        size_t k = u[0] < 0x80 ? 1 : (u[0] & 0xe0) == 0xc0 ? 2 : (u[0] & 0xf0) == 0xe0 ? 3 : (u[0] & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = k && i + k <= len;
        for (size_t j = 1; ok && j < k; j++) ok = (u[j] & 0xc0) == 0x80;
        if (ok && k > 1) {
            uint32_t cp = u[0] & (0x7f >> k);
            for (size_t j = 1; j < k; j++) cp = (cp << 6) | (u[j] & 0x3f);
            ok = cp >= (k == 2 ? 0x80u : k == 3 ? 0x800u : 0x10000u) && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (!ok || (k == 1 && u[0] == 0)) {
            int line = 1;
            for (size_t j = 0; j < i; j++) line += src[j] == '\n';
            ftc_status s = ftc_errf(err, FTC_E_INPUT, "%s:%d: %s at byte %zu; a template must be UTF-8 text", t->name,
                                    line, u[0] == 0 ? "a NUL byte" : "invalid UTF-8", i);
            ftc_jinja_free(t);
            return s;
        }
        i += k;
    }
    ftc_err local = {FTC_OK, ""};
    char here;
    jcompile c = {.name = t->name, .arena = &t->arena, .err = &local, .stack_base = (uintptr_t)&here};
    t->arena.oom = &c.jb;
    if (setjmp(c.jb)) {
        if (local.code == FTC_OK) ftc_errf(&local, FTC_E_NOMEM, "%s: out of memory compiling the template", t->name);
        ftc_jinja_free(t);
        if (err) *err = local;
        return local.code;
    }
    tokens toks;
    jinja_lex(&c, src, len, &toks);
    jinja_parse(&c, &toks, &t->body, &t->has_generation);
    *out = t;
    return FTC_OK;
}

void ftc_jinja_free(ftc_jinja *t) {
    if (!t) return;
    ja_free_all(&t->arena);
    free(t->name);
    free(t);
}

const char *ftc_jinja_name(const ftc_jinja *t) { return t->name; }
bool ftc_jinja_has_generation(const ftc_jinja *t) { return t->has_generation; }

void ftc_jinja_output_free(ftc_jinja_output *o) {
    if (!o) return;
    free(o->text);
    free(o->gen);
    memset(o, 0, sizeof *o);
}

ftc_status ftc_jinja_render(const ftc_jinja *t, const json_t *vars, const ftc_jinja_opts *o, ftc_jinja_output *out,
                            ftc_err *err) {
    memset(out, 0, sizeof *out);
    ftc_jinja_opts def = {0};
    if (!o) o = &def;
    jrender *r = calloc(1, sizeof *r);
    if (!r) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_err local = {FTC_OK, ""};
    r->err = &local;
    r->t = t;
    r->max_steps = o->max_steps > 0 ? o->max_steps : 1000000000;
    r->max_output = o->max_output ? o->max_output : (size_t)256 << 20;
    r->arena.limit = o->max_memory ? o->max_memory : (size_t)2 << 30;
    r->now = o->now ? o->now : (int64_t)time(NULL);
    r->arena.oom = &r->jb;
    r->out = &r->root;
    char here;
    r->stack_base = (uintptr_t)&here;
    ftc_status s = FTC_OK;
    if (setjmp(r->jb)) {
        if (r->arena.over_limit)
            s = ftc_errf(&local, FTC_E_INPUT, "%s: the template used more than %zu bytes of memory", t->name, r->arena.limit);
        else if (local.code == FTC_OK)
            s = ftc_errf(&local, FTC_E_NOMEM, "%s: out of memory rendering the template", t->name);
        else
            s = local.code;
        goto done;
    }
    if (vars && !json_is_object(vars)) jr_fail(r, NULL, "the template's variables must be a JSON object");
    r->globals = scope_new(r, NULL);
    jb_install_globals(r, r->globals);
    r->context = scope_new(r, r->globals);
    if (vars) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)vars, k, v) set_var(r, r->context, k, jv_from_json(r, v));
    }
    scope *top = scope_new(r, r->context);
    exec_body(r, top, &t->body);
    out->text = malloc(r->root.n + 1);
    out->gen = malloc((size_t)(r->n_gen ? r->n_gen : 1) * sizeof *out->gen);
    if (!out->text || !out->gen) {
        free(out->text);
        free(out->gen);
        memset(out, 0, sizeof *out);
        s = ftc_errf(&local, FTC_E_NOMEM, "out of memory");
        goto done;
    }
    if (r->root.n) memcpy(out->text, r->root.p, r->root.n);
    out->text[r->root.n] = 0;
    out->len = r->root.n;
    if (r->n_gen) memcpy(out->gen, r->gen, (size_t)r->n_gen * sizeof *out->gen);
    out->n_gen = r->n_gen;
done:
    ja_free_all(&r->arena);
    free(r);
    if (s != FTC_OK && err) *err = local;
    return s;
}

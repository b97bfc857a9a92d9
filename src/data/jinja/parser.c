/* Tokens -> syntax tree, following jinja2/parser.py: the same statements, the same operator precedence
 * (condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary < postfix/filters/tests) and the
 * same quirks (a test takes one bare argument: `x is divisibleby 3`; `a if b` without else is undefined). */
#include "jinja_internal.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    jcompile *c;
    const tokens *t;
    int i;
    int loop_depth;  /* for break/continue */
    int macro_depth;
    int depth;       /* nesting of expressions and blocks, against stack exhaustion */
    bool has_generation;
} parser;

#define MAX_NESTING 400

static const token *cur(parser *p) { return &p->t->v[p->i]; }
static const token *look(parser *p) { return &p->t->v[p->i + 1 < p->t->n ? p->i + 1 : p->i]; }
static const token *advance(parser *p) {
    const token *t = cur(p);
    if (t->k != T_EOF) p->i++;
    return t;
}

static const char *describe(const token *t) {
    switch (t->k) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data / text";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_BLOCK_END: return "end of statement block";
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    default: return t->s;
    }
}

_Noreturn static void pfail_at(parser *p, const token *t, const char *fmt, const char *a, const char *b) {
    char msg[600];
    snprintf(msg, sizeof msg, fmt, a, b);
    jc_fail(p->c, t->line, t->col, "%s", msg);
}

static bool is_op(const token *t, const char *op) { return t->k == T_OP && !strcmp(t->s, op); }
static bool is_name(const token *t, const char *name) { return t->k == T_NAME && !strcmp(t->s, name); }

static void expect_op(parser *p, const char *op) {
    if (!is_op(cur(p), op)) pfail_at(p, cur(p), "expected token '%s', got '%s'", op, describe(cur(p)));
    advance(p);
}
static void expect_kind(parser *p, tok_kind k, const char *what) {
    if (cur(p)->k != k) pfail_at(p, cur(p), "expected token '%s', got '%s'", what, describe(cur(p)));
    advance(p);
}
static const token *expect_name(parser *p) {
    if (cur(p)->k != T_NAME) pfail_at(p, cur(p), "expected token '%s', got '%s'", "name", describe(cur(p)));
    return advance(p);
}
static void expect_name_value(parser *p, const char *name) {
    if (!is_name(cur(p), name)) pfail_at(p, cur(p), "expected token '%s', got '%s'", name, describe(cur(p)));
    advance(p);
}
static bool skip_op(parser *p, const char *op) {
    if (!is_op(cur(p), op)) return false;
    advance(p);
    return true;
}
static bool skip_name(parser *p, const char *name) {
    if (!is_name(cur(p), name)) return false;
    advance(p);
    return true;
}

static node *mk(parser *p, node_kind k, const token *at) {
    node *n = ja_alloc(p->c->arena, sizeof *n);
    n->k = k;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static void push(parser *p, nodes *l, node *n) {
    if ((l->n & (l->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = l->n ? 2 * (size_t)l->n : 1;
        l->v = ja_grow(p->c->arena, l->v, (size_t)l->n * sizeof *l->v, cap * sizeof *l->v);
    }
    l->v[l->n++] = n;
}

static node *parse_expression(parser *p, bool with_condexpr);
static node *parse_tuple(parser *p, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                         bool with_namespace);
static node *parse_primary(parser *p, bool with_namespace);
static node *parse_postfix(parser *p, node *n);
static node *parse_filter_expr(parser *p, node *n);
static nodes subparse(parser *p, const char *const *end_tokens);

/* call arguments (after the name): positional, key=value, *args, **kwargs */
static void parse_call_args(parser *p, node *n) {
    const token *open = cur(p);
    expect_op(p, "(");
    bool require_comma = false;
    int kcap = 0;
    while (!is_op(cur(p), ")")) {
        if (require_comma) {
            expect_op(p, ",");
            if (is_op(cur(p), ")")) break;
        }
        if (is_op(cur(p), "*")) {
            if (n->dyn_args || n->dyn_kwargs) pfail_at(p, open, "invalid syntax for function call expression%s%s", "", "");
            advance(p);
            n->dyn_args = parse_expression(p, true);
        } else if (is_op(cur(p), "**")) {
            if (n->dyn_kwargs) pfail_at(p, open, "invalid syntax for function call expression%s%s", "", "");
            advance(p);
            n->dyn_kwargs = parse_expression(p, true);
        } else if (cur(p)->k == T_NAME && is_op(look(p), "=")) {
            if (n->dyn_kwargs) pfail_at(p, open, "invalid syntax for function call expression%s%s", "", "");
            const char *key = advance(p)->s;
            advance(p);
            if (n->kwargs.n == kcap) {
                int cap = kcap ? 2 * kcap : 4;
                n->kw = ja_grow(p->c->arena, n->kw, (size_t)kcap * sizeof *n->kw, (size_t)cap * sizeof *n->kw);
                kcap = cap;
            }
            n->kw[n->kwargs.n] = key;
            push(p, &n->kwargs, parse_expression(p, true));
        } else {
            if (n->dyn_args || n->dyn_kwargs || n->kwargs.n)
                pfail_at(p, open, "invalid syntax for function call expression%s%s", "", "");
            push(p, &n->args, parse_expression(p, true));
        }
        require_comma = true;
    }
    expect_op(p, ")");
}

static const char *dotted_name(parser *p) {
    const char *name = expect_name(p)->s;
    while (is_op(cur(p), ".")) {
        advance(p);
        const char *more = expect_name(p)->s;
        size_t a = strlen(name), b = strlen(more);
        char *joined = ja_alloc(p->c->arena, a + b + 2);
        memcpy(joined, name, a);
        joined[a] = '.';
        memcpy(joined + a + 1, more, b + 1);
        name = joined;
    }
    return name;
}

static node *parse_filter(parser *p, node *n, bool start_inline) {
    while (is_op(cur(p), "|") || start_inline) {
        if (!start_inline) advance(p);
        const token *at = cur(p);
        node *f = mk(p, N_FILTER, at);
        f->name = dotted_name(p);
        if (jb_filter_id(f->name) < 0) pfail_at(p, at, "No filter named '%s'.%s", f->name, "");
        f->a = n;
        if (is_op(cur(p), "(")) parse_call_args(p, f);
        n = f;
        start_inline = false;
    }
    return n;
}

static node *parse_test(parser *p, node *n) {
    const token *is = advance(p);
    bool negated = skip_name(p, "not");
    const token *at = cur(p);
    node *t = mk(p, N_TEST, is);
    t->name = dotted_name(p);
    if (jb_test_id(t->name) < 0) pfail_at(p, at, "No test named '%s'.%s", t->name, "");
    t->a = n;
    const token *c = cur(p);
    if (is_op(c, "(")) {
        parse_call_args(p, t);
    } else if ((c->k == T_NAME || c->k == T_STRING || c->k == T_INT || c->k == T_FLOAT || is_op(c, "[") ||
                is_op(c, "{")) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) pfail_at(p, c, "You cannot chain multiple tests with is%s%s", "", "");
        node *arg = parse_postfix(p, parse_primary(p, false));
        push(p, &t->args, arg);
    }
    if (negated) {
        node *nt = mk(p, N_NOT, is);
        nt->a = t;
        return nt;
    }
    return t;
}

static node *parse_subscribed(parser *p) {
    const token *at = cur(p);
    node *args[3] = {NULL, NULL, NULL};
    if (is_op(cur(p), ":")) {
        advance(p);
    } else {
        node *e = parse_expression(p, true);
        if (!is_op(cur(p), ":")) return e;
        advance(p);
        args[0] = e;
    }
    if (!is_op(cur(p), ":") && !is_op(cur(p), "]") && !is_op(cur(p), ",")) args[1] = parse_expression(p, true);
    if (is_op(cur(p), ":")) {
        advance(p);
        if (!is_op(cur(p), "]") && !is_op(cur(p), ",")) args[2] = parse_expression(p, true);
    }
    node *s = mk(p, N_SLICE, at);
    s->a = args[0], s->b = args[1], s->c = args[2];
    return s;
}

static node *parse_subscript(parser *p, node *n) {
    const token *t = advance(p);
    if (is_op(t, ".")) {
        const token *attr = advance(p);
        if (attr->k == T_NAME) {
            node *g = mk(p, N_GETATTR, t);
            g->a = n;
            g->name = attr->s;
            return g;
        }
        if (attr->k != T_INT) pfail_at(p, attr, "expected name or number%s%s", "", "");
        node *g = mk(p, N_GETITEM, t), *k = mk(p, N_CONST, attr);
        k->value = jv_int(attr->i);
        g->a = n;
        g->b = k;
        return g;
    }
    /* '[' */
    nodes args = {0};
    while (!is_op(cur(p), "]")) {
        if (args.n) expect_op(p, ",");
        push(p, &args, parse_subscribed(p));
    }
    expect_op(p, "]");
    node *g = mk(p, N_GETITEM, t);
    g->a = n;
    if (args.n == 1) {
        g->b = args.v[0];
    } else {
        node *tu = mk(p, N_TUPLE, t);
        tu->args = args;
        g->b = tu;
    }
    return g;
}

static node *parse_call(parser *p, node *n) {
    node *c = mk(p, N_CALL, cur(p));
    c->line = n->line, c->col = n->col; /* errors point at the callee: raise_exception(...) */
    c->a = n;
    parse_call_args(p, c);
    return c;
}

static node *parse_postfix(parser *p, node *n) {
    for (;;) {
        if (is_op(cur(p), ".") || is_op(cur(p), "[")) n = parse_subscript(p, n);
        else if (is_op(cur(p), "(")) n = parse_call(p, n);
        else return n;
    }
}

static node *parse_filter_expr(parser *p, node *n) {
    for (;;) {
        if (is_op(cur(p), "|")) n = parse_filter(p, n, false);
        else if (is_name(cur(p), "is")) n = parse_test(p, n);
        else if (is_op(cur(p), "(")) n = parse_call(p, n);
        else return n;
    }
}

static node *parse_list(parser *p) {
    node *l = mk(p, N_LIST, cur(p));
    expect_op(p, "[");
    while (!is_op(cur(p), "]")) {
        if (l->args.n) expect_op(p, ",");
        if (is_op(cur(p), "]")) break;
        push(p, &l->args, parse_expression(p, true));
    }
    expect_op(p, "]");
    return l;
}

static node *parse_dict(parser *p) {
    node *d = mk(p, N_DICT, cur(p));
    expect_op(p, "{");
    while (!is_op(cur(p), "}")) {
        if (d->args.n) expect_op(p, ",");
        if (is_op(cur(p), "}")) break;
        push(p, &d->args, parse_expression(p, true));
        expect_op(p, ":");
        push(p, &d->kwargs, parse_expression(p, true));
    }
    expect_op(p, "}");
    return d;
}

static node *parse_primary(parser *p, bool with_namespace) {
    const token *t = cur(p);
    node *n;
    if (t->k == T_NAME) {
        advance(p);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            n = mk(p, N_CONST, t);
            n->value = jv_bool(t->s[0] == 't' || t->s[0] == 'T');
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            n = mk(p, N_CONST, t);
            n->value = jv_none();
        } else if (with_namespace && is_op(cur(p), ".")) {
            advance(p);
            n = mk(p, N_NSREF, t);
            n->name = t->s;
            n->attr = expect_name(p)->s;
        } else {
            n = mk(p, N_NAME, t);
            n->name = t->s;
        }
    } else if (t->k == T_STRING) {
        /* adjacent strings are one */
        size_t len = 0;
        for (int j = p->i; p->t->v[j].k == T_STRING; j++) len += p->t->v[j].len;
        jstr *s = ja_alloc(p->c->arena, sizeof *s + len + 1);
        s->len = 0;
        while (cur(p)->k == T_STRING) {
            memcpy(s->p + s->len, cur(p)->s, cur(p)->len);
            s->len += cur(p)->len;
            advance(p);
        }
        s->p[s->len] = 0;
        n = mk(p, N_CONST, t);
        n->value.k = JV_STR;
        n->value.s = s;
    } else if (t->k == T_INT || t->k == T_FLOAT) {
        advance(p);
        n = mk(p, N_CONST, t);
        n->value = t->k == T_INT ? jv_int(t->i) : jv_float(t->f);
    } else if (is_op(t, "(")) {
        advance(p);
        n = parse_tuple(p, false, true, NULL, true, false);
        expect_op(p, ")");
    } else if (is_op(t, "[")) {
        n = parse_list(p);
    } else if (is_op(t, "{")) {
        n = parse_dict(p);
    } else {
        pfail_at(p, t, "unexpected '%s'%s", describe(t), "");
    }
    return n;
}

static void enter(parser *p) {
    if (++p->depth > MAX_NESTING || jinja_stack_exhausted(p->c->stack_base))
        pfail_at(p, cur(p), "the template nests too deeply (more than %s levels)%s", "400", "");
}

static node *parse_unary(parser *p, bool with_filter) {
    const token *t = cur(p);
    node *n;
    enter(p);
    if (is_op(t, "-") || is_op(t, "+")) {
        advance(p);
        n = mk(p, is_op(t, "-") ? N_NEG : N_POS, t);
        n->a = parse_unary(p, false);
    } else {
        n = parse_primary(p, false);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static node *binop_node(parser *p, const token *at, int op, node *a, node *b) {
    node *n = mk(p, N_BINOP, at);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static node *parse_pow(parser *p) {
    node *l = parse_unary(p, true);
    while (is_op(cur(p), "**")) {
        const token *at = advance(p);
        l = binop_node(p, at, OP_POW, l, parse_unary(p, true));
    }
    return l;
}

static node *parse_math2(parser *p) {
    node *l = parse_pow(p);
    for (;;) {
        const token *t = cur(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) return l;
        advance(p);
        l = binop_node(p, t, op, l, parse_pow(p));
    }
}

static node *parse_concat(parser *p) {
    const token *at = cur(p);
    node *first = parse_math2(p);
    if (!is_op(cur(p), "~")) return first;
    node *c = mk(p, N_CONCAT, at);
    push(p, &c->args, first);
    while (skip_op(p, "~")) push(p, &c->args, parse_math2(p));
    return c;
}

static node *parse_math1(parser *p) {
    node *l = parse_concat(p);
    for (;;) {
        const token *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0) return l;
        advance(p);
        l = binop_node(p, t, op, l, parse_concat(p));
    }
}

static node *parse_compare(parser *p) {
    const token *at = cur(p);
    node *e = parse_math1(p);
    node *c = NULL;
    int cap = 0;
    for (;;) {
        const token *t = cur(p);
        int op = -1;
        if (is_op(t, "==")) op = CMP_EQ;
        else if (is_op(t, "!=")) op = CMP_NE;
        else if (is_op(t, "<")) op = CMP_LT;
        else if (is_op(t, "<=")) op = CMP_LE;
        else if (is_op(t, ">")) op = CMP_GT;
        else if (is_op(t, ">=")) op = CMP_GE;
        else if (is_name(t, "in")) op = CMP_IN;
        else if (is_name(t, "not") && is_name(look(p), "in")) op = CMP_NOTIN;
        if (op < 0) break;
        advance(p);
        if (op == CMP_NOTIN) advance(p);
        if (!c) {
            c = mk(p, N_COMPARE, at);
            push(p, &c->args, e);
        }
        if (c->args.n - 1 == cap) {
            int ncap = cap ? 2 * cap : 2;
            c->ops = ja_grow(p->c->arena, c->ops, (size_t)cap * sizeof *c->ops, (size_t)ncap * sizeof *c->ops);
            cap = ncap;
        }
        c->ops[c->args.n - 1] = (cmpop)op;
        push(p, &c->args, parse_math1(p));
    }
    return c ? c : e;
}

static node *parse_not(parser *p) {
    if (is_name(cur(p), "not")) {
        const token *t = advance(p);
        node *n = mk(p, N_NOT, t);
        enter(p);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static node *parse_and(parser *p) {
    node *l = parse_not(p);
    while (is_name(cur(p), "and")) {
        const token *t = advance(p);
        node *n = mk(p, N_AND, t);
        n->a = l;
        n->b = parse_not(p);
        l = n;
    }
    return l;
}

static node *parse_or(parser *p) {
    node *l = parse_and(p);
    while (is_name(cur(p), "or")) {
        const token *t = advance(p);
        node *n = mk(p, N_OR, t);
        n->a = l;
        n->b = parse_and(p);
        l = n;
    }
    return l;
}

static node *parse_condexpr(parser *p) {
    node *e1 = parse_or(p);
    while (is_name(cur(p), "if")) {
        const token *t = advance(p);
        node *c = mk(p, N_COND, t);
        c->b = parse_or(p);
        c->a = e1;
        c->c = skip_name(p, "else") ? parse_condexpr(p) : NULL;
        e1 = c;
    }
    return e1;
}

static node *parse_expression(parser *p, bool with_condexpr) {
    enter(p);
    node *n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return n;
}

static bool is_tuple_end(parser *p, const char *extra_end) {
    const token *t = cur(p);
    if (t->k == T_VAR_END || t->k == T_BLOCK_END || is_op(t, ")")) return true;
    return extra_end && is_name(t, extra_end);
}

static node *parse_tuple(parser *p, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                         bool with_namespace) {
    const token *at = cur(p);
    nodes args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n) expect_op(p, ",");
        if (is_tuple_end(p, extra_end)) break;
        push(p, &args, simplified ? parse_primary(p, with_namespace) : parse_expression(p, with_condexpr));
        if (is_op(cur(p), ",")) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (args.n) return args.v[0];
        if (!explicit_parens) pfail_at(p, cur(p), "Expected an expression, got '%s'%s", describe(cur(p)), "");
    }
    node *t = mk(p, N_TUPLE, at);
    t->args = args;
    return t;
}

static bool can_assign(const node *n) {
    if (n->k == N_NAME || n->k == N_NSREF) return true;
    if (n->k != N_TUPLE) return false;
    for (int i = 0; i < n->args.n; i++)
        if (!can_assign(n->args.v[i])) return false;
    return true;
}

static node *parse_assign_target(parser *p, bool name_only, const char *extra_end, bool with_namespace) {
    const token *at = cur(p);
    node *t;
    if (name_only) {
        const token *nt = expect_name(p);
        t = mk(p, N_NAME, nt);
        t->name = nt->s;
        return t;
    }
    t = parse_tuple(p, true, true, extra_end, false, with_namespace);
    if (!can_assign(t)) pfail_at(p, at, "can't assign to '%s'%s", t->k == N_CONST ? "const" : "expression", "");
    return t;
}

/* statements */
static nodes parse_statements(parser *p, const char *const *end_tokens, bool drop_needle) {
    skip_op(p, ":");
    expect_kind(p, T_BLOCK_END, "end of statement block");
    nodes body = subparse(p, end_tokens);
    if (cur(p)->k == T_EOF) {
        char want[200] = "";
        for (int i = 0; end_tokens[i]; i++) {
            size_t n = strlen(want);
            snprintf(want + n, sizeof want - n, "%s'%s'", i ? " or " : "", end_tokens[i]);
        }
        pfail_at(p, cur(p), "Unexpected end of template. Jinja was looking for the following tags: %s.%s", want, "");
    }
    if (drop_needle) advance(p);
    return body;
}

static void parse_signature(parser *p, node *n) {
    expect_op(p, "(");
    while (!is_op(cur(p), ")")) {
        if (n->args.n) expect_op(p, ",");
        node *arg = parse_assign_target(p, true, NULL, false);
        if (skip_op(p, "=")) push(p, &n->kwargs, parse_expression(p, true));
        else if (n->kwargs.n) pfail_at(p, cur(p), "non-default argument follows default argument%s%s", "", "");
        push(p, &n->args, arg);
    }
    expect_op(p, ")");
}

/* does the body read the name (varargs, kwargs, caller)? nested macros excluded, as jinja does */
static bool reads_name(const node *n, const char *name) {
    if (!n) return false;
    if (n->k == N_NAME && !strcmp(n->name, name)) return true;
    if (n->k == N_MACRO) return false;
    const node *kids[] = {n->a, n->b, n->c, n->dyn_args, n->dyn_kwargs};
    for (int i = 0; i < 5; i++)
        if (reads_name(kids[i], name)) return true;
    const nodes *lists[] = {&n->args, &n->kwargs, &n->body, &n->orelse};
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < lists[l]->n; i++)
            if (reads_name(lists[l]->v[i], name)) return true;
    return false;
}

static void mark_macro(node *m) {
    for (int i = 0; i < m->body.n; i++) {
        m->uses_varargs |= reads_name(m->body.v[i], "varargs");
        m->uses_kwargs |= reads_name(m->body.v[i], "kwargs");
        m->uses_caller |= reads_name(m->body.v[i], "caller");
    }
}

static node *parse_statement(parser *p) {
    const token *t = cur(p);
    if (t->k != T_NAME) pfail_at(p, t, "tag name expected%s%s", "", "");
    const char *kw = t->s;
    if (!strcmp(kw, "for")) {
        advance(p);
        node *n = mk(p, N_FOR, t);
        n->a = parse_assign_target(p, false, "in", false);
        expect_name_value(p, "in");
        n->b = parse_tuple(p, false, false, "recursive", false, false);
        if (skip_name(p, "if")) n->c = parse_expression(p, true);
        if (skip_name(p, "recursive")) pfail_at(p, t, "recursive for loops are not supported%s%s", "", "");
        static const char *const ends[] = {"endfor", "else", NULL};
        p->loop_depth++;
        n->body = parse_statements(p, ends, false);
        p->loop_depth--;
        if (!strcmp(advance(p)->s, "else")) {
            static const char *const end[] = {"endfor", NULL};
            n->orelse = parse_statements(p, end, true);
        }
        return n;
    }
    if (!strcmp(kw, "if")) {
        advance(p);
        node *top = mk(p, N_IF, t), *n = top;
        for (;;) {
            n->a = parse_tuple(p, false, false, NULL, false, false);
            static const char *const ends[] = {"elif", "else", "endif", NULL};
            n->body = parse_statements(p, ends, false);
            const token *e = advance(p);
            if (!strcmp(e->s, "elif")) {
                node *next = mk(p, N_IF, cur(p));
                push(p, &n->orelse, next);
                n = next;
                continue;
            }
            if (!strcmp(e->s, "else")) {
                static const char *const end[] = {"endif", NULL};
                n->orelse = parse_statements(p, end, true);
            }
            break;
        }
        return top;
    }
    if (!strcmp(kw, "set")) {
        advance(p);
        node *target = parse_assign_target(p, false, NULL, true);
        if (skip_op(p, "=")) {
            node *n = mk(p, N_SET, t);
            n->a = target;
            n->b = parse_tuple(p, false, true, NULL, false, false);
            return n;
        }
        node *n = mk(p, N_SETBLOCK, t);
        n->a = target;
        if (is_op(cur(p), "|")) n->b = parse_filter(p, NULL, false);
        static const char *const end[] = {"endset", NULL};
        n->body = parse_statements(p, end, true);
        return n;
    }
    if (!strcmp(kw, "macro")) {
        advance(p);
        node *n = mk(p, N_MACRO, t);
        n->name = parse_assign_target(p, true, NULL, false)->name;
        parse_signature(p, n);
        static const char *const end[] = {"endmacro", NULL};
        int saved = p->loop_depth;
        p->loop_depth = 0;
        p->macro_depth++;
        n->body = parse_statements(p, end, true);
        p->macro_depth--;
        p->loop_depth = saved;
        mark_macro(n);
        return n;
    }
    if (!strcmp(kw, "call")) {
        advance(p);
        node *n = mk(p, N_CALLBLOCK, t);
        if (is_op(cur(p), "(")) parse_signature(p, n);
        n->a = parse_expression(p, true);
        if (n->a->k != N_CALL) pfail_at(p, t, "expected call%s%s", "", "");
        static const char *const end[] = {"endcall", NULL};
        int saved = p->loop_depth;
        p->loop_depth = 0;
        n->body = parse_statements(p, end, true);
        p->loop_depth = saved;
        mark_macro(n);
        return n;
    }
    if (!strcmp(kw, "filter")) {
        advance(p);
        node *n = mk(p, N_FILTERBLOCK, t);
        n->b = parse_filter(p, NULL, true);
        static const char *const end[] = {"endfilter", NULL};
        n->body = parse_statements(p, end, true);
        return n;
    }
    if (!strcmp(kw, "with")) {
        advance(p);
        node *n = mk(p, N_WITH, t);
        while (cur(p)->k != T_BLOCK_END) {
            if (n->args.n) expect_op(p, ",");
            push(p, &n->args, parse_assign_target(p, false, NULL, false));
            expect_op(p, "=");
            push(p, &n->kwargs, parse_expression(p, true));
        }
        static const char *const end[] = {"endwith", NULL};
        n->body = parse_statements(p, end, true);
        return n;
    }
    if (!strcmp(kw, "print")) {
        advance(p);
        node *n = mk(p, N_OUTPUT, t);
        while (cur(p)->k != T_BLOCK_END) {
            if (n->args.n) expect_op(p, ",");
            push(p, &n->args, parse_expression(p, true));
        }
        return n;
    }
    if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        advance(p);
        if (!p->loop_depth) pfail_at(p, t, "'%s' outside a loop%s", kw, "");
        return mk(p, kw[0] == 'b' ? N_BREAK : N_CONTINUE, t);
    }
    if (!strcmp(kw, "generation")) { /* transformers' AssistantTracker extension */
        advance(p);
        node *n = mk(p, N_GENERATION, t);
        static const char *const end[] = {"endgeneration", NULL};
        n->body = parse_statements(p, end, true);
        p->has_generation = true;
        return n;
    }
    static const char *const unsupported[] = {"block", "extends", "include", "import", "from", "autoescape", NULL};
    for (int i = 0; unsupported[i]; i++)
        if (!strcmp(kw, unsupported[i]))
            pfail_at(p, t, "the '%s' tag is not supported in chat templates (they are rendered alone)%s", kw, "");
    pfail_at(p, t, "Encountered unknown tag '%s'.%s", kw, "");
}

static nodes subparse(parser *p, const char *const *end_tokens) {
    nodes body = {0};
    enter(p);
    node *out = NULL; /* the current run of text and {{ }} */
    for (;;) {
        const token *t = cur(p);
        if (t->k == T_EOF) break;
        if (t->k == T_DATA) {
            if (!out) push(p, &body, out = mk(p, N_OUTPUT, t));
            node *d = mk(p, N_DATA, t);
            d->value.k = JV_STR;
            d->value.s = ja_alloc(p->c->arena, sizeof(jstr) + t->len + 1);
            d->value.s->len = t->len;
            memcpy(d->value.s->p, t->s, t->len);
            push(p, &out->args, d);
            advance(p);
        } else if (t->k == T_VAR_BEGIN) {
            advance(p);
            if (!out) push(p, &body, out = mk(p, N_OUTPUT, t));
            push(p, &out->args, parse_tuple(p, false, true, NULL, false, false));
            expect_kind(p, T_VAR_END, "end of print statement");
        } else if (t->k == T_BLOCK_BEGIN) {
            out = NULL;
            advance(p);
            if (end_tokens && cur(p)->k == T_NAME)
                for (int i = 0; end_tokens[i]; i++)
                    if (!strcmp(cur(p)->s, end_tokens[i])) {
                        p->depth--;
                        return body;
                    }
            push(p, &body, parse_statement(p));
            expect_kind(p, T_BLOCK_END, "end of statement block");
        } else {
            pfail_at(p, t, "unexpected '%s'%s", describe(t), "");
        }
    }
    p->depth--;
    return body;
}

void jinja_parse(jcompile *c, const tokens *t, nodes *out, bool *has_generation) {
    parser p = {.c = c, .t = t};
    *out = subparse(&p, NULL);
    *has_generation = p.has_generation;
}

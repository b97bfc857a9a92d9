/* The Jinja interpreter's insides: values, the arena every render allocates from, tokens, the syntax tree.
 *
 *   lexer.c     source -> tokens, with jinja2's whitespace rules (trim_blocks, lstrip_blocks, - and + marks)
 *   parser.c    tokens -> tree (jinja2's grammar and operator precedence)
 *   value.c     Python semantics of the values: str()/repr(), truthiness, ==, <, json.dumps
 *   eval.c      the tree walk: statements, expressions, scopes, macros, {% generation %}
 *   builtins.c  filters, tests, global functions, str/dict/list methods
 *
 * Memory: a template's tree lives in the template's arena; everything a render creates lives in the render's
 * arena and is freed at once when the render ends. Errors leave through longjmp to ftc_jinja_render (or
 * ftc_jinja_compile), which frees the arena: no cleanup paths in the interpreter. Values are immutable
 * except namespaces (and the state of loop, cycler and joiner objects), so they are shared freely. */
#ifndef FTC_JINJA_INTERNAL_H
#define FTC_JINJA_INTERNAL_H
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ftc/jinja.h"

/* The interpreter's own names stay short in the code; exported from libftc they carry the ftc_ prefix
 * (tests/lib_symbols.sh), so they cannot collide with a program's own u8_len or jv_str. */
#define ja_alloc ftc_jinja_ja_alloc
#define ja_free_all ftc_jinja_ja_free_all
#define ja_grow ftc_jinja_ja_grow
#define ja_strndup ftc_jinja_ja_strndup
#define jb_call_builtin ftc_jinja_jb_call_builtin
#define jb_filter ftc_jinja_jb_filter
#define jb_filter_id ftc_jinja_jb_filter_id
#define jb_html_escape ftc_jinja_jb_html_escape
#define jb_install_globals ftc_jinja_jb_install_globals
#define jb_method ftc_jinja_jb_method
#define jb_percent_format ftc_jinja_jb_percent_format
#define jb_printf ftc_jinja_jb_printf
#define jb_put ftc_jinja_jb_put
#define jb_puts ftc_jinja_jb_puts
#define jb_test ftc_jinja_jb_test
#define jb_test_id ftc_jinja_jb_test_id
#define jc_fail ftc_jinja_jc_fail
#define jd_get ftc_jinja_jd_get
#define jd_get_str ftc_jinja_jd_get_str
#define jd_set ftc_jinja_jd_set
#define jinja_lex ftc_jinja_jinja_lex
#define jinja_parse ftc_jinja_jinja_parse
#define jl_push ftc_jinja_jl_push
#define jr_call ftc_jinja_jr_call
#define jr_check_size ftc_jinja_jr_check_size
#define jr_fail ftc_jinja_jr_fail
#define jr_getattr ftc_jinja_jr_getattr
#define jr_getitem ftc_jinja_jr_getitem
#define jr_iterate ftc_jinja_jr_iterate
#define jr_step ftc_jinja_jr_step
#define jv_compare ftc_jinja_jv_compare
#define jv_cstr ftc_jinja_jv_cstr
#define jv_dict ftc_jinja_jv_dict
#define jv_equal ftc_jinja_jv_equal
#define jv_from_json ftc_jinja_jv_from_json
#define jv_list ftc_jinja_jv_list
#define jv_repr ftc_jinja_jv_repr
#define jv_str ftc_jinja_jv_str
#define jv_str_buf ftc_jinja_jv_str_buf
#define jv_str_of ftc_jinja_jv_str_of
#define jv_to_json ftc_jinja_jv_to_json
#define jv_to_str ftc_jinja_jv_to_str
#define jv_truthy ftc_jinja_jv_truthy
#define jv_type_name ftc_jinja_jv_type_name
#define py_isspace ftc_jinja_py_isspace
#define u8_decode ftc_jinja_u8_decode
#define u8_encode ftc_jinja_u8_encode
#define u8_len ftc_jinja_u8_len
#define u8_offset ftc_jinja_u8_offset

/* ---- arena ---- */
typedef struct jarena_block jarena_block;
typedef struct {
    jarena_block *head;
    size_t used_total, limit; /* bytes handed out; limit 0 = none */
    jmp_buf *oom;             /* where to go when out of memory or over the limit */
    bool over_limit;
} jarena;
void *ja_alloc(jarena *a, size_t n); /* zeroed, 16-byte aligned; longjmps on failure */
void *ja_grow(jarena *a, void *p, size_t old_n, size_t new_n);
char *ja_strndup(jarena *a, const char *s, size_t n);
void ja_free_all(jarena *a);

/* ---- values ---- */
typedef enum {
    JV_UNDEF, /* a name or attribute that does not exist (prints as "", is falsy, fails on use) */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,  /* list or tuple */
    JV_DICT,  /* insertion-ordered */
    JV_NS,    /* namespace(): a mutable attribute holder */
    JV_MACRO,
    JV_FUNC,  /* a builtin function, or a method bound to its object */
    JV_LOOP,  /* the loop variable of a for loop */
    JV_CYCLER,
    JV_JOINER,
} jv_kind;

typedef struct jstr jstr;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jmacro jmacro;
typedef struct jfunc jfunc;
typedef struct jloop jloop;
typedef struct jcycler jcycler;

typedef struct jv {
    jv_kind k;
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d; /* JV_DICT, JV_NS */
        jmacro *m;
        jfunc *fn;
        jloop *loop;
        jcycler *cy; /* JV_CYCLER, JV_JOINER */
        const char *uname; /* JV_UNDEF: why it is undefined, "'x' is undefined" (the error message), or NULL */
    };
} jv;

struct jstr {
    size_t len;
    bool markup; /* markupsafe.Markup (from |safe, |escape): + escapes the plain string it meets */
    char p[];    /* NUL-terminated (a string may also hold NULs) */
};
struct jlist {
    size_t n, cap;
    jv *v;
    bool tuple;
    bool gen;      /* a generator (|select, |map, |items, ...): always true, no len(), no [i], iterates once */
    bool consumed; /* a generator already iterated */
};
struct jdict {
    size_t n, cap;
    jv *key, *val;
};
struct jcycler {
    jlist *items; /* cycler: the items; joiner: items->v[0] is the separator */
    size_t pos;   /* cycler: next item; joiner: calls so far */
};

/* ---- the syntax tree ---- */
typedef enum {
    /* expressions */
    N_CONST, N_NAME, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NOT, N_NEG, N_POS, N_BINOP,
    N_CONCAT, N_COMPARE, N_AND, N_OR, N_COND, N_LIST, N_TUPLE, N_DICT, N_NSREF,
    /* statements */
    N_DATA, N_OUTPUT, N_FOR, N_IF, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_WITH, N_BREAK,
    N_CONTINUE, N_GENERATION,
} node_kind;

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW } binop;
typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN } cmpop;

typedef struct node node;
typedef struct {
    node **v;
    int n;
} nodes;

struct node {
    node_kind k;
    int line, col;
    const char *name;      /* N_NAME, N_GETATTR attribute, N_FILTER/N_TEST name, N_MACRO name, N_NSREF var */
    const char *attr;      /* N_NSREF attribute; N_CALL/N_FILTER/N_TEST: keyword names (kw_names) */
    jv value;              /* N_CONST; N_DATA text */
    node *a, *b, *c;       /* operands: GETATTR/GETITEM obj=a key=b; SLICE a:b:c; COND a if b else c;
                              FOR target=a iter=b test=c; SET target=a value=b; CALL fn=a; FILTER/TEST arg=a;
                              CALLBLOCK call=a; SETBLOCK/FILTERBLOCK filter=b */
    nodes args;            /* CALL/FILTER/TEST positional args; LIST/TUPLE items; DICT keys; CONCAT parts;
                              COMPARE operands; MACRO/CALLBLOCK parameters (N_NAME); WITH targets; OUTPUT items */
    nodes kwargs;          /* CALL/FILTER/TEST keyword values (names in kw); DICT values; MACRO defaults
                              (for the last kwargs.n parameters); WITH values */
    const char **kw;       /* keyword names */
    node *dyn_args, *dyn_kwargs;
    nodes body, orelse;    /* FOR/IF/MACRO/... bodies; IF elif chain is orelse = [N_IF] */
    cmpop *ops;            /* COMPARE: ops[i] between args[i] and args[i+1] */
    int op;                /* BINOP */
    bool flag;             /* TEST negated is a separate N_NOT; FOR recursive; MACRO uses caller */
    bool uses_varargs, uses_kwargs, uses_caller; /* MACRO */
};

/* The compiled template. */
struct ftc_jinja {
    char *name;
    jarena arena;
    nodes body;
    bool has_generation;
};

/* ---- lexer ---- */
typedef enum {
    T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP,
} tok_kind;
typedef struct {
    tok_kind k;
    int line, col;
    const char *s; /* T_DATA text, T_NAME, T_STRING (unescaped), T_OP text */
    size_t len;
    int64_t i;
    double f;
} token;
typedef struct {
    token *v;
    int n;
} tokens;

/* Compile-time failure: message with position, then longjmp. */
typedef struct {
    const char *name;
    jarena *arena;
    jmp_buf jb;
    ftc_err *err;
    uintptr_t stack_base;
} jcompile;
_Noreturn void jc_fail(jcompile *c, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void jinja_lex(jcompile *c, const char *src, size_t len, tokens *out);
void jinja_parse(jcompile *c, const tokens *t, nodes *out, bool *has_generation);

/* ---- the render state ---- */
typedef struct {
    char *p;
    size_t n, cap;
} jbuf; /* text in the render's arena */

typedef struct scope {
    struct scope *parent;
    jdict *vars;
} scope;

struct jmacro {
    const node *def;   /* N_MACRO, or N_CALLBLOCK for a call block's caller() */
    scope *closure;    /* names the body sees besides its parameters (by reference: Python closures) */
    jv caller;         /* the caller() macro of a call block, or undefined */
};
struct jfunc {
    int id;            /* builtins.c: which function or method */
    jv self;           /* the object a method is bound to */
    const char *name;
};
struct jloop {
    jlist *items;
    size_t i;          /* index0 */
    int depth0;
    jv changed_last;   /* loop.changed() */
    bool changed_set;
};

typedef struct jrender {
    jarena arena;
    jmp_buf jb;
    ftc_err *err;
    const ftc_jinja *t;
    jbuf root, *out;      /* the rendered text; out: where text goes now (root, or a macro's/set block's buffer) */
    ftc_jinja_span *gen;  /* {% generation %} spans in root */
    int n_gen, cap_gen;
    int64_t steps, max_steps;
    size_t max_output;
    int depth;            /* macro calls and nested structures, against runaway recursion */
    int64_t now;
    scope *globals, *context;
    int loop_ctl;         /* 1 break, 2 continue: set by the statement, cleared by its loop */
    const node *at;       /* the node being evaluated, for error positions */
    uintptr_t stack_base; /* the stack address where the render started: deep recursion stops before overflow */
} jrender;

/* Stack the interpreter may use below its entry (recursion in templates, nesting in expressions): far below
 * the 8 MB of a main thread, enough for any real template (a few dozen levels). */
#define JINJA_STACK_BUDGET ((uintptr_t)1 << 20)
static inline bool jinja_stack_exhausted(uintptr_t base) {
    char probe;
    uintptr_t here = (uintptr_t)&probe;
    return base > here && base - here > JINJA_STACK_BUDGET;
}

_Noreturn void jr_fail(jrender *r, const node *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void jr_step(jrender *r);           /* counts work; fails past max_steps */
void jr_check_size(jrender *r, size_t n); /* fails when a string would pass max_output */

/* ---- values (value.c) ---- */
void jb_put(jrender *r, jbuf *b, const char *s, size_t n);
void jb_puts(jrender *r, jbuf *b, const char *s);
void jb_printf(jrender *r, jbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static inline jv jv_undef(const char *name) { jv v = {.k = JV_UNDEF}; v.uname = name; return v; }
static inline jv jv_none(void) { return (jv){.k = JV_NONE}; }
static inline jv jv_bool(bool b) { jv v = {.k = JV_BOOL}; v.b = b; return v; }
static inline jv jv_int(int64_t i) { jv v = {.k = JV_INT}; v.i = i; return v; }
static inline jv jv_float(double f) { jv v = {.k = JV_FLOAT}; v.f = f; return v; }
jv jv_str(jrender *r, const char *s, size_t n);
jv jv_cstr(jrender *r, const char *s);
jv jv_str_buf(jrender *r, const jbuf *b);
jv jv_list(jrender *r, size_t cap, bool tuple);
void jl_push(jrender *r, jv list, jv item);
jv jv_dict(jrender *r, jv_kind k);
jv jd_get(const jdict *d, jv key, bool *found);
jv jd_get_str(const jdict *d, const char *key, bool *found);
void jd_set(jrender *r, jdict *d, jv key, jv val);

const char *jv_type_name(jv v); /* Python's type names: 'str', 'int', 'dict', ... */
bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
/* Python's a < b: -1, 0, 1 in *cmp; false when the types do not order (TypeError). */
bool jv_compare(jv a, jv b, int *cmp);
void jv_to_str(jrender *r, jbuf *b, jv v);  /* str(v) */
void jv_repr(jrender *r, jbuf *b, jv v);    /* repr(v) */
jv jv_str_of(jrender *r, jv v);             /* str(v) as a value (strings unchanged) */
/* json.dumps(v, ensure_ascii, indent (NULL or a string per level), separators (NULL: Python's defaults), sort_keys) */
void jv_to_json(jrender *r, jbuf *b, jv v, bool ensure_ascii, const char *indent, const char *item_sep,
                const char *key_sep, bool sort_keys, int depth);
jv jv_from_json(jrender *r, const struct json_t *j);

/* ---- eval.c <-> builtins.c ---- */
typedef struct {
    jv *pos;
    int npos;
    const char **kw; /* keyword names */
    jv *kwv;
    int nkw;
} jargs;
jv jr_getattr(jrender *r, jv obj, const char *name);  /* jinja's getattr(obj, name): attribute, else item */
jv jr_getitem(jrender *r, jv obj, jv key);            /* obj[key], else attribute */
jv jr_call(jrender *r, jv fn, jargs *a);
jv jr_iterate(jrender *r, jv v);                      /* list(v) for for-loops and filters */
/* filters and tests by name: -1 when unknown (checked at compile time) */
int jb_filter_id(const char *name);
int jb_test_id(const char *name);
jv jb_filter(jrender *r, int id, jv v, jargs *a);
bool jb_test(jrender *r, int id, jv v, jargs *a);
jv jb_method(jrender *r, jv obj, const char *name, bool *found); /* str/dict/list methods as bound functions */
jv jb_call_builtin(jrender *r, jfunc *f, jargs *a);
void jb_install_globals(jrender *r, scope *g);

/* UTF-8 helpers (strings are valid UTF-8) */
size_t u8_len(const char *s, size_t n);                  /* code points */
size_t u8_offset(const char *s, size_t n, size_t index); /* byte offset of code point index (n if past the end) */
uint32_t u8_decode(const char *s, size_t n, size_t *adv);
size_t u8_encode(uint32_t cp, char out[4]);
bool py_isspace(uint32_t cp);

#endif

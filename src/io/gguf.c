/* GGUF reader (mmap + validation) and dequantization to f32. See include/ftc/gguf.h and docs/gguf.md.
 * Every way a file can be wrong is refused with a message naming the file, the byte offset and the
 * field (key or tensor). The dequantizers follow the element order and the f32 operation order of
 * the gguf Python package (gguf.quants), so the results are bit-identical to it. */
#include "ftc/gguf.h"
#include <stdlib.h>
#include <string.h>
#include "ftc/quant.h"       /* Q8_0, Q4_0, Q4_1, Q4_K blocks */
#include "ftc/safetensors.h" /* ftc_f16_to_f32 */

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* d*q - m stays two roundings, as numpy computes it */
#endif

#define GGUF_MAGIC "GGUF"
#define MAX_NEST 8 /* arrays of arrays */
#define DEFAULT_ALIGNMENT 32

static const struct { int type; const char *name; int64_t block, bytes; bool deq; } TYPES[] = {
    {0, "F32", 1, 4, true},        {1, "F16", 1, 2, true},          {2, "Q4_0", 32, 18, true},
    {3, "Q4_1", 32, 20, true},     {6, "Q5_0", 32, 22, true},       {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},     {9, "Q8_1", 32, 40, false},      {10, "Q2_K", 256, 84, true},
    {11, "Q3_K", 256, 110, true},  {12, "Q4_K", 256, 144, true},    {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true},  {15, "Q8_K", 256, 292, false},   {16, "IQ2_XXS", 256, 66, false},
    {17, "IQ2_XS", 256, 74, false}, {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
    {20, "IQ4_NL", 32, 18, false}, {21, "IQ3_S", 256, 110, false},  {22, "IQ2_S", 256, 82, false},
    {23, "IQ4_XS", 256, 136, false}, {24, "I8", 1, 1, false},       {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},      {27, "I64", 1, 8, false},        {28, "F64", 1, 8, true},
    {29, "IQ1_M", 256, 56, false}, {30, "BF16", 1, 2, true},        {34, "TQ1_0", 256, 54, false},
    {35, "TQ2_0", 256, 66, false}, {39, "MXFP4", 32, 17, false},
};
#define N_TYPES (sizeof TYPES / sizeof *TYPES)

static int type_index(int type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].type == type) return (int)i;
    return -1;
}
const char *ftc_ggml_type_name(int type) {
    int i = type_index(type);
    return i < 0 ? NULL : TYPES[i].name;
}
bool ftc_ggml_type_size(int type, int64_t *block, int64_t *bytes) {
    int i = type_index(type);
    if (i < 0) return false;
    *block = TYPES[i].block;
    *bytes = TYPES[i].bytes;
    return true;
}
bool ftc_ggml_type_dequantizable(int type) {
    int i = type_index(type);
    return i >= 0 && TYPES[i].deq;
}

static const char *VTYPE_NAMES[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                    "u64", "i64", "f64"};
const char *ftc_gguf_vtype_name(ftc_gguf_vtype t) {
    return (unsigned)t < sizeof VTYPE_NAMES / sizeof *VTYPE_NAMES ? VTYPE_NAMES[t] : "?";
}
static int scalar_size(uint32_t t) {
    switch (t) {
    case FTC_GGUF_U8: case FTC_GGUF_I8: case FTC_GGUF_BOOL: return 1;
    case FTC_GGUF_U16: case FTC_GGUF_I16: return 2;
    case FTC_GGUF_U32: case FTC_GGUF_I32: case FTC_GGUF_F32: return 4;
    case FTC_GGUF_U64: case FTC_GGUF_I64: case FTC_GGUF_F64: return 8;
    default: return 0;
    }
}

/* ---- handle ---- */
typedef struct arena_block { struct arena_block *next; size_t used, cap; char data[]; } arena_block;

struct ftc_gguf {
    char *path;
    ftc_mapped map; /* empty when parsing a caller's buffer */
    const uint8_t *buf;
    size_t len;
    uint32_t version;
    uint64_t alignment;
    ftc_gguf_kv *kv;
    int n_kv;
    ftc_gguf_tensor *t;
    int n_t;
    size_t data_start;
    arena_block *arena;
};

static void *arena_alloc(ftc_gguf *g, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!g->arena || g->arena->cap - g->arena->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        arena_block *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = g->arena;
        b->used = 0;
        b->cap = cap;
        g->arena = b;
    }
    void *p = g->arena->data + g->arena->used;
    g->arena->used += n;
    return p;
}

void ftc_gguf_close(ftc_gguf *g) {
    if (!g) return;
    for (arena_block *b = g->arena, *nx; b; b = nx) { nx = b->next; free(b); }
    free(g->kv);
    free(g->t);
    ftc_unmap_file(&g->map);
    free(g->path);
    free(g);
}

/* ---- cursor ---- */
typedef struct {
    ftc_gguf *g;
    size_t pos;
    ftc_err *err;
} cur;

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static ftc_status need(cur *c, uint64_t n, const char *what, const char *field) {
    if (n > c->g->len - c->pos)
        return ftc_errf(c->err, FTC_E_INPUT, "%s: truncated at byte %zu: %s%s%s needs %llu bytes, %zu left", c->g->path,
                        c->pos, what, field ? " of " : "", field ? field : "", (unsigned long long)n,
                        c->g->len - c->pos);
    return FTC_OK;
}
static ftc_status rd(cur *c, int n, uint64_t *v, const char *what, const char *field) {
    ftc_status st = need(c, (uint64_t)n, what, field);
    if (st) return st;
    *v = le(c->g->buf + c->pos, n);
    c->pos += (size_t)n;
    return FTC_OK;
}
/* A string: u64 length + bytes, copied NUL-terminated into the arena. */
static ftc_status rd_str(cur *c, const char **s, uint64_t *slen, const char *what, const char *field) {
    size_t at = c->pos;
    uint64_t n;
    ftc_status st = rd(c, 8, &n, what, field);
    if (st) return st;
    if (n > c->g->len - c->pos)
        return ftc_errf(c->err, FTC_E_INPUT, "%s: %s%s%s at byte %zu: string length %llu runs past the end of the "
                        "file (%zu bytes left)", c->g->path, what, field ? " of " : "", field ? field : "", at,
                        (unsigned long long)n, c->g->len - c->pos);
    char *p = arena_alloc(c->g, (size_t)n + 1);
    if (!p) return ftc_errf(c->err, FTC_E_NOMEM, "out of memory");
    memcpy(p, c->g->buf + c->pos, (size_t)n);
    p[n] = 0;
    c->pos += (size_t)n;
    *s = p;
    if (slen) *slen = n;
    return FTC_OK;
}

static ftc_status rd_value(cur *c, uint32_t type, ftc_gguf_value *v, const char *key, int depth) {
    ftc_status st;
    uint64_t x;
    v->type = (ftc_gguf_vtype)type;
    switch (type) {
    case FTC_GGUF_U8: case FTC_GGUF_U16: case FTC_GGUF_U32: case FTC_GGUF_U64:
        if ((st = rd(c, scalar_size(type), &x, "value", key))) return st;
        v->u = x;
        return FTC_OK;
    case FTC_GGUF_I8: case FTC_GGUF_I16: case FTC_GGUF_I32: case FTC_GGUF_I64: {
        int n = scalar_size(type);
        if ((st = rd(c, n, &x, "value", key))) return st;
        if (n < 8 && (x >> (8 * n - 1)) & 1) x |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        v->i = (int64_t)x;
        return FTC_OK;
    }
    case FTC_GGUF_F32: {
        if ((st = rd(c, 4, &x, "value", key))) return st;
        uint32_t b = (uint32_t)x;
        float f;
        memcpy(&f, &b, 4);
        v->f = f;
        return FTC_OK;
    }
    case FTC_GGUF_F64:
        if ((st = rd(c, 8, &x, "value", key))) return st;
        memcpy(&v->f, &x, 8);
        return FTC_OK;
    case FTC_GGUF_BOOL: {
        size_t at = c->pos;
        if ((st = rd(c, 1, &x, "value", key))) return st;
        if (x > 1)
            return ftc_errf(c->err, FTC_E_INPUT, "%s: key '%s': bool at byte %zu is %llu, not 0 or 1", c->g->path, key,
                            at, (unsigned long long)x);
        v->b = x != 0;
        return FTC_OK;
    }
    case FTC_GGUF_STRING:
        return rd_str(c, &v->str.s, &v->str.len, "string value", key);
    case FTC_GGUF_ARRAY: {
        size_t at = c->pos;
        uint64_t et, n;
        if ((st = rd(c, 4, &et, "array element type", key)) || (st = rd(c, 8, &n, "array length", key))) return st;
        if (et > FTC_GGUF_F64)
            return ftc_errf(c->err, FTC_E_INPUT, "%s: key '%s': array at byte %zu has unknown element type %llu",
                            c->g->path, key, at, (unsigned long long)et);
        if (et == FTC_GGUF_ARRAY && depth + 1 >= MAX_NEST)
            return ftc_errf(c->err, FTC_E_INPUT, "%s: key '%s': arrays nested more than %d deep", c->g->path, key,
                            MAX_NEST);
        v->arr.elem = (ftc_gguf_vtype)et;
        v->arr.n = n;
        v->arr.raw = NULL;
        v->arr.items = NULL;
        int es = scalar_size((uint32_t)et);
        /* the smallest encoding of an element: its size, or 8 (a length) for strings, 12 for arrays */
        uint64_t min = es ? (uint64_t)es : et == FTC_GGUF_STRING ? 8 : 12;
        if (n > (c->g->len - c->pos) / min)
            return ftc_errf(c->err, FTC_E_INPUT, "%s: key '%s': array at byte %zu claims %llu elements of type %s: "
                            "runs past the end of the file (%zu bytes left)", c->g->path, key, at,
                            (unsigned long long)n, ftc_gguf_vtype_name((ftc_gguf_vtype)et), c->g->len - c->pos);
        if (es) {
            v->arr.raw = c->g->buf + c->pos;
            if (et == FTC_GGUF_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (v->arr.raw[i] > 1)
                        return ftc_errf(c->err, FTC_E_INPUT, "%s: key '%s': bool element %llu is %u, not 0 or 1",
                                        c->g->path, key, (unsigned long long)i, v->arr.raw[i]);
            c->pos += (size_t)(n * (uint64_t)es);
            return FTC_OK;
        }
        v->arr.items = arena_alloc(c->g, sizeof *v->arr.items * (size_t)(n ? n : 1));
        if (!v->arr.items) return ftc_errf(c->err, FTC_E_NOMEM, "out of memory");
        for (uint64_t i = 0; i < n; i++)
            if ((st = rd_value(c, (uint32_t)et, &v->arr.items[i], key, depth + 1))) return st;
        return FTC_OK;
    }
    default:
        return ftc_errf(c->err, FTC_E_INPUT, "%s: key '%s': unknown value type %u at byte %zu", c->g->path, key, type,
                        c->pos - 4);
    }
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
typedef struct { uint64_t begin, end; int idx; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static ftc_status parse(ftc_gguf *g, ftc_err *err) {
    cur c = {g, 0, err};
    ftc_status st;
    if (g->len == 0) return ftc_errf(err, FTC_E_INPUT, "%s: file is empty", g->path);
    if (g->len < 4 || memcmp(g->buf, GGUF_MAGIC, 4))
        return ftc_errf(err, FTC_E_INPUT, "%s: bad magic: not a GGUF file (the first 4 bytes must be \"GGUF\")",
                        g->path);
    c.pos = 4;
    uint64_t ver, nt, nkv;
    if ((st = rd(&c, 4, &ver, "the version", NULL))) return st;
    if (ver == 1)
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: GGUF version 1 (32-bit counts) is not supported: convert it "
                        "with a current llama.cpp (versions 2 and 3 are read)", g->path);
    if (ver != 2 && ver != 3)
        return ftc_errf(err, FTC_E_INPUT, "%s: bad version %llu (ftc reads GGUF versions 2 and 3)", g->path,
                        (unsigned long long)ver);
    g->version = (uint32_t)ver;
    if ((st = rd(&c, 8, &nt, "the tensor count", NULL)) || (st = rd(&c, 8, &nkv, "the metadata count", NULL)))
        return st;
    /* each entry takes at least 12 (kv: key length + type) or 24 (tensor: name length, n_dims, type, offset) bytes */
    if (nkv > (g->len - c.pos) / 12)
        return ftc_errf(err, FTC_E_INPUT, "%s: metadata count %llu overruns the file (%zu bytes after the header)",
                        g->path, (unsigned long long)nkv, g->len - c.pos);
    if (nt > (g->len - c.pos) / 24 || nt > INT32_MAX)
        return ftc_errf(err, FTC_E_INPUT, "%s: tensor count %llu overruns the file (%zu bytes after the header)",
                        g->path, (unsigned long long)nt, g->len - c.pos);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->t = calloc(nt ? nt : 1, sizeof *g->t);
    if (!g->kv || !g->t) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    g->alignment = DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < nkv; i++) {
        ftc_gguf_kv *kv = &g->kv[i];
        char what[48];
        snprintf(what, sizeof what, "key of metadata entry %llu", (unsigned long long)i);
        if ((st = rd_str(&c, &kv->key, NULL, what, NULL))) return st;
        uint64_t type;
        if ((st = rd(&c, 4, &type, "value type", kv->key))) return st;
        if (type > FTC_GGUF_F64)
            return ftc_errf(err, FTC_E_INPUT, "%s: key '%s': unknown value type %llu at byte %zu", g->path, kv->key,
                            (unsigned long long)type, c.pos - 4);
        if ((st = rd_value(&c, (uint32_t)type, &kv->v, kv->key, 0))) return st;
        g->n_kv++;
        if (!strcmp(kv->key, "general.alignment")) {
            if (kv->v.type != FTC_GGUF_U32)
                return ftc_errf(err, FTC_E_INPUT, "%s: key 'general.alignment' has type %s, must be u32", g->path,
                                ftc_gguf_vtype_name(kv->v.type));
            if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)))
                return ftc_errf(err, FTC_E_INPUT, "%s: key 'general.alignment' is %llu, not a power of two", g->path,
                                (unsigned long long)kv->v.u);
            g->alignment = kv->v.u;
        }
    }
    /* duplicate keys */
    if (g->n_kv > 1) {
        const char **names = malloc(sizeof *names * (size_t)g->n_kv);
        if (!names) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        for (int i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
        qsort(names, (size_t)g->n_kv, sizeof *names, cmp_name);
        for (int i = 1; i < g->n_kv && !st; i++)
            if (!strcmp(names[i], names[i - 1]))
                st = ftc_errf(err, FTC_E_INPUT, "%s: duplicate metadata key '%s'", g->path, names[i]);
        free(names);
        if (st) return st;
    }
    for (uint64_t i = 0; i < nt; i++) {
        ftc_gguf_tensor *t = &g->t[i];
        char what[48];
        snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)i);
        if ((st = rd_str(&c, &t->name, NULL, what, NULL))) return st;
        size_t at = c.pos;
        uint64_t nd, type, off;
        if ((st = rd(&c, 4, &nd, "n_dims", t->name))) return st;
        if (nd < 1 || nd > FTC_GGUF_MAX_DIMS)
            return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': %llu dimensions at byte %zu (1 to %d)", g->path,
                            t->name, (unsigned long long)nd, at, FTC_GGUF_MAX_DIMS);
        t->ndim = (int)nd;
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t ne;
            if ((st = rd(&c, 8, &ne, "dimension", t->name))) return st;
            if (ne > (uint64_t)INT64_MAX || (ne && (uint64_t)numel > ((uint64_t)INT64_MAX >> 4) / ne))
                return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': shape overflows (ne[%d] = %llu)", g->path, t->name,
                                d, (unsigned long long)ne);
            t->shape[t->ndim - 1 - d] = (int64_t)ne;
            numel *= (int64_t)ne;
        }
        t->numel = numel;
        if ((st = rd(&c, 4, &type, "type", t->name))) return st;
        int ti = type < 1000 ? type_index((int)type) : -1;
        if (ti < 0)
            return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': unknown ggml type %llu", g->path, t->name,
                            (unsigned long long)type);
        t->type = (int)type;
        int64_t ne0 = t->shape[t->ndim - 1];
        if (ne0 % TYPES[ti].block)
            return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': row length %lld is not a multiple of the %s block "
                            "size %lld", g->path, t->name, (long long)ne0, TYPES[ti].name, (long long)TYPES[ti].block);
        t->nbytes = (size_t)(numel / TYPES[ti].block * TYPES[ti].bytes);
        if ((st = rd(&c, 8, &off, "offset", t->name))) return st;
        if (off % g->alignment)
            return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %llu",
                            g->path, t->name, (unsigned long long)off, (unsigned long long)g->alignment);
        t->offset = off;
        g->n_t++;
    }
    g->data_start = c.pos;
    if (g->data_start % g->alignment) g->data_start += g->alignment - g->data_start % g->alignment;
    if (nt && g->data_start > g->len)
        return ftc_errf(err, FTC_E_INPUT, "%s: truncated: the tensor data section would start at byte %zu, past the "
                        "end of the file (%zu bytes)", g->path, g->data_start, g->len);
    uint64_t data_len = g->data_start <= g->len ? g->len - g->data_start : 0;
    /* duplicate tensor names */
    if (g->n_t > 1) {
        const char **names = malloc(sizeof *names * (size_t)g->n_t);
        if (!names) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        for (int i = 0; i < g->n_t; i++) names[i] = g->t[i].name;
        qsort(names, (size_t)g->n_t, sizeof *names, cmp_name);
        for (int i = 1; i < g->n_t && !st; i++)
            if (!strcmp(names[i], names[i - 1]))
                st = ftc_errf(err, FTC_E_INPUT, "%s: duplicate tensor name '%s'", g->path, names[i]);
        free(names);
        if (st) return st;
    }
    /* every tensor inside the data section, none overlapping another */
    span *sp = malloc(sizeof *sp * (size_t)(g->n_t ? g->n_t : 1));
    if (!sp) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < g->n_t && !st; i++) {
        ftc_gguf_tensor *t = &g->t[i];
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': data [%llu, %llu) runs past the end of the data section "
                          "(%llu bytes): truncated file or wrong size", g->path, t->name,
                          (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                          (unsigned long long)data_len);
        else t->data = g->buf + g->data_start + t->offset;
        sp[i] = (span){t->offset, t->offset + t->nbytes, i};
    }
    if (!st) {
        qsort(sp, (size_t)g->n_t, sizeof *sp, cmp_span);
        for (int i = 1; i < g->n_t && !st; i++)
            if (sp[i].begin < sp[i - 1].end && sp[i].end > sp[i].begin)
                st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' overlaps tensor '%s' (offset %llu, before %llu)",
                              g->path, g->t[sp[i].idx].name, g->t[sp[i - 1].idx].name, (unsigned long long)sp[i].begin,
                              (unsigned long long)sp[i - 1].end);
    }
    free(sp);
    return st;
}

static ftc_status open_common(const char *path, const uint8_t *buf, size_t len, bool map, ftc_gguf **out,
                              ftc_err *err) {
    *out = NULL;
    ftc_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    ftc_status st = FTC_OK;
    if (map && (st = ftc_map_file(path, &g->map, err))) { ftc_gguf_close(g); return st; }
    g->buf = map ? g->map.data : buf;
    g->len = map ? g->map.size : len;
    if ((st = parse(g, err))) { ftc_gguf_close(g); return st; }
    *out = g;
    return FTC_OK;
}
ftc_status ftc_gguf_open(const char *path, ftc_gguf **out, ftc_err *err) {
    return open_common(path, NULL, 0, true, out, err);
}
ftc_status ftc_gguf_parse_buffer(const uint8_t *buf, size_t len, const char *name, ftc_gguf **out, ftc_err *err) {
    return open_common(name, buf, len, false, out, err);
}

const char *ftc_gguf_path(const ftc_gguf *g) { return g->path; }
uint32_t ftc_gguf_version(const ftc_gguf *g) { return g->version; }
uint64_t ftc_gguf_alignment(const ftc_gguf *g) { return g->alignment; }
size_t ftc_gguf_file_size(const ftc_gguf *g) { return g->len; }
int ftc_gguf_kv_count(const ftc_gguf *g) { return g->n_kv; }
const ftc_gguf_kv *ftc_gguf_kv_at(const ftc_gguf *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL; }
const ftc_gguf_value *ftc_gguf_find(const ftc_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i].v;
    return NULL;
}
int ftc_gguf_tensor_count(const ftc_gguf *g) { return g->n_t; }
const ftc_gguf_tensor *ftc_gguf_tensor_at(const ftc_gguf *g, int i) { return i >= 0 && i < g->n_t ? &g->t[i] : NULL; }
const ftc_gguf_tensor *ftc_gguf_find_tensor(const ftc_gguf *g, const char *name) {
    for (int i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

/* ---- typed getters ---- */
static ftc_status absent(const ftc_gguf *g, const char *key, bool optional, ftc_err *err) {
    return optional ? FTC_OK : ftc_errf(err, FTC_E_INPUT, "%s: missing metadata key '%s'", g->path, key);
}
static ftc_status wrong(const ftc_gguf *g, const char *key, const ftc_gguf_value *v, const char *want, ftc_err *err) {
    return ftc_errf(err, FTC_E_INPUT, "%s: metadata key '%s' has type %s, expected %s", g->path, key,
                    ftc_gguf_vtype_name(v->type), want);
}
static bool is_unsigned(ftc_gguf_vtype t) {
    return t == FTC_GGUF_U8 || t == FTC_GGUF_U16 || t == FTC_GGUF_U32 || t == FTC_GGUF_U64;
}
static bool is_signed(ftc_gguf_vtype t) {
    return t == FTC_GGUF_I8 || t == FTC_GGUF_I16 || t == FTC_GGUF_I32 || t == FTC_GGUF_I64;
}

ftc_status ftc_gguf_get_int(const ftc_gguf *g, const char *key, bool optional, int64_t *out, ftc_err *err) {
    const ftc_gguf_value *v = ftc_gguf_find(g, key);
    if (!v) return absent(g, key, optional, err);
    if (is_unsigned(v->type)) {
        if (v->u > (uint64_t)INT64_MAX)
            return ftc_errf(err, FTC_E_INPUT, "%s: metadata key '%s' = %llu is too large", g->path, key,
                            (unsigned long long)v->u);
        *out = (int64_t)v->u;
    } else if (is_signed(v->type)) *out = v->i;
    else return wrong(g, key, v, "an integer", err);
    return FTC_OK;
}
ftc_status ftc_gguf_get_float(const ftc_gguf *g, const char *key, bool optional, double *out, ftc_err *err) {
    const ftc_gguf_value *v = ftc_gguf_find(g, key);
    if (!v) return absent(g, key, optional, err);
    if (v->type == FTC_GGUF_F32 || v->type == FTC_GGUF_F64) *out = v->f;
    else if (is_unsigned(v->type)) *out = (double)v->u;
    else if (is_signed(v->type)) *out = (double)v->i;
    else return wrong(g, key, v, "a number", err);
    return FTC_OK;
}
ftc_status ftc_gguf_get_bool(const ftc_gguf *g, const char *key, bool optional, bool *out, ftc_err *err) {
    const ftc_gguf_value *v = ftc_gguf_find(g, key);
    if (!v) return absent(g, key, optional, err);
    if (v->type != FTC_GGUF_BOOL) return wrong(g, key, v, "bool", err);
    *out = v->b;
    return FTC_OK;
}
ftc_status ftc_gguf_get_str(const ftc_gguf *g, const char *key, bool optional, const char **out, ftc_err *err) {
    const ftc_gguf_value *v = ftc_gguf_find(g, key);
    if (!v) return absent(g, key, optional, err);
    if (v->type != FTC_GGUF_STRING) return wrong(g, key, v, "string", err);
    *out = v->str.s;
    return FTC_OK;
}

int64_t ftc_gguf_arr_int(const ftc_gguf_value *a, uint64_t i) {
    if (a->type != FTC_GGUF_ARRAY || i >= a->arr.n || !a->arr.raw) return 0;
    int n = scalar_size(a->arr.elem);
    uint64_t x = le(a->arr.raw + i * (uint64_t)n, n);
    switch (a->arr.elem) {
    case FTC_GGUF_I8: case FTC_GGUF_I16: case FTC_GGUF_I32:
        if ((x >> (8 * n - 1)) & 1) x |= ~(uint64_t)0 << (8 * n);
        return (int64_t)x;
    case FTC_GGUF_F32: case FTC_GGUF_F64: { /* truncated toward zero, saturating; NaN reads 0 */
        double d = ftc_gguf_arr_float(a, i);
        return d != d ? 0 : d >= 0x1p63 ? INT64_MAX : d < -0x1p63 ? INT64_MIN : (int64_t)d;
    }
    default: return (int64_t)x;
    }
}
double ftc_gguf_arr_float(const ftc_gguf_value *a, uint64_t i) {
    if (a->type != FTC_GGUF_ARRAY || i >= a->arr.n || !a->arr.raw) return 0;
    if (a->arr.elem == FTC_GGUF_F32) {
        uint32_t b = (uint32_t)le(a->arr.raw + 4 * i, 4);
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    if (a->arr.elem == FTC_GGUF_F64) {
        uint64_t b = le(a->arr.raw + 8 * i, 8);
        double d;
        memcpy(&d, &b, 8);
        return d;
    }
    return (double)ftc_gguf_arr_int(a, i);
}

/* ---- dequantization: one block of `block` elements from `b` into y ---- */
static float h2f(const uint8_t *p) { return ftc_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void dq_q5_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    uint32_t qh = (uint32_t)le(b + 2, 4);
    for (int i = 0; i < 32; i++) {
        int q = ((b[6 + i % 16] >> (4 * (i / 16))) & 15) | (int)((qh >> i) & 1) << 4;
        y[i] = d * (float)(q - 16);
    }
}
static void dq_q5_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    uint32_t qh = (uint32_t)le(b + 4, 4);
    for (int i = 0; i < 32; i++) {
        int q = ((b[8 + i % 16] >> (4 * (i / 16))) & 15) | (int)((qh >> i) & 1) << 4;
        float a = d * (float)q;
        y[i] = a + m;
    }
}
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int i = 0; i < 256; i++) {
        int half = i / 128, s = (i / 32) % 4, l = i % 32, g = i / 16;
        float dl = d * (float)(sc[g] & 15), ml = dmin * (float)(sc[g] >> 4);
        float a = dl * (float)((qs[half * 32 + l] >> (2 * s)) & 3);
        y[i] = a - ml;
    }
}
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    float d = h2f(b + 108);
    float dl[16];
    for (int k = 0; k < 16; k++) {
        int lo = (k < 8 ? sc[k] : sc[k - 8] >> 4) & 15, hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
        dl[k] = d * (float)((int8_t)(lo | hi << 4) - 32);
    }
    for (int i = 0; i < 256; i++) {
        int half = i / 128, s = (i / 32) % 4, l = i % 32;
        int ql = (qs[half * 32 + l] >> (2 * s)) & 3, hb = (hm[l] >> (i / 32)) & 1;
        y[i] = dl[i / 16] * (float)(ql - ((hb ^ 1) << 2));
    }
}
static void dq_q5_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int g = 0; g < 8; g++) {
        int sc, m;
        ftc_q4k_scale_min(b + 4, g, &sc, &m);
        float dg = d * (float)sc, mg = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = ((qs[(g / 2) * 32 + l] >> (4 * (g % 2))) & 15) | ((qh[l] >> g) & 1) << 4;
            float a = dg * (float)q;
            y[g * 32 + l] = a - mg;
        }
    }
}
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int i = 0; i < 256; i++) {
        int half = i / 128, r = i % 128;
        int lo = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 15;
        int hi = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
        float dg = d * (float)sc[i / 16];
        y[i] = dg * (float)((int8_t)(lo | hi << 4) - 32);
    }
}

static ftc_status convert(const ftc_gguf *g, const ftc_gguf_tensor *t, const uint8_t *p, int64_t n, float *out,
                          ftc_err *err) {
    switch (t->type) {
    case FTC_GGML_F32: for (int64_t i = 0; i < n; i++) { uint32_t b = (uint32_t)le(p + 4 * i, 4); memcpy(&out[i], &b, 4); } return FTC_OK;
    case FTC_GGML_F16: for (int64_t i = 0; i < n; i++) out[i] = h2f(p + 2 * i); return FTC_OK;
    case FTC_GGML_BF16: for (int64_t i = 0; i < n; i++) out[i] = ftc_bf16_to_f32((uint16_t)le(p + 2 * i, 2)); return FTC_OK;
    case FTC_GGML_F64: for (int64_t i = 0; i < n; i++) { uint64_t b = le(p + 8 * i, 8); double d; memcpy(&d, &b, 8); out[i] = (float)d; } return FTC_OK;
    default: break;
    }
    int64_t block = 1, bytes = 1;
    ftc_ggml_type_size(t->type, &block, &bytes);
    if (ftc_quant_supported(t->type)) { /* the layouts of include/ftc/quant.h */
        ftc_dequantize_row(t->type, p, out, n);
        return FTC_OK;
    }
    void (*fn)(const uint8_t *, float *) = NULL;
    switch (t->type) {
    case FTC_GGML_Q5_0: fn = dq_q5_0; break;
    case FTC_GGML_Q5_1: fn = dq_q5_1; break;
    case FTC_GGML_Q2_K: fn = dq_q2_k; break;
    case FTC_GGML_Q3_K: fn = dq_q3_k; break;
    case FTC_GGML_Q5_K: fn = dq_q5_k; break;
    case FTC_GGML_Q6_K: fn = dq_q6_k; break;
    default:
        return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: tensor '%s': type %s cannot be dequantized yet (ftc converts F32, "
                        "F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", g->path,
                        t->name, ftc_ggml_type_name(t->type) ? ftc_ggml_type_name(t->type) : "?");
    }
    for (int64_t k = 0; k < n / block; k++) fn(p + k * bytes, out + k * block);
    return FTC_OK;
}

ftc_status ftc_gguf_to_f32(const ftc_gguf *g, const ftc_gguf_tensor *t, float *out, ftc_err *err) {
    return convert(g, t, t->data, t->numel, out, err);
}

ftc_status ftc_gguf_rows_to_f32(const ftc_gguf *g, const ftc_gguf_tensor *t, int64_t row0, int64_t nrows, float *out,
                                ftc_err *err) {
    int64_t ne0 = t->shape[t->ndim - 1], rows = ne0 ? t->numel / ne0 : 0, block = 1, bytes = 1;
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)", g->path,
                        t->name, (long long)row0, (long long)(row0 + nrows), (long long)rows);
    ftc_ggml_type_size(t->type, &block, &bytes);
    size_t row_bytes = (size_t)(ne0 / block * bytes);
    return convert(g, t, t->data + (size_t)row0 * row_bytes, nrows * ne0, out, err);
}

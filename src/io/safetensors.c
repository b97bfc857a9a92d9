/* safetensors reader (mmap + validation) and writer (atomic). See docs/safetensors.md. */
#include "ftc/safetensors.h"
#include "base/base_internal.h"
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LIMIT (100u << 20) /* the reference implementation refuses headers over 100 MB */

static const struct { const char *name; ftc_dtype d; size_t size; } DTYPES[] = {
    {"F32", FTC_F32, 4}, {"F16", FTC_F16, 2}, {"BF16", FTC_BF16, 2}, {"I64", FTC_I64, 8}, {"I32", FTC_I32, 4},
    {"I8", FTC_I8, 1},   {"U8", FTC_U8, 1},   {"BOOL", FTC_BOOL, 1}, {"F64", FTC_F64, 8},
};
#define N_DTYPES (sizeof DTYPES / sizeof *DTYPES)
#define DTYPE_LIST "F32, F16, BF16, F64, I64, I32, I8, U8, BOOL"

const char *ftc_dtype_name(ftc_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].d == d) return DTYPES[i].name;
    return "?";
}
size_t ftc_dtype_size(ftc_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].d == d) return DTYPES[i].size;
    return 0;
}

/* ---- half-precision conversions ---- */
float ftc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ftc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero in f16 */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | half);
}

float ftc_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ftc_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);                                          /* round to nearest even */
    return (uint16_t)(x >> 16);
}

/* ---- reader ---- */
typedef struct {
    char *path;
    ftc_mapped map; /* empty when parsing a caller's buffer */
    json_t *metadata;
} st_file;

struct ftc_st_set {
    st_file *files;
    int n_files;
    ftc_tensor_view *t;
    int n, cap;
    size_t bytes;
};

static ftc_status set_add_tensor(ftc_st_set *s, ftc_tensor_view *tv, ftc_err *err) {
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 64;
        ftc_tensor_view *nt = realloc(s->t, sizeof *nt * nc);
        if (!nt) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        s->t = nt;
        s->cap = nc;
    }
    s->t[s->n++] = *tv;
    return FTC_OK;
}

typedef struct { int64_t begin, end; int idx; } range;
static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Parses one file image; tensors are appended to s with data pointing into buf. */
static ftc_status parse_image(ftc_st_set *s, const uint8_t *buf, size_t len, const char *name, json_t **meta_out,
                              ftc_err *err) {
    if (len == 0) return ftc_errf(err, FTC_E_INPUT, "%s: file is empty", name);
    if (len < 8)
        return ftc_errf(err, FTC_E_INPUT, "%s: truncated: %zu bytes, need 8 for the header length", name, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen == 0) return ftc_errf(err, FTC_E_INPUT, "%s: header length is 0: no JSON header", name);
    if (hlen > HEADER_LIMIT)
        return ftc_errf(err, FTC_E_INPUT, "%s: header length %llu is absurd (limit %u bytes); not a safetensors file?",
                        name, (unsigned long long)hlen, HEADER_LIMIT);
    if (hlen > len - 8)
        return ftc_errf(err, FTC_E_INPUT, "%s: header length %llu is larger than the file (%zu bytes): truncated?", name,
                        (unsigned long long)hlen, len);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root && json_error_code(&jerr) == json_error_out_of_memory)
        return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory while parsing the header", name);
    if (!root) {
        if (strstr(jerr.text, "duplicate"))
            return ftc_errf(err, FTC_E_INPUT, "%s: duplicate tensor name in header (%s)", name, jerr.text);
        return ftc_errf(err, FTC_E_INPUT, "%s: header is not valid JSON: %s (header line %d, column %d)", name,
                        jerr.text, jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return ftc_errf(err, FTC_E_INPUT, "%s: header is not a JSON object", name);
    }
    const uint8_t *data = buf + 8 + hlen;
    int64_t data_len = (int64_t)(len - 8 - hlen);
    int first = s->n;
    ftc_status st = FTC_OK;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) { st = ftc_errf(err, FTC_E_INPUT, "%s: __metadata__ is not an object", name); break; }
            json_object_foreach(val, mk, mv) if (!json_is_string(mv)) {
                st = ftc_errf(err, FTC_E_INPUT, "%s: __metadata__ value '%s' is not a string", name, mk);
                break;
            }
            if (st) break;
            if (meta_out) *meta_out = json_incref(val);
            continue;
        }
        ftc_tensor_view tv = {0};
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': entry needs \"dtype\" (string), \"shape\" (array) and "
                          "\"data_offsets\" ([begin, end])", name, key);
            break;
        }
        size_t di;
        for (di = 0; di < N_DTYPES; di++)
            if (!strcmp(json_string_value(jd), DTYPES[di].name)) break;
        if (di == N_DTYPES) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': unknown dtype '%.32s' (ftc reads " DTYPE_LIST ")", name,
                          key, json_string_value(jd));
            break;
        }
        tv.dtype = DTYPES[di].d;
        if (json_array_size(js) > FTC_MAX_DIMS) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': %zu dimensions (at most %d)", name, key,
                          json_array_size(js), FTC_MAX_DIMS);
            break;
        }
        tv.ndim = (int)json_array_size(js);
        int64_t numel = 1;
        for (int d = 0; d < tv.ndim; d++) {
            json_t *x = json_array_get(js, d);
            if (!json_is_integer(x) || json_integer_value(x) < 0) {
                st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': shape[%d] is not a non-negative integer", name, key, d);
                break;
            }
            tv.shape[d] = json_integer_value(x);
            if (tv.shape[d] > 0 && numel > INT64_MAX / 16 / tv.shape[d]) {
                st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': shape overflows", name, key);
                break;
            }
            numel *= tv.shape[d];
        }
        if (st) break;
        tv.numel = numel;
        json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
        if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
            json_integer_value(je) < json_integer_value(jb)) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': data_offsets must be integers 0 <= begin <= end", name, key);
            break;
        }
        int64_t b = json_integer_value(jb), e = json_integer_value(je);
        int64_t need = numel * (int64_t)DTYPES[di].size;
        if (e - b != need) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': shape and dtype %s need %lld bytes but data_offsets "
                          "[%lld, %lld] span %lld", name, key, DTYPES[di].name, (long long)need, (long long)b,
                          (long long)e, (long long)(e - b));
            break;
        }
        if (e > data_len) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': data_offsets [%lld, %lld] out of range: the data "
                          "section has %lld bytes (truncated file?)", name, key, (long long)b, (long long)e,
                          (long long)data_len);
            break;
        }
        tv.data = data + b;
        tv.nbytes = (size_t)need;
        tv.file = name;
        tv.name = strdup(key);
        if (!tv.name) { st = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
        if (ftc_st_find(s, key)) {
            free(tv.name);
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' appears in more than one shard", name, key);
            break;
        }
        if ((st = set_add_tensor(s, &tv, err))) { free(tv.name); break; }
    }
    json_decref(root);
    if (st) return st;
    /* The tensors must tile the data section: sorted by offset, no gap, no overlap, nothing after. */
    int n = s->n - first;
    range *r = malloc(sizeof *r * (n ? n : 1));
    if (!r) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const ftc_tensor_view *t = &s->t[first + i];
        r[i].begin = (const uint8_t *)t->data - data;
        r[i].end = r[i].begin + (int64_t)t->nbytes;
        r[i].idx = first + i;
    }
    qsort(r, n, sizeof *r, cmp_range);
    int64_t pos = 0;
    for (int i = 0; i < n && !st; i++) {
        if (r[i].begin > pos)
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': gap of %lld bytes before it (data_offsets begin %lld, "
                          "previous tensor ends at %lld)", name, s->t[r[i].idx].name, (long long)(r[i].begin - pos),
                          (long long)r[i].begin, (long long)pos);
        else if (r[i].begin < pos)
            st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' overlaps tensor '%s' (begins at %lld, before %lld)", name,
                          s->t[r[i].idx].name, s->t[r[i - 1].idx].name, (long long)r[i].begin, (long long)pos);
        pos = r[i].end;
    }
    free(r);
    if (!st && pos != data_len)
        st = ftc_errf(err, FTC_E_INPUT, "%s: %lld bytes after the last tensor's data (data section %lld bytes)", name,
                      (long long)(data_len - pos), (long long)data_len);
    return st;
}

static ftc_status add_file(ftc_st_set *s, const char *path, const uint8_t *buf, size_t len, bool map, ftc_err *err) {
    st_file *nf = realloc(s->files, sizeof *nf * (s->n_files + 1));
    if (!nf) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    s->files = nf;
    st_file *f = &s->files[s->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    s->n_files++;
    if (map) {
        ftc_status st = ftc_map_file(path, &f->map, err);
        if (st) return st;
        buf = f->map.data;
        len = f->map.size;
    }
    s->bytes += len;
    return parse_image(s, buf, len, f->path, &f->metadata, err);
}

void ftc_st_close(ftc_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->t[i].name);
    for (int i = 0; i < s->n_files; i++) {
        ftc_unmap_file(&s->files[i].map);
        json_decref(s->files[i].metadata);
        free(s->files[i].path);
    }
    free(s->files);
    free(s->t);
    free(s);
}

ftc_status ftc_st_parse_buffer(const uint8_t *buf, size_t len, const char *name, ftc_st_set **out, ftc_err *err) {
    *out = NULL;
    ftc_st_set *s = calloc(1, sizeof *s);
    if (!s) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status st = add_file(s, name, buf, len, false, err);
    if (st) { ftc_st_close(s); return st; }
    *out = s;
    return FTC_OK;
}

static ftc_status open_sharded(ftc_st_set *s, const char *dir, const char *index, ftc_err *err) {
    json_error_t jerr;
    json_t *root = ftc_json_load_file(index, 0, &jerr);
    if (!root) return ftc_errf(err, FTC_E_INPUT, "%s: line %d column %d: %s", index, jerr.line, jerr.column, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    ftc_status st = FTC_OK;
    if (!json_is_object(wm)) st = ftc_errf(err, FTC_E_INPUT, "%s: missing object \"weight_map\"", index);
    const char *key;
    json_t *val;
    if (!st) json_object_foreach(wm, key, val) {
        if (!json_is_string(val) || strchr(json_string_value(val), '/')) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: weight_map[\"%s\"] must be a file name in the same directory", index, key);
            break;
        }
        char path[4096];
        if (!ftc_path_join(path, sizeof path, dir, json_string_value(val))) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: path too long", index);
            break;
        }
        bool seen = false;
        for (int i = 0; i < s->n_files; i++) seen |= !strcmp(s->files[i].path, path);
        if (!seen && (st = add_file(s, path, NULL, 0, true, err))) break;
    }
    /* every name the index promises must be in its shard */
    if (!st) json_object_foreach(wm, key, val) {
        const ftc_tensor_view *t = ftc_st_find(s, key);
        char want[4096];
        ftc_path_join(want, sizeof want, dir, json_string_value(val));
        if (!t) { st = ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' listed in weight_map is missing from %s", index, key,
                                json_string_value(val)); break; }
        if (strcmp(t->file, want)) {
            st = ftc_errf(err, FTC_E_INPUT, "%s: weight_map puts tensor '%s' in %s but it is in %s", index, key,
                          json_string_value(val), t->file);
            break;
        }
    }
    json_decref(root);
    return st;
}

ftc_status ftc_st_open(const char *path, ftc_st_set **out, ftc_err *err) {
    *out = NULL;
    ftc_st_set *s = calloc(1, sizeof *s);
    if (!s) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status st;
    if (ftc_is_dir(path)) {
        char single[4096], index[4096];
        ftc_path_join(single, sizeof single, path, "model.safetensors");
        ftc_path_join(index, sizeof index, path, "model.safetensors.index.json");
        if (ftc_file_exists(single)) st = add_file(s, single, NULL, 0, true, err);
        else if (ftc_file_exists(index)) st = open_sharded(s, path, index, err);
        else st = ftc_errf(err, FTC_E_INPUT, "%s: no model.safetensors or model.safetensors.index.json", path);
    } else {
        st = add_file(s, path, NULL, 0, true, err);
    }
    if (st) { ftc_st_close(s); return st; }
    *out = s;
    return FTC_OK;
}

int ftc_st_count(const ftc_st_set *s) { return s->n; }
const ftc_tensor_view *ftc_st_get(const ftc_st_set *s, int i) { return i >= 0 && i < s->n ? &s->t[i] : NULL; }
const ftc_tensor_view *ftc_st_find(const ftc_st_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}
size_t ftc_st_bytes_on_disk(const ftc_st_set *s) { return s->bytes; }
int ftc_st_file_count(const ftc_st_set *s) { return s->n_files; }
const char *ftc_st_file_path(const ftc_st_set *s, int i) { return i >= 0 && i < s->n_files ? s->files[i].path : NULL; }
const char *ftc_st_metadata(const ftc_st_set *s, const char *key) {
    for (int i = 0; i < s->n_files; i++) {
        json_t *v = s->files[i].metadata ? json_object_get(s->files[i].metadata, key) : NULL;
        if (json_is_string(v)) return json_string_value(v);
    }
    return NULL;
}

ftc_status ftc_tensor_to_f32(const ftc_tensor_view *t, float *out, ftc_err *err) {
    return ftc_tensor_to_f32_range(t, 0, t->numel, 1, out, err);
}

ftc_status ftc_tensor_to_f32_range(const ftc_tensor_view *t, int64_t first, int64_t n, int64_t stride, float *out,
                                   ftc_err *err) {
    if (n <= 0) return FTC_OK;
    const uint8_t *p = t->data;
    uint16_t h;
    double d;
    switch (t->dtype) { /* one loop per dtype: the loaders convert every weight through here */
    case FTC_F32: for (int64_t k = 0, i = first; k < n; k++, i += stride) memcpy(&out[k], p + 4 * i, 4); break;
    case FTC_F16:
        for (int64_t k = 0, i = first; k < n; k++, i += stride) memcpy(&h, p + 2 * i, 2), out[k] = ftc_f16_to_f32(h);
        break;
    case FTC_BF16:
        for (int64_t k = 0, i = first; k < n; k++, i += stride) memcpy(&h, p + 2 * i, 2), out[k] = ftc_bf16_to_f32(h);
        break;
    case FTC_F64: for (int64_t k = 0, i = first; k < n; k++, i += stride) memcpy(&d, p + 8 * i, 8), out[k] = (float)d; break;
    default:
        return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' has dtype %s, expected a float type", t->file, t->name,
                        ftc_dtype_name(t->dtype));
    }
    return FTC_OK;
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

ftc_status ftc_st_check_shape(const ftc_st_set *s, const char *name, int ndim, const int64_t *shape, ftc_err *err) {
    const ftc_tensor_view *t = ftc_st_find(s, name);
    if (!t)
        return ftc_errf(err, FTC_E_INPUT, "%s: missing tensor '%s' that the config requires",
                        s->n_files ? s->files[0].path : "checkpoint", name);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char have[128], want[128];
        fmt_shape(have, sizeof have, t->ndim, t->shape);
        fmt_shape(want, sizeof want, ndim, shape);
        return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s' has shape %s but the config needs %s", t->file, name, have, want);
    }
    return FTC_OK;
}

ftc_status ftc_st_load_f32(const ftc_st_set *s, const char *name, int ndim, const int64_t *shape, float *out,
                           ftc_err *err) {
    ftc_status st = ftc_st_check_shape(s, name, ndim, shape, err);
    if (st) return st;
    const ftc_tensor_view *t = ftc_st_find(s, name);
    return ftc_tensor_to_f32(t, out, err);
}

/* ---- writer ---- */
typedef struct {
    char *name;
    ftc_dtype dtype;
    int ndim;
    int64_t shape[FTC_MAX_DIMS];
    const void *data;
    void *owned;
    size_t nbytes;
} wentry;

struct ftc_st_writer {
    wentry *e;
    int n, cap;
    json_t *meta;
};

ftc_st_writer *ftc_st_writer_new(void) { return calloc(1, sizeof(ftc_st_writer)); }

void ftc_st_writer_free(ftc_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].owned); }
    free(w->e);
    json_decref(w->meta);
    free(w);
}

/* Well-formed UTF-8 (shortest forms, no surrogates, at most U+10FFFF), as jansson's json_string requires. */
static bool utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
        if (n == 9 || (n == 1 && c < 0xc2)) return false;
        unsigned cp = n ? c & (0x3f >> n) : c;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        p += n + 1;
    }
    return true;
}

ftc_status ftc_st_writer_metadata(ftc_st_writer *w, const char *key, const char *value, ftc_err *err) {
    if (!w->meta && !(w->meta = json_object())) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (!utf8_valid(value)) return ftc_errf(err, FTC_E_INPUT, "metadata '%s': not valid UTF-8", key);
    json_t *v = json_string(value);
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (json_object_set_new(w->meta, key, v)) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    return FTC_OK;
}

ftc_status ftc_st_writer_add(ftc_st_writer *w, const char *name, ftc_dtype dtype, int ndim, const int64_t *shape,
                             const void *data, ftc_err *err) {
    if (ndim < 0 || ndim > FTC_MAX_DIMS) return ftc_errf(err, FTC_E_INPUT, "tensor '%s': bad ndim %d", name, ndim);
    if (!strcmp(name, "__metadata__")) return ftc_errf(err, FTC_E_INPUT, "tensor name '__metadata__' is reserved");
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) return ftc_errf(err, FTC_E_INPUT, "duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 64;
        wentry *ne = realloc(w->e, sizeof *ne * nc);
        if (!ne) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        w->e = ne;
        w->cap = nc;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && numel > (size_t)INT64_MAX / 16 / (size_t)shape[i])) {
            free(e->name);
            return ftc_errf(err, FTC_E_INPUT, "tensor '%s': bad shape[%d] = %lld", name, i, (long long)shape[i]);
        }
        e->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    e->nbytes = numel * ftc_dtype_size(dtype);
    if (ftc_dtype_size(dtype) == 0) {
        free(e->name);
        return ftc_errf(err, FTC_E_INPUT, "tensor '%s': unknown dtype %d", name, (int)dtype);
    }
    if (!data && e->nbytes) {
        free(e->name);
        return ftc_errf(err, FTC_E_INPUT, "tensor '%s': no data for %zu bytes", name, e->nbytes);
    }
    e->data = data;
    w->n++;
    return FTC_OK;
}

ftc_status ftc_st_writer_add_f32_as(ftc_st_writer *w, const char *name, ftc_dtype dtype, int ndim,
                                    const int64_t *shape, const float *data, ftc_err *err) {
    if (dtype != FTC_F32 && dtype != FTC_F16 && dtype != FTC_BF16)
        return ftc_errf(err, FTC_E_INPUT, "tensor '%s': cannot write f32 data as %s", name, ftc_dtype_name(dtype));
    ftc_status st = ftc_st_writer_add(w, name, dtype, ndim, shape, data, err);
    if (st || dtype == FTC_F32) return st;
    wentry *e = &w->e[w->n - 1];
    size_t numel = e->nbytes / 2;
    uint16_t *conv = malloc(e->nbytes ? e->nbytes : 1);
    if (!conv) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < numel; i++) conv[i] = dtype == FTC_F16 ? ftc_f32_to_f16(data[i]) : ftc_f32_to_bf16(data[i]);
    e->owned = conv;
    e->data = conv;
    return FTC_OK;
}

ftc_status ftc_st_writer_write(ftc_st_writer *w, const char *path, ftc_err *err) {
    json_t *root = json_object();
    if (!root) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (w->meta && json_object_set(root, "__metadata__", w->meta)) {
        json_decref(root);
        return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path);
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        wentry *e = &w->e[i];
        json_t *shape = json_array();
        bool ok = shape != NULL;
        for (int d = 0; ok && d < e->ndim; d++) ok = !json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *t = ok ? json_pack("{s:s, s:o, s:[I,I]}", "dtype", ftc_dtype_name(e->dtype), "shape", shape,
                                   "data_offsets", (json_int_t)off, (json_int_t)(off + e->nbytes))
                       : (json_decref(shape), NULL);
        if (!t || json_object_set_new(root, e->name, t)) {
            json_decref(root);
            if (!utf8_valid(e->name)) return ftc_errf(err, FTC_E_INPUT, "%s: tensor '%s': cannot encode header entry", path, e->name);
            return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path);
        }
        off += e->nbytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7; /* pad with spaces so data starts 8-aligned */
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    ftc_atomic_file af;
    ftc_status st = ftc_atomic_open(&af, path, err);
    if (st) { free(hdr); return st; }
    bool ok = fwrite(len8, 1, 8, af.f) == 8 && fwrite(hdr, 1, hl, af.f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', af.f) != EOF;
    free(hdr);
    for (int i = 0; ok && i < w->n; i++)
        ok = w->e[i].nbytes == 0 || fwrite(w->e[i].data, 1, w->e[i].nbytes, af.f) == w->e[i].nbytes;
    if (!ok) {
        int e = errno;
        ftc_atomic_abort(&af);
        return ftc_errf(err, FTC_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return ftc_atomic_commit(&af, err);
}

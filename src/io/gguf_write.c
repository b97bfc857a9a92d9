/* GGUF v3 writer: metadata in insertion order, tensors aligned to general.alignment (32), written atomically
 * (temp file, fsync, rename). The layout is the one src/io/gguf.c reads (docs/gguf.md). */
#include "ftc/gguf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32

typedef struct {
    char *name;
    int type, ndim;
    int64_t shape[FTC_GGUF_MAX_DIMS];
    void *data;
    size_t nbytes;
} wtensor;

struct ftc_gguf_writer {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    int n_t, cap_t;
    bool oom;
};

ftc_gguf_writer *ftc_gguf_writer_new(void) { return calloc(1, sizeof(ftc_gguf_writer)); }

void ftc_gguf_writer_free(ftc_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name), free(w->t[i].data);
    free(w->keys), free(w->t), free(w->kv), free(w);
}

static void put(ftc_gguf_writer *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *nb = realloc(w->kv, cap);
        if (!nb) { w->oom = true; return; }
        w->kv = nb, w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}
static void put_u32(ftc_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(ftc_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(ftc_gguf_writer *w, const char *s, size_t n) { put_u64(w, n), put(w, s, n); }

static ftc_status begin_key(ftc_gguf_writer *w, const char *key, ftc_gguf_vtype type, ftc_err *err) {
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return ftc_errf(err, FTC_E_INTERNAL, "GGUF writer: duplicate key '%s'", key);
    char **nk = realloc(w->keys, sizeof *nk * (size_t)(w->n_kv + 1));
    char *k = nk ? strdup(key) : NULL;
    if (nk) w->keys = nk;
    if (!k) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    w->keys[w->n_kv++] = k;
    put_str(w, key, strlen(key));
    put_u32(w, (uint32_t)type);
    return FTC_OK;
}
static ftc_status end_key(ftc_gguf_writer *w, ftc_err *err) {
    return w->oom ? ftc_errf(err, FTC_E_NOMEM, "out of memory building GGUF metadata") : FTC_OK;
}

ftc_status ftc_gguf_writer_set_str(ftc_gguf_writer *w, const char *key, const char *v, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_STRING, err);
    if (!s) put_str(w, v, strlen(v));
    return s ? s : end_key(w, err);
}
ftc_status ftc_gguf_writer_set_u32(ftc_gguf_writer *w, const char *key, uint32_t v, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_U32, err);
    if (!s) put_u32(w, v);
    return s ? s : end_key(w, err);
}
ftc_status ftc_gguf_writer_set_f32(ftc_gguf_writer *w, const char *key, float v, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_F32, err);
    if (!s) put(w, &v, 4);
    return s ? s : end_key(w, err);
}
ftc_status ftc_gguf_writer_set_bool(ftc_gguf_writer *w, const char *key, bool v, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_BOOL, err);
    uint8_t b = v;
    if (!s) put(w, &b, 1);
    return s ? s : end_key(w, err);
}
ftc_status ftc_gguf_writer_set_strs(ftc_gguf_writer *w, const char *key, const char *const *v, uint64_t n, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_ARRAY, err);
    if (s) return s;
    put_u32(w, FTC_GGUF_STRING), put_u64(w, n);
    for (uint64_t i = 0; i < n; i++) put_str(w, v[i], strlen(v[i]));
    return end_key(w, err);
}
ftc_status ftc_gguf_writer_set_i32s(ftc_gguf_writer *w, const char *key, const int32_t *v, uint64_t n, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_ARRAY, err);
    if (s) return s;
    put_u32(w, FTC_GGUF_I32), put_u64(w, n), put(w, v, 4 * n);
    return end_key(w, err);
}
ftc_status ftc_gguf_writer_set_f32s(ftc_gguf_writer *w, const char *key, const float *v, uint64_t n, ftc_err *err) {
    ftc_status s = begin_key(w, key, FTC_GGUF_ARRAY, err);
    if (s) return s;
    put_u32(w, FTC_GGUF_F32), put_u64(w, n), put(w, v, 4 * n);
    return end_key(w, err);
}

ftc_status ftc_gguf_writer_add_tensor(ftc_gguf_writer *w, const char *name, int type, int ndim, const int64_t *shape,
                                      void *data, ftc_err *err) {
    int64_t block, bytes, numel = 1;
    if (ndim < 1 || ndim > FTC_GGUF_MAX_DIMS || !ftc_ggml_type_size(type, &block, &bytes) ||
        shape[ndim - 1] % block) {
        free(data);
        return ftc_errf(err, FTC_E_INTERNAL, "GGUF writer: tensor '%s': bad type %d or shape", name, type);
    }
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) {
            free(data);
            return ftc_errf(err, FTC_E_INTERNAL, "GGUF writer: duplicate tensor '%s'", name);
        }
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, sizeof *nt * (size_t)cap);
        if (!nt) { free(data); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
        w->t = nt, w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) { free(data); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    t->type = type, t->ndim = ndim, t->data = data, t->nbytes = (size_t)(numel / block * bytes);
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    w->n_t++;
    return FTC_OK;
}

static size_t pad_to(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

ftc_status ftc_gguf_writer_write(ftc_gguf_writer *w, const char *path, ftc_err *err) {
    if (w->oom) return ftc_errf(err, FTC_E_NOMEM, "out of memory building GGUF metadata");
    ftc_gguf_writer hdr = {0};
    put(&hdr, "GGUF", 4), put_u32(&hdr, 3), put_u64(&hdr, (uint64_t)w->n_t), put_u64(&hdr, w->n_kv);
    put(&hdr, w->kv, w->kv_len);
    size_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&hdr, t->name, strlen(t->name));
        put_u32(&hdr, (uint32_t)t->ndim);
        for (int d = t->ndim - 1; d >= 0; d--) put_u64(&hdr, (uint64_t)t->shape[d]); /* ne[0] = the last dimension */
        put_u32(&hdr, (uint32_t)t->type);
        put_u64(&hdr, off);
        off = pad_to(off + t->nbytes);
    }
    static const uint8_t zeros[ALIGN];
    put(&hdr, zeros, pad_to(hdr.kv_len) - hdr.kv_len);
    if (hdr.oom) { free(hdr.kv); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_atomic_file af;
    ftc_status s = ftc_atomic_open(&af, path, err);
    if (s) { free(hdr.kv); return s; }
    bool ok = fwrite(hdr.kv, 1, hdr.kv_len, af.f) == hdr.kv_len;
    free(hdr.kv);
    for (int i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        ok = fwrite(t->data, 1, t->nbytes, af.f) == t->nbytes;
        size_t pad = pad_to(t->nbytes) - t->nbytes;
        if (ok && pad) ok = fwrite(zeros, 1, pad, af.f) == pad;
    }
    if (!ok) {
        ftc_atomic_abort(&af);
        return ftc_errf(err, FTC_E_IO, "%s: write failed (disk full?)", path);
    }
    return ftc_atomic_commit(&af, err);
}

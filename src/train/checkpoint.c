/* Checkpoints: the trainable parameters by name, optionally the AdamW moments, and a JSON state.
 * Layout: "FTCCKPT1" | u64 little-endian header length | JSON header | f32 data.
 *   header: {"state": {...}, "tensors": [{"name", "kind": "param"|"m"|"v"|"avg", "numel", "offset"}]}
 * ("avg": the optimizer's weight average, ftc_optim_average_*, when it has one)
 * (offset in floats from the start of the data). Written with ftc_atomic_open/commit, so a kill
 * at any point leaves the previous checkpoint whole. */
#include "ftc/train.h"
#include "ftc/base.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = {'F', 'T', 'C', 'C', 'K', 'P', 'T', '1'};

typedef struct {
    const char *name;
    const char *kind;
    const float *data;
    int64_t numel;
} entry;

ftc_status ftc_checkpoint_save(const char *path, ftc_model *m, const ftc_optimizer *o, const json_t *state,
                               ftc_err *err) {
    int np = ftc_model_n_params(m), n = 0;
    entry *e = calloc((size_t)(np * 4 + 1), sizeof *e);
    json_t *hdr = json_object(), *tensors = json_array();
    if (!e || !hdr || !tensors) {
        free(e); json_decref(hdr); json_decref(tensors);
        return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path);
    }
    int64_t off = 0;
    for (int i = 0; i < np; i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!p->trainable) continue;
        e[n++] = (entry){p->name, "param", p->data, p->numel};
    }
    if (o)
        for (int i = 0; i < o->n; i++) {
            e[n++] = (entry){o->params[i]->name, "m", o->moments + o->offset[i], o->params[i]->numel};
            e[n++] = (entry){o->params[i]->name, "v", o->moments + o->n_values + o->offset[i], o->params[i]->numel};
            if (o->avg) e[n++] = (entry){o->params[i]->name, "avg", o->avg + o->offset[i], o->params[i]->numel};
        }
    /* every header entry is checked: a dropped one would write a checkpoint that misses a tensor */
    bool built = true;
    for (int i = 0; built && i < n; i++) {
        json_t *t = json_pack("{s:s, s:s, s:I, s:I}", "name", e[i].name, "kind", e[i].kind, "numel",
                              (json_int_t)e[i].numel, "offset", (json_int_t)off);
        built = t && !json_array_append_new(tensors, t);
        off += e[i].numel;
    }
    if (!built) json_decref(tensors);
    else built = !json_object_set_new(hdr, "tensors", tensors); /* jansson's *_new take the reference even on failure */
    if (built) built = !json_object_set_new(hdr, "state", state ? json_incref((json_t *)state) : json_object());
    char *text = built ? json_dumps(hdr, JSON_COMPACT) : NULL;
    json_decref(hdr);
    if (!text) { free(e); return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path); }
    uint64_t hlen = strlen(text);
    ftc_atomic_file af;
    ftc_status s = ftc_atomic_open(&af, path, err);
    if (s == FTC_OK) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hlen >> (8 * i));
        bool ok = fwrite(MAGIC, 1, 8, af.f) == 8 && fwrite(len8, 1, 8, af.f) == 8 && fwrite(text, 1, hlen, af.f) == hlen;
        for (int i = 0; ok && i < n; i++) ok = fwrite(e[i].data, sizeof(float), (size_t)e[i].numel, af.f) == (size_t)e[i].numel;
        if (!ok) {
            int werr = errno;
            ftc_atomic_abort(&af);
            s = ftc_errf(err, FTC_E_IO, "%s: write failed: %s", path, strerror(werr));
        } else {
            s = ftc_atomic_commit(&af, err);
        }
    }
    free(text);
    free(e);
    return s;
}

ftc_status ftc_checkpoint_load(const char *path, ftc_model *m, ftc_optimizer *o, json_t **state, ftc_err *err) {
    ftc_mapped f;
    ftc_status s = ftc_map_file(path, &f, err);
    if (s != FTC_OK) return s;
    json_t *hdr = NULL;
    if (f.size < 16 || memcmp(f.data, MAGIC, 8) != 0) {
        s = ftc_errf(err, FTC_E_INPUT, "%s: not an ftc checkpoint (bad magic)", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)f.data[8 + i] << (8 * i);
    if (hlen > f.size - 16) { s = ftc_errf(err, FTC_E_INPUT, "%s: header length %llu past the end", path, (unsigned long long)hlen); goto done; }
    json_error_t je;
    hdr = json_loadb((const char *)f.data + 16, hlen, 0, &je);
    if (!hdr && json_error_code(&je) == json_error_out_of_memory) { s = ftc_errf(err, FTC_E_NOMEM, "%s: header: out of memory", path); goto done; }
    if (!hdr) { s = ftc_errf(err, FTC_E_INPUT, "%s: header: %s", path, je.text); goto done; }
    const uint8_t *data = f.data + 16 + hlen;
    uint64_t data_floats = (f.size - 16 - hlen) / sizeof(float);
    json_t *tensors = json_object_get(hdr, "tensors");
    if (!json_is_array(tensors)) { s = ftc_errf(err, FTC_E_INPUT, "%s: header has no \"tensors\" list", path); goto done; }
    if (!m) goto state_only; /* ftc_checkpoint_read_state */
    /* every trainable param must be in the file, so a run never continues with half its weights */
    int np = ftc_model_n_params(m), found = 0, trainable = 0;
    for (int i = 0; i < np; i++) trainable += ftc_model_param(m, i)->trainable;
    size_t i;
    json_t *t;
    json_array_foreach(tensors, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *kind = json_string_value(json_object_get(t, "kind"));
        json_int_t numel = json_integer_value(json_object_get(t, "numel"));
        json_int_t off = json_integer_value(json_object_get(t, "offset"));
        if (!name || !kind || numel <= 0 || off < 0 || (uint64_t)off + (uint64_t)numel > data_floats) {
            s = ftc_errf(err, FTC_E_INPUT, "%s: tensor entry %zu is malformed or past the end of the file", path, i);
            goto done;
        }
        ftc_param *p = ftc_model_find_param(m, name);
        if (!p) { s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s is not a parameter of this model", path, name); goto done; }
        if (p->numel != numel) {
            s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s has %lld values, the model's has %lld", path, name,
                         (long long)numel, (long long)p->numel);
            goto done;
        }
        float *dst = NULL;
        if (!strcmp(kind, "param")) {
            if (!p->trainable) { s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s is frozen in this run but trained in the checkpoint", path, name); goto done; }
            dst = p->data;
            found++;
        } else if (o && (!strcmp(kind, "m") || !strcmp(kind, "v") || !strcmp(kind, "avg"))) {
            int k = 0;
            while (k < o->n && o->params[k] != p) k++;
            if (k == o->n) { s = ftc_errf(err, FTC_E_INPUT, "%s: %s state for %s, which does not train", path, kind, name); goto done; }
            if (kind[0] == 'a' && (s = ftc_optim_average_alloc(o, err)) != FTC_OK) goto done; /* the run had begun its average */
            dst = kind[0] == 'a' ? o->avg + o->offset[k] : o->moments + (kind[0] == 'v' ? o->n_values : 0) + o->offset[k];
        } else if (o || (strcmp(kind, "m") && strcmp(kind, "v") && strcmp(kind, "avg"))) {
            s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s has unknown kind '%s'", path, name, kind);
            goto done;
        }
        if (dst) memcpy(dst, data + (size_t)off * sizeof(float), (size_t)numel * sizeof(float));
    }
    if (found != trainable) {
        s = ftc_errf(err, FTC_E_INPUT, "%s: holds %d of the run's %d trainable tensors (different method or model?)",
                     path, found, trainable);
        goto done;
    }
    ftc_model_weights_changed(m); /* bf16 copies of the restored weights */
state_only:
    if (state) {
        json_t *st = json_object_get(hdr, "state");
        *state = st ? json_incref(st) : json_object();
    }
done:
    json_decref(hdr);
    ftc_unmap_file(&f);
    return s;
}

ftc_status ftc_checkpoint_read_state(const char *path, json_t **state, ftc_err *err) {
    return ftc_checkpoint_load(path, NULL, NULL, state, err);
}

/* A whole data set for training: read (stopping at the first bad record), label map, split, encode, pack,
 * and the files a run directory keeps so the user can see what the model was trained on. */
#include "data_internal.h"
#include "ftc/base.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ftc_record *r;
    size_t n, cap;
} record_list;

static void records_free(record_list *l) {
    for (size_t i = 0; i < l->n; i++) ftc_record_clear(&l->r[i]);
    free(l->r);
    memset(l, 0, sizeof *l);
}

static ftc_status read_all(const char *path, const ftc_read_opts *ro, record_list *out, ftc_err *err) {
    ftc_reader *rd;
    ftc_status s = ftc_reader_open(path, ro, &rd, err);
    if (s != FTC_OK) return s;
    for (;;) {
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 256;
            ftc_record *r = realloc(out->r, cap * sizeof *r);
            if (!r) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
            out->r = r;
            out->cap = cap;
        }
        ftc_record *rec = &out->r[out->n];
        memset(rec, 0, sizeof *rec);
        bool got;
        s = ftc_reader_next(rd, rec, &got, err);
        if (s != FTC_OK || !got) { ftc_record_clear(rec); break; }
        out->n++;
    }
    ftc_reader_close(rd);
    if (s == FTC_OK && out->n == 0) s = ftc_errf(err, FTC_E_INPUT, "%s: no records", path);
    return s;
}

/* Integer and string labels may not mix in one data set: "3" and 3 would be the same class by accident. */
static ftc_status check_label_kinds(const char *path, const record_list *l, ftc_err *err) {
    for (size_t i = 1; i < l->n; i++)
        if (l->r[i].label_is_int != l->r[0].label_is_int)
            return ftc_errf(err, FTC_E_INPUT, "%s:%ld: label %s is %s but the label on line %ld is %s", path,
                            l->r[i].line, l->r[i].label, l->r[i].label_is_int ? "an integer" : "a string",
                            l->r[0].line, l->r[0].label_is_int ? "an integer" : "a string");
    return FTC_OK;
}

static ftc_status add_example(ftc_dataset *d, size_t *cap, ftc_example *e, ftc_err *err) {
    if ((size_t)d->n == *cap) {
        size_t c = *cap ? 2 * *cap : 256;
        ftc_example *x = realloc(d->ex, c * sizeof *x);
        if (!x) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        d->ex = x;
        *cap = c;
    }
    d->ex[d->n++] = *e;
    return FTC_OK;
}

static ftc_status write_split(const char *dir, const char *name, const record_list *l, const uint8_t *which, int want,
                              ftc_err *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/split/%s.jsonl", dir, name);
    ftc_atomic_file af;
    ftc_status s = ftc_atomic_open(&af, path, err);
    if (s != FTC_OK) return s;
    for (size_t i = 0; i < l->n; i++) {
        if (which && which[i] != want) continue;
        char *line = ftc_record_to_jsonl(&l->r[i]);
        if (!line) { ftc_atomic_abort(&af); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
        fputs(line, af.f);
        fputc('\n', af.f);
        free(line);
    }
    return ftc_atomic_commit(&af, err);
}

static void set_names(ftc_dataset *d, const ftc_label_map *m) {
    d->num_labels = m->n;
    d->label_names = calloc((size_t)m->n, sizeof(char *));
    for (int i = 0; d->label_names && i < m->n; i++) d->label_names[i] = strdup(m->names[i]);
}

ftc_status ftc_data_load(const char *path, const char *val_path, const ftc_load_opts *o, const ftc_data_encoder *enc,
                         const ftc_label_map *labels, ftc_dataset *train, ftc_dataset *val, ftc_dataset *test,
                         ftc_err *err) {
    memset(train, 0, sizeof *train);
    if (val) memset(val, 0, sizeof *val);
    if (test) memset(test, 0, sizeof *test);
    record_list tr = {0}, va = {0};
    ftc_label_map built = {0};
    const ftc_label_map *map = labels;
    uint8_t *which = NULL;
    bool classify = o->enc.task == FTC_TASK_CLASSIFY;
    ftc_status s = read_all(path, &o->read, &tr, err);
    if (s == FTC_OK && val_path) s = read_all(val_path, &o->read, &va, err);
    if (s == FTC_OK && classify) {
        s = check_label_kinds(path, &tr, err);
        if (s == FTC_OK && !map) {
            const char **names = malloc(tr.n * sizeof *names);
            if (!names) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
            for (size_t i = 0; s == FTC_OK && i < tr.n; i++) {
                if (tr.r[i].format != FTC_FMT_LABEL)
                    s = ftc_errf(err, FTC_E_INPUT, "%s:%ld: classification needs a label on every record", path, tr.r[i].line);
                else names[i] = tr.r[i].label;
            }
            if (s == FTC_OK) s = ftc_label_map_build(names, tr.n, &built, err);
            free(names);
            map = &built;
        }
    }
    /* split when no validation file was given */
    bool splitting = s == FTC_OK && !val_path && (o->val_share > 0 || o->test_share > 0);
    if (splitting) {
        which = malloc(tr.n ? tr.n : 1);
        int32_t *cls = classify ? malloc(tr.n * sizeof *cls) : NULL;
        if (!which || (classify && !cls)) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        for (size_t i = 0; s == FTC_OK && classify && i < tr.n; i++) {
            cls[i] = ftc_label_map_find(map, tr.r[i].label);
            if (cls[i] < 0)
                s = ftc_errf(err, FTC_E_INPUT, "%s:%ld: label \"%s\" is not in the label map", path, tr.r[i].line,
                             tr.r[i].label);
        }
        if (s == FTC_OK) s = ftc_data_split(tr.n, cls, o->val_share, o->test_share, o->seed, which, err);
        free(cls);
    }
    /* encode */
    size_t caps[3] = {0, 0, 0};
    ftc_dataset *dst[3] = {train, val, test};
    for (int part = 0; part < 2 && s == FTC_OK; part++) {
        record_list *l = part == 0 ? &tr : &va;
        const char *file = part == 0 ? path : val_path;
        for (size_t i = 0; i < l->n && s == FTC_OK; i++) {
            int to = part == 0 ? (which ? which[i] : FTC_SPLIT_TRAIN) : FTC_SPLIT_VAL;
            if (!dst[to]) continue;
            ftc_example e;
            /* packing cuts the concatenation into max_len pieces: nothing is truncated before */
            ftc_encode_opts eo = o->enc;
            if (o->pack && !classify) eo.max_len = 0;
            s = ftc_data_encode_record(&l->r[i], &eo, enc, map, file, &e, NULL, err);
            if (s == FTC_OK && e.len == 0) {
                ftc_example_free(&e);
                s = ftc_errf(err, FTC_E_INPUT, "%s:%ld: the record gives no tokens", file, l->r[i].line);
            }
            if (s == FTC_OK) s = add_example(dst[to], &caps[to], &e, err);
            if (s != FTC_OK) ftc_example_free(&e);
        }
    }
    int32_t pad = enc->pad >= 0 ? enc->pad : enc->eos >= 0 ? enc->eos : 0;
    for (int k = 0; k < 3; k++) {
        if (!dst[k]) continue;
        dst[k]->pad_id = pad;
        if (s == FTC_OK && classify) set_names(dst[k], map);
        if (s == FTC_OK && o->pack && !classify && dst[k]->n) s = ftc_data_pack(dst[k], o->enc.max_len, err);
    }
    if (s == FTC_OK && train->n == 0) s = ftc_errf(err, FTC_E_INPUT, "%s: no training examples", path);
    /* what the run was trained on, for the user to read */
    if (s == FTC_OK && o->out_dir) {
        char p[4400];
        snprintf(p, sizeof p, "%s/split", o->out_dir);
        s = ftc_mkdirs(p, err);
        if (s == FTC_OK && classify) {
            snprintf(p, sizeof p, "%s/labels.json", o->out_dir);
            s = ftc_label_map_save(map, p, err);
        }
        if (s == FTC_OK) s = write_split(o->out_dir, "train", &tr, which, FTC_SPLIT_TRAIN, err);
        if (s == FTC_OK && (va.n || (which && o->val_share > 0)))
            s = write_split(o->out_dir, "val", va.n ? &va : &tr, va.n ? NULL : which, FTC_SPLIT_VAL, err);
        if (s == FTC_OK && which && o->test_share > 0) s = write_split(o->out_dir, "test", &tr, which, FTC_SPLIT_TEST, err);
        if (s == FTC_OK && tr.n && tr.r[0].format == FTC_FMT_CHAT && o->enc.tmpl) {
            /* the exact template the examples were rendered with: chat uses it for this run's model */
            json_t *t = json_pack("{s:s, s:s}", "name", ftc_chat_template_name(o->enc.tmpl), "jinja",
                                  ftc_chat_template_source(o->enc.tmpl));
            char *text = json_dumps(t, JSON_INDENT(2));
            json_decref(t);
            snprintf(p, sizeof p, "%s/chat_template.json", o->out_dir);
            s = text ? ftc_write_file_atomic(p, text, strlen(text), err) : ftc_errf(err, FTC_E_NOMEM, "out of memory");
            free(text);
        }
    }
    free(which);
    records_free(&tr);
    records_free(&va);
    ftc_label_map_free(&built);
    if (s != FTC_OK)
        for (int k = 0; k < 3; k++) if (dst[k]) ftc_dataset_free(dst[k]);
    return s;
}

/* Label maps and splits.
 * A label map is the sorted set of training labels; class index = position. Integer labels sort as numbers
 * (so labels 0..K-1 keep their values as indices); string labels sort by bytes. Saved as a JSON array of
 * names (labels.json, the file the trainer and `ftc eval` read). */
#include "data_internal.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static bool is_int_text(const char *s) {
    if (*s == '-') s++;
    if (!*s || strlen(s) > 18) return false;
    for (; *s; s++) if (*s < '0' || *s > '9') return false;
    return true;
}

static int cmp_text(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_num(const void *a, const void *b) {
    long long x = atoll(*(char *const *)a), y = atoll(*(char *const *)b);
    return x < y ? -1 : x > y;
}

void ftc_label_map_free(ftc_label_map *m) {
    for (int i = 0; i < m->n; i++) free(m->names[i]);
    free(m->names);
    memset(m, 0, sizeof *m);
}

ftc_status ftc_label_map_build(const char *const *labels, size_t n, ftc_label_map *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    if (n == 0) return ftc_errf(err, FTC_E_INPUT, "no training labels");
    char **all = malloc(n * sizeof *all);
    if (!all) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    bool numeric = true;
    for (size_t i = 0; i < n; i++) {
        all[i] = (char *)labels[i];
        if (!is_int_text(labels[i])) numeric = false;
    }
    qsort(all, n, sizeof *all, numeric ? cmp_num : cmp_text);
    out->names = malloc(n * sizeof *out->names);
    if (!out->names) { free(all); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    out->numeric = numeric;
    for (size_t i = 0; i < n; i++) {
        if (out->n && (numeric ? cmp_num(&all[i], &out->names[out->n - 1]) : strcmp(all[i], out->names[out->n - 1])) == 0)
            continue;
        out->names[out->n] = strdup(all[i]);
        if (!out->names[out->n]) { free(all); ftc_label_map_free(out); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
        out->n++;
    }
    free(all);
    return FTC_OK;
}

int ftc_label_map_find(const ftc_label_map *m, const char *label) {
    int lo = 0, hi = m->n - 1;
    if (m->numeric && !is_int_text(label)) return -1;
    while (lo <= hi) { /* names are sorted: binary search */
        int mid = (lo + hi) / 2;
        const char *name = m->names[mid];
        int c = m->numeric ? cmp_num(&label, &name) : strcmp(label, name);
        if (c == 0) return mid;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return -1;
}

ftc_status ftc_label_map_save(const ftc_label_map *m, const char *path, ftc_err *err) {
    json_t *a = json_array();
    for (int i = 0; i < m->n; i++) json_array_append_new(a, json_string(m->names[i]));
    char *text = json_dumps(a, JSON_INDENT(1));
    json_decref(a);
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps' NUL becomes the final newline */
    ftc_status s = ftc_write_file_atomic(path, text, len + 1, err);
    free(text);
    return s;
}

ftc_status ftc_label_map_load(const char *path, ftc_label_map *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *a = ftc_json_load_file(path, 0, &je);
    if (!a) return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: not valid JSON: %s", path, je.line, je.column, je.text);
    ftc_status s = FTC_OK;
    if (!json_is_array(a) || json_array_size(a) == 0) s = ftc_errf(err, FTC_E_INPUT, "%s: expected a list of label names", path);
    size_t n = json_array_size(a);
    if (s == FTC_OK && !(out->names = calloc(n, sizeof *out->names))) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    out->numeric = true;
    for (size_t i = 0; s == FTC_OK && i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v)) { s = ftc_errf(err, FTC_E_INPUT, "%s: entry %zu is not a string", path, i); break; }
        out->names[i] = strdup(json_string_value(v));
        out->n++;
        if (!is_int_text(out->names[i])) out->numeric = false;
    }
    /* the file is the order of the classes: it must be the sorted order we search in */
    for (int i = 1; s == FTC_OK && i < out->n; i++) {
        int c = out->numeric ? cmp_num(&out->names[i - 1], &out->names[i]) : strcmp(out->names[i - 1], out->names[i]);
        if (c >= 0) s = ftc_errf(err, FTC_E_INPUT, "%s: labels are not sorted and unique at entry %d (\"%s\")", path, i,
                                 out->names[i]);
    }
    json_decref(a);
    if (s != FTC_OK) ftc_label_map_free(out);
    return s;
}

/* ---- splits ---- */
ftc_status ftc_data_split(size_t n, const int32_t *labels, double val_share, double test_share, uint64_t seed,
                          uint8_t *out, ftc_err *err) {
    if (val_share < 0 || test_share < 0 || val_share + test_share >= 1)
        return ftc_errf(err, FTC_E_USAGE, "split shares must be >= 0 and leave room for training (val %g + test %g)",
                        val_share, test_share);
    memset(out, FTC_SPLIT_TRAIN, n);
    if (n == 0 || (val_share == 0 && test_share == 0)) return FTC_OK;
    int32_t n_groups = 1;
    if (labels)
        for (size_t i = 0; i < n; i++) {
            if (labels[i] < 0) return ftc_errf(err, FTC_E_INTERNAL, "negative class index in split");
            if (labels[i] + 1 > n_groups) n_groups = labels[i] + 1;
        }
    int32_t *idx = malloc(n * sizeof *idx);
    if (!idx) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_rng rng;
    ftc_rng_seed(&rng, seed);
    for (int32_t g = 0; g < n_groups; g++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!labels || labels[i] == g) idx[m++] = (int32_t)i;
        if (m == 0) continue;
        ftc_rng_shuffle_i32(&rng, idx, m);
        size_t nv = (size_t)(val_share * (double)m + 0.5), nt = (size_t)(test_share * (double)m + 0.5);
        while (nv + nt >= m && nv + nt > 0) { /* keep at least one training item in each group */
            if (nt >= nv && nt > 0) nt--; else nv--;
        }
        for (size_t k = 0; k < nv; k++) out[idx[k]] = FTC_SPLIT_VAL;
        for (size_t k = nv; k < nv + nt; k++) out[idx[k]] = FTC_SPLIT_TEST;
    }
    free(idx);
    return FTC_OK;
}

char *ftc_record_to_jsonl(const ftc_record *r) {
    json_t *o = json_object();
    switch (r->format) {
    case FTC_FMT_TEXT: json_object_set_new(o, "text", json_string(r->text)); break;
    case FTC_FMT_LABEL:
        json_object_set_new(o, "text", json_string(r->text));
        if (r->text_pair) json_object_set_new(o, "text_pair", json_string(r->text_pair));
        json_object_set_new(o, "label", r->label_is_int ? json_integer(atoll(r->label)) : json_string(r->label));
        break;
    case FTC_FMT_COMPLETION:
        json_object_set_new(o, "prompt", json_string(r->prompt));
        json_object_set_new(o, "completion", json_string(r->completion));
        break;
    case FTC_FMT_CHAT: {
        json_t *a = json_array();
        static const char *const roles[] = {"system", "user", "assistant"};
        for (int i = 0; i < r->n_msgs; i++) {
            json_t *m = json_object();
            json_object_set_new(m, "role", json_string(roles[r->msgs[i].role]));
            json_object_set_new(m, "content", json_string(r->msgs[i].content));
            if (r->msgs[i].role == FTC_ROLE_ASSISTANT && r->msgs[i].weight == 0)
                json_object_set_new(m, "weight", json_integer(0));
            json_array_append_new(a, m);
        }
        json_object_set_new(o, "messages", a);
        break;
    }
    default: break;
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

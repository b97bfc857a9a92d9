/* Pre-tokenized training data (JSONL, one example per line) and the validation split.
 *   causal-lm: {"input_ids": [..], "labels": [..]?}   labels as HF: -100 = not trained; absent = all trained
 *   classify:  {"input_ids": [..], "label": 3 | "name", "token_type_ids": [..]?}
 * Text formats go through the readers beside it (load.c); this one serves data that is already tokenized (e.g.
 * exported from a HF dataset) and the trainer's own tests. ftc_dataset_free frees what either builds. */
#include "ftc/data.h"
#include "ftc/base.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static ftc_status int_array(json_t *a, const char *path, int line, const char *key, int32_t **out, int *n,
                            ftc_err *err) {
    if (!json_is_array(a) || json_array_size(a) == 0)
        return ftc_errf(err, FTC_E_INPUT, "%s: line %d: \"%s\" must be a non-empty list of integers", path, line, key);
    size_t len = json_array_size(a);
    if (*n >= 0 && (size_t)*n != len)
        return ftc_errf(err, FTC_E_INPUT, "%s: line %d: \"%s\" has %zu entries, \"input_ids\" has %d", path, line, key,
                        len, *n);
    int32_t *v = malloc(len * sizeof *v);
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_integer(x) || json_integer_value(x) < -100 || json_integer_value(x) > INT32_MAX) {
            free(v);
            return ftc_errf(err, FTC_E_INPUT, "%s: line %d: \"%s\"[%zu] is not a valid token id", path, line, key, i);
        }
        v[i] = (int32_t)json_integer_value(x);
    }
    *out = v;
    *n = (int)len;
    return FTC_OK;
}

static int find_label(char **names, int n, const char *s) {
    for (int i = 0; i < n; i++) if (!strcmp(names[i], s)) return i;
    return -1;
}

ftc_status ftc_dataset_load_tokenized(const char *path, ftc_task task, const ftc_dataset *label_map, int vocab_size,
                                      ftc_dataset *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    ftc_status s = ftc_read_file(path, &text, &len, err);
    if (s != FTC_OK) return s;
    int cap = 0, line_no = 0, label_cap = 0;
    bool string_labels = false;
    for (char *line = text; s == FTC_OK && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        line_no++;
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (*p) {
            json_error_t je;
            json_t *o = json_loads(p, 0, &je);
            ftc_example e = {0};
            if (!o || !json_is_object(o)) {
                s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", path, line_no, o ? "expected a JSON object" : je.text);
            } else {
                int n = -1;
                s = int_array(json_object_get(o, "input_ids"), path, line_no, "input_ids", &e.ids, &n, err);
                if (s == FTC_OK) {
                    e.len = n;
                    for (int i = 0; i < n && s == FTC_OK; i++)
                        if (e.ids[i] < 0 || (vocab_size > 0 && e.ids[i] >= vocab_size))
                            s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: input_ids[%d] = %d is outside the vocabulary [0, %d)",
                                         path, line_no, i, e.ids[i], vocab_size);
                }
                json_t *tt = json_object_get(o, "token_type_ids");
                if (s == FTC_OK && tt) s = int_array(tt, path, line_no, "token_type_ids", &e.type_ids, &n, err);
                if (s == FTC_OK && task == FTC_TASK_CAUSAL_LM) {
                    json_t *lab = json_object_get(o, "labels");
                    if (lab) s = int_array(lab, path, line_no, "labels", &e.labels, &n, err);
                    for (int i = 0; s == FTC_OK && e.labels && i < n; i++)
                        if (e.labels[i] != -100 && (e.labels[i] < 0 || (vocab_size > 0 && e.labels[i] >= vocab_size)))
                            s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: labels[%d] = %d is neither -100 nor a token id",
                                         path, line_no, i, e.labels[i]);
                } else if (s == FTC_OK) {
                    json_t *lab = json_object_get(o, "label");
                    const ftc_dataset *map = label_map ? label_map : out;
                    if (json_is_integer(lab) && !string_labels && !(label_map && label_map->label_names)) {
                        json_int_t k = json_integer_value(lab);
                        if (k < 0 || k >= FTC_MAX_LABELS || (label_map && k >= label_map->num_labels))
                            s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: \"label\" %lld is out of range", path, line_no, (long long)k);
                        else {
                            e.label = (int)k;
                            if (!label_map && k >= out->num_labels) out->num_labels = (int)k + 1;
                        }
                    } else if (json_is_string(lab) && (out->n == 0 || string_labels || label_map)) {
                        string_labels = true;
                        int k = find_label(map->label_names, map->num_labels, json_string_value(lab));
                        if (k < 0 && label_map)
                            s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: label \"%s\" is not in the training labels", path,
                                         line_no, json_string_value(lab));
                        else if (k < 0) {
                            if (out->num_labels == label_cap) {
                                label_cap = label_cap ? 2 * label_cap : 16;
                                out->label_names = realloc(out->label_names, (size_t)label_cap * sizeof(char *));
                            }
                            k = out->num_labels;
                            out->label_names[out->num_labels++] = strdup(json_string_value(lab));
                        }
                        e.label = k;
                    } else {
                        s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: \"label\" must be %s", path, line_no,
                                     string_labels ? "a string (as on earlier lines)" : "an integer class or a string");
                    }
                }
            }
            json_decref(o);
            if (s == FTC_OK) {
                if (out->n == cap) {
                    cap = cap ? 2 * cap : 64;
                    ftc_example *ne = realloc(out->ex, (size_t)cap * sizeof *ne);
                    if (!ne) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
                    else out->ex = ne;
                }
                if (s == FTC_OK) out->ex[out->n++] = e;
            }
            if (s != FTC_OK) { free(e.ids); free(e.labels); free(e.type_ids); }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (s == FTC_OK && out->n == 0) s = ftc_errf(err, FTC_E_INPUT, "%s: no examples", path);
    if (s == FTC_OK && label_map) out->num_labels = label_map->num_labels;
    if (s != FTC_OK) ftc_dataset_free(out);
    return s;
}

ftc_status ftc_dataset_split(ftc_dataset *all, double val_share, uint64_t seed, ftc_dataset *val, ftc_err *err) {
    memset(val, 0, sizeof *val);
    int n_val = (int)(all->n * val_share + 0.5);
    if (n_val < 1 || n_val >= all->n)
        return ftc_errf(err, FTC_E_INPUT, "--val-split %g of %d examples leaves no %s examples", val_share, all->n,
                        n_val < 1 ? "validation" : "training");
    int32_t *order = malloc((size_t)all->n * sizeof *order);
    ftc_example *ex = malloc((size_t)all->n * sizeof *ex);
    if (!order || !ex) { free(order); free(ex); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_rng r;
    ftc_rng_seed(&r, seed ^ 0x5B117ULL);
    for (int i = 0; i < all->n; i++) order[i] = i;
    ftc_rng_shuffle_i32(&r, order, (size_t)all->n);
    for (int i = 0; i < all->n; i++) ex[i] = all->ex[order[i]];
    free(all->ex);
    free(order);
    /* the last n_val of the shuffled order validate; both keep the file's label map */
    val->ex = malloc((size_t)n_val * sizeof *val->ex);
    if (!val->ex) { all->ex = ex; return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    memcpy(val->ex, ex + all->n - n_val, (size_t)n_val * sizeof *ex);
    val->n = n_val;
    val->num_labels = all->num_labels;
    val->pad_id = all->pad_id;
    all->ex = ex;
    all->n -= n_val;
    if (all->label_names) {
        val->label_names = malloc((size_t)all->num_labels * sizeof(char *));
        for (int i = 0; i < all->num_labels; i++) val->label_names[i] = strdup(all->label_names[i]);
    }
    return FTC_OK;
}
void ftc_dataset_free(ftc_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) { free(d->ex[i].ids); free(d->ex[i].labels); free(d->ex[i].type_ids); }
    free(d->ex);
    if (d->label_names)
        for (int i = 0; i < d->num_labels; i++) free(d->label_names[i]);
    free(d->label_names);
    memset(d, 0, sizeof *d);
}

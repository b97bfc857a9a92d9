/* Classification with a loaded classifier (ftc classify, ftc serve's /v1/classify): label names, tokenizing a
 * text as training did, and class probabilities for a batch of tokenized texts. */
#include "ftc/infer.h"
#include "base/base_internal.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ftc_classify_num_labels(ftc_infer_model *im) {
    const ftc_model_config *cfg = ftc_model_config_of(im->model);
    const ftc_param *head = ftc_model_find_param(im->model, cfg->family == FTC_FAMILY_BERT ? "classifier.weight"
                                                                                          : "score.weight");
    return head ? (int)head->shape[0] : -1;
}

int ftc_classify_max_len(const ftc_infer_model *im) {
    int n = ftc_model_config_of(im->model)->max_positions;
    return im->run_max_len > 0 && im->run_max_len < n ? im->run_max_len : n;
}

void ftc_classify_free_labels(char **names, int n) {
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

ftc_status ftc_classify_labels(const ftc_infer_model *im, const char *path, int n, char ***out, ftc_err *err) {
    *out = NULL;
    const ftc_model_config *cfg = ftc_model_config_of(im->model);
    char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    if (!names) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    char file[8600];
    json_t *a = im->is_run && ftc_path_join(file, sizeof file, path, "labels.json") && ftc_file_exists(file)
                    ? ftc_json_load_file(file, 0, NULL) : NULL;
    if (a && (!json_is_array(a) || (int)json_array_size(a) != n)) {
        json_decref(a);
        free(names);
        return ftc_errf(err, FTC_E_INPUT, "%s: expected a list of %d label names (the model's head has %d)", file, n, n);
    }
    for (int i = 0; i < n; i++) {
        const char *name = a ? json_string_value(json_array_get(a, (size_t)i))
                             : cfg->id2label && i < cfg->num_labels ? cfg->id2label[i] : NULL;
        char buf[16];
        if (!name) snprintf(buf, sizeof buf, "%d", i), name = buf;
        if (!(names[i] = strdup(name))) {
            json_decref(a);
            ftc_classify_free_labels(names, n);
            return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        }
    }
    json_decref(a);
    *out = names;
    return FTC_OK;
}

ftc_status ftc_classify_encode(const ftc_infer_model *im, const char *text, int max_len, ftc_ids *ids, ftc_err *err) {
    ids->n = 0;
    ftc_status s = ftc_tokenizer_encode(im->tok, text, strlen(text), true, max_len, ids, err);
    if (s || ids->n) return s;
    /* a tokenizer without special tokens and an empty text: classify from one pad token */
    int32_t pad = ftc_tokenizer_special(im->tok).pad;
    ftc_ids_free(ids);
    if (!(ids->ids = malloc(sizeof *ids->ids))) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ids->ids[0] = pad >= 0 ? pad : 0, ids->n = ids->cap = 1;
    return FTC_OK;
}

ftc_status ftc_classify_ids(ftc_infer_model *im, const ftc_ids *ids, int n, int num_labels, float *probs,
                            ftc_err *err) {
    if (n <= 0) return FTC_OK;
    int T = 1;
    for (int i = 0; i < n; i++)
        if ((int)ids[i].n > T) T = (int)ids[i].n;
    int32_t pad = ftc_tokenizer_special(im->tok).pad;
    if (pad < 0) pad = 0;
    int32_t *bids = malloc((size_t)n * T * sizeof *bids);
    uint8_t *mask = malloc((size_t)n * T);
    ftc_status s = !bids || !mask ? ftc_errf(err, FTC_E_NOMEM, "out of memory") : FTC_OK;
    if (!s) s = ftc_model_reserve(im->model, n, T, err);
    if (!s) {
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++) { /* right padding, masked */
                bool real = t < (int)ids[i].n;
                bids[i * T + t] = real ? ids[i].ids[t] : pad;
                mask[i * T + t] = real;
            }
        ftc_batch b = {n, T, bids, NULL, mask, NULL};
        s = ftc_model_forward(im->model, &b, false, NULL, err);
    }
    if (!s) {
        const float *logits = ftc_model_logits(im->model);
        for (int i = 0; i < n; i++) {
            const float *z = logits + (size_t)i * num_labels;
            float *p = probs + (size_t)i * num_labels;
            double mx = z[0], sum = 0;
            for (int j = 1; j < num_labels; j++) mx = z[j] > mx ? z[j] : mx;
            for (int j = 0; j < num_labels; j++) sum += exp((double)z[j] - mx);
            for (int j = 0; j < num_labels; j++) p[j] = (float)(exp((double)z[j] - mx) / sum);
        }
    }
    free(bids);
    free(mask);
    return s;
}

/* Evaluation: a model's loss and metrics on a dataset (batches in length order, so little padding), the most
 * confident mistakes, and the frozen encoder's features for a head trained on cached features. */
#include "train_internal.h"
#include "ftc/eval.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A misclassified example: its index in the dataset, true and predicted class, the predicted class's probability. */
typedef struct {
    int index, label, predicted;
    double prob;
} mistake;

/* Most confident first; equal probabilities in dataset order (the list does not depend on the batch order). */
static int mistake_cmp(const void *a, const void *b) {
    const mistake *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* The mistakes among B rows of logits [B, K]: the softmax probability of the (argmax) predicted class. */
static void collect_mistakes(const float *logits, const int32_t *labels, const int32_t *idx, int B, int K, mistake *out,
                             int *n) {
    for (int i = 0; i < B; i++) {
        const float *row = logits + (size_t)i * K;
        int p = ftc_argmax(row, K);
        if (p == labels[i]) continue;
        double z = 0;
        for (int k = 0; k < K; k++) z += exp((double)row[k] - (double)row[p]);
        out[(*n)++] = (mistake){idx[i], labels[i], p, isfinite(z) && z > 0 ? 1.0 / z : NAN};
    }
}

/* "worst": the FTC_EVAL_WORST most confident mistakes as {"index","label","predicted","prob"} (label names when
 * the dataset has them). False when out of memory. */
static bool add_worst(json_t *j, const ftc_dataset *d, mistake *mk, int n) {
    qsort(mk, (size_t)n, sizeof *mk, mistake_cmp);
    json_t *arr = json_array();
    if (!arr || json_object_set_new(j, "worst", arr)) return false;
    for (int i = 0; i < n && i < FTC_EVAL_WORST; i++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", mk[i].label);
        snprintf(b, sizeof b, "%d", mk[i].predicted);
        json_t *o = json_pack("{s:i, s:s, s:s, s:f}", "index", mk[i].index, "label",
                              d->label_names ? d->label_names[mk[i].label] : a, "predicted",
                              d->label_names ? d->label_names[mk[i].predicted] : b, "prob",
                              isfinite(mk[i].prob) ? mk[i].prob : 0.0);
        if (!o || json_array_append_new(arr, o)) return false;
    }
    return true;
}

/* The run's named moments (ftc_train_config.at_point): a test's chance to stop the run exactly there. */
void ftc_tr_at_point(const ftc_train_config *c, const char *point) {
    if (c && c->at_point) c->at_point(c->at_point_ctx, point);
}

/* Metrics do not depend on the order examples come in, so batches run in length order (little padding).
 * feats (classify with a frozen backbone, or NULL): d's cached head inputs, [d->n, C]; then only the head runs.
 * c: the run evaluating (its "eval" moment comes after the first batch), or NULL. */
ftc_status ftc_tr_evaluate(ftc_model *m, ftc_task task, const ftc_dataset *d, const float *feats, ftc_tr_batcher *bt,
                           int batch, const ftc_train_config *c, ftc_eval_result *r, json_t **json, ftc_err *err) {
    memset(r, 0, sizeof *r);
    int C = ftc_model_config_of(m)->hidden_size;
    int32_t *order = ftc_tr_length_order(d);
    float *fbatch = feats ? malloc((size_t)batch * C * sizeof *fbatch) : NULL;
    if (!order || (feats && !fbatch)) { free(order); free(fbatch); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_class_metrics cm;
    ftc_lm_metrics lm;
    ftc_lm_metrics_init(&lm);
    ftc_status s = FTC_OK;
    int V = ftc_model_config_of(m)->vocab_size;
    if (task == FTC_TASK_CLASSIFY && (s = ftc_class_metrics_init(&cm, d->num_labels, err)) != FTC_OK) {
        free(order); free(fbatch);
        return s;
    }
    /* with the JSON: the misclassified examples, for the most confident of them ("worst") */
    mistake *mk = task == FTC_TASK_CLASSIFY && json ? malloc((size_t)d->n * sizeof *mk) : NULL;
    int n_mk = 0;
    if (task == FTC_TASK_CLASSIFY && json && !mk) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    const ftc_train_dp *dp = c && ftc_train_dp_active(c->dp) ? c->dp : NULL;
    for (int start = 0; start < d->n && s == FTC_OK; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch, lo, hi;
        ftc_tr_dp_shard(dp, B, &lo, &hi); /* data parallel: this rank's rows of the batch */
        const int32_t *idx = order + start + lo;
        B = hi - lo;
        if (B == 0) {
            if (start == 0) ftc_tr_at_point(c, "eval");
            continue;
        }
        ftc_tr_collate(bt, d, idx, B, task);
        if (feats) {
            ftc_tr_gather_rows(fbatch, feats, idx, B, C);
            s = ftc_model_head_forward(m, fbatch, B, bt->class_labels, false, NULL, err);
        } else {
            float loss;
            s = ftc_model_forward(m, &bt->b, false, &loss, err);
        }
        if (s != FTC_OK) break;
        if (task == FTC_TASK_CLASSIFY) s = ftc_class_metrics_add_logits(&cm, ftc_model_logits(m), bt->class_labels, B, err);
        else if (ftc_model_logits(m)) s = ftc_lm_metrics_add_logits(&lm, ftc_model_logits(m), bt->labels, B, bt->b.T, V, err);
        else /* loss_only: the logits a piece at a time */
            for (int r0 = 0, R = ftc_model_lm_chunk_rows(m); r0 < B * bt->b.T && s == FTC_OK; r0 += R) {
                int rows = B * bt->b.T - r0 < R ? B * bt->b.T - r0 : R;
                s = ftc_lm_metrics_add_rows(&lm, ftc_model_lm_logits_rows(m, r0, rows), bt->labels, B, bt->b.T, V,
                                            r0, rows, err);
            }
        if (s == FTC_OK && mk) collect_mistakes(ftc_model_logits(m), bt->class_labels, idx, B, d->num_labels, mk, &n_mk);
        if (start == 0) ftc_tr_at_point(c, "eval");
    }
    if (s == FTC_OK && dp) s = task == FTC_TASK_CLASSIFY ? ftc_tr_dp_reduce_class(dp, &cm, err) : ftc_tr_dp_reduce_lm(dp, &lm, err);
    if (s == FTC_OK) {
        r->n_examples = d->n;
        if (task == FTC_TASK_CLASSIFY) {
            ftc_class_metrics_finish(&cm);
            r->loss = cm.loss; r->accuracy = cm.accuracy; r->macro_f1 = cm.macro_f1;
            r->n_tokens = d->n;
            if (json) *json = ftc_class_metrics_json(&cm, (const char *const *)d->label_names);
            if (json && *json && !add_worst(*json, d, mk, n_mk)) {
                json_decref(*json);
                *json = NULL; /* the callers report a missing JSON as out of memory */
            }
        } else {
            r->loss = ftc_lm_loss(&lm); r->token_accuracy = ftc_lm_token_accuracy(&lm);
            r->n_tokens = lm.n_tokens;
            if (json) *json = ftc_lm_metrics_json(&lm);
        }
    }
    if (task == FTC_TASK_CLASSIFY) ftc_class_metrics_free(&cm);
    free(mk);
    free(order);
    free(fbatch);
    return s;
}

/* The frozen encoder once over d in eval mode (no dropout), in length order: out[i] = example i's head input
 * (its pooled state, through the pooler when used), [d->n, C]. */
ftc_status ftc_tr_extract_features(ftc_model *m, const ftc_dataset *d, ftc_tr_batcher *bt, int batch, float *out,
                                   const char *what, bool quiet, const ftc_train_dp *dp, ftc_err *err) {
    int C = ftc_model_config_of(m)->hidden_size;
    if (!ftc_train_dp_active(dp)) dp = NULL;
    else memset(out, 0, (size_t)d->n * C * sizeof *out); /* the other ranks' rows, summed in below */
    int32_t *order = ftc_tr_length_order(d);
    float *fbatch = malloc((size_t)batch * C * sizeof *fbatch);
    if (!order || !fbatch) { free(order); free(fbatch); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_progress prog;
    long n_batches = (d->n + batch - 1) / batch;
    if (!quiet) ftc_progress_start(&prog, what, n_batches);
    ftc_status s = FTC_OK;
    for (int start = 0; start < d->n; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch;
        if (dp && (start / batch) % dp->size != dp->rank) continue; /* another rank's batch */
        ftc_tr_collate(bt, d, order + start, B, FTC_TASK_CLASSIFY);
        if ((s = ftc_model_head_features(m, &bt->b, fbatch, err)) != FTC_OK) break;
        for (int i = 0; i < B; i++)
            memcpy(out + (size_t)order[start + i] * C, fbatch + (size_t)i * C, (size_t)C * sizeof(float));
        if (!quiet) ftc_progress_update(&prog, start / batch + 1, NULL);
    }
    if (!quiet) ftc_progress_finish(&prog);
    if (s == FTC_OK && dp && (s = dp->allreduce_sum_f32(dp->ctx, out, (int64_t)d->n * C, err)) != FTC_OK)
        ftc_err_prefix(err, "gathering the features over %d ranks", dp->size);
    free(order);
    free(fbatch);
    return s;
}

ftc_status ftc_train_evaluate(ftc_model *m, ftc_task task, const ftc_dataset *d, int batch, int max_len,
                              ftc_eval_result *r, json_t **json, ftc_err *err) {
    if (d->n == 0) return ftc_errf(err, FTC_E_INPUT, "evaluation data has no examples");
    ftc_tr_batcher bt;
    int T = ftc_tr_max_len(d, max_len);
    ftc_status s = ftc_tr_batcher_init(&bt, batch, T, err);
    if (s == FTC_OK) s = ftc_model_reserve(m, batch, T, err);
    if (s == FTC_OK) s = ftc_tr_evaluate(m, task, d, NULL, &bt, batch, NULL, r, json, err);
    ftc_tr_batcher_free(&bt);
    return s;
}

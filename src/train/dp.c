/* Data parallelism inside the trainer (ftc_train_dp, include/ftc/train.h): which rows of a global batch a rank
 * takes, the gradient sum over the ranks, and the evaluation counts reduced. The transport is the caller's. */
#include "train_internal.h"
#include "ftc/eval.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

bool ftc_train_dp_active(const ftc_train_dp *dp) { return dp && dp->size > 1; }

void ftc_tr_dp_shard(const ftc_train_dp *dp, int B, int *lo, int *hi) {
    if (!ftc_train_dp_active(dp)) { *lo = 0; *hi = B; return; }
    *lo = (int)((int64_t)B * dp->rank / dp->size);
    *hi = (int)((int64_t)B * (dp->rank + 1) / dp->size);
}

/* The optimizer's gradients are one span of the model's gradient buffer (param after param, each rounded up to 16
 * floats whose tail stays zero): then one all-reduce of the span; else through a packed copy. */
ftc_status ftc_tr_dp_allreduce_grads(const ftc_train_dp *dp, ftc_optimizer *o, float **pack, ftc_err *err) {
    float *first = o->params[0]->grad, *end = first;
    bool span = true;
    for (int i = 0; i < o->n && span; i++) {
        float *g = o->params[i]->grad;
        if (g < end) span = false;
        end = g + o->params[i]->numel;
    }
    ftc_status s;
    if (span) {
        if ((s = dp->allreduce_sum_f32(dp->ctx, first, (int64_t)(end - first), err)) != FTC_OK)
            return ftc_err_prefix(err, "summing the gradients over %d ranks", dp->size);
        return FTC_OK;
    }
    if (!*pack && !(*pack = malloc((size_t)o->n_values * sizeof **pack)))
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for the packed gradients (%lld floats)", (long long)o->n_values);
    for (int i = 0; i < o->n; i++)
        memcpy(*pack + o->offset[i], o->params[i]->grad, (size_t)o->params[i]->numel * sizeof(float));
    if ((s = dp->allreduce_sum_f32(dp->ctx, *pack, o->n_values, err)) != FTC_OK)
        return ftc_err_prefix(err, "summing the gradients over %d ranks", dp->size);
    for (int i = 0; i < o->n; i++)
        memcpy(o->params[i]->grad, *pack + o->offset[i], (size_t)o->params[i]->numel * sizeof(float));
    return FTC_OK;
}

/* Counts as doubles (exact below 2^53), summed, written back. */
ftc_status ftc_tr_dp_reduce_class(const ftc_train_dp *dp, ftc_class_metrics *cm, ftc_err *err) {
    int64_t K2 = (int64_t)cm->n_classes * cm->n_classes, n = K2 + 3;
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < K2; i++) v[i] = (double)cm->confusion[i];
    v[K2] = cm->nll_sum, v[K2 + 1] = (double)cm->n_with_loss, v[K2 + 2] = (double)cm->n_examples;
    ftc_status s = dp->allreduce_sum_f64(dp->ctx, v, n, err);
    if (s == FTC_OK) {
        for (int64_t i = 0; i < K2; i++) cm->confusion[i] = (int64_t)v[i];
        cm->nll_sum = v[K2], cm->n_with_loss = (int64_t)v[K2 + 1], cm->n_examples = (int64_t)v[K2 + 2];
    }
    free(v);
    return s != FTC_OK ? ftc_err_prefix(err, "summing the evaluation over %d ranks", dp->size) : FTC_OK;
}

ftc_status ftc_tr_dp_reduce_lm(const ftc_train_dp *dp, ftc_lm_metrics *lm, ftc_err *err) {
    double v[4] = {(double)lm->n_sequences, (double)lm->n_tokens, (double)lm->n_correct, lm->nll_sum};
    ftc_status s = dp->allreduce_sum_f64(dp->ctx, v, 4, err);
    if (s != FTC_OK) return ftc_err_prefix(err, "summing the evaluation over %d ranks", dp->size);
    lm->n_sequences = (int64_t)v[0], lm->n_tokens = (int64_t)v[1], lm->n_correct = (int64_t)v[2], lm->nll_sum = v[3];
    return FTC_OK;
}

/* ---- overlap: the gradient all-reduce in buckets started while the backward of earlier blocks runs ---- */
bool ftc_tr_dp_overlaps(const ftc_train_dp *dp) {
    return ftc_train_dp_active(dp) && dp->allreduce_start_f32 && dp->allreduce_wait_all;
}

static int bucket_key(const ftc_param *p) {
    switch (p->role) {
    case FTC_PARAM_BLOCK: return p->block;
    case FTC_PARAM_FINAL_NORM: case FTC_PARAM_LM_HEAD: case FTC_PARAM_POOLER: case FTC_PARAM_CLASSIFIER: return INT_MAX;
    default: return -1; /* embeddings (a tied LM head is one) and anything else: only when the backward returns */
    }
}
static int by_grad(const void *a, const void *b) {
    const float *x = (*(const ftc_param *const *)a)->grad, *y = (*(const ftc_param *const *)b)->grad;
    return x < y ? -1 : x > y;
}
static int by_key_desc(const void *a, const void *b) { /* then by address: a total order, the same on every rank */
    const ftc_tr_bucket *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->p < y->p ? -1 : x->p > y->p;
}

ftc_status ftc_tr_dp_buckets_plan(ftc_tr_buckets *bk, const ftc_optimizer *o, ftc_err *err) {
    bk->n = bk->next = 0;
    if (o->n == 0) return FTC_OK;
    const ftc_param **ps = malloc((size_t)o->n * sizeof *ps);
    if (!ps) return ftc_errf(err, FTC_E_NOMEM, "out of memory for the gradient buckets");
    for (int i = 0; i < o->n; i++) ps[i] = o->params[i];
    qsort(ps, (size_t)o->n, sizeof *ps, by_grad);
    if (bk->cap < o->n) {
        ftc_tr_bucket *b = realloc(bk->b, (size_t)o->n * sizeof *b);
        if (!b) { free(ps); return ftc_errf(err, FTC_E_NOMEM, "out of memory for the gradient buckets"); }
        bk->b = b, bk->cap = o->n;
    }
    for (int i = 0; i < o->n; i++) {
        const ftc_param *p = ps[i];
        int key = bucket_key(p);
        ftc_tr_bucket *last = bk->n ? &bk->b[bk->n - 1] : NULL;
        /* the same key and right after the last one (past its zero padding to 16 floats): one span */
        if (last && last->key == key && p->grad >= last->p + last->n && p->grad - (last->p + last->n) < 16) {
            last->n = p->grad + p->numel - last->p;
            continue;
        }
        bk->b[bk->n++] = (ftc_tr_bucket){.p = p->grad, .n = p->numel, .key = key};
    }
    free(ps);
    qsort(bk->b, (size_t)bk->n, sizeof *bk->b, by_key_desc);
    return FTC_OK;
}

ftc_status ftc_tr_dp_buckets_start(const ftc_train_dp *dp, ftc_tr_buckets *bk, int key, ftc_err *err) {
    ftc_status s;
    for (; bk->next < bk->n && bk->b[bk->next].key >= key; bk->next++)
        if ((s = dp->allreduce_start_f32(dp->ctx, bk->b[bk->next].p, bk->b[bk->next].n, err)) != FTC_OK)
            return ftc_err_prefix(err, "summing the gradients over %d ranks", dp->size);
    if (dp->allreduce_progress && (s = dp->allreduce_progress(dp->ctx, err)) != FTC_OK)
        return ftc_err_prefix(err, "summing the gradients over %d ranks", dp->size);
    return FTC_OK;
}

void ftc_tr_dp_buckets_free(ftc_tr_buckets *bk) {
    free(bk->b);
    *bk = (ftc_tr_buckets){0};
}

/* The training loop shared by every method and task. One step: zero grads, for each micro-batch of the
 * accumulation window forward + backward (the loss weighted by the window's share of target tokens, so
 * 4 x batch 2 equals batch 8), clip, AdamW at the scheduled lr. Around it: evaluation, early stopping,
 * checkpoints (resume continues bit-identically), metrics.jsonl and progress. The parts live beside it: batch.c
 * (collation), freeze.c (which parameters train), evaluate.c, runfiles.c (the run directory). Data parallel
 * (c->dp, several processes; dp.c, docs/distributed.md): every rank runs this loop on its share of each micro-batch,
 * the gradients are summed once per step before the clipping, and rank 0 alone writes the run directory. */
#include "train_internal.h"
#include "ftc/base.h"
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void epoch_order(ftc_tr_run *r) {
    ftc_rng rng;
    /* the order of epoch e depends only on (seed, e): resuming needs just the epoch and position */
    ftc_rng_seed(&rng, r->c->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)r->epoch + 1);
    for (int i = 0; i < r->train->n; i++) r->order[i] = i;
    ftc_rng_shuffle_i32(&rng, r->order, (size_t)r->train->n);
    if (r->c->group_by_length && !r->c->pack && !r->feat_train)
        ftc_tr_group_by_length(r->order, r->train, r->c->batch, r->sort_keys);
}

static bool improved(const ftc_tr_run *r, double v) {
    if (isnan(v)) return false;
    if (isnan(r->best)) return true;
    return r->c->metric == FTC_METRIC_VAL_LOSS ? v < r->best : v > r->best;
}

/* --average-last F: the weights after each of the last ceil(F x total) steps are averaged. How many of them the
 * first `step` steps hold (0: the average has not begun). */
static int64_t average_count(const ftc_tr_run *r, int64_t step) {
    if (r->c->average_last <= 0) return 0;
    int64_t window = (int64_t)ceil(r->c->average_last * (double)r->total_steps - 1e-9);
    int64_t k = step - (r->total_steps - window);
    return k > 0 ? k : 0;
}

/* Exchanges the model's weights with their average when it has begun (twice: back as they were). */
static bool swap_average(ftc_tr_run *r) {
    if (!r->opt.avg || average_count(r, r->step) == 0) return false;
    ftc_optim_average_swap(&r->opt);
    ftc_model_weights_changed(r->m); /* bf16 copies */
    return true;
}

/* Evaluates the model's current weights on validation, logs, keeps the best; sets *stop when patience runs out. */
static ftc_status eval_and_track_weights(ftc_tr_run *r, bool *stop, ftc_err *err) {
    ftc_eval_result er;
    ftc_status s = ftc_tr_evaluate(r->m, r->c->task, r->val, r->feat_val, &r->bt, r->c->batch, r->c, &er, NULL, err);
    if (s != FTC_OK) return ftc_err_prefix(err, "validation at step %lld", (long long)r->step);
    json_t *o = json_pack("{s:I, s:f}", "step", (json_int_t)r->step, "epoch",
                          (double)r->step / (double)r->steps_per_epoch);
    json_object_set_new(o, "val_loss", isfinite(er.loss) ? json_real(er.loss) : json_null());
    double metric = er.loss;
    if (r->c->task == FTC_TASK_CLASSIFY) {
        json_object_set_new(o, "accuracy", json_real(er.accuracy));
        json_object_set_new(o, "macro_f1", json_real(er.macro_f1));
        if (r->c->metric == FTC_METRIC_ACCURACY) metric = er.accuracy;
        if (r->c->metric == FTC_METRIC_MACRO_F1) metric = er.macro_f1;
    } else {
        json_object_set_new(o, "val_perplexity", isfinite(er.loss) ? json_real(exp(er.loss)) : json_null());
        json_object_set_new(o, "token_accuracy", isfinite(er.token_accuracy) ? json_real(er.token_accuracy) : json_null());
    }
    if ((s = ftc_tr_log_json(r, o, err)) != FTC_OK) return s;
    ftc_tr_at_point(r->c, "eval-logged");
    bool better = improved(r, metric);
    if (!r->quiet) { /* the validation figures on a line of their own (over the progress bar on a terminal) */
        fprintf(stderr, "%sval step %lld (epoch %.2f): loss %.4f", isatty(STDERR_FILENO) ? "\r\033[K" : "",
                (long long)r->step, (double)r->step / (double)r->steps_per_epoch, er.loss);
        if (r->c->task == FTC_TASK_CLASSIFY) fprintf(stderr, ", accuracy %.4f, macro-F1 %.4f", er.accuracy, er.macro_f1);
        else fprintf(stderr, ", perplexity %.3f, token accuracy %.4f", exp(er.loss), er.token_accuracy);
        fprintf(stderr, "%s\n", better ? " (best so far)" : "");
    }
    if (better) {
        r->best = metric;
        r->best_step = r->step;
        r->bad_evals = 0;
        json_t *st = json_pack("{s:I, s:f, s:s}", "step", (json_int_t)r->step, "value", metric, "metric",
                               ftc_metric_name(r->c->metric));
        s = r->writer ? ftc_checkpoint_save(r->path_best, r->m, NULL, st, err) : FTC_OK;
        json_decref(st);
        if (s != FTC_OK) return s;
        ftc_tr_at_point(r->c, "best-saved");
    } else {
        r->bad_evals++;
        if (r->c->patience > 0 && r->bad_evals >= r->c->patience) *stop = true;
    }
    return FTC_OK;
}

/* The evaluation of the run: of the weight average once it has begun (then back to the weights that train). */
static ftc_status eval_and_track(ftc_tr_run *r, bool *stop, ftc_err *err) {
    bool swapped = swap_average(r);
    ftc_status s = eval_and_track_weights(r, stop, err);
    if (swapped) swap_average(r);
    return s;
}

/* Overlap: the backward of the window's last micro-batch says when a block's gradients are final; their buckets'
 * sums over the ranks start then, while the earlier blocks' backward runs. */
static ftc_status block_done(void *ctx, int block, ftc_err *err) {
    ftc_tr_run *r = ctx;
    double t0 = ftc_now();
    ftc_status s = ftc_tr_dp_buckets_start(r->dp, &r->buckets, block, err);
    r->comm_seconds += ftc_now() - t0;
    return s;
}

/* One optimizer step over the next grad_accum micro-batches. *loss: the window's mean loss. Each micro-batch's
 * weight (its share n_k / N of the window's targets, counted before the run) goes into its loss backward, so the
 * gradients sum to the window's mean-loss gradient with one collation per micro-batch and no rescaling pass. A loss
 * or gradient norm that is not finite: FTC_E_DIVERGED naming the step and micro-batch, and no update. */
static ftc_status train_step(ftc_tr_run *r, double *loss, double *grad_norm, float *lr_used, ftc_err *err) {
    const ftc_train_config *c = r->c;
    int64_t n_micro = r->micro_per_epoch - r->micro_pos;
    if (n_micro > c->grad_accum) n_micro = c->grad_accum;
    int64_t *counts = r->counts, total = 0;
    for (int64_t k = 0; k < n_micro; k++) {
        int64_t first = (r->micro_pos + k) * c->batch, end = first + c->batch;
        if (end > r->train->n) end = r->train->n;
        counts[k] = 0;
        for (int64_t i = first; i < end; i++) counts[k] += r->targets[r->order[i]];
        total += counts[k];
    }
    if (r->dp) { /* each rank its own dropout masks, from (seed, step, rank) alone: a resumed run draws the same */
        ftc_rng_seed(ftc_model_rng(r->m), (c->seed ^ 0xD0D0ULL) * 0x9E3779B97F4A7C15ULL + (uint64_t)r->step * 0x100000001B3ULL +
                                              (uint64_t)r->dp->rank + 1);
    }
    bool overlap = ftc_tr_dp_overlaps(r->dp) && total > 0;
    ftc_status s = FTC_OK;
    if (overlap && (s = ftc_tr_dp_buckets_plan(&r->buckets, &r->opt, err)) != FTC_OK) return s;
    ftc_model_zero_grad(r->m);
    double sum = 0;
    int64_t tokens = 0, padded = 0;
    for (int64_t k = 0; k < n_micro; k++) {
        int64_t first = (r->micro_pos + k) * c->batch;
        int B = (int)(r->train->n - first < c->batch ? r->train->n - first : c->batch), lo, hi;
        /* data parallel: this rank's rows of the micro-batch, weighted by their own share of the window's targets
         * (all of them in one process), so the ranks' gradients sum to the one-process gradient */
        ftc_tr_dp_shard(r->dp, B, &lo, &hi);
        const int32_t *idx = r->order + first + lo;
        int64_t n_k = counts[k];
        if (r->dp) {
            n_k = 0;
            for (int i = 0; i < hi - lo; i++) n_k += r->targets[idx[i]];
        }
        B = hi - lo;
        if (B == 0) continue;
        ftc_tr_collate(&r->bt, r->train, idx, B, c->task);
        tokens += r->bt.n_tokens;
        padded += (int64_t)r->bt.b.B * r->bt.b.T;
        if (n_k == 0) continue; /* nothing to learn from: no target token */
        float l;
        double w = (double)n_k / (double)total;
        ftc_model_set_loss_weight(r->m, (float)w); /* the head's gradient then comes with the forward */
        if (r->feat_train) {
            ftc_tr_gather_rows(r->feat_batch, r->feat_train, idx, B, ftc_model_config_of(r->m)->hidden_size);
            s = ftc_model_head_forward(r->m, r->feat_batch, B, r->bt.class_labels, true, &l, err);
        } else {
            s = ftc_model_forward(r->m, &r->bt.b, true, &l, err);
        }
        if (s != FTC_OK) return s;
        sum += w * l;
        if (!isfinite(l) && !r->dp) /* data parallel: the ranks decide together below, on the summed loss */
            return ftc_errf(err, FTC_E_DIVERGED, "training loss is %s at step %lld (epoch %lld), micro-batch %lld of %lld",
                            isnan(l) ? "NaN" : "Inf", (long long)r->step + 1, (long long)r->epoch + 1,
                            (long long)k + 1, (long long)n_micro);
        /* overlap: the last micro-batch's backward starts the buckets (a rank that skips it starts them below) */
        if (overlap && k == n_micro - 1) ftc_model_set_block_done(r->m, block_done, r);
        s = ftc_model_backward_weighted(r->m, (float)w, err);
        ftc_model_set_block_done(r->m, NULL, NULL);
        if (s != FTC_OK) return s;
    }
    if (overlap) { /* the buckets not started yet (embeddings, or all when this rank had no backward), every rank in
                    * the same order; finished below, after the loss's sum */
        double t0 = ftc_now();
        s = ftc_tr_dp_buckets_start(r->dp, &r->buckets, INT_MIN, err);
        r->comm_seconds += ftc_now() - t0;
        if (s != FTC_OK) return s;
    }
    if (r->dp) { /* the loss, the tokens and a stop request summed over the ranks, then the gradients */
        double v[4] = {sum, (double)tokens, (double)padded, c->stop && *c->stop ? 1.0 : 0.0};
        if ((s = r->dp->allreduce_sum_f64(r->dp->ctx, v, 4, err)) != FTC_OK)
            return ftc_err_prefix(err, "summing the loss over %d ranks", r->dp->size);
        if (overlap) {
            double t0 = ftc_now();
            if ((s = r->dp->allreduce_wait_all(r->dp->ctx, err)) != FTC_OK)
                return ftc_err_prefix(err, "summing the gradients over %d ranks", r->dp->size);
            r->comm_seconds += ftc_now() - t0;
        }
        sum = v[0], tokens = (int64_t)v[1], padded = (int64_t)v[2];
        r->stop_agreed = v[3] > 0;
        if (!isfinite(sum))
            return ftc_errf(err, FTC_E_DIVERGED, "training loss is %s at step %lld (epoch %lld), summed over %d ranks",
                            isnan(sum) ? "NaN" : "Inf", (long long)r->step + 1, (long long)r->epoch + 1, r->dp->size);
        if (total > 0 && !overlap) { /* the time waiting for the slowest rank (a barrier) apart from the transfer itself */
            double t0 = ftc_now();
            if ((s = r->dp->barrier(r->dp->ctx, err)) != FTC_OK) return ftc_err_prefix(err, "waiting for the ranks");
            double t1 = ftc_now();
            if ((s = ftc_tr_dp_allreduce_grads(r->dp, &r->opt, &r->grad_pack, err)) != FTC_OK) return s;
            r->wait_seconds += t1 - t0;
            r->comm_seconds += ftc_now() - t1;
        }
    }
    r->tokens_seen += tokens;
    r->padded_tokens += padded;
    r->micro_pos += n_micro;
    *loss = sum;
    *lr_used = 0;
    *grad_norm = 0;
    if (total == 0) return FTC_OK;
    *grad_norm = ftc_grad_norm(&r->opt); /* the clip is applied inside the update (ftc_optim_step_scaled) */
    if (!isfinite(*grad_norm))
        return ftc_errf(err, FTC_E_DIVERGED, "gradient norm is %s at step %lld (epoch %lld), loss %g over %lld "
                        "micro-batch(es)", isnan(*grad_norm) ? "NaN" : "Inf", (long long)r->step + 1,
                        (long long)r->epoch + 1, *loss, (long long)n_micro);
    *lr_used = (float)(c->lr * ftc_schedule_factor(c->schedule, r->step, r->warmup_steps, r->total_steps));
    ftc_optim_step_scaled(&r->opt, *lr_used, ftc_clip_coef(*grad_norm, c->clip));
    ftc_model_weights_changed(r->m); /* bf16 copies are refreshed before the next forward */
    return FTC_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A timing run's figures: the median step after the warm-up (times[0]), and an evaluation pass estimated at a
 * third of a training step's cost per token (forward only), nothing for a head on cached features. */
static void finish_timing(ftc_train_plan *p, double *times, int n, const ftc_dataset *train, const ftc_dataset *val,
                          bool cached) {
    int first = n > 1 ? 1 : 0;
    qsort(times + first, (size_t)(n - first), sizeof *times, cmp_double);
    int k = n - first;
    p->measured_steps = k;
    p->step_seconds = k <= 0 ? 0 : k % 2 ? times[first + k / 2] : 0.5 * (times[first + k / 2 - 1] + times[first + k / 2]);
    p->measured_peak_rss = ftc_plan_rss_peak();
    if (val && !cached && p->steps_per_epoch > 0 && p->tokens_per_epoch > 0) {
        double train_tok_s = (double)p->tokens_per_epoch / (double)p->steps_per_epoch / p->step_seconds;
        int64_t val_tokens = 0;
        for (int i = 0; i < val->n; i++) val_tokens += val->ex[i].len < p->seq_len ? val->ex[i].len : p->seq_len;
        p->eval_seconds = (double)val_tokens / (3.0 * train_tok_s);
    }
    (void)train;
}

/* A step diverged (err: FTC_E_DIVERGED naming the step and micro-batch): the last good checkpoint becomes
 * RUNDIR/model, so `ftc eval --model RUNDIR` takes it, and the message says how to evaluate or continue it. */
static ftc_status diverged(ftc_tr_run *r, int64_t last_good_ckpt, ftc_err *err) {
    const ftc_train_config *c = r->c;
    char what[sizeof err->msg];
    snprintf(what, sizeof what, "%s", err->msg);
    if (last_good_ckpt < 0)
        return ftc_errf(err, FTC_E_DIVERGED, "%s: stopped before any checkpoint was written. Lower --lr or check the "
                        "data.", what);
    ftc_err me;
    ftc_status ms = ftc_checkpoint_load(r->path_ckpt, r->m, NULL, NULL, &me);
    if (ms == FTC_OK && r->writer) ms = ftc_tr_save_final_model(r, &me);
    if (ms == FTC_OK)
        return ftc_errf(err, FTC_E_DIVERGED, "%s: stopped; the last good checkpoint (step %lld) is intact in %s and "
                        "written as %s/%s. Evaluate it with ftc eval --model %s --data FILE, or continue from it with "
                        "ftc train --out %s --resume --lr LOWER (or check the data).",
                        what, (long long)last_good_ckpt, r->path_ckpt, c->out, ftc_tr_final_name(c), c->out, c->out);
    return ftc_errf(err, FTC_E_DIVERGED, "%s: stopped; the last good checkpoint (step %lld) is intact in %s (continue "
                    "from it with ftc train --out %s --resume --lr LOWER); writing it as %s/%s failed: %s",
                    what, (long long)last_good_ckpt, r->path_ckpt, c->out, c->out, ftc_tr_final_name(c), me.msg);
}

/* Checks what the run is given, creates RUNDIR (clearing a killed run's temporary files) and names its files;
 * *resuming: --resume and a checkpoint to resume from. */
static ftc_status open_run(ftc_tr_run *r, bool *resuming, ftc_err *err) {
    const ftc_train_config *c = r->c;
    const ftc_dataset *train = r->train;
    if (c->lr < 0)
        return ftc_errf(err, FTC_E_USAGE, "no learning rate: finalize the config and call ftc_train_config_fit_model");
    if (train->n == 0) return ftc_errf(err, FTC_E_INPUT, "%s: no training examples", c->data);
    if (c->task == FTC_TASK_CLASSIFY)
        for (int i = 0; i < train->n; i++)
            if (train->ex[i].label < 0 || train->ex[i].label >= train->num_labels)
                return ftc_errf(err, FTC_E_INPUT, "example %d: class %d outside [0, %d)", i, train->ex[i].label,
                                train->num_labels);
    if (r->dp && c->batch % r->dp->size)
        return ftc_errf(err, FTC_E_USAGE, "--batch %d is not divisible by the %d data-parallel ranks: each rank takes "
                        "an equal share of every batch (use a multiple of %d)", c->batch, r->dp->size, r->dp->size);
    if (r->dp && c->measure_steps > 0)
        return ftc_errf(err, FTC_E_USAGE, "timing runs (ftc plan) take one process, not %d ranks", r->dp->size);
    ftc_status s;
    if (r->writer) { /* data parallel: rank 0 alone writes RUNDIR */
        if ((s = ftc_mkdirs(c->out, err)) != FTC_OK) return s;
        ftc_tr_remove_run_temps(c->out); /* what a killed run left: checkpoint.ftc.tmp.<pid>, model.tmp.<pid>, ... */
    }
    snprintf(r->path_metrics, sizeof r->path_metrics, "%s/metrics.jsonl", c->out);
    snprintf(r->path_ckpt, sizeof r->path_ckpt, "%s/checkpoint.ftc", c->out);
    snprintf(r->path_best, sizeof r->path_best, "%s/best.ftc", c->out);
    *resuming = c->resume && ftc_file_exists(r->path_ckpt);
    if (!c->resume && ftc_file_exists(r->path_ckpt))
        return ftc_errf(err, FTC_E_USAGE, "%s already holds a run (checkpoint.ftc): use --resume, or another --out",
                        c->out);
    return ftc_tr_check_head_labels(r->m, train, err);
}

/* The rows the model computes for a micro-batch: its examples, twice each under R-Drop. */
static int model_rows(const ftc_tr_run *r) {
    return r->c->task == FTC_TASK_CLASSIFY && r->c->rdrop > 0 ? 2 * r->local_batch : r->local_batch;
}

/* The memory plan, before the activations are allocated: they grow linearly with the batch, so one row's
 * reservation says what batch rows need (and a run that cannot fit is refused before it starts). *skip: a timing
 * run that does not fit (ftc plan reports it; nothing to time). */
static ftc_status plan_memory(ftc_tr_run *r, int T, int epochs, bool measure, ftc_train_plan *p, bool *skip,
                              ftc_err *err) {
    const ftc_train_config *c = r->c;
    const ftc_dataset *train = r->train, *val = r->val;
    ftc_model *m = r->m;
    ftc_status s;
    *skip = false;
    int64_t feat = ftc_tr_uses_feature_cache(c) ? (int64_t)(train->n + (val ? val->n : 0)) *
                                                      ftc_model_config_of(m)->hidden_size * (int64_t)sizeof(float)
                                                : 0;
    /* the arena sized without allocating it (one row's reserve only): a plan that cannot fit must not fail here */
    if ((s = ftc_model_reserve(m, 1, T, err)) != FTC_OK) return s;
    int64_t act = ftc_model_activation_bytes_for(m, model_rows(r), T);
    if (measure) { /* the same with --grad-checkpoint toggled, for the plan's two columns */
        if ((s = ftc_model_set_grad_checkpoint(m, !c->grad_checkpoint, err)) != FTC_OK) return s;
        p->activation_bytes_other = ftc_model_activation_bytes_for(m, model_rows(r), T);
        if ((s = ftc_model_set_grad_checkpoint(m, c->grad_checkpoint, err)) != FTC_OK) return s;
    }
    ftc_plan_memory(m, r->local_batch, T, act, feat, p);
    if (c->average_last > 0) { /* the weight average: one more f32 per trainable value */
        p->optimizer_bytes += 4 * p->trainable_params;
        p->peak_bytes += 4 * p->trainable_params;
    }
    p->epochs = epochs;
    int64_t micro = (train->n + c->batch - 1) / c->batch; /* as the run counts them */
    p->steps_per_epoch = (micro + c->grad_accum - 1) / c->grad_accum;
    p->total_steps = c->max_steps > 0 ? c->max_steps : epochs * p->steps_per_epoch;
    for (int i = 0; i < train->n; i++) p->tokens_per_epoch += train->ex[i].len < T ? train->ex[i].len : T;
    ftc_err why;
    p->fits = ftc_plan_check_memory(p, &why) == FTC_OK;
    if (!p->fits && measure) {
        *skip = true;
        return FTC_OK;
    }
    if (!p->fits && c->memory_check) {
        *err = why;
        return FTC_E_INPUT;
    }
    return FTC_OK;
}

/* AdamW over the trainable parameters (a new head at its own rate). */
static ftc_status make_optimizer(ftc_tr_run *r, bool new_head, ftc_err *err) {
    const ftc_train_config *c = r->c;
    ftc_adamw_hparams h = {c->beta1, c->beta2, c->adam_eps, c->weight_decay};
    int np = ftc_model_n_params(r->m);
    ftc_param **params = malloc((size_t)np * sizeof *params);
    if (!params) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < np; i++) params[i] = ftc_model_param(r->m, i);
    ftc_status s = ftc_optim_init(&r->opt, params, np, &h, err);
    free(params);
    if (s == FTC_OK) s = ftc_tr_set_head_lr(&r->opt, c, new_head, err);
    return s;
}

/* Head on a frozen backbone: every example's head input, computed once. A timing run (measure) runs the encoder
 * over a sample and scales it to every example (p->feature_seconds; *sample_seconds); the rest of the cache is
 * zeros. */
static ftc_status cache_features(ftc_tr_run *r, bool measure, ftc_train_plan *p, double *sample_seconds, ftc_err *err) {
    const ftc_train_config *c = r->c;
    const ftc_dataset *train = r->train, *val = r->val;
    size_t C = (size_t)ftc_model_config_of(r->m)->hidden_size;
    r->feat_train = malloc((size_t)train->n * C * sizeof(float));
    r->feat_val = val ? malloc((size_t)val->n * C * sizeof(float)) : NULL;
    r->feat_batch = malloc((size_t)r->local_batch * C * sizeof(float));
    if (!r->feat_train || (val && !r->feat_val) || !r->feat_batch)
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for the feature cache (%d x %zu floats)", train->n, C);
    ftc_status s;
    if (measure) {
        memset(r->feat_train, 0, (size_t)train->n * C * sizeof(float));
        ftc_dataset sample = *train;
        sample.n = train->n < 8 * c->batch ? train->n : 8 * c->batch;
        double t0 = ftc_now();
        if ((s = ftc_tr_extract_features(r->m, &sample, &r->bt, c->batch, r->feat_train, "features", true, NULL, err)) !=
            FTC_OK)
            return s;
        *sample_seconds = ftc_now() - t0;
        p->feature_seconds = *sample_seconds * (double)(train->n + (val ? val->n : 0)) / sample.n;
        return FTC_OK;
    }
    int lb = r->local_batch;
    if ((s = ftc_tr_extract_features(r->m, train, &r->bt, lb, r->feat_train, "features", r->quiet, r->dp, err)) != FTC_OK ||
        (val && (s = ftc_tr_extract_features(r->m, val, &r->bt, lb, r->feat_val, "val features", r->quiet, r->dp,
                                             err)) != FTC_OK))
        ftc_err_prefix(err, "computing the frozen encoder's features");
    return s;
}

/* Steps, warm-up and evaluations (every eval_every steps, at each epoch end and at the end) into r and p. */
static void schedule_run(ftc_tr_run *r, int epochs, ftc_train_plan *p) {
    const ftc_train_config *c = r->c;
    r->micro_per_epoch = (r->train->n + c->batch - 1) / c->batch;
    r->steps_per_epoch = (r->micro_per_epoch + c->grad_accum - 1) / c->grad_accum;
    r->total_steps = c->max_steps > 0 ? c->max_steps : epochs * r->steps_per_epoch;
    r->warmup_steps = c->warmup >= 1 ? (int64_t)c->warmup : (int64_t)ceil(c->warmup * (double)r->total_steps);
    p->total_steps = r->total_steps;
    p->steps_per_epoch = r->steps_per_epoch;
    p->warmup_steps = r->warmup_steps;
    if (r->val) {
        int64_t ev = c->eval_every > 0 ? r->total_steps / c->eval_every : 0;
        ev += r->total_steps / (r->steps_per_epoch > 0 ? r->steps_per_epoch : 1) + 1;
        p->evaluations = (int)(ev < r->total_steps ? ev : r->total_steps);
    }
}

/* Everything a run holds before its first step: the model prepared and reserved for the longest batch, the memory
 * plan, batches, optimizer, feature cache, schedule, the per-example target counts, config.resolved.json. */
static ftc_status setup_run(ftc_tr_run *r, int epochs, bool measure, ftc_train_result *res, bool *skip,
                            double *sample_seconds, ftc_err *err) {
    const ftc_train_config *c = r->c;
    ftc_model *m = r->m;
    ftc_status s;
    bool new_head = c->task == FTC_TASK_CLASSIFY && ftc_train_head_is_new(m, r->train->num_labels);
    if ((s = ftc_train_prepare_model(m, c, r->train->num_labels, err)) != FTC_OK) return s;
    int T = ftc_tr_max_len(r->train, c->max_len);
    if (r->val) { int Tv = ftc_tr_max_len(r->val, c->max_len); if (Tv > T) T = Tv; }
    if ((s = ftc_model_set_grad_checkpoint(m, c->grad_checkpoint, err)) != FTC_OK) return s;
    /* a causal LM's logits a few rows at a time, never [batch x T, vocab] with its gradient (evaluation reads
     * them a piece at a time too) */
    if (c->task == FTC_TASK_CAUSAL_LM && (s = ftc_model_set_loss_only(m, true, err)) != FTC_OK) return s;
    if ((s = plan_memory(r, T, epochs, measure, &res->plan, skip, err)) != FTC_OK || *skip) return s;
    if ((s = ftc_model_reserve(m, model_rows(r), T, err)) != FTC_OK) return s;
    res->plan.peak_bytes += ftc_model_activation_bytes(m) - res->plan.activation_bytes; /* the exact arena */
    res->plan.activation_bytes = ftc_model_activation_bytes(m);
    if ((s = ftc_tr_batcher_init(&r->bt, r->local_batch, T, err)) != FTC_OK) return s;
    if ((s = make_optimizer(r, new_head, err)) != FTC_OK) return s;
    res->trainable_params = ftc_model_count_params(m, true);
    res->cached_features = ftc_tr_uses_feature_cache(c);
    if (res->cached_features && (s = cache_features(r, measure, &res->plan, sample_seconds, err)) != FTC_OK) return s;
    schedule_run(r, epochs, &res->plan);
    r->order = malloc((size_t)r->train->n * sizeof *r->order);
    r->sort_keys = malloc((size_t)(r->train->n > 0 ? r->train->n : 1) * sizeof *r->sort_keys);
    r->counts = malloc((size_t)c->grad_accum * sizeof *r->counts);
    r->targets = ftc_tr_target_counts(r->train, T, c->task);
    if (!r->order || !r->sort_keys || !r->counts || !r->targets) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    return r->writer ? ftc_tr_write_run_config(r, epochs, T, err) : FTC_OK;
}

/* The step's line in metrics.jsonl (every log_every steps, the first and the last) and the progress bar. */
static ftc_status log_step(ftc_tr_run *r, double loss, float lr, double gnorm, ftc_progress *prog, ftc_err *err) {
    const ftc_train_config *c = r->c;
    double el = ftc_now() - r->t_start, tok_s = el > 0 ? (double)(r->tokens_seen - r->tokens_at_start) / el : 0;
    double epoch_f = (double)r->epoch + (double)r->micro_pos / (double)r->micro_per_epoch;
    if (r->step % c->log_every == 0 || r->step == 1 || r->step == r->total_steps) {
        json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)r->step, "epoch", epoch_f,
                              "loss", loss, "lr", (double)lr, "grad_norm", gnorm, "tok_s", round(tok_s), "elapsed_s",
                              round((r->elapsed_before + ftc_now() - r->t_run) * 10) / 10);
        if (r->dp) { /* data parallel: the ranks; this rank's seconds in the gradient all-reduce and waiting for the
                      * slowest rank before it, so far */
            json_object_set_new(o, "dp_ranks", json_integer(r->dp->size));
            json_object_set_new(o, "dp_comm_s", json_real(round(r->comm_seconds * 1000) / 1000));
            json_object_set_new(o, "dp_wait_s", json_real(round(r->wait_seconds * 1000) / 1000));
            /* overlap: the buckets the gradient sum went in (docs/distributed.md "Overlap") */
            if (ftc_tr_dp_overlaps(r->dp)) json_object_set_new(o, "dp_buckets", json_integer(r->buckets.n));
        }
        ftc_status s = ftc_tr_log_json(r, o, err);
        if (s != FTC_OK) return s;
    }
    if (!r->quiet) {
        char extra[200];
        snprintf(extra, sizeof extra, "epoch %.2f loss %.4f lr %.3g tok/s %.0f", epoch_f, loss, lr, tok_s);
        ftc_progress_update(prog, (long)r->step, extra);
    }
    return FTC_OK;
}

/* After a step: validation, the epoch's end, checkpoints, a stop request. *stop: early stopping ended the run;
 * *done: leave the loop (the caller asked to stop: res->interrupted). */
static ftc_status after_step(ftc_tr_run *r, bool epoch_end, bool *stop, int64_t *last_good_ckpt, bool *done,
                             ftc_train_result *res, ftc_err *err) {
    const ftc_train_config *c = r->c;
    ftc_status s;
    bool last = r->step >= r->total_steps;
    if (r->val && ((c->eval_every > 0 && r->step % c->eval_every == 0) || epoch_end || last)) {
        if ((s = eval_and_track(r, stop, err)) != FTC_OK) return s;
    }
    if (epoch_end) { r->epoch++; r->micro_pos = 0; epoch_order(r); }
    r->stopped = *stop;
    if ((c->save_every > 0 && r->step % c->save_every == 0) || epoch_end || last || *stop) {
        if (r->writer && (s = ftc_tr_save_checkpoint(r, last || *stop, err)) != FTC_OK) return s;
        *last_good_ckpt = r->step;
    }
    /* data parallel: a request any rank saw at this step (agreed in train_step), so every rank stops here */
    bool asked = r->dp ? r->stop_agreed : c->stop && *c->stop;
    if (asked && !last) { /* asked to stop: this step is done, keep it */
        if (*last_good_ckpt != r->step && r->writer && (s = ftc_tr_save_checkpoint(r, false, err)) != FTC_OK) return s;
        *last_good_ckpt = r->step;
        res->interrupted = true;
        *done = true;
    }
    return FTC_OK;
}

/* The steps. measure (a timing run): step_times[0..*n_timed) get each step's seconds and nothing is written. */
static ftc_status run_steps(ftc_tr_run *r, bool resuming, bool *stop, double *step_times, int *n_timed,
                            ftc_train_result *res, ftc_err *err) {
    const ftc_train_config *c = r->c;
    bool measure = step_times != NULL;
    ftc_progress prog;
    if (!r->quiet) ftc_progress_start(&prog, "train", (long)r->total_steps);
    r->t_start = ftc_now();
    r->tokens_at_start = r->tokens_seen;
    int64_t last_good_ckpt = resuming ? r->step : -1;
    ftc_status s = FTC_OK;
    bool done = false;
    double pad_per_step = measure && !r->feat_train ? ftc_tr_padded_tokens_per_step(r->order, r->train, c->batch,
                                                                                      r->bt.max_T, r->micro_per_epoch,
                                                                                      r->steps_per_epoch)
                                                    : 0;
    while (r->step < r->total_steps && !*stop && !done) {
        double loss = 0, gnorm = 0, t_step = ftc_now();
        float lr = 0;
        int64_t padded_before = r->padded_tokens;
        s = train_step(r, &loss, &gnorm, &lr, err);
        if (s == FTC_E_DIVERGED && !measure) {
            s = diverged(r, last_good_ckpt, err);
            break;
        }
        if (s != FTC_OK && !(measure && s == FTC_E_DIVERGED)) {
            ftc_err_prefix(err, "step %lld", (long long)r->step + 1);
            break;
        }
        s = FTC_OK;
        if (measure) { /* ftc plan: time the steps (the first is a warm-up), nothing written */
            /* scaled to the epoch's average batch shape: grouped by length, the first steps hold the longest */
            double dt = ftc_now() - t_step, padded = (double)(r->padded_tokens - padded_before);
            step_times[(*n_timed)++] = pad_per_step > 0 && padded > 0 ? dt * pad_per_step / padded : dt;
            r->step++;
            if (r->micro_pos >= r->micro_per_epoch) { r->epoch++; r->micro_pos = 0; epoch_order(r); }
            if (*n_timed > c->measure_steps) break;
            continue;
        }
        r->step++;
        res->last_loss = loss;
        int64_t k = average_count(r, r->step);
        if (k > 0) {
            if ((s = ftc_optim_average_alloc(&r->opt, err)) != FTC_OK) break;
            ftc_optim_average_add(&r->opt, k);
        }
        bool epoch_end = r->micro_pos >= r->micro_per_epoch;
        if ((s = log_step(r, loss, lr, gnorm, &prog, err)) != FTC_OK) break;
        if ((s = after_step(r, epoch_end, stop, &last_good_ckpt, &done, res, err)) != FTC_OK) break;
    }
    if (!r->quiet) ftc_progress_finish(&prog);
    return s;
}

/* A run that took its steps: the final model, the finished line of metrics.jsonl, --save-only-model. */
static ftc_status finish_run(ftc_tr_run *r, bool stop, ftc_train_result *res, ftc_err *err) {
    const ftc_train_config *c = r->c;
    ftc_status s = FTC_OK;
    res->steps = r->step;
    res->best_metric = r->best;
    res->best_step = r->best_step;
    res->stopped_early = stop;
    if (!r->writer) return FTC_OK; /* data parallel: rank 0 writes the model; the others wait (ftc_train_run) */
    if (res->interrupted) {
        ftc_tr_remove_run_temps(c->out);
        return FTC_OK;
    }
    if (!r->val) swap_average(r); /* with validation the best evaluation's weights are kept (they may be the average) */
    s = ftc_tr_save_final_model(r, err);
    if (s == FTC_OK) ftc_tr_remove_run_temps(c->out);
    if (s == FTC_OK) ftc_tr_at_point(c, "final-done");
    /* the last line: the run is done and model/ is its model (ftc_train_run_finished) */
    if (s == FTC_OK)
        s = ftc_tr_log_json(r, json_pack("{s:I, s:b, s:b, s:f}", "step", (json_int_t)r->step, "finished", 1,
                                         "stopped_early", stop, "elapsed_s",
                                         round((r->elapsed_before + ftc_now() - r->t_run) * 10) / 10),
                            err);
    /* --save-only-model: the finished run keeps its model; the checkpoints (weights and AdamW moments) go */
    if (s == FTC_OK && c->save_only_model) {
        remove(r->path_ckpt);
        remove(r->path_best);
        ftc_tr_remove_step_checkpoints(c->out);
    }
    return s;
}

static void free_run(ftc_tr_run *r) {
    if (r->metrics) fclose(r->metrics);
    free(r->order);
    free(r->sort_keys);
    free(r->counts);
    free(r->targets);
    free(r->feat_train);
    free(r->feat_val);
    free(r->feat_batch);
    free(r->grad_pack);
    ftc_tr_dp_buckets_free(&r->buckets);
    ftc_tr_batcher_free(&r->bt);
    ftc_optim_free(&r->opt);
}

ftc_status ftc_train_run(ftc_model *m, const ftc_train_config *c, const ftc_dataset *train, const ftc_dataset *val,
                         bool quiet, ftc_train_result *res, ftc_err *err) {
    double t_run = ftc_now();
    int epochs = c->epochs > 0 ? c->epochs : ftc_train_auto_epochs(c, train->n); /* from the data when not given */
    memset(res, 0, sizeof *res);
    res->best_metric = NAN;
    ftc_tr_run r;
    memset(&r, 0, sizeof r);
    r.c = c; r.m = m; r.train = train; r.val = val && val->n > 0 ? val : NULL;
    r.t_run = t_run;
    r.best = NAN;
    r.dp = ftc_train_dp_active(c->dp) ? c->dp : NULL;
    r.writer = !r.dp || r.dp->rank == 0;
    r.quiet = quiet || !r.writer;
    r.local_batch = r.dp && c->batch % r.dp->size == 0 ? c->batch / r.dp->size : c->batch;
    r.ckpt_step = -1;
    bool resuming = false, measure = c->measure_steps > 0, skip = false;
    double feature_sample_seconds = 0, *step_times = NULL;
    ftc_status s = open_run(&r, &resuming, err);
    if (s == FTC_OK) s = setup_run(&r, epochs, measure, res, &skip, &feature_sample_seconds, err);
    if (s != FTC_OK || skip) goto out;
    if (resuming) {
        if ((s = ftc_tr_restore(&r, err)) != FTC_OK) goto out;
        r.ckpt_step = r.step;
    } else if (r.writer) {
        remove(r.path_metrics);
        remove(r.path_best);
        ftc_tr_remove_step_checkpoints(c->out);
    }
    if (r.writer && !(r.metrics = fopen(r.path_metrics, "a"))) {
        s = ftc_errf(err, FTC_E_IO, "%s: cannot open for writing", r.path_metrics);
        goto out;
    }
    bool stop = r.stopped; /* a run that stopped early and was killed before its model was saved */
    if (r.micro_pos >= r.micro_per_epoch) { r.epoch++; r.micro_pos = 0; }
    epoch_order(&r);
    int n_timed = 0;
    if (measure) {
        step_times = calloc((size_t)c->measure_steps + 1, sizeof *step_times);
        if (!step_times) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto out; }
        res->plan.setup_seconds = ftc_now() - t_run - feature_sample_seconds;
    }
    s = run_steps(&r, resuming, &stop, step_times, &n_timed, res, err);
    if (measure && s == FTC_OK) finish_timing(&res->plan, step_times, n_timed, train, r.val, ftc_tr_uses_feature_cache(c));
    else if (!measure && s == FTC_OK) s = finish_run(&r, stop, res, err);
    /* data parallel: the others wait until rank 0 has written the run (a next stage reads its model/) */
    if (s == FTC_OK && r.dp && (s = r.dp->barrier(r.dp->ctx, err)) != FTC_OK)
        ftc_err_prefix(err, "waiting for rank 0 to write %s", c->out);
    res->comm_seconds = r.comm_seconds;
    res->wait_seconds = r.wait_seconds;
out:
    free(step_times);
    free_run(&r);
    return s;
}

/* Shared inside the train layer only (not installed, not for embedders). */
#ifndef FTC_TRAIN_INTERNAL_H
#define FTC_TRAIN_INTERNAL_H
#include "ftc/train.h"
#include "ftc/base.h"
#include "ftc/eval.h"

/* plan.c: the process's resident set now and at its peak (bytes; 0 where /proc is missing). */
int64_t ftc_plan_rss_now(void);
int64_t ftc_plan_rss_peak(void);
/* Fills p's memory figures for a prepared model whose activations for batch x seq_len take activation_bytes. */
void ftc_plan_memory(const ftc_model *m, int batch, int seq_len, int64_t activation_bytes, int64_t feature_cache_bytes,
                     ftc_train_plan *p);
/* FTC_E_INPUT with the figures and what to change when the planned peak does not fit in available memory. */
ftc_status ftc_plan_check_memory(const ftc_train_plan *p, ftc_err *err);

/* ---- batch.c: batching and collation ---- */
typedef struct {
    int max_B, max_T;
    int32_t *ids, *types, *labels, *class_labels;
    uint8_t *mask;
    ftc_batch b;
    int64_t n_tokens; /* real (non-pad) tokens of the last collated batch */
} ftc_tr_batcher;
ftc_status ftc_tr_batcher_init(ftc_tr_batcher *bt, int max_B, int max_T, ftc_err *err);
void ftc_tr_batcher_free(ftc_tr_batcher *bt);
/* Pads (right) the examples idx[0..B) of d to the longest (capped at max_T) into bt->b. */
void ftc_tr_collate(ftc_tr_batcher *bt, const ftc_dataset *d, const int32_t *idx, int B, ftc_task task);
/* The longest example of d (at least 2), capped at cap. */
int ftc_tr_max_len(const ftc_dataset *d, int cap);
/* Example indices sorted by length (ties: data order); NULL when out of memory. */
int32_t *ftc_tr_length_order(const ftc_dataset *d);
/* dst[i] = src row idx[i] (rows of C floats), i < B. */
void ftc_tr_gather_rows(float *dst, const float *src, const int32_t *idx, int B, int C);
/* [d->n]: the loss targets of each example as any batch cut at max_T holds it (causal-lm: trained positions after
 * the first; classify: 1). A micro-batch's weight in its window is the sum over its examples. NULL: out of memory. */
int64_t *ftc_tr_target_counts(const ftc_dataset *d, int max_T, ftc_task task);
/* Grouping by length (Hugging Face's group_by_length): order[0..d->n) (a shuffled order) cut into mega-batches of
 * up to 50 batches, each sorted longest first (ties keep the order). keys: [d->n] scratch. */
void ftc_tr_group_by_length(int32_t *order, const ftc_dataset *d, int batch, int64_t *keys);
/* B x T summed over the micro-batches of one epoch in `order` (batches cut at max_T), per optimizer step. */
double ftc_tr_padded_tokens_per_step(const int32_t *order, const ftc_dataset *d, int batch, int max_T,
                                     int64_t micro_per_epoch, int64_t steps_per_epoch);

/* ---- freeze.c: which parameters train, the classification head ---- */
/* The model's head must mean the data's labels when it is kept (config.json id2label); FTC_E_INPUT naming both. */
ftc_status ftc_tr_check_head_labels(const ftc_model *m, const ftc_dataset *train, ftc_err *err);
/* Head on a frozen backbone: the head trains on cached encoder features (ftc_train_config.feature_cache). */
bool ftc_tr_uses_feature_cache(const ftc_train_config *c);
/* A new head under lora or full steps at --head-lr (o->lr_scale). */
ftc_status ftc_tr_set_head_lr(ftc_optimizer *o, const ftc_train_config *c, bool new_head, ftc_err *err);

/* ---- dp.c: data parallelism (ftc_train_dp) ---- */
/* Rank dp->rank's contiguous rows [lo, hi) of a global batch of B rows (all of them without dp). */
void ftc_tr_dp_shard(const ftc_train_dp *dp, int B, int *lo, int *hi);
/* The optimizer's gradients summed over the ranks (one all-reduce; *pack: scratch for a layout that is not one
 * span, allocated on first use, the caller frees it). */
ftc_status ftc_tr_dp_allreduce_grads(const ftc_train_dp *dp, ftc_optimizer *o, float **pack, ftc_err *err);
/* Overlap (dp->allreduce_start_f32 and allreduce_wait_all set): the optimizer's gradients as buckets, each a stretch
 * of the gradient buffer holding params of one block (or the heads, or the rest) adjacent in memory with only their
 * zero padding between, ordered as the backward finishes them: key = the block (the heads INT_MAX, embeddings and
 * anything else -1). */
typedef struct {
    float *p;
    int64_t n;
    int key;
} ftc_tr_bucket;
typedef struct {
    ftc_tr_bucket *b;
    int n, cap, next; /* next: the first bucket not started */
} ftc_tr_buckets;
bool ftc_tr_dp_overlaps(const ftc_train_dp *dp);
/* Plans the buckets of o's gradients (none started). */
ftc_status ftc_tr_dp_buckets_plan(ftc_tr_buckets *bk, const ftc_optimizer *o, ftc_err *err);
/* Starts, in order, every bucket not started whose key >= key (INT_MIN: all the rest), then lets them progress. */
ftc_status ftc_tr_dp_buckets_start(const ftc_train_dp *dp, ftc_tr_buckets *bk, int key, ftc_err *err);
void ftc_tr_dp_buckets_free(ftc_tr_buckets *bk);
/* A rank's evaluation counts summed over the ranks (then finish them as usual). */
ftc_status ftc_tr_dp_reduce_class(const ftc_train_dp *dp, ftc_class_metrics *cm, ftc_err *err);
ftc_status ftc_tr_dp_reduce_lm(const ftc_train_dp *dp, ftc_lm_metrics *lm, ftc_err *err);

/* ---- evaluate.c ---- */
/* The run's named moments (ftc_train_config.at_point): a test's chance to stop the run exactly there. c may be NULL. */
void ftc_tr_at_point(const ftc_train_config *c, const char *point);
/* Loss and metrics of m on d in batches of `batch` (length order). feats: d's cached head inputs [d->n, C] or NULL
 * (then the whole model runs). c: the run evaluating (its "eval" moment; with c->dp active each rank takes its
 * rows of every batch and the counts are summed over the ranks, json must then be NULL), or NULL. json: as
 * ftc_train_evaluate. */
ftc_status ftc_tr_evaluate(ftc_model *m, ftc_task task, const ftc_dataset *d, const float *feats, ftc_tr_batcher *bt,
                           int batch, const ftc_train_config *c, ftc_eval_result *r, struct json_t **json,
                           ftc_err *err);
/* The frozen encoder once over d in eval mode: out[i] = example i's head input, [d->n, C]. dp (may be NULL):
 * rank r computes batches r, r + size, ... and the rows are gathered on every rank (summed into zeros). */
ftc_status ftc_tr_extract_features(ftc_model *m, const ftc_dataset *d, ftc_tr_batcher *bt, int batch, float *out,
                                   const char *what, bool quiet, const ftc_train_dp *dp, ftc_err *err);

/* ---- the run: its state (trainer.c runs it, runfiles.c writes its directory) ---- */
#include <stdio.h>
typedef struct {
    const ftc_train_config *c;
    ftc_model *m;
    ftc_optimizer opt;
    ftc_tr_batcher bt;
    const ftc_dataset *train, *val;
    int32_t *order;            /* this epoch's example order */
    int64_t *sort_keys;        /* [train->n] scratch for grouping by length */
    int64_t *targets;          /* [train->n] each example's loss targets (ftc_tr_target_counts), counted once */
    int64_t *counts;           /* [grad_accum] target tokens per micro-batch of the window */
    /* feature cache (head on a frozen backbone): each example's head input, computed once */
    float *feat_train, *feat_val; /* [train->n, C], [val->n, C]; NULL: the encoder runs at every step */
    float *feat_batch;            /* [batch, C] gathered for one micro-batch */
    int64_t micro_per_epoch, steps_per_epoch, total_steps, warmup_steps;
    /* resumable state */
    int64_t step;              /* optimizer steps done */
    int64_t epoch;             /* current epoch (0-based) */
    int64_t micro_pos;         /* micro-batches of this epoch already consumed */
    double best;               /* best metric so far (NaN: none yet) */
    int64_t best_step, bad_evals;
    int64_t tokens_seen;
    int64_t padded_tokens;     /* B x T of every training micro-batch computed (what a step's time scales with) */
    bool stopped;              /* early stopping ended the run */
    bool quiet;                /* no console output (progress, validation lines) */
    int64_t ckpt_step;         /* the step checkpoint.ftc holds (-1: none written by this run yet) */
    /* files */
    char path_metrics[FTC_PATH_MAX + 32], path_ckpt[FTC_PATH_MAX + 32], path_best[FTC_PATH_MAX + 32];
    FILE *metrics;
    double t_start;            /* the first step of this process (tokens/s) */
    double t_run;              /* ftc_train_run began (elapsed_s: preparing the model and caching features count) */
    double elapsed_before;     /* wall seconds of the run before this process (resume): the last logged elapsed_s */
    int64_t tokens_at_start;
    /* data parallel (c->dp with size > 1; else dp NULL) */
    const ftc_train_dp *dp;
    bool writer;               /* this process writes RUNDIR: rank 0, or the only one */
    int local_batch;           /* rows of a global micro-batch this rank computes at most (batch / ranks) */
    bool stop_agreed;          /* a stop request seen by any rank at the last step (dp) */
    float *grad_pack;          /* scratch for the gradient all-reduce when the gradients are not one span */
    double comm_seconds;       /* in the gradient all-reduce */
    double wait_seconds;       /* before it, for the slowest rank to finish its backward */
    ftc_tr_buckets buckets;    /* overlap: the gradient buckets of the current optimizer */
} ftc_tr_run;

/* ---- runfiles.c: the run directory ---- */
/* One line of metrics.jsonl (takes o). */
ftc_status ftc_tr_log_json(ftc_tr_run *r, struct json_t *o, ftc_err *err);
/* config.resolved.json (the settings, sizes and memory plan) and, for classify, labels.json. */
ftc_status ftc_tr_write_run_config(ftc_tr_run *r, int epochs, int seq_len, ftc_err *err);
/* checkpoint.ftc for the current step (finished: the run's last), keeping and pruning older ones. */
ftc_status ftc_tr_save_checkpoint(ftc_tr_run *r, bool finished, ftc_err *err);
/* The run's state from checkpoint.ftc; metrics.jsonl trimmed to its step. */
ftc_status ftc_tr_restore(ftc_tr_run *r, ftc_err *err);
/* The chosen model as RUNDIR/model (HF layout) or a LoRA run's RUNDIR/adapter. */
ftc_status ftc_tr_save_final_model(ftc_tr_run *r, ftc_err *err);
/* What ftc_tr_save_final_model writes the model as: "model", or a LoRA run's "adapter" (without --save-merged). */
const char *ftc_tr_final_name(const ftc_train_config *c);
/* What a killed run left: checkpoint.ftc.tmp.<pid>, model.tmp.<pid>, ... */
void ftc_tr_remove_run_temps(const char *out);
/* Every RUNDIR/checkpoint-<step>.ftc (a fresh run in a reused directory; --save-only-model at the end). */
void ftc_tr_remove_step_checkpoints(const char *out);
#endif

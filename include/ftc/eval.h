/* Evaluation: metrics for classification and causal language modelling, and the run report.
 *
 * Metrics accumulate batch by batch (no need to hold all logits), then finish once.
 * Definitions follow scikit-learn and numpy so numbers can be checked against them:
 *  - argmax: the lowest index wins a tie; a NaN counts as the maximum (numpy.argmax).
 *  - per-class precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R); a 0/0 is 0
 *    (sklearn's zero_division=0): a class never predicted has precision 0 and F1 0.
 *  - macro-F1 averages F1 over every class of the label map (sklearn f1_score with
 *    labels=range(K), average="macro"); `n_absent` counts classes with neither examples nor
 *    predictions, which contribute 0 (on a full test set it is 0).
 *  - causal-lm loss: mean cross-entropy over the trainable target tokens (labels != -100, HF shift:
 *    position t predicts labels[t+1]); perplexity = exp(loss); token accuracy = share of those
 *    targets where the argmax of the logits is the target. */
#ifndef FTC_EVAL_H
#define FTC_EVAL_H
#include <stdbool.h>
#include <stdint.h>
#include "ftc/status.h"

struct json_t; /* jansson */

#define FTC_IGNORE_INDEX (-100) /* label that is not trained on (HF convention) */

/* Index of the largest of x[0..n-1]; ties go to the lowest index, the first NaN wins (numpy). n >= 1. */
int ftc_argmax(const float *x, int n);

/* ---- classification ---- */
typedef struct {
    int n_classes;
    int64_t n_examples;
    int64_t *confusion; /* [n_classes * n_classes]: row = true class, column = predicted class */
    double nll_sum;     /* cross-entropy summed over examples added with logits */
    int64_t n_with_loss;
    /* filled by ftc_class_metrics_finish: */
    double accuracy, macro_f1, weighted_f1;
    double loss;                          /* nll_sum / n_with_loss, NaN if none came with logits */
    int n_absent;                         /* classes with no examples and no predictions */
    double *precision, *recall, *f1;      /* [n_classes] */
    int64_t *support, *predicted;         /* [n_classes]: true count, predicted count */
} ftc_class_metrics;

ftc_status ftc_class_metrics_init(ftc_class_metrics *m, int n_classes, ftc_err *err);
void ftc_class_metrics_free(ftc_class_metrics *m);
/* One prediction (e.g. from retrieval, which has no logits). Out-of-range labels: FTC_E_INPUT. */
ftc_status ftc_class_metrics_add(ftc_class_metrics *m, int true_class, int predicted_class, ftc_err *err);
/* A batch of logits [B, n_classes] and true classes [B]: argmax prediction + cross-entropy. */
ftc_status ftc_class_metrics_add_logits(ftc_class_metrics *m, const float *logits, const int32_t *labels, int B,
                                        ftc_err *err);
/* Computes accuracy, per-class and averaged scores from the counts. Safe to call again after more adds. */
void ftc_class_metrics_finish(ftc_class_metrics *m);
/* Classes ordered from worst to best F1 (ties: more examples first, then lower index); out[n_classes]. */
void ftc_class_metrics_worst(const ftc_class_metrics *m, int *out);
/* The JSON `ftc eval --json` prints and the report reads (docs/report.md):
 * {"task":"classify","n_examples","accuracy","macro_f1","weighted_f1","loss"?, "labels":[..],
 *  "per_class":[{"label","precision","recall","f1","support","predicted"}], "confusion":[[..]]}.
 * labels may be NULL (then "0", "1", ...). Call finish first. Returns a new reference or NULL (no memory). */
struct json_t *ftc_class_metrics_json(const ftc_class_metrics *m, const char *const *labels);

/* ---- causal language modelling ---- */
typedef struct {
    int64_t n_sequences;
    int64_t n_tokens;   /* targets counted (labels != -100) */
    int64_t n_correct;  /* of those, argmax == target */
    double nll_sum;
} ftc_lm_metrics;

void ftc_lm_metrics_init(ftc_lm_metrics *m);
/* logits [B,T,V], labels [B,T] with -100 for positions not trained on; position t's logits predict
 * labels[t+1]. A label outside [0,V) other than -100: FTC_E_INPUT naming row and position. */
ftc_status ftc_lm_metrics_add_logits(ftc_lm_metrics *m, const float *logits, const int32_t *labels, int B, int T,
                                     int V, ftc_err *err);
/* The same a piece at a time (logits that never exist whole, ftc_model_lm_logits_rows): logits [rows, V] of
 * positions [r0, r0 + rows) of the flattened B x T. Pieces added in order, covering all B x T once, give the
 * sums ftc_lm_metrics_add_logits gives, bit for bit; the piece with r0 = 0 checks the labels and counts the
 * sequences. */
ftc_status ftc_lm_metrics_add_rows(ftc_lm_metrics *m, const float *logits, const int32_t *labels, int B, int T, int V,
                                   int r0, int rows, ftc_err *err);
double ftc_lm_loss(const ftc_lm_metrics *m);           /* NaN when no tokens were counted */
double ftc_lm_perplexity(const ftc_lm_metrics *m);     /* exp(loss) */
double ftc_lm_token_accuracy(const ftc_lm_metrics *m); /* NaN when no tokens */
/* {"task":"causal-lm","n_examples","n_tokens","loss","perplexity","token_accuracy"} (NaN written as null). */
struct json_t *ftc_lm_metrics_json(const ftc_lm_metrics *m);

/* ---- answer quality against a reference text (src/eval/textscore.c) ----
 * Tokens as rouge_score's default tokenizer makes them: ASCII letters lowercased, maximal runs of [a-z0-9]; every
 * other byte (punctuation, space, non-ASCII) separates.
 * token-F1: SQuAD's F1 of the two token multisets, the articles a, an, the left out (both sides empty: 1, one: 0).
 * ROUGE-L: the F-measure (beta 1) of the longest common token subsequence, as rouge_score's rougeL fmeasure
 * without stemming (0 when either side has no tokens). */
ftc_status ftc_text_token_f1(const char *pred, const char *ref, double *f1, ftc_err *err);
ftc_status ftc_text_rouge_l(const char *pred, const char *ref, double *rouge_l, ftc_err *err);

/* ---- report ----
 * Writes RUNDIR/report.html (atomically) from RUNDIR/metrics.jsonl (training curve, required),
 * RUNDIR/eval.json (final metrics, optional; may hold "base" with the same keys for the base model) and
 * RUNDIR/samples.jsonl (causal-lm sample answers {"prompt","base","tuned"}, optional).
 * Self-contained HTML: inline SVG charts, no JavaScript, no network. Formats: docs/report.md.
 * Malformed input: FTC_E_INPUT naming file, line and key. */
ftc_status ftc_report_write(const char *rundir, ftc_err *err);
/* Several runs on one page written (atomically) to out_path: their curves overlaid (one colour per run, each run's
 * best checkpoint marked), the final metrics side by side (the best of each row marked) and the settings that differ
 * between them. With one run: that run's page (as ftc_report_write) at out_path. */
ftc_status ftc_report_write_runs(const char *const *rundirs, int n, const char *out_path, ftc_err *err);

#endif

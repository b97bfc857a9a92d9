/* Fine-tuning: optimizer (AdamW), learning-rate schedules, gradient clipping, the run configuration,
 * checkpoints and the training loop (src/train/). Three methods share one loop:
 *   full  every parameter trains;
 *   head  transfer learning: classify trains only the new head (+ the last N blocks with unfreeze_last N);
 *         causal-lm trains the last N blocks and the final norm (N = unfreeze_last, default 1);
 *   lora  low-rank adapters (+ the classification head for classify).
 * Frozen parameters carry no gradient and no optimizer state. */
#ifndef FTC_TRAIN_H
#define FTC_TRAIN_H
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include "ftc/data.h"
#include "ftc/model.h"
#include "ftc/rundir.h"
#include "ftc/status.h"

struct json_t; /* jansson */

/* ---- learning-rate schedule (transformers' get_{linear,cosine,constant}_schedule_with_warmup) ----
 * factor(step): step < warmup: step / max(1, warmup); then linear: max(0, (total-step)/max(1, total-warmup)),
 * cosine: max(0, 0.5 (1 + cos(pi * progress))), constant: 1. `step` counts optimizer steps done before this
 * one, so the first update uses factor(0) (0 when warmup > 0, exactly as the HF scheduler). */
typedef enum { FTC_SCHED_LINEAR, FTC_SCHED_COSINE, FTC_SCHED_CONSTANT } ftc_sched_kind;
double ftc_schedule_factor(ftc_sched_kind kind, int64_t step, int64_t warmup, int64_t total);
const char *ftc_sched_name(ftc_sched_kind kind);

/* ---- AdamW over the trainable parameters (torch.optim.AdamW semantics) ----
 * Moments exist only for trainable params (one buffer); weight decay only where ftc_param.decay. */
typedef struct {
    float beta1, beta2, eps, weight_decay;
} ftc_adamw_hparams;
#define FTC_ADAMW_DEFAULTS ((ftc_adamw_hparams){0.9f, 0.999f, 1e-8f, 0.0f})

typedef struct {
    ftc_adamw_hparams h;
    int n;                /* trainable params */
    ftc_param **params;   /* [n], not owned */
    float *moments;       /* m of every param, then v of every param: 2 * n_values floats */
    int64_t *offset;      /* [n] start of param i in each half */
    int64_t n_values;     /* sum of numel */
    int64_t t;            /* optimizer steps taken */
    float *lr_scale;      /* [n] or NULL: param i steps at lr * lr_scale[i] (a new head's own rate) */
    float *avg;           /* [n_values] or NULL: the running average of the weights (ftc_optim_average_*), laid
                             out as each half of moments */
} ftc_optimizer;

/* Collects the params with trainable && grad != NULL. Fails (FTC_E_INPUT) if none trains. */
ftc_status ftc_optim_init(ftc_optimizer *o, ftc_param *const *params, int n_params, const ftc_adamw_hparams *h,
                          ftc_err *err);
void ftc_optim_free(ftc_optimizer *o);
/* One update of every param with its current grad at learning rate lr; t becomes t + 1. */
void ftc_optim_step(ftc_optimizer *o, float lr);
/* The same with every grad read as grad * grad_scale (ftc_clip_coef's factor): the bits of ftc_scale_grads then
 * ftc_optim_step, one pass over the gradients fewer; the grads themselves are left unscaled. */
void ftc_optim_step_scaled(ftc_optimizer *o, float lr, float grad_scale);

/* Global L2 norm of the grads of the optimizer's params (computed in double). */
double ftc_grad_norm(const ftc_optimizer *o);
/* torch.nn.utils.clip_grad_norm_: scale = max_norm / (norm + 1e-6), applied when < 1. Returns the norm
 * before clipping. max_norm <= 0: no clipping (the norm is still returned). */
double ftc_clip_grad_norm(ftc_optimizer *o, float max_norm);
/* The factor ftc_clip_grad_norm scales by: max_norm / (norm + 1e-6) when that is < 1, else 1 (also when
 * max_norm <= 0). */
float ftc_clip_coef(double norm, float max_norm);
void ftc_scale_grads(ftc_optimizer *o, float s);

/* Weight averaging (tail averaging, as SWA): o->avg holds the mean of the weights after the last k updates.
 * ftc_optim_average_alloc allocates it (zeros); ftc_optim_average_add makes it the mean of k weights given the
 * mean of the first k - 1 (k = 1: a copy), in f32 as avg += (w - avg) / k; ftc_optim_average_swap exchanges the
 * params' weights with it (twice: back as they were), so an evaluation or a save sees the average. */
ftc_status ftc_optim_average_alloc(ftc_optimizer *o, ftc_err *err);
void ftc_optim_average_add(ftc_optimizer *o, int64_t k);
void ftc_optim_average_swap(ftc_optimizer *o);

/* ---- data parallelism: the caller's communication, for ftc_train_run over several processes ----
 * The library holds no transport: the caller (the CLI over MPI, docs/distributed.md) passes these. Every rank
 * runs ftc_train_run on the same model, data and settings; rank r takes its contiguous share of each global
 * micro-batch (--batch rows, split in size ranks), the weighted gradients are summed over the ranks once per
 * optimizer step, then clipping and AdamW run identically everywhere; evaluation is sharded and reduced; only
 * rank 0 writes RUNDIR. Every function is collective (all ranks call it in the same order) and returns FTC_OK or
 * an error in err; size <= 1 (or no ftc_train_dp at all) is the single-process run, unchanged. */
typedef struct ftc_train_dp {
    int rank, size;
    void *ctx; /* passed back to the functions */
    /* buf[0..n) = the element-wise sum of every rank's buf[0..n), on every rank */
    ftc_status (*allreduce_sum_f32)(void *ctx, float *buf, int64_t n, ftc_err *err);
    ftc_status (*allreduce_sum_f64)(void *ctx, double *buf, int64_t n, ftc_err *err);
    /* returns once every rank has called it */
    ftc_status (*barrier)(void *ctx, ftc_err *err);
    /* Optional, for the gradient all-reduce overlapped with the backward (docs/distributed.md "Overlap"); NULL
     * (either start or wait_all): one allreduce_sum_f32 after the backward. start: begin summing buf[0..n) over
     * the ranks (every rank starts the same spans in the same order); buf is not touched until wait_all returns,
     * which finishes every started sum. progress (may be NULL): lets started sums advance; the trainer calls it
     * between blocks of the backward. */
    ftc_status (*allreduce_start_f32)(void *ctx, float *buf, int64_t n, ftc_err *err);
    ftc_status (*allreduce_progress)(void *ctx, ftc_err *err);
    ftc_status (*allreduce_wait_all)(void *ctx, ftc_err *err);
} ftc_train_dp;
/* Whether dp makes a multi-process run (not NULL and size > 1). */
bool ftc_train_dp_active(const ftc_train_dp *dp);

/* ---- run configuration: every `ftc train` flag, also settable from a YAML or JSON file ---- */
typedef enum { FTC_METHOD_FULL, FTC_METHOD_HEAD, FTC_METHOD_LORA } ftc_method;
typedef enum { FTC_METRIC_VAL_LOSS, FTC_METRIC_ACCURACY, FTC_METRIC_MACRO_F1 } ftc_metric;
/* Storage of the frozen base weights (lora, head): auto = bf16 when precision is bf16, else fp32; Q8_0..Q4_K:
 * block-quantized (include/ftc/quant.h, docs/quant.md). */
typedef enum {
    FTC_BASE_AUTO, FTC_BASE_FP32, FTC_BASE_BF16, FTC_BASE_Q8_0, FTC_BASE_Q4_0, FTC_BASE_Q4_1, FTC_BASE_Q4_K,
    FTC_BASE_NF4, FTC_BASE_NF4DQ /* NF4 with its absmax double-quantized (QLoRA's storage) */
} ftc_base_dtype;

typedef struct {
    char model[FTC_PATH_MAX], data[FTC_PATH_MAX], out[FTC_PATH_MAX], val[FTC_PATH_MAX];
    ftc_task task;          /* causal-lm | classify */
    ftc_method method;
    double val_split;       /* share of --data held out when no --val (0 = none) */
    int epochs;             /* used when max_steps == 0; 0 = from the data's size (ftc_train_auto_epochs) */
    int64_t max_steps;      /* optimizer steps; 0 = from epochs */
    float lr;               /* < 0: the method's default (finalize) */
    float head_lr;          /* a new classification head's rate (lora; full without LP-FT); < 0: default */
    bool lp_ft;             /* full on classify with a new head: train the head alone first (default true) */
    int batch, grad_accum, max_len; /* batch 0: the method's default */
    double warmup;          /* >= 1: steps; in (0, 1): share of the total steps; < 0: the method's default */
    ftc_sched_kind schedule;
    float weight_decay, clip, beta1, beta2, adam_eps;
    float label_smoothing;  /* classify: training target 1 - eps on the label + eps / K on each label (0: off;
                               < 0: the method's default) */
    float layer_decay;      /* < 0: the method's default; layer-wise rate decay: block i of L steps at lr x layer_decay^(L-i), the embeddings
                               at lr x layer_decay^(L+1), the head at lr (1: off) */
    double average_last;    /* the model is the mean of the weights after each of the last share of the steps
                               (0: off; < 0: the method's default) */
    float rdrop;            /* classify: R-Drop's alpha, each example run twice (0: off; < 0: the method's default) */
    uint64_t seed;
    int eval_every;         /* optimizer steps; 0 = only at epoch ends */
    int save_every;         /* optimizer steps; 0 = only at epoch ends and at the end */
    int log_every;          /* optimizer steps between metrics.jsonl lines */
    int patience;           /* evaluations without improvement before stopping; 0 = never stop early */
    ftc_metric metric;
    int unfreeze_last;      /* -1 = the method's default (classify head: 0, causal-lm head: 1) */
    int lora_r;
    float lora_alpha, lora_dropout;
    char pooling[8];        /* classify: auto | cls | mean | last (auto: the checkpoint's sentence-transformers
                               pooling when it has one, else CLS (+pooler) for BERT, last token for decoders) */
    bool feature_cache;     /* head with a frozen backbone (classify, unfreeze_last 0): run the encoder once per
                               example in eval mode and train the head on the cached pooled features (default);
                               false: the encoder runs at every step in training mode (backbone dropout) */
    bool grad_checkpoint;   /* keep only each block's input in the forward and recompute the block in backward
                               (same gradients bit for bit, much less activation memory, ~1/3 more compute) */
    char lora_targets[256]; /* "" = the family default (q/v projections) */
    /* how text data becomes examples (the data layer, include/ftc/data.h) */
    char format[32];        /* "" = detect; text | completion | chat | label */
    char template_name[32]; /* --chat-template; "" = the model's own (tokenizer_config.json) */
    char text_col[64], label_col[64]; /* CSV/TSV columns; "" = the usual names */
    ftc_precision precision; /* matmuls of linears and heads: fp32, or bf16 operands with f32 accumulation */
    ftc_base_dtype base_dtype; /* lora/head: frozen matmul weights kept in bf16 only (never inflated to f32) */
    bool pack;              /* causal-lm: pack examples into max_len sequences */
    bool group_by_length;   /* batches of similar lengths (little padding) when the encoder runs (default true) */
    bool train_on_inputs;   /* causal-lm: train prompt/user tokens too */
    bool resume;
    /* Not a setting: where the caller's stop request lives (NULL: none). When *stop becomes nonzero (the CLI's
     * SIGINT/SIGTERM handler sets it), ftc_train_run finishes the current step, writes checkpoint.ftc and
     * returns FTC_OK with res->interrupted; the run continues with resume. */
    const volatile sig_atomic_t *stop;
    /* Not a setting: data-parallel communication (NULL: one process). The stop request above is agreed on by the
     * ranks after every step, so a signal that reaches one rank stops them all at the same step. */
    const ftc_train_dp *dp;
    /* Not a setting: > 0 makes ftc_train_run a timing run for `ftc plan`: it sets up as training would (the
     * frozen encoder's feature cache over a sample of the examples), takes one warm-up step and this many
     * measured steps, and returns without evaluating, checkpointing or saving a model (res->plan). */
    int measure_steps;
    /* Not a setting: when not NULL, called with at_point_ctx at named moments of a run, so a test can stop it
     * exactly there (the CLI's FTC_TEST_KILL_AT; docs/train.md "Resume"): "eval" (inside a validation pass,
     * after its first batch), "eval-logged" (its line in metrics.jsonl, best.ftc not yet written), "best-saved"
     * (best.ftc written, the step's checkpoint not yet), "final-best" (the best weights loaded for model/),
     * "final-adapter" (LoRA: adapter/ written, not yet merged), "final-staged" (model/ written whole as
     * model.tmp.<pid>, not yet renamed), "final-done" (model/ in place, the finished line not yet written).
     * The library keeps nothing of it between calls. */
    void (*at_point)(void *ctx, const char *point);
    void *at_point_ctx;
    bool memory_check;      /* refuse a run whose planned peak memory exceeds what the machine has (default true) */
    bool save_only_model;   /* a finished run keeps model/ (and adapter/) only: checkpoint.ftc and best.ftc (weights
                               and AdamW moments) are removed, so it cannot be continued with more steps */
    int save_total_limit;   /* checkpoints with optimizer state kept, checkpoint.ftc included (older ones:
                               checkpoint-<step>.ftc; the best evaluation's never removed); 0: all; default 1 */
    bool save_merged;       /* lora: also write model/ (base + adapter merged, HF layout); by default a LoRA run
                               keeps adapter/ only and every command loads base + adapter (ftc_run_dir_load) */
    /* Not a setting: how the frozen base was held when the run loaded it (lora/head: ftc_model_base_storage, e.g.
     * "q8_0 x 1, q4_1 x 210" for --base-dtype auto on a GGUF); "" unknown or full. config.resolved.json records it
     * as "base_dtype_resolved" (a fact of the run, never read back as a setting: --resume resolves --base-dtype
     * again and the CLI refuses a resume whose base now resolves otherwise). */
    char base_resolved[256];
    bool set[64];           /* which keys were given explicitly (config file or command line), by option index */
    bool from_run[64];      /* ... and which of those came from a run's config.resolved.json (--resume) */
} ftc_train_config;

void ftc_train_config_defaults(ftc_train_config *c);
/* Sets one key ("lr", "grad-accum" or "grad_accum", ...) from its text value. Unknown key or a bad
 * value: FTC_E_USAGE naming the key and the accepted values. */
ftc_status ftc_train_config_set(ftc_train_config *c, const char *key, const char *value, ftc_err *err);
/* Reads a YAML (.yaml/.yml) or JSON file of the same keys (flat mapping). Errors name file, line, key. */
ftc_status ftc_train_config_load_file(ftc_train_config *c, const char *path, ftc_err *err);
/* A run's config.resolved.json (for --resume): every setting the run used; flags and --config set later win,
 * and ftc_train_config_resume_conflict says which of them contradict it. */
ftc_status ftc_train_config_load_resolved(ftc_train_config *c, const char *path, ftc_err *err);
/* FTC_OK when the settings given explicitly in now (flags, --config) agree with the saved run's; else
 * FTC_E_USAGE naming the first flag that differs and both values. Settings that change nothing the run computes
 * (--save-every, --log-every... see the source) may differ. */
ftc_status ftc_train_config_resume_conflict(const ftc_train_config *saved, const ftc_train_config *now, ftc_err *err);
/* The defaults of a task and method (docs/train.md, "Defaults"). */
typedef struct {
    float lr, head_lr;
    double warmup;
    int batch, epochs;
    float layer_decay, label_smoothing; /* --layer-decay (1: off), --label-smoothing (classify; 0: off) */
    double average_last;                /* --average-last (0: off) */
    float rdrop;                        /* --rdrop (classify; 0: off) */
} ftc_train_defaults;
ftc_train_defaults ftc_train_method_defaults(ftc_task task, ftc_method method);
/* Epochs for n_train examples when --epochs is not given: the method's base count, raised (up to 25) until the
 * run has 100 optimizer steps, lowered (down to 1) so it sees at most 30,000 examples. */
int ftc_train_auto_epochs(const ftc_train_config *c, int n_train);
/* The default rate for a model of hidden_size: the table's, and for causal-lm the table's (for width 768) times
 * 768 / hidden_size (clamped to [1/4, 16]), as Adam's best rate falls roughly as 1/width. */
float ftc_train_default_lr(ftc_task task, ftc_method method, int hidden_size);
/* Settings that need the model: causal-lm's lr (when not given) from its width. */
void ftc_train_config_fit_model(ftc_train_config *c, int hidden_size);
/* Settings that need the data: epochs (when not given) from the training set's size. */
void ftc_train_config_fit_data(ftc_train_config *c, int n_train);
/* Checks the combination (required paths, ranges, metric fits the task); fills method defaults. */
ftc_status ftc_train_config_finalize(ftc_train_config *c, ftc_err *err);
/* Every key with its value (config.resolved.json). New reference. */
struct json_t *ftc_train_config_json(const ftc_train_config *c);
/* ftc_train_config_json(c) written to path atomically (the run's facts aside: the trainer adds those) */
ftc_status ftc_train_config_save(const ftc_train_config *c, const char *path, ftc_err *err);
/* What a run like `resolved` (a config.resolved.json) would have used had it given no setting but its task and
 * method: ftc_train_config_json of the defaults, resolved as the trainer resolves them (the method's rates, warmup and
 * batch; causal-lm's rate for a model of hidden_size, 0 if unknown; epochs from its "train_examples" with its own
 * batch and grad_accum). The report lists the settings that differ from it. New reference, NULL when out of memory. */
struct json_t *ftc_train_config_defaults_json(const struct json_t *resolved, int hidden_size);
/* The settings (one table in src/train/runconfig.c: command line, config files, config.resolved.json, defaults and
 * help), ending with a NULL name; is_bool: a flag that stands alone on the command line (--pack, --pack false,
 * --no-pack); group: the help's section; arg: the value's placeholder (NULL for booleans); help: one or more lines
 * ('\n' between them); def: the default as text ("" or "-1"/"0" for "chosen later" or none). */
typedef struct {
    const char *name;
    bool is_bool;
    const char *group, *arg, *help, *def;
} ftc_train_option;
const ftc_train_option *ftc_train_options(void);
/* Other names accepted for them (learning-rate -> lr, output-dir -> out, ...), ending with a NULL alias. */
typedef struct { const char *alias, *name; } ftc_train_alias;
const ftc_train_alias *ftc_train_aliases(void);
/* A key as given ('-' or '_', a name or an alias) -> the setting's name; NULL when unknown. */
const char *ftc_train_option_name(const char *key);
/* Whether the run keeps its frozen base weights in bf16 (load them with ftc_model_load_bf16_base). */
bool ftc_train_base_bf16(const ftc_train_config *c);
/* The ggml type the run quantizes its frozen base weights to (ftc_model_load_quant_base), or -1. */
int ftc_train_base_qtype(const ftc_train_config *c);
/* --base-dtype auto, lora/head, on a model converted from a GGUF: the frozen weights keep the GGUF's Q8_0/Q4_0/
 * Q4_1/Q4_K types (ftc_model_load_gguf_base), the others as ftc_train_base_bf16 says. */
bool ftc_train_base_from_gguf(const ftc_train_config *c);
const char *ftc_base_dtype_name(ftc_base_dtype d);
const char *ftc_method_name(ftc_method m);
const char *ftc_metric_name(ftc_metric m);

/* ---- training data (ftc_dataset and its readers: the data layer, include/ftc/data.h) ---- */
/* A run's training data as c describes it: text formats through the data layer (the model's tokenizer and
 * chat template; labels.json and split/ written into c->out), or pre-tokenized JSONL. */
ftc_status ftc_train_load_data(const ftc_train_config *c, int vocab_size, ftc_dataset *train, ftc_dataset *val,
                               bool *have_val, ftc_err *err);
/* The task c->data asks for when --task is not given: labelled records (or pre-tokenized with "label") classify;
 * text, prompt/completion and chat records a language model. *why: which it saw. False when it cannot tell (the
 * data cannot be read: training reports why). */
bool ftc_train_task_of_data(const ftc_train_config *c, ftc_task *task, const char **why);
/* Whether key (a name or alias) was given explicitly: flag, config file, or the resumed run's settings. */
bool ftc_train_config_is_set(const ftc_train_config *c, const char *key);
/* Evaluation data for a finished run, read as the run read its data (its label map, template, max_len). */
ftc_status ftc_run_dir_load_data(const char *dir, const ftc_train_config *c, const char *data_path, int vocab_size,
                                 ftc_dataset *out, ftc_err *err);

/* ---- the trainer ---- */
/* What a run needs, as ftc_train_run plans it once the model is prepared and its activations are reserved. */
typedef struct {
    int64_t total_params, trainable_params;
    int64_t weight_bytes;        /* parameters as stored (f32, bf16 copies, quantized blocks) */
    int64_t grad_bytes;          /* one f32 gradient per trainable value */
    int64_t optimizer_bytes;     /* AdamW: two f32 moments per trainable value */
    int64_t activation_bytes;    /* the activation arena for batch x seq_len, as configured */
    int64_t activation_bytes_other; /* the same with --grad-checkpoint toggled (timing runs only; else 0) */
    int64_t feature_cache_bytes; /* head on cached features: one pooled vector per example */
    int64_t base_rss_bytes;      /* the process when planning: program, data, tokenizer, weights already loaded */
    int64_t peak_bytes;          /* base_rss + grads + optimizer + activations + feature cache */
    int64_t available_bytes;     /* MemAvailable of /proc/meminfo (0: unknown) */
    bool fits;                   /* peak - process <= available (a timing run that does not fit times nothing) */
    int batch, seq_len;
    int64_t total_steps, steps_per_epoch, warmup_steps, tokens_per_epoch;
    int epochs, evaluations;
    /* timing runs (measure_steps) */
    double setup_seconds;        /* load to first step, feature cache excluded */
    double feature_seconds;      /* the frozen encoder over every example (estimated from a sample) */
    double step_seconds;         /* median of the measured steps */
    double eval_seconds;         /* one evaluation pass over the validation examples (estimated) */
    int measured_steps;
    int64_t measured_peak_rss;   /* ru_maxrss after the measured steps */
} ftc_train_plan;

typedef struct {
    int64_t steps;          /* optimizer steps taken in total */
    double last_loss;       /* mean training loss of the last step */
    double best_metric;     /* NaN when there was no validation */
    int64_t best_step;
    bool stopped_early;
    int64_t trainable_params;
    bool cached_features;   /* the head trained on cached frozen-encoder features (feature_cache) */
    bool interrupted;       /* stopped on c->stop: checkpoint.ftc holds step `steps`, model/ was not written */
    double comm_seconds;    /* data parallel (c->dp): wall seconds this rank spent in the gradient all-reduce */
    double wait_seconds;    /* ... and before it, waiting for the slowest rank (a barrier) */
    ftc_train_plan plan;    /* what the run planned (memory), and for a timing run (measure_steps) its timings */
} ftc_train_result;

/* Applies the method to a loaded model: classifier head (classify), LoRA adapters, trainable flags.
 * Call before ftc_model_reserve; ftc_train_run calls it itself. */
/* (ftc_pooling_parse, ftc_train_pooling: include/ftc/rundir.h) */
ftc_status ftc_train_prepare_model(ftc_model *m, const ftc_train_config *c, int num_labels, ftc_err *err);

/* Runs the whole training described by c on model m (freshly loaded or created, not yet prepared):
 * writes c->out (config.resolved.json, labels.json, metrics.jsonl, checkpoint.ftc, best.ftc, model/).
 * With c->resume, continues from c->out/checkpoint.ftc. val may be NULL. quiet: no progress output. */
ftc_status ftc_train_run(ftc_model *m, const ftc_train_config *c, const ftc_dataset *train, const ftc_dataset *val,
                         bool quiet, ftc_train_result *res, ftc_err *err);

/* True when out holds a finished run: its last checkpoint was the run's end (last step or early stopping) and
 * its model/ was written (*step: the steps it took). `ftc train --resume` on it has nothing to do. */
bool ftc_train_run_finished(const char *out, int64_t *step);
/* classify: true when m (loaded, not yet prepared) has no classification head for num_labels labels, so training
 * starts one from random weights (its own --head-lr; with --method full, LP-FT trains it first). */
bool ftc_train_head_is_new(ftc_model *m, int num_labels);

/* Mean loss (and classify accuracy / macro-F1, causal-lm token accuracy) of m on d, in batches of `batch`.
 * json (may be NULL) receives the `ftc eval --json` object (ftc_class_metrics_json / ftc_lm_metrics_json); for
 * classify with "worst": the FTC_EVAL_WORST most confident mistakes, most confident first (equal ones in dataset
 * order), each {"index": example of d, "label", "predicted": class names, "prob": softmax probability of the
 * predicted class}. ftc_eval_worst_texts turns the indices into the examples' text. */
#define FTC_EVAL_WORST 20
typedef struct {
    double loss, accuracy, macro_f1, token_accuracy;
    int64_t n_examples, n_tokens;
} ftc_eval_result;
ftc_status ftc_train_evaluate(ftc_model *m, ftc_task task, const ftc_dataset *d, int batch, int max_len,
                              ftc_eval_result *r, struct json_t **json, ftc_err *err);
/* In json's "worst" list (from ftc_train_evaluate on d): replaces each "index" by "text", d's example decoded with
 * the tokenizer in tok_dir (special tokens skipped: the text the model saw, after any truncation). The tokenizer
 * failing to load leaves the list without texts and returns its error. */
ftc_status ftc_eval_worst_texts(struct json_t *json, const ftc_dataset *d, const char *tok_dir, ftc_err *err);

/* ---- sample answers for the run report (causal-lm; RUNDIR/samples.jsonl, docs/report.md) ----
 * Prompts: the first n distinct prompts of d (give the validation split, else the training data), each example
 * cut where its first trained token starts (completion/chat data: the prompt plus the template's generation
 * prompt), or after its first half (at most 16 tokens) when every token trains. Answers: greedy (ftc_generate),
 * at most max_tokens, ending at EOS or the template's end-of-turn token. ftc_samples_begin answers with the base
 * model (call it before training changes the weights), ftc_samples_write with the tuned one, then writes
 * {"prompt","base","tuned"} lines atomically. tokenizer_dir: the model directory with the tokenizer files. */
typedef struct ftc_samples ftc_samples;
ftc_status ftc_samples_begin(ftc_model *base, const char *tokenizer_dir, const ftc_dataset *d, int n, int max_tokens,
                             ftc_samples **out, ftc_err *err);
ftc_status ftc_samples_write(ftc_samples *s, ftc_model *tuned, const char *path, ftc_err *err);
int ftc_samples_count(const ftc_samples *s);
void ftc_samples_free(ftc_samples *s);

/* ---- checkpoints (own container: "FTCCKPT1", u64 header length, JSON header, f32 data) ----
 * Holds the trainable params by name, optionally the AdamW moments, and a JSON state object. Written
 * atomically. Loading checks every name and size against the model and fails naming the tensor. */
ftc_status ftc_checkpoint_save(const char *path, ftc_model *m, const ftc_optimizer *o, const struct json_t *state,
                               ftc_err *err);
/* Restores params (and moments when o != NULL and the file has them); *state gets a new reference. */
ftc_status ftc_checkpoint_load(const char *path, ftc_model *m, ftc_optimizer *o, struct json_t **state,
                               ftc_err *err);
/* Only the JSON state of a checkpoint (the trainer's: step, epoch, finished, ...), without a model. */
ftc_status ftc_checkpoint_read_state(const char *path, struct json_t **state, ftc_err *err);

/* For `ftc eval --model RUNDIR`: true when dir is an ftc run directory with its model written
 * (RUNDIR/config.resolved.json and ftc_run_dir_has_model). */
bool ftc_is_run_dir(const char *dir);
/* Loads a run's final model with the run's task and settings: RUNDIR/model (HF layout) when there is one, else
 * (a LoRA run) the base model named by config.resolved.json, read as the run read it, with RUNDIR/adapter
 * applied and merged and the run's pooling: the model --save-merged writes. */
ftc_status ftc_run_dir_load(const char *dir, ftc_model **out, ftc_train_config *cfg, ftc_err *err);
/* Where a run's tokenizer is: RUNDIR/model when it holds tokenizer files, else the run's base model. */
void ftc_run_dir_tokenizer_dir(const char *dir, const ftc_train_config *cfg, char *out, size_t n);
/* Evaluates a run directory's model on data_path (read as the run's data was: pre-tokenized JSONL, labels
 * mapped through RUNDIR/labels.json). *json: the `ftc eval --json` object, with "loss" for both tasks. */
ftc_status ftc_run_dir_eval(const char *dir, const char *data_path, int batch, struct json_t **json, ftc_err *err);

/* `ftc eval --compare BASE_DIR`: the same data through the run's model (*tuned_json) and through the base model
 * base_dir (*base_json), both the objects ftc_run_dir_eval gives. causal-lm: base_dir's own LM head; a LoRA
 * run's base is simply the model without adapters. classify: the base model has no trained head, so the base
 * side is base_dir's encoder with the run's classification head (and pooling) copied onto it. A base_dir of
 * another architecture or vocabulary: FTC_E_INPUT naming both (ftc_check_same_architecture). */
ftc_status ftc_run_dir_eval_compare(const char *dir, const char *base_dir, const char *data_path, int batch,
                                    struct json_t **tuned_json, struct json_t **base_json, ftc_err *err);
/* The same on examples already read (d, e.g. a run's validation split); base_dir NULL: the tuned model only
 * (base_json may then be NULL). Both: when base_dir is the run's own base model (config.resolved.json "model", the
 * same file), the base side holds its frozen weights as the run did (--base-dtype q8_0..nf4dq or bf16), so that it
 * is the base the adapter was trained on; another base_dir is read as stored. */
ftc_status ftc_run_dir_eval_dataset(const char *dir, const char *base_dir, const ftc_dataset *d, int batch,
                                    struct json_t **tuned_json, struct json_t **base_json, ftc_err *err);
/* How ftc_run_dir_eval_dataset holds base_dir's frozen weights for a run configured as cfg: "q8_0".."nf4dq" or
 * "bf16" (base_dir is the run's own base model and the run held it so), or NULL (as stored). */
const char *ftc_run_dir_compare_base_dtype(const ftc_train_config *cfg, const char *base_dir);
/* `ftc eval --model DIR` on a plain Hugging Face classifier directory (e.g. ftc export --format hf of a classify
 * run, or a transformers *ForSequenceClassification save). has_classifier: config.json names labels (id2label)
 * and the weights hold the head (classifier.weight for BERT, score.weight for decoders). */
bool ftc_model_dir_has_classifier(const char *dir);
/* Its evaluation data: string labels by name through id2label (unknown: FTC_E_INPUT naming file, line, label);
 * integer labels are class indices (unless every name is an integer: then by name); text through dir's
 * tokenizer cut at max_len; pre-tokenized JSONL read directly. */
ftc_status ftc_model_dir_load_class_data(const char *dir, const ftc_model_config *mc, const char *data_path,
                                         int max_len, int vocab_size, ftc_dataset *out, ftc_err *err);
/* Evaluates dir's classifier (pooling: config "ftc_pooling", else what --pooling auto picks) on data_path; max_len
 * <= 0 or above the model's positions: its positions. base_dir (may be NULL): also base_dir's encoder with dir's
 * head copied onto it (*base_json; base_json may be NULL without base_dir), as ftc_run_dir_eval_compare does. */
ftc_status ftc_model_dir_eval_classify(const char *dir, const char *base_dir, const char *data_path, int max_len,
                                       int batch, struct json_t **tuned_json, struct json_t **base_json, ftc_err *err);
/* A plain causal LM (m, tokenizer and chat template from tok_dir) on structured data (prompt/completion, chat
 * messages, {"text"} records, pre-tokenized JSONL): scores what `ftc train --task causal-lm` would train on that
 * file with its defaults (answer tokens only; the model's own chat template; cut at max_len, <= 0: training's
 * default, at most the model's positions). *json as ftc_train_evaluate gives it. */
ftc_status ftc_model_eval_lm_data(ftc_model *m, const char *tok_dir, const char *data_path, int max_len, int batch,
                                  struct json_t **json, ftc_err *err);
/* FTC_OK when two configs describe the same network shape (family, layers, widths, heads, vocabulary), so the
 * same token ids mean the same thing to both; else FTC_E_INPUT naming both directories and the difference. */
ftc_status ftc_check_same_architecture(const ftc_model_config *tuned, const char *tuned_dir,
                                       const ftc_model_config *base, const char *base_dir, ftc_err *err);
#endif

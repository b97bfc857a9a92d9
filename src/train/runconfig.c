/* `ftc train` settings: one table (TRAIN_OPTIONS) that gives the defaults, the setter shared by the command line
 * and config files (YAML or JSON, same keys, '-' or '_'), the resolved JSON written to the run dir and the help
 * text; validation of the combination (finalize). */
#include "ftc/train.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/quant.h"
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Every setting `ftc train` knows: ONE table, which generates the command line's option list
 * (ftc_train_options), the defaults (ftc_train_config_defaults), the parser (ftc_train_config_set, also for
 * config files and config.resolved.json), the JSON (ftc_train_config_json) and the help text
 * (ftc_train_options' group/arg/help, printed by `ftc train --help`).
 * X(name, kind, field, lo, hi, default number, default text, group, arg, help):
 *   kind  PATH, STR (text in a char array), CHOICE (STR from a fixed list), ENUM (a name -> value list),
 *         BOOL, INT, I64, FLT, DBL (numbers in [lo, hi]), SEED (a 64-bit unsigned integer), NOJSON_BOOL (a boolean
 *         that config.resolved.json does not record: --resume). The order is config.resolved.json's. */
#define TRAIN_OPTIONS(X)                                                                                               \
    X("model", PATH, model, 0, 0, 0, "", "Data", "DIR", "the model to fine-tune (Hugging Face layout, or a RUNDIR)")  \
    X("data", PATH, data, 0, 0, 0, "", "Data", "FILE",                                                                \
      "training data: JSONL / CSV / TSV / TXT as `ftc data check` reads it ({\"text\",\"label\"},\n"               \
      "{\"prompt\",\"completion\"}, {\"messages\"}, {\"text\"}), or pre-tokenized JSONL ({\"input_ids\": [..], ...})") \
    X("out", PATH, out, 0, 0, 0, "", "Data", "RUNDIR", "the run directory")                                          \
    X("val", PATH, val, 0, 0, 0, "", "Data", "FILE", "validation data")                                              \
    X("task", ENUM, task, 0, 0, 0, "classify", "What to train", "causal-lm|classify",                               \
      "next-token loss on trainable tokens, or a label per example (default: from the data: labelled records\n"    \
      "classify; text, prompt/completion, chat: causal-lm)")                                                         \
    X("method", ENUM, method, 0, 0, 0, "full", "What to train", "full|head|lora",                                    \
      "full: every weight; head: the new classification head (+ last N blocks), for causal-lm the last N blocks\n" \
      "and the final norm; lora: adapters (+ head)")                                                                 \
    X("val-split", DBL, val_split, 0, 0.9, 0, NULL, "Data", "F", "validation data: a seeded share F of --data (e.g. 0.1)") \
    X("epochs", INT, epochs, 0, 1000000, 0, NULL, "Optimisation", "N",                                               \
      "length of the run (--max-steps wins). Without it: the method's count, more (up to 25) until the run has\n"   \
      "100 optimizer steps, fewer (down to 1) so it sees at most 30,000 examples")                                  \
    X("max-steps", I64, max_steps, 0, 1099511627776.0, 0, NULL, "Optimisation", "N", "optimizer steps (0: from --epochs)") \
    X("lr", FLT, lr, 0, 10, -1, NULL, "Optimisation", "X", "learning rate (default: the task's and method's, docs/train.md)") \
    X("head-lr", FLT, head_lr, 0, 10, -1, NULL, "Optimisation", "X", "a new classification head's rate under lora and full") \
    X("lp-ft", BOOL, lp_ft, 0, 0, 1, NULL, "Optimisation", NULL,                                                     \
      "full on classify with a new head: the head alone first at --head-lr into RUNDIR/head-stage, then every\n"    \
      "weight (--no-lp-ft skips it)")                                                                                \
    X("memory-check", BOOL, memory_check, 0, 0, 1, NULL, "What to train", NULL,                                      \
      "refuse a run whose planned peak memory exceeds what is available (ftc plan; --no-memory-check runs it)")     \
    X("save-only-model", BOOL, save_only_model, 0, 0, 0, NULL, "Evaluation, checkpoints, logging", NULL,              \
      "a finished run keeps model/ (and adapter/) only: no checkpoint.ftc or best.ftc, so it cannot be continued")  \
    X("save-merged", BOOL, save_merged, 0, 0, 0, NULL, "Evaluation, checkpoints, logging", NULL,                      \
      "lora: also write model/, base + adapter merged (HF layout; alias --merge-lora)")                             \
    X("save-total-limit", INT, save_total_limit, 0, 1000000, 1, NULL, "Evaluation, checkpoints, logging", "N",        \
      "keep at most N checkpoints with optimizer state: checkpoint.ftc (the newest, what --resume reads) and\n"     \
      "checkpoint-STEP.ftc; the best evaluation's stays (0: keep all)")                                              \
    X("batch", INT, batch, 1, 65536, 0, NULL, "Optimisation", "N", "micro-batch size (default: the method's)")       \
    X("grad-accum", INT, grad_accum, 1, 65536, 1, NULL, "Optimisation", "N", "micro-batches per optimizer step: effective batch = batch x grad-accum") \
    X("max-len", INT, max_len, 2, 1048576, 128, NULL, "Data", "N", "longer examples are truncated")                  \
    X("warmup", DBL, warmup, 0, 1e12, -1, NULL, "Optimisation", "N|F", "linear warmup over N steps, or over share F < 1 of all steps") \
    X("schedule", ENUM, schedule, 0, 0, 0, "linear", "Optimisation", "linear|cosine|constant", "the rate after warmup") \
    X("weight-decay", FLT, weight_decay, 0, 10, 0.01, NULL, "Optimisation", "X", "AdamW, not applied to biases, norms and embeddings") \
    X("label-smoothing", FLT, label_smoothing, 0, 0.999, -1, NULL, "Optimisation", "X",                             \
      "classify: the training loss's target is 1-X on the label plus X/K on each of the K labels (HF\n"          \
      "label_smoothing_factor; default: the method's); validation keeps plain cross-entropy")                                              \
    X("layer-decay", FLT, layer_decay, 1e-6, 1, -1, NULL, "Optimisation", "X",                                      \
      "layer-wise rate decay (ELECTRA, BEiT): block i of L (0 nearest the input) steps at lr x X^(L-i), the\n"    \
      "embeddings at lr x X^(L+1), the head and final norm at lr (1: every weight at lr; default: the method's)")                          \
    X("average-last", DBL, average_last, 0, 1, -1, NULL, "Optimisation", "F",                                      \
      "the model is the mean of the weights after each of the last share F of the steps (tail averaging, as\n"   \
      "SWA; validation then scores the mean; 0: off; default: the method's)")                                      \
    X("rdrop", FLT, rdrop, 0, 1e6, -1, NULL, "Optimisation", "ALPHA",                                              \
      "classify: R-Drop, each example run twice (own dropout masks) and the loss CE + ALPHA/4 x the two\n"       \
      "passes' symmetric KL (x2 compute; 0: off; default: 1 for full, not its LP-FT head stage; else 0)")  \
    X("clip", FLT, clip, 0, 1e9, 1.0, NULL, "Optimisation", "X", "global gradient-norm clipping (0: off)")            \
    X("beta1", FLT, beta1, 0, 0.999999, 0.9, NULL, "Optimisation", "X", "AdamW")                                      \
    X("beta2", FLT, beta2, 0, 0.999999999, 0.999, NULL, "Optimisation", "X", "AdamW")                                 \
    X("adam-eps", FLT, adam_eps, 1e-30, 1, 1e-8, NULL, "Optimisation", "X", "AdamW")                                  \
    X("seed", SEED, seed, 0, 0, 42, NULL, "Optimisation", "N", "data order, head and adapter init: same seed, same result") \
    X("eval-every", INT, eval_every, 0, 1073741824, 0, NULL, "Evaluation, checkpoints, logging", "N",                \
      "validate every N steps (0: only at epoch ends; always at each epoch end)")                                   \
    X("save-every", INT, save_every, 0, 1073741824, 0, NULL, "Evaluation, checkpoints, logging", "N",                \
      "checkpoint every N steps (0: only at epoch ends and the end; always there)")                                 \
    X("log-every", INT, log_every, 1, 1073741824, 10, NULL, "Evaluation, checkpoints, logging", "N", "a metrics.jsonl line every N steps") \
    X("patience", INT, patience, 0, 1073741824, 0, NULL, "Evaluation, checkpoints, logging", "N",                    \
      "stop after N evaluations without improvement (0: never)")                                                    \
    X("metric", ENUM, metric, 0, 0, 0, "val_loss", "Evaluation, checkpoints, logging", "val_loss|accuracy|macro_f1",  \
      "what 'best' means (default: accuracy for classify, val_loss for causal-lm)")                                                \
    X("unfreeze-last", INT, unfreeze_last, 0, 1048576, -1, NULL, "What to train", "N",                               \
      "head: also train the last N transformer blocks (causal-lm default 1)")                                       \
    X("lora-r", INT, lora_r, 1, 65536, 8, NULL, "What to train", "R", "LoRA rank")                                    \
    X("lora-alpha", FLT, lora_alpha, 1e-6, 1e6, 16, NULL, "What to train", "A", "LoRA scale alpha / r")               \
    X("lora-dropout", FLT, lora_dropout, 0, 0.99, 0, NULL, "What to train", "P", "dropout on the adapters' input")    \
    X("lora-targets", STR, lora_targets, 0, 0, 0, "", "What to train", "LIST",                                       \
      "HF module names: q_proj,v_proj | c_attn | query,value | all-linear (default: the family's attention\n"       \
      "query/value projections)")                                                                                    \
    X("pooling", CHOICE, pooling, 0, 0, 0, "auto", "What to train", "auto|cls|mean|last",                           \
      "classify: what the head reads (auto: the checkpoint's sentence-transformers pooling if any, else CLS +\n"    \
      "pooler for BERT, last token for decoders)")                                                                   \
    X("feature-cache", BOOL, feature_cache, 0, 0, 1, NULL, "What to train", NULL,                                    \
      "head on a frozen backbone: the encoder runs once per example (eval mode) and the head trains on the\n"       \
      "cached features; --no-feature-cache runs it every step in training mode")                                    \
    X("grad-checkpoint", BOOL, grad_checkpoint, 0, 0, 0, NULL, "What to train", NULL,                                \
      "recompute each block in backward instead of storing its activations (same gradients; less memory,\n"        \
      "about a third more compute)")                                                                                 \
    X("precision", ENUM, precision, 0, 0, 0, "fp32", "Optimisation", "fp32|bf16",                                    \
      "bf16: matmuls of linears and heads take bf16 operands (f32 accumulation); master weights, gradients,\n"     \
      "AdamW state, norms and loss stay f32")                                                                        \
    X("base-dtype", ENUM, base_dtype, 0, 0, 0, "auto", "Optimisation", "auto|fp32|bf16|q8_0|q4_0|q4_1|q4_k|nf4|nf4dq", \
      "lora/head: frozen base weights stored in bf16 or block-quantized (fused matmuls on the blocks);\n"            \
      "nf4dq: nf4 with double-quantized scales (QLoRA, 4.13 bits); auto: bf16 when --precision bf16, and a\n"   \
      "GGUF's Q8_0/Q4_0/Q4_1/Q4_K weights kept in their own type (the file's bytes)")                                \
    X("format", STR, format, 0, 0, 0, "", "Data", "F", "text | completion | chat | label (default: detected)")       \
    X("chat-template", STR, template_name, 0, 0, 0, "", "Data", "T",                                                 \
      "chat template: a preset (chatml, llama3, llama2, zephyr, plain) or a .jinja file (default: the model's\n"    \
      "tokenizer_config.json)")                                                                                      \
    X("text-col", STR, text_col, 0, 0, 0, "", "Data", "C", "CSV/TSV text column")                                    \
    X("label-col", STR, label_col, 0, 0, 0, "", "Data", "C", "CSV/TSV label column")                                 \
    X("pack", BOOL, pack, 0, 0, 0, NULL, "Data", NULL, "causal-lm: pack examples into --max-len sequences")          \
    X("group-by-length", BOOL, group_by_length, 0, 0, 1, NULL, "Data", NULL,                                          \
      "each batch holds examples of similar length (mega-batches of 50 batches sorted, as HF's group_by_length):\n" \
      "far less padding, the same examples per epoch; --no-group-by-length: batches of random lengths")             \
    X("train-on-inputs", BOOL, train_on_inputs, 0, 0, 0, NULL, "Data", NULL,                                         \
      "causal-lm: also train prompt/user tokens (default: answers only)")                                           \
    X("resume", NOJSON_BOOL, resume, 0, 0, 0, NULL, "Evaluation, checkpoints, logging", NULL,                         \
      "continue RUNDIR from its last checkpoint (bit-identical to an uninterrupted run) with its saved settings;\n" \
      "a flag that contradicts them is refused (--lr, --save-every, --max-steps, --epochs may change)")

/* ---- what the table generates ---- */
typedef enum { K_PATH, K_STR, K_CHOICE, K_ENUM, K_BOOL, K_NOJSON_BOOL, K_INT, K_I64, K_FLT, K_DBL, K_SEED } opt_kind;
typedef struct {
    opt_kind kind;
    size_t off, size;    /* the field in ftc_train_config */
    double lo, hi, dnum; /* numbers: the accepted range; the default (numbers, booleans) */
    const char *dstr;    /* the default of text and names */
} opt_def;

#define OPT_DEF(name, kind, field, lo, hi, dnum, dstr, group, arg, help)                                             \
    {K_##kind, offsetof(ftc_train_config, field), sizeof(((ftc_train_config *)0)->field), lo, hi, dnum, dstr},
static const opt_def DEFS[] = {TRAIN_OPTIONS(OPT_DEF)};
#define OPT_PUBLIC(name, kind, field, lo, hi, dnum, dstr, group, arg, help)                                          \
    {name, K_##kind == K_BOOL || K_##kind == K_NOJSON_BOOL, group, arg, help, dstr ? dstr : #dnum},
static const ftc_train_option OPTIONS[] = {TRAIN_OPTIONS(OPT_PUBLIC){NULL, false, NULL, NULL, NULL, NULL}};
_Static_assert(sizeof DEFS / sizeof *DEFS <= 64, "ftc_train_config.set[] holds 64 options");

/* Names -> values of the ENUM settings; the first name of a value is the one written (config.resolved.json) and
 * listed in errors. CHOICE settings (text from a fixed list) use the names alone. */
typedef struct { const char *name; int value; } enum_name;
static const enum_name TASKS[] = {{"causal-lm", FTC_TASK_CAUSAL_LM}, {"classify", FTC_TASK_CLASSIFY},
                                  {"causal_lm", FTC_TASK_CAUSAL_LM}, {NULL, 0}};
static const enum_name METHODS[] = {{"full", FTC_METHOD_FULL}, {"head", FTC_METHOD_HEAD}, {"lora", FTC_METHOD_LORA},
                                    {NULL, 0}};
static const enum_name SCHEDULES[] = {{"linear", FTC_SCHED_LINEAR}, {"cosine", FTC_SCHED_COSINE},
                                      {"constant", FTC_SCHED_CONSTANT}, {NULL, 0}};
static const enum_name METRICS[] = {{"val_loss", FTC_METRIC_VAL_LOSS}, {"accuracy", FTC_METRIC_ACCURACY},
                                    {"macro_f1", FTC_METRIC_MACRO_F1}, {"val-loss", FTC_METRIC_VAL_LOSS},
                                    {"loss", FTC_METRIC_VAL_LOSS}, {"macro-f1", FTC_METRIC_MACRO_F1}, {NULL, 0}};
static const enum_name PRECISIONS[] = {{"fp32", FTC_PREC_FP32}, {"bf16", FTC_PREC_BF16}, {"f32", FTC_PREC_FP32},
                                       {NULL, 0}};
static const enum_name BASE_DTYPES[] = {{"auto", FTC_BASE_AUTO}, {"fp32", FTC_BASE_FP32}, {"bf16", FTC_BASE_BF16},
                                        {"q8_0", FTC_BASE_Q8_0}, {"q4_0", FTC_BASE_Q4_0}, {"q4_1", FTC_BASE_Q4_1},
                                        {"q4_k", FTC_BASE_Q4_K}, {"nf4", FTC_BASE_NF4}, {"nf4dq", FTC_BASE_NF4DQ},
                                        {"f32", FTC_BASE_FP32}, {NULL, 0}};
static const enum_name POOLINGS[] = {{"auto", 0}, {"cls", 1}, {"mean", 2}, {"last", 3}, {NULL, 0}};

static const enum_name *names_of(const char *option) {
    if (!strcmp(option, "task")) return TASKS;
    if (!strcmp(option, "method")) return METHODS;
    if (!strcmp(option, "schedule")) return SCHEDULES;
    if (!strcmp(option, "metric")) return METRICS;
    if (!strcmp(option, "precision")) return PRECISIONS;
    if (!strcmp(option, "base-dtype")) return BASE_DTYPES;
    return POOLINGS;
}

/* The first name of value v (what config.resolved.json records). */
static const char *name_of(const enum_name *t, int v) {
    for (; t->name; t++) if (t->value == v) return t->name;
    return "?";
}

static int enum_field(const ftc_train_config *c, const opt_def *d) {
    int v;
    memcpy(&v, (const char *)c + d->off, sizeof v);
    return v;
}

/* The names people bring from Hugging Face Trainer, PEFT and Axolotl (and this project's older names). */
static const ftc_train_alias ALIASES[] = {
    {"learning-rate", "lr"}, {"output-dir", "out"}, {"num-epochs", "epochs"}, {"num-train-epochs", "epochs"},
    {"model-name-or-path", "model"}, {"base-model", "model"}, {"batch-size", "batch"},
    {"per-device-train-batch-size", "batch"}, {"micro-batch-size", "batch"},
    {"gradient-accumulation-steps", "grad-accum"}, {"max-seq-length", "max-len"}, {"sequence-len", "max-len"},
    {"max-length", "max-len"}, {"warmup-steps", "warmup"}, {"warmup-ratio", "warmup"},
    {"lr-scheduler-type", "schedule"}, {"layerwise-lr-decay", "layer-decay"},
    {"label-smoothing-factor", "label-smoothing"}, {"lr-scheduler", "schedule"}, {"max-grad-norm", "clip"},
    {"adam-beta1", "beta1"}, {"adam-beta2", "beta2"}, {"adam-epsilon", "adam-eps"}, {"eval-steps", "eval-every"},
    {"save-steps", "save-every"}, {"logging-steps", "log-every"}, {"early-stopping-patience", "patience"},
    {"metric-for-best-model", "metric"}, {"lora-target-modules", "lora-targets"},
    {"gradient-checkpointing", "grad-checkpoint"}, {"sample-packing", "pack"}, {"val-set-size", "val-split"},
    {"template", "chat-template"}, {"bf16", "precision"}, {"merge-lora", "save-merged"}, {NULL, NULL}};

/* What config.resolved.json records about the run besides the settings; skipped when it is read back. */
static const char *const RUN_FACTS[] = {"trainable_params", "total_params", "total_steps", "warmup_steps",
                                        "steps_per_epoch", "train_examples", "val_examples", "memory_plan",
                                        "data_parallel_ranks", "base_dtype_resolved", NULL};

const ftc_train_option *ftc_train_options(void) { return OPTIONS; }
const ftc_train_alias *ftc_train_aliases(void) { return ALIASES; }

static bool is_run_fact(const char *key) {
    for (int i = 0; RUN_FACTS[i]; i++) if (!strcmp(RUN_FACTS[i], key)) return true;
    return false;
}

static int key_index(const char *key) {
    for (int i = 0; OPTIONS[i].name; i++) if (!strcmp(OPTIONS[i].name, key)) return i;
    return -1;
}

/* key ('_' or '-', an alias or the name itself) -> the option's name, or NULL */
const char *ftc_train_option_name(const char *key) {
    char k[64];
    size_t n = strlen(key);
    if (n >= sizeof k) return NULL;
    for (size_t i = 0; i <= n; i++) k[i] = key[i] == '_' ? '-' : key[i];
    int ki = key_index(k);
    if (ki >= 0) return OPTIONS[ki].name;
    for (int i = 0; ALIASES[i].alias; i++) if (!strcmp(ALIASES[i].alias, k)) return ALIASES[i].name;
    return NULL;
}

/* " (did you mean lr?)" for an unknown key, else "" */
static void suggest(const char *key, char *out, size_t cap) {
    const char *names[128];
    size_t n = 0;
    for (int i = 0; OPTIONS[i].name && n < 128; i++) names[n++] = OPTIONS[i].name;
    for (int i = 0; ALIASES[i].alias && n < 128; i++) names[n++] = ALIASES[i].alias;
    char list[256];
    if (ftc_closest_names(key, names, n, "", list, sizeof list)) snprintf(out, cap, " (did you mean %s?)", list);
    else snprintf(out, cap, " (run 'ftc train --help' for the list)");
}

void ftc_train_config_defaults(ftc_train_config *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; OPTIONS[i].name; i++) {
        const opt_def *d = &DEFS[i];
        char *f = (char *)c + d->off;
        switch (d->kind) {
        case K_PATH: case K_STR: case K_CHOICE: snprintf(f, d->size, "%s", d->dstr); break;
        case K_ENUM: {
            const enum_name *t = names_of(OPTIONS[i].name);
            while (t->name && strcmp(t->name, d->dstr)) t++;
            memcpy(f, &t->value, sizeof t->value);
            break;
        }
        case K_BOOL: case K_NOJSON_BOOL: *(bool *)f = d->dnum != 0; break;
        case K_INT: *(int *)f = (int)d->dnum; break;
        case K_I64: *(int64_t *)f = (int64_t)d->dnum; break;
        case K_FLT: *(float *)f = (float)d->dnum; break;
        case K_DBL: *(double *)f = d->dnum; break;
        case K_SEED: *(uint64_t *)f = (uint64_t)d->dnum; break;
        }
    }
}

const char *ftc_method_name(ftc_method m) {
    return m == FTC_METHOD_FULL ? "full" : m == FTC_METHOD_HEAD ? "head" : "lora";
}
static const int BASE_QTYPES[] = {[FTC_BASE_Q8_0] = FTC_GGML_Q8_0, [FTC_BASE_Q4_0] = FTC_GGML_Q4_0,
                                   [FTC_BASE_Q4_1] = FTC_GGML_Q4_1, [FTC_BASE_Q4_K] = FTC_GGML_Q4_K,
                                   [FTC_BASE_NF4] = FTC_QUANT_NF4, [FTC_BASE_NF4DQ] = FTC_QUANT_NF4DQ};
const char *ftc_base_dtype_name(ftc_base_dtype d) {
    if (d >= FTC_BASE_Q8_0 && d <= FTC_BASE_NF4DQ) return ftc_quant_name(BASE_QTYPES[d]);
    return d == FTC_BASE_BF16 ? "bf16" : d == FTC_BASE_FP32 ? "fp32" : "auto";
}
int ftc_train_base_qtype(const ftc_train_config *c) {
    if (c->method == FTC_METHOD_FULL || c->base_dtype < FTC_BASE_Q8_0 || c->base_dtype > FTC_BASE_NF4DQ) return -1;
    return BASE_QTYPES[c->base_dtype];
}
bool ftc_train_base_bf16(const ftc_train_config *c) {
    if (c->method == FTC_METHOD_FULL) return false;
    return c->base_dtype == FTC_BASE_BF16 || (c->base_dtype == FTC_BASE_AUTO && c->precision == FTC_PREC_BF16);
}
bool ftc_train_base_from_gguf(const ftc_train_config *c) {
    return c->method != FTC_METHOD_FULL && c->base_dtype == FTC_BASE_AUTO && ftc_model_has_gguf_types(c->model);
}
const char *ftc_metric_name(ftc_metric m) {
    return m == FTC_METRIC_VAL_LOSS ? "val_loss" : m == FTC_METRIC_ACCURACY ? "accuracy" : "macro_f1";
}

static ftc_status parse_long(const char *key, const char *v, long long lo, long long hi, long long *out, ftc_err *err) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return ftc_errf(err, FTC_E_USAGE, "%s: '%s' is not an integer in [%lld, %lld]", key, v, lo, hi);
    *out = x;
    return FTC_OK;
}

static ftc_status parse_double(const char *key, const char *v, double lo, double hi, double *out, ftc_err *err) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
        return ftc_errf(err, FTC_E_USAGE, "%s: '%s' is not a number in [%g, %g]", key, v, lo, hi);
    *out = x;
    return FTC_OK;
}

static ftc_status parse_bool(const char *key, const char *v, bool *out, ftc_err *err) {
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *out = false;
    else return ftc_errf(err, FTC_E_USAGE, "%s: '%s' is not a boolean (true or false)", key, v);
    return FTC_OK;
}

/* v as option i's value into c (its kind's parsing, range and names). */
static ftc_status set_value(ftc_train_config *c, int i, const char *v, ftc_err *err) {
    const opt_def *d = &DEFS[i];
    const char *key = OPTIONS[i].name;
    char *f = (char *)c + d->off;
    long long L = 0;
    double D = 0;
    ftc_status s = FTC_OK;
    switch (d->kind) {
    case K_PATH:
        if (strlen(v) >= d->size) return ftc_errf(err, FTC_E_USAGE, "%s: path longer than %zu bytes", key, d->size - 1);
        strcpy(f, v);
        break;
    case K_STR:
        if (strlen(v) >= d->size) return ftc_errf(err, FTC_E_USAGE, "%s: '%s' is too long", key, v);
        strcpy(f, v);
        break;
    case K_CHOICE: case K_ENUM: {
        const enum_name *t = names_of(key);
        for (const enum_name *n = t; n->name; n++)
            if (!strcmp(n->name, v)) {
                if (d->kind == K_ENUM) memcpy(f, &n->value, sizeof n->value);
                else snprintf(f, d->size, "%s", n->name);
                return FTC_OK;
            }
        char list[256] = "";
        for (const enum_name *n = t; n->name; n++) {
            if (strcmp(name_of(t, n->value), n->name)) continue; /* an alias */
            size_t len = strlen(list);
            snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", n->name);
        }
        return ftc_errf(err, FTC_E_USAGE, "%s: '%s' is not one of %s", key, v, list);
    }
    case K_BOOL: case K_NOJSON_BOOL: return parse_bool(key, v, (bool *)f, err);
    case K_INT: if ((s = parse_long(key, v, (long long)d->lo, (long long)d->hi, &L, err)) == FTC_OK) *(int *)f = (int)L; break;
    case K_I64: if ((s = parse_long(key, v, (long long)d->lo, (long long)d->hi, &L, err)) == FTC_OK) *(int64_t *)f = L; break;
    case K_FLT: if ((s = parse_double(key, v, d->lo, d->hi, &D, err)) == FTC_OK) *(float *)f = (float)D; break;
    case K_DBL: if ((s = parse_double(key, v, d->lo, d->hi, &D, err)) == FTC_OK) *(double *)f = D; break;
    case K_SEED: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-')
            return ftc_errf(err, FTC_E_USAGE, "seed: '%s' is not a non-negative integer", v);
        *(uint64_t *)f = x;
        break;
    }
    }
    return s;
}

ftc_status ftc_train_config_set(ftc_train_config *c, const char *key_in, const char *v, ftc_err *err) {
    const char *key = ftc_train_option_name(key_in);
    if (!key) {
        char hint[300];
        suggest(key_in, hint, sizeof hint);
        return ftc_errf(err, FTC_E_USAGE, "unknown setting '%.60s'%s", key_in, hint);
    }
    int ki = key_index(key);
    /* HF Trainer's and Axolotl's bf16: true|false is --precision bf16|fp32 */
    if (!strcmp(key, "precision") && (!strcmp(key_in, "bf16") || !strcmp(key_in, "--bf16"))) {
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) v = "bf16";
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) v = "fp32";
        else return ftc_errf(err, FTC_E_USAGE, "bf16: '%s' is not a boolean (true or false)", v);
    }
    ftc_status s = set_value(c, ki, v, err);
    if (s == FTC_OK) c->set[ki] = true, c->from_run[ki] = false;
    return s;
}

bool ftc_train_config_is_set(const ftc_train_config *c, const char *key) {
    const char *name = ftc_train_option_name(key);
    return name && c->set[key_index(name)];
}

static bool user_set(const ftc_train_config *c, const char *key) {
    int i = key_index(key);
    return c->set[i] && !c->from_run[i];
}

/* ---- config files ---- */
static ftc_status load_json(ftc_train_config *c, const char *path, ftc_err *err) {
    json_error_t je;
    json_t *root = ftc_json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", path, je.line, je.text);
    ftc_status s = FTC_OK;
    if (!json_is_object(root)) s = ftc_errf(err, FTC_E_INPUT, "%s: expected a JSON object of settings", path);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (s != FTC_OK) break;
        if (is_run_fact(key)) {
            /* kept (not a setting): what --base-dtype resolved to, for a resume to check against */
            if (!strcmp(key, "base_dtype_resolved") && json_is_string(v))
                snprintf(c->base_resolved, sizeof c->base_resolved, "%s", json_string_value(v));
            continue;
        }
        char buf[FTC_PATH_MAX + 32];
        if (json_is_string(v)) snprintf(buf, sizeof buf, "%s", json_string_value(v));
        else if (json_is_integer(v)) snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v)) snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        else if (json_is_boolean(v)) snprintf(buf, sizeof buf, "%s", json_is_true(v) ? "true" : "false");
        else if (json_is_null(v)) continue;
        else { s = ftc_errf(err, FTC_E_INPUT, "%s: key '%s': expected a string, number or boolean", path, key); break; }
        if ((s = ftc_train_config_set(c, key, buf, err)) != FTC_OK) {
            err->code = s = FTC_E_INPUT;
            ftc_err_prefix(err, "%s: key '%s'", path, key);
        }
    }
    json_decref(root);
    return s;
}

static ftc_status load_yaml(ftc_train_config *c, const char *path, const char *text, size_t len, ftc_err *err) {
    yaml_parser_t p;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&p)) return ftc_errf(err, FTC_E_NOMEM, "%s: cannot start the YAML parser", path);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    ftc_status s = FTC_OK;
    int depth = 0; /* 1 = inside the top-level mapping */
    char key[128] = "";
    bool have_key = false, done = false;
    while (!done && s == FTC_OK) {
        if (!yaml_parser_parse(&p, &ev)) {
            s = ftc_errf(err, FTC_E_INPUT, "%s: line %zu: %s", path, p.problem_mark.line + 1,
                         p.problem ? p.problem : "YAML syntax error");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_MAPPING_START_EVENT:
            if (depth == 0) depth = 1;
            else s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: key '%s': nested mappings are not settings", path, line, key);
            break;
        case YAML_SEQUENCE_START_EVENT:
            s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: key '%s': lists are not settings (use \"a,b\")", path, line,
                         have_key ? key : "?");
            break;
        case YAML_SCALAR_EVENT: {
            const char *val = (const char *)ev.data.scalar.value;
            if (depth != 1) { s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: expected a mapping of settings", path, line); break; }
            if (!have_key) {
                snprintf(key, sizeof key, "%s", val);
                have_key = true;
            } else {
                have_key = false;
                bool null_value = ev.data.scalar.length == 0 || !strcmp(val, "~") || !strcmp(val, "null");
                if (!null_value && (s = ftc_train_config_set(c, key, val, err)) != FTC_OK) {
                    err->code = s = FTC_E_INPUT;
                    ftc_err_prefix(err, "%s: line %d: key '%s'", path, line, key);
                }
            }
            break;
        }
        case YAML_ALIAS_EVENT: s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: aliases are not supported", path, line); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return s;
}

ftc_status ftc_train_config_load_file(ftc_train_config *c, const char *path, ftc_err *err) {
    char *text;
    size_t len;
    ftc_status s = ftc_read_file(path, &text, &len, err);
    if (s != FTC_OK) return s;
    const char *dot = strrchr(path, '.');
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i])) i++;
    bool json = (dot && !strcmp(dot, ".json")) || (i < len && text[i] == '{');
    s = json ? load_json(c, path, err) : load_yaml(c, path, text, len, err);
    free(text);
    return s;
}

ftc_status ftc_train_config_load_resolved(ftc_train_config *c, const char *path, ftc_err *err) {
    ftc_status s = ftc_train_config_load_file(c, path, err);
    /* a run recorded before head_lr and lp_ft existed trained its head at lr, without a head stage */
    if (s == FTC_OK && !c->set[key_index("head-lr")] && c->set[key_index("lr")]) c->head_lr = c->lr, c->set[key_index("head-lr")] = true;
    if (s == FTC_OK && !c->set[key_index("lp-ft")]) c->lp_ft = false, c->set[key_index("lp-ft")] = true;
    /* and before layer-wise decay and label smoothing: every weight at lr, the plain cross-entropy */
    if (s == FTC_OK && !c->set[key_index("layer-decay")]) c->layer_decay = 1, c->set[key_index("layer-decay")] = true;
    if (s == FTC_OK && !c->set[key_index("label-smoothing")])
        c->label_smoothing = 0, c->set[key_index("label-smoothing")] = true;
    /* and before weight averaging: the last step's weights */
    if (s == FTC_OK && !c->set[key_index("average-last")]) c->average_last = 0, c->set[key_index("average-last")] = true;
    /* and before R-Drop: each example once */
    if (s == FTC_OK && !c->set[key_index("rdrop")]) c->rdrop = 0, c->set[key_index("rdrop")] = true;
    /* and in data order, shuffled only */
    if (s == FTC_OK && !c->set[key_index("group-by-length")])
        c->group_by_length = false, c->set[key_index("group-by-length")] = true;
    for (int i = 0; OPTIONS[i].name; i++) c->from_run[i] = c->set[i];
    return s;
}

/* Settings a resumed run may change: how often it writes checkpoints, its length (--max-steps / --epochs:
 * continue a finished run for longer, or stop a long one earlier) and --lr (how a run stopped by a NaN loss goes
 * on from its last good checkpoint, as the NaN message says). Nothing else it computes. */
static bool free_on_resume(const char *name) {
    return !strcmp(name, "save-every") || !strcmp(name, "lr") || !strcmp(name, "resume") || !strcmp(name, "max-steps") || !strcmp(name, "epochs") ||
           !strcmp(name, "memory-check") || !strcmp(name, "save-only-model") || !strcmp(name, "save-merged") ||
           !strcmp(name, "save-total-limit") ||
           !strcmp(name, "out"); /* a run directory that was moved or copied */
}

ftc_status ftc_train_config_resume_conflict(const ftc_train_config *saved, const ftc_train_config *now, ftc_err *err) {
    json_t *a = ftc_train_config_json(saved), *b = ftc_train_config_json(now);
    ftc_status s = FTC_OK;
    for (int i = 0; OPTIONS[i].name && s == FTC_OK; i++) {
        if (!now->set[i] || now->from_run[i] || !saved->set[i] || free_on_resume(OPTIONS[i].name)) continue;
        char key[64];
        snprintf(key, sizeof key, "%s", OPTIONS[i].name);
        for (char *p = key; *p; p++) if (*p == '-') *p = '_';
        json_t *va = json_object_get(a, key), *vb = json_object_get(b, key);
        if (!va || !vb || json_equal(va, vb)) continue;
        char *ta = json_is_string(va) ? strdup(json_string_value(va)) : json_dumps(va, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6)),
             *tb = json_is_string(vb) ? strdup(json_string_value(vb)) : json_dumps(vb, JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
        s = ftc_errf(err, FTC_E_USAGE, "--resume: --%s %s contradicts the saved run's %s %s (%s/config.resolved.json); "
                     "resume with the run's settings, or start a new run in another --out", OPTIONS[i].name,
                     tb ? tb : "?", OPTIONS[i].name, ta ? ta : "?", saved->out);
        free(ta);
        free(tb);
    }
    json_decref(a);
    json_decref(b);
    return s;
}

/* The defaults per task and method, chosen on validation splits (docs/train.md, "Defaults", has the table and
 * the figures they come from). lr: the trained weights' rate; head_lr: a new classification head's (lora, and
 * full without LP-FT; full with LP-FT trains the head first at the head method's rate); epochs: the base count
 * that ftc_train_auto_epochs adjusts to the data's size. */
ftc_train_defaults ftc_train_method_defaults(ftc_task task, ftc_method method) {
    /* causal-lm: rates for hidden size 768, scaled by 768 / hidden (ftc_train_default_lr); on stories260K (64) they
     * give the best validation rates of the sweep: full 2e-3, lora and head 1e-2 */
    if (task == FTC_TASK_CAUSAL_LM) switch (method) {
        case FTC_METHOD_HEAD: return (ftc_train_defaults){.lr = 8.5e-4f, .head_lr = 8.5e-4f, .warmup = 0.1, .batch = 8, .epochs = 3, .layer_decay = 1};
        case FTC_METHOD_LORA: return (ftc_train_defaults){.lr = 8.5e-4f, .head_lr = 8.5e-4f, .warmup = 0.1, .batch = 8, .epochs = 3, .layer_decay = 1};
        default: return (ftc_train_defaults){.lr = 1.7e-4f, .head_lr = 1.7e-4f, .warmup = 0.1, .batch = 8, .epochs = 3, .layer_decay = 1};
        }
    switch (method) {
    case FTC_METHOD_HEAD: return (ftc_train_defaults){.lr = 1e-2f, .head_lr = 1e-2f, .warmup = 0, .batch = 32, .epochs = 4, .layer_decay = 1};
    case FTC_METHOD_LORA: return (ftc_train_defaults){.lr = 3e-3f, .head_lr = 1e-2f, .warmup = 0.1, .batch = 32, .epochs = 3, .layer_decay = 1};
    /* full: R-Drop at alpha 1 (each example twice, + 1/4 x the symmetric KL); not the LP-FT head stage, which runs
     * the head method's settings (docs/train.md "Defaults": Banking77 validation, seeds 42-45) */
    default: return (ftc_train_defaults){.lr = 5e-5f, .head_lr = 1e-2f, .warmup = 0.1, .batch = 32, .epochs = 3, .layer_decay = 1, .rdrop = 1};
    }
}

/* Like OpenAI's fine-tuning API: the base epochs, more when the data is too small to give MIN_STEPS optimizer
 * steps (at most MAX_EPOCHS), fewer when it is large (at most MAX_EXAMPLES examples seen, at least 1 epoch). */
enum { AUTO_MIN_STEPS = 100, AUTO_MAX_EPOCHS = 25, AUTO_MAX_EXAMPLES = 30000 };
int ftc_train_auto_epochs(const ftc_train_config *c, int n_train) {
    int epochs = ftc_train_method_defaults(c->task, c->method).epochs;
    if (n_train <= 0) return epochs;
    int batch = c->batch > 0 ? c->batch : ftc_train_method_defaults(c->task, c->method).batch;
    int accum = c->grad_accum > 0 ? c->grad_accum : 1;
    int64_t micro = (n_train + batch - 1) / batch, steps_per_epoch = (micro + accum - 1) / accum;
    if (steps_per_epoch * epochs < AUTO_MIN_STEPS) {
        int64_t want = (AUTO_MIN_STEPS + steps_per_epoch - 1) / steps_per_epoch;
        epochs = (int)(want < AUTO_MAX_EPOCHS ? want : AUTO_MAX_EPOCHS);
    }
    if ((int64_t)n_train * epochs > AUTO_MAX_EXAMPLES) epochs = AUTO_MAX_EXAMPLES / n_train > 1 ? AUTO_MAX_EXAMPLES / n_train : 1;
    return epochs;
}

float ftc_train_default_lr(ftc_task task, ftc_method method, int hidden_size) {
    float lr = ftc_train_method_defaults(task, method).lr;
    if (task != FTC_TASK_CAUSAL_LM || hidden_size <= 0) return lr;
    /* Adam's best rate falls roughly as 1/width (muP): the table's rate is for hidden size 768 */
    double scale = 768.0 / hidden_size;
    scale = scale < 0.25 ? 0.25 : scale > 16 ? 16 : scale;
    return (float)(lr * scale);
}

void ftc_train_config_fit_model(ftc_train_config *c, int hidden_size) {
    if (c->lr < 0) c->lr = ftc_train_default_lr(c->task, c->method, hidden_size);
    if (c->head_lr < 0) c->head_lr = c->lr;
}

void ftc_train_config_fit_data(ftc_train_config *c, int n_train) {
    if (c->epochs <= 0) c->epochs = ftc_train_auto_epochs(c, n_train);
}

ftc_status ftc_train_config_finalize(ftc_train_config *c, ftc_err *err) {
    if (!c->model[0]) return ftc_errf(err, FTC_E_USAGE, "--model DIR is required");
    if (!c->out[0]) return ftc_errf(err, FTC_E_USAGE, "--out RUNDIR is required");
    if (!c->data[0]) return ftc_errf(err, FTC_E_USAGE, "--data FILE is required");
    if (c->val[0] && c->val_split > 0) return ftc_errf(err, FTC_E_USAGE, "give --val FILE or --val-split, not both");
    if (c->task == FTC_TASK_CAUSAL_LM && c->metric != FTC_METRIC_VAL_LOSS)
        return ftc_errf(err, FTC_E_USAGE, "metric %s needs --task classify (causal-lm: val_loss)", ftc_metric_name(c->metric));
    if (c->patience > 0 && !c->val[0] && c->val_split <= 0)
        return ftc_errf(err, FTC_E_USAGE, "--patience needs validation data (--val FILE or --val-split F)");
    if (c->unfreeze_last < 0) c->unfreeze_last = c->method == FTC_METHOD_HEAD && c->task == FTC_TASK_CAUSAL_LM ? 1 : 0;
    if (c->method == FTC_METHOD_HEAD && c->task == FTC_TASK_CAUSAL_LM && c->unfreeze_last == 0)
        return ftc_errf(err, FTC_E_USAGE, "--method head with --task causal-lm trains the last N blocks: --unfreeze-last must be >= 1");
    if (c->task == FTC_TASK_CAUSAL_LM && c->label_smoothing > 0 && user_set(c, "label-smoothing"))
        return ftc_errf(err, FTC_E_USAGE, "--label-smoothing needs --task classify");
    if (c->task != FTC_TASK_CAUSAL_LM && (c->pack || c->train_on_inputs))
        return ftc_errf(err, FTC_E_USAGE, "--pack and --train-on-inputs need --task causal-lm");
    if (c->method == FTC_METHOD_FULL && c->base_dtype != FTC_BASE_AUTO && c->base_dtype != FTC_BASE_FP32)
        return ftc_errf(err, FTC_E_USAGE, "--base-dtype %s stores the frozen base weights: it needs --method lora or head "
                        "(for full fine-tuning in bf16 use --precision bf16)", ftc_base_dtype_name(c->base_dtype));
    ftc_train_defaults d = ftc_train_method_defaults(c->task, c->method);
    /* causal-lm rates depend on the model's width: ftc_train_config_fit_model sets them once it is loaded */
    if (c->task == FTC_TASK_CLASSIFY) {
        if (c->lr < 0) c->lr = d.lr;
        if (c->head_lr < 0) c->head_lr = c->method == FTC_METHOD_HEAD ? c->lr : d.head_lr;
    }
    else if (c->lr >= 0 && c->head_lr < 0) c->head_lr = c->lr; /* causal-lm has no new head */
    if (c->warmup < 0) c->warmup = d.warmup;
    if (c->batch <= 0) c->batch = d.batch;
    if (c->layer_decay < 0) c->layer_decay = d.layer_decay;
    if (c->label_smoothing < 0) c->label_smoothing = c->task == FTC_TASK_CLASSIFY ? d.label_smoothing : 0;
    if (c->average_last < 0) c->average_last = d.average_last;
    if (c->task == FTC_TASK_CAUSAL_LM && c->rdrop > 0 && user_set(c, "rdrop"))
        return ftc_errf(err, FTC_E_USAGE, "--rdrop needs --task classify");
    if (c->rdrop < 0) c->rdrop = c->task == FTC_TASK_CLASSIFY ? d.rdrop : 0;
    /* the head on cached features has no encoder forward to run twice (and no dropout but the head's own) */
    if (c->rdrop > 0 && c->task == FTC_TASK_CLASSIFY && c->method == FTC_METHOD_HEAD && c->feature_cache &&
        c->unfreeze_last == 0)
        return ftc_errf(err, FTC_E_USAGE, "--rdrop runs the encoder twice per example: with --method head it needs "
                        "--no-feature-cache or --unfreeze-last N");
    /* the checkpoint kept for classify is the most accurate one on validation (as Hugging Face users set
     * metric_for_best_model): the lowest val_loss comes early, before the accuracy stops rising (docs/train.md) */
    if (c->task == FTC_TASK_CLASSIFY && !c->set[key_index("metric")]) c->metric = FTC_METRIC_ACCURACY;
    /* only settings the user gave: a resumed run's config.resolved.json holds every setting, LoRA's included */
    if (c->method != FTC_METHOD_LORA && (user_set(c, "lora-r") || user_set(c, "lora-targets")))
        return ftc_errf(err, FTC_E_USAGE, "--lora-* settings need --method lora");
    if (c->method != FTC_METHOD_LORA && c->save_merged && user_set(c, "save-merged"))
        return ftc_errf(err, FTC_E_USAGE, "--save-merged is for --method lora (a %s run always writes model/)",
                        ftc_method_name(c->method));
    return FTC_OK;
}

ftc_status ftc_train_config_save(const ftc_train_config *c, const char *path, ftc_err *err) {
    json_t *o = ftc_train_config_json(c);
    ftc_status s = o ? ftc_json_save_file(path, o, err) : ftc_errf(err, FTC_E_NOMEM, "out of memory");
    json_decref(o);
    return s;
}

json_t *ftc_train_config_json(const ftc_train_config *c) {
    json_t *o = json_object();
    if (!o) return NULL;
    for (int i = 0; OPTIONS[i].name; i++) {
        const opt_def *d = &DEFS[i];
        const char *f = (const char *)c + d->off;
        char key[64], seed[32];
        snprintf(key, sizeof key, "%s", OPTIONS[i].name);
        for (char *p = key; *p; p++) if (*p == '-') *p = '_';
        json_t *v = NULL;
        switch (d->kind) {
        case K_NOJSON_BOOL: continue; /* --resume: how this process started, not a setting of the run */
        case K_PATH: case K_STR: case K_CHOICE: v = json_string(f); break;
        case K_ENUM: v = json_string(name_of(names_of(OPTIONS[i].name), enum_field(c, d))); break;
        case K_BOOL: v = json_boolean(*(const bool *)f); break;
        case K_INT: v = json_integer(*(const int *)f); break;
        case K_I64: v = json_integer(*(const int64_t *)f); break;
        case K_FLT: v = json_real(*(const float *)f); break;
        case K_DBL: v = json_real(*(const double *)f); break;
        case K_SEED: /* a string: JSON numbers lose 64-bit precision */
            snprintf(seed, sizeof seed, "%llu", (unsigned long long)*(const uint64_t *)f);
            v = json_string(seed);
            break;
        }
        json_object_set_new(o, key, v);
    }
    if (c->base_resolved[0]) json_object_set_new(o, "base_dtype_resolved", json_string(c->base_resolved));
    return o;
}

json_t *ftc_train_config_defaults_json(const json_t *resolved, int hidden_size) {
    ftc_train_config d;
    ftc_train_config_defaults(&d);
    ftc_err e;
    const char *task = json_string_value(json_object_get(resolved, "task")),
               *method = json_string_value(json_object_get(resolved, "method"));
    if (task) (void)ftc_train_config_set(&d, "task", task, &e);
    if (method) (void)ftc_train_config_set(&d, "method", method, &e);
    strcpy(d.model, "m");
    strcpy(d.data, "d");
    strcpy(d.out, "o");
    (void)ftc_train_config_finalize(&d, &e); /* cannot fail on the defaults of a task and method */
    ftc_train_config_fit_model(&d, hidden_size);
    /* the epochs the run would have got on its data, with its own batch */
    json_t *n_train = json_object_get(resolved, "train_examples"), *batch = json_object_get(resolved, "batch"),
           *accum = json_object_get(resolved, "grad_accum");
    ftc_train_config like = d;
    if (json_is_integer(batch) && json_integer_value(batch) > 0 && json_integer_value(batch) < INT32_MAX)
        like.batch = (int)json_integer_value(batch);
    if (json_is_integer(accum) && json_integer_value(accum) > 0 && json_integer_value(accum) < INT32_MAX)
        like.grad_accum = (int)json_integer_value(accum);
    json_int_t n = json_is_integer(n_train) ? json_integer_value(n_train) : 0;
    d.epochs = ftc_train_auto_epochs(&like, n > 0 && n < INT32_MAX ? (int)n : 0);
    return ftc_train_config_json(&d);
}

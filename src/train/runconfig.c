/* `ftc train` settings: defaults, one setter per key shared by the command line and config files
 * (YAML or JSON, same keys, '-' or '_'), validation, and the resolved JSON written to the run dir. */
#include "ftc/train.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/quant.h"
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Every setting `ftc train` knows, one table for the command line, config files and config.resolved.json. */
static const ftc_train_option OPTIONS[] = {
    {"model", false}, {"data", false}, {"out", false}, {"val", false}, {"task", false}, {"method", false},
    {"val-split", false}, {"epochs", false}, {"max-steps", false}, {"lr", false}, {"batch", false},
    {"grad-accum", false}, {"max-len", false}, {"warmup", false}, {"schedule", false}, {"weight-decay", false},
    {"clip", false}, {"beta1", false}, {"beta2", false}, {"adam-eps", false}, {"seed", false}, {"eval-every", false},
    {"save-every", false}, {"log-every", false}, {"patience", false}, {"metric", false}, {"unfreeze-last", false},
    {"lora-r", false}, {"lora-alpha", false}, {"lora-dropout", false}, {"lora-targets", false}, {"resume", true},
    {"format", false}, {"chat-template", false}, {"text-col", false}, {"label-col", false}, {"pack", true},
    {"train-on-inputs", true}, {"pooling", false}, {"feature-cache", true}, {"precision", false},
    {"base-dtype", false}, {"grad-checkpoint", true}, {"head-lr", false}, {"lp-ft", true}, {"memory-check", true}, {"save-only-model", true},
    {"save-merged", true}, {"save-total-limit", false}, {"group-by-length", true}, {NULL, false}};

/* The names people bring from Hugging Face Trainer, PEFT and Axolotl (and this project's older names). */
static const ftc_train_alias ALIASES[] = {
    {"learning-rate", "lr"}, {"output-dir", "out"}, {"num-epochs", "epochs"}, {"num-train-epochs", "epochs"},
    {"model-name-or-path", "model"}, {"base-model", "model"}, {"batch-size", "batch"},
    {"per-device-train-batch-size", "batch"}, {"micro-batch-size", "batch"},
    {"gradient-accumulation-steps", "grad-accum"}, {"max-seq-length", "max-len"}, {"sequence-len", "max-len"},
    {"max-length", "max-len"}, {"warmup-steps", "warmup"}, {"warmup-ratio", "warmup"},
    {"lr-scheduler-type", "schedule"}, {"lr-scheduler", "schedule"}, {"max-grad-norm", "clip"},
    {"adam-beta1", "beta1"}, {"adam-beta2", "beta2"}, {"adam-epsilon", "adam-eps"}, {"eval-steps", "eval-every"},
    {"save-steps", "save-every"}, {"logging-steps", "log-every"}, {"early-stopping-patience", "patience"},
    {"metric-for-best-model", "metric"}, {"lora-target-modules", "lora-targets"},
    {"gradient-checkpointing", "grad-checkpoint"}, {"sample-packing", "pack"}, {"val-set-size", "val-split"},
    {"template", "chat-template"}, {"bf16", "precision"}, {"merge-lora", "save-merged"}, {NULL, NULL}};

/* What config.resolved.json records about the run besides the settings; skipped when it is read back. */
static const char *const RUN_FACTS[] = {"trainable_params", "total_params", "total_steps", "warmup_steps",
                                        "steps_per_epoch", "train_examples", "val_examples", "memory_plan", NULL};

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
    c->task = FTC_TASK_CLASSIFY;
    c->method = FTC_METHOD_FULL;
    /* lr, head lr, warmup, batch: the method's defaults (ftc_train_method_defaults), filled in by finalize;
     * epochs: from the data's size (ftc_train_auto_epochs) */
    c->epochs = 0;
    c->lr = -1;
    c->head_lr = -1;
    c->warmup = -1;
    c->batch = 0;
    c->lp_ft = true;
    c->group_by_length = true;
    c->grad_accum = 1;
    c->max_len = 128;
    c->schedule = FTC_SCHED_LINEAR;
    c->weight_decay = 0.01f;
    c->clip = 1.0f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->adam_eps = 1e-8f;
    c->seed = 42;
    c->save_every = 0;
    c->log_every = 10;
    c->metric = FTC_METRIC_VAL_LOSS;
    c->unfreeze_last = -1;
    strcpy(c->pooling, "auto");
    c->feature_cache = true;
    c->memory_check = true;
    c->save_only_model = false;
    c->save_merged = false;
    c->save_total_limit = 1;
    c->lora_r = 8;
    c->lora_alpha = 16;
    c->lora_dropout = 0.0f;
}

const char *ftc_method_name(ftc_method m) {
    return m == FTC_METHOD_FULL ? "full" : m == FTC_METHOD_HEAD ? "head" : "lora";
}
static const int BASE_QTYPES[] = {[FTC_BASE_Q8_0] = FTC_GGML_Q8_0, [FTC_BASE_Q4_0] = FTC_GGML_Q4_0,
                                   [FTC_BASE_Q4_1] = FTC_GGML_Q4_1, [FTC_BASE_Q4_K] = FTC_GGML_Q4_K,
                                   [FTC_BASE_NF4] = FTC_QUANT_NF4};
const char *ftc_base_dtype_name(ftc_base_dtype d) {
    if (d >= FTC_BASE_Q8_0 && d <= FTC_BASE_NF4) return ftc_quant_name(BASE_QTYPES[d]);
    return d == FTC_BASE_BF16 ? "bf16" : d == FTC_BASE_FP32 ? "fp32" : "auto";
}
int ftc_train_base_qtype(const ftc_train_config *c) {
    if (c->method == FTC_METHOD_FULL || c->base_dtype < FTC_BASE_Q8_0 || c->base_dtype > FTC_BASE_NF4) return -1;
    return BASE_QTYPES[c->base_dtype];
}
bool ftc_train_base_bf16(const ftc_train_config *c) {
    if (c->method == FTC_METHOD_FULL) return false;
    return c->base_dtype == FTC_BASE_BF16 || (c->base_dtype == FTC_BASE_AUTO && c->precision == FTC_PREC_BF16);
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

static ftc_status copy_path(const char *key, char *dst, const char *v, ftc_err *err) {
    if (strlen(v) >= FTC_PATH_MAX) return ftc_errf(err, FTC_E_USAGE, "%s: path longer than %d bytes", key, FTC_PATH_MAX - 1);
    strcpy(dst, v);
    return FTC_OK;
}

static ftc_status copy_short(const char *key, char *dst, size_t cap, const char *v, ftc_err *err) {
    if (strlen(v) >= cap) return ftc_errf(err, FTC_E_USAGE, "%s: '%s' is too long", key, v);
    strcpy(dst, v);
    return FTC_OK;
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
    long long L;
    double D;
    ftc_status s = FTC_OK;
#define LONG(field, lo, hi) if ((s = parse_long(key, v, lo, hi, &L, err)) == FTC_OK) c->field = L
#define DBL(field, lo, hi) if ((s = parse_double(key, v, lo, hi, &D, err)) == FTC_OK) c->field = D
    if (!strcmp(key, "model")) s = copy_path(key, c->model, v, err);
    else if (!strcmp(key, "data")) s = copy_path(key, c->data, v, err);
    else if (!strcmp(key, "out")) s = copy_path(key, c->out, v, err);
    else if (!strcmp(key, "val")) s = copy_path(key, c->val, v, err);
    else if (!strcmp(key, "task")) {
        if (!strcmp(v, "causal-lm") || !strcmp(v, "causal_lm")) c->task = FTC_TASK_CAUSAL_LM;
        else if (!strcmp(v, "classify")) c->task = FTC_TASK_CLASSIFY;
        else s = ftc_errf(err, FTC_E_USAGE, "task: '%s' is not one of causal-lm, classify", v);
    } else if (!strcmp(key, "method")) {
        if (!strcmp(v, "full")) c->method = FTC_METHOD_FULL;
        else if (!strcmp(v, "head")) c->method = FTC_METHOD_HEAD;
        else if (!strcmp(v, "lora")) c->method = FTC_METHOD_LORA;
        else s = ftc_errf(err, FTC_E_USAGE, "method: '%s' is not one of full, head, lora", v);
    } else if (!strcmp(key, "schedule")) {
        if (!strcmp(v, "linear")) c->schedule = FTC_SCHED_LINEAR;
        else if (!strcmp(v, "cosine")) c->schedule = FTC_SCHED_COSINE;
        else if (!strcmp(v, "constant")) c->schedule = FTC_SCHED_CONSTANT;
        else s = ftc_errf(err, FTC_E_USAGE, "schedule: '%s' is not one of linear, cosine, constant", v);
    } else if (!strcmp(key, "metric")) {
        if (!strcmp(v, "val_loss") || !strcmp(v, "val-loss") || !strcmp(v, "loss")) c->metric = FTC_METRIC_VAL_LOSS;
        else if (!strcmp(v, "accuracy")) c->metric = FTC_METRIC_ACCURACY;
        else if (!strcmp(v, "macro_f1") || !strcmp(v, "macro-f1")) c->metric = FTC_METRIC_MACRO_F1;
        else s = ftc_errf(err, FTC_E_USAGE, "metric: '%s' is not one of val_loss, accuracy, macro_f1", v);
    } else if (!strcmp(key, "pooling")) {
        if (strcmp(v, "auto") && strcmp(v, "cls") && strcmp(v, "mean") && strcmp(v, "last"))
            s = ftc_errf(err, FTC_E_USAGE, "pooling: '%s' is not one of auto, cls, mean, last", v);
        else strcpy(c->pooling, v);
    } else if (!strcmp(key, "precision")) {
        if (!strcmp(v, "fp32") || !strcmp(v, "f32")) c->precision = FTC_PREC_FP32;
        else if (!strcmp(v, "bf16")) c->precision = FTC_PREC_BF16;
        else s = ftc_errf(err, FTC_E_USAGE, "precision: '%s' is not one of fp32, bf16", v);
    } else if (!strcmp(key, "base-dtype")) {
        if (!strcmp(v, "auto")) c->base_dtype = FTC_BASE_AUTO;
        else if (!strcmp(v, "fp32") || !strcmp(v, "f32")) c->base_dtype = FTC_BASE_FP32;
        else if (!strcmp(v, "bf16")) c->base_dtype = FTC_BASE_BF16;
        else if (ftc_quant_from_name(v) >= 0) {
            for (int d = FTC_BASE_Q8_0; d <= FTC_BASE_NF4; d++)
                if (BASE_QTYPES[d] == ftc_quant_from_name(v)) c->base_dtype = (ftc_base_dtype)d;
        } else s = ftc_errf(err, FTC_E_USAGE, "base-dtype: '%s' is not one of auto, fp32, bf16, q8_0, q4_0, q4_1, q4_k, nf4", v);
    } else if (!strcmp(key, "lora-targets")) {
        if (strlen(v) >= sizeof c->lora_targets) s = ftc_errf(err, FTC_E_USAGE, "lora-targets: too long");
        else strcpy(c->lora_targets, v);
    } else if (!strcmp(key, "format")) s = copy_short(key, c->format, sizeof c->format, v, err);
    else if (!strcmp(key, "chat-template")) s = copy_short(key, c->template_name, sizeof c->template_name, v, err);
    else if (!strcmp(key, "text-col")) s = copy_short(key, c->text_col, sizeof c->text_col, v, err);
    else if (!strcmp(key, "label-col")) s = copy_short(key, c->label_col, sizeof c->label_col, v, err);
    else if (!strcmp(key, "pack")) s = parse_bool(key, v, &c->pack, err);
    else if (!strcmp(key, "train-on-inputs")) s = parse_bool(key, v, &c->train_on_inputs, err);
    else if (!strcmp(key, "resume")) s = parse_bool(key, v, &c->resume, err);
    else if (!strcmp(key, "feature-cache")) s = parse_bool(key, v, &c->feature_cache, err);
    else if (!strcmp(key, "grad-checkpoint")) s = parse_bool(key, v, &c->grad_checkpoint, err);
    else if (!strcmp(key, "val-split")) { DBL(val_split, 0, 0.9); }
    else if (!strcmp(key, "epochs")) { LONG(epochs, 0, 1000000); } /* 0: from the data */
    else if (!strcmp(key, "max-steps")) { LONG(max_steps, 0, (long long)1 << 40); }
    else if (!strcmp(key, "lr")) { DBL(lr, 0, 10); }
    else if (!strcmp(key, "head-lr")) { DBL(head_lr, 0, 10); }
    else if (!strcmp(key, "lp-ft")) s = parse_bool(key, v, &c->lp_ft, err);
    else if (!strcmp(key, "group-by-length")) s = parse_bool(key, v, &c->group_by_length, err);
    else if (!strcmp(key, "memory-check")) s = parse_bool(key, v, &c->memory_check, err);
    else if (!strcmp(key, "save-only-model")) s = parse_bool(key, v, &c->save_only_model, err);
    else if (!strcmp(key, "save-merged")) s = parse_bool(key, v, &c->save_merged, err);
    else if (!strcmp(key, "save-total-limit")) { LONG(save_total_limit, 0, 1000000); }
    else if (!strcmp(key, "batch")) { LONG(batch, 1, 65536); }
    else if (!strcmp(key, "grad-accum")) { LONG(grad_accum, 1, 65536); }
    else if (!strcmp(key, "max-len")) { LONG(max_len, 2, 1 << 20); }
    else if (!strcmp(key, "warmup")) { DBL(warmup, 0, 1e12); }
    else if (!strcmp(key, "weight-decay")) { DBL(weight_decay, 0, 10); }
    else if (!strcmp(key, "clip")) { DBL(clip, 0, 1e9); }
    else if (!strcmp(key, "beta1")) { DBL(beta1, 0, 0.999999); }
    else if (!strcmp(key, "beta2")) { DBL(beta2, 0, 0.999999999); }
    else if (!strcmp(key, "adam-eps")) { DBL(adam_eps, 1e-30, 1); }
    else if (!strcmp(key, "seed")) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') s = ftc_errf(err, FTC_E_USAGE, "seed: '%s' is not a non-negative integer", v);
        else c->seed = x;
    }
    else if (!strcmp(key, "eval-every")) { LONG(eval_every, 0, 1 << 30); }
    else if (!strcmp(key, "save-every")) { LONG(save_every, 0, 1 << 30); }
    else if (!strcmp(key, "log-every")) { LONG(log_every, 1, 1 << 30); }
    else if (!strcmp(key, "patience")) { LONG(patience, 0, 1 << 30); }
    else if (!strcmp(key, "unfreeze-last")) { LONG(unfreeze_last, 0, 1 << 20); }
    else if (!strcmp(key, "lora-r")) { LONG(lora_r, 1, 1 << 16); }
    else if (!strcmp(key, "lora-alpha")) { DBL(lora_alpha, 1e-6, 1e6); }
    else if (!strcmp(key, "lora-dropout")) { DBL(lora_dropout, 0, 0.99); }
#undef LONG
#undef DBL
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
        if (is_run_fact(key)) continue;
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
        case FTC_METHOD_HEAD: return (ftc_train_defaults){.lr = 8.5e-4f, .head_lr = 8.5e-4f, .warmup = 0.1, .batch = 8, .epochs = 3};
        case FTC_METHOD_LORA: return (ftc_train_defaults){.lr = 8.5e-4f, .head_lr = 8.5e-4f, .warmup = 0.1, .batch = 8, .epochs = 3};
        default: return (ftc_train_defaults){.lr = 1.7e-4f, .head_lr = 1.7e-4f, .warmup = 0.1, .batch = 8, .epochs = 3};
        }
    switch (method) {
    case FTC_METHOD_HEAD: return (ftc_train_defaults){.lr = 1e-2f, .head_lr = 1e-2f, .warmup = 0, .batch = 32, .epochs = 4};
    case FTC_METHOD_LORA: return (ftc_train_defaults){.lr = 3e-3f, .head_lr = 1e-2f, .warmup = 0.1, .batch = 32, .epochs = 3};
    default: return (ftc_train_defaults){.lr = 5e-5f, .head_lr = 1e-2f, .warmup = 0.1, .batch = 32, .epochs = 3};
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

json_t *ftc_train_config_json(const ftc_train_config *c) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "model", json_string(c->model));
    json_object_set_new(o, "data", json_string(c->data));
    json_object_set_new(o, "out", json_string(c->out));
    json_object_set_new(o, "val", json_string(c->val));
    json_object_set_new(o, "task", json_string(ftc_task_name(c->task)));
    json_object_set_new(o, "method", json_string(ftc_method_name(c->method)));
    json_object_set_new(o, "val_split", json_real(c->val_split));
    json_object_set_new(o, "epochs", json_integer(c->epochs));
    json_object_set_new(o, "max_steps", json_integer(c->max_steps));
    json_object_set_new(o, "lr", json_real(c->lr));
    json_object_set_new(o, "head_lr", json_real(c->head_lr));
    json_object_set_new(o, "lp_ft", json_boolean(c->lp_ft));
    json_object_set_new(o, "memory_check", json_boolean(c->memory_check));
    json_object_set_new(o, "save_only_model", json_boolean(c->save_only_model));
    json_object_set_new(o, "save_merged", json_boolean(c->save_merged));
    json_object_set_new(o, "save_total_limit", json_integer(c->save_total_limit));
    json_object_set_new(o, "batch", json_integer(c->batch));
    json_object_set_new(o, "grad_accum", json_integer(c->grad_accum));
    json_object_set_new(o, "max_len", json_integer(c->max_len));
    json_object_set_new(o, "warmup", json_real(c->warmup));
    json_object_set_new(o, "schedule", json_string(ftc_sched_name(c->schedule)));
    json_object_set_new(o, "weight_decay", json_real(c->weight_decay));
    json_object_set_new(o, "clip", json_real(c->clip));
    json_object_set_new(o, "beta1", json_real(c->beta1));
    json_object_set_new(o, "beta2", json_real(c->beta2));
    json_object_set_new(o, "adam_eps", json_real(c->adam_eps));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    json_object_set_new(o, "seed", json_string(seed)); /* a string: JSON numbers lose 64-bit precision */
    json_object_set_new(o, "eval_every", json_integer(c->eval_every));
    json_object_set_new(o, "save_every", json_integer(c->save_every));
    json_object_set_new(o, "log_every", json_integer(c->log_every));
    json_object_set_new(o, "patience", json_integer(c->patience));
    json_object_set_new(o, "metric", json_string(ftc_metric_name(c->metric)));
    json_object_set_new(o, "unfreeze_last", json_integer(c->unfreeze_last));
    json_object_set_new(o, "lora_r", json_integer(c->lora_r));
    json_object_set_new(o, "lora_alpha", json_real(c->lora_alpha));
    json_object_set_new(o, "lora_dropout", json_real(c->lora_dropout));
    json_object_set_new(o, "lora_targets", json_string(c->lora_targets));
    json_object_set_new(o, "pooling", json_string(c->pooling));
    json_object_set_new(o, "feature_cache", json_boolean(c->feature_cache));
    json_object_set_new(o, "grad_checkpoint", json_boolean(c->grad_checkpoint));
    json_object_set_new(o, "precision", json_string(ftc_precision_name(c->precision)));
    json_object_set_new(o, "base_dtype", json_string(ftc_base_dtype_name(c->base_dtype)));
    json_object_set_new(o, "format", json_string(c->format));
    json_object_set_new(o, "chat_template", json_string(c->template_name));
    json_object_set_new(o, "text_col", json_string(c->text_col));
    json_object_set_new(o, "label_col", json_string(c->label_col));
    json_object_set_new(o, "pack", json_boolean(c->pack));
    json_object_set_new(o, "group_by_length", json_boolean(c->group_by_length));
    json_object_set_new(o, "train_on_inputs", json_boolean(c->train_on_inputs));
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

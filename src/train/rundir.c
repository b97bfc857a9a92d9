/* A finished run directory as a model: `ftc eval --model RUNDIR` loads RUNDIR/model with the run's task
 * and reads evaluation data the way the run read its training data. */
#include "ftc/train.h"
#include "ftc/base.h"
#include "ftc/safetensors.h"
#include "ftc/tokenizer.h"
#include "ftc/export.h"
#include "ftc/quant.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool file_in(const char *dir, const char *name) {
    char p[FTC_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return ftc_file_exists(p);
}

bool ftc_is_run_dir(const char *dir) { return file_in(dir, "config.resolved.json") && ftc_run_dir_has_model(dir); }

void ftc_run_dir_tokenizer_dir(const char *dir, const ftc_train_config *cfg, char *out, size_t n) {
    static const char *const files[] = {"model/tokenizer.json", "model/vocab.json", "model/vocab.txt"};
    for (int i = 0; i < 3; i++)
        if (file_in(dir, files[i])) {
            snprintf(out, n, "%s/model", dir);
            return;
        }
    snprintf(out, n, "%s", cfg->model);
}

/* keep: a LoRA run on a block-quantized base keeps its adapters unmerged (evaluation: ftc_run_info) */
static ftc_status run_dir_load(const char *dir, ftc_model **out, ftc_train_config *cfg, bool keep, ftc_err *err) {
    char path[FTC_PATH_MAX + 64];
    *out = NULL;
    ftc_train_config_defaults(cfg);
    snprintf(path, sizeof path, "%s/config.resolved.json", dir);
    ftc_status s = ftc_train_config_load_file(cfg, path, err);
    if (s != FTC_OK) return s;
    ftc_run_info ri = {.task = cfg->task, .lora = cfg->method == FTC_METHOD_LORA, .max_len = cfg->max_len,
                       .base_qtype = ftc_train_base_qtype(cfg), .base_bf16 = ftc_train_base_bf16(cfg),
                       .base_gguf = ftc_train_base_from_gguf(cfg), .keep_adapters_on_packed_base = keep};
    snprintf(ri.model, sizeof ri.model, "%s", cfg->model);
    snprintf(ri.template_name, sizeof ri.template_name, "%s", cfg->template_name);
    snprintf(ri.pooling, sizeof ri.pooling, "%s", cfg->pooling);
    return ftc_run_model_load(dir, &ri, out, err);
}

ftc_status ftc_run_dir_load(const char *dir, ftc_model **out, ftc_train_config *cfg, ftc_err *err) {
    return run_dir_load(dir, out, cfg, false, err);
}

ftc_status ftc_eval_worst_texts(json_t *json, const ftc_dataset *d, const char *tok_dir, ftc_err *err) {
    json_t *worst = json_object_get(json, "worst");
    if (!json_array_size(worst)) return FTC_OK;
    ftc_tokenizer *tok = NULL;
    ftc_status s = ftc_tokenizer_load(tok_dir, &tok, err);
    size_t i;
    json_t *o;
    json_array_foreach(worst, i, o) {
        json_t *ix = json_object_get(o, "index");
        json_int_t k = json_integer_value(ix);
        if (s == FTC_OK && json_is_integer(ix) && k >= 0 && k < d->n) {
            char *text = NULL;
            if ((s = ftc_tokenizer_decode(tok, d->ex[k].ids, (size_t)d->ex[k].len, true, &text, err)) != FTC_OK) break;
            json_object_set_new(o, "text", json_string(text));
            free(text);
        }
        json_object_del(o, "index");
    }
    ftc_tokenizer_free(tok);
    return s;
}

/* The texts of the tuned model's worst examples; the base column's list is of no use beside them. Not worth failing
 * an evaluation over: without a tokenizer the list stays without texts. */
static void worst_texts(json_t *tuned, json_t *base, const ftc_dataset *d, const char *tok_dir) {
    ftc_err ignored;
    if (tuned) (void)ftc_eval_worst_texts(tuned, d, tok_dir, &ignored);
    if (base) json_object_del(base, "worst");
}

ftc_status ftc_run_dir_eval(const char *dir, const char *data_path, int batch, json_t **json, ftc_err *err) {
    *json = NULL;
    ftc_train_config cfg;
    ftc_model *m;
    ftc_status s = run_dir_load(dir, &m, &cfg, true, err);
    if (s != FTC_OK) return s;
    ftc_dataset d = {0};
    s = ftc_run_dir_load_data(dir, &cfg, data_path, ftc_model_config_of(m)->vocab_size, &d, err);
    /* evaluation only: no gradient memory */
    for (int i = 0; s == FTC_OK && i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, false);
    ftc_eval_result r;
    if (s == FTC_OK) s = ftc_train_evaluate(m, cfg.task, &d, batch > 0 ? batch : cfg.batch, cfg.max_len, &r, json, err);
    if (s == FTC_OK) {
        char tok_dir[FTC_PATH_MAX + 64];
        ftc_run_dir_tokenizer_dir(dir, &cfg, tok_dir, sizeof tok_dir);
        worst_texts(*json, NULL, &d, tok_dir);
    }
    ftc_dataset_free(&d);
    ftc_model_free(m);
    return s;
}

ftc_status ftc_check_same_architecture(const ftc_model_config *tuned, const char *tuned_dir,
                                       const ftc_model_config *base, const char *base_dir, ftc_err *err) {
    /* the first difference, in the order a user would recognise it */
    const char *what = NULL;
    if (tuned->family != base->family || strcmp(tuned->model_type, base->model_type)) what = "model type";
    else if (tuned->vocab_size != base->vocab_size) what = "vocabulary size";
    else if (tuned->n_layers != base->n_layers) what = "number of layers";
    else if (tuned->hidden_size != base->hidden_size) what = "hidden size";
    else if (tuned->n_heads != base->n_heads || tuned->n_kv_heads != base->n_kv_heads ||
             tuned->head_dim != base->head_dim)
        what = "attention heads";
    else if (tuned->intermediate_size != base->intermediate_size) what = "MLP width";
    else if (tuned->type_vocab_size != base->type_vocab_size) what = "token types";
    if (!what) return FTC_OK;
    return ftc_errf(err, FTC_E_INPUT,
                    "the base model %s (%s, vocab %d, %d layers, hidden %d, %d heads) and the tuned model %s (%s, "
                    "vocab %d, %d layers, hidden %d, %d heads) differ in %s: compare against the model the tuned one "
                    "was trained from",
                    base_dir, base->model_type, base->vocab_size, base->n_layers, base->hidden_size, base->n_heads,
                    tuned_dir, tuned->model_type, tuned->vocab_size, tuned->n_layers, tuned->hidden_size,
                    tuned->n_heads, what);
}

/* The classification head's parameters (as the model declares them; not a LoRA matrix). */
static bool is_head(const ftc_param *p) { return p->role == FTC_PARAM_CLASSIFIER && !p->is_lora; }

/* classify: base's encoder + the tuned model's head and pooling. */
static ftc_status put_tuned_head(ftc_model *base, ftc_model *tuned, const ftc_train_config *cfg, ftc_err *err) {
    const ftc_model_config *tc = ftc_model_config_of(tuned);
    /* pooling as the tuned model records it (config.json "ftc_pooling"), else as the run chose it */
    ftc_pooling pool;
    if (!ftc_pooling_parse(tc->pooling, &pool)) pool = ftc_train_pooling(cfg->pooling, cfg->model, tc->family);
    int labels = 0;
    for (int i = 0; i < ftc_model_n_params(tuned); i++) {
        const ftc_param *p = ftc_model_param(tuned, i);
        if (is_head(p) && p->ndim == 2) labels = (int)p->shape[0];
    }
    if (labels < 1) return ftc_errf(err, FTC_E_INPUT, "the tuned model has no classification head");
    ftc_status s = ftc_model_set_classifier(base, labels, pool, 0, err);
    if (s != FTC_OK) return s;
    for (int i = 0; i < ftc_model_n_params(tuned); i++) {
        const ftc_param *p = ftc_model_param(tuned, i);
        if (!is_head(p)) continue;
        ftc_param *q = ftc_model_find_param(base, p->name);
        if (!q || q->numel != p->numel)
            return ftc_errf(err, FTC_E_INPUT, "cannot put the tuned head's '%s' on the base model", p->name);
        memcpy(q->data, p->data, (size_t)p->numel * sizeof(float));
    }
    return FTC_OK;
}

static void freeze_all(ftc_model *m) {
    for (int i = 0; i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, false);
}

static bool same_file(const char *a, const char *b) {
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb ? !strcmp(ra, rb) : !strcmp(a, b);
    free(ra), free(rb);
    return same;
}

const char *ftc_run_dir_compare_base_dtype(const ftc_train_config *cfg, const char *base_dir) {
    if (!base_dir || !same_file(base_dir, cfg->model)) return NULL;
    int q = ftc_train_base_qtype(cfg);
    if (q >= 0) return ftc_quant_name(q);
    /* --base-dtype auto on a GGUF: the file's own block types (bf16 for the rest under --precision bf16) */
    if (ftc_train_base_from_gguf(cfg)) return ftc_train_base_bf16(cfg) ? "the GGUF's types (the rest bf16)" : "the GGUF's types";
    return ftc_train_base_bf16(cfg) ? "bf16" : NULL;
}

/* The base column's model: the run's own base as the run held it while training (block-quantized, the GGUF's
 * types or bf16 frozen weights: the values the adapter was trained against, and training's memory, not an f32
 * copy), any other base_dir as it is stored. */
static ftc_status load_compare_base(const ftc_train_config *cfg, const char *base_dir, ftc_model **out, ftc_err *err) {
    const char *held = ftc_run_dir_compare_base_dtype(cfg, base_dir);
    int q = held ? ftc_train_base_qtype(cfg) : -1;
    if (q >= 0) return ftc_model_load_quant_base(base_dir, cfg->task, q, out, err);
    if (held && ftc_train_base_from_gguf(cfg)) return ftc_model_load_gguf_base(base_dir, cfg->task, ftc_train_base_bf16(cfg), out, err);
    if (held) return ftc_model_load_bf16_base(base_dir, cfg->task, out, err);
    return ftc_model_load(base_dir, cfg->task, out, err);
}

ftc_status ftc_run_dir_eval_dataset(const char *dir, const char *base_dir, const ftc_dataset *d, int batch,
                                    json_t **tuned_json, json_t **base_json, ftc_err *err) {
    *tuned_json = NULL;
    if (base_json) *base_json = NULL;
    ftc_train_config cfg;
    ftc_model *tuned = NULL, *base = NULL;
    ftc_model_config bc;
    char tuned_dir[FTC_PATH_MAX + 64], tok_dir[FTC_PATH_MAX + 64];
    snprintf(tuned_dir, sizeof tuned_dir, "%s", dir);
    ftc_status s = run_dir_load(dir, &tuned, &cfg, true, err);
    if (s != FTC_OK) return s;
    ftc_run_dir_tokenizer_dir(dir, &cfg, tok_dir, sizeof tok_dir);
    /* refuse a mismatched base before reading its weights */
    if (base_dir) {
        if ((s = ftc_config_load(base_dir, &bc, err)) != FTC_OK) {
            ftc_err_prefix(err, "--compare");
            goto done;
        }
        s = ftc_check_same_architecture(ftc_model_config_of(tuned), tuned_dir, &bc, base_dir, err);
        ftc_config_free(&bc);
        if (s != FTC_OK) goto done;
    }
    freeze_all(tuned);
    if (batch <= 0) batch = cfg.batch;
    ftc_eval_result r;
    if ((s = ftc_train_evaluate(tuned, cfg.task, d, batch, cfg.max_len, &r, tuned_json, err)) != FTC_OK) goto done;
    /* the base is read only now, a causal LM's after the tuned model is gone: the two models (and their
     * activations) are not held together. A classify run's base takes the tuned head first. */
    if (cfg.task != FTC_TASK_CLASSIFY) ftc_model_free(tuned), tuned = NULL;
    if (base_dir) {
        if ((s = load_compare_base(&cfg, base_dir, &base, err)) != FTC_OK) goto done;
        if (cfg.task == FTC_TASK_CLASSIFY && (s = put_tuned_head(base, tuned, &cfg, err)) != FTC_OK) goto done;
        freeze_all(base);
    }
    ftc_model_free(tuned);
    tuned = NULL;
    if (base && (s = ftc_train_evaluate(base, cfg.task, d, batch, cfg.max_len, &r, base_json, err)) != FTC_OK) {
        ftc_err_prefix(err, "base model %s", base_dir);
        goto done;
    }
    if (!*tuned_json || (base && !*base_json)) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) worst_texts(*tuned_json, base_json ? *base_json : NULL, d, tok_dir);
done:
    if (s != FTC_OK) {
        json_decref(*tuned_json);
        *tuned_json = NULL;
        if (base_json) json_decref(*base_json), *base_json = NULL;
    }
    ftc_model_free(tuned);
    ftc_model_free(base);
    return s;
}

ftc_status ftc_run_dir_eval_compare(const char *dir, const char *base_dir, const char *data_path, int batch,
                                    json_t **tuned_json, json_t **base_json, ftc_err *err) {
    *tuned_json = *base_json = NULL;
    ftc_train_config cfg;
    ftc_model_config tc, bc;
    ftc_dataset d = {0};
    char path[FTC_PATH_MAX + 64];
    ftc_train_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/config.resolved.json", dir);
    ftc_status s = ftc_train_config_load_file(&cfg, path, err);
    /* the tuned model's architecture: model/'s, or (a LoRA run keeping its adapter only) its base model's */
    snprintf(path, sizeof path, "%s/model/config.json", dir);
    if (ftc_file_exists(path)) snprintf(path, sizeof path, "%s/model", dir);
    else snprintf(path, sizeof path, "%s", cfg.model);
    if (s == FTC_OK) s = ftc_config_load(path, &tc, err);
    if (s != FTC_OK) return s;
    /* refuse a mismatched base before reading the data */
    if ((s = ftc_config_load(base_dir, &bc, err)) != FTC_OK) {
        ftc_config_free(&tc);
        return ftc_err_prefix(err, "--compare");
    }
    s = ftc_check_same_architecture(&tc, path, &bc, base_dir, err);
    ftc_config_free(&bc);
    if (s == FTC_OK) s = ftc_run_dir_load_data(dir, &cfg, data_path, tc.vocab_size, &d, err);
    ftc_config_free(&tc);
    if (s == FTC_OK) s = ftc_run_dir_eval_dataset(dir, base_dir, &d, batch, tuned_json, base_json, err);
    ftc_dataset_free(&d);
    return s;
}

/* Rows of the model's classification head, 0 when it has none. */
static int head_rows(ftc_model *m) {
    int rows = 0;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        const ftc_param *p = ftc_model_param(m, i);
        if (is_head(p) && p->ndim == 2) rows = (int)p->shape[0];
    }
    return rows;
}

bool ftc_model_dir_has_classifier(const char *dir) {
    ftc_model_config mc;
    ftc_err err;
    if (ftc_config_load(dir, &mc, &err) != FTC_OK) return false;
    bool named = mc.num_labels > 0, found = false;
    char name[32];
    snprintf(name, sizeof name, "%s.weight", mc.family == FTC_FAMILY_BERT ? "classifier" : "score");
    ftc_config_free(&mc);
    ftc_st_set *st;
    if (named && ftc_st_open(dir, &st, &err) == FTC_OK) {
        found = ftc_st_find(st, name) != NULL;
        ftc_st_close(st);
    }
    return found;
}

ftc_status ftc_model_dir_eval_classify(const char *dir, const char *base_dir, const char *data_path, int max_len,
                                       int batch, json_t **tuned_json, json_t **base_json, ftc_err *err) {
    *tuned_json = NULL;
    if (base_json) *base_json = NULL;
    ftc_model_config mc, bc;
    ftc_model *tuned = NULL, *base = NULL;
    ftc_dataset d = {0};
    ftc_train_config *c = malloc(sizeof *c);
    if (!c) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status s = ftc_config_load(dir, &mc, err);
    if (s != FTC_OK) { free(c); return s; }
    /* the settings put_tuned_head reads: pooling as the trainer's --pooling auto picks it for this directory */
    ftc_train_config_defaults(c);
    c->task = FTC_TASK_CLASSIFY;
    snprintf(c->model, sizeof c->model, "%s", dir);
    snprintf(c->pooling, sizeof c->pooling, "auto");
    if ((s = ftc_model_load(dir, FTC_TASK_CLASSIFY, &tuned, err)) != FTC_OK) goto done;
    int rows = head_rows(tuned);
    if (rows < 1) {
        s = ftc_errf(err, FTC_E_INPUT, "%s has no classification head (no %s.weight): classify data needs a "
                     "classifier (ftc train --task classify, or ftc export --format hf of such a run)", dir,
                     mc.family == FTC_FAMILY_BERT ? "classifier" : "score");
        goto done;
    }
    if (mc.num_labels != rows) {
        s = ftc_errf(err, FTC_E_INPUT, "%s: config.json names %d labels (id2label) but the head has %d rows", dir,
                     mc.num_labels, rows);
        goto done;
    }
    /* the head's own weights stay (the label count fits); only the pooling is set */
    if ((s = ftc_model_set_classifier(tuned, rows, ftc_train_pooling(c->pooling, dir, mc.family), 0, err)) != FTC_OK)
        goto done;
    if (max_len <= 0 || max_len > mc.max_positions) max_len = mc.max_positions;
    c->max_len = max_len;
    if (base_dir) { /* refuse a mismatched base before reading its weights or the data */
        if ((s = ftc_config_load(base_dir, &bc, err)) != FTC_OK) {
            ftc_err_prefix(err, "--compare");
            goto done;
        }
        s = ftc_check_same_architecture(ftc_model_config_of(tuned), dir, &bc, base_dir, err);
        ftc_config_free(&bc);
        if (s != FTC_OK) goto done;
    }
    if ((s = ftc_model_dir_load_class_data(dir, &mc, data_path, max_len, mc.vocab_size, &d, err)) != FTC_OK) goto done;
    if (base_dir && ((s = ftc_model_load(base_dir, FTC_TASK_CLASSIFY, &base, err)) != FTC_OK ||
                     (s = put_tuned_head(base, tuned, c, err)) != FTC_OK))
        goto done;
    freeze_all(tuned);
    if (batch <= 0) batch = c->batch > 0 ? c->batch : 32;
    ftc_eval_result r;
    if ((s = ftc_train_evaluate(tuned, FTC_TASK_CLASSIFY, &d, batch, max_len, &r, tuned_json, err)) != FTC_OK) goto done;
    ftc_model_free(tuned);
    tuned = NULL;
    if (base) {
        freeze_all(base);
        if ((s = ftc_train_evaluate(base, FTC_TASK_CLASSIFY, &d, batch, max_len, &r, base_json, err)) != FTC_OK) {
            ftc_err_prefix(err, "base model %s", base_dir);
            goto done;
        }
    }
    if (!*tuned_json || (base && !*base_json)) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) worst_texts(*tuned_json, base_json ? *base_json : NULL, &d, dir);
done:
    if (s != FTC_OK) {
        json_decref(*tuned_json);
        *tuned_json = NULL;
        if (base_json) json_decref(*base_json), *base_json = NULL;
    }
    ftc_dataset_free(&d);
    ftc_model_free(tuned);
    ftc_model_free(base);
    ftc_config_free(&mc);
    free(c);
    return s;
}

/* A run directory read from the model layer (include/ftc/rundir.h): its model settings (config.resolved.json) and
 * its final model, RUNDIR/model or the base model with RUNDIR/adapter merged. Inference opens runs through this,
 * and so does the trainer's ftc_run_dir_load; neither needs the other. Also the pooling a classifier uses. */
#include "ftc/rundir.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/export.h" /* ftc_model_load_adapter */
#include "ftc/quant.h"
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static bool file_in(const char *dir, const char *name) {
    char p[FTC_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return ftc_file_exists(p);
}

bool ftc_run_dir_has_model(const char *dir) {
    return file_in(dir, "model/config.json") || file_in(dir, "adapter/adapter_config.json");
}

bool ftc_pooling_parse(const char *name, ftc_pooling *out) {
    if (!name) return false;
    if (!strcmp(name, "cls")) *out = FTC_POOL_CLS;
    else if (!strcmp(name, "mean")) *out = FTC_POOL_MEAN;
    else if (!strcmp(name, "last")) *out = FTC_POOL_LAST;
    else return false;
    return true;
}

/* --pooling auto: the pooling a checkpoint ftc wrote was trained with; else a sentence-transformers checkpoint says how its embeddings are pooled
 * (1_Pooling/config.json); its CLS state and pooler were not trained for that, so a head on them learns
 * far worse. Otherwise CLS (+ the BERT pooler) for encoders and the last real token for decoders. */
ftc_pooling ftc_train_pooling(const char *choice, const char *model_dir, ftc_family family) {
    ftc_pooling named;
    if (ftc_pooling_parse(choice, &named)) return named;
    char path[FTC_PATH_MAX + 32];
    /* a classifier ftc saved records the pooling its head was trained on ("ftc_pooling"): a head trained on
     * mean-pooled features and continued on CLS would start from garbage */
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    json_t *cfg = ftc_json_load_file(path, 0, NULL);
    const char *saved = json_string_value(json_object_get(cfg, "ftc_pooling"));
    bool recorded = ftc_pooling_parse(saved, &named);
    json_decref(cfg);
    if (recorded) return named;
    if (family != FTC_FAMILY_BERT) return FTC_POOL_LAST;
    snprintf(path, sizeof path, "%s/1_Pooling/config.json", model_dir);
    json_t *o = ftc_json_load_file(path, 0, NULL);
    bool mean = o && json_is_true(json_object_get(o, "pooling_mode_mean_tokens"));
    json_decref(o);
    return mean ? FTC_POOL_MEAN : FTC_POOL_CLS;
}

/* A LoRA run without model/: its base model, read as the run read it (f32, bf16 or block-quantized frozen
 * weights: the same values the adapter was trained on), with RUNDIR/adapter applied and merged, and the run's
 * pooling. The same model --save-merged would have written. */
static ftc_status load_base_and_adapter(const char *dir, const ftc_run_info *ri, ftc_model **out, ftc_err *err) {
    char adapter[FTC_PATH_MAX + 64];
    snprintf(adapter, sizeof adapter, "%s/adapter", dir);
    if (!ri->lora || !file_in(dir, "adapter/adapter_config.json"))
        return ftc_errf(err, FTC_E_INPUT, "run %s has no final model (model/config.json%s): has training finished?",
                        dir, ri->lora ? " or adapter/adapter_config.json" : "");
    int q = ri->base_qtype;
    ftc_status s = q >= 0 ? ftc_model_load_quant_base(ri->model, ri->task, q, out, err)
                   : ri->base_gguf ? ftc_model_load_gguf_base(ri->model, ri->task, ri->base_bf16, out, err)
                   : ri->base_bf16 ? ftc_model_load_bf16_base(ri->model, ri->task, out, err)
                                   : ftc_model_load(ri->model, ri->task, out, err);
    if (s != FTC_OK) return ftc_err_prefix(err, "run %s: its base model (config.resolved.json \"model\")", dir);
    if ((s = ftc_model_load_adapter(*out, adapter, err)) != FTC_OK) goto fail;
    if (ri->task == FTC_TASK_CLASSIFY) {
        const ftc_model_config *mc = ftc_model_config_of(*out);
        ftc_pooling pool = ftc_train_pooling(ri->pooling, ri->model, mc->family);
        int rows = 0;
        for (int i = 0; i < ftc_model_n_params(*out); i++) {
            const ftc_param *p = ftc_model_param(*out, i);
            if (p->role == FTC_PARAM_CLASSIFIER && !p->is_lora && p->ndim == 2) rows = (int)p->shape[0];
        }
        /* the head the adapter brought keeps its weights (same label count); only the pooling is set */
        if (rows > 0 && (s = ftc_model_set_classifier(*out, rows, pool, 0, err)) != FTC_OK) goto fail;
    }
    if (ri->keep_adapters_on_packed_base && ftc_model_has_packed_weights(*out)) return FTC_OK;
    if ((s = ftc_model_merge_lora(*out, err)) == FTC_OK) return FTC_OK;
fail:
    ftc_err_prefix(err, "run %s", dir);
    ftc_model_free(*out);
    *out = NULL;
    return s;
}

bool ftc_model_has_packed_weights(ftc_model *m) {
    for (int i = 0; i < ftc_model_n_params(m); i++)
        if (ftc_model_param(m, i)->data_q) return true;
    return false;
}

const char *ftc_task_name(ftc_task t) {
    return t == FTC_TASK_CAUSAL_LM ? "causal-lm" : t == FTC_TASK_CLASSIFY ? "classify" : "encode";
}

/* A string field of the run's config (absent: def). */
static ftc_status str_field(json_t *o, const char *path, const char *key, const char *def, char *out, size_t n,
                            ftc_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        snprintf(out, n, "%s", def);
        return FTC_OK;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) >= n)
        return ftc_errf(err, FTC_E_INPUT, "%s: key '%s': expected a string of at most %zu bytes", path, key, n - 1);
    snprintf(out, n, "%s", json_string_value(v));
    return FTC_OK;
}

ftc_status ftc_run_info_read(const char *dir, ftc_run_info *ri, ftc_err *err) {
    memset(ri, 0, sizeof *ri);
    char path[FTC_PATH_MAX + 64], task[16], method[8], precision[8], base[8];
    snprintf(path, sizeof path, "%s/config.resolved.json", dir);
    json_t *o;
    ftc_status s = ftc_json_load_object(path, &o, err);
    if (s != FTC_OK) return s;
    if ((s = str_field(o, path, "task", "", task, sizeof task, err)) != FTC_OK ||
        (s = str_field(o, path, "method", "full", method, sizeof method, err)) != FTC_OK ||
        (s = str_field(o, path, "model", "", ri->model, sizeof ri->model, err)) != FTC_OK ||
        (s = str_field(o, path, "chat_template", "", ri->template_name, sizeof ri->template_name, err)) != FTC_OK ||
        (s = str_field(o, path, "pooling", "auto", ri->pooling, sizeof ri->pooling, err)) != FTC_OK ||
        (s = str_field(o, path, "precision", "fp32", precision, sizeof precision, err)) != FTC_OK ||
        (s = str_field(o, path, "base_dtype", "auto", base, sizeof base, err)) != FTC_OK)
        goto done;
    json_t *ml = json_object_get(o, "max_len");
    ri->max_len = json_is_integer(ml) ? (int)json_integer_value(ml) : 0;
    if (!strcmp(task, "causal-lm")) ri->task = FTC_TASK_CAUSAL_LM;
    else if (!strcmp(task, "classify")) ri->task = FTC_TASK_CLASSIFY;
    else {
        s = ftc_errf(err, FTC_E_INPUT, "%s: key 'task': '%s' is not one of causal-lm, classify", path, task);
        goto done;
    }
    if (!ri->model[0]) {
        s = ftc_errf(err, FTC_E_INPUT, "%s: key 'model' is missing: which model did the run train?", path);
        goto done;
    }
    ri->lora = !strcmp(method, "lora");
    /* as the trainer holds them (ftc_train_base_qtype / ftc_train_base_bf16): only the frozen base of lora and head */
    bool frozen_base = strcmp(method, "full") != 0;
    ri->base_qtype = frozen_base ? ftc_quant_from_name(base) : -1;
    ri->base_bf16 = frozen_base && (!strcmp(base, "bf16") || (!strcmp(base, "auto") && !strcmp(precision, "bf16")));
    ri->base_gguf = frozen_base && !strcmp(base, "auto") && ftc_model_has_gguf_types(ri->model);
done:
    json_decref(o);
    return s;
}

ftc_status ftc_run_model_load(const char *dir, const ftc_run_info *ri, ftc_model **out, ftc_err *err) {
    char path[FTC_PATH_MAX + 64];
    *out = NULL;
    if (!file_in(dir, "model/config.json")) return load_base_and_adapter(dir, ri, out, err);
    snprintf(path, sizeof path, "%s/model", dir);
    ftc_status s = ftc_model_load(path, ri->task, out, err);
    if (s != FTC_OK) ftc_err_prefix(err, "run %s", dir);
    return s;
}

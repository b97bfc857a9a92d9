/* PEFT LoRA adapters onto a loaded base model. The tensor names decide which modules get adapters
 * (they are what PEFT actually trained; target_modules may be a regex or name modules that got none),
 * adapter_config.json gives the scale. Names are compared without the family prefix, so an adapter made
 * on BertForSequenceClassification ("bert.encoder...") fits a base stored as BertModel ("encoder..."). */
#include "model_internal.h"
#include "ftc/export.h"
#include "base/base_internal.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *strip_family(const ftc_model *m, const char *name) {
    const char *px = m->cfg.family == FTC_FAMILY_GPT2 ? "transformer." : m->cfg.family == FTC_FAMILY_LLAMA ? "model."
                                                                                                              : "bert.";
    size_t n = strlen(px);
    return !strncmp(name, px, n) ? name + n : name;
}

static linear_mod *find_module(ftc_model *m, const char *path) {
    const char *want = strip_family(m, path);
    for (int i = 0; i < m->L; i++) {
        layer_params *l = &m->layers[i];
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(l, j);
            if (lm->w >= 0 && !strcmp(strip_family(m, lm->module), want)) return lm;
        }
    }
    return NULL;
}

static int find_plain_param(ftc_model *m, const char *name) {
    const char *want = strip_family(m, name);
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].is_lora && !strcmp(strip_family(m, m->params[i].name), want)) return i;
    return -1;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The module path of an adapter tensor's name without PEFT's prefix: "X.lora_A.weight" or "X.lora_B.weight" -> "X"
 * (the two suffixes have one length) */
static ftc_status lora_module_path(const char *inner, char *path, size_t n, const char *wpath, const char *name,
                                   ftc_err *err) {
    size_t pl = strlen(inner) - strlen(".lora_A.weight");
    if (pl >= n) return ftc_errf(err, FTC_E_INPUT, "%s: tensor %s: name too long", wpath, name);
    memcpy(path, inner, pl), path[pl] = 0;
    return FTC_OK;
}

/* adapter_config.json: the fields that change the computation; what ftc cannot reproduce is refused. */
static ftc_status read_config(const ftc_model *m, const char *path, int *r, float *alpha, float *dropout, ftc_err *err) {
    json_error_t je;
    json_t *c = ftc_json_load_file(path, 0, &je);
    if (!c) return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", path, je.line, je.text);
    ftc_status s = FTC_OK;
    const char *type = json_string_value(json_object_get(c, "peft_type"));
    const char *task = json_string_value(json_object_get(c, "task_type"));
    const char *bias = json_string_value(json_object_get(c, "bias"));
    json_t *jr = json_object_get(c, "r"), *ja = json_object_get(c, "lora_alpha"), *jd = json_object_get(c, "lora_dropout");
    json_t *rp = json_object_get(c, "rank_pattern"), *ap = json_object_get(c, "alpha_pattern");
    if (!type || strcmp(type, "LORA"))
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: peft_type \"%s\": only LORA adapters are supported", path,
                     type ? type : "(missing)");
    else if (!json_is_integer(jr) || json_integer_value(jr) < 1 || json_integer_value(jr) > 4096)
        s = ftc_errf(err, FTC_E_INPUT, "%s: field r: expected an integer rank in 1..4096", path);
    else if (!json_is_number(ja) || !(json_number_value(ja) > 0))
        s = ftc_errf(err, FTC_E_INPUT, "%s: field lora_alpha: expected a positive number", path);
    else if (jd && !json_is_null(jd) && (!json_is_number(jd) || json_number_value(jd) < 0 || json_number_value(jd) >= 1))
        s = ftc_errf(err, FTC_E_INPUT, "%s: field lora_dropout: expected a number in [0, 1)", path);
    else if (bias && strcmp(bias, "none"))
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: field bias \"%s\": only \"none\" is supported", path, bias);
    else if (json_is_true(json_object_get(c, "use_dora")))
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: field use_dora: DoRA adapters are not supported", path);
    else if ((json_is_object(rp) && json_object_size(rp)) || (json_is_object(ap) && json_object_size(ap)))
        s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: fields rank_pattern/alpha_pattern: per-module ranks or alphas are "
                     "not supported", path);
    else if (task && !strcmp(task, "SEQ_CLS") && m->task != FTC_TASK_CLASSIFY)
        s = ftc_errf(err, FTC_E_INPUT, "%s: task_type SEQ_CLS: this adapter is for a classifier, the model is loaded "
                     "for %s", path, m->task == FTC_TASK_CAUSAL_LM ? "causal-lm" : "encoding");
    else if (task && !strcmp(task, "CAUSAL_LM") && m->task != FTC_TASK_CAUSAL_LM)
        s = ftc_errf(err, FTC_E_INPUT, "%s: task_type CAUSAL_LM: this adapter is for a language model, the model is "
                     "loaded for %s", path, m->task == FTC_TASK_CLASSIFY ? "classify" : "encoding");
    if (!s) {
        *r = (int)json_integer_value(jr);
        *alpha = (float)json_number_value(ja);
        /* rsLoRA scales by alpha/sqrt(r); ftc scales by alpha/r, so hand it alpha*sqrt(r) */
        if (json_is_true(json_object_get(c, "use_rslora"))) *alpha *= sqrtf((float)*r);
        *dropout = jd && json_is_number(jd) ? (float)json_number_value(jd) : 0.0f;
    }
    json_decref(c);
    return s;
}

static const char PEFT_PREFIX[] = "base_model.model.";

/* PEFT's rule for a list of target_modules: the module's path is one of them or ends with "." + one. */
static bool target_matches(const char *module, const char *target) {
    size_t a = strlen(module), b = strlen(target);
    return !strcmp(module, target) || (a > b && module[a - b - 1] == '.' && !strcmp(module + a - b, target));
}

static bool csv_has_match(const char *csv, const char *target) {
    char buf[160];
    for (const char *p = csv; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n < sizeof buf) {
            memcpy(buf, p, n), buf[n] = 0;
            if (target_matches(buf, target)) return true;
        }
        p += n + (e ? 1 : 0);
    }
    return false;
}

/* adapter_config.json's target_modules (a list of names) and the weights must describe the same adapter:
 * every module the weights adapt is one PEFT would target, and every name that targets modules of this model
 * has weights for them (PEFT would have created and saved those). A regex string or "all-linear" is not
 * checked (the weights decide, as before). */
static ftc_status check_targets(const ftc_model *m, const char *cpath, const char *wpath, const char *adapted,
                                ftc_err *err) {
    json_error_t je;
    json_t *c = ftc_json_load_file(cpath, 0, &je);
    json_t *tm = c ? json_object_get(c, "target_modules") : NULL;
    ftc_status s = FTC_OK;
    if (!json_is_array(tm) || !json_array_size(tm)) {
        json_decref(c);
        return FTC_OK;
    }
    char listed[512] = "";
    size_t i;
    json_t *v;
    json_array_foreach(tm, i, v) {
        size_t n = strlen(listed);
        snprintf(listed + n, sizeof listed - n, "%s%s", n ? ", " : "", json_is_string(v) ? json_string_value(v) : "?");
    }
    /* 1: every adapted module is targeted */
    for (const char *p = adapted; !s && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char mod[160];
        snprintf(mod, sizeof mod, "%.*s", (int)(n < sizeof mod ? n : sizeof mod - 1), p);
        bool hit = false;
        json_array_foreach(tm, i, v) if (json_is_string(v) && target_matches(mod, json_string_value(v))) hit = true;
        if (!hit)
            s = ftc_errf(err, FTC_E_INPUT, "%s adapts %s, which target_modules [%s] in %s does not name: the config and "
                         "the weights are of different adapters", wpath, mod, listed, cpath);
        p += n + (e ? 1 : 0);
    }
    /* 2: every target naming modules of this model has weights for them */
    json_array_foreach(tm, i, v) {
        if (s || !json_is_string(v)) break;
        const char *t = json_string_value(v);
        bool in_model = false;
        for (int l = 0; l < m->L && !in_model; l++) {
            const layer_params *lp = &m->layers[l];
            const linear_mod *mods[] = {&lp->qkv, &lp->q, &lp->k, &lp->v, &lp->o, &lp->up, &lp->gate, &lp->down};
            for (int j = 0; j < 8 && !in_model; j++) in_model = mods[j]->w >= 0 && target_matches(mods[j]->module, t);
        }
        if (in_model && !csv_has_match(adapted, t))
            s = ftc_errf(err, FTC_E_INPUT, "%s: target_modules names %s, but %s has no lora_A/lora_B for any %s module: "
                         "the config and the weights are of different adapters", cpath, t, wpath, t);
    }
    json_decref(c);
    return s;
}

/* Copies a file tensor into param p (GPT-2 Conv1D params are stored [in,out] in files, [out,in] in ftc). */
static ftc_status load_into(const ftc_st_set *st, const char *name, ftc_param *p, ftc_err *err) {
    if (!p->transposed) return ftc_st_load_f32(st, name, p->ndim, p->shape, p->data, err);
    int64_t O = p->shape[0], I = p->shape[1], fshape[2] = {I, O};
    float *tmp = malloc((size_t)p->numel * sizeof(float));
    if (!tmp) return ftc_errf(err, FTC_E_NOMEM, "out of memory loading %s", name);
    ftc_status s = ftc_st_load_f32(st, name, 2, fshape, tmp, err);
    if (!s)
        for (int64_t i = 0; i < I; i++)
            for (int64_t o = 0; o < O; o++) p->data[o * I + i] = tmp[i * O + o];
    free(tmp);
    return s;
}

ftc_status ftc_model_load_adapter(ftc_model *m, const char *dir, ftc_err *err) {
    char cpath[4200], wpath[4200];
    if (!ftc_path_join(cpath, sizeof cpath, dir, "adapter_config.json") ||
        !ftc_path_join(wpath, sizeof wpath, dir, "adapter_model.safetensors"))
        return ftc_errf(err, FTC_E_USAGE, "adapter path too long: %s", dir);
    if (!ftc_file_exists(cpath))
        return ftc_errf(err, FTC_E_INPUT, "%s: no adapter_config.json (not a PEFT adapter directory)", dir);
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].is_lora)
            return ftc_errf(err, FTC_E_USAGE, "the model already has LoRA adapters (%s)", m->params[i].name);
    int r = 0;
    float alpha = 0, dropout = 0;
    ftc_status s = read_config(m, cpath, &r, &alpha, &dropout, err);
    if (s) return s;
    ftc_st_set *st;
    if ((s = ftc_st_open(wpath, &st, err))) return s;

    /* pass 1: sort the file's tensors into adapted modules and plain (modules_to_save) tensors */
    int n = ftc_st_count(st);
    size_t cap = 64, len = 0;
    char *targets = malloc(cap);
    if (!targets) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    else targets[0] = 0;
    int head_rows = -1;
    for (int i = 0; !s && i < n; i++) {
        const char *name = ftc_st_get(st, i)->name;
        if (strncmp(name, PEFT_PREFIX, sizeof PEFT_PREFIX - 1)) {
            s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s: expected a name starting with \"%s\"", wpath, name, PEFT_PREFIX);
            break;
        }
        const char *inner = name + sizeof PEFT_PREFIX - 1;
        if (ends_with(inner, ".lora_B.weight")) continue; /* follows its lora_A */
        if (ends_with(inner, ".lora_A.weight")) {
            char path[256];
            if ((s = lora_module_path(inner, path, sizeof path, wpath, name, err))) break;
            linear_mod *lm = find_module(m, path);
            if (!lm) {
                s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s: no linear module %s in this %s model", wpath, name, path,
                             m->cfg.model_type);
                break;
            }
            size_t need = len + strlen(lm->module) + 2;
            if (need > cap) {
                char *t = realloc(targets, cap = need * 2);
                if (!t) {
                    s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
                    break;
                }
                targets = t;
            }
            len += (size_t)sprintf(targets + len, "%s%s", len ? "," : "", lm->module);
            continue;
        }
        if (ends_with(inner, ".lora_embedding_A") || ends_with(inner, ".lora_embedding_B") || strstr(inner, ".lora_")) {
            s = ftc_errf(err, FTC_E_UNSUPPORTED, "%s: tensor %s: only LoRA on linear layers is supported", wpath, name);
            break;
        }
        /* a classification head saved with the adapter decides the model's number of classes */
        const ftc_tensor_view *t = ftc_st_get(st, i);
        if (m->task == FTC_TASK_CLASSIFY && (!strcmp(inner, "classifier.weight") || !strcmp(inner, "score.weight"))) {
            if (t->ndim != 2 || t->shape[1] != m->C || t->shape[0] < 1 || t->shape[0] > FTC_MAX_LABELS) {
                s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s: expected shape [num_labels, %d]", wpath, name, m->C);
                break;
            }
            head_rows = (int)t->shape[0];
        }
    }
    if (!s && !len) s = ftc_errf(err, FTC_E_INPUT, "%s: no lora_A tensors: nothing to apply", wpath);
    if (!s) s = check_targets(m, cpath, wpath, targets, err);
    if (!s && m->task == FTC_TASK_CLASSIFY && head_rows < 0 && m->cls_w < 0)
        s = ftc_errf(err, FTC_E_INPUT, "%s: the adapter has no classification head (modules_to_save) and the model has "
                     "none", wpath);
    if (!s && head_rows > 0) s = ftc_model_set_classifier(m, head_rows, m->pooling, 0, err);
    if (!s) s = ftc_model_add_lora(m, targets, r, alpha, dropout, 0, err);
    free(targets);

    /* pass 2: values */
    for (int i = 0; !s && i < n; i++) {
        const char *name = ftc_st_get(st, i)->name, *inner = name + sizeof PEFT_PREFIX - 1;
        bool is_a = ends_with(inner, ".lora_A.weight"), is_b = ends_with(inner, ".lora_B.weight");
        if (is_a || is_b) {
            char path[256];
            if ((s = lora_module_path(inner, path, sizeof path, wpath, name, err))) break;
            linear_mod *lm = find_module(m, path);
            if (!lm || lm->lora_a < 0) {
                s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s has no matching %s", wpath, name,
                             is_b ? "lora_A (or linear module)" : "linear module");
                break;
            }
            ftc_param *p = &m->params[is_a ? lm->lora_a : lm->lora_b];
            s = ftc_st_load_f32(st, name, 2, p->shape, p->data, err);
            if (s) ftc_err_prefix(err, "adapter rank r=%d (adapter_config.json)", r);
            continue;
        }
        int k = find_plain_param(m, inner);
        if (k < 0) {
            s = ftc_errf(err, FTC_E_INPUT, "%s: tensor %s matches no parameter of this %s model", wpath, name,
                         m->cfg.model_type);
            break;
        }
        s = load_into(st, name, &m->params[k], err);
    }
    ftc_st_close(st);
    return s;
}

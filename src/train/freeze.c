/* Which parameters train (the freeze policy, from the parameters' roles), the classification head a run starts
 * from (pooling, label check, its own learning rate), and the model a run trains: ftc_train_prepare_model. */
#include "train_internal.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A checkpoint that already has a classification head (e.g. continuing a head-only run with full
 * fine-tuning) keeps it when the label count matches; its rows must then mean the data's labels, in order,
 * or training would start from a head that confidently predicts the wrong classes. */
ftc_status ftc_tr_check_head_labels(const ftc_model *m, const ftc_dataset *train, ftc_err *err) {
    const ftc_model_config *mc = ftc_model_config_of(m);
    if (!train->label_names || !mc->id2label || mc->num_labels != train->num_labels) return FTC_OK;
    bool generic = true; /* transformers' placeholders LABEL_0, LABEL_1, ...: the head's rows carry no names */
    for (int i = 0; i < mc->num_labels && generic; i++) {
        char placeholder[32];
        snprintf(placeholder, sizeof placeholder, "LABEL_%d", i);
        generic = mc->id2label[i] && !strcmp(mc->id2label[i], placeholder);
    }
    if (generic) return FTC_OK;
    for (int i = 0; i < train->num_labels; i++) {
        const char *have = mc->id2label[i] ? mc->id2label[i] : "";
        const char *want = train->label_names[i] ? train->label_names[i] : "";
        if (strcmp(have, want))
            return ftc_errf(err, FTC_E_INPUT,
                            "the model's classification head has label %d = '%s' (config.json id2label) but the "
                            "data's label %d is '%s': train from the base model, or use the same label set",
                            i, have, i, want);
    }
    return FTC_OK;
}

/* The freeze policy, from what each parameter is (its role and block, set where the model declares it):
 *   full  every parameter but LoRA matrices;
 *   lora  the adapters, and classify's head;
 *   head  classify's head, the last unfreeze_last blocks, and for causal-lm the final norm. */
static bool trains(const ftc_param *p, const ftc_train_config *c, int n_layers) {
    bool head = c->task == FTC_TASK_CLASSIFY && p->role == FTC_PARAM_CLASSIFIER;
    switch (c->method) {
    case FTC_METHOD_FULL: return !p->is_lora;
    case FTC_METHOD_LORA: return p->is_lora || head;
    case FTC_METHOD_HEAD:
        return head ||
               (!p->is_lora && p->role == FTC_PARAM_BLOCK && p->block >= n_layers - c->unfreeze_last &&
                c->unfreeze_last > 0) ||
               (c->task == FTC_TASK_CAUSAL_LM && p->role == FTC_PARAM_FINAL_NORM);
    }
    return false;
}

ftc_status ftc_train_prepare_model(ftc_model *m, const ftc_train_config *c, int num_labels, ftc_err *err) {
    const ftc_model_config *mc = ftc_model_config_of(m);
    ftc_status s;
    if (c->task == FTC_TASK_CLASSIFY) {
        if (num_labels < 2) return ftc_errf(err, FTC_E_INPUT, "classify needs at least 2 labels, the data has %d", num_labels);
        ftc_pooling pool = ftc_train_pooling(c->pooling, c->model, mc->family);
        if ((s = ftc_model_set_classifier(m, num_labels, pool, c->seed ^ 0xC1A55ULL, err)) != FTC_OK) return s;
        if ((s = ftc_model_set_label_smoothing(m, c->label_smoothing > 0 ? c->label_smoothing : 0, err)) != FTC_OK) return s;
        if ((s = ftc_model_set_rdrop(m, c->rdrop > 0 ? c->rdrop : 0, err)) != FTC_OK) return s;
    }
    if (c->method == FTC_METHOD_LORA) {
        const char *targets = c->lora_targets;
        if (!targets[0])
            targets = mc->family == FTC_FAMILY_GPT2 ? "c_attn" : mc->family == FTC_FAMILY_BERT ? "query,value" : "q_proj,v_proj";
        if ((s = ftc_model_add_lora(m, targets, c->lora_r, c->lora_alpha, c->lora_dropout, c->seed ^ 0x10AAULL, err)) != FTC_OK)
            return s;
    }
    if ((s = ftc_model_set_precision(m, c->precision, err)) != FTC_OK) return s;
    int np = ftc_model_n_params(m), n_train = 0;
    for (int i = 0; i < np; i++) {
        bool t = trains(ftc_model_param(m, i), c, mc->n_layers);
        ftc_model_set_trainable(m, i, t);
        n_train += t;
    }
    if (n_train == 0)
        return ftc_errf(err, FTC_E_INPUT, "method %s trains no parameter of this model (no head or adapter found)",
                        ftc_method_name(c->method));
    /* a base loaded in f32 (e.g. created, or loaded by a caller) still drops its frozen f32 values */
    if (ftc_train_base_qtype(c) >= 0) return ftc_model_store_frozen_quant(m, ftc_train_base_qtype(c), err);
    if (ftc_train_base_bf16(c)) return ftc_model_store_frozen_bf16(m, err);
    return FTC_OK;
}

/* Head on a frozen backbone: the encoder's output for an example never changes, so it runs once per example
 * (eval mode) and the head trains on the cached features (--feature-cache false: the old way, every step). */
bool ftc_tr_uses_feature_cache(const ftc_train_config *c) {
    return c->feature_cache && c->task == FTC_TASK_CLASSIFY && c->method == FTC_METHOD_HEAD && c->unfreeze_last == 0;
}

bool ftc_train_head_is_new(ftc_model *m, int num_labels) {
    const ftc_model_config *mc = ftc_model_config_of(m);
    bool has = false;
    for (int i = 0; i < ftc_model_n_params(m); i++) has = has || ftc_model_param(m, i)->role == FTC_PARAM_CLASSIFIER;
    return !(has && mc->num_labels == num_labels);
}

/* Per-tensor rates (o->lr_scale, NULL when every tensor steps at lr):
 * - a new classification head under lora or full steps at --head-lr: the backbone's rate (5e-5 full, 1e-3 lora)
 *   barely moves a random head in a few epochs;
 * - --layer-decay X < 1 (layer-wise rate decay, as ELECTRA and BEiT fine-tune): depth 0 the embeddings, 1..L the
 *   blocks, L+1 the rest (head, pooler, final norm) step at lr x X^(L+1-depth): the layers nearest the input,
 *   whose general features the task needs least changed, move least. */
ftc_status ftc_tr_set_head_lr(ftc_optimizer *o, const ftc_train_config *c, bool new_head, ftc_err *err) {
    bool head = new_head && c->task == FTC_TASK_CLASSIFY && c->method != FTC_METHOD_HEAD && c->lr > 0 &&
                c->head_lr >= 0 && c->head_lr != c->lr;
    bool decay = c->layer_decay > 0 && c->layer_decay < 1;
    if (!head && !decay) return FTC_OK;
    int L = 0; /* blocks: one past the deepest block index among the parameters */
    for (int i = 0; i < o->n; i++)
        if (o->params[i]->role == FTC_PARAM_BLOCK || o->params[i]->block >= 0)
            L = o->params[i]->block + 1 > L ? o->params[i]->block + 1 : L;
    o->lr_scale = malloc((size_t)o->n * sizeof *o->lr_scale);
    if (!o->lr_scale) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < o->n; i++) {
        const ftc_param *p = o->params[i];
        if (head && p->role == FTC_PARAM_CLASSIFIER) { o->lr_scale[i] = c->head_lr / c->lr; continue; }
        int depth = p->role == FTC_PARAM_EMBEDDING ? 0 : p->block >= 0 ? p->block + 1 : L + 1;
        o->lr_scale[i] = decay ? (float)pow(c->layer_decay, L + 1 - depth) : 1.0f;
    }
    return FTC_OK;
}

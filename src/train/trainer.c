/* The training loop shared by every method and task. One step: zero grads, for each micro-batch of the
 * accumulation window forward + backward (grads weighted by the window's share of target tokens, so
 * 4 x batch 2 equals batch 8), clip, AdamW at the scheduled lr. Around it: evaluation, early stopping,
 * checkpoints (resume continues bit-identically), metrics.jsonl and progress. */
#include "ftc/train.h"
#include "train_internal.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/eval.h"
#include "ftc/export.h"
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ftc_dataset_free(ftc_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) { free(d->ex[i].ids); free(d->ex[i].labels); free(d->ex[i].type_ids); }
    free(d->ex);
    if (d->label_names)
        for (int i = 0; i < d->num_labels; i++) free(d->label_names[i]);
    free(d->label_names);
    memset(d, 0, sizeof *d);
}

/* ---- which parameters train ---- */

/* Block index of a parameter: the first all-digit component of its dotted name
 * ("encoder.layer.3.attention..." -> 3, "transformer.h.0.attn..." -> 0); -1 for embeddings, norms, heads. */
static int block_of(const char *name) {
    const char *s = name;
    while (*s) {
        const char *e = strchr(s, '.');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) digits = digits && s[i] >= '0' && s[i] <= '9';
        if (digits) return atoi(s);
        if (!e) break;
        s = e + 1;
    }
    return -1;
}

static bool has_component(const char *name, const char *comp) {
    size_t n = strlen(comp);
    for (const char *s = name; (s = strstr(s, comp)); s++)
        if ((s == name || s[-1] == '.') && (s[n] == '.' || s[n] == 0)) return true;
    return false;
}

/* The classification head ftc_model_set_classifier adds (HF names: BERT "classifier", decoders "score"). */
static bool is_head_param(const char *name) { return has_component(name, "classifier") || has_component(name, "score"); }
/* Final norm before the LM head: GPT-2 "ln_f", Llama "model.norm". */
static bool is_final_norm(const char *name) {
    return has_component(name, "ln_f") || !strncmp(name, "model.norm.", 11) || !strncmp(name, "norm.", 5);
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

/* A checkpoint that already has a classification head (e.g. continuing a head-only run with full
 * fine-tuning) keeps it when the label count matches; its rows must then mean the data's labels, in order,
 * or training would start from a head that confidently predicts the wrong classes. */
static ftc_status check_head_labels(const ftc_model *m, const ftc_dataset *train, ftc_err *err) {
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

ftc_status ftc_train_prepare_model(ftc_model *m, const ftc_train_config *c, int num_labels, ftc_err *err) {
    const ftc_model_config *mc = ftc_model_config_of(m);
    ftc_status s;
    if (c->task == FTC_TASK_CLASSIFY) {
        if (num_labels < 2) return ftc_errf(err, FTC_E_INPUT, "classify needs at least 2 labels, the data has %d", num_labels);
        ftc_pooling pool = ftc_train_pooling(c->pooling, c->model, mc->family);
        if ((s = ftc_model_set_classifier(m, num_labels, pool, c->seed ^ 0xC1A55ULL, err)) != FTC_OK) return s;
    }
    if (c->method == FTC_METHOD_LORA) {
        const char *targets = c->lora_targets;
        if (!targets[0])
            targets = mc->family == FTC_FAMILY_GPT2 ? "c_attn" : mc->family == FTC_FAMILY_BERT ? "query,value" : "q_proj,v_proj";
        if ((s = ftc_model_add_lora(m, targets, c->lora_r, c->lora_alpha, c->lora_dropout, c->seed ^ 0x10AAULL, err)) != FTC_OK)
            return s;
    }
    if ((s = ftc_model_set_precision(m, c->precision, err)) != FTC_OK) return s;
    int n_layers = mc->n_layers, first_open = n_layers - c->unfreeze_last;
    int np = ftc_model_n_params(m), n_train = 0;
    for (int i = 0; i < np; i++) {
        ftc_param *p = ftc_model_param(m, i);
        bool head = c->task == FTC_TASK_CLASSIFY && is_head_param(p->name);
        bool t = false;
        switch (c->method) {
        case FTC_METHOD_FULL: t = !p->is_lora; break;
        case FTC_METHOD_LORA: t = p->is_lora || head; break;
        case FTC_METHOD_HEAD: {
            int b = block_of(p->name);
            t = head || (!p->is_lora && b >= 0 && b >= first_open && c->unfreeze_last > 0) ||
                (c->task == FTC_TASK_CAUSAL_LM && is_final_norm(p->name));
            break;
        }
        }
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
static bool uses_feature_cache(const ftc_train_config *c) {
    return c->feature_cache && c->task == FTC_TASK_CLASSIFY && c->method == FTC_METHOD_HEAD && c->unfreeze_last == 0;
}

/* ---- batches ---- */
typedef struct {
    int max_B, max_T;
    int32_t *ids, *types, *labels, *class_labels;
    uint8_t *mask;
    ftc_batch b;
    int64_t n_targets, n_tokens; /* targets the loss counts; real (non-pad) tokens */
} batcher;

static ftc_status batcher_init(batcher *bt, int max_B, int max_T, ftc_err *err) {
    memset(bt, 0, sizeof *bt);
    bt->max_B = max_B;
    bt->max_T = max_T;
    size_t n = (size_t)max_B * max_T;
    bt->ids = malloc(n * sizeof(int32_t));
    bt->types = malloc(n * sizeof(int32_t));
    bt->labels = malloc(n * sizeof(int32_t));
    bt->class_labels = malloc((size_t)max_B * sizeof(int32_t));
    bt->mask = malloc(n);
    if (!bt->ids || !bt->types || !bt->labels || !bt->class_labels || !bt->mask)
        return ftc_errf(err, FTC_E_NOMEM, "out of memory for batches of %d x %d", max_B, max_T);
    return FTC_OK;
}

static void batcher_free(batcher *bt) {
    free(bt->ids); free(bt->types); free(bt->labels); free(bt->class_labels); free(bt->mask);
}

/* Pads (right) the examples idx[0..B) to the longest (capped at max_T) into bt->b. */
static void collate(batcher *bt, const ftc_dataset *d, const int32_t *idx, int B, ftc_task task) {
    int T = 2;
    for (int i = 0; i < B; i++) if (d->ex[idx[i]].len > T) T = d->ex[idx[i]].len;
    if (T > bt->max_T) T = bt->max_T;
    bool any_types = false;
    bt->n_targets = 0;
    bt->n_tokens = 0;
    for (int i = 0; i < B; i++) {
        const ftc_example *e = &d->ex[idx[i]];
        int L = e->len < T ? e->len : T;
        for (int t = 0; t < T; t++) {
            size_t k = (size_t)i * T + t;
            bool real = t < L;
            bt->ids[k] = real ? e->ids[t] : d->pad_id;
            bt->types[k] = real && e->type_ids ? e->type_ids[t] : 0;
            bt->mask[k] = real;
            bt->labels[k] = !real ? FTC_IGNORE_INDEX : e->labels ? e->labels[t] : e->ids[t];
            if (real && e->type_ids) any_types = true;
            /* position t predicts labels[t + 1]: label 0 is never a target */
            if (task == FTC_TASK_CAUSAL_LM && t > 0 && bt->labels[k] != FTC_IGNORE_INDEX) bt->n_targets++;
        }
        bt->n_tokens += L;
        bt->class_labels[i] = e->label;
    }
    if (task == FTC_TASK_CLASSIFY) bt->n_targets = B;
    bt->b = (ftc_batch){.B = B, .T = T, .ids = bt->ids, .type_ids = any_types ? bt->types : NULL, .mask = bt->mask,
                        .labels = task == FTC_TASK_CLASSIFY ? bt->class_labels : bt->labels};
}

static int max_len_of(const ftc_dataset *d, int cap) {
    int T = 2;
    for (int i = 0; i < d->n; i++) if (d->ex[i].len > T) T = d->ex[i].len;
    return T < cap ? T : cap;
}

/* Example indices sorted by length (ties: data order): batches of neighbours pad to nearly their own length.
 * NULL when out of memory. */
static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int32_t *length_order(const ftc_dataset *d) {
    int64_t *keys = malloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *keys);
    int32_t *idx = malloc((size_t)(d->n > 0 ? d->n : 1) * sizeof *idx);
    if (!keys || !idx) { free(keys); free(idx); return NULL; }
    for (int i = 0; i < d->n; i++) keys[i] = ((int64_t)d->ex[i].len << 32) | i;
    qsort(keys, (size_t)d->n, sizeof *keys, cmp_i64);
    for (int i = 0; i < d->n; i++) idx[i] = (int32_t)(keys[i] & 0xFFFFFFFF);
    free(keys);
    return idx;
}

static void gather_rows(float *dst, const float *src, const int32_t *idx, int B, int C) {
    for (int i = 0; i < B; i++) memcpy(dst + (size_t)i * C, src + (size_t)idx[i] * C, (size_t)C * sizeof(float));
}

/* ---- evaluation ---- */
/* A misclassified example: its index in the dataset, true and predicted class, the predicted class's probability. */
typedef struct {
    int index, label, predicted;
    double prob;
} mistake;

/* Most confident first; equal probabilities in dataset order (the list does not depend on the batch order). */
static int mistake_cmp(const void *a, const void *b) {
    const mistake *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* The mistakes among B rows of logits [B, K]: the softmax probability of the (argmax) predicted class. */
static void collect_mistakes(const float *logits, const int32_t *labels, const int32_t *idx, int B, int K, mistake *out,
                             int *n) {
    for (int i = 0; i < B; i++) {
        const float *row = logits + (size_t)i * K;
        int p = ftc_argmax(row, K);
        if (p == labels[i]) continue;
        double z = 0;
        for (int k = 0; k < K; k++) z += exp((double)row[k] - (double)row[p]);
        out[(*n)++] = (mistake){idx[i], labels[i], p, isfinite(z) && z > 0 ? 1.0 / z : NAN};
    }
}

/* "worst": the FTC_EVAL_WORST most confident mistakes as {"index","label","predicted","prob"} (label names when
 * the dataset has them). False when out of memory. */
static bool add_worst(json_t *j, const ftc_dataset *d, mistake *mk, int n) {
    qsort(mk, (size_t)n, sizeof *mk, mistake_cmp);
    json_t *arr = json_array();
    if (!arr || json_object_set_new(j, "worst", arr)) return false;
    for (int i = 0; i < n && i < FTC_EVAL_WORST; i++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", mk[i].label);
        snprintf(b, sizeof b, "%d", mk[i].predicted);
        json_t *o = json_pack("{s:i, s:s, s:s, s:f}", "index", mk[i].index, "label",
                              d->label_names ? d->label_names[mk[i].label] : a, "predicted",
                              d->label_names ? d->label_names[mk[i].predicted] : b, "prob",
                              isfinite(mk[i].prob) ? mk[i].prob : 0.0);
        if (!o || json_array_append_new(arr, o)) return false;
    }
    return true;
}

/* The run's named moments (ftc_train_config.at_point): a test's chance to stop the run exactly there. */
static void at_point(const ftc_train_config *c, const char *point) {
    if (c && c->at_point) c->at_point(c->at_point_ctx, point);
}

/* Metrics do not depend on the order examples come in, so batches run in length order (little padding).
 * feats (classify with a frozen backbone, or NULL): d's cached head inputs, [d->n, C]; then only the head runs.
 * c: the run evaluating (its "eval" moment comes after the first batch), or NULL. */
static ftc_status evaluate(ftc_model *m, ftc_task task, const ftc_dataset *d, const float *feats, batcher *bt,
                           int batch, const ftc_train_config *c, ftc_eval_result *r, json_t **json, ftc_err *err) {
    memset(r, 0, sizeof *r);
    int C = ftc_model_config_of(m)->hidden_size;
    int32_t *order = length_order(d);
    float *fbatch = feats ? malloc((size_t)batch * C * sizeof *fbatch) : NULL;
    if (!order || (feats && !fbatch)) { free(order); free(fbatch); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_class_metrics cm;
    ftc_lm_metrics lm;
    ftc_lm_metrics_init(&lm);
    ftc_status s = FTC_OK;
    int V = ftc_model_config_of(m)->vocab_size;
    if (task == FTC_TASK_CLASSIFY && (s = ftc_class_metrics_init(&cm, d->num_labels, err)) != FTC_OK) {
        free(order); free(fbatch);
        return s;
    }
    /* with the JSON: the misclassified examples, for the most confident of them ("worst") */
    mistake *mk = task == FTC_TASK_CLASSIFY && json ? malloc((size_t)d->n * sizeof *mk) : NULL;
    int n_mk = 0;
    if (task == FTC_TASK_CLASSIFY && json && !mk) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int start = 0; start < d->n && s == FTC_OK; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch;
        const int32_t *idx = order + start;
        collate(bt, d, idx, B, task);
        if (feats) {
            gather_rows(fbatch, feats, idx, B, C);
            s = ftc_model_head_forward(m, fbatch, B, bt->class_labels, false, NULL, err);
        } else {
            float loss;
            s = ftc_model_forward(m, &bt->b, false, &loss, err);
        }
        if (s != FTC_OK) break;
        if (task == FTC_TASK_CLASSIFY) s = ftc_class_metrics_add_logits(&cm, ftc_model_logits(m), bt->class_labels, B, err);
        else s = ftc_lm_metrics_add_logits(&lm, ftc_model_logits(m), bt->labels, B, bt->b.T, V, err);
        if (s == FTC_OK && mk) collect_mistakes(ftc_model_logits(m), bt->class_labels, idx, B, d->num_labels, mk, &n_mk);
        if (start == 0) at_point(c, "eval");
    }
    if (s == FTC_OK) {
        r->n_examples = d->n;
        if (task == FTC_TASK_CLASSIFY) {
            ftc_class_metrics_finish(&cm);
            r->loss = cm.loss; r->accuracy = cm.accuracy; r->macro_f1 = cm.macro_f1;
            r->n_tokens = d->n;
            if (json) *json = ftc_class_metrics_json(&cm, (const char *const *)d->label_names);
            if (json && *json && !add_worst(*json, d, mk, n_mk)) {
                json_decref(*json);
                *json = NULL; /* the callers report a missing JSON as out of memory */
            }
        } else {
            r->loss = ftc_lm_loss(&lm); r->token_accuracy = ftc_lm_token_accuracy(&lm);
            r->n_tokens = lm.n_tokens;
            if (json) *json = ftc_lm_metrics_json(&lm);
        }
    }
    if (task == FTC_TASK_CLASSIFY) ftc_class_metrics_free(&cm);
    free(mk);
    free(order);
    free(fbatch);
    return s;
}

/* The frozen encoder once over d in eval mode (no dropout), in length order: out[i] = example i's head input
 * (its pooled state, through the pooler when used), [d->n, C]. */
static ftc_status extract_features(ftc_model *m, const ftc_dataset *d, batcher *bt, int batch, float *out,
                                   const char *what, bool quiet, ftc_err *err) {
    int C = ftc_model_config_of(m)->hidden_size;
    int32_t *order = length_order(d);
    float *fbatch = malloc((size_t)batch * C * sizeof *fbatch);
    if (!order || !fbatch) { free(order); free(fbatch); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_progress prog;
    long n_batches = (d->n + batch - 1) / batch;
    if (!quiet) ftc_progress_start(&prog, what, n_batches);
    ftc_status s = FTC_OK;
    for (int start = 0; start < d->n; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch;
        collate(bt, d, order + start, B, FTC_TASK_CLASSIFY);
        if ((s = ftc_model_head_features(m, &bt->b, fbatch, err)) != FTC_OK) break;
        for (int i = 0; i < B; i++)
            memcpy(out + (size_t)order[start + i] * C, fbatch + (size_t)i * C, (size_t)C * sizeof(float));
        if (!quiet) ftc_progress_update(&prog, start / batch + 1, NULL);
    }
    if (!quiet) ftc_progress_finish(&prog);
    free(order);
    free(fbatch);
    return s;
}

ftc_status ftc_train_evaluate(ftc_model *m, ftc_task task, const ftc_dataset *d, int batch, int max_len,
                              ftc_eval_result *r, json_t **json, ftc_err *err) {
    if (d->n == 0) return ftc_errf(err, FTC_E_INPUT, "evaluation data has no examples");
    batcher bt;
    int T = max_len_of(d, max_len);
    ftc_status s = batcher_init(&bt, batch, T, err);
    if (s == FTC_OK) s = ftc_model_reserve(m, batch, T, err);
    if (s == FTC_OK) s = evaluate(m, task, d, NULL, &bt, batch, NULL, r, json, err);
    batcher_free(&bt);
    return s;
}

/* ---- the run ---- */
typedef struct {
    const ftc_train_config *c;
    ftc_model *m;
    ftc_optimizer opt;
    batcher bt;
    const ftc_dataset *train, *val;
    int32_t *order;            /* this epoch's example order */
    int64_t *sort_keys;        /* [train->n] scratch for grouping by length */
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
} run;

/* Random batches pad to their longest example: on Banking77 (16 tokens on average, 98 at most) a batch of 32
 * computes 2.9x the real tokens. Grouping by length, as Hugging Face's group_by_length does: the shuffled order
 * is cut into mega-batches of up to 50 batches, each sorted longest first (ties keep the shuffled order), so a
 * batch holds neighbours in length (1.06x on Banking77) while which examples meet stays random. */
static void group_by_length(run *r) {
    int n = r->train->n, B = r->c->batch;
    int64_t mult = (int64_t)n / ((int64_t)B * 4); /* small data sets: mega-batches of a quarter of it at most */
    int64_t mega = (int64_t)B * (mult > 50 ? 50 : mult < 1 ? 1 : mult);
    for (int64_t start = 0; start < n; start += mega) {
        int m = (int)(n - start < mega ? n - start : mega);
        int32_t *o = r->order + start;
        for (int i = 0; i < m; i++) /* longest first: the key sorts ascending on (INT32_MAX - len, position) */
            r->sort_keys[i] = ((int64_t)(INT32_MAX - r->train->ex[o[i]].len) << 32) | i;
        qsort(r->sort_keys, (size_t)m, sizeof *r->sort_keys, cmp_i64);
        for (int i = 0; i < m; i++) r->sort_keys[i] = o[r->sort_keys[i] & 0xFFFFFFFF];
        for (int i = 0; i < m; i++) o[i] = (int32_t)r->sort_keys[i];
    }
}

/* B x T summed over one epoch's training micro-batches in r->order, per optimizer step: what ftc plan scales its
 * timed steps to (the steps it times may be longer or shorter than the epoch's average) */
static double padded_tokens_per_step(const run *r) {
    int64_t sum = 0;
    for (int64_t k = 0; k < r->micro_per_epoch; k++) {
        int64_t first = k * r->c->batch;
        int B = (int)(r->train->n - first < r->c->batch ? r->train->n - first : r->c->batch), T = 2;
        for (int i = 0; i < B; i++) if (r->train->ex[r->order[first + i]].len > T) T = r->train->ex[r->order[first + i]].len;
        sum += (int64_t)B * (T < r->bt.max_T ? T : r->bt.max_T);
    }
    return r->steps_per_epoch > 0 ? (double)sum / (double)r->steps_per_epoch : 0;
}

static void epoch_order(run *r) {
    ftc_rng rng;
    /* the order of epoch e depends only on (seed, e): resuming needs just the epoch and position */
    ftc_rng_seed(&rng, r->c->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)r->epoch + 1);
    for (int i = 0; i < r->train->n; i++) r->order[i] = i;
    ftc_rng_shuffle_i32(&rng, r->order, (size_t)r->train->n);
    if (r->c->group_by_length && !r->c->pack && !r->feat_train) group_by_length(r);
}

static ftc_status log_json(run *r, json_t *o, ftc_err *err) {
    char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!line) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    /* one write per line: a kill leaves whole lines (a torn last line is dropped on resume) */
    size_t n = strlen(line);
    line[n] = '\n';
    bool ok = fwrite(line, 1, n + 1, r->metrics) == n + 1 && fflush(r->metrics) == 0;
    free(line);
    return ok ? FTC_OK : ftc_errf(err, FTC_E_IO, "%s: write failed", r->path_metrics);
}

static json_t *state_json(const run *r) {
    json_t *st = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "step", (json_int_t)r->step, "epoch", (json_int_t)r->epoch,
                           "micro_pos", (json_int_t)r->micro_pos, "best_step", (json_int_t)r->best_step,
                           "bad_evals", (json_int_t)r->bad_evals, "tokens_seen", (json_int_t)r->tokens_seen);
    json_object_set_new(st, "best", isnan(r->best) ? json_null() : json_real(r->best));
    json_object_set_new(st, "optimizer_t", json_integer(r->opt.t));
    json_object_set_new(st, "precision", json_string(ftc_precision_name(r->c->precision)));
    /* the model's dropout generator (hex words: JSON numbers cannot hold 64 bits) */
    const ftc_rng *g = ftc_model_rng(r->m);
    json_t *words = json_array();
    for (int i = 0; i < 4; i++) {
        char hex[20];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)g->s[i]);
        json_array_append_new(words, json_string(hex));
    }
    json_object_set_new(st, "model_rng", words);
    return st;
}

/* The steps of the step checkpoints RUNDIR/checkpoint-<step>.ftc (--save-total-limit), ascending; *n of them. */
static int64_t *step_checkpoints(const char *out, int *n) {
    *n = 0;
    DIR *d = opendir(out);
    if (!d) return NULL;
    int64_t *v = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long step;
        char tail[8];
        if (sscanf(e->d_name, "checkpoint-%lld%7s", &step, tail) != 2 || strcmp(tail, ".ftc") || step < 0) continue;
        if (*n == cap) {
            int64_t *g = realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!g) break;
            v = g;
        }
        v[(*n)++] = step;
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* few files: insertion sort */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) { int64_t t = v[j]; v[j] = v[j - 1]; v[j - 1] = t; }
    return v;
}

static void step_checkpoint_path(const char *out, int64_t step, char *buf, size_t n) {
    snprintf(buf, n, "%s/checkpoint-%lld.ftc", out, (long long)step);
}

/* Removes every step checkpoint (a fresh run in a reused directory; --save-only-model at the end). */
static void remove_step_checkpoints(const char *out) {
    int n;
    int64_t *v = step_checkpoints(out, &n);
    char p[FTC_PATH_MAX + 64];
    for (int i = 0; i < n; i++) step_checkpoint_path(out, v[i], p, sizeof p), remove(p);
    free(v);
}

/* --save-total-limit N (Hugging Face Trainer's): at most N checkpoints with optimizer state, checkpoint.ftc (the
 * newest, the one --resume reads) included; the older ones are RUNDIR/checkpoint-<step>.ftc. The oldest go first,
 * never the one of the best evaluation (so with N = 1 and a best step that is not the last, two stay, as in HF).
 * 0: keep every one. The default, 1: checkpoint.ftc alone. */
static void prune_checkpoints(const run *r) {
    int limit = r->c->save_total_limit;
    if (limit <= 0) return;
    int n;
    int64_t *v = step_checkpoints(r->c->out, &n);
    int total = n + 1;
    char p[FTC_PATH_MAX + 64];
    for (int i = 0; i < n && total > limit; i++) {
        if (v[i] == r->best_step) continue;
        step_checkpoint_path(r->c->out, v[i], p, sizeof p);
        if (remove(p) == 0) total--;
    }
    free(v);
}

/* Before checkpoint.ftc is replaced (--save-total-limit other than 1): the file it holds stays as
 * checkpoint-<its step>.ftc, a hard link to the same data (the atomic write gives checkpoint.ftc a new file, so
 * nothing is copied and a kill at any point leaves checkpoint.ftc whole); a copy where links are not possible. */
static ftc_status keep_previous_checkpoint(run *r, ftc_err *err) {
    if (r->c->save_total_limit == 1 || r->ckpt_step < 0 || r->ckpt_step == r->step || !ftc_file_exists(r->path_ckpt))
        return FTC_OK;
    char p[FTC_PATH_MAX + 64];
    step_checkpoint_path(r->c->out, r->ckpt_step, p, sizeof p);
    remove(p);
    if (link(r->path_ckpt, p) == 0) return FTC_OK;
    char *bytes;
    size_t n;
    ftc_status s = ftc_read_file(r->path_ckpt, &bytes, &n, err);
    if (s != FTC_OK) return s;
    s = ftc_write_file_atomic(p, bytes, n, err);
    free(bytes);
    return s;
}

/* finished: the run's last checkpoint (its last step, or early stopping): a resume only writes the model. */
static ftc_status save_checkpoint(run *r, bool finished, ftc_err *err) {
    ftc_status s = keep_previous_checkpoint(r, err);
    if (s != FTC_OK) return s;
    json_t *st = state_json(r);
    json_object_set_new(st, "stopped", json_boolean(r->stopped));
    json_object_set_new(st, "finished", json_boolean(finished));
    s = ftc_checkpoint_save(r->path_ckpt, r->m, &r->opt, st, err);
    json_decref(st);
    if (s != FTC_OK) return s;
    r->ckpt_step = r->step;
    prune_checkpoints(r);
    return FTC_OK;
}

static bool improved(const run *r, double v) {
    if (isnan(v)) return false;
    if (isnan(r->best)) return true;
    return r->c->metric == FTC_METRIC_VAL_LOSS ? v < r->best : v > r->best;
}

/* Evaluates on validation, logs, keeps the best weights; sets *stop when patience runs out. */
static ftc_status eval_and_track(run *r, bool *stop, ftc_err *err) {
    ftc_eval_result er;
    ftc_status s = evaluate(r->m, r->c->task, r->val, r->feat_val, &r->bt, r->c->batch, r->c, &er, NULL, err);
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
    if ((s = log_json(r, o, err)) != FTC_OK) return s;
    at_point(r->c, "eval-logged");
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
        s = ftc_checkpoint_save(r->path_best, r->m, NULL, st, err);
        json_decref(st);
        if (s != FTC_OK) return s;
        at_point(r->c, "best-saved");
    } else {
        r->bad_evals++;
        if (r->c->patience > 0 && r->bad_evals >= r->c->patience) *stop = true;
    }
    return FTC_OK;
}

/* One optimizer step over the next grad_accum micro-batches. *loss: the window's mean loss. */
static ftc_status train_step(run *r, double *loss, double *grad_norm, float *lr_used, ftc_err *err) {
    const ftc_train_config *c = r->c;
    int64_t n_micro = r->micro_per_epoch - r->micro_pos;
    if (n_micro > c->grad_accum) n_micro = c->grad_accum;
    /* the window's target count first, so each micro-batch's gradient gets its share n_k / N */
    int64_t *counts = r->counts, total = 0;
    for (int64_t k = 0; k < n_micro; k++) {
        int64_t first = (r->micro_pos + k) * c->batch;
        int B = (int)(r->train->n - first < c->batch ? r->train->n - first : c->batch);
        collate(&r->bt, r->train, r->order + first, B, c->task);
        counts[k] = r->bt.n_targets;
        total += counts[k];
    }
    ftc_model_zero_grad(r->m);
    double sum = 0, w_prev = 0;
    ftc_status s = FTC_OK;
    for (int64_t k = 0; k < n_micro; k++) {
        int64_t first = (r->micro_pos + k) * c->batch;
        int B = (int)(r->train->n - first < c->batch ? r->train->n - first : c->batch);
        collate(&r->bt, r->train, r->order + first, B, c->task);
        r->tokens_seen += r->bt.n_tokens;
        r->padded_tokens += (int64_t)r->bt.b.B * r->bt.b.T;
        if (counts[k] == 0) continue; /* nothing to learn from: no target token */
        float l;
        if (r->feat_train) {
            gather_rows(r->feat_batch, r->feat_train, r->order + first, B, ftc_model_config_of(r->m)->hidden_size);
            s = ftc_model_head_forward(r->m, r->feat_batch, B, r->bt.class_labels, true, &l, err);
        } else {
            s = ftc_model_forward(r->m, &r->bt.b, true, &l, err);
        }
        if (s != FTC_OK) return s;
        double w = (double)counts[k] / (double)total;
        sum += w * l;
        if (!isfinite(l)) { *loss = l; return FTC_OK; }
        /* grads hold sum_j (w_j / w_prev) g_j; rescale so the new g_k enters with weight 1 relative to w */
        if (w_prev > 0 && w_prev != w) ftc_scale_grads(&r->opt, (float)(w_prev / w));
        if ((s = ftc_model_backward(r->m, err)) != FTC_OK) return s;
        w_prev = w;
    }
    r->micro_pos += n_micro;
    *loss = sum;
    *lr_used = 0;
    *grad_norm = 0;
    if (total == 0) return FTC_OK;
    if (w_prev != 1.0) ftc_scale_grads(&r->opt, (float)w_prev);
    *grad_norm = ftc_clip_grad_norm(&r->opt, c->clip);
    if (!isfinite(*grad_norm)) { *loss = *grad_norm; return FTC_OK; }
    *lr_used = (float)(c->lr * ftc_schedule_factor(c->schedule, r->step, r->warmup_steps, r->total_steps));
    ftc_optim_step(&r->opt, *lr_used);
    ftc_model_weights_changed(r->m); /* bf16 copies are refreshed before the next forward */
    return FTC_OK;
}

/* Keeps the lines of metrics.jsonl up to `step` (a resumed run logs the later ones again); *elapsed: the largest
 * "elapsed_s" of the lines kept (0 if none), where the resumed run's wall clock continues. */
static ftc_status trim_metrics(const char *path, int64_t step, double *elapsed, ftc_err *err) {
    *elapsed = 0;
    if (!ftc_file_exists(path)) return FTC_OK;
    char *text;
    size_t len;
    ftc_status s = ftc_read_file(path, &text, &len, err);
    if (s != FTC_OK) return s;
    char *out = malloc(len + 1);
    size_t n = 0;
    if (!out) { free(text); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl) break; /* torn last line */
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, NULL);
        /* a "finished" line is written again when the resumed run finishes */
        if (o && json_integer_value(json_object_get(o, "step")) <= step && !json_object_get(o, "finished")) {
            json_t *el = json_object_get(o, "elapsed_s");
            if (json_is_number(el) && json_number_value(el) > *elapsed) *elapsed = json_number_value(el);
            memcpy(out + n, line, (size_t)(nl - line + 1));
            n += (size_t)(nl - line + 1);
        }
        json_decref(o);
        line = nl + 1;
    }
    s = ftc_write_file_atomic(path, out, n, err);
    free(out);
    free(text);
    return s;
}

static ftc_status restore(run *r, ftc_err *err) {
    json_t *st = NULL;
    ftc_status s = ftc_checkpoint_load(r->path_ckpt, r->m, &r->opt, &st, err);
    if (s != FTC_OK) return s;
    r->step = json_integer_value(json_object_get(st, "step"));
    r->epoch = json_integer_value(json_object_get(st, "epoch"));
    r->micro_pos = json_integer_value(json_object_get(st, "micro_pos"));
    r->best_step = json_integer_value(json_object_get(st, "best_step"));
    r->bad_evals = json_integer_value(json_object_get(st, "bad_evals"));
    r->tokens_seen = json_integer_value(json_object_get(st, "tokens_seen"));
    r->opt.t = json_integer_value(json_object_get(st, "optimizer_t"));
    json_t *words = json_object_get(st, "model_rng");
    if (json_array_size(words) != 4) {
        json_decref(st);
        return ftc_errf(err, FTC_E_INPUT, "%s: state lacks model_rng (4 hex words)", r->path_ckpt);
    }
    ftc_rng *g = ftc_model_rng(r->m);
    for (int i = 0; i < 4; i++) {
        const char *hex = json_string_value(json_array_get(words, (size_t)i));
        g->s[i] = hex ? strtoull(hex, NULL, 16) : 0;
    }
    json_t *b = json_object_get(st, "best");
    r->best = json_is_number(b) ? json_number_value(b) : NAN;
    r->stopped = json_is_true(json_object_get(st, "stopped"));
    json_decref(st);
    if (r->step < 0 || r->micro_pos < 0 || r->micro_pos > r->micro_per_epoch || r->epoch < 0)
        return ftc_errf(err, FTC_E_INPUT, "%s: state does not fit this data (micro-batch %lld of %lld)", r->path_ckpt,
                        (long long)r->micro_pos, (long long)r->micro_per_epoch);
    return trim_metrics(r->path_metrics, r->step, &r->elapsed_before, err);
}

static ftc_status write_json_file(const char *path, json_t *o, ftc_err *err) {
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    size_t n = strlen(text);
    ftc_status s = ftc_write_file_atomic(path, text, n, err);
    free(text);
    return s;
}

/* The model's files into dir (a staging directory that save_final_model renames into place): exactly what
 * ftc export --format hf writes (one code path, ftc_export_hf_files): config.json with the class transformers
 * computes the model with (a head no class computes, e.g. mean pooling: the bare encoder + "ftc_classifier_head"),
 * id2label from the data's label names, and the base model's tokenizer files, so RUNDIR/model is usable alone. */
static ftc_status write_model_dir(run *r, const char *dir, ftc_err *err) {
    ftc_status s;
    if ((s = ftc_mkdirs(dir, err)) != FTC_OK) return s;
    ftc_export_opts o = {.tokenizer_dir = r->c->model};
    if (r->c->task == FTC_TASK_CLASSIFY && r->train->label_names)
        o.label_names = (const char *const *)r->train->label_names, o.n_labels = r->train->num_labels;
    return ftc_export_hf_files(r->m, dir, &o, err);
}

/* The chosen model (best when there was validation, else last): a full or head run's in RUNDIR/model (HF layout);
 * a LoRA run's adapter in RUNDIR/adapter (PEFT layout), and only with --save-merged also base + adapter merged in
 * RUNDIR/model (every command that takes RUNDIR loads base + adapter when there is no model/: ftc_run_dir_load).
 * RUNDIR/model is written whole in RUNDIR/model.tmp.<pid> and swapped into place in one rename: a crash
 * leaves the previous model (or none), never a config of one with the weights of another. */
static ftc_status save_final_model(run *r, ftc_err *err) {
    ftc_status s;
    if (r->val && ftc_file_exists(r->path_best)) {
        if ((s = ftc_checkpoint_load(r->path_best, r->m, NULL, NULL, err)) != FTC_OK) return s;
    }
    at_point(r->c, "final-best");
    char dir[FTC_PATH_MAX + 32], tmp[FTC_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/model", r->c->out);
    if (r->c->method == FTC_METHOD_LORA) {
        /* the adapter itself (PEFT layout, as ftc export --format peft writes it), before it is merged */
        char adapter[FTC_PATH_MAX + 32];
        snprintf(adapter, sizeof adapter, "%s/adapter", r->c->out);
        ftc_export_opts o = {.base_model = r->c->model, .overwrite = true};
        if (r->c->task == FTC_TASK_CLASSIFY && r->train->label_names)
            o.label_names = (const char *const *)r->train->label_names, o.n_labels = r->train->num_labels;
        if ((s = ftc_export_peft(r->m, adapter, &o, err)) != FTC_OK) return s;
        at_point(r->c, "final-adapter");
        /* a model/ left by an earlier --save-merged of this run would no longer be this adapter's */
        if (!r->c->save_merged) return ftc_remove_tree(dir, err);
        if ((s = ftc_model_merge_lora(r->m, err)) != FTC_OK) return s;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    if ((s = ftc_remove_tree(tmp, err)) != FTC_OK) return s;
    s = write_model_dir(r, tmp, err);
    if (s == FTC_OK) at_point(r->c, "final-staged");
    if (s == FTC_OK) s = ftc_dir_replace(tmp, dir, err);
    if (s != FTC_OK) {
        ftc_err ignored;
        ftc_remove_tree(tmp, &ignored);
    }
    return s;
}

/* What save_final_model writes the model as: "model", or a LoRA run's "adapter" (without --save-merged). */
static const char *final_name(const ftc_train_config *c) {
    return c->method == FTC_METHOD_LORA && !c->save_merged ? "adapter" : "model";
}

static void remove_run_temps(const char *out) {
    char p[FTC_PATH_MAX + 32];
    ftc_remove_stale_temps(out);
    snprintf(p, sizeof p, "%s/model", out);
    ftc_remove_stale_temps(p);
    snprintf(p, sizeof p, "%s/split", out);
    ftc_remove_stale_temps(p);
}

/* Finished: the last checkpoint is the run's last (its state says so) and the last line of metrics.jsonl, written
 * after model/ was swapped in, says {"step": that step, "finished": true}. model/ alone proves nothing: it may
 * be an earlier model of a run that was resumed to run longer. */
bool ftc_train_run_finished(const char *out, int64_t *step) {
    char path[FTC_PATH_MAX + 32];
    if (!ftc_run_dir_has_model(out)) return false;
    snprintf(path, sizeof path, "%s/checkpoint.ftc", out);
    json_t *st = NULL;
    ftc_err e;
    bool done;
    json_int_t ckpt_step;
    if (!ftc_file_exists(path)) { /* --save-only-model removes the checkpoint once the run has finished */
        snprintf(path, sizeof path, "%s/config.resolved.json", out);
        json_t *cfg = ftc_json_load_file(path, 0, NULL);
        bool only_model = json_is_true(json_object_get(cfg, "save_only_model"));
        json_decref(cfg);
        if (!only_model) return false;
        done = true;
        ckpt_step = -1; /* the finished line's step, read below */
    } else {
        if (ftc_checkpoint_read_state(path, &st, &e) != FTC_OK) return false;
        done = json_is_true(json_object_get(st, "finished"));
        ckpt_step = json_integer_value(json_object_get(st, "step"));
        json_decref(st);
    }
    if (step) *step = ckpt_step;
    if (!done) return false;
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *text;
    size_t len;
    if (ftc_read_file(path, &text, &len, &e) != FTC_OK) return false;
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
    size_t start = len;
    while (start && text[start - 1] != '\n') start--;
    json_t *last = json_loadb(text + start, len - start, 0, NULL);
    free(text);
    if (ckpt_step < 0) ckpt_step = json_integer_value(json_object_get(last, "step"));
    if (step) *step = ckpt_step;
    done = json_is_true(json_object_get(last, "finished")) && json_integer_value(json_object_get(last, "step")) == ckpt_step;
    bool stopped = json_is_true(json_object_get(last, "stopped_early"));
    json_decref(last);
    /* and the length the run was last started with (config.resolved.json, rewritten by a resume that asked for
     * more steps and was killed before its first checkpoint) is the length it reached */
    snprintf(path, sizeof path, "%s/config.resolved.json", out);
    json_t *cfg = done && !stopped ? ftc_json_load_file(path, 0, NULL) : NULL;
    if (cfg) done = json_integer_value(json_object_get(cfg, "total_steps")) == ckpt_step;
    json_decref(cfg);
    return done;
}

bool ftc_train_head_is_new(ftc_model *m, int num_labels) {
    const ftc_model_config *mc = ftc_model_config_of(m);
    bool has = ftc_model_find_param(m, "classifier.weight") || ftc_model_find_param(m, "score.weight");
    return !(has && mc->num_labels == num_labels);
}

/* A new classification head under lora or full steps at --head-lr: the backbone's rate (5e-5 full, 1e-3 lora)
 * barely moves a random head in a few epochs. */
static ftc_status set_head_lr(ftc_optimizer *o, const ftc_train_config *c, bool new_head, ftc_err *err) {
    if (!new_head || c->task != FTC_TASK_CLASSIFY || c->method == FTC_METHOD_HEAD || c->lr <= 0 || c->head_lr < 0 ||
        c->head_lr == c->lr)
        return FTC_OK;
    o->lr_scale = malloc((size_t)o->n * sizeof *o->lr_scale);
    if (!o->lr_scale) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < o->n; i++) o->lr_scale[i] = is_head_param(o->params[i]->name) ? c->head_lr / c->lr : 1.0f;
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

ftc_status ftc_train_run(ftc_model *m, const ftc_train_config *c, const ftc_dataset *train, const ftc_dataset *val,
                         bool quiet, ftc_train_result *res, ftc_err *err) {
    double t_run = ftc_now();
    int epochs = c->epochs > 0 ? c->epochs : ftc_train_auto_epochs(c, train->n); /* from the data when not given */
    if (c->lr < 0)
        return ftc_errf(err, FTC_E_USAGE, "no learning rate: finalize the config and call ftc_train_config_fit_model");
    memset(res, 0, sizeof *res);
    res->best_metric = NAN;
    if (train->n == 0) return ftc_errf(err, FTC_E_INPUT, "%s: no training examples", c->data);
    if (val && val->n == 0) val = NULL;
    if (c->task == FTC_TASK_CLASSIFY)
        for (int i = 0; i < train->n; i++)
            if (train->ex[i].label < 0 || train->ex[i].label >= train->num_labels)
                return ftc_errf(err, FTC_E_INPUT, "example %d: class %d outside [0, %d)", i, train->ex[i].label, train->num_labels);
    run r;
    memset(&r, 0, sizeof r);
    r.c = c; r.m = m; r.train = train; r.val = val;
    r.t_run = t_run;
    r.best = NAN;
    r.quiet = quiet;
    r.ckpt_step = -1;
    ftc_status s;
    if ((s = ftc_mkdirs(c->out, err)) != FTC_OK) return s;
    remove_run_temps(c->out); /* what a killed run left: checkpoint.ftc.tmp.<pid>, model.tmp.<pid>, ... */
    snprintf(r.path_metrics, sizeof r.path_metrics, "%s/metrics.jsonl", c->out);
    snprintf(r.path_ckpt, sizeof r.path_ckpt, "%s/checkpoint.ftc", c->out);
    snprintf(r.path_best, sizeof r.path_best, "%s/best.ftc", c->out);
    bool resuming = c->resume && ftc_file_exists(r.path_ckpt);
    if (!c->resume && ftc_file_exists(r.path_ckpt))
        return ftc_errf(err, FTC_E_USAGE, "%s already holds a run (checkpoint.ftc): use --resume, or another --out",
                        c->out);
    if ((s = check_head_labels(m, train, err)) != FTC_OK) return s;
    bool new_head = c->task == FTC_TASK_CLASSIFY && ftc_train_head_is_new(m, train->num_labels);
    if ((s = ftc_train_prepare_model(m, c, train->num_labels, err)) != FTC_OK) return s;
    int T = max_len_of(train, c->max_len);
    if (val) { int Tv = max_len_of(val, c->max_len); if (Tv > T) T = Tv; }
    if ((s = ftc_model_set_grad_checkpoint(m, c->grad_checkpoint, err)) != FTC_OK) return s;
    bool measure = c->measure_steps > 0;
    double feature_sample_seconds = 0;
    {
        /* the memory plan, before the activations are allocated: they grow linearly with the batch, so one row's
         * reservation says what batch rows need (and a run that cannot fit is refused before it starts) */
        ftc_train_plan *p = &res->plan;
        int64_t feat = uses_feature_cache(c) ? (int64_t)(train->n + (val ? val->n : 0)) *
                                                   ftc_model_config_of(m)->hidden_size * (int64_t)sizeof(float)
                                             : 0;
        if ((s = ftc_model_reserve(m, 1, T, err)) != FTC_OK) return s;
        int64_t act_row = ftc_model_activation_bytes(m);
        if (measure) { /* the same with --grad-checkpoint toggled, for the plan's two columns */
            if ((s = ftc_model_set_grad_checkpoint(m, !c->grad_checkpoint, err)) != FTC_OK) return s;
            p->activation_bytes_other = ftc_model_activation_bytes(m) * c->batch;
            if ((s = ftc_model_set_grad_checkpoint(m, c->grad_checkpoint, err)) != FTC_OK) return s;
        }
        ftc_plan_memory(m, c->batch, T, act_row * c->batch, feat, p);
        p->epochs = epochs;
        int64_t micro = (train->n + c->batch - 1) / c->batch; /* as the run below counts them */
        p->steps_per_epoch = (micro + c->grad_accum - 1) / c->grad_accum;
        p->total_steps = c->max_steps > 0 ? c->max_steps : epochs * p->steps_per_epoch;
        for (int i = 0; i < train->n; i++) p->tokens_per_epoch += train->ex[i].len < T ? train->ex[i].len : T;
        ftc_err why;
        p->fits = ftc_plan_check_memory(p, &why) == FTC_OK;
        if (!p->fits && measure) return FTC_OK; /* ftc plan reports it; nothing to time */
        if (!p->fits && c->memory_check) {
            *err = why;
            return FTC_E_INPUT;
        }
    }
    if ((s = ftc_model_reserve(m, c->batch, T, err)) != FTC_OK) return s;
    res->plan.peak_bytes += ftc_model_activation_bytes(m) - res->plan.activation_bytes; /* the exact arena */
    res->plan.activation_bytes = ftc_model_activation_bytes(m);
    if ((s = batcher_init(&r.bt, c->batch, T, err)) != FTC_OK) goto out;
    ftc_adamw_hparams h = {c->beta1, c->beta2, c->adam_eps, c->weight_decay};
    int np = ftc_model_n_params(m);
    ftc_param **params = malloc((size_t)np * sizeof *params);
    if (!params) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < np; i++) params[i] = ftc_model_param(m, i);
    s = ftc_optim_init(&r.opt, params, np, &h, err);
    free(params);
    if (s == FTC_OK) s = set_head_lr(&r.opt, c, new_head, err);
    if (s != FTC_OK) goto out;
    res->trainable_params = ftc_model_count_params(m, true);
    res->cached_features = uses_feature_cache(c);
    if (res->cached_features) {
        size_t C = (size_t)ftc_model_config_of(m)->hidden_size;
        r.feat_train = malloc((size_t)train->n * C * sizeof(float));
        r.feat_val = val ? malloc((size_t)val->n * C * sizeof(float)) : NULL;
        r.feat_batch = malloc((size_t)c->batch * C * sizeof(float));
        if (!r.feat_train || (val && !r.feat_val) || !r.feat_batch) {
            s = ftc_errf(err, FTC_E_NOMEM, "out of memory for the feature cache (%d x %zu floats)", train->n, C);
            goto out;
        }
        if (measure) {
            /* a timing run: the encoder over a sample, scaled to every example; the rest of the cache is zeros */
            memset(r.feat_train, 0, (size_t)train->n * C * sizeof(float));
            ftc_dataset sample = *train;
            sample.n = train->n < 8 * c->batch ? train->n : 8 * c->batch;
            double t0 = ftc_now();
            if ((s = extract_features(m, &sample, &r.bt, c->batch, r.feat_train, "features", true, err)) != FTC_OK)
                goto out;
            feature_sample_seconds = ftc_now() - t0;
            res->plan.feature_seconds = feature_sample_seconds * (double)(train->n + (val ? val->n : 0)) / sample.n;
        } else if ((s = extract_features(m, train, &r.bt, c->batch, r.feat_train, "features", quiet, err)) != FTC_OK ||
            (val && (s = extract_features(m, val, &r.bt, c->batch, r.feat_val, "val features", quiet, err)) != FTC_OK)) {
            ftc_err_prefix(err, "computing the frozen encoder's features");
            goto out;
        }
    }

    r.micro_per_epoch = (train->n + c->batch - 1) / c->batch;
    r.steps_per_epoch = (r.micro_per_epoch + c->grad_accum - 1) / c->grad_accum;
    r.total_steps = c->max_steps > 0 ? c->max_steps : epochs * r.steps_per_epoch;
    r.warmup_steps = c->warmup >= 1 ? (int64_t)c->warmup : (int64_t)ceil(c->warmup * (double)r.total_steps);
    res->plan.total_steps = r.total_steps;
    res->plan.steps_per_epoch = r.steps_per_epoch;
    res->plan.warmup_steps = r.warmup_steps;
    /* evaluations: every eval_every steps, at each epoch end and at the end */
    if (val) {
        int64_t ev = c->eval_every > 0 ? r.total_steps / c->eval_every : 0;
        ev += r.total_steps / (r.steps_per_epoch > 0 ? r.steps_per_epoch : 1) + 1;
        res->plan.evaluations = (int)(ev < r.total_steps ? ev : r.total_steps);
    }
    r.order = malloc((size_t)train->n * sizeof *r.order);
    r.sort_keys = malloc((size_t)(train->n > 0 ? train->n : 1) * sizeof *r.sort_keys);
    r.counts = malloc((size_t)c->grad_accum * sizeof *r.counts);
    if (!r.order || !r.sort_keys || !r.counts) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto out; }

    /* run files: resolved settings and label map (rewritten on resume: same content) */
    {
        char path[FTC_PATH_MAX + 32];
        json_t *cfg = ftc_train_config_json(c);
        json_object_set_new(cfg, "epochs", json_integer(epochs));
        json_object_set_new(cfg, "trainable_params", json_integer(res->trainable_params));
        json_object_set_new(cfg, "total_params", json_integer(ftc_model_count_params(m, false)));
        json_object_set_new(cfg, "total_steps", json_integer(r.total_steps));
        json_object_set_new(cfg, "warmup_steps", json_integer(r.warmup_steps));
        json_object_set_new(cfg, "steps_per_epoch", json_integer(r.steps_per_epoch));
        /* the memory plan: linear in batch x sequence length (attention keeps no T x T matrix) */
        json_t *mp = json_object();
        int64_t act = ftc_model_activation_bytes(m);
        json_object_set_new(mp, "batch", json_integer(c->batch));
        json_object_set_new(mp, "seq_len", json_integer(T));
        json_object_set_new(mp, "grad_checkpoint", json_boolean(c->grad_checkpoint));
        json_object_set_new(mp, "activation_bytes", json_integer(act));
        json_object_set_new(mp, "activation_bytes_per_token", json_integer(act / ((int64_t)c->batch * T)));
        json_object_set_new(mp, "param_bytes", json_integer(ftc_model_param_bytes(m)));
        json_object_set_new(cfg, "memory_plan", mp);
        json_object_set_new(cfg, "train_examples", json_integer(train->n));
        json_object_set_new(cfg, "val_examples", json_integer(val ? val->n : 0));
        snprintf(path, sizeof path, "%s/config.resolved.json", c->out);
        s = write_json_file(path, cfg, err);
        json_decref(cfg);
        if (s != FTC_OK) goto out;
        if (c->task == FTC_TASK_CLASSIFY) {
            json_t *labels = json_array();
            for (int i = 0; i < train->num_labels; i++) {
                char k[16];
                snprintf(k, sizeof k, "%d", i);
                json_array_append_new(labels, json_string(train->label_names ? train->label_names[i] : k));
            }
            snprintf(path, sizeof path, "%s/labels.json", c->out);
            s = write_json_file(path, labels, err);
            json_decref(labels);
            if (s != FTC_OK) goto out;
        }
    }
    if (resuming) {
        if ((s = restore(&r, err)) != FTC_OK) goto out;
        r.ckpt_step = r.step;
    } else {
        remove(r.path_metrics);
        remove(r.path_best);
        remove_step_checkpoints(c->out);
    }
    r.metrics = fopen(r.path_metrics, "a");
    if (!r.metrics) { s = ftc_errf(err, FTC_E_IO, "%s: cannot open for writing", r.path_metrics); goto out; }

    ftc_progress prog;
    if (!quiet) ftc_progress_start(&prog, "train", (long)r.total_steps);
    r.t_start = ftc_now();
    r.tokens_at_start = r.tokens_seen;
    int64_t last_good_ckpt = resuming ? r.step : -1;
    bool stop = r.stopped; /* a run that stopped early and was killed before its model was saved */
    if (r.micro_pos >= r.micro_per_epoch) { r.epoch++; r.micro_pos = 0; }
    epoch_order(&r);
    double *step_times = measure ? calloc((size_t)c->measure_steps + 1, sizeof *step_times) : NULL;
    int n_timed = 0;
    if (measure && !step_times) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); goto out; }
    if (measure) res->plan.setup_seconds = ftc_now() - t_run - feature_sample_seconds;
    double pad_per_step = measure && !r.feat_train ? padded_tokens_per_step(&r) : 0;
    while (r.step < r.total_steps && !stop) {
        double loss = 0, gnorm = 0;
        float lr = 0;
        double t_step = ftc_now();
        int64_t padded_before = r.padded_tokens;
        if ((s = train_step(&r, &loss, &gnorm, &lr, err)) != FTC_OK) {
            ftc_err_prefix(err, "step %lld", (long long)r.step + 1);
            break;
        }
        if (measure) { /* ftc plan: time the steps (the first is a warm-up), nothing written */
            /* scaled to the epoch's average batch shape: grouped by length, the first steps hold the longest */
            double dt = ftc_now() - t_step, padded = (double)(r.padded_tokens - padded_before);
            step_times[n_timed++] = pad_per_step > 0 && padded > 0 ? dt * pad_per_step / padded : dt;
            r.step++;
            if (r.micro_pos >= r.micro_per_epoch) { r.epoch++; r.micro_pos = 0; epoch_order(&r); }
            if (n_timed > c->measure_steps) break;
            continue;
        }
        if (!isfinite(loss)) {
            /* the last good checkpoint becomes RUNDIR/model, so `ftc eval --model RUNDIR` takes it */
            ftc_err me;
            ftc_status ms = last_good_ckpt >= 0 ? ftc_checkpoint_load(r.path_ckpt, m, NULL, NULL, &me) : FTC_E_INTERNAL;
            if (ms == FTC_OK) ms = save_final_model(&r, &me);
            if (last_good_ckpt >= 0 && ms == FTC_OK)
                s = ftc_errf(err, FTC_E_INPUT, "training loss is %s at step %lld (epoch %lld): stopped; the last good "
                             "checkpoint (step %lld) is intact in %s and written as %s/%s. Evaluate it with "
                             "ftc eval --model %s --data FILE, or continue from it with ftc train --out %s --resume "
                             "--lr LOWER (or check the data).",
                             isnan(loss) ? "NaN" : "Inf", (long long)r.step + 1, (long long)r.epoch + 1,
                             (long long)last_good_ckpt, r.path_ckpt, c->out, final_name(c), c->out, c->out);
            else if (last_good_ckpt >= 0)
                s = ftc_errf(err, FTC_E_INPUT, "training loss is %s at step %lld (epoch %lld): stopped; the last good "
                             "checkpoint (step %lld) is intact in %s (continue from it with ftc train --out %s --resume "
                             "--lr LOWER); writing it as %s/%s failed: %s",
                             isnan(loss) ? "NaN" : "Inf", (long long)r.step + 1, (long long)r.epoch + 1,
                             (long long)last_good_ckpt, r.path_ckpt, c->out, c->out, final_name(c), me.msg);
            else
                s = ftc_errf(err, FTC_E_INPUT, "training loss is %s at step %lld (epoch %lld): stopped before any "
                             "checkpoint was written. Lower --lr or check the data.",
                             isnan(loss) ? "NaN" : "Inf", (long long)r.step + 1, (long long)r.epoch + 1);
            break;
        }
        r.step++;
        res->last_loss = loss;
        bool epoch_end = r.micro_pos >= r.micro_per_epoch;
        double el = ftc_now() - r.t_start, tok_s = el > 0 ? (double)(r.tokens_seen - r.tokens_at_start) / el : 0;
        double epoch_f = (double)r.epoch + (double)r.micro_pos / (double)r.micro_per_epoch;
        if (r.step % c->log_every == 0 || r.step == 1 || r.step == r.total_steps) {
            json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)r.step, "epoch", epoch_f,
                                  "loss", loss, "lr", (double)lr, "grad_norm", gnorm, "tok_s", round(tok_s), "elapsed_s",
                                  round((r.elapsed_before + ftc_now() - r.t_run) * 10) / 10);
            if ((s = log_json(&r, o, err)) != FTC_OK) break;
        }
        if (!quiet) {
            char extra[200];
            snprintf(extra, sizeof extra, "epoch %.2f loss %.4f lr %.3g tok/s %.0f", epoch_f, loss, lr, tok_s);
            ftc_progress_update(&prog, (long)r.step, extra);
        }
        bool last = r.step >= r.total_steps;
        if (val && ((c->eval_every > 0 && r.step % c->eval_every == 0) || epoch_end || last)) {
            if ((s = eval_and_track(&r, &stop, err)) != FTC_OK) break;
        }
        if (epoch_end) { r.epoch++; r.micro_pos = 0; epoch_order(&r); }
        r.stopped = stop;
        if ((c->save_every > 0 && r.step % c->save_every == 0) || epoch_end || last || stop) {
            if ((s = save_checkpoint(&r, last || stop, err)) != FTC_OK) break;
            last_good_ckpt = r.step;
        }
        if (c->stop && *c->stop && !last) { /* asked to stop: this step is done, keep it */
            if (last_good_ckpt != r.step && (s = save_checkpoint(&r, false, err)) != FTC_OK) break;
            last_good_ckpt = r.step;
            res->interrupted = true;
            break;
        }
    }
    if (!quiet) ftc_progress_finish(&prog);
    if (measure) {
        if (s == FTC_OK) finish_timing(&res->plan, step_times, n_timed, train, val, uses_feature_cache(c));
        free(step_times);
        goto out;
    }
    if (s == FTC_OK) {
        res->steps = r.step;
        res->best_metric = r.best;
        res->best_step = r.best_step;
        res->stopped_early = stop;
        if (!res->interrupted) s = save_final_model(&r, err);
        if (s == FTC_OK) remove_run_temps(c->out);
        if (s == FTC_OK && !res->interrupted) at_point(c, "final-done");
        /* the last line: the run is done and model/ is its model (ftc_train_run_finished) */
        if (s == FTC_OK && !res->interrupted)
            s = log_json(&r, json_pack("{s:I, s:b, s:b, s:f}", "step", (json_int_t)r.step, "finished", 1, "stopped_early",
                                       stop, "elapsed_s", round((r.elapsed_before + ftc_now() - r.t_run) * 10) / 10),
                         err);
        /* --save-only-model: the finished run keeps its model; the checkpoints (weights and AdamW moments) go */
        if (s == FTC_OK && !res->interrupted && c->save_only_model) {
            remove(r.path_ckpt);
            remove(r.path_best);
            remove_step_checkpoints(c->out);
        }
    }
out:
    if (r.metrics) fclose(r.metrics);
    free(r.order);
    free(r.sort_keys);
    free(r.counts);
    free(r.feat_train);
    free(r.feat_val);
    free(r.feat_batch);
    batcher_free(&r.bt);
    ftc_optim_free(&r.opt);
    return s;
}

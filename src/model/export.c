/* Export for transformers and PEFT. HF: ftc_model_save's layout plus what a downstream user needs
 * (labels, problem_type, tokenizer files) and an honest architecture; PEFT: the LoRA A/B matrices under
 * the module paths PEFT gives the task model (base_model.model.bert.encoder..., transformer.h...).
 * Each export is assembled in "<out>.tmp.<pid>" and renamed into place. */
#include "model_internal.h"
#include "ftc/export.h"
#include "base/base_internal.h"
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *family_prefix(const ftc_model *m) {
    return m->cfg.family == FTC_FAMILY_GPT2 ? "transformer." : m->cfg.family == FTC_FAMILY_LLAMA ? "model." : "bert.";
}

/* The module's path inside the transformers class PEFT wraps for the task: the family prefix for the
 * task classes (GPT2LMHeadModel.transformer, LlamaForCausalLM.model, BertForSequenceClassification.bert),
 * none for the bare base class (encode). */
static void hf_module_path(const ftc_model *m, const char *module, char *out, size_t n) {
    size_t pl = strlen(m->prefix);
    const char *rest = pl && !strncmp(module, m->prefix, pl) ? module + pl : module;
    snprintf(out, n, "%s%s", m->task == FTC_TASK_ENCODE ? "" : family_prefix(m), rest);
}


bool ftc_export_head_is_hf(const ftc_model *m, const char **why) {
    const char *w = NULL;
    if (m->task != FTC_TASK_CLASSIFY || m->cls_w < 0) {
        w = "no classification head";
    } else if (m->cfg.family == FTC_FAMILY_BERT) {
        if (m->pooling != FTC_POOL_CLS)
            w = "the head reads the mean of the token states; BertForSequenceClassification reads the pooled [CLS]";
        else if (m->pooler_w < 0)
            w = "the head reads the [CLS] state directly (the checkpoint has no pooler); BertForSequenceClassification "
                "applies tanh(pooler.dense(CLS)) first";
        else if (m->cls_b < 0)
            w = "the head has no bias; BertForSequenceClassification's classifier has one";
    } else {
        if (m->pooling != FTC_POOL_LAST)
            w = "the head reads a pooled state other than the last token; *ForSequenceClassification reads the last "
                "non-padding token";
        else if (m->cls_b >= 0)
            w = "the head has a bias; the transformers score layer has none";
    }
    if (why) *why = w;
    return w == NULL;
}

/* ---- output directory: built aside, renamed into place ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* A training run's own files: a directory holding one (at any depth) is never replaced, --force or not. */
static bool holds_run(const char *dir, int depth, char *found, size_t n) {
    DIR *d = depth < 32 ? opendir(dir) : NULL;
    if (!d) return false;
    bool yes = false;
    for (struct dirent *e; !yes && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4400];
        if (!ftc_path_join(p, sizeof p, dir, e->d_name)) continue;
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) yes = holds_run(p, depth + 1, found, n);
        else if (!strcmp(e->d_name, "config.resolved.json") || !strcmp(e->d_name, "checkpoint.ftc") ||
                 !strcmp(e->d_name, "best.ftc")) {
            snprintf(found, n, "%s", p);
            yes = true;
        }
    }
    closedir(d);
    return yes;
}

static ftc_status begin_out(const char *out, bool overwrite, char *tmp, size_t n, ftc_err *err) {
    if (!out || !*out) return ftc_errf(err, FTC_E_USAGE, "no output directory given");
    if (ftc_file_exists(out) && !ftc_is_dir(out))
        return ftc_errf(err, FTC_E_USAGE, "%s exists and is not a directory", out);
    char found[4400];
    if (ftc_is_dir(out) && holds_run(out, 0, found, sizeof found))
        return ftc_errf(err, FTC_E_USAGE, "%s holds a training run (%s): an export never replaces a run, even with "
                                          "--force; choose another --out", out, found);
    if (ftc_is_dir(out) && !overwrite) {
        DIR *d = opendir(out);
        bool empty = true;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
        if (d) closedir(d);
        if (!empty) return ftc_errf(err, FTC_E_USAGE, "%s exists and is not empty (remove it, or pass --force)", out);
    }
    if ((size_t)snprintf(tmp, n, "%s.tmp.%ld", out, (long)getpid()) >= n)
        return ftc_errf(err, FTC_E_USAGE, "output path too long: %s", out);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS); /* a leftover of this pid, if any */
    return ftc_mkdirs(tmp, err);
}

static ftc_status finish_out(const char *tmp, const char *out, ftc_status s, ftc_err *err) {
    if (s != FTC_OK) {
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return s;
    }
    char old[4300];
    old[0] = 0;
    if (ftc_is_dir(out)) { /* empty, or overwrite was asked for: move aside, swap, then delete */
        snprintf(old, sizeof old, "%s.old.%ld", out, (long)getpid());
        if (rename(out, old) != 0) {
            nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
            return ftc_errf(err, FTC_E_IO, "%s: cannot replace: %s", out, strerror(errno));
        }
    }
    if (rename(tmp, out) != 0) {
        int e = errno;
        if (old[0]) rename(old, out);
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return ftc_errf(err, FTC_E_IO, "%s: cannot move the export into place: %s", out, strerror(e));
    }
    if (old[0]) nftw(old, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return FTC_OK;
}

static ftc_status write_json(const char *dir, const char *file, json_t *o, ftc_err *err) {
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory writing %s", file);
    char path[4400];
    ftc_status s = ftc_path_join(path, sizeof path, dir, file) ? FTC_OK
                                                               : ftc_errf(err, FTC_E_USAGE, "path too long: %s", dir);
    size_t n = strlen(text);
    char *with_nl = s ? NULL : malloc(n + 1);
    if (!s && !with_nl) s = ftc_errf(err, FTC_E_NOMEM, "out of memory writing %s", file);
    if (!s) {
        memcpy(with_nl, text, n);
        with_nl[n] = '\n';
        s = ftc_write_file_atomic(path, with_nl, n + 1, err);
    }
    free(with_nl);
    free(text);
    return s;
}

/* Tokenizer and generation files a transformers user loads next to the weights. */
static const char *const TOKENIZER_FILES[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                              "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model",
                                              "added_tokens.json", "generation_config.json", NULL};

static ftc_status copy_tokenizer(const char *from, const char *to, ftc_err *err) {
    for (int i = 0; TOKENIZER_FILES[i]; i++) {
        char src[4400], dst[4400];
        if (!ftc_path_join(src, sizeof src, from, TOKENIZER_FILES[i]) ||
            !ftc_path_join(dst, sizeof dst, to, TOKENIZER_FILES[i]))
            return ftc_errf(err, FTC_E_USAGE, "path too long: %s", from);
        if (!ftc_file_exists(src)) continue;
        char *data;
        size_t len;
        ftc_status s = ftc_read_file(src, &data, &len, err);
        if (!s) s = ftc_write_file_atomic(dst, data, len, err);
        if (s == FTC_OK) free(data);
        if (s) return s;
    }
    return FTC_OK;
}

/* id2label / label2id from the given names, else the model's own (kept by ftc_model_save). Non-zero when an entry
 * could not be made (out of memory). */
static int set_labels(json_t *cfg, const ftc_model *m, const ftc_export_opts *o) {
    int bad = 0;
    if (o->label_names && o->n_labels == m->num_labels) {
        json_t *id2label = json_object(), *label2id = json_object();
        for (int i = 0; i < m->num_labels; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            bad |= json_object_set_new(id2label, key, json_string(o->label_names[i] ? o->label_names[i] : ""));
            bad |= json_object_set_new(label2id, o->label_names[i] ? o->label_names[i] : "", json_integer(i));
        }
        bad |= json_object_set_new(cfg, "id2label", id2label);
        bad |= json_object_set_new(cfg, "label2id", label2id);
    }
    bad |= json_object_set_new(cfg, "num_labels", json_integer(m->num_labels));
    bad |= json_object_set_new(cfg, "problem_type", json_string("single_label_classification"));
    return bad;
}

static const char *bare_class(const ftc_model *m) {
    const char *t = m->cfg.model_type;
    return !strcmp(t, "gpt2") ? "GPT2Model" : !strcmp(t, "bert") ? "BertModel" : !strcmp(t, "mistral") ? "MistralModel"
           : !strcmp(t, "qwen2") ? "Qwen2Model" : "LlamaModel";
}

ftc_status ftc_export_hf_files(const ftc_model *m, const char *tmp, const ftc_export_opts *o, ftc_err *err) {
    ftc_export_opts none = {0};
    if (!o) o = &none;
    if (o->label_names && m->task == FTC_TASK_CLASSIFY && o->n_labels != m->num_labels)
        return ftc_errf(err, FTC_E_INPUT, "%d label names for a head of %d classes", o->n_labels, m->num_labels);
    ftc_status s = ftc_model_save(m, tmp, err);
    json_t *cfg = NULL;
    char path[4400];
    if (!s) {
        ftc_path_join(path, sizeof path, tmp, "config.json");
        json_error_t je;
        cfg = ftc_json_load_file(path, 0, &je);
        if (!cfg && json_error_code(&je) == json_error_out_of_memory) s = ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path);
        else if (!cfg) s = ftc_errf(err, FTC_E_INTERNAL, "%s: line %d: %s", path, je.line, je.text);
    }
    if (!s) {
        int bad = 0; /* an entry that could not be made: out of memory, never a config.json without it */
        bad |= json_object_set_new(cfg, "torch_dtype", json_string("float32"));
        if (m->task == FTC_TASK_CLASSIFY) {
            bad |= set_labels(cfg, m, o);
            const char *why;
            if (!ftc_export_head_is_hf(m, &why)) {
                /* no transformers class computes this head: export the encoder as the bare class (which loads
                 * it exactly) and keep the head's tensors and a description for whoever rebuilds it */
                json_t *arch = json_array();
                bad |= json_array_append_new(arch, json_string(bare_class(m)));
                bad |= json_object_set_new(cfg, "architectures", arch);
                json_t *head = json_object();
                const char *pool = m->pooling == FTC_POOL_CLS ? "cls" : m->pooling == FTC_POOL_MEAN ? "mean" : "last";
                bad |= json_object_set_new(head, "pooling", json_string(pool));
                bad |= json_object_set_new(head, "pooler", json_boolean(m->pooler_w >= 0 && m->pooling == FTC_POOL_CLS));
                bad |= json_object_set_new(head, "weights", json_string(m->cfg.family == FTC_FAMILY_BERT ? "classifier.*"
                                                                                                   : "score.*"));
                bad |= json_object_set_new(head, "note", json_string(why));
                bad |= json_object_set_new(cfg, "ftc_classifier_head", head);
            }
        }
        s = bad ? ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path) : write_json(tmp, "config.json", cfg, err);
    }
    json_decref(cfg);
    if (!s && o->tokenizer_dir) s = copy_tokenizer(o->tokenizer_dir, tmp, err);
    return s;
}

ftc_status ftc_export_hf(const ftc_model *m, const char *out, const ftc_export_opts *o, ftc_err *err) {
    if (o && o->label_names && m->task == FTC_TASK_CLASSIFY && o->n_labels != m->num_labels)
        return ftc_errf(err, FTC_E_INPUT, "%d label names for a head of %d classes", o->n_labels, m->num_labels);
    char tmp[4300];
    ftc_status s = begin_out(out, o && o->overwrite, tmp, sizeof tmp, err);
    if (s) return s;
    return finish_out(tmp, out, ftc_export_hf_files(m, tmp, o, err), err);
}

/* ---- PEFT ---- */

/* PEFT's rule for a list of target_modules: a module matches when its path equals a target or ends
 * with "." + target. */
static bool peft_matches(const char *path, json_t *targets) {
    size_t pl = strlen(path), i;
    json_t *t;
    json_array_foreach(targets, i, t) {
        const char *k = json_string_value(t);
        size_t kl = strlen(k);
        if (!strcmp(path, k) || (pl > kl && path[pl - kl - 1] == '.' && !strcmp(path + pl - kl, k))) return true;
    }
    return false;
}

/* The part of a module path after its layer index ("...layer.3.attention.self.query" -> "attention.self.query"). */
static const char *after_layer_index(const char *path) {
    const char *s = path;
    while ((s = strchr(s, '.'))) {
        s++;
        const char *e = s;
        while (*e >= '0' && *e <= '9') e++;
        if (e > s && *e == '.') return e + 1;
    }
    return path;
}

/* target_modules: the shortest form (last name, path inside the block, full paths) that selects exactly
 * the adapted modules among all linear layers of the HF model, heads and pooler included. */
static json_t *target_modules(const ftc_model *m) {
    /* every linear of the HF model with whether it carries an adapter */
    int cap = m->L * FTC_LAYER_MODS + 4, n = 0;
    char (*paths)[160] = calloc((size_t)cap, sizeof *paths);
    bool *lora = calloc((size_t)cap, sizeof *lora);
    if (!paths || !lora) {
        free(paths), free(lora);
        return NULL;
    }
    for (int i = 0; i < m->L; i++)
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(&m->layers[i], j);
            if (lm->w < 0) continue;
            hf_module_path(m, lm->module, paths[n], sizeof paths[n]);
            lora[n++] = lm->lora_a >= 0;
        }
    const char *extra[] = {m->cfg.family == FTC_FAMILY_BERT ? (m->task == FTC_TASK_ENCODE ? "pooler.dense"
                                                                                          : "bert.pooler.dense")
                                                            : NULL,
                           m->task == FTC_TASK_CLASSIFY ? (m->cfg.family == FTC_FAMILY_BERT ? "classifier" : "score")
                                                        : NULL,
                           m->task == FTC_TASK_CAUSAL_LM ? "lm_head" : NULL};
    for (size_t k = 0; k < sizeof extra / sizeof *extra; k++)
        if (extra[k]) snprintf(paths[n], sizeof paths[n], "%s", extra[k]), lora[n++] = false;
    json_t *best = NULL;
    for (int level = 0; level < 3 && !best; level++) {
        json_t *t = json_array();
        for (int i = 0; i < n; i++) {
            if (!lora[i]) continue;
            const char *key = paths[i];
            if (level == 0 && strrchr(key, '.')) key = strrchr(key, '.') + 1;
            if (level == 1) key = after_layer_index(key);
            bool dup = false;
            size_t k;
            json_t *v;
            json_array_foreach(t, k, v) dup = dup || !strcmp(json_string_value(v), key);
            if (!dup) json_array_append_new(t, json_string(key));
        }
        bool exact = true;
        for (int i = 0; i < n && exact; i++) exact = peft_matches(paths[i], t) == lora[i];
        if (exact) best = t;
        else json_decref(t);
    }
    free(paths), free(lora);
    return best;
}

ftc_status ftc_export_peft(const ftc_model *m, const char *out, const ftc_export_opts *o, ftc_err *err) {
    ftc_export_opts none = {0};
    if (!o) o = &none;
    int r = 0;
    float scale = 0, dropout = 0;
    bool first = true;
    for (int i = 0; i < m->L; i++)
        for (int j = 0; j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(&m->layers[i], j);
            if (lm->w < 0 || lm->lora_a < 0) continue;
            int ri = (int)m->params[lm->lora_a].shape[0];
            if (first) r = ri, scale = lm->lora_scale, dropout = lm->lora_dropout, first = false;
            else if (ri != r || lm->lora_scale != scale || lm->lora_dropout != dropout)
                return ftc_errf(err, FTC_E_UNSUPPORTED, "%s: LoRA rank/alpha/dropout differ from the other adapters "
                                "(rank %d vs %d); PEFT export needs one setting for all", lm->module, ri, r);
        }
    if (first)
        return ftc_errf(err, FTC_E_USAGE, "the model has no LoRA adapters to export (a merged or full fine-tune "
                        "exports with --format hf)");
    if (m->task == FTC_TASK_CLASSIFY && m->cls_w < 0)
        return ftc_errf(err, FTC_E_USAGE, "classify model without a classification head");
    if (o->label_names && m->task == FTC_TASK_CLASSIFY && o->n_labels != m->num_labels)
        return ftc_errf(err, FTC_E_INPUT, "%d label names for a head of %d classes", o->n_labels, m->num_labels);
    json_t *targets = target_modules(m);
    if (!targets) return ftc_errf(err, FTC_E_NOMEM, "out of memory");

    json_t *cfg = json_object();
    double alpha = (double)scale * r;
    json_object_set_new(cfg, "peft_type", json_string("LORA"));
    json_object_set_new(cfg, "task_type", json_string(m->task == FTC_TASK_CAUSAL_LM ? "CAUSAL_LM"
                                                      : m->task == FTC_TASK_CLASSIFY ? "SEQ_CLS" : "FEATURE_EXTRACTION"));
    json_object_set_new(cfg, "r", json_integer(r));
    /* alpha is usually an integer (16, 32): keep it one so PEFT reads the same type it writes */
    json_object_set_new(cfg, "lora_alpha", fabs(alpha - round(alpha)) < 1e-4 * fmax(1, fabs(alpha))
                                                ? json_integer((json_int_t)round(alpha)) : json_real(alpha));
    json_object_set_new(cfg, "lora_dropout", json_real(dropout));
    json_object_set_new(cfg, "target_modules", targets);
    json_object_set_new(cfg, "bias", json_string("none"));
    json_object_set_new(cfg, "fan_in_fan_out", json_boolean(m->cfg.family == FTC_FAMILY_GPT2));
    json_t *mts = json_null();
    if (m->task == FTC_TASK_CLASSIFY) {
        mts = json_array();
        json_array_append_new(mts, json_string(m->cfg.family == FTC_FAMILY_BERT ? "classifier" : "score"));
    }
    json_object_set_new(cfg, "modules_to_save", mts);
    json_object_set_new(cfg, "base_model_name_or_path", o->base_model ? json_string(o->base_model) : json_null());
    json_object_set_new(cfg, "inference_mode", json_true());
    json_object_set_new(cfg, "init_lora_weights", json_true());
    json_object_set_new(cfg, "use_rslora", json_false());
    json_object_set_new(cfg, "use_dora", json_false());
    json_object_set_new(cfg, "rank_pattern", json_object());
    json_object_set_new(cfg, "alpha_pattern", json_object());
    json_object_set_new(cfg, "layers_to_transform", json_null());
    json_object_set_new(cfg, "layers_pattern", json_null());
    json_object_set_new(cfg, "revision", json_null());

    char tmp[4300];
    ftc_status s = begin_out(out, o->overwrite, tmp, sizeof tmp, err);
    if (s) {
        json_decref(cfg);
        return s;
    }
    ftc_st_writer *w = ftc_st_writer_new();
    if (!w) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (!s) s = ftc_st_writer_metadata(w, "format", "pt", err);
    for (int i = 0; !s && i < m->L; i++)
        for (int j = 0; !s && j < FTC_LAYER_MODS; j++) {
            linear_mod *lm = layer_mod(&m->layers[i], j);
            if (lm->w < 0 || lm->lora_a < 0) continue;
            char path[160], name[220];
            hf_module_path(m, lm->module, path, sizeof path);
            const ftc_param *a = &m->params[lm->lora_a], *b = &m->params[lm->lora_b];
            snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", path);
            s = ftc_st_writer_add(w, name, FTC_F32, 2, a->shape, a->data, err);
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", path);
            if (!s) s = ftc_st_writer_add(w, name, FTC_F32, 2, b->shape, b->data, err);
        }
    /* the head trained beside the adapters: PEFT's modules_to_save, saved under the module's own name */
    int heads[2] = {m->task == FTC_TASK_CLASSIFY ? m->cls_w : -1, m->task == FTC_TASK_CLASSIFY ? m->cls_b : -1};
    for (int k = 0; !s && k < 2; k++) {
        if (heads[k] < 0) continue;
        const ftc_param *p = &m->params[heads[k]];
        char name[220];
        snprintf(name, sizeof name, "base_model.model.%s", p->name);
        s = ftc_st_writer_add(w, name, FTC_F32, p->ndim, p->shape, p->data, err);
    }
    char path[4400];
    if (!s) {
        ftc_path_join(path, sizeof path, tmp, "adapter_model.safetensors");
        s = ftc_st_writer_write(w, path, err);
    }
    ftc_st_writer_free(w);
    if (!s) s = write_json(tmp, "adapter_config.json", cfg, err);
    json_decref(cfg);
    if (!s && m->task == FTC_TASK_CLASSIFY) {
        /* class names for ftc's --adapter and for users (PEFT ignores the file): the base's config has none */
        json_t *labels = json_array();
        bool named = m->cfg.num_labels == m->num_labels && m->cfg.id2label;
        for (int i = 0; i < m->num_labels; i++) {
            char def[32];
            snprintf(def, sizeof def, "LABEL_%d", i);
            const char *l = o->label_names ? o->label_names[i] : named && m->cfg.id2label[i] ? m->cfg.id2label[i] : def;
            json_array_append_new(labels, json_string(l));
        }
        s = write_json(tmp, "labels.json", labels, err);
        json_decref(labels);
    }
    if (!s && o->tokenizer_dir) s = copy_tokenizer(o->tokenizer_dir, tmp, err);
    return finish_out(tmp, out, s, err);
}

/* Opening what the user points --model at for generate/chat/classify: a model directory in Hugging Face
 * layout, or an ftc run directory (RUNDIR/config.resolved.json + RUNDIR/model/, or for a LoRA run the base model
 * with RUNDIR/adapter merged: ftc_run_model_load, include/ftc/rundir.h, below both inference and training). The tokenizer comes from the model directory, or for a run whose model/ holds no tokenizer files,
 * from the base model the run was trained from (config.resolved.json "model"). */
#include "ftc/infer.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/rundir.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_tokenizer_files(const char *dir) {
    static const char *const files[] = {"tokenizer.json", "vocab.json", "vocab.txt"};
    char p[8600];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (ftc_file_exists(p)) return true;
    }
    return false;
}

/* The chat template the data layer actually applied (chat data only): RUNDIR/chat_template.json. */
static ftc_status read_applied_template(ftc_infer_model *im, const char *dir, ftc_err *err) {
    char path[8600];
    snprintf(path, sizeof path, "%s/chat_template.json", dir);
    if (!ftc_file_exists(path)) return FTC_OK;
    json_error_t je;
    json_t *o = ftc_json_load_file(path, 0, &je);
    if (!o) return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    const char *name = json_string_value(json_object_get(o, "name"));
    json_t *src = json_object_get(o, "jinja");
    if (name) snprintf(im->template_name, sizeof im->template_name, "%s", name);
    if (json_is_string(src) && !(im->template_source = strdup(json_string_value(src)))) {
        json_decref(o);
        return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    json_decref(o);
    return FTC_OK;
}

ftc_status ftc_infer_open(const char *path, int want_task, ftc_infer_model *im, ftc_err *err) {
    memset(im, 0, sizeof *im);
    if (strlen(path) > 4000) return ftc_errf(err, FTC_E_USAGE, "model path is too long (%zu bytes)", strlen(path));
    char cfg[8600], base[FTC_PATH_MAX] = "";
    snprintf(cfg, sizeof cfg, "%s/config.resolved.json", path);
    ftc_status s;
    if (ftc_file_exists(cfg)) {
        /* a run: RUNDIR/model with the run's task (train.h), the template and base model it recorded */
        im->is_run = true;
        ftc_run_info *ri = malloc(sizeof *ri);
        if (!ri) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        snprintf(im->model_dir, sizeof im->model_dir, "%s/model", path);
        snprintf(cfg, sizeof cfg, "%s/config.json", im->model_dir);
        bool merged = ftc_file_exists(cfg);
        if (!merged && !ftc_run_dir_has_model(path)) {
            free(ri);
            return ftc_errf(err, FTC_E_INPUT, "run %s has no model yet (%s is missing, and no LoRA adapter/): has "
                            "training finished?", path, cfg);
        }
        /* the task first: a run for another command is refused before its weights are read */
        s = ftc_run_info_read(path, ri, err);
        if (s == FTC_OK && want_task >= 0 && (ftc_task)want_task != ri->task)
            s = ftc_errf(err, FTC_E_USAGE, "run %s was trained for %s; use %s", path,
                         ri->task == FTC_TASK_CLASSIFY ? "classify" : "causal-lm",
                         ri->task == FTC_TASK_CLASSIFY ? "ftc classify" : "ftc generate or ftc chat");
        if (s == FTC_OK) s = ftc_run_model_load(path, ri, &im->model, err);
        if (s == FTC_OK) {
            im->task = ri->task;
            snprintf(base, sizeof base, "%s", ri->model);
            /* a LoRA run keeping its adapter only: base + adapter (loaded above); the base's files stand for model/ */
            if (!merged) snprintf(im->model_dir, sizeof im->model_dir, "%s", ri->model);
            snprintf(im->template_name, sizeof im->template_name, "%s", ri->template_name);
            im->run_max_len = ri->max_len;
        }
        free(ri);
        if (s == FTC_OK) s = read_applied_template(im, path, err);
        if (s) goto fail;
    } else {
        if (!ftc_is_dir(path)) return ftc_errf(err, FTC_E_IO, "%s: no such model directory", path);
        snprintf(im->model_dir, sizeof im->model_dir, "%s", path);
        im->task = want_task >= 0 ? (ftc_task)want_task : FTC_TASK_CAUSAL_LM;
    }
    const char *tokdir = im->model_dir;
    if (!has_tokenizer_files(tokdir) && im->is_run && base[0] && has_tokenizer_files(base)) tokdir = base;
    if (!has_tokenizer_files(tokdir)) {
        if (im->is_run)
            s = ftc_errf(err, FTC_E_INPUT, "no tokenizer files (tokenizer.json, vocab.json or vocab.txt) in %s, nor "
                            "in the run's base model \"%s\"", im->model_dir, base);
        else
            s = ftc_errf(err, FTC_E_INPUT, "%s: no tokenizer files (tokenizer.json, vocab.json or vocab.txt)", path);
        goto fail;
    }
    snprintf(im->tokenizer_dir, sizeof im->tokenizer_dir, "%s", tokdir);
    if (!im->model && (s = ftc_model_load(im->model_dir, im->task, &im->model, err))) goto fail;
    if ((s = ftc_tokenizer_load(tokdir, &im->tok, err))) goto fail;
    /* generation_config.json (read for its eos ids) must be JSON if it is there: ignored, it would let
     * generation run past the end of turn it names */
    for (int d = 0; d < 2; d++) {
        char gp[8600];
        snprintf(gp, sizeof gp, "%s/generation_config.json", d ? tokdir : im->model_dir);
        json_t *o;
        if (!ftc_file_exists(gp)) continue;
        if ((s = ftc_json_load_object(gp, &o, err))) goto fail;
        json_decref(o);
    }
    if (ftc_tokenizer_vocab_size(im->tok) > ftc_model_config_of(im->model)->vocab_size) {
        s = ftc_errf(err, FTC_E_INPUT, "tokenizer in %s has %d tokens but the model's vocab_size is %d", tokdir,
                     ftc_tokenizer_vocab_size(im->tok), ftc_model_config_of(im->model)->vocab_size);
        goto fail;
    }
    /* inference only: nothing trains, so ftc_model_reserve plans forward-only (no gradients, one block's
     * activations) */
    for (int i = 0; i < ftc_model_n_params(im->model); i++) ftc_model_set_trainable(im->model, i, false);
    return FTC_OK;
fail:
    ftc_infer_close(im);
    return s;
}

void ftc_infer_close(ftc_infer_model *im) {
    ftc_model_free(im->model);
    ftc_tokenizer_free(im->tok);
    free(im->template_source);
    im->model = NULL, im->tok = NULL, im->template_source = NULL;
}

/* EOS ids: the config's, generation_config.json's (a number or a list) and the tokenizer's. */
int ftc_infer_stop_ids(const ftc_infer_model *im, int32_t *out, int max) {
    int n = 0;
#define ADD(id)                                                                                                        \
    do {                                                                                                               \
        int32_t v_ = (int32_t)(id);                                                                                    \
        bool dup_ = false;                                                                                             \
        for (int j_ = 0; j_ < n; j_++) dup_ = dup_ || out[j_] == v_;                                                   \
        if (v_ >= 0 && !dup_ && n < max) out[n++] = v_;                                                                \
    } while (0)
    ADD(ftc_model_config_of(im->model)->eos_token_id);
    ADD(ftc_tokenizer_special(im->tok).eos);
    /* generation_config.json: the model's, else the tokenizer's directory (a run's model/ may lack it) */
    const char *dirs[2] = {im->model_dir, im->tokenizer_dir};
    for (int d = 0; d < 2; d++) {
        char path[8600];
        snprintf(path, sizeof path, "%s/generation_config.json", dirs[d]);
        json_t *o = dirs[d][0] && ftc_file_exists(path) ? ftc_json_load_file(path, 0, NULL) : NULL;
        json_t *e = o ? json_object_get(o, "eos_token_id") : NULL;
        if (json_is_integer(e)) ADD(json_integer_value(e));
        size_t i;
        json_t *v;
        if (json_is_array(e)) json_array_foreach(e, i, v) if (json_is_integer(v)) ADD(json_integer_value(v));
        json_decref(o);
        if (o) break;
    }
#undef ADD
    int V = ftc_model_config_of(im->model)->vocab_size, k = 0;
    for (int j = 0; j < n; j++)
        if (out[j] < V) out[k++] = out[j]; /* ids the model cannot produce never stop it */
    return k;
}

ftc_status ftc_infer_template_stops(const ftc_infer_model *im, const ftc_chat_template *t, int32_t *ids, int *n,
                                    int max, char **stop_text, ftc_err *err) {
    *stop_text = NULL;
    ftc_special_ids sp = ftc_tokenizer_special(im->tok);
    const char *bos = sp.bos >= 0 ? ftc_tokenizer_id_to_token(im->tok, sp.bos) : "";
    const char *eos = sp.eos >= 0 ? ftc_tokenizer_id_to_token(im->tok, sp.eos) : "";
    ftc_render_opts o = {.bos = bos, .eos = eos};
    char *eot = NULL;
    ftc_status s = ftc_chat_template_end_of_turn(t, &o, &eot, err);
    if (s != FTC_OK || !eot) return s;
    ftc_ids tok = {0};
    s = ftc_tokenizer_encode(im->tok, eot, strlen(eot), false, 0, &tok, err);
    int V = ftc_model_config_of(im->model)->vocab_size;
    if (s == FTC_OK && tok.n == 1 && tok.ids[0] < V) {
        bool dup = false;
        for (int j = 0; j < *n; j++) dup = dup || ids[j] == tok.ids[0];
        if (!dup && *n < max) ids[(*n)++] = tok.ids[0];
        free(eot);
    } else if (s == FTC_OK) {
        *stop_text = eot; /* several tokens: matched on the text */
    } else {
        free(eot);
    }
    ftc_ids_free(&tok);
    return s;
}

ftc_status ftc_infer_chat_template(const ftc_infer_model *im, const char *value, ftc_chat_template **out,
                                   const char **why, ftc_err *err) {
    *out = NULL;
    *why = "none";
    if (value && value[0]) {
        *why = "--chat-template";
        return ftc_chat_template_choose(value, im->model_dir, out, err);
    }
    if (im->template_source) {
        *why = "the run's";
        return ftc_chat_template_from_text("the run's chat_template.json", im->template_source,
                                           strlen(im->template_source), out, err);
    }
    if (im->template_name[0] && ftc_chat_template_preset_source(im->template_name)) {
        *why = "the run's";
        return ftc_chat_template_preset(im->template_name, out, err);
    }
    const char *dirs[2] = {im->model_dir, im->tokenizer_dir};
    for (int i = 0; i < 2; i++) {
        if (!dirs[i][0]) continue;
        ftc_status s = ftc_chat_template_from_model_dir(dirs[i], out, err);
        if (s != FTC_OK) return s;
        if (*out) {
            *why = "the model's";
            return FTC_OK;
        }
    }
    return FTC_OK;
}

int ftc_infer_generate_stop_ids(const ftc_infer_model *im, int32_t *out, int max) {
    int n = ftc_infer_stop_ids(im, out, max);
    if (!im->template_source) return n;
    /* a run tuned on chat data: its answers ended with the template's end-of-turn */
    ftc_chat_template *t;
    ftc_err err;
    if (ftc_chat_template_from_text("the run's chat template", im->template_source, strlen(im->template_source), &t,
                                    &err) != FTC_OK)
        return n;
    char *text = NULL;
    ftc_infer_template_stops(im, t, out, &n, max, &text, &err);
    free(text);
    ftc_chat_template_free(t);
    return n;
}

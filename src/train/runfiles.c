/* The run directory as a run writes it: metrics.jsonl, config.resolved.json and labels.json, checkpoint.ftc (and
 * --save-total-limit's older ones), the resume state, the final model/ or adapter/, and whether a run finished. */
#include "train_internal.h"
#include "base/base_internal.h"
#include "ftc/export.h"
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ftc_status ftc_tr_log_json(ftc_tr_run *r, json_t *o, ftc_err *err) {
    if (!r->writer) { /* data parallel: rank 0 writes metrics.jsonl */
        json_decref(o);
        return FTC_OK;
    }
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

static json_t *state_json(const ftc_tr_run *r) {
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
void ftc_tr_remove_step_checkpoints(const char *out) {
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
static void prune_checkpoints(const ftc_tr_run *r) {
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
static ftc_status keep_previous_checkpoint(ftc_tr_run *r, ftc_err *err) {
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
ftc_status ftc_tr_save_checkpoint(ftc_tr_run *r, bool finished, ftc_err *err) {
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

ftc_status ftc_tr_restore(ftc_tr_run *r, ftc_err *err) {
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
    if (!r->writer) return FTC_OK; /* data parallel: rank 0 trims metrics.jsonl */
    return trim_metrics(r->path_metrics, r->step, &r->elapsed_before, err);
}

/* Resolved settings and label map (rewritten on resume: same content). */
ftc_status ftc_tr_write_run_config(ftc_tr_run *r, int epochs, int T, ftc_err *err) {
    const ftc_train_config *c = r->c;
    char path[FTC_PATH_MAX + 32];
    json_t *cfg = ftc_train_config_json(c);
    json_object_set_new(cfg, "epochs", json_integer(epochs));
    json_object_set_new(cfg, "trainable_params", json_integer(ftc_model_count_params(r->m, true)));
    json_object_set_new(cfg, "total_params", json_integer(ftc_model_count_params(r->m, false)));
    json_object_set_new(cfg, "total_steps", json_integer(r->total_steps));
    json_object_set_new(cfg, "warmup_steps", json_integer(r->warmup_steps));
    json_object_set_new(cfg, "steps_per_epoch", json_integer(r->steps_per_epoch));
    /* the memory plan: linear in batch x sequence length (attention keeps no T x T matrix) */
    json_t *mp = json_object();
    int64_t act = ftc_model_activation_bytes(r->m);
    json_object_set_new(mp, "batch", json_integer(c->batch));
    json_object_set_new(mp, "seq_len", json_integer(T));
    json_object_set_new(mp, "grad_checkpoint", json_boolean(c->grad_checkpoint));
    json_object_set_new(mp, "activation_bytes", json_integer(act));
    json_object_set_new(mp, "activation_bytes_per_token", json_integer(act / ((int64_t)c->batch * T)));
    json_object_set_new(mp, "param_bytes", json_integer(ftc_model_param_bytes(r->m)));
    json_object_set_new(cfg, "memory_plan", mp);
    json_object_set_new(cfg, "train_examples", json_integer(r->train->n));
    json_object_set_new(cfg, "val_examples", json_integer(r->val ? r->val->n : 0));
    if (r->dp) json_object_set_new(cfg, "data_parallel_ranks", json_integer(r->dp->size));
    snprintf(path, sizeof path, "%s/config.resolved.json", c->out);
    ftc_status s = ftc_json_save_file(path, cfg, err);
    json_decref(cfg);
    if (s != FTC_OK || c->task != FTC_TASK_CLASSIFY) return s;
    json_t *labels = json_array();
    for (int i = 0; i < r->train->num_labels; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        json_array_append_new(labels, json_string(r->train->label_names ? r->train->label_names[i] : k));
    }
    snprintf(path, sizeof path, "%s/labels.json", c->out);
    s = ftc_json_save_file(path, labels, err);
    json_decref(labels);
    return s;
}

/* The model's files into dir (a staging directory that save_final_model renames into place): exactly what
 * ftc export --format hf writes (one code path, ftc_export_hf_files): config.json with the class transformers
 * computes the model with (a head no class computes, e.g. mean pooling: the bare encoder + "ftc_classifier_head"),
 * id2label from the data's label names, and the base model's tokenizer files, so RUNDIR/model is usable alone. */
static ftc_status write_model_dir(ftc_tr_run *r, const char *dir, ftc_err *err) {
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
ftc_status ftc_tr_save_final_model(ftc_tr_run *r, ftc_err *err) {
    ftc_status s;
    if (r->val && ftc_file_exists(r->path_best)) {
        if ((s = ftc_checkpoint_load(r->path_best, r->m, NULL, NULL, err)) != FTC_OK) return s;
    }
    ftc_tr_at_point(r->c, "final-best");
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
        ftc_tr_at_point(r->c, "final-adapter");
        /* a model/ left by an earlier --save-merged of this run would no longer be this adapter's */
        if (!r->c->save_merged) return ftc_remove_tree(dir, err);
        if ((s = ftc_model_merge_lora(r->m, err)) != FTC_OK) return s;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    if ((s = ftc_remove_tree(tmp, err)) != FTC_OK) return s;
    s = write_model_dir(r, tmp, err);
    if (s == FTC_OK) ftc_tr_at_point(r->c, "final-staged");
    if (s == FTC_OK) s = ftc_dir_replace(tmp, dir, err);
    if (s != FTC_OK) {
        ftc_err ignored;
        ftc_remove_tree(tmp, &ignored);
    }
    return s;
}

/* What save_final_model writes the model as: "model", or a LoRA run's "adapter" (without --save-merged). */
const char *ftc_tr_final_name(const ftc_train_config *c) {
    return c->method == FTC_METHOD_LORA && !c->save_merged ? "adapter" : "model";
}

void ftc_tr_remove_run_temps(const char *out) {
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

/* ftc train: fine-tunes a model (full, head or lora) on task data into a run directory.
 * Settings come from defaults < RUNDIR/config.resolved.json (with --resume) < --config FILE < flags. */
#include "cli.h"
#include "ftc/eval.h"
#include <jansson.h>
#include "ftc/gguf.h"
#include "ftc/hf_config.h"
#include "ftc/base.h"
#include "ftc/matmul.h"
#include "ftc/runlock.h"
#include "ftc/train.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One option's help as the table gives it (ftc_train_options): "  --name ARG", then the text (and its default
 * where the text names none) wrapped at 118 columns in a column of its own. */
static void option_help(FILE *out, const ftc_train_option *o) {
    enum { COL = 30, WIDTH = 118 };
    char head[96], text[1024];
    snprintf(head, sizeof head, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    const char *def = o->def && *o->def && strcmp(o->def, "0") && o->def[0] != '-' && !strstr(o->help, "default")
                          ? o->def : NULL;
    if (def && o->is_bool) def = "true";
    snprintf(text, sizeof text, "%s%s%s%s", o->help, def ? " (default " : "", def ? def : "", def ? ")" : "");
    fprintf(out, "%-*s", COL, head);
    int col = (int)strlen(head) < COL ? COL : WIDTH; /* a long head: the text starts on the next line */
    for (char *w = strtok(text, " \n"); w; w = strtok(NULL, " \n")) {
        int n = (int)strlen(w);
        if (col > COL && col + 1 + n > WIDTH) col = WIDTH;
        if (col >= WIDTH) { fprintf(out, "\n%*s", COL, ""); col = COL; }
        else if (col > COL) { fputc(' ', out); col++; }
        fputs(w, out);
        col += n;
    }
    fputc('\n', out);
}

/* The options come from the settings' table (src/train/runconfig.c), by group; --config, --quiet and --samples
 * are the command line's own. */
static void train_help(FILE *out) {
    static const char *const groups[] = {"What to train", "Data", "Optimisation", "Evaluation, checkpoints, logging"};
    fprintf(out,
        "Usage: ftc train --model DIR --data FILE --out RUNDIR [options]\n\n"
        "Fine-tunes the model in DIR on FILE and writes RUNDIR: config.resolved.json, labels.json (classify),\n"
        "metrics.jsonl, checkpoint.ftc (last), best.ftc (best on validation), model/ (full and head: Hugging Face\n"
        "layout, the best model when there is validation data, else the last), adapter/ (lora: that model's adapter,\n"
        "PEFT layout; no merged copy unless --save-merged: every command that takes RUNDIR loads base + adapter)\n"
        "and for causal-lm\n"
        "samples.jsonl (up to 5 validation prompts, else training ones, answered greedily in up to 64 tokens by\n"
        "the base model before training and by the tuned one after; ftc report shows them). At the end, with\n"
        "validation data: eval.json (model/ and the base model on the validation examples, as ftc eval --compare\n"
        "prints them; the table is printed too) and report.html (ftc report).\n\n");
    for (int g = 0; g < 4; g++) {
        fprintf(out, "%s\n", groups[g]);
        if (g == 2)
            fprintf(out,
        "  Defaults depend on --task and --method (docs/train.md, \"Defaults\"); what you set wins:\n"
        "                   lr     head lr  warmup  batch  epochs (before fitting to the data's size)\n"
        "    classify head  1e-2   -        0       32     4\n"
        "    classify lora  3e-3   1e-2     0.1     32     3\n"
        "    classify full  5e-5   1e-2     0.1     32     3   (+ the head-first stage, below)\n"
        "    causal-lm      at hidden size 768: head 8.5e-4, lora 8.5e-4, full 1.7e-4, scaled by 768/hidden\n"
        "                   (stories260K, 64: 1e-2, 1e-2, 2e-3); warmup 0.1, batch 8, 3 epochs\n");
        for (const ftc_train_option *o = ftc_train_options(); o->name; o++)
            if (!strcmp(o->group, groups[g])) option_help(out, o);
    }
    fprintf(out,
        "  --config FILE               YAML or JSON with the same keys (lr: 2e-5, grad_accum: 4, ...);\n"
        "                              flags on the command line win\n"
        "  --quiet                     no progress output\n"
        "  --samples N (5)             causal-lm: prompts answered in samples.jsonl (0: none, no time spent on them)\n\n"
        "Booleans: --flag, --flag true|false, --no-flag. Options also take --name=VALUE. Names from Hugging Face\n"
        "Trainer and Axolotl work too: --learning-rate, --output-dir, --num-epochs, --per-device-train-batch-size,\n"
        "--gradient-accumulation-steps, --warmup-ratio, --max-seq-length, ... (docs/train.md lists them).\n"
        "A loss that becomes NaN or Inf stops the run (exit 2): the last good checkpoint stays in checkpoint.ftc and is\n"
        "written as RUNDIR/model or RUNDIR/adapter (ftc eval --model RUNDIR; continue: ftc train --out RUNDIR --resume\n"
        "--lr LOWER).\n"
        "SIGINT/SIGTERM (Ctrl-C): the current step finishes, checkpoint.ftc is written, exit 130/143 with the command\n"
        "to resume; a second Ctrl-C stops at once.\n"
        "Data parallel over several processes or machines: mpirun -np N ftc train ... (--batch is the global batch,\n"
        "a multiple of N; docs/distributed.md).\n"
        "Details: docs/train.md\n\n"
        "Examples:\n"
        "  ftc train --model all-MiniLM-L6-v2 --data train.csv --method head --val-split 0.1 --out runs/head\n"
        "  ftc train --model all-MiniLM-L6-v2 --data train.csv --method full --val-split 0.1 --out runs/full\n"
        "  ftc train --model stories260K --data qa.jsonl --method lora --val-split 0.1 --out runs/qa\n"
        "  ftc train --out runs/qa --resume\n");
}

typedef struct { const char *key, *value; } kv;

/* Data parallel (mpirun -np N, src/cli/dp_mpi.c): this rank's name in error messages ("train (rank 2 of 3)"; rank
 * 0 is plain "train"), and whether the last failure happened on every rank alike (the same settings, the same
 * agreed step), so the ranks end together, or on this rank alone (the others would wait: MPI_Abort). */
static char train_cmd[48] = "train";
static bool dp_fail_collective;
static bool dp_is_writer(const ftc_train_dp *dp) { return !ftc_train_dp_active(dp) || dp->rank == 0; }

/* What a finished run's model is: model/, or a LoRA run's adapter/ (no merged copy). */
static const char *final_model_name(const char *out) {
    char p[FTC_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/model/config.json", out);
    return ftc_file_exists(p) ? "model" : "adapter";
}

/* causal-lm sample answers (RUNDIR/samples.jsonl): few and short, so they cost little next to training */
enum { SAMPLE_PROMPTS = 5, SAMPLE_TOKENS = 64 };

/* The command line's table: every setting of src/train/runconfig.c, their aliases, and --config, --quiet. */
static void train_opts(cli_opt *t, int cap) {
    int n = 0;
    for (const ftc_train_option *o = ftc_train_options(); o->name && n < cap - 4; o++) t[n++] = (cli_opt){o->name, o->is_bool, NULL};
    for (const ftc_train_alias *a = ftc_train_aliases(); a->alias && n < cap - 4; a++) {
        bool is_bool = false;
        for (const ftc_train_option *o = ftc_train_options(); o->name; o++)
            if (!strcmp(o->name, a->name)) is_bool = o->is_bool;
        bool bf16 = !strcmp(a->alias, "bf16"); /* a boolean that sets --precision: runconfig.c maps its value */
        t[n++] = (cli_opt){a->alias, is_bool || bf16, bf16 ? NULL : a->name};
    }
    t[n++] = (cli_opt){"config", false, NULL};
    t[n++] = (cli_opt){"quiet", true, NULL};
    t[n++] = (cli_opt){"samples", false, NULL};
    t[n] = (cli_opt){NULL, false, NULL};
}

/* The head stage's settings: the data, the model and how it is read are the full run's; the optimisation is
 * the head method's. */
static void head_stage_config(const ftc_train_config *c, ftc_train_config *h) {
    ftc_train_config_defaults(h);
    memcpy(h->model, c->model, sizeof h->model);
    memcpy(h->data, c->data, sizeof h->data);
    memcpy(h->val, c->val, sizeof h->val);
    h->task = c->task, h->method = FTC_METHOD_HEAD, h->val_split = c->val_split, h->seed = c->seed;
    h->max_len = c->max_len, h->metric = c->metric, h->precision = c->precision, h->log_every = c->log_every;
    h->lr = c->head_lr, h->resume = c->resume, h->stop = c->stop, h->dp = c->dp;
    h->at_point = c->at_point, h->at_point_ctx = c->at_point_ctx;
    memcpy(h->pooling, c->pooling, sizeof h->pooling);
    memcpy(h->format, c->format, sizeof h->format);
    memcpy(h->template_name, c->template_name, sizeof h->template_name);
    memcpy(h->text_col, c->text_col, sizeof h->text_col);
    memcpy(h->label_col, c->label_col, sizeof h->label_col);
}

/* LP-FT (linear probe, then fine-tune; Kumar et al. 2022): a new classification head trained alone on the frozen
 * backbone (the head method's defaults, cached features) into RUNDIR/head-stage, whose model then replaces *m as
 * the start of the full run. A finished head stage is reused (resume); an interrupted one is resumed with --resume. */
static int lp_ft_head_stage(const ftc_train_config *c, ftc_model **m, const ftc_dataset *train, const ftc_dataset *val,
                            bool quiet) {
    ftc_train_config *h = malloc(sizeof *h);
    if (!h) { fprintf(stderr, "ftc train: out of memory\n"); return 3; }
    head_stage_config(c, h);
    ftc_err err;
    ftc_status s = FTC_OK;
    if (snprintf(h->out, sizeof h->out, "%s/head-stage", c->out) >= (int)sizeof h->out)
        s = ftc_errf(&err, FTC_E_USAGE, "--out %s: path too long", c->out);
    /* the whole run's settings go down before the head stage starts, so that a run killed inside it is resumed
     * against them (--resume refuses flags that contradict them); the full stage rewrites the file with its plan */
    char path[FTC_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.resolved.json", c->out);
    if (s == FTC_OK && dp_is_writer(c->dp) && !ftc_file_exists(path) && (s = ftc_mkdirs(c->out, &err)) == FTC_OK)
        s = ftc_train_config_save(c, path, &err);
    if (s == FTC_OK) s = ftc_train_config_finalize(h, &err);
    if (s == FTC_OK) ftc_train_config_fit_data(h, train->n);
    if (s == FTC_OK && !ftc_train_run_finished(h->out, NULL)) {
        if (!quiet)
            fprintf(stderr, "ftc train: LP-FT stage 1: the new head alone (lr %g, %d epochs) -> %s; --no-lp-ft skips it\n",
                    h->lr, h->epochs, h->out);
        ftc_train_result res;
        s = ftc_train_run(*m, h, train, val, quiet, &res, &err);
        if (s == FTC_OK && res.interrupted) { /* SIGINT/SIGTERM: the head stage's checkpoint is written */
            if (dp_is_writer(c->dp))
                fprintf(stderr, "ftc train: stopped during the head stage after step %lld; checkpoint written: "
                                "%s/checkpoint.ftc\nresume with the same command and --resume\n", (long long)res.steps, h->out);
            free(h);
            dp_fail_collective = true; /* data parallel: the ranks agreed on the stop */
            return 128 + (*c->stop ? (int)*c->stop : SIGTERM);
        }
        if (s != FTC_OK && ftc_train_dp_active(c->dp) && (err.code == FTC_E_USAGE || err.code == FTC_E_DIVERGED)) {
            dp_fail_collective = true;
            if (err.code == FTC_E_USAGE)
                ftc_err_prefix(&err, "the LP-FT head stage (the head method's batch %d; --no-lp-ft skips it)", h->batch);
            if (!dp_is_writer(c->dp)) { free(h); return ftc_exit_code(err.code); }
        }
    }
    char dir[FTC_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/model", h->out);
    free(h);
    if (s != FTC_OK) return cli_fail(train_cmd, &err);
    /* the full stage starts from the saved head-stage model (not the object trained in place), so a resumed run
     * starts from exactly the same weights */
    ftc_model *next;
    if ((s = ftc_model_load(dir, FTC_TASK_CLASSIFY, &next, &err)) != FTC_OK) return cli_fail(train_cmd, &err);
    ftc_model_free(*m);
    *m = next;
    if (!quiet) fprintf(stderr, "ftc train: LP-FT stage 2: every weight, from %s\n", dir);
    return 0;
}

/* The model as the run trains it: a frozen bf16 or quantized base is read straight into that form (never held
 * whole in f32). */
static ftc_status load_train_model(const ftc_train_config *c, ftc_model **m, ftc_err *err) {
    return ftc_train_base_qtype(c) >= 0 ? ftc_model_load_quant_base(c->model, c->task, ftc_train_base_qtype(c), m, err)
           : ftc_train_base_from_gguf(c) ? ftc_model_load_gguf_base(c->model, c->task, ftc_train_base_bf16(c), m, err)
           : ftc_train_base_bf16(c)      ? ftc_model_load_bf16_base(c->model, c->task, m, err)
                                         : ftc_model_load(c->model, c->task, m, err);
}

/* SIGINT/SIGTERM: the first asks the trainer (through ftc_train_config.stop) to finish the step and write a
 * checkpoint; a second one stops at once (the default action). */
static volatile sig_atomic_t stop_signal;
static void on_stop_signal(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    static const char msg[] = "\nftc train: stopping after this step to write a checkpoint (Ctrl-C again: stop at once, "
                              "losing the steps since the last checkpoint)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
}

/* FTC_TEST_KILL_AT=POINT[:N] (tests only, tests/cli_train_resume.sh): SIGKILL this process the Nth time (default
 * the first) the run reaches POINT: one of ftc_train_config.at_point's moments, or "final-eval" (the run finished,
 * eval.json not yet written). So a test can stop a run inside an evaluation or the final save, where a kill at a
 * random time rarely lands. */
typedef struct { char point[32]; long n, seen; } kill_at;
static void kill_at_point(void *ctx, const char *point) {
    kill_at *k = ctx;
    if (!strcmp(k->point, point) && ++k->seen == k->n) raise(SIGKILL);
}
static bool kill_at_from_env(kill_at *k, const ftc_train_dp *dp) {
    const char *v = getenv("FTC_TEST_KILL_AT");
    if (!v || !*v) return false;
    /* FTC_TEST_KILL_RANK=R (data parallel): only rank R kills itself */
    const char *kr = getenv("FTC_TEST_KILL_RANK");
    if (kr && *kr && atoi(kr) != (ftc_train_dp_active(dp) ? dp->rank : 0)) return false;
    const char *colon = strchr(v, ':');
    size_t len = colon ? (size_t)(colon - v) : strlen(v);
    if (len >= sizeof k->point) return false;
    memcpy(k->point, v, len);
    k->point[len] = 0;
    k->n = colon ? strtol(colon + 1, NULL, 10) : 1;
    k->seen = 0;
    return k->n >= 1;
}

/* After a run: its model (the best on validation) and the base beside it on the validation examples as
 * RUNDIR/eval.json, then RUNDIR/report.html. Not worth failing a finished run over: a problem is a warning. */
static int final_eval_and_report(const ftc_train_config *c, const ftc_dataset *val, bool quiet) {
    ftc_err err;
    if (c->at_point) c->at_point(c->at_point_ctx, "final-eval");
    char label[FTC_PATH_MAX + 64];
    if (val && c->val[0]) snprintf(label, sizeof label, "validation (%s)", c->val);
    else snprintf(label, sizeof label, "validation (%g%% of %s)", 100.0 * c->val_split, c->data);
    if (val && cli_eval_record(c->out, val, label, !quiet, &err) != FTC_OK)
        fprintf(stderr, "ftc train: warning: no eval.json: %s\n", err.msg);
    if (ftc_report_write(c->out, &err) != FTC_OK) {
        fprintf(stderr, "ftc train: warning: no report.html: %s\n", err.msg);
        return 0;
    }
    if (!quiet) printf("report: %s/report.html\n", c->out);
    return 0;
}

/* A finished run killed before its eval.json was written (the last step of ftc train): the validation examples
 * again (the same split), then eval.json and report.html. */
static int finished_eval_only(const ftc_train_config *c, bool quiet) {
    ftc_model_config mc;
    ftc_err err;
    ftc_dataset train = {0}, val = {0};
    bool have_val = false;
    if (ftc_config_load(c->model, &mc, &err) != FTC_OK) {
        fprintf(stderr, "ftc train: warning: no eval.json: %s\n", err.msg);
        return 0;
    }
    ftc_status s = ftc_train_load_data(c, mc.vocab_size, &train, &val, &have_val, &err);
    ftc_config_free(&mc);
    if (s != FTC_OK) fprintf(stderr, "ftc train: warning: no eval.json: %s\n", err.msg);
    int rc = s == FTC_OK ? final_eval_and_report(c, have_val ? &val : NULL, quiet) : 0;
    ftc_dataset_free(&train);
    ftc_dataset_free(&val);
    return rc;
}

static int train_main(int argc, char **argv, const ftc_train_dp *dp) {
    kv *pairs = calloc((size_t)argc, sizeof *pairs);
    if (!pairs) { fprintf(stderr, "ftc train: out of memory\n"); return 3; }
    ftc_runlock *lock = NULL; /* RUNDIR/train.lock, held from here to the end (include/ftc/runlock.h) */
    int n = 0;
    const char *config_file = NULL, *out = NULL;
    bool resume = false, quiet = false;
    long n_samples = SAMPLE_PROMPTS;
    cli_opt table[160];
    train_opts(table, 160);
    cli_args p;
    cli_args_init(&p, "train", argc, argv, 1, table, 0);
    const char *key, *value;
    int r;
    while ((r = cli_next(&p, &key, &value)) > 0) {
        if (!key) { free(pairs); return cli_usage_error("train", "unexpected argument '%s'", value); }
        if (!strcmp(key, "resume")) { resume = cli_true(value); continue; }
        if (!strcmp(key, "quiet")) { quiet = cli_true(value); continue; }
        if (!strcmp(key, "samples")) {
            if (!cli_parse_long(value, 0, 100, &n_samples)) {
                free(pairs);
                return cli_usage_error("train", "--samples needs an integer from 0 to 100, not '%s'", value);
            }
            continue;
        }
        if (!strcmp(key, "config")) { config_file = value; continue; }
        if (!strcmp(key, "out")) out = value;
        pairs[n++] = (kv){key, value};
    }
    if (r < 0) { free(pairs); return 1; }
    if (!dp_is_writer(dp)) quiet = true; /* data parallel: rank 0 speaks */
    ftc_train_config c;
    ftc_train_config_defaults(&c);
    ftc_err err;
    ftc_status s = FTC_OK;
    int rc = 0;
    ftc_train_config saved; /* the run being resumed, as config.resolved.json records it */
    bool have_saved = false;
    if (resume) {
        if (!out) { rc = cli_usage_error("train", "--resume needs --out RUNDIR (the run to continue)"); goto done; }
        char path[FTC_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/config.resolved.json", out);
        if (ftc_file_exists(path)) {
            if ((s = ftc_train_config_load_resolved(&c, path, &err)) != FTC_OK) { rc = cli_fail("train", &err); goto done; }
            saved = c;
            have_saved = true;
        }
    }
    if (config_file && (s = ftc_train_config_load_file(&c, config_file, &err)) != FTC_OK) { rc = cli_fail("train", &err); goto done; }
    for (int i = 0; i < n; i++)
        if ((s = ftc_train_config_set(&c, pairs[i].key, pairs[i].value, &err)) != FTC_OK) {
            rc = cli_usage_error("train", "%s", err.msg);
            goto done;
        }
    c.resume = resume;
    c.dp = dp;
    if (ftc_is_gguf_path(c.model)) { /* model: X.gguf in a config file: the run records the converted directory */
        char dir[FTC_PATH_MAX];
        if ((s = ftc_gguf_resolve(c.model, dir, sizeof dir, &err)) != FTC_OK) { rc = cli_fail("train", &err); goto done; }
        snprintf(c.model, sizeof c.model, "%s", dir);
    }
    /* the task follows the data unless given */
    const char *task_why = NULL;
    ftc_task sniffed;
    if (!ftc_train_config_is_set(&c, "task") && c.data[0] && ftc_train_task_of_data(&c, &sniffed, &task_why))
        c.task = sniffed;
    if (have_saved && (s = ftc_train_config_resume_conflict(&saved, &c, &err)) != FTC_OK) {
        rc = cli_usage_error("train", "%s", err.msg);
        goto done;
    }
    if ((s = ftc_train_config_finalize(&c, &err)) != FTC_OK) { rc = cli_usage_error("train", "%s", err.msg); goto done; }
    if (ftc_train_dp_active(dp) && c.batch % dp->size) { /* every rank sees the same settings: all stop here */
        if (dp->rank == 0)
            rc = cli_usage_error("train", "--batch %d is not divisible by the %d ranks (mpirun -np %d): each rank takes "
                                 "an equal share of every batch; use a multiple of %d", c.batch, dp->size, dp->size, dp->size);
        rc = 1;
        goto done;
    }
    dp_fail_collective = false; /* from here a failure may be one rank's alone */
    long stale_pid;
    /* data parallel: rank 0 holds the lock and writes RUNDIR; the others only read it */
    if (dp_is_writer(dp) && (s = ftc_runlock_acquire(c.out, &lock, &stale_pid, &err)) != FTC_OK) {
        rc = cli_fail(train_cmd, &err);
        goto done;
    }
    /* every rank has read the saved settings before rank 0 rewrites them */
    if (ftc_train_dp_active(dp) && (s = dp->barrier(dp->ctx, &err)) != FTC_OK) { rc = cli_fail(train_cmd, &err); goto done; }
    if (!dp_is_writer(dp)) stale_pid = 0;
    if (stale_pid && !quiet) fprintf(stderr, "ftc train: %s: took over the lock of pid %ld (no longer running)\n", c.out, stale_pid);
    int64_t done_steps;
    /* a finished run has nothing to do, unless --max-steps or --epochs now ask for a different length */
    bool new_length = have_saved && (c.max_steps != saved.max_steps || c.epochs != saved.epochs);
    if (resume && !new_length && ftc_train_run_finished(c.out, &done_steps)) {
        if (!dp_is_writer(dp)) goto done; /* rank 0 finishes what is left */
        printf("%s: the run already finished (%lld steps); nothing to resume. model: %s/%s\n", c.out,
               (long long)done_steps, c.out, final_model_name(c.out));
        /* killed while writing eval.json or report.html after the last step: no temporaries stay, eval.json and
         * a report are there */
        ftc_remove_stale_temps(c.out);
        char path[FTC_PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/eval.json", c.out);
        if ((c.val[0] || c.val_split > 0) && !ftc_file_exists(path)) {
            rc = finished_eval_only(&c, quiet);
            goto done;
        }
        snprintf(path, sizeof path, "%s/report.html", c.out);
        if (!ftc_file_exists(path) && ftc_report_write(c.out, &err) != FTC_OK)
            fprintf(stderr, "ftc train: warning: no report.html: %s\n", err.msg);
        goto done;
    }

    char ckpt[FTC_PATH_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ftc", c.out);
    char head_ckpt[FTC_PATH_MAX + 32];
    snprintf(head_ckpt, sizeof head_ckpt, "%s/head-stage/checkpoint.ftc", c.out);
    if (!resume && (ftc_file_exists(ckpt) || ftc_file_exists(head_ckpt))) {
        dp_fail_collective = true;
        rc = cli_usage_error("train", "%s already holds a run (%s): use --resume, or another --out", c.out,
                             ftc_file_exists(ckpt) ? "checkpoint.ftc" : "head-stage/checkpoint.ftc");
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c.stop = &stop_signal;
    kill_at test_kill;
    if (kill_at_from_env(&test_kill, dp)) c.at_point = kill_at_point, c.at_point_ctx = &test_kill;
    cli_test_io_fault_from_env();
    ftc_model *m = NULL;
    if ((s = load_train_model(&c, &m, &err)) != FTC_OK) { rc = cli_fail(train_cmd, &err); goto done; }
    if (c.method != FTC_METHOD_FULL) { /* what --base-dtype became: config.resolved.json "base_dtype_resolved" */
        char kept[sizeof c.base_resolved];
        ftc_model_base_storage(m, kept, sizeof kept);
        /* a resumed run goes on from weights trained against the base as it was held then: a base that now
         * resolves otherwise (auto on a GGUF whose types changed) would continue on other values */
        if (have_saved && saved.base_resolved[0] && strcmp(saved.base_resolved, kept)) {
            ftc_model_free(m);
            dp_fail_collective = true;
            ftc_errf(&err, FTC_E_INPUT, "--resume: the base model %s now loads as %s (--base-dtype %s), but the run "
                     "trained on it as %s (%s/config.resolved.json \"base_dtype_resolved\"): resume with the model "
                     "the run started from, or start a new run in another --out", c.model, kept,
                     ftc_base_dtype_name(c.base_dtype), saved.base_resolved, c.out);
            rc = cli_fail(train_cmd, &err);
            goto done;
        }
        snprintf(c.base_resolved, sizeof c.base_resolved, "%s", kept);
        if (!quiet && ftc_train_base_from_gguf(&c)) fprintf(stderr, "ftc train: base: auto -> %s (from the GGUF)\n", kept);
    }
    ftc_dataset train = {0}, val = {0};
    bool have_val;
    if ((s = ftc_train_load_data(&c, ftc_model_config_of(m)->vocab_size, &train, &val, &have_val, &err)) != FTC_OK) {
        ftc_model_free(m);
        rc = cli_fail(train_cmd, &err);
        goto done;
    }
    ftc_train_config_fit_data(&c, train.n);
    ftc_train_config_fit_model(&c, ftc_model_config_of(m)->hidden_size);
    if (!quiet)
        fprintf(stderr, "ftc train: %s%s%s%s, method %s, %d training / %d validation examples, lr %g, batch %d, %d epochs%s -> %s\n",
                ftc_task_name(c.task), task_why ? " (from the data: " : "", task_why ? task_why : "", task_why ? ")" : "",
                ftc_method_name(c.method), train.n, have_val ? val.n : 0, c.lr, c.batch,
                c.epochs, c.max_steps > 0 ? " (--max-steps wins)" : "", c.out);
    /* full fine-tuning of a new classification head: the head alone first (LP-FT), then every weight */
    if (c.task == FTC_TASK_CLASSIFY && c.method == FTC_METHOD_FULL && c.lp_ft && ftc_train_head_is_new(m, train.num_labels) &&
        (rc = lp_ft_head_stage(&c, &m, &train, have_val ? &val : NULL, quiet)) != 0) {
        ftc_dataset_free(&train);
        ftc_dataset_free(&val);
        ftc_model_free(m);
        goto done;
    }
    /* bf16 without AVX512-BF16 or AVX2 runs every bf16 product in the portable loop: correct, but many times slower
     * (AVX2 CPUs run bf16 as an f32 GEMM on bf16-rounded operands, about fp32's speed) */
    if (c.precision == FTC_PREC_BF16 && strcmp(ftc_matmul_bf16_backend(), "generic") == 0)
        fprintf(stderr, "ftc train: warning: --precision bf16 without AVX512-BF16 or AVX2 (this CPU or FTC_MATMUL) uses "
                        "the slow portable bf16 matmul; --precision fp32 is much faster here\n");
    /* causal-lm: a few prompts answered by the base model now, by the tuned one at the end (report.html).
     * Not worth failing a run over: a problem is reported and the run goes on. */
    ftc_samples *samples = NULL;
    if (c.task == FTC_TASK_CAUSAL_LM && n_samples > 0 && dp_is_writer(dp) &&
        ftc_samples_begin(m, c.model, have_val ? &val : &train, (int)n_samples, SAMPLE_TOKENS, &samples, &err) != FTC_OK)
        fprintf(stderr, "ftc train: warning: no samples.jsonl: %s\n", err.msg);
    ftc_train_result res = {0};
    if (stop_signal) { /* asked to stop while loading: nothing trained, nothing to keep */
        fprintf(stderr, "ftc train: stopped by %s before the first step\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
        rc = 128 + stop_signal;
    } else s = ftc_train_run(m, &c, &train, have_val ? &val : NULL, quiet, &res, &err);
    if (s == FTC_OK && res.interrupted) {
        int sig = stop_signal ? stop_signal : SIGTERM; /* data parallel: another rank got the signal */
        if (dp_is_writer(dp))
            fprintf(stderr, "ftc train: stopped by %s after step %lld; checkpoint written: %s/checkpoint.ftc\n"
                            "resume with: ftc train --out %s --resume\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)res.steps, c.out, c.out);
        rc = 128 + sig;
        dp_fail_collective = true;
    }
    if (s == FTC_OK && !rc && c.save_only_model && dp_is_writer(dp)) { /* the head stage's model and checkpoints are not needed now */
        char hs[FTC_PATH_MAX + 32];
        snprintf(hs, sizeof hs, "%s/head-stage", c.out);
        ftc_err ignored;
        if (ftc_is_dir(hs)) ftc_remove_tree(hs, &ignored);
    }
    if (s == FTC_OK && !rc && samples) {
        char path[FTC_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/samples.jsonl", c.out);
        ftc_err serr;
        if (ftc_samples_write(samples, m, path, &serr) != FTC_OK)
            fprintf(stderr, "ftc train: warning: no samples.jsonl: %s\n", serr.msg);
    }
    ftc_samples_free(samples);
    /* data parallel: a stop on the agreed loss (diverged) or the settings (usage) reaches every rank alike */
    if (s != FTC_OK && ftc_train_dp_active(dp) && (err.code == FTC_E_USAGE || err.code == FTC_E_DIVERGED)) {
        dp_fail_collective = true;
        rc = dp_is_writer(dp) ? cli_fail(train_cmd, &err) : ftc_exit_code(err.code);
    } else if (s != FTC_OK) rc = cli_fail(train_cmd, &err);
    else if (!dp_is_writer(dp)) rc = 0; /* rank 0 reports and evaluates */
    else if (!rc) {
        printf("steps %lld, last loss %.4f, trainable params %lld", (long long)res.steps, res.last_loss,
               (long long)res.trainable_params);
        if (have_val) printf(", best %s %.4f at step %lld%s", ftc_metric_name(c.metric), res.best_metric,
                             (long long)res.best_step, res.stopped_early ? " (stopped early)" : "");
        if (c.method == FTC_METHOD_LORA && !c.save_merged)
            printf("\nmodel: %s/adapter (LoRA adapter, PEFT layout; RUNDIR loads as %s + adapter everywhere; merged "
                   "copy: ftc export %s --format hf --out DIR, or train with --save-merged)\n", c.out, c.model, c.out);
        else
            printf("\nmodel: %s/model\n", c.out);
    }
    ftc_dataset_free(&train);
    ftc_model_free(m);
    if (s == FTC_OK && !rc && dp_is_writer(dp)) rc = final_eval_and_report(&c, have_val ? &val : NULL, quiet);
    ftc_dataset_free(&val);
done:
    ftc_runlock_release(lock);
    free(pairs);
    return rc;
}

int cmd_train(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { train_help(stdout); return 0; }
    const ftc_train_dp *dp;
    int rc = cli_dp_begin(&dp);
    if (rc) return rc;
    if (ftc_train_dp_active(dp) && dp->rank > 0) snprintf(train_cmd, sizeof train_cmd, "train (rank %d of %d)", dp->rank, dp->size);
    dp_fail_collective = true; /* until the settings are read, every rank fails alike */
    rc = train_main(argc, argv, dp);
    if (rc && ftc_train_dp_active(dp) && !dp_fail_collective) cli_dp_abort(rc); /* the others would wait for this one */
    cli_dp_end();
    return rc;
}

/* ---- ftc plan: what `ftc train` with the same flags will need, before it runs ---- */

static void plan_help(FILE *out) {
    fprintf(out,
        "Usage: ftc plan --model DIR --data FILE [ftc train options] [--json] [--measure-steps N]\n\n"
        "Says what `ftc train` with the same options will need before it runs: parameters (total and trainable),\n"
        "peak memory (the process with the model and data loaded, gradients, AdamW moments, activations for the\n"
        "batch x sequence length, the feature cache; with and without --grad-checkpoint) against the memory\n"
        "available, the examples, tokens, epochs, steps and evaluations, and the wall time estimated from a few\n"
        "measured steps (the first is a warm-up): setup + feature cache + steps x step time + evaluations.\n"
        "For --method full on a new classification head, the automatic head-first stage (LP-FT) is planned too.\n"
        "Nothing is written: --out and --resume are not used (the timing run works in a temporary directory).\n"
        "ftc train itself refuses (exit 2) a run whose peak does not fit in the available memory, naming the\n"
        "figures, unless --no-memory-check.\n\n"
        "  --measure-steps N   steps to time after the warm-up (default 3; 0: memory and counts only)\n"
        "  --json              one JSON object (bytes, seconds)\n\n"
        "Details: docs/train.md, \"Planning a run\".\n\n"
        "Examples:\n"
        "  ftc plan --model all-MiniLM-L6-v2 --data train.csv --method full --val-split 0.1\n"
        "  ftc plan --model SmolLM2-135M-Instruct.Q4_1.gguf --data chats.jsonl --method lora --json\n");
}

static double mib(int64_t b) { return (double)b / 1048576.0; }

static void print_duration(double s) {
    if (s < 60) printf("%.0f s", s);
    else if (s < 3600) printf("%d min %02d s", (int)(s / 60), (int)s % 60);
    else printf("%d h %02d min", (int)(s / 3600), ((int)s % 3600) / 60);
}

/* The estimated wall time of a stage from its timing run. */
static double stage_seconds(const ftc_train_plan *p) {
    return p->setup_seconds + p->feature_seconds + (double)p->total_steps * p->step_seconds +
           (double)p->evaluations * p->eval_seconds;
}

static json_t *plan_json(const ftc_train_plan *p) {
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:i, s:i,"
                     " s:f, s:f, s:f, s:f, s:i, s:I, s:f}",
                     "total_params", (json_int_t)p->total_params, "trainable_params", (json_int_t)p->trainable_params,
                     "weight_bytes", (json_int_t)p->weight_bytes, "grad_bytes", (json_int_t)p->grad_bytes,
                     "optimizer_bytes", (json_int_t)p->optimizer_bytes, "activation_bytes",
                     (json_int_t)p->activation_bytes, "activation_bytes_grad_checkpoint_toggled",
                     (json_int_t)p->activation_bytes_other, "feature_cache_bytes", (json_int_t)p->feature_cache_bytes,
                     "process_bytes", (json_int_t)p->base_rss_bytes, "peak_bytes", (json_int_t)p->peak_bytes,
                     "available_bytes", (json_int_t)(p->available_bytes + p->base_rss_bytes), "batch", p->batch,
                     "seq_len", p->seq_len, "tokens_per_epoch", (json_int_t)p->tokens_per_epoch, "total_steps",
                     (json_int_t)p->total_steps, "steps_per_epoch", (json_int_t)p->steps_per_epoch, "warmup_steps",
                     (json_int_t)p->warmup_steps, "epochs", p->epochs, "evaluations", p->evaluations,
                     "setup_seconds", p->setup_seconds, "feature_seconds", p->feature_seconds, "step_seconds",
                     p->step_seconds, "eval_seconds", p->eval_seconds, "measured_steps", p->measured_steps,
                     "measured_peak_rss", (json_int_t)p->measured_peak_rss, "seconds", stage_seconds(p));
}

static void print_stage(const char *name, const ftc_train_config *c, const ftc_train_plan *p, bool grad_ckpt) {
    printf("%s: method %s, lr %g, ", name, ftc_method_name(c->method), c->lr);
    /* R-Drop runs each example twice: the activations and step time below are for 2 x batch rows */
    if (c->task == FTC_TASK_CLASSIFY && c->rdrop > 0) printf("R-Drop %g (each example twice), ", c->rdrop);
    printf("batch %d x %d tokens, %d epochs, %lld steps (%lld per epoch), %d evaluations\n", p->batch, p->seq_len,
           p->epochs, (long long)p->total_steps, (long long)p->steps_per_epoch, p->evaluations);
    printf("  parameters  %lld total, %lld trainable (%.2f%%)\n", (long long)p->total_params,
           (long long)p->trainable_params, 100.0 * (double)p->trainable_params / (double)p->total_params);
    printf("  memory      weights %.1f MiB, gradients %.1f MiB, AdamW %.1f MiB, activations %.1f MiB", mib(p->weight_bytes),
           mib(p->grad_bytes), mib(p->optimizer_bytes), mib(p->activation_bytes));
    if (p->feature_cache_bytes) printf(", feature cache %.1f MiB", mib(p->feature_cache_bytes));
    printf("\n  peak        %.1f MiB (the process with model and data: %.1f MiB)", mib(p->peak_bytes), mib(p->base_rss_bytes));
    if (p->activation_bytes_other)
        printf("; %s --grad-checkpoint: %.1f MiB", grad_ckpt ? "without" : "with",
               mib(p->peak_bytes - p->activation_bytes + p->activation_bytes_other));
    printf("\n");
    if (p->measured_steps > 0) {
        printf("  time        step %.3f s (median of %d after a warm-up)", p->step_seconds, p->measured_steps);
        if (p->feature_seconds > 0) printf(", feature cache %.1f s", p->feature_seconds);
        if (p->evaluations) printf(", evaluation %.1f s each", p->eval_seconds);
        printf(", setup %.1f s: about ", p->setup_seconds);
        print_duration(stage_seconds(p));
        printf("\n");
    }
}

/* Seconds per greedily decoded token on m: a 16-token prompt from ex, then 8 tokens, one at a time. */
static ftc_status time_decode(ftc_model *m, const ftc_example *ex, double *per_token, ftc_err *err) {
    ftc_kv_cache *kv = NULL;
    int V = ftc_model_config_of(m)->vocab_size, n_prompt = ex->len < 16 ? ex->len : 16;
    float *logits = malloc((size_t)V * sizeof *logits);
    ftc_status s = logits ? ftc_kv_cache_create(m, n_prompt + 16, &kv, err) : ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) s = ftc_model_decode(m, kv, ex->ids, n_prompt, logits, false, err);
    double t0 = ftc_now();
    int32_t id = ex->ids[0];
    for (int i = 0; s == FTC_OK && i < 8; i++) s = ftc_model_decode(m, kv, &id, 1, logits, false, err);
    *per_token = (ftc_now() - t0) / 8;
    ftc_kv_cache_free(kv);
    free(logits);
    return s;
}

int cmd_plan(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { plan_help(stdout); return 0; }
    kv *pairs = calloc((size_t)argc + 1, sizeof *pairs);
    if (!pairs) { fprintf(stderr, "ftc plan: out of memory\n"); return 3; }
    int n = 0, rc = 0;
    long steps = 3;
    const char *config_file = NULL;
    bool as_json = false;
    cli_opt table[164];
    train_opts(table, 160);
    int t = 0;
    while (table[t].name) t++;
    table[t++] = (cli_opt){"json", true, NULL};
    table[t++] = (cli_opt){"measure-steps", false, NULL};
    table[t] = (cli_opt){NULL, false, NULL};
    cli_args p;
    cli_args_init(&p, "plan", argc, argv, 1, table, 0);
    const char *key, *value;
    int r;
    while ((r = cli_next(&p, &key, &value)) > 0) {
        if (!key) { free(pairs); return cli_usage_error("plan", "unexpected argument '%s'", value); }
        if (!strcmp(key, "json")) { as_json = cli_true(value); continue; }
        if (!strcmp(key, "measure-steps")) {
            if (!cli_parse_long(value, 0, 1000, &steps)) { free(pairs); return cli_usage_error("plan", "--measure-steps needs an integer from 0 to 1000"); }
            continue;
        }
        if (!strcmp(key, "config")) { config_file = value; continue; }
        if (!strcmp(key, "quiet") || !strcmp(key, "resume") || !strcmp(key, "out")) continue; /* plan writes nothing */
        pairs[n++] = (kv){key, value};
    }
    if (r < 0) { free(pairs); return 1; }
    ftc_train_config c, h;
    ftc_train_config_defaults(&c);
    ftc_err err;
    ftc_status s = FTC_OK;
    ftc_model *m = NULL;
    ftc_dataset train = {0}, val = {0};
    bool have_val = false;
    char tmp[] = "/tmp/ftc-plan.XXXXXX";
    if (!mkdtemp(tmp)) { free(pairs); ftc_errf(&err, FTC_E_IO, "cannot create a temporary directory in /tmp"); return cli_fail("plan", &err); }
    if (config_file && (s = ftc_train_config_load_file(&c, config_file, &err)) != FTC_OK) { rc = cli_fail("plan", &err); goto done; }
    for (int i = 0; i < n; i++)
        if ((s = ftc_train_config_set(&c, pairs[i].key, pairs[i].value, &err)) != FTC_OK) {
            rc = cli_usage_error("plan", "%s", err.msg);
            goto done;
        }
    snprintf(c.out, sizeof c.out, "%s/run", tmp);
    if (ftc_is_gguf_path(c.model)) {
        char dir[FTC_PATH_MAX];
        if ((s = ftc_gguf_resolve(c.model, dir, sizeof dir, &err)) != FTC_OK) { rc = cli_fail("plan", &err); goto done; }
        snprintf(c.model, sizeof c.model, "%s", dir);
    }
    const char *task_why = NULL;
    ftc_task sniffed;
    if (!ftc_train_config_is_set(&c, "task") && c.data[0] && ftc_train_task_of_data(&c, &sniffed, &task_why))
        c.task = sniffed;
    if ((s = ftc_train_config_finalize(&c, &err)) != FTC_OK) { rc = cli_usage_error("plan", "%s", err.msg); goto done; }
    c.measure_steps = (int)steps;
    double t_load = ftc_now();
    if ((s = load_train_model(&c, &m, &err)) != FTC_OK ||
        (s = ftc_train_load_data(&c, ftc_model_config_of(m)->vocab_size, &train, &val, &have_val, &err)) != FTC_OK) {
        rc = cli_fail("plan", &err);
        goto done;
    }
    double load_seconds = ftc_now() - t_load;
    ftc_train_config_fit_data(&c, train.n);
    ftc_train_config_fit_model(&c, ftc_model_config_of(m)->hidden_size);
    bool lp_ft = c.task == FTC_TASK_CLASSIFY && c.method == FTC_METHOD_FULL && c.lp_ft &&
                 ftc_train_head_is_new(m, train.num_labels);
    ftc_train_result head_res = {0}, res = {0};
    if (lp_ft) { /* the head stage: a head method run on the same data, then the full run from its model */
        head_stage_config(&c, &h);
        snprintf(h.out, sizeof h.out, "%s/head", tmp);
        h.measure_steps = (int)steps;
        if ((s = ftc_train_config_finalize(&h, &err)) == FTC_OK) {
            ftc_train_config_fit_data(&h, train.n);
            s = ftc_train_run(m, &h, &train, have_val ? &val : NULL, true, &head_res, &err);
        }
        ftc_model_free(m);
        m = NULL;
        if (s == FTC_OK) s = load_train_model(&c, &m, &err); /* the full stage starts from an unprepared model */
        if (s != FTC_OK) { rc = cli_fail("plan", &err); goto done; }
    }
    if ((s = ftc_train_run(m, &c, &train, have_val ? &val : NULL, true, &res, &err)) != FTC_OK) {
        rc = cli_fail("plan", &err);
        goto done;
    }
    /* causal-lm runs answer a few prompts greedily before and after training (samples.jsonl): decoding is
     * memory-bound, so time a few tokens of it rather than guess from the training step */
    double samples_seconds = 0;
    if (c.task == FTC_TASK_CAUSAL_LM && steps > 0 && res.plan.fits) {
        double per_token;
        if ((s = time_decode(m, &train.ex[0], &per_token, &err)) != FTC_OK) { rc = cli_fail("plan", &err); goto done; }
        int prompts = train.n < SAMPLE_PROMPTS ? train.n : SAMPLE_PROMPTS;
        samples_seconds = 2.0 * prompts * (SAMPLE_TOKENS + 16) * per_token;
    }
    /* the end: the run's model and its base on the validation examples (eval.json) */
    double final_eval = have_val ? 2 * res.plan.eval_seconds : 0;
    double total = load_seconds + samples_seconds + final_eval + stage_seconds(&res.plan) + (lp_ft ? stage_seconds(&head_res.plan) : 0);
    if (as_json) {
        json_t *o = plan_json(&res.plan);
        json_object_set_new(o, "task", json_string(ftc_task_name(c.task)));
        json_object_set_new(o, "method", json_string(ftc_method_name(c.method)));
        json_object_set_new(o, "train_examples", json_integer(train.n));
        json_object_set_new(o, "val_examples", json_integer(have_val ? val.n : 0));
        if (lp_ft) json_object_set_new(o, "head_stage", plan_json(&head_res.plan));
        json_object_set_new(o, "fits", json_boolean(res.plan.fits && (!lp_ft || head_res.plan.fits)));
        json_object_set_new(o, "load_seconds", json_real(load_seconds));
        json_object_set_new(o, "samples_seconds", json_real(samples_seconds));
        json_object_set_new(o, "total_seconds", json_real(total));
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        printf("%s\n", text ? text : "null");
        free(text);
        json_decref(o);
    } else {
        printf("ftc plan: %s%s%s%s, %d training / %d validation examples, %lld tokens per epoch (cut at %d)\n",
               ftc_task_name(c.task), task_why ? " (from the data: " : "", task_why ? task_why : "", task_why ? ")" : "",
               train.n, have_val ? val.n : 0, (long long)res.plan.tokens_per_epoch, res.plan.seq_len);
        if (lp_ft) print_stage("head stage (LP-FT)", &h, &head_res.plan, h.grad_checkpoint);
        print_stage(lp_ft ? "full stage" : "run", &c, &res.plan, c.grad_checkpoint);
        bool fits = res.plan.fits && (!lp_ft || head_res.plan.fits);
        printf("available   %.1f MiB: %s\n", mib(res.plan.available_bytes + res.plan.base_rss_bytes),
               fits ? "fits" : "does NOT fit: ftc train refuses it (exit 2) unless --no-memory-check");
        if (steps > 0 && fits) {
            printf("estimate    about ");
            print_duration(total);
            printf(" (loading %.1f s", load_seconds);
            if (samples_seconds > 0) printf(", sample answers before and after %.1f s", samples_seconds);
            printf("; this machine, at its load now)\n");
        }
    }
done:
    ftc_dataset_free(&train);
    ftc_dataset_free(&val);
    ftc_model_free(m);
    ftc_remove_tree(tmp, &err);
    free(pairs);
    return rc;
}

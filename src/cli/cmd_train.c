/* ftc train: fine-tunes a model (full, head or lora) on task data into a run directory.
 * Settings come from defaults < RUNDIR/config.resolved.json (with --resume) < --config FILE < flags. */
#include "cli.h"
#include "ftc/eval.h"
#include "ftc/gguf.h"
#include "ftc/base.h"
#include "ftc/matmul.h"
#include "ftc/train.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void train_help(FILE *out) {
    fprintf(out,
        "Usage: ftc train --model DIR --data FILE --out RUNDIR [options]\n\n"
        "Fine-tunes the model in DIR on FILE and writes RUNDIR: config.resolved.json, labels.json (classify),\n"
        "metrics.jsonl, checkpoint.ftc (last), best.ftc (best on validation), model/ (Hugging Face layout,\n"
        "the best model when there is validation data, else the last; LoRA adapters merged), adapter/ (LoRA: the\n"
        "adapter alone, PEFT layout, for --adapter or PEFT) and for causal-lm\n"
        "samples.jsonl (up to 5 validation prompts, else training ones, answered greedily in up to 64 tokens by\n"
        "the base model before training and by the tuned one after; ftc report shows them). At the end, with\n"
        "validation data: eval.json (model/ and the base model on the validation examples, as ftc eval --compare\n"
        "prints them; the table is printed too) and report.html (ftc report).\n\n"
        "What to train\n"
        "  --task causal-lm|classify   next-token loss on trainable tokens, or a label per example (default: from the\n"
        "                              data: labelled records classify; text, prompt/completion, chat: causal-lm)\n"
        "  --method full|head|lora     full: every weight; head: the new classification head (+ last N blocks),\n"
        "                              for causal-lm the last N blocks and the final norm; lora: adapters (+ head).\n"
        "                              Default: full\n"
        "  --unfreeze-last N           head: also train the last N transformer blocks (causal-lm default 1)\n"
        "  --no-feature-cache          head on a frozen backbone: by default the encoder runs once per example (eval\n"
        "                              mode, no backbone dropout) and the head trains on the cached features;\n"
        "                              with --no-feature-cache the encoder runs every step in training mode\n"
        "  --grad-checkpoint           recompute each block in backward instead of storing its activations\n"
        "                              (same gradients; less memory, about a third more compute)\n"
        "  --pooling auto|cls|mean|last  classify: what the head reads (auto: the checkpoint's sentence-\n"
        "                              transformers pooling if any, else CLS+pooler for BERT, last token for decoders)\n"
        "  --lora-r R (8) --lora-alpha A (16) --lora-dropout P (0)\n"
        "  --lora-targets LIST         HF module names: q_proj,v_proj | c_attn | query,value | all-linear\n"
        "                              (default: the family's attention query/value projections)\n"
        "Data\n"
        "  --data FILE                 training data: JSONL / CSV / TSV / TXT as `ftc data check` reads it\n"
        "                              ({\"text\",\"label\"}, {\"prompt\",\"completion\"}, {\"messages\"}, {\"text\"}),\n"
        "                              or pre-tokenized JSONL ({\"input_ids\": [..], \"label\"|\"labels\": ..})\n"
        "  --format F                  text | completion | chat | label (default: detected)\n"
        "  --chat-template T           chat template: a preset (chatml, llama3, llama2, zephyr, plain) or a .jinja\n"
        "                              file (default: the model's tokenizer_config.json)\n"
        "  --text-col C --label-col C  CSV/TSV columns\n"
        "  --train-on-inputs           causal-lm: also train prompt/user tokens (default: answers only)\n"
        "  --pack                      causal-lm: pack examples into --max-len sequences\n"
        "  --val FILE | --val-split F  validation data, or a seeded share F of --data (e.g. 0.1)\n"
        "  --max-len N (128)           longer examples are truncated\n"
        "Optimisation\n"
        "  Defaults depend on --task and --method (docs/train.md, \"Defaults\"); what you set wins:\n"
        "                   lr     head lr  warmup  batch  epochs (before fitting to the data's size)\n"
        "    classify head  1e-2   -        0       32     4\n"
        "    classify lora  3e-3   1e-2     0.1     32     3\n"
        "    classify full  5e-5   1e-2     0.1     32     3   (+ the head-first stage, below)\n"
        "    causal-lm      at hidden size 768: head 8.5e-4, lora 8.5e-4, full 1.7e-4, scaled by 768/hidden\n"
        "                   (stories260K, 64: 1e-2, 1e-2, 2e-3); warmup 0.1, batch 8, 3 epochs\n"
        "  --epochs N | --max-steps N  length of the run (max-steps wins). Without --epochs: the method's count,\n"
        "                              more (up to 25) until the run has 100 optimizer steps, fewer (down to 1)\n"
        "                              so it sees at most 30,000 examples\n"
        "  --lr X  --batch N  --grad-accum N (1)   effective batch = batch x grad-accum\n"
        "  --head-lr X                 a new classification head's rate under lora and full\n"
        "  --no-lp-ft                  full on classify with a new head: skip the head-first stage (LP-FT:\n"
        "                              the head alone at --head-lr into RUNDIR/head-stage, then every weight)\n"
        "  --warmup N|F                linear warmup over N steps, or over share F < 1 of all steps\n"
        "  --schedule linear|cosine|constant (linear)   after warmup\n"
        "  --weight-decay X (0.01)     AdamW, not applied to biases, norms and embeddings\n"
        "  --clip X (1.0)              global gradient-norm clipping (0: off)\n"
        "  --beta1 (0.9) --beta2 (0.999) --adam-eps (1e-8)\n"
        "  --seed N (42)               data order, head and adapter init: same seed, same result\n"
        "  --precision fp32|bf16 (fp32)  bf16: matmuls of linears and heads take bf16 operands (f32 accumulation);\n"
        "                              master weights, gradients, AdamW state, norms and loss stay f32\n"
        "  --base-dtype auto|fp32|bf16|q8_0|q4_0|q4_1|q4_k|nf4 (auto)  lora/head: frozen base weights stored in bf16\n"
        "                              (half the memory, bf16 matmuls) or block-quantized (q8_0 about 0.27x f32,\n"
        "                              q4_* 0.14-0.16x; fused matmuls on the blocks); auto: bf16 when --precision bf16\n"
        "Evaluation, checkpoints, logging\n"
        "  --eval-every N (0)          validate every N steps (0: only at epoch ends; always at each epoch end)\n"
        "  --metric val_loss|accuracy|macro_f1 (val_loss)   what 'best' means\n"
        "  --patience N (0)            stop after N evaluations without improvement (0: never)\n"
        "  --save-every N (0)          checkpoint every N steps (0: only at epoch ends and the end; always there)\n"
        "  --log-every N (10)          a metrics.jsonl line every N steps\n"
        "  --config FILE               YAML or JSON with the same keys (lr: 2e-5, grad_accum: 4, ...);\n"
        "                              flags on the command line win\n"
        "  --resume                    continue RUNDIR from its last checkpoint (bit-identical to an\n"
        "                              uninterrupted run with the same thread count) with its saved settings;\n"
        "                              a flag that contradicts them is refused (--lr, --save-every, --max-steps,\n"
        "                              --epochs may change); a finished run: nothing to do\n"
        "  --quiet                     no progress output\n\n"
        "Booleans: --flag, --flag true|false, --no-flag. Options also take --name=VALUE. Names from Hugging Face\n"
        "Trainer and Axolotl work too: --learning-rate, --output-dir, --num-epochs, --per-device-train-batch-size,\n"
        "--gradient-accumulation-steps, --warmup-ratio, --max-seq-length, ... (docs/train.md lists them).\n"
        "A loss that becomes NaN or Inf stops the run (exit 2): the last good checkpoint stays in checkpoint.ftc and is\n"
        "written as RUNDIR/model (ftc eval --model RUNDIR; continue: ftc train --out RUNDIR --resume --lr LOWER).\n"
        "SIGINT/SIGTERM (Ctrl-C): the current step finishes, checkpoint.ftc is written, exit 130/143 with the command\n"
        "to resume; a second Ctrl-C stops at once.\n"
        "Details: docs/train.md\n\n"
        "Examples:\n"
        "  ftc train --model all-MiniLM-L6-v2 --data train.csv --method head --val-split 0.1 --out runs/head\n"
        "  ftc train --model all-MiniLM-L6-v2 --data train.csv --method full --val-split 0.1 --out runs/full\n"
        "  ftc train --model stories260K --data qa.jsonl --method lora --val-split 0.1 --out runs/qa\n"
        "  ftc train --out runs/qa --resume\n");
}

typedef struct { const char *key, *value; } kv;

/* causal-lm sample answers (RUNDIR/samples.jsonl): few and short, so they cost little next to training */
enum { SAMPLE_PROMPTS = 5, SAMPLE_TOKENS = 64 };

/* The command line's table: every setting of src/train/runconfig.c, their aliases, and --config, --quiet. */
static void train_opts(cli_opt *t, int cap) {
    int n = 0;
    for (const ftc_train_option *o = ftc_train_options(); o->name && n < cap - 3; o++) t[n++] = (cli_opt){o->name, o->is_bool, NULL};
    for (const ftc_train_alias *a = ftc_train_aliases(); a->alias && n < cap - 3; a++) {
        bool is_bool = false;
        for (const ftc_train_option *o = ftc_train_options(); o->name; o++)
            if (!strcmp(o->name, a->name)) is_bool = o->is_bool;
        bool bf16 = !strcmp(a->alias, "bf16"); /* a boolean that sets --precision: runconfig.c maps its value */
        t[n++] = (cli_opt){a->alias, is_bool || bf16, bf16 ? NULL : a->name};
    }
    t[n++] = (cli_opt){"config", false, NULL};
    t[n++] = (cli_opt){"quiet", true, NULL};
    t[n] = (cli_opt){NULL, false, NULL};
}

/* LP-FT (linear probe, then fine-tune; Kumar et al. 2022): a new classification head trained alone on the frozen
 * backbone (the head method's defaults, cached features) into RUNDIR/head-stage, whose model then replaces *m as
 * the start of the full run. A finished head stage is reused (resume); an interrupted one is resumed with --resume. */
static int lp_ft_head_stage(const ftc_train_config *c, ftc_model **m, const ftc_dataset *train, const ftc_dataset *val,
                            bool quiet) {
    ftc_train_config *h = malloc(sizeof *h);
    if (!h) { fprintf(stderr, "ftc train: out of memory\n"); return 3; }
    ftc_train_config_defaults(h);
    ftc_err err;
    ftc_status s = FTC_OK;
    /* the data, the model and how it is read are the full run's; the optimisation is the head method's */
    memcpy(h->model, c->model, sizeof h->model);
    memcpy(h->data, c->data, sizeof h->data);
    memcpy(h->val, c->val, sizeof h->val);
    h->task = c->task, h->method = FTC_METHOD_HEAD, h->val_split = c->val_split, h->seed = c->seed;
    h->max_len = c->max_len, h->metric = c->metric, h->precision = c->precision, h->log_every = c->log_every;
    h->lr = c->head_lr, h->resume = c->resume, h->stop = c->stop;
    memcpy(h->pooling, c->pooling, sizeof h->pooling);
    memcpy(h->format, c->format, sizeof h->format);
    memcpy(h->template_name, c->template_name, sizeof h->template_name);
    memcpy(h->text_col, c->text_col, sizeof h->text_col);
    memcpy(h->label_col, c->label_col, sizeof h->label_col);
    if (snprintf(h->out, sizeof h->out, "%s/head-stage", c->out) >= (int)sizeof h->out)
        s = ftc_errf(&err, FTC_E_USAGE, "--out %s: path too long", c->out);
    if (s == FTC_OK) s = ftc_train_config_finalize(h, &err);
    if (s == FTC_OK) ftc_train_config_fit_data(h, train->n);
    if (s == FTC_OK && !ftc_train_run_finished(h->out, NULL)) {
        if (!quiet)
            fprintf(stderr, "ftc train: LP-FT stage 1: the new head alone (lr %g, %d epochs) -> %s; --no-lp-ft skips it\n",
                    h->lr, h->epochs, h->out);
        ftc_train_result res;
        s = ftc_train_run(*m, h, train, val, quiet, &res, &err);
        if (s == FTC_OK && res.interrupted) { /* SIGINT/SIGTERM: the head stage's checkpoint is written */
            fprintf(stderr, "ftc train: stopped during the head stage after step %lld; checkpoint written: %s/checkpoint.ftc\n"
                            "resume with the same command and --resume\n", (long long)res.steps, h->out);
            free(h);
            return 128 + (int)*c->stop;
        }
    }
    char dir[FTC_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/model", h->out);
    free(h);
    if (s != FTC_OK) return cli_fail("train", &err);
    /* the full stage starts from the saved head-stage model (not the object trained in place), so a resumed run
     * starts from exactly the same weights */
    ftc_model *next;
    if ((s = ftc_model_load(dir, FTC_TASK_CLASSIFY, &next, &err)) != FTC_OK) return cli_fail("train", &err);
    ftc_model_free(*m);
    *m = next;
    if (!quiet) fprintf(stderr, "ftc train: LP-FT stage 2: every weight, from %s\n", dir);
    return 0;
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

/* After a run: its model (the best on validation) and the base beside it on the validation examples as
 * RUNDIR/eval.json, then RUNDIR/report.html. Not worth failing a finished run over: a problem is a warning. */
static int final_eval_and_report(const ftc_train_config *c, const ftc_dataset *val, bool quiet) {
    ftc_err err;
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

int cmd_train(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { train_help(stdout); return 0; }
    kv *pairs = calloc((size_t)argc, sizeof *pairs);
    int n = 0;
    const char *config_file = NULL, *out = NULL;
    bool resume = false, quiet = false;
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
        if (!strcmp(key, "config")) { config_file = value; continue; }
        if (!strcmp(key, "out")) out = value;
        pairs[n++] = (kv){key, value};
    }
    if (r < 0) { free(pairs); return 1; }
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
    int64_t done_steps;
    /* a finished run has nothing to do, unless --max-steps or --epochs now ask for a different length */
    bool new_length = have_saved && (c.max_steps != saved.max_steps || c.epochs != saved.epochs);
    if (resume && !new_length && ftc_train_run_finished(c.out, &done_steps)) {
        printf("%s: the run already finished (%lld steps); nothing to resume. model: %s/model\n", c.out,
               (long long)done_steps, c.out);
        /* killed while writing eval.json or report.html after the last step: no temporaries stay, a report is there */
        ftc_remove_stale_temps(c.out);
        char report[FTC_PATH_MAX + 16];
        snprintf(report, sizeof report, "%s/report.html", c.out);
        if (!ftc_file_exists(report) && ftc_report_write(c.out, &err) != FTC_OK)
            fprintf(stderr, "ftc train: warning: no report.html: %s\n", err.msg);
        goto done;
    }

    char ckpt[FTC_PATH_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ftc", c.out);
    if (!resume && ftc_file_exists(ckpt)) {
        rc = cli_usage_error("train", "%s already holds a run (checkpoint.ftc): use --resume, or another --out", c.out);
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c.stop = &stop_signal;
    ftc_model *m = NULL;
    /* a frozen bf16 base is read straight into bf16: it is never held in f32 */
    s = ftc_train_base_qtype(&c) >= 0 ? ftc_model_load_quant_base(c.model, c.task, ftc_train_base_qtype(&c), &m, &err)
        : ftc_train_base_bf16(&c)     ? ftc_model_load_bf16_base(c.model, c.task, &m, &err)
                                      : ftc_model_load(c.model, c.task, &m, &err);
    if (s != FTC_OK) { rc = cli_fail("train", &err); goto done; }
    ftc_dataset train = {0}, val = {0};
    bool have_val;
    if ((s = ftc_train_load_data(&c, ftc_model_config_of(m)->vocab_size, &train, &val, &have_val, &err)) != FTC_OK) {
        ftc_model_free(m);
        rc = cli_fail("train", &err);
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
    /* bf16 without AVX512-BF16 runs every bf16 product in the portable loop: correct, but many times slower */
    if (c.precision == FTC_PREC_BF16 && strcmp(ftc_matmul_bf16_backend(), "avx512bf16") != 0)
        fprintf(stderr, "ftc train: warning: --precision bf16 without AVX512-BF16 (this CPU or FTC_MATMUL) uses the "
                        "slow portable bf16 matmul; --precision fp32 is much faster here\n");
    /* causal-lm: a few prompts answered by the base model now, by the tuned one at the end (report.html).
     * Not worth failing a run over: a problem is reported and the run goes on. */
    ftc_samples *samples = NULL;
    if (c.task == FTC_TASK_CAUSAL_LM &&
        ftc_samples_begin(m, c.model, have_val ? &val : &train, SAMPLE_PROMPTS, SAMPLE_TOKENS, &samples, &err) != FTC_OK)
        fprintf(stderr, "ftc train: warning: no samples.jsonl: %s\n", err.msg);
    ftc_train_result res = {0};
    if (stop_signal) { /* asked to stop while loading: nothing trained, nothing to keep */
        fprintf(stderr, "ftc train: stopped by %s before the first step\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
        rc = 128 + stop_signal;
    } else s = ftc_train_run(m, &c, &train, have_val ? &val : NULL, quiet, &res, &err);
    if (s == FTC_OK && res.interrupted) {
        fprintf(stderr, "ftc train: stopped by %s after step %lld; checkpoint written: %s/checkpoint.ftc\n"
                        "resume with: ftc train --out %s --resume\n",
                stop_signal == SIGINT ? "SIGINT" : "SIGTERM", (long long)res.steps, c.out, c.out);
        rc = 128 + stop_signal;
    }
    if (s == FTC_OK && !rc && samples) {
        char path[FTC_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/samples.jsonl", c.out);
        ftc_err serr;
        if (ftc_samples_write(samples, m, path, &serr) != FTC_OK)
            fprintf(stderr, "ftc train: warning: no samples.jsonl: %s\n", serr.msg);
    }
    ftc_samples_free(samples);
    if (s != FTC_OK) rc = cli_fail("train", &err);
    else if (!rc) {
        printf("steps %lld, last loss %.4f, trainable params %lld", (long long)res.steps, res.last_loss,
               (long long)res.trainable_params);
        if (have_val) printf(", best %s %.4f at step %lld%s", ftc_metric_name(c.metric), res.best_metric,
                             (long long)res.best_step, res.stopped_early ? " (stopped early)" : "");
        printf("\nmodel: %s/model\n", c.out);
    }
    ftc_dataset_free(&train);
    ftc_model_free(m);
    if (s == FTC_OK && !rc) rc = final_eval_and_report(&c, have_val ? &val : NULL, quiet);
    ftc_dataset_free(&val);
done:
    free(pairs);
    return rc;
}

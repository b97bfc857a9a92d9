/* ftc train: fine-tunes a model (full, head or lora) on task data into a run directory.
 * Settings come from defaults < RUNDIR/config.resolved.json (with --resume) < --config FILE < flags. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/matmul.h"
#include "ftc/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void train_help(FILE *out) {
    fprintf(out,
        "Usage: ftc train --model DIR --data FILE --out RUNDIR [options]\n\n"
        "Fine-tunes the model in DIR on FILE and writes RUNDIR: config.resolved.json, labels.json (classify),\n"
        "metrics.jsonl, checkpoint.ftc (last), best.ftc (best on validation), model/ (Hugging Face layout,\n"
        "the best model when there is validation data, else the last; LoRA adapters merged) and for causal-lm\n"
        "samples.jsonl (up to 5 validation prompts, else training ones, answered greedily in up to 64 tokens by\n"
        "the base model before training and by the tuned one after; ftc report shows them).\n\n"
        "What to train\n"
        "  --task causal-lm|classify   next-token loss on trainable tokens, or a label per example (default classify)\n"
        "  --method full|head|lora     full: every weight; head: the new classification head (+ last N blocks),\n"
        "                              for causal-lm the last N blocks and the final norm; lora: adapters (+ head)\n"
        "  --unfreeze-last N           head: also train the last N transformer blocks (causal-lm default 1)\n"
        "  --feature-cache true|false  head on a frozen backbone: run the encoder once per example (eval mode,\n"
        "                              no backbone dropout) and train the head on the cached features (default\n"
        "                              true); false: the encoder runs every step in training mode\n"
        "  --grad-checkpoint true      recompute each block in backward instead of storing its activations\n"
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
        "  --template T                chat template (default: the model's tokenizer_config.json)\n"
        "  --text-col C --label-col C  CSV/TSV columns\n"
        "  --train-on-inputs true      causal-lm: also train prompt/user tokens (default: answers only)\n"
        "  --pack true                 causal-lm: pack examples into --max-len sequences\n"
        "  --val FILE | --val-split F  validation data, or a seeded share F of --data (e.g. 0.1)\n"
        "  --max-len N (128)           longer examples are truncated\n"
        "Optimisation\n"
        "  --epochs N (3) | --max-steps N   length of the run (max-steps wins when set)\n"
        "  --lr X (5e-5)  --batch N (16)  --grad-accum N (1)   effective batch = batch x grad-accum\n"
        "  --warmup N|F (0)            linear warmup over N steps, or over share F < 1 of all steps\n"
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
        "  --eval-every N (0)          validate every N steps (always at each epoch end)\n"
        "  --metric val_loss|accuracy|macro_f1 (val_loss)   what 'best' means\n"
        "  --patience N (0)            stop after N evaluations without improvement (0: never)\n"
        "  --save-every N (0)          checkpoint every N steps (always at each epoch end and at the end)\n"
        "  --log-every N (10)          a metrics.jsonl line every N steps\n"
        "  --config FILE               YAML or JSON with the same keys (lr: 2e-5, grad_accum: 4, ...);\n"
        "                              flags on the command line win\n"
        "  --resume                    continue RUNDIR from its last checkpoint (bit-identical to an\n"
        "                              uninterrupted run with the same thread count)\n"
        "  --quiet                     no progress output\n\n"
        "A loss that becomes NaN or Inf stops the run (exit 2) with the last good checkpoint intact.\n"
        "Details: docs/train.md\n");
}

typedef struct { const char *key, *value; } kv;

/* causal-lm sample answers (RUNDIR/samples.jsonl): few and short, so they cost little next to training */
enum { SAMPLE_PROMPTS = 5, SAMPLE_TOKENS = 64 };

int cmd_train(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { train_help(stdout); return 0; }
    kv *pairs = calloc((size_t)argc, sizeof *pairs);
    int n = 0;
    const char *config_file = NULL, *out = NULL;
    bool resume = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) { free(pairs); return cli_usage_error("train", "unexpected argument '%s'", a); }
        a += 2;
        if (!strcmp(a, "resume")) { resume = true; continue; }
        if (!strcmp(a, "quiet")) { quiet = true; continue; }
        const char *eq = strchr(a, '='), *value;
        char *key;
        if (eq) {
            size_t kl = (size_t)(eq - a);
            key = malloc(kl + 1);
            memcpy(key, a, kl);
            key[kl] = 0;
            value = eq + 1;
        } else {
            if (i + 1 >= argc) { free(pairs); return cli_usage_error("train", "--%s needs a value", a); }
            key = strdup(a);
            value = argv[++i];
        }
        if (!strcmp(key, "config")) { config_file = value; free(key); continue; }
        if (!strcmp(key, "out")) out = value;
        pairs[n++] = (kv){key, value};
    }
    ftc_train_config c;
    ftc_train_config_defaults(&c);
    ftc_err err;
    ftc_status s = FTC_OK;
    int rc = 0;
    if (resume) {
        if (!out) { rc = cli_usage_error("train", "--resume needs --out RUNDIR (the run to continue)"); goto done; }
        char path[FTC_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/config.resolved.json", out);
        if (ftc_file_exists(path) && (s = ftc_train_config_load_file(&c, path, &err)) != FTC_OK) { rc = cli_fail("train", &err); goto done; }
    }
    if (config_file && (s = ftc_train_config_load_file(&c, config_file, &err)) != FTC_OK) { rc = cli_fail("train", &err); goto done; }
    for (int i = 0; i < n; i++)
        if ((s = ftc_train_config_set(&c, pairs[i].key, pairs[i].value, &err)) != FTC_OK) {
            rc = cli_usage_error("train", "%s", err.msg);
            goto done;
        }
    c.resume = resume;
    if ((s = ftc_train_config_finalize(&c, &err)) != FTC_OK) { rc = cli_usage_error("train", "%s", err.msg); goto done; }

    char ckpt[FTC_PATH_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ftc", c.out);
    if (!resume && ftc_file_exists(ckpt)) {
        rc = cli_usage_error("train", "%s already holds a run (checkpoint.ftc): use --resume, or another --out", c.out);
        goto done;
    }
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
    if (!quiet)
        fprintf(stderr, "ftc train: %s, method %s, %d training / %d validation examples -> %s\n", ftc_task_name(c.task),
                ftc_method_name(c.method), train.n, have_val ? val.n : 0, c.out);
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
    ftc_train_result res;
    s = ftc_train_run(m, &c, &train, have_val ? &val : NULL, quiet, &res, &err);
    if (s == FTC_OK && samples) {
        char path[FTC_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/samples.jsonl", c.out);
        ftc_err serr;
        if (ftc_samples_write(samples, m, path, &serr) != FTC_OK)
            fprintf(stderr, "ftc train: warning: no samples.jsonl: %s\n", serr.msg);
    }
    ftc_samples_free(samples);
    if (s != FTC_OK) rc = cli_fail("train", &err);
    else {
        printf("steps %lld, last loss %.4f, trainable params %lld", (long long)res.steps, res.last_loss,
               (long long)res.trainable_params);
        if (have_val) printf(", best %s %.4f at step %lld%s", ftc_metric_name(c.metric), res.best_metric,
                             (long long)res.best_step, res.stopped_early ? " (stopped early)" : "");
        printf("\nmodel: %s/model\n", c.out);
    }
    ftc_dataset_free(&train);
    ftc_dataset_free(&val);
    ftc_model_free(m);
done:
    for (int i = 0; i < n; i++) free((char *)pairs[i].key);
    free(pairs);
    return rc;
}

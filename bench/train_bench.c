/* ftc's side of the training benchmark (bench/train_bench.sh; the PyTorch peer is bench/torch_train_peer.py).
 * Same work per step as the peer: forward + backward + AdamW on a fixed batch of random ids, model in
 * training mode, the trainer's AdamW; tokens/s is the median over steps 3..N. Prints one JSON object on stdout.
 *
 *   train_bench --model DIR --batch B --seq T [--steps N] [--method full|lora] [--lora-r R] [--seed S]
 *               [--precision fp32|bf16] [--base-dtype f32|bf16|q8_0|q4_0|q4_1|q4_k|nf4|nf4dq] [--grad-checkpoint 0|1]
 * --precision bf16: linear/LM-head matmuls in bf16 (ftc train --precision bf16); --base-dtype bf16 (lora only;
 * the default with --precision bf16): frozen base weights loaded straight into bf16, as ftc train does.
 *   train_bench --peak [--size N]   fp32 GFLOP/s of a square N x N x N ftc_matmul (the MFU denominator) */
#include "ftc/base.h"
#include "ftc/quant.h"
#include "ftc/hf_config.h"
#include "ftc/matmul.h"
#include "ftc/model.h"
#include "ftc/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* What the memory plan says training needs: the weights as stored (f32 and/or bf16 copies), a f32 gradient and
 * two AdamW moments per trainable value (16 B/param in all for an f32 trainable weight), and the activation
 * arena. Peak RSS over this ratio is the "planned memory" check of BENCHMARKS.md. */
static double planned_mb(const ftc_model *m) {
    double trainable = (double)ftc_model_count_params(m, true);
    return ((double)ftc_model_param_bytes(m) + 12.0 * trainable + (double)ftc_model_activation_bytes(m)) / 1048576.0;
}

/* CPU seconds of this process (all threads): on a shared machine a steadier measure of the work than wall time */
static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

static int usage(void) {
    fprintf(stderr, "usage: train_bench --model DIR --batch B --seq T [--steps N] [--method full|lora] [--lora-r R]\n"
                    "                   [--seed S] [--precision fp32|bf16] [--base-dtype f32|bf16|q8_0|q4_0|q4_1|q4_k|nf4|nf4dq]\n"
                    "                   [--grad-checkpoint 0|1] [--full-logits 0|1]\n"
                    "       train_bench --peak [--size N] [--reps R]\n");
    return 1;
}

/* Best of reps (the machine is shared: the best is the least disturbed) and median, in GFLOP/s. */
static int run_peak(int n, int reps) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) { fprintf(stderr, "train_bench: out of memory\n"); return 3; }
    ftc_rng r;
    ftc_rng_seed(&r, 1);
    for (size_t i = 0; i < nn; i++) { a[i] = ftc_rng_uniform(&r) - 0.5f; b[i] = ftc_rng_uniform(&r) - 0.5f; }
    memset(c, 0, nn * sizeof *c);
    ftc_matmul(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up: threads, pages */
    double *g = malloc((size_t)reps * sizeof *g), best = 0;
    for (int i = 0; i < reps; i++) {
        double t0 = ftc_now();
        ftc_matmul(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        g[i] = 2.0 * n * (double)n * n / (ftc_now() - t0) / 1e9;
        if (g[i] > best) best = g[i];
    }
    printf("{\"impl\": \"ftc\", \"peak\": true, \"backend\": \"%s\", \"size\": %d, \"reps\": %d, "
           "\"gflops_best\": %.1f, \"gflops_median\": %.1f}\n",
           ftc_matmul_backend(), n, reps, best, median(g, reps));
    free(g); free(a); free(b); free(c);
    return 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_embedding(const char *name) {
    static const char *const parts[] = {"wte.", "wpe.", "embed_tokens.", "word_embeddings.", "position_embeddings.",
                                        "token_type_embeddings."};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        if (strstr(name, parts[i])) return true;
    return false;
}

/* BENCHMARKS.md: 6 x (non-embedding params that get gradients, plus the LM head) + 4 x frozen ones
 * + 12 x layers x T x C for attention. A tied head (GPT-2) runs its matmul on the embedding's weight. */
static double flops_per_token(ftc_model *m, int T) {
    const ftc_model_config *cfg = ftc_model_config_of(m);
    double total = 0;
    bool has_head = false;
    const ftc_param *tok_emb = NULL;
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        const ftc_param *p = ftc_model_param(m, i);
        if (strstr(p->name, "lm_head.")) has_head = true;
        if (is_embedding(p->name)) {
            if (strstr(p->name, "wte.") || strstr(p->name, "embed_tokens.") || strstr(p->name, "word_embeddings."))
                tok_emb = p;
            continue;
        }
        total += (p->trainable ? 6.0 : 4.0) * (double)p->numel;
    }
    if (ftc_model_task(m) == FTC_TASK_CAUSAL_LM && !has_head && tok_emb)
        total += (tok_emb->trainable ? 6.0 : 4.0) * (double)tok_emb->numel;
    return total + 12.0 * cfg->n_layers * (double)T * cfg->hidden_size;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *method = "full", *precision = "fp32", *base_dtype = NULL;
    int B = 0, T = 0, steps = 8, lora_r = 8, size = 2048, reps = 10;
    unsigned long long seed = 1234;
    bool peak = false, ckpt = false, full_logits = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--peak")) { peak = true; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--seq")) T = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--lora-r")) lora_r = atoi(v);
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--base-dtype")) base_dtype = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--size")) size = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--grad-checkpoint")) ckpt = atoi(v) != 0;
        else if (!strcmp(a, "--full-logits")) full_logits = atoi(v) != 0;
        else return usage();
    }
    if (peak) return size > 0 && reps > 0 ? run_peak(size, reps) : usage();
    if (!dir || B <= 0 || T <= 0 || steps < 1 || lora_r <= 0 || (strcmp(method, "full") && strcmp(method, "lora")))
        return usage();
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) return usage();
    bool bf16 = !strcmp(precision, "bf16"), lora = !strcmp(method, "lora");
    if (!base_dtype) base_dtype = bf16 && lora ? "bf16" : "f32";
    int qtype = ftc_quant_from_name(base_dtype);
    if ((strcmp(base_dtype, "f32") && strcmp(base_dtype, "bf16") && qtype < 0) || (!lora && strcmp(base_dtype, "f32")))
        return usage();
    bool base16 = !strcmp(base_dtype, "bf16");

    ftc_err err;
    ftc_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (ftc_config_load(dir, &cfg, &err) != FTC_OK) { fprintf(stderr, "train_bench: %s\n", err.msg); return 2; }
    ftc_task task = ends_with(cfg.architecture, "ForSequenceClassification") ? FTC_TASK_CLASSIFY : FTC_TASK_CAUSAL_LM;
    int num_labels = cfg.num_labels;
    ftc_config_free(&cfg);

    double t_load = ftc_now();
    ftc_model *m = NULL;
    ftc_status st = qtype >= 0 ? ftc_model_load_quant_base(dir, task, qtype, &m, &err)
                    : base16   ? ftc_model_load_bf16_base(dir, task, &m, &err)
                               : ftc_model_load(dir, task, &m, &err);
    if (st == FTC_OK && task == FTC_TASK_CLASSIFY) st = ftc_model_set_classifier(m, num_labels, FTC_POOL_CLS, seed, &err);
    if (st == FTC_OK && !strcmp(method, "lora")) {
        st = ftc_model_add_lora(m, "all-linear", lora_r, 2.0f * (float)lora_r, 0.0f, seed, &err);
        /* As the peer: a new classification head trains along with the adapters. */
        for (int i = 0; st == FTC_OK && task == FTC_TASK_CLASSIFY && i < ftc_model_n_params(m); i++)
            if (strstr(ftc_model_param(m, i)->name, "classifier.")) ftc_model_set_trainable(m, i, true);
    }
    if (st == FTC_OK) st = ftc_model_set_precision(m, bf16 ? FTC_PREC_BF16 : FTC_PREC_FP32, &err);
    if (st == FTC_OK) st = ftc_model_set_grad_checkpoint(m, ckpt, &err);
    /* as ftc train: a causal LM's logits 64 rows at a time (--full-logits 1: the whole [B x T, V], as before) */
    if (st == FTC_OK && task == FTC_TASK_CAUSAL_LM) st = ftc_model_set_loss_only(m, !full_logits, &err);
    if (st == FTC_OK) st = ftc_model_reserve(m, B, T, &err);
    if (st != FTC_OK) { fprintf(stderr, "train_bench: %s\n", err.msg); ftc_model_free(m); return 2; }
    double load_s = ftc_now() - t_load;

    /* The trainer's AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01 where ftc_param.decay), as the peer. */
    int np = ftc_model_n_params(m);
    ftc_param **params = malloc((size_t)np * sizeof *params);
    int32_t *ids = malloc((size_t)B * T * sizeof *ids), *labels = malloc((size_t)B * T * sizeof *labels);
    double *step_s = malloc((size_t)steps * sizeof *step_s), *sorted = malloc((size_t)steps * sizeof *sorted);
    double *cpu_s = malloc((size_t)steps * sizeof *cpu_s);
    if (!params || !ids || !labels || !step_s || !sorted) { fprintf(stderr, "train_bench: out of memory\n"); return 3; }
    for (int i = 0; i < np; i++) params[i] = ftc_model_param(m, i);
    ftc_adamw_hparams hp = FTC_ADAMW_DEFAULTS;
    hp.weight_decay = 0.01f;
    ftc_optimizer opt;
    if (ftc_optim_init(&opt, params, np, &hp, &err) != FTC_OK) { fprintf(stderr, "train_bench: %s\n", err.msg); return 2; }
    const ftc_model_config *mc = ftc_model_config_of(m);
    ftc_rng r;
    ftc_rng_seed(&r, seed);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)ftc_rng_below(&r, (uint64_t)mc->vocab_size);
    if (task == FTC_TASK_CLASSIFY)
        for (int i = 0; i < B; i++) labels[i] = (int32_t)ftc_rng_below(&r, (uint64_t)num_labels);
    else
        memcpy(labels, ids, (size_t)B * T * sizeof *ids);
    ftc_batch batch = {.B = B, .T = T, .ids = ids, .type_ids = NULL, .mask = NULL, .labels = labels};

    float loss_first = 0, loss = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = ftc_now(), c0 = cpu_now();
        ftc_model_zero_grad(m);
        st = ftc_model_forward(m, &batch, true, &loss, &err);
        if (st == FTC_OK) st = ftc_model_backward(m, &err);
        if (st != FTC_OK) { fprintf(stderr, "train_bench: step %d: %s\n", s + 1, err.msg); return 3; }
        ftc_optim_step(&opt, 1e-4f);
        ftc_model_weights_changed(m); /* bf16 copies refreshed at the next forward, inside the timed step */
        step_s[s] = ftc_now() - t0;
        cpu_s[s] = cpu_now() - c0;
        if (s == 0) loss_first = loss;
        fprintf(stderr, "ftc step %d/%d: %.3f s, loss %.4f, %.1f tok/s\n", s + 1, steps, step_s[s], loss,
                B * T / step_s[s]);
    }
    int skip = steps >= 3 ? 2 : 0; /* fewer than 3 steps (a long sequence): the median of all of them */
    memcpy(sorted, step_s + skip, (size_t)(steps - skip) * sizeof *sorted);
    double med = median(sorted, steps - skip);
    memcpy(sorted, cpu_s + skip, (size_t)(steps - skip) * sizeof *sorted);
    double cpu_med = median(sorted, steps - skip);
    printf("{\"impl\": \"ftc\", \"backend\": \"%s\", \"model\": \"%s\", \"model_type\": \"%s\", \"task\": \"%s\", "
           "\"method\": \"%s\", \"precision\": \"%s\", \"base_dtype\": \"%s\", \"lora_r\": %d, \"grad_checkpoint\": %d, \"full_logits\": %d, \"batch\": %d, \"seq\": %d, \"steps\": %d, "
           "\"tokens_per_s\": %.3f, \"step_s_median\": %.5f, \"cpu_s_median\": %.5f, \"step_s\": [",
           ftc_matmul_backend(), dir, mc->model_type, task == FTC_TASK_CLASSIFY ? "classify" : "causal-lm", method,
           precision, base_dtype,
           strcmp(method, "lora") ? 0 : lora_r, ckpt, full_logits, B, T, steps, B * T / med, med, cpu_med);
    for (int s = 0; s < steps; s++) printf("%s%.4f", s ? ", " : "", step_s[s]);
    printf("], \"loss_first\": %.6f, \"loss_last\": %.6f, \"params_total\": %lld, \"params_trainable\": %lld, "
           "\"flops_per_token\": %.0f, \"load_s\": %.3f, \"peak_rss_mb\": %.1f, \"planned_mb\": %.1f, "
           "\"activation_mb\": %.1f}\n",
           loss_first, loss, (long long)ftc_model_count_params(m, false), (long long)ftc_model_count_params(m, true),
           flops_per_token(m, T), load_s, peak_rss_mb(), planned_mb(m), ftc_model_activation_bytes(m) / 1048576.0);
    ftc_optim_free(&opt);
    free(params); free(ids); free(labels); free(step_s); free(sorted); free(cpu_s);
    ftc_model_free(m);
    return 0;
}

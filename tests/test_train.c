/* The trainer end to end on tiny random models of each family (gpt2, llama, bert) and each method
 * (full, head, lora): loss falls on a learnable task; head leaves every backbone byte unchanged; LoRA at
 * step 0 gives the base model's outputs and merged equals unmerged; gradient accumulation 4 x 2 equals
 * batch 8; a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one; a NaN loss
 * stops with a clear message and the last checkpoint intact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/train.h"
#include "lib/test_util.h"

#define VOCAB 24
#define NUM_LABELS 3

static char tmp_root[64];

static ftc_model_config tiny_config(ftc_family fam) {
    ftc_model_config c;
    memset(&c, 0, sizeof c);
    c.family = fam;
    c.n_layers = 2;
    c.hidden_size = 16;
    c.n_heads = 2;
    c.n_kv_heads = fam == FTC_FAMILY_LLAMA ? 1 : 2;
    c.head_dim = 8;
    c.intermediate_size = 32;
    c.vocab_size = VOCAB;
    c.max_positions = 32;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = -1;
    c.rope_theta = 10000;
    c.initializer_range = 0.2f; /* bolder than 0.02: a random backbone then carries usable features for head-only training */
    switch (fam) {
    case FTC_FAMILY_GPT2:
        strcpy(c.model_type, "gpt2");
        c.norm_eps = 1e-5f; c.tie_word_embeddings = true; c.attention_bias = c.mlp_bias = true;
        c.activation = FTC_ACT_GELU_TANH;
        break;
    case FTC_FAMILY_LLAMA:
        strcpy(c.model_type, "llama");
        c.norm_eps = 1e-6f; c.activation = FTC_ACT_SILU;
        break;
    case FTC_FAMILY_BERT:
        strcpy(c.model_type, "bert");
        c.norm_eps = 1e-12f; c.type_vocab_size = 2; c.attention_bias = c.mlp_bias = true;
        c.activation = FTC_ACT_GELU_ERF;
        break;
    }
    return c;
}

static float dropout_p; /* hidden/attention dropout of the tiny models (the resume test turns it on) */
static double average_share; /* --average-last of the resume runs (the resume test turns it on for one case) */

static ftc_model *make_model(ftc_family fam, ftc_task task) {
    ftc_model_config cfg = tiny_config(fam);
    cfg.hidden_dropout = cfg.attention_dropout = dropout_p;
    ftc_model *m = NULL;
    ftc_err err;
    if (ftc_model_create(&cfg, task, 7, &m, &err) != FTC_OK) fail_msg("ftc_model_create: %s", err.msg);
    return m;
}

/* Learnable data. causal-lm: counting sequences x_{t+1} = x_t + step (mod V), loss on all but the first
 * two tokens (a "prompt"). classify: the class is which of three marker tokens appears most. */
static ftc_dataset make_data(ftc_task task, int n, uint64_t seed) {
    ftc_dataset d = {.n = n, .num_labels = task == FTC_TASK_CLASSIFY ? NUM_LABELS : 0, .pad_id = 0};
    d.ex = calloc((size_t)n, sizeof *d.ex);
    ftc_rng r;
    ftc_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        ftc_example *e = &d.ex[i];
        e->len = 6 + (int)ftc_rng_below(&r, 5); /* varying lengths: padding matters */
        e->ids = malloc((size_t)e->len * sizeof(int32_t));
        if (task == FTC_TASK_CAUSAL_LM) {
            int x = 1 + (int)ftc_rng_below(&r, VOCAB - 1), step = 1 + (int)ftc_rng_below(&r, 2);
            e->labels = malloc((size_t)e->len * sizeof(int32_t));
            for (int t = 0; t < e->len; t++) {
                e->ids[t] = x;
                e->labels[t] = t < 2 ? -100 : x;
                x = 1 + (x - 1 + step) % (VOCAB - 1);
            }
        } else {
            e->label = (int)ftc_rng_below(&r, NUM_LABELS);
            e->ids[0] = 1; /* CLS-like start */
            for (int t = 1; t < e->len; t++)
                e->ids[t] = ftc_rng_below(&r, 2) ? 2 + e->label : 5 + (int)ftc_rng_below(&r, VOCAB - 5);
        }
    }
    return d;
}

static void base_config(ftc_train_config *c, ftc_task task, ftc_method method, const char *name) {
    ftc_train_config_defaults(c);
    c->task = task;
    c->method = method;
    strcpy(c->model, "tiny");
    strcpy(c->data, "synthetic");
    snprintf(c->out, sizeof c->out, "%s/%s", tmp_root, name);
    c->batch = 8;
    c->max_len = 16;
    /* a random tiny backbone gives weak features: the head-only methods need a bolder step */
    c->lr = method == FTC_METHOD_FULL ? 1e-2f : method == FTC_METHOD_LORA ? 3e-2f : 1e-1f;
    c->max_steps = 30;
    c->warmup = 2;
    c->log_every = 5;
    c->lora_r = 4;
    c->lora_alpha = 8;
    c->seed = 11;
    ftc_err err;
    if (ftc_train_config_finalize(c, &err) != FTC_OK) fail_msg("config: %s", err.msg);
}

static double eval_loss(ftc_model *m, ftc_task task, const ftc_dataset *d) {
    ftc_eval_result r;
    ftc_err err;
    if (ftc_train_evaluate(m, task, d, 8, 16, &r, NULL, &err) != FTC_OK) fail_msg("evaluate: %s", err.msg);
    return r.loss;
}

/* copies of every parameter (by index) to compare after training */
typedef struct { int n; char (*names)[160]; float **data; int64_t *numel; } snapshot;
static snapshot snap(ftc_model *m) {
    snapshot s = {.n = ftc_model_n_params(m)};
    s.names = calloc((size_t)s.n, sizeof *s.names);
    s.data = calloc((size_t)s.n, sizeof *s.data);
    s.numel = calloc((size_t)s.n, sizeof *s.numel);
    for (int i = 0; i < s.n; i++) {
        ftc_param *p = ftc_model_param(m, i);
        strcpy(s.names[i], p->name);
        s.numel[i] = p->numel;
        s.data[i] = malloc((size_t)p->numel * sizeof(float));
        memcpy(s.data[i], p->data, (size_t)p->numel * sizeof(float));
    }
    return s;
}
static void snap_free(snapshot *s) {
    for (int i = 0; i < s->n; i++) free(s->data[i]);
    free(s->data); free(s->names); free(s->numel);
}

static const char *family_name(ftc_family f) { return f == FTC_FAMILY_GPT2 ? "gpt2" : f == FTC_FAMILY_LLAMA ? "llama" : "bert"; }

/* ---- loss falls, for every method x family x task; head keeps the backbone ---- */
static void train_one(ftc_family fam, ftc_task task, ftc_method method) {
    char name[64];
    snprintf(name, sizeof name, "%s_%s_%s", family_name(fam), ftc_task_name(task), ftc_method_name(method));
    ftc_train_config c;
    base_config(&c, task, method, name);
    ftc_dataset train = make_data(task, 48, 1), val = make_data(task, 16, 2);
    ftc_model *m = make_model(fam, task);
    snapshot before_backbone = snap(m); /* before the head/adapters exist */
    ftc_err err;
    /* initial loss: a second model prepared the same way (the trainer prepares its own) */
    ftc_model *m0 = make_model(fam, task);
    if (ftc_train_prepare_model(m0, &c, train.num_labels, &err) != FTC_OK) fail_msg("prepare: %s", err.msg);
    double loss0 = eval_loss(m0, task, &train);
    ftc_model_free(m0);
    ftc_train_result res;
    if (ftc_train_run(m, &c, &train, &val, true, &res, &err) != FTC_OK) fail_msg("%s: %s", name, err.msg);
    /* the final model is the best (validation) one; measure loss on the training data */
    double loss1 = eval_loss(m, task, &train);
    printf("  %-28s trainable %6lld  loss %.4f -> %.4f (best %s %.4f at step %lld)\n", name,
           (long long)res.trainable_params, loss0, loss1, ftc_metric_name(c.metric), res.best_metric,
           (long long)res.best_step);
    if (!(loss1 < loss0 * 0.9)) fail_msg("%s: loss did not fall enough: %.4f -> %.4f", name, loss0, loss1);
    assert_int_equal(res.steps, 30);
    if (method == FTC_METHOD_HEAD) {
        /* every backbone param outside the unfrozen part is bit-identical */
        const char *unfrozen_block = task == FTC_TASK_CAUSAL_LM ? ".1." : NULL; /* last of 2 blocks */
        int checked = 0;
        for (int i = 0; i < before_backbone.n; i++) {
            ftc_param *p = ftc_model_find_param(m, before_backbone.names[i]);
            assert_non_null(p);
            bool may_change = p->trainable || (unfrozen_block && strstr(p->name, unfrozen_block));
            if (may_change) continue;
            if (memcmp(p->data, before_backbone.data[i], (size_t)p->numel * sizeof(float)) != 0)
                fail_msg("%s: frozen %s changed", name, p->name);
            checked++;
        }
        assert_true(checked > 2);
    }
    /* the run directory */
    char path[FTC_PATH_MAX + 64];
    /* a LoRA run keeps its adapter (PEFT layout) and no merged model/ (--save-merged) */
    const char *files[] = {"config.resolved.json", "metrics.jsonl", "checkpoint.ftc", "best.ftc",
                           method == FTC_METHOD_LORA ? "adapter/adapter_config.json" : "model/config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", c.out, files[i]);
        if (!ftc_file_exists(path)) fail_msg("%s missing", path);
    }
    snprintf(path, sizeof path, "%s/model/config.json", c.out);
    if (method == FTC_METHOD_LORA && ftc_file_exists(path)) fail_msg("%s: a LoRA run wrote a merged model/", name);
    snap_free(&before_backbone);
    ftc_model_free(m);
    ftc_dataset_free(&train);
    ftc_dataset_free(&val);
}

static void run_family(ftc_family fam) {
    for (int task = 0; task < 2; task++)
        for (int meth = 0; meth < 3; meth++) {
            if (fam == FTC_FAMILY_BERT && task == 0) continue; /* BERT is an encoder: classify only */
            train_one(fam, task == 0 ? FTC_TASK_CAUSAL_LM : FTC_TASK_CLASSIFY, (ftc_method)meth);
        }
}
static void test_loss_falls_gpt2(void **state) { (void)state; run_family(FTC_FAMILY_GPT2); }
static void test_loss_falls_llama(void **state) { (void)state; run_family(FTC_FAMILY_LLAMA); }
static void test_loss_falls_bert(void **state) { (void)state; run_family(FTC_FAMILY_BERT); }

/* ---- LoRA: step 0 equals the base; merged equals unmerged ---- */
static void lora_identity(ftc_family fam, ftc_task task) {
    ftc_dataset d = make_data(task, 8, 3);
    ftc_train_config c;
    base_config(&c, task, FTC_METHOD_LORA, "lora_identity");
    ftc_model *base = make_model(fam, task), *lora = make_model(fam, task);
    ftc_err err;
    ftc_train_config cb = c;
    cb.method = FTC_METHOD_FULL;
    if (ftc_train_prepare_model(base, &cb, NUM_LABELS, &err) != FTC_OK) fail_msg("%s", err.msg);
    if (ftc_train_prepare_model(lora, &c, NUM_LABELS, &err) != FTC_OK) fail_msg("%s", err.msg);
    int n_lora = 0;
    for (int i = 0; i < ftc_model_n_params(lora); i++) n_lora += ftc_model_param(lora, i)->is_lora;
    assert_true(n_lora >= 4);
    int T = 16, B = d.n;
    int32_t ids[8 * 16];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) ids[b * T + t] = d.ex[b].ids[t % d.ex[b].len];
    ftc_batch batch = {.B = B, .T = T, .ids = ids};
    assert_int_equal(ftc_model_reserve(base, B, T, &err), FTC_OK);
    assert_int_equal(ftc_model_reserve(lora, B, T, &err), FTC_OK);
    assert_int_equal(ftc_model_forward(base, &batch, false, NULL, &err), FTC_OK);
    assert_int_equal(ftc_model_forward(lora, &batch, false, NULL, &err), FTC_OK);
    size_t n_out = (size_t)B * (task == FTC_TASK_CLASSIFY ? NUM_LABELS : (size_t)T * VOCAB);
    if (memcmp(ftc_model_logits(base), ftc_model_logits(lora), n_out * sizeof(float)) != 0)
        fail_msg("%s: LoRA at step 0 changed the outputs", family_name(fam));
    /* train the adapters a little (B becomes non-zero), then merged must equal unmerged */
    for (int i = 0; i < ftc_model_n_params(lora); i++) {
        ftc_param *p = ftc_model_param(lora, i);
        if (p->is_lora) for (int64_t j = 0; j < p->numel; j++) p->data[j] += 0.05f * (float)((j * 7 + i) % 5 - 2);
    }
    assert_int_equal(ftc_model_forward(lora, &batch, false, NULL, &err), FTC_OK);
    float *unmerged = malloc(n_out * sizeof(float));
    memcpy(unmerged, ftc_model_logits(lora), n_out * sizeof(float));
    assert_true(memcmp(unmerged, ftc_model_logits(base), n_out * sizeof(float)) != 0);
    assert_int_equal(ftc_model_merge_lora(lora, &err), FTC_OK);
    assert_int_equal(ftc_model_reserve(lora, B, T, &err), FTC_OK);
    assert_int_equal(ftc_model_forward(lora, &batch, false, NULL, &err), FTC_OK);
    double worst = 0;
    for (size_t i = 0; i < n_out; i++) {
        double dd = fabs(unmerged[i] - ftc_model_logits(lora)[i]);
        if (dd > worst) worst = dd;
    }
    printf("  %s %s: merged vs unmerged max |diff| %.3g\n", family_name(fam), ftc_task_name(task), worst);
    assert_true(worst < 1e-4);
    free(unmerged);
    ftc_model_free(base);
    ftc_model_free(lora);
    ftc_dataset_free(&d);
}
static void test_lora_identity_and_merge(void **state) {
    (void)state;
    lora_identity(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM);
    lora_identity(FTC_FAMILY_LLAMA, FTC_TASK_CAUSAL_LM);
    lora_identity(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    lora_identity(FTC_FAMILY_GPT2, FTC_TASK_CLASSIFY);
}

/* ---- gradient accumulation: 4 x batch 2 == batch 8 ---- */
static void accum_case(ftc_family fam, ftc_task task) {
    ftc_dataset d = make_data(task, 32, 4);
    ftc_model *a = make_model(fam, task), *b = make_model(fam, task);
    ftc_train_config ca, cb;
    base_config(&ca, task, FTC_METHOD_FULL, "accum_a");
    base_config(&cb, task, FTC_METHOD_FULL, "accum_b");
    ca.batch = 8; ca.grad_accum = 1; ca.max_steps = 4;
    cb.batch = 2; cb.grad_accum = 4; cb.max_steps = 4;
    ca.clip = cb.clip = 0; /* clipping is linear too, but keep the comparison to the sums */
    /* Some gradients are zero in exact arithmetic (e.g. attention key biases: softmax ignores a shift) and
     * only rounding noise in floats; Adam with eps 1e-8 would turn that noise into full-size steps of either
     * sign. A larger eps keeps the comparison about the accumulated gradients. */
    ca.adam_eps = cb.adam_eps = 1e-3f;
    ftc_train_result ra, rb;
    ftc_err err;
    if (ftc_train_run(a, &ca, &d, NULL, true, &ra, &err) != FTC_OK) fail_msg("%s", err.msg);
    if (ftc_train_run(b, &cb, &d, NULL, true, &rb, &err) != FTC_OK) fail_msg("%s", err.msg);
    double worst = 0;
    for (int i = 0; i < ftc_model_n_params(a); i++) {
        ftc_param *pa = ftc_model_param(a, i), *pb = ftc_model_param(b, i);
        assert_string_equal(pa->name, pb->name);
        for (int64_t j = 0; j < pa->numel; j++) {
            double dd = fabs(pa->data[j] - pb->data[j]);
            if (dd > worst) worst = dd;
        }
    }
    printf("  %s %s: 4 x 2 vs 8: loss %.6f vs %.6f, max |dw| %.3g\n", family_name(fam), ftc_task_name(task),
           ra.last_loss, rb.last_loss, worst);
    assert_true(fabs(ra.last_loss - rb.last_loss) < 1e-4);
    assert_true(worst < 1e-5); /* 4 AdamW steps of lr 1e-2: each value moves up to ~4e-2 */
    ftc_model_free(a);
    ftc_model_free(b);
    ftc_dataset_free(&d);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/accum_a' '%s/accum_b'", tmp_root, tmp_root);
    assert_int_equal(system(cmd), 0);
}
static void test_grad_accumulation_equals_big_batch(void **state) {
    (void)state;
    accum_case(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM);
    accum_case(FTC_FAMILY_LLAMA, FTC_TASK_CAUSAL_LM);
    accum_case(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
}

/* ---- resume after SIGKILL is bit-identical; same seed, same result ---- */
static ftc_model *run_to_end(ftc_family fam, ftc_task task, ftc_method method, const char *name, bool resume,
                             const ftc_dataset *d, const ftc_dataset *val) {
    ftc_train_config c;
    base_config(&c, task, method, name);
    c.max_steps = 24; c.save_every = 1; c.eval_every = 5; c.batch = 4; c.grad_accum = 2;
    c.resume = resume;
    c.lora_dropout = method == FTC_METHOD_LORA ? 0.1f : 0.0f;
    c.average_last = average_share;
    ftc_model *m = make_model(fam, task);
    ftc_train_result r;
    ftc_err err;
    if (ftc_train_run(m, &c, d, val, true, &r, &err) != FTC_OK) fail_msg("%s: %s", name, err.msg);
    return m;
}

static void assert_same_params(ftc_model *a, ftc_model *b, const char *what) {
    assert_int_equal(ftc_model_n_params(a), ftc_model_n_params(b));
    for (int i = 0; i < ftc_model_n_params(a); i++) {
        ftc_param *pa = ftc_model_param(a, i), *pb = ftc_model_param(b, i);
        if (memcmp(pa->data, pb->data, (size_t)pa->numel * sizeof(float)) != 0)
            fail_msg("%s: %s differs", what, pa->name);
    }
}

static void resume_case(ftc_family fam, ftc_task task, ftc_method method, int kills) {
    ftc_dataset d = make_data(task, 40, 5), val = make_data(task, 8, 6);
    char ref_name[64], name[64];
    snprintf(ref_name, sizeof ref_name, "ref_%s_%s", family_name(fam), ftc_method_name(method));
    snprintf(name, sizeof name, "killed_%s_%s", family_name(fam), ftc_method_name(method));
    double t0 = ftc_now();
    ftc_model *ref = run_to_end(fam, task, method, ref_name, false, &d, &val);
    double dur = ftc_now() - t0;
    /* same seed, same result */
    char again[80];
    snprintf(again, sizeof again, "%s_again", ref_name);
    ftc_model *ref2 = run_to_end(fam, task, method, again, false, &d, &val);
    assert_same_params(ref, ref2, "same seed twice");
    ftc_model_free(ref2);
    /* kill a child at random points, resume each time, and finish */
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    int killed_mid_run = 0;
    for (int k = 0; k < kills; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            ftc_model *m = run_to_end(fam, task, method, name, k > 0, &d, &val);
            ftc_model_free(m);
            _exit(0);
        }
        useconds_t us = (useconds_t)(dur * 1e6 * (0.1 + 0.8 * (rand_r(&seed) % 1000) / 1000.0));
        usleep(us);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        killed_mid_run += WIFSIGNALED(st);
    }
    ftc_model *resumed = run_to_end(fam, task, method, name, true, &d, &val);
    printf("  %s %s %s: killed %d of %d times mid-run, resumed result bit-identical\n", family_name(fam),
           ftc_task_name(task), ftc_method_name(method), killed_mid_run, kills);
    assert_same_params(ref, resumed, "resumed after SIGKILL");
    /* metrics.jsonl of the resumed run equals the uninterrupted one's, tok/s aside: same steps, same values */
    char pa[FTC_PATH_MAX], pb[FTC_PATH_MAX];
    snprintf(pa, sizeof pa, "%s/%s/metrics.jsonl", tmp_root, ref_name);
    snprintf(pb, sizeof pb, "%s/%s/metrics.jsonl", tmp_root, name);
    json_t *la = json_array(), *lb = json_array();
    for (int f = 0; f < 2; f++) {
        FILE *fp = fopen(f ? pb : pa, "r");
        assert_non_null(fp);
        char line[4096];
        while (fgets(line, sizeof line, fp)) {
            json_t *o = json_loads(line, 0, NULL);
            assert_non_null(o);
            json_object_del(o, "tok_s");
            json_object_del(o, "elapsed_s"); /* wall time: differs between any two runs */
            json_array_append_new(f ? lb : la, o);
        }
        fclose(fp);
    }
    assert_true(json_array_size(la) > 5);
    if (!json_equal(la, lb)) { /* say how they differ before failing */
        char *ja = json_dumps(la, JSON_COMPACT), *jb = json_dumps(lb, JSON_COMPACT);
        printf("  metrics.jsonl differ:\n  uninterrupted %s\n  resumed       %s\n", ja, jb);
        free(ja); free(jb);
    }
    assert_true(json_equal(la, lb));
    json_decref(la); json_decref(lb);
    ftc_model_free(ref);
    ftc_model_free(resumed);
    ftc_dataset_free(&d);
    ftc_dataset_free(&val);
}
/* ---- head on a frozen backbone: cached features == the encoder at every step ---- */
static ftc_model *head_run(ftc_family fam, const char *pooling, bool cache, const ftc_dataset *d,
                           const ftc_dataset *val, ftc_train_result *res, char *out_dir) {
    char name[64];
    snprintf(name, sizeof name, "head_%s_%s_%s", family_name(fam), pooling, cache ? "cached" : "every_step");
    ftc_train_config c;
    base_config(&c, FTC_TASK_CLASSIFY, FTC_METHOD_HEAD, name);
    strcpy(c.pooling, pooling);
    c.feature_cache = cache;
    c.eval_every = 5;
    c.log_every = 1;
    c.metric = FTC_METRIC_VAL_LOSS;
    strcpy(out_dir, c.out);
    ftc_model *m = make_model(fam, FTC_TASK_CLASSIFY);
    ftc_err err;
    if (ftc_train_run(m, &c, d, val, true, res, &err) != FTC_OK) fail_msg("%s: %s", name, err.msg);
    return m;
}

/* metrics.jsonl lines of two runs: same keys and steps, numbers within tol (tok_s and elapsed_s aside: timings) */
static double metrics_diff_lines(const char *dir_a, const char *dir_b, int min_lines) { /* at least min_lines */
    double worst = 0;
    char pa[FTC_PATH_MAX + 32], pb[FTC_PATH_MAX + 32];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", dir_a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", dir_b);
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    assert_non_null(fa);
    assert_non_null(fb);
    char la[4096], lb[4096];
    int lines = 0;
    while (fgets(la, sizeof la, fa)) {
        assert_non_null(fgets(lb, sizeof lb, fb));
        json_t *oa = json_loads(la, 0, NULL), *ob = json_loads(lb, 0, NULL);
        assert_non_null(oa);
        assert_non_null(ob);
        assert_int_equal(json_object_size(oa), json_object_size(ob));
        const char *k;
        json_t *v;
        json_object_foreach(oa, k, v) {
            if (!strcmp(k, "tok_s") || !strcmp(k, "elapsed_s")) continue;
            json_t *w = json_object_get(ob, k);
            if (!w) fail_msg("%s: key %s missing in %s", la, k, pb);
            worst = fmax(worst, fabs(json_number_value(v) - json_number_value(w)));
        }
        json_decref(oa);
        json_decref(ob);
        lines++;
    }
    assert_null(fgets(lb, sizeof lb, fb));
    fclose(fa);
    fclose(fb);
    assert_true(lines >= min_lines);
    return worst;
}
static double metrics_diff(const char *dir_a, const char *dir_b) { return metrics_diff_lines(dir_a, dir_b, 31); }

static void feature_cache_case(ftc_family fam, const char *pooling) {
    ftc_dataset d = make_data(FTC_TASK_CLASSIFY, 44, 21), val = make_data(FTC_TASK_CLASSIFY, 13, 22);
    ftc_train_result rc, ru;
    char dir_c[FTC_PATH_MAX], dir_u[FTC_PATH_MAX];
    ftc_model *mc = head_run(fam, pooling, true, &d, &val, &rc, dir_c);
    ftc_model *mu = head_run(fam, pooling, false, &d, &val, &ru, dir_u);
    assert_true(rc.cached_features);
    assert_false(ru.cached_features);
    assert_int_equal(rc.steps, ru.steps);
    assert_int_equal(rc.best_step, ru.best_step);
    double wmax = 0;
    for (int i = 0; i < ftc_model_n_params(mc); i++) {
        ftc_param *a = ftc_model_param(mc, i), *b = ftc_model_param(mu, i);
        for (int64_t k = 0; k < a->numel; k++) wmax = fmax(wmax, fabs((double)a->data[k] - b->data[k]));
    }
    double mdiff = metrics_diff(dir_c, dir_u);
    printf("  %-5s %-4s cached vs every step: weights max diff %.2e, metrics.jsonl max diff %.2e, last loss %.6f / %.6f\n",
           family_name(fam), pooling, wmax, mdiff, rc.last_loss, ru.last_loss);
    if (!(wmax <= 1e-5)) fail_msg("weights differ by %.3g", wmax);
    if (!(mdiff <= 1e-5)) fail_msg("metrics differ by %.3g", mdiff);
    ftc_model_free(mc);
    ftc_model_free(mu);
    ftc_dataset_free(&d);
    ftc_dataset_free(&val);
}

static void test_feature_cache_equals_every_step(void **state) {
    (void)state;
    dropout_p = 0; /* the cached features are eval-mode ones: equal to the every-step path only without dropout */
    feature_cache_case(FTC_FAMILY_BERT, "cls");
    feature_cache_case(FTC_FAMILY_BERT, "mean");
    feature_cache_case(FTC_FAMILY_GPT2, "last");
    feature_cache_case(FTC_FAMILY_LLAMA, "last");
}

static void test_resume_after_kill_is_bit_identical(void **state) {
    (void)state;
    dropout_p = 0.1f; /* resume must also restore the dropout generator */
    resume_case(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM, FTC_METHOD_FULL, 3);
    resume_case(FTC_FAMILY_LLAMA, FTC_TASK_CAUSAL_LM, FTC_METHOD_LORA, 2);
    resume_case(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY, FTC_METHOD_HEAD, 2);
    average_share = 0.5; /* the weight average (checkpointed once it has begun) must resume too */
    resume_case(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY, FTC_METHOD_FULL, 2);
    average_share = 0;
    dropout_p = 0;
}

/* ---- NaN/Inf loss stops the run, naming the step, the last checkpoint intact ---- */
static void test_nan_loss_stops_cleanly(void **state) {
    (void)state;
    ftc_dataset d = make_data(FTC_TASK_CAUSAL_LM, 32, 7);
    ftc_train_config c;
    base_config(&c, FTC_TASK_CAUSAL_LM, FTC_METHOD_FULL, "nan_run");
    c.max_steps = 40; c.save_every = 1; c.clip = 0; c.warmup = 20; /* lr 0 at step 1, then huge */
    c.lr = 1e30f; /* diverges within a few steps */
    ftc_model *m = make_model(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM);
    ftc_train_result r;
    ftc_err err;
    ftc_status s = ftc_train_run(m, &c, &d, NULL, true, &r, &err);
    printf("  %s\n", err.msg);
    /* an error status of its own (not FTC_OK with a NaN result), naming the step and the micro-batch */
    assert_int_equal(s, FTC_E_DIVERGED);
    assert_int_equal(err.code, FTC_E_DIVERGED);
    assert_int_equal(ftc_exit_code(s), 2);
    assert_true(strstr(err.msg, "NaN") || strstr(err.msg, "Inf"));
    assert_non_null(strstr(err.msg, "at step"));
    assert_non_null(strstr(err.msg, "micro-batch"));
    ftc_model_free(m);
    char path[FTC_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/checkpoint.ftc", c.out);
    const char *at = strstr(err.msg, "last good checkpoint (step ");
    assert_non_null(at);
    long good_step = atol(at + strlen("last good checkpoint (step "));
    assert_true(good_step >= 1);
    /* it is written as RUNDIR/model too, and the message says how to evaluate or continue it */
    assert_non_null(strstr(err.msg, "ftc eval --model"));
    assert_non_null(strstr(err.msg, "--resume"));
    snprintf(path, sizeof path, "%s/model/model.safetensors", c.out);
    assert_true(ftc_file_exists(path));
    snprintf(path, sizeof path, "%s/checkpoint.ftc", c.out);
    {
        /* the checkpoint left behind loads and holds finite weights */
        ftc_model *m2 = make_model(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM);
        assert_int_equal(ftc_train_prepare_model(m2, &c, 0, &err), FTC_OK);
        json_t *st = NULL;
        if (ftc_checkpoint_load(path, m2, NULL, &st, &err) != FTC_OK) fail_msg("%s", err.msg);
        for (int i = 0; i < ftc_model_n_params(m2); i++) {
            ftc_param *p = ftc_model_param(m2, i);
            for (int64_t j = 0; j < p->numel; j++) assert_true(isfinite(p->data[j]));
        }
        assert_int_equal(json_integer_value(json_object_get(st, "step")), good_step);
        json_decref(st);
        ftc_model_free(m2);
    }
    ftc_dataset_free(&d);
}

/* A poisoned weight: the first micro-batch's loss is NaN, so the very first step fails with FTC_E_DIVERGED naming
 * step 1 and micro-batch 1 of the window, before any update or checkpoint. */
static void test_poisoned_weight_diverges_at_first_micro_batch(void **state) {
    (void)state;
    ftc_dataset d = make_data(FTC_TASK_CAUSAL_LM, 16, 9);
    ftc_train_config c;
    base_config(&c, FTC_TASK_CAUSAL_LM, FTC_METHOD_FULL, "poison_run");
    c.max_steps = 3; c.batch = 2; c.grad_accum = 3; c.save_every = 1;
    ftc_model *m = make_model(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM);
    ftc_param *p = ftc_model_find_param(m, "transformer.h.0.mlp.c_fc.weight");
    assert_non_null(p);
    p->data[3] = NAN;
    ftc_train_result r;
    ftc_err err;
    ftc_status s = ftc_train_run(m, &c, &d, NULL, true, &r, &err);
    printf("  %s\n", err.msg);
    assert_int_equal(s, FTC_E_DIVERGED);
    assert_non_null(strstr(err.msg, "training loss is NaN at step 1 (epoch 1), micro-batch 1 of 3"));
    assert_non_null(strstr(err.msg, "before any checkpoint was written"));
    char path[FTC_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/checkpoint.ftc", c.out);
    assert_false(ftc_file_exists(path));
    ftc_model_free(m);
    ftc_dataset_free(&d);
}

/* ---- early stopping: patience counts evaluations without improvement; best.ftc holds the best ---- */
static void test_early_stopping(void **state) {
    (void)state;
    ftc_dataset d = make_data(FTC_TASK_CLASSIFY, 32, 11), val = make_data(FTC_TASK_CLASSIFY, 8, 12);
    ftc_train_config c;
    base_config(&c, FTC_TASK_CLASSIFY, FTC_METHOD_HEAD, "early");
    c.lr = 0; /* nothing changes: the first evaluation stays the best */
    c.warmup = 0;
    c.eval_every = 2;
    c.patience = 3;
    c.metric = FTC_METRIC_ACCURACY;
    ftc_model *m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    ftc_train_result r;
    ftc_err err;
    if (ftc_train_run(m, &c, &d, &val, true, &r, &err) != FTC_OK) fail_msg("%s", err.msg);
    assert_true(r.stopped_early);
    assert_int_equal(r.best_step, 2);
    assert_int_equal(r.steps, 8); /* evaluations at 2 (best), 4, 6, 8: three without improvement */
    char path[FTC_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/best.ftc", c.out);
    json_t *st = NULL;
    ftc_model *m2 = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    assert_int_equal(ftc_train_prepare_model(m2, &c, NUM_LABELS, &err), FTC_OK);
    if (ftc_checkpoint_load(path, m2, NULL, &st, &err) != FTC_OK) fail_msg("%s", err.msg);
    assert_int_equal(json_integer_value(json_object_get(st, "step")), 2);
    json_decref(st);
    ftc_model_free(m2);
    ftc_model_free(m);
    ftc_dataset_free(&d);
    ftc_dataset_free(&val);
}

/* A stop request (as SIGTERM makes one) the nth time the run reaches point. */
typedef struct { const char *point; int n, seen; volatile sig_atomic_t flag; } stop_at;
static void stop_at_point(void *ctx, const char *point) {
    stop_at *s = ctx;
    if (!strcmp(point, s->point) && ++s->seen == s->n) s->flag = 1;
}

/* ---- --average-last: the model is the mean of the weights after each of the last steps ---- */
static void test_average_last_is_mean_of_tail(void **state) {
    (void)state;
    ftc_dataset d = make_data(FTC_TASK_CLASSIFY, 32, 13), val = make_data(FTC_TASK_CLASSIFY, 8, 14);
    ftc_train_config c;
    base_config(&c, FTC_TASK_CLASSIFY, FTC_METHOD_FULL, "avg");
    c.max_steps = 12;
    c.average_last = 0.25; /* the last 3 steps */
    c.save_every = 1;
    c.save_total_limit = 0; /* checkpoint-<step>.ftc for every step */
    ftc_model *m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    ftc_train_result r;
    ftc_err err;
    if (ftc_train_run(m, &c, &d, NULL, true, &r, &err) != FTC_OK) fail_msg("%s", err.msg);
    /* the mean of the weights of steps 10, 11, 12 from the step checkpoints, in double */
    ftc_model *w = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    assert_int_equal(ftc_train_prepare_model(w, &c, NUM_LABELS, &err), FTC_OK);
    int np = ftc_model_n_params(w);
    double **mean = calloc((size_t)np, sizeof *mean);
    for (int step = 9; step <= 12; step++) {
        char path[FTC_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/checkpoint-%d.ftc", c.out, step);
        if (step == 12) snprintf(path, sizeof path, "%s/checkpoint.ftc", c.out);
        if (ftc_checkpoint_load(path, w, NULL, NULL, &err) != FTC_OK) fail_msg("%s", err.msg);
        for (int i = 0; i < np; i++) {
            ftc_param *p = ftc_model_param(w, i);
            if (!mean[i]) mean[i] = calloc((size_t)p->numel, sizeof **mean);
            for (int64_t j = 0; step > 9 && j < p->numel; j++) mean[i][j] += p->data[j] / 3.0;
        }
    }
    /* the run's model is the mean (f32 running mean: a few ulps), not the last step's weights */
    double max_diff = 0, max_moved = 0;
    for (int i = 0; i < np; i++) {
        ftc_param *p = ftc_model_param(m, i), *last = ftc_model_param(w, i);
        for (int64_t j = 0; j < p->numel; j++) {
            double e = fabs(p->data[j] - mean[i][j]) / (fabs(mean[i][j]) + 1e-3);
            if (e > max_diff) max_diff = e;
            if (fabs(last->data[j] - p->data[j]) > max_moved) max_moved = fabs(last->data[j] - p->data[j]);
        }
        free(mean[i]);
    }
    free(mean);
    assert_true(max_diff < 1e-5);
    assert_true(max_moved > 1e-4);
    ftc_model_free(w);
    ftc_model_free(m);
    /* with validation: the evaluations before the window score the weights, the one inside it (step 12) the average */
    c.save_every = 0;
    c.eval_every = 3;
    double loss_avg[5] = {0}, loss_off[5] = {0};
    for (int k = 0; k < 2; k++) {
        snprintf(c.out, sizeof c.out, "%s/avg_val_%d", tmp_root, k);
        c.average_last = k ? 0 : 0.25;
        m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
        if (ftc_train_run(m, &c, &d, &val, true, &r, &err) != FTC_OK) fail_msg("%s", err.msg);
        ftc_model_free(m);
        char path[FTC_PATH_MAX + 32], line[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", c.out);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
            json_t *o = json_loads(line, 0, NULL);
            json_int_t step = json_integer_value(json_object_get(o, "step"));
            if (json_object_get(o, "val_loss") && step % 3 == 0 && step <= 12)
                (k ? loss_off : loss_avg)[step / 3] = json_number_value(json_object_get(o, "val_loss"));
            json_decref(o);
        }
        fclose(f);
    }
    for (int e = 1; e <= 3; e++) assert_true(loss_avg[e] == loss_off[e] && loss_avg[e] > 0);
    assert_true(loss_avg[4] > 0 && loss_off[4] > 0 && loss_avg[4] != loss_off[4]);
    /* stopped after step 11 (inside the window) and resumed: the same evaluations and model as without a stop */
    c.average_last = 0.25;
    c.eval_every = 1;
    snprintf(c.out, sizeof c.out, "%s/avg_ref", tmp_root);
    ftc_model *ref = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    if (ftc_train_run(ref, &c, &d, &val, true, &r, &err) != FTC_OK) fail_msg("%s", err.msg);
    stop_at stop = {.point = "eval-logged", .n = 11};
    snprintf(c.out, sizeof c.out, "%s/avg_stopped", tmp_root);
    c.stop = &stop.flag, c.at_point = stop_at_point, c.at_point_ctx = &stop;
    m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    if (ftc_train_run(m, &c, &d, &val, true, &r, &err) != FTC_OK) fail_msg("%s", err.msg);
    assert_true(r.interrupted);
    assert_int_equal(r.steps, 11);
    ftc_model_free(m);
    c.stop = NULL, c.at_point = NULL, c.resume = true;
    m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    if (ftc_train_run(m, &c, &d, &val, true, &r, &err) != FTC_OK) fail_msg("%s", err.msg);
    assert_same_params(ref, m, "average: stopped at step 11 and resumed");
    char ra[FTC_PATH_MAX + 32];
    snprintf(ra, sizeof ra, "%s/avg_ref", tmp_root);
    assert_true(metrics_diff_lines(ra, c.out, 12) == 0);
    ftc_model_free(m);
    ftc_model_free(ref);
    ftc_dataset_free(&d);
    ftc_dataset_free(&val);
}

/* ---- a run dir refuses to be overwritten; a checkpoint for another method is refused ---- */
static void test_run_dir_guards(void **state) {
    (void)state;
    ftc_dataset d = make_data(FTC_TASK_CLASSIFY, 16, 8);
    ftc_train_config c;
    base_config(&c, FTC_TASK_CLASSIFY, FTC_METHOD_HEAD, "guard");
    c.max_steps = 2;
    ftc_model *m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    ftc_train_result r;
    ftc_err err;
    assert_int_equal(ftc_train_run(m, &c, &d, NULL, true, &r, &err), FTC_OK);
    ftc_model_free(m);
    m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    assert_int_equal(ftc_train_run(m, &c, &d, NULL, true, &r, &err), FTC_E_USAGE);
    assert_non_null(strstr(err.msg, "--resume"));
    ftc_model_free(m);
    /* resuming with another method: the checkpoint does not fit */
    c.method = FTC_METHOD_FULL;
    c.resume = true;
    m = make_model(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY);
    assert_int_equal(ftc_train_run(m, &c, &d, NULL, true, &r, &err), FTC_E_INPUT);
    assert_non_null(strstr(err.msg, "checkpoint.ftc"));
    ftc_model_free(m);
    ftc_dataset_free(&d);
}

/* ---- ftc eval --model RUNDIR: the run's saved model (best; LoRA: base + adapter/) reloaded from disk ---- */
static void write_jsonl(const ftc_dataset *d, ftc_task task, const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < d->n; i++) {
        fprintf(f, "{\"input_ids\": [");
        for (int t = 0; t < d->ex[i].len; t++) fprintf(f, "%s%d", t ? ", " : "", d->ex[i].ids[t]);
        if (task == FTC_TASK_CLASSIFY) fprintf(f, "], \"label\": %d}\n", d->ex[i].label);
        else {
            fprintf(f, "], \"labels\": [");
            for (int t = 0; t < d->ex[i].len; t++) fprintf(f, "%s%d", t ? ", " : "", d->ex[i].labels[t]);
            fprintf(f, "]}\n");
        }
    }
    fclose(f);
}

static void run_dir_case(ftc_family fam, ftc_task task, ftc_method method) {
    char name[64], data_path[FTC_PATH_MAX + 32];
    snprintf(name, sizeof name, "evalrun_%s_%s", family_name(fam), ftc_method_name(method));
    ftc_train_config c;
    base_config(&c, task, method, name);
    c.max_steps = 6;
    ftc_dataset train = make_data(task, 24, 9), val = make_data(task, 8, 10);
    ftc_model *m = make_model(fam, task);
    ftc_train_result res;
    ftc_err err;
    if (method == FTC_METHOD_LORA) {
        /* a LoRA run keeps only its adapter: RUNDIR loads as the base named in config.resolved.json + adapter/,
         * so the base must be on disk */
        snprintf(c.model, sizeof c.model, "%s/%s_base", tmp_root, name);
        if (ftc_model_save(m, c.model, &err) != FTC_OK) fail_msg("save base: %s", err.msg);
    }
    if (ftc_train_run(m, &c, &train, &val, true, &res, &err) != FTC_OK) fail_msg("%s: %s", name, err.msg);
    assert_true(ftc_is_run_dir(c.out));
    char model_dir[FTC_PATH_MAX + 64];
    snprintf(model_dir, sizeof model_dir, "%s/model/config.json", c.out);
    assert_int_equal(ftc_file_exists(model_dir), method != FTC_METHOD_LORA);
    /* in memory: the model the run ended with (best weights, merged) */
    double want = eval_loss(m, task, &val);
    snprintf(data_path, sizeof data_path, "%s/val.jsonl", c.out);
    write_jsonl(&val, task, data_path);
    json_t *j = NULL;
    if (ftc_run_dir_eval(c.out, data_path, 8, &j, &err) != FTC_OK) fail_msg("run dir eval: %s", err.msg);
    double got = json_number_value(json_object_get(j, "loss"));
    printf("  %s: eval from disk loss %.6f, in memory %.6f\n", name, got, want);
    assert_true(fabs(got - want) < 1e-5 * (1 + want));
    assert_string_equal(json_string_value(json_object_get(j, "task")), ftc_task_name(task));
    json_decref(j);
    assert_false(ftc_is_run_dir(tmp_root));
    ftc_model_free(m);
    ftc_dataset_free(&train);
    ftc_dataset_free(&val);
}
static void test_eval_run_dir(void **state) {
    (void)state;
    run_dir_case(FTC_FAMILY_BERT, FTC_TASK_CLASSIFY, FTC_METHOD_LORA);
    run_dir_case(FTC_FAMILY_GPT2, FTC_TASK_CAUSAL_LM, FTC_METHOD_HEAD);
    run_dir_case(FTC_FAMILY_LLAMA, FTC_TASK_CAUSAL_LM, FTC_METHOD_LORA);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(tmp_root, sizeof tmp_root, "train"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(tmp_root); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_gpt2),
        cmocka_unit_test(test_loss_falls_llama),
        cmocka_unit_test(test_loss_falls_bert),
        cmocka_unit_test(test_lora_identity_and_merge),
        cmocka_unit_test(test_grad_accumulation_equals_big_batch),
        cmocka_unit_test(test_resume_after_kill_is_bit_identical),
        cmocka_unit_test(test_nan_loss_stops_cleanly),
        cmocka_unit_test(test_poisoned_weight_diverges_at_first_micro_batch),
        cmocka_unit_test(test_early_stopping),
        cmocka_unit_test(test_feature_cache_equals_every_step),
        cmocka_unit_test(test_run_dir_guards),
        cmocka_unit_test(test_average_last_is_mean_of_tail),
        cmocka_unit_test(test_eval_run_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

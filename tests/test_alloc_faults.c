/* Out-of-memory paths, tested the SQLite way (issue 15): an allocation hook (include/ftc/alloc.h) fails the Nth
 * allocation the library makes, for N = 1, 2, ... until the operation completes without reaching N. Every run
 * must return FTC_OK (the allocation had a fallback) or FTC_E_NOMEM, never crash; under ASan (make test-asan)
 * LeakSanitizer checks at exit that no failed path leaked. Operations: tokenizer load, model load, a training
 * step (reserve, forward, backward, optimizer init and step), checkpoint save, model save and checkpoint load. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ftc/alloc.h"
#include "ftc/export.h"
#include "ftc/model.h"
#include "ftc/tokenizer.h"
#include "ftc/train.h"

typedef struct {
    long fail_at, calls;
    bool failed;
} fault;

/* Called at each injected failure: a breakpoint here (gdb) shows the allocation that fails. */
__attribute__((noinline)) static void fault_fired(size_t bytes) { __asm__ volatile("" ::"r"(bytes)); }

static bool fail_nth(void *ud, size_t bytes) {
    fault *f = ud;
    if (++f->calls != f->fail_at) return true;
    f->failed = true;
    fault_fired(bytes);
    return false;
}

/* An operation under test; setup it needs without faults runs between unhooked() and hooked(f). */
typedef ftc_status (*op_fn)(void *ctx, fault *f, ftc_err *err);
static void unhooked(void) { ftc_alloc_hook_set(NULL, NULL); }
static void hooked(fault *f) { ftc_alloc_hook_set(fail_nth, f); }

/* Counts op's allocations in one run without faults, then runs op with the Nth allocation failing for every N
 * up to that count (every step-th N past the first 100 when there are more than max_runs, to keep the test short)
 * and checks each status. Returns the number of runs whose injected failure surfaced as FTC_E_NOMEM. */
static long sweep(const char *what, op_fn op, void *ctx, long max_runs) {
    fault count = {0, 0, false};
    ftc_err err = {FTC_OK, ""};
    hooked(&count);
    ftc_status s = op(ctx, &count, &err);
    unhooked();
    if (s != FTC_OK) fail_msg("%s: failed without an injected fault: %s", what, err.msg);
    const char *env = getenv("FTC_FAULT_RUNS"); /* more for a thorough local sweep */
    if (env && atol(env) > 100) max_runs = atol(env);
    long total = count.calls, step = total > max_runs ? (total - 100) / (max_runs - 100) + 1 : 1;
    long runs = 0, nomem = 0, absorbed = 0;
    long only = getenv("FTC_FAULT_ONLY") ? atol(getenv("FTC_FAULT_ONLY")) : 0; /* one N, for a debugger */
    for (long n = only ? only : 1; n <= total; n += only ? total : n < 100 ? 1 : step) {
        fault f = {n, 0, false};
        if (getenv("FTC_FAULT_VERBOSE")) fprintf(stderr, "%s: failing allocation %ld of %ld\n", what, n, total);
        hooked(&f);
        s = op(ctx, &f, &err);
        unhooked();
        runs++;
        if (!f.failed) { /* fewer allocations this time (a cache already filled): done */
            if (s != FTC_OK) fail_msg("%s: failed without an injected fault: %s", what, err.msg);
            continue;
        }
        if (s == FTC_E_NOMEM) nomem++;
        else if (s == FTC_OK) absorbed++;
        else fail_msg("%s: allocation %ld of %ld failed, status %d (want FTC_E_NOMEM): %s", what, n, total, s, err.msg);
    }
    printf("  %s: %ld allocations; %ld of them failed in turn (every %ld past the 100th): %ld -> FTC_E_NOMEM, %ld "
           "absorbed by a fallback\n", what, total, runs, step, nomem, absorbed);
    assert_true(total > 0 && (nomem > 0 || only)); /* the sweep covered something */
    return nomem;
}

static const char *MODEL = "tests/fixtures/models/gpt2";

/* ---- operations ---- */

static ftc_status op_tokenizer_load(void *ctx, fault *f, ftc_err *err) {
    (void)f;
    ftc_tokenizer *t = NULL;
    ftc_status s = ftc_tokenizer_load(ctx, &t, err);
    if (!s) ftc_tokenizer_free(t);
    return s;
}

static ftc_status op_model_load(void *ctx, fault *f, ftc_err *err) {
    (void)ctx, (void)f;
    ftc_model *m = NULL;
    ftc_status s = ftc_model_load(MODEL, FTC_TASK_CAUSAL_LM, &m, err);
    if (!s) ftc_model_free(m);
    return s;
}

enum { B = 2, T = 8 };

/* A fresh model (loaded without faults), then under faults: reserve, a training forward and backward, the
 * optimizer's init and one step. */
static ftc_status op_train_step(void *ctx, fault *f, ftc_err *err) {
    (void)ctx;
    ftc_model *m = NULL;
    unhooked();
    assert_int_equal(ftc_model_load(MODEL, FTC_TASK_CAUSAL_LM, &m, err), FTC_OK);
    int32_t ids[B * T], labels[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7 + 3) % 50, labels[i] = (i * 5 + 1) % 50;
    ftc_batch batch = {.B = B, .T = T, .ids = ids, .labels = labels};
    int np = ftc_model_n_params(m);
    ftc_param **params = malloc(sizeof *params * (size_t)np);
    assert_non_null(params);
    for (int i = 0; i < np; i++) params[i] = ftc_model_param(m, i);
    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    ftc_optimizer o;
    memset(&o, 0, sizeof o);
    float loss = 0;
    hooked(f);
    ftc_status s = ftc_model_reserve(m, B, T, err);
    if (!s) {
        ftc_model_zero_grad(m);
        s = ftc_model_forward(m, &batch, true, &loss, err);
    }
    if (!s) s = ftc_model_backward(m, err);
    bool optim = false;
    if (!s) optim = !(s = ftc_optim_init(&o, params, np, &h, err));
    if (!s) ftc_optim_step(&o, 1e-3f);
    unhooked();
    if (optim) ftc_optim_free(&o);
    free(params);
    ftc_model_free(m);
    hooked(f);
    return s;
}

/* A model with optimizer state (set up without faults), then under faults: ftc_checkpoint_save, and
 * (save_model) ftc_model_save, into a fresh directory. */
typedef struct {
    char dir[256], ref[256]; /* ref: the same save made without faults */
    bool save_model, export_model; /* export_model: ftc_export_hf, as ftc train writes RUNDIR/model */
} save_ctx;

/* Whether dir/name and ref/name hold the same bytes. */
static bool same_file(const char *dir, const char *ref, const char *name) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/%s", dir, name);
    snprintf(pb, sizeof pb, "%s/%s", ref, name);
    FILE *a = fopen(pa, "rb"), *b = fopen(pb, "rb");
    bool same = a && b;
    while (same) {
        int ca = fgetc(a), cb = fgetc(b);
        same = ca == cb;
        if (ca == EOF) break;
    }
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}

/* The fixture model with its AdamW state, made without faults: what a checkpoint save writes and a load fills */
typedef struct {
    ftc_model *m;
    ftc_param **params;
    ftc_optimizer o;
} trained_model;

static void trained_model_open(trained_model *t, ftc_err *err) {
    t->m = NULL;
    assert_int_equal(ftc_model_load(MODEL, FTC_TASK_CAUSAL_LM, &t->m, err), FTC_OK);
    int np = ftc_model_n_params(t->m);
    t->params = malloc(sizeof *t->params * (size_t)np);
    assert_non_null(t->params);
    for (int i = 0; i < np; i++) t->params[i] = ftc_model_param(t->m, i);
    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    assert_int_equal(ftc_model_reserve(t->m, B, T, err), FTC_OK);
    assert_int_equal(ftc_optim_init(&t->o, t->params, np, &h, err), FTC_OK);
}

static void trained_model_close(trained_model *t) {
    ftc_optim_free(&t->o);
    free(t->params);
    ftc_model_free(t->m);
}

static ftc_status op_save(void *ctx, fault *f, ftc_err *err) {
    save_ctx *c = ctx;
    trained_model t;
    unhooked();
    trained_model_open(&t, err);
    json_t *state = json_pack("{s:i, s:b}", "step", 3, "finished", 0);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.ftc", c->dir);
    hooked(f);
    char model_dir[512];
    snprintf(model_dir, sizeof model_dir, "%s/model", c->dir);
    ftc_export_opts eo = {.overwrite = true};
    ftc_status s = c->export_model ? ftc_export_hf(t.m, model_dir, &eo, err)
                   : c->save_model ? ftc_model_save(t.m, c->dir, err) : ftc_checkpoint_save(path, t.m, &t.o, state, err);
    unhooked();
    /* a save that absorbed a failed allocation (or ran without one) wrote exactly what a save without faults
     * writes: nothing dropped */
    if (s == FTC_OK && c->ref[0]) {
        if (c->export_model) {
            char a[300], b[300];
            snprintf(a, sizeof a, "%s/model", c->dir);
            snprintf(b, sizeof b, "%s/model", c->ref);
            assert_true(same_file(a, b, "model.safetensors") && same_file(a, b, "config.json"));
        } else if (c->save_model) assert_true(same_file(c->dir, c->ref, "model.safetensors") && same_file(c->dir, c->ref, "config.json"));
        else assert_true(same_file(c->dir, c->ref, "checkpoint.ftc"));
    }
    json_decref(state);
    trained_model_close(&t);
    hooked(f);
    return s;
}

/* A checkpoint with moments (written without faults), loaded under faults into a fresh model and optimizer:
 * what --resume does. */
static ftc_status op_checkpoint_load(void *ctx, fault *f, ftc_err *err) {
    const char *path = ctx;
    trained_model t;
    unhooked();
    trained_model_open(&t, err);
    json_t *st = NULL;
    hooked(f);
    ftc_status s = ftc_checkpoint_load(path, t.m, &t.o, &st, err);
    unhooked();
    if (!s) assert_int_equal(json_integer_value(json_object_get(st, "step")), 3);
    json_decref(st);
    trained_model_close(&t);
    hooked(f);
    return s;
}

static void test_tokenizer_load(void **state) {
    (void)state;
    const char *shared = getenv("FTC_SHARED_DATA");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/models/stories260K-hf", shared ? shared : "");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!shared || access(path, R_OK)) skip(); /* a 512-token BPE: small enough to fail every allocation */
    sweep("tokenizer load (stories260K BPE)", op_tokenizer_load, dir, 400);
}

static void test_model_load(void **state) {
    (void)state;
    sweep("model load (GPT-2 fixture)", op_model_load, NULL, 400);
}

static void test_train_step(void **state) {
    (void)state;
    sweep("training step (GPT-2 fixture: reserve, forward, backward, AdamW)", op_train_step, NULL, 400);
}

static void test_saves(void **state) {
    (void)state;
    save_ctx c = {"", "", false, false};
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char ref[256];
    snprintf(c.dir, sizeof c.dir, "%s/ftc_alloc_faults_XXXXXX", tmp);
    snprintf(ref, sizeof ref, "%s/ftc_alloc_faults_ref_XXXXXX", tmp);
    assert_non_null(mkdtemp(c.dir));
    assert_non_null(mkdtemp(ref));
    fault none = {0, 0, false};
    ftc_err err = {FTC_OK, ""};
    for (int model = 0; model < 3; model++) {
        c.save_model = model == 1;
        c.export_model = model == 2;
        snprintf(c.ref, sizeof c.ref, "%s", ref); /* the reference save, into ref, then the sweep into dir */
        save_ctx r = c;
        snprintf(r.dir, sizeof r.dir, "%s", ref);
        r.ref[0] = 0;
        assert_int_equal(op_save(&r, &none, &err), FTC_OK);
        unhooked();
        sweep(model == 2 ? "model export (RUNDIR/model)" : model ? "model save" : "checkpoint save", op_save, &c, 400);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", c.dir, ref);
    assert_int_equal(system(cmd), 0);
}

static void test_checkpoint_load(void **state) {
    (void)state;
    save_ctx c = {"", "", false, false};
    snprintf(c.dir, sizeof c.dir, "%s/ftc_alloc_faults_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(c.dir));
    fault none = {0, 0, false};
    ftc_err err = {FTC_OK, ""};
    assert_int_equal(op_save(&c, &none, &err), FTC_OK);
    unhooked();
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.ftc", c.dir);
    sweep("checkpoint load (resume)", op_checkpoint_load, path, 400);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c.dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_load),
        cmocka_unit_test(test_model_load),
        cmocka_unit_test(test_train_step),
        cmocka_unit_test(test_saves),
        cmocka_unit_test(test_checkpoint_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

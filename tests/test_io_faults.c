/* Write faults inside checkpoint and model saves (issue 15), through the I/O hook (include/ftc/base.h): the
 * Nth write, fsync or rename of a save fails with ENOSPC or EIO, for every N the save makes. Each must return
 * FTC_E_IO naming the file and the cause, leave the previous file byte for byte (and loadable), and leave no
 * temporary behind. tests/cli_io_faults.sh checks the same through `ftc train` and --resume. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/export.h"
#include "ftc/model.h"
#include "ftc/train.h"

static const char *MODEL = "tests/fixtures/models/gpt2";

typedef struct {
    ftc_io_op op;
    long fail_at, calls;
    int err;
} io_fault;

static int fail_nth(void *ud, ftc_io_op op, const char *path) {
    (void)path;
    io_fault *f = ud;
    return op == f->op && ++f->calls == f->fail_at ? f->err : 0;
}

static char *slurp(const char *path, size_t *len) {
    char *text = NULL;
    ftc_err err;
    return ftc_read_file(path, &text, len, &err) == FTC_OK ? text : NULL;
}

/* Whether dir holds an entry with ".tmp." or ".old." in its name. */
static bool has_temp(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d))) found |= strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".old.");
    closedir(d);
    return found;
}

static void perturb(ftc_model *m) {
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        for (int64_t k = 0; k < p->numel; k++) p->data[k] += 0.5f;
    }
}

/* save(kind) with every op failing in turn; file: what it writes, which must keep the previous save's bytes */
static void sweep(const char *what, ftc_status (*save)(ftc_model *, const char *, ftc_err *), const char *dir,
                  const char *file) {
    ftc_model *m = NULL;
    ftc_err err;
    assert_int_equal(ftc_model_load(MODEL, FTC_TASK_CAUSAL_LM, &m, &err), FTC_OK);
    assert_int_equal(save(m, dir, &err), FTC_OK); /* the previous save */
    size_t len0;
    char *before = slurp(file, &len0);
    assert_non_null(before);
    perturb(m); /* so a save that went through would change the file */
    const ftc_io_op ops[] = {FTC_IO_WRITE, FTC_IO_FSYNC, FTC_IO_RENAME};
    const char *names[] = {"write", "fsync", "rename"};
    for (int o = 0; o < 3; o++) {
        io_fault count = {ops[o], 0, 0, 0};
        ftc_io_hook_set(fail_nth, &count); /* counts only: fail_at 0 never matches */
        assert_int_equal(save(m, dir, &err), FTC_OK);
        ftc_io_hook_set(NULL, NULL);
        assert_true(count.calls > 0);
        for (long n = 1; n <= count.calls; n++) {
            /* put the previous file back (the counting save replaced it) */
            ftc_err werr;
            assert_int_equal(ftc_write_file_atomic(file, before, len0, &werr), FTC_OK);
            int e = n % 2 ? ENOSPC : EIO;
            io_fault f = {ops[o], n, 0, e};
            ftc_io_hook_set(fail_nth, &f);
            ftc_status s = save(m, dir, &err);
            ftc_io_hook_set(NULL, NULL);
            if (s != FTC_E_IO || !strstr(err.msg, strerror(e)) || !strstr(err.msg, dir))
                fail_msg("%s: %s %ld of %ld failing with %s: status %d, '%s'", what, names[o], n, count.calls,
                         strerror(e), s, err.msg);
            size_t len;
            char *after = slurp(file, &len);
            if (!after || len != len0 || memcmp(after, before, len))
                fail_msg("%s: %s %ld of %ld failed: %s changed", what, names[o], n, count.calls, file);
            free(after);
            assert_false(has_temp(dir));
        }
        printf("  %s: %ld %s calls, each failed in turn: FTC_E_IO, previous file intact\n", what, count.calls, names[o]);
    }
    free(before);
    ftc_model_free(m);
}

static ftc_status save_ckpt(ftc_model *m, const char *dir, ftc_err *err) {
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint.ftc", dir);
    json_t *state = json_pack("{s:i}", "step", 3);
    ftc_status s = ftc_checkpoint_save(path, m, NULL, state, err);
    json_decref(state);
    return s;
}

static char tmpdir[512];
static void make_dir(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/ftc_io_faults_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
}
static void remove_dir(void) {
    ftc_err err;
    assert_int_equal(ftc_remove_tree(tmpdir, &err), FTC_OK);
}

static void test_checkpoint_save(void **state) {
    (void)state;
    make_dir();
    char file[600];
    snprintf(file, sizeof file, "%s/checkpoint.ftc", tmpdir);
    sweep("checkpoint save", save_ckpt, tmpdir, file);
    /* and the file left is a checkpoint that loads */
    ftc_model *m = NULL;
    ftc_err err;
    json_t *st = NULL;
    assert_int_equal(ftc_model_load(MODEL, FTC_TASK_CAUSAL_LM, &m, &err), FTC_OK);
    assert_int_equal(ftc_checkpoint_load(file, m, NULL, &st, &err), FTC_OK);
    json_decref(st);
    ftc_model_free(m);
    remove_dir();
}

/* The model as ftc train writes RUNDIR/model and ftc export its output: staged, then swapped into place. */
static ftc_status save_model(ftc_model *m, const char *dir, ftc_err *err) {
    char out[600];
    snprintf(out, sizeof out, "%s/model", dir);
    ftc_export_opts o = {.overwrite = true};
    return ftc_export_hf(m, out, &o, err);
}

static void test_model_save(void **state) {
    (void)state;
    make_dir();
    char file[600], model[600];
    snprintf(file, sizeof file, "%s/model/model.safetensors", tmpdir);
    snprintf(model, sizeof model, "%s/model", tmpdir);
    sweep("model save (ftc_export_hf: staged directory, swapped in)", save_model, tmpdir, file);
    ftc_model *m = NULL;
    ftc_err err;
    assert_int_equal(ftc_model_load(model, FTC_TASK_CAUSAL_LM, &m, &err), FTC_OK);
    ftc_model_free(m);
    remove_dir();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_save),
        cmocka_unit_test(test_model_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

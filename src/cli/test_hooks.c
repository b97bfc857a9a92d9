/* Test hooks of the CLI, read from the environment (docs/train.md "Resume"); the library only calls hooks a
 * caller set through its API. */
#include "cli.h"
#include "ftc/base.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ftc_io_op op;
    char name[256];
    long n, saves, fsyncs;
    int err;
    bool fired;
} io_fault;

static io_fault the_fault; /* the CLI's, for the one process: the library keeps none */

/* Fails f->op inside the Nth save of a path that ends with f->name (a save ends with its rename): its first
 * write, its fsync or its rename. */
static int io_fault_hook(void *ud, ftc_io_op op, const char *path) {
    io_fault *f = ud;
    size_t lp = strlen(path), ln = strlen(f->name);
    if (f->fired || lp < ln || strcmp(path + lp - ln, f->name)) return 0;
    bool hit = op == f->op && (op == FTC_IO_WRITE ? f->saves == f->n - 1
                               : op == FTC_IO_FSYNC ? ++f->fsyncs == f->n : f->saves + 1 == f->n);
    if (op == FTC_IO_RENAME) f->saves++;
    if (!hit) return 0;
    f->fired = true;
    return f->err;
}

bool cli_test_io_fault_from_env(void) {
    const char *v = getenv("FTC_TEST_IO_FAULT");
    if (!v || !*v) return false;
    char op[16] = "", err[16] = "ENOSPC";
    io_fault *f = &the_fault;
    memset(f, 0, sizeof *f);
    f->n = 1;
    /* OP:NAME[:N[:ERRNO]] */
    if (sscanf(v, "%15[a-z]:%255[^:]:%ld:%15s", op, f->name, &f->n, err) < 2 || f->n < 1) return false;
    f->op = !strcmp(op, "write") ? FTC_IO_WRITE : !strcmp(op, "fsync") ? FTC_IO_FSYNC : !strcmp(op, "rename") ? FTC_IO_RENAME : -1;
    f->err = !strcmp(err, "EIO") ? EIO : !strcmp(err, "ENOSPC") ? ENOSPC : 0;
    if ((int)f->op < 0 || !f->err) return false;
    ftc_io_hook_set(io_fault_hook, f);
    return true;
}

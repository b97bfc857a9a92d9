/* Shared by the subcommands: each is `int cmd_NAME(int argc, char **argv)` in cmd_NAME.c,
 * registered in main.c, returning the process exit code (0 ok, 1 usage, 2 bad input, 3 internal). */
#ifndef FTC_CLI_H
#define FTC_CLI_H
#include "ftc/infer.h"
#include "ftc/status.h"
#include <stdbool.h>

/* Prints "ftc CMD: error: MSG" to stderr and returns the exit code for err->code. */
int cli_fail(const char *cmd, const ftc_err *err);
/* Prints "ftc CMD: MSG" + a hint to run --help, returns 1. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv has -h or --help anywhere. */
bool cli_wants_help(int argc, char **argv);
/* Strict number parsing for flag values: the whole string must be a number within [lo, hi]. */
bool cli_parse_long(const char *s, long lo, long hi, long *out);
bool cli_parse_float(const char *s, double lo, double hi, float *out);
/* The sampling flags generate and chat share: --temperature, --top-k, --top-p, --seed (flag takes value).
 * Returns -1 when flag is not one of them, 0 when it was parsed into s/seed, else the usage exit code (1). */
int cli_sampling_flag(const char *cmd, const char *flag, const char *value, ftc_sampler *s, long *seed);

/* 0 when everything written to standard output so far reached it; else prints "ftc CMD: error: writing
 * standard output: CAUSE" (ENOSPC, EPIPE, EIO, ...) once and returns 3. Streaming commands call it to stop
 * early; main calls it (and checks close and stderr) after every command, so no write error is lost. */
int cli_check_stdout(const char *cmd);

int cmd_init(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_retrieve(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* ftc eval on a training run directory (src/cli/eval_rundir.c). */
int cli_eval_run_dir(const char *rundir, const char *data, bool as_json, const char *compare_base);
/* ftc eval on a plain HF classifier directory (eval_rundir.c); max_len <= 0: the model's positions. */
int cli_eval_classifier_dir(const char *dir, const char *data, int max_len, bool as_json, const char *compare_base);

int cmd_tokenize(int argc, char **argv);
int cmd_data(int argc, char **argv);
#endif

/* Shared by the subcommands: each is `int cmd_NAME(int argc, char **argv)` in cmd_NAME.c,
 * registered in main.c, returning the process exit code (0 ok, 1 usage, 2 bad input, 3 internal). */
#ifndef FTC_CLI_H
#define FTC_CLI_H
#include "ftc/infer.h"
#include "ftc/train.h"
#include "ftc/status.h"
#include <stdbool.h>

/* ---- data parallelism over MPI (src/cli/dp_mpi.c, docs/distributed.md) ----
 * Under a launcher (mpirun -np N: OMPI_COMM_WORLD_SIZE / PMI_SIZE), starts MPI and points *dp at this rank's
 * ftc_train_dp (NULL for one process); not launched: nothing. Returns 0, or an exit code after saying why (N > 1 in
 * a build without MPI). cli_dp_end: MPI_Finalize, once, after the last collective. cli_dp_abort: ends every rank
 * (MPI_Abort) when a rank fails alone and the others would wait for it forever; nothing with one process. */
bool cli_dp_built(void);
int cli_dp_begin(const ftc_train_dp **dp);
void cli_dp_end(void);
void cli_dp_abort(int rc);

/* Prints "ftc CMD: error: MSG" to stderr and returns the exit code for err->code. */
int cli_fail(const char *cmd, const ftc_err *err);
/* Prints "ftc CMD: MSG" + a hint to run --help, returns 1. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv has -h or --help anywhere. */
bool cli_wants_help(int argc, char **argv);
/* Strict number parsing for flag values: the whole string must be a number within [lo, hi]. */
bool cli_parse_long(const char *s, long lo, long hi, long *out);
/* --kv-type (generate, chat, serve) is read by ftc_kv_type_parse (ftc/infer.h); its names for the usage error */
#define CLI_KV_TYPES "f16, f32 or q8_0"
/* The cache those commands take without --kv-type: f16, as llama.cpp's default (half the bytes a decoding step
 * reads; the library's own default is f32) */
#define CLI_KV_DEFAULT FTC_KV_F16
bool cli_parse_float(const char *s, double lo, double hi, float *out);
/* The sampling options generate and chat share (CLI_SAMPLING_OPTS): flag is the name without "--"
 * ("temperature", "top-k", "top-p", "seed"). Returns -1 when flag is not one of them, 0 when it was parsed
 * into s/seed, else the usage exit code (1). */
int cli_sampling_flag(const char *cmd, const char *flag, const char *value, ftc_sampler *s, long *seed);

/* ---- options (src/cli/opts.c): one parser, one set of conventions for every command ----
 * A table of the command's options, ending with {NULL}: name without "--" ("-n" for a short one), is_bool
 * (false/true, or CLI_VALUE_OPTIONAL) for flags that stand alone (--flag, --flag true|false, --flag=false,
 * --no-flag), canon: the name an alias stands for. */
enum {
    CLI_VALUE_OPTIONAL = 2 /* --opt VALUE, --opt=VALUE, or a bare --opt (at the end or before another option):
                              its value is then "" */
};
typedef struct {
    const char *name;
    int is_bool; /* false: takes a value; true: a boolean; CLI_VALUE_OPTIONAL */
    const char *canon;
} cli_opt;
enum {
    CLI_HAS_POSITIONAL = 1, /* the command takes positional arguments: after --flag only true/false are its value */
    CLI_POSITIONAL_ENDS = 2 /* the first positional argument ends the options (texts follow; "--" also ends them) */
};
typedef struct {
    const char *cmd;
    int argc, i, flags;
    char **argv;
    const cli_opt *opts;
    bool rest;
} cli_args;
void cli_args_init(cli_args *p, const char *cmd, int argc, char **argv, int first, const cli_opt *opts, int flags);
/* The next argument: 1 with *name the option's (canonical) name and *value its value ("true"/"false" for
 * booleans), or *name NULL and *value a positional argument; 0 at the end; -1 after printing a usage error (exit
 * code 1): `while ((r = cli_next(&p, &f, &v)) > 0) {...}` then `if (r < 0) return 1;`. */
int cli_next(cli_args *p, const char **name, const char **value);
/* "unknown option '--NAME'" with the closest names of p's table; returns 1. */
int cli_unknown_option(const cli_args *p, const char *name);
/* A boolean option's value as cli_next gives it. */
bool cli_true(const char *v);
/* The options generate and chat share (sampling), to put in their tables. */
#define CLI_SAMPLING_OPTS {"temperature", false, NULL}, {"top-k", false, NULL}, {"top-p", false, NULL}, {"seed", false, NULL}
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
int cmd_plan(int argc, char **argv); /* in cmd_train.c: it shares train's options */
int cmd_serve(int argc, char **argv);
/* ftc eval on a training run directory (src/cli/eval_rundir.c). */
int cli_eval_run_dir(const char *rundir, const char *data, bool as_json, const char *compare_base);
/* Prints one evaluation j (as ftc_train_evaluate gives it), or with compare the base's beside it (note: what the
 * base column is; tuned_name: the tuned model), as a table or --json; takes both references. */
int cli_print_eval(struct json_t *j, struct json_t *base, const char *compare, const char *note,
                   const char *tuned_name, bool as_json);
/* The end of ftc train: the run's model (and the base it was trained from, unless only a head was trained) on
 * d (the validation examples, named data_label), saved as RUNDIR/eval.json; print: the base | tuned table. */
ftc_status cli_eval_record(const char *rundir, const ftc_dataset *d, const char *data_label, bool print,
                           ftc_err *err);
/* ftc eval on a plain HF classifier directory (eval_rundir.c); max_len <= 0: the model's positions. */
int cli_eval_classifier_dir(const char *dir, const char *data, int max_len, bool as_json, const char *compare_base);

/* ftc chat --data (src/cli/chat_batch.c): answer held-out conversations and score them. */
typedef struct {
    const char *model, *adapter, *chat_template, *data;
    const char *rag_index, *rag_model, *rag_prompt, *rag_out, *summary;
    int rag_k, max_tokens;
    ftc_sampler sampler;
    long seed;
    bool progress;
    ftc_kv_type kv_type; /* --kv-type */
} cli_chat_batch_args;
int cli_chat_batch(const cli_chat_batch_args *a);

int cmd_tokenize(int argc, char **argv);
int cmd_data(int argc, char **argv);
/* FTC_TEST_IO_FAULT=OP:NAME[:N[:ERRNO]] (tests only): inside the Nth (default first) save of a file whose path
 * ends with NAME, its first write, its fsync or its rename (OP: write, fsync, rename) fails with ERRNO (ENOSPC,
 * the default, or EIO), through the library's I/O hook (ftc_io_hook_set). False when unset or malformed. */
bool cli_test_io_fault_from_env(void);
#endif

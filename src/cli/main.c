/* ftc: the command line. One file per subcommand; this file only dispatches. */
#include "cli.h"
#include "model_arg.h"
#include "ftc/threads.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FTC_VERSION "0.1.0"

static int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("ftc %s\n", FTC_VERSION);
    return 0;
}

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} command;

static const command commands[] = {
    {"inspect", cmd_inspect, "show a model directory: family, sizes, parameters, dtypes, tokenizer files"},
    {"version", cmd_version, "print the version"},
    {"retrieve", cmd_retrieve, "no-training baseline: label of the nearest indexed text by embedding"},
    {"tokenize", cmd_tokenize, "text to token ids (or ids to text) exactly as the model's HF tokenizer"},
    {"init", cmd_init, "write a randomly initialised model (config.json + model.safetensors) from a config"},
    {"export", cmd_export, "write a tuned model for transformers (--format hf) or its LoRA adapter for PEFT"},
    {"logits", cmd_logits, "print raw logits for token ids (to compare ftc with transformers/PEFT)"},
    {"train", cmd_train, "fine-tune a model: full, head (transfer learning) or lora"},
    {"plan", cmd_plan, "what ftc train with the same options will need: memory, steps, estimated time"},
    {"report", cmd_report, "write RUNDIR/report.html (curves, metrics, confusion) from a run's logs"},
    {"generate", cmd_generate, "continue a prompt with a causal LM (KV cache, greedy or sampled, streamed)"},
    {"classify", cmd_classify, "label texts with a classification run or model: label, probability, top 3"},
    {"chat", cmd_chat, "talk with a causal LM on standard input, with its chat template; /reset, /exit"},
    {"template", cmd_template, "show a chat template and what it renders (text, or tokens with trained flags)"},
    {"data", cmd_data, "check task data before training (errors by file:line:column, stats), preview, split"},
    {"eval", cmd_eval, "held-out loss and perplexity of a causal LM on a text file"},
    {"serve", cmd_serve, "serve a causal LM over HTTP with the OpenAI API (completions, chat completions)"},
};

int cli_fail(const char *cmd, const ftc_err *err) {
    fprintf(stderr, "ftc %s: error: %s\n", cmd, err->msg);
    return ftc_exit_code(err->code);
}

int cli_check_stdout(const char *cmd) {
    static bool reported;
    errno = 0;
    int bad = fflush(stdout) != 0;
    int e = errno;
    bad |= ferror(stdout);
    if (!bad) return 0;
    if (!reported)
        fprintf(stderr, "ftc %s: error: writing standard output: %s\n", cmd, e ? strerror(e) : "write error");
    reported = true;
    return 3;
}

/* After a command: unwritten output is an error (exit 3) with its cause, whatever the command returned. A
 * closed pager ends ftc by SIGPIPE before this, as it does any Unix tool; with SIGPIPE ignored the EPIPE is
 * reported here. A failed stderr cannot be reported anywhere but the exit code. */
static int finish(const char *cmd, int rc) {
    if (cli_check_stdout(cmd)) rc = 3;
    else if (fclose(stdout) != 0) {
        fprintf(stderr, "ftc %s: error: closing standard output: %s\n", cmd, strerror(errno));
        rc = 3;
    }
    if (fflush(stderr) != 0 || ferror(stderr)) rc = 3;
    return rc;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ftc %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'ftc %s --help' for usage.\n", cmd);
    va_end(ap);
    return 1;
}

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    return false;
}



bool cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = (float)v;
    return true;
}

int cli_sampling_flag(const char *cmd, const char *flag, const char *value, ftc_sampler *s, long *seed) {
    long v;
    if (!strcmp(flag, "temperature")) {
        if (!cli_parse_float(value, 0.0, 1e6, &s->temperature))
            return cli_usage_error(cmd, "--temperature needs a number >= 0, not '%s'", value);
    } else if (!strcmp(flag, "top-k")) {
        if (!cli_parse_long(value, 0, 1 << 30, &v))
            return cli_usage_error(cmd, "--top-k needs an integer >= 0, not '%s'", value);
        s->top_k = (int)v;
    } else if (!strcmp(flag, "top-p")) {
        if (!cli_parse_float(value, 1e-9, 1.0, &s->top_p))
            return cli_usage_error(cmd, "--top-p needs a number in (0, 1], not '%s'", value);
    } else if (!strcmp(flag, "seed")) {
        if (!cli_parse_long(value, 0, (long)(~0UL >> 1), seed))
            return cli_usage_error(cmd, "--seed needs an integer >= 0, not '%s'", value);
    } else return -1;
    return 0;
}

static void print_help(FILE *out) {
    fprintf(out, "ftc %s: fine-tune pretrained transformers (GPT-2, Llama, BERT families) on your data.\n\n"
                 "Usage: ftc <command> [options]\n\nCommands:\n", FTC_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'ftc <command> --help' (or 'ftc help <command>') for a command's options.\n"
                 "Options: --name VALUE or --name=VALUE; booleans: --flag, --flag true|false, --no-flag.\n"
                 "Weights with NaN/Inf values are refused at load (exit 2, naming the tensor); --allow-nonfinite, given to\n"
                 "any command, loads them anyway. --threads N, given to any command, sizes the thread pool (default:\n"
                 "FTC_THREADS, else every CPU this process may use).\n"
                 "Exit codes: 0 ok, 1 usage error, 2 bad input, 3 internal error.\n");
}

int main(int argc, char **argv) {
    /* --threads N, for every command: the size of the library's thread pool (include/ftc/threads.h; default
     * FTC_THREADS, else the CPUs this process may use) */
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int skip = 0;
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) v = argv[i + 1], skip = 2;
        else if (!strncmp(argv[i], "--threads=", 10)) v = argv[i] + 10, skip = 1;
        if (!skip) continue;
        long n;
        if (!cli_parse_long(v, 1, FTC_THREADS_MAX, &n)) {
            fprintf(stderr, "ftc: --threads needs an integer in [1, %d], not '%s'\n", FTC_THREADS_MAX, v);
            return finish("", 1);
        }
        ftc_threads_set((int)n);
        memmove(argv + i, argv + i + skip, (size_t)(argc - i - skip + 1) * sizeof *argv); /* the NULL too */
        argc -= skip, i--;
    }
    /* --allow-nonfinite, for every command that loads a model: weights with NaN/Inf load anyway (the library
     * reads FTC_ALLOW_NONFINITE at load) */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--allow-nonfinite")) {
            setenv("FTC_ALLOW_NONFINITE", "1", 1);
            memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof *argv); /* the NULL too */
            argc--, i--;
        }
    if (argc < 2) { print_help(stderr); return finish("", 1); }
    if (!strcmp(argv[1], "help") && argc > 2) { /* ftc help CMD = ftc CMD --help */
        for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
            if (!strcmp(argv[2], commands[i].name)) {
                char *help_argv[] = {argv[2], "--help", NULL};
                return finish(argv[2], commands[i].run(2, help_argv));
            }
        fprintf(stderr, "ftc: unknown command '%s'\n\n", argv[2]);
        print_help(stderr);
        return finish("", 1);
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { print_help(stdout); return finish("help", 0); }
    if (!strcmp(argv[1], "--version")) { printf("ftc %s\n", FTC_VERSION); return finish("version", 0); }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = cli_resolve_gguf_args(argc, argv);
            if (rc) return finish(argv[1], rc);
            return finish(argv[1], commands[i].run(argc - 1, argv + 1));
        }
    fprintf(stderr, "ftc: unknown command '%s'\n\n", argv[1]);
    print_help(stderr);
    return finish("", 1);
}

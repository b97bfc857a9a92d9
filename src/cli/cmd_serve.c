/* ftc serve: the model behind an OpenAI-compatible HTTP API (src/serve/) until SIGINT or SIGTERM. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/quant.h"
#include "ftc/serve.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc serve --model DIR|RUNDIR [--host 127.0.0.1] [--port 8080] [--api-key K | --api-key-file F]\n"
            "                 [--ctx N] [--slots N] [--queue N] [--task causal-lm|classify|encode] [--name ID]\n"
            "                 [--precision fp32|bf16] [--base-dtype q8_0|q4_0|q4_1|q4_k|nf4|nf4dq] [--kv-type f16|f32|q8_0]\n\n"
            "Serves a model over HTTP with the OpenAI API, so the tools and client libraries that speak it\n"
            "(the openai Python package, curl, chat front-ends) use the tuned model. Endpoints:\n"
            "  GET  /health                 {\"status\": \"ok\", slots, slots_busy, queued}, no key needed\n"
            "  GET  /v1/models              the one model, named after its directory\n"
            "  POST /v1/completions         continue a prompt (as ftc generate)\n"
            "  POST /v1/chat/completions    answer messages rendered with the model's chat template (as ftc chat)\n"
            "  POST /v1/classify            a classifier's labels and probabilities per input (as ftc classify)\n"
            "  POST /v1/embeddings          an encoder's mean-pooled, L2-normalised embeddings (as ftc retrieve)\n"
            "Parameters: temperature, top_p, top_k, max_tokens, stop, seed, n, logprobs, stream. See docs/serve.md.\n"
            "A client that closes its connection frees its slot at the next token.\n"
            "Stops with SIGINT (Ctrl-C) or SIGTERM: generations in progress end with what they have.\n\n"
            "  --model DIR|RUNDIR|FILE.gguf  a model directory, an ftc run directory or a GGUF file\n"
            "  --name ID            the model's id in the API (default: the directory's name)\n"
            "  --task T             causal-lm, classify or encode (default: the run's task, else what config.json's\n"
            "                       architectures names: *ForCausalLM, *ForSequenceClassification, else encode)\n"
            "  --host H             address to listen on (default 127.0.0.1: this machine only)\n"
            "  --port P             TCP port (default 8080; 0 = any free port, printed at start)\n"
            "  --api-key K          require 'Authorization: Bearer K' on /v1/ (default: no key)\n"
            "  --api-key-file F     the key from the first line of F (keeps it out of the process list)\n"
            "  --ctx N              positions per request, prompt and answer (default: the model's context)\n"
            "  --slots N            requests generated at once, each with its own KV cache (default 1)\n"
            "  --queue N            requests waiting for a slot; beyond them the server answers 503 (default 16)\n"
            "  --precision P        fp32 (default) or bf16: matmul weights kept in bf16, products in bf16 with f32\n"
            "                       sums (causal-lm; as ftc generate)\n"
            "  --base-dtype Q       matmul weights block-quantized (q8_0, q4_0, q4_1, q4_k, nf4, nf4dq), decoded as they are\n"
            "                       multiplied (causal-lm; as ftc generate)\n"
            "  --kv-type T          the slots' key/value caches in f16 (default: half the memory of f32), f32 or\n"
            "                       q8_0 (causal-lm; as ftc generate)\n"
            "Exit codes: 0 stopped by a signal, 1 usage error, 2 bad input (model, port in use), 3 internal error.\n"
            "\nExamples:\n"
            "  ftc serve --model runs/assistant --port 8080 --slots 4\n"
            "  curl -s localhost:8080/v1/chat/completions -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'\n");
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d ftc serve: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, line);
}

static int stop_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_sig;

/* Any thread may run this (see cmd_serve); only async-signal-safe calls. */
static void on_stop_signal(int sig) {
    int saved = errno;
    if (stop_sig) {
        static const char msg[] = "ftc serve: already stopping: the requests in progress end at their next token\n";
        if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    } else {
        stop_sig = sig;
    }
    char c = 1;
    if (write(stop_pipe[1], &c, 1) < 0) { /* full: the reader wakes anyway */ }
    errno = saved;
}

static int read_key_file(const char *path, char **key) {
    ftc_err err;
    char *text;
    size_t n;
    if (ftc_read_file(path, &text, &n, &err)) return cli_fail("serve", &err);
    size_t k = strcspn(text, "\r\n");
    text[k] = 0;
    if (k == 0 || strlen(text) != k) {
        free(text);
        return cli_usage_error("serve", "--api-key-file %s: the first line must hold the key", path);
    }
    *key = text;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    ftc_serve_opts o = {.host = "127.0.0.1", .port = 8080, .slots = 1, .queue = 16, .task = -1, .log = log_line,
                       .kv_type = CLI_KV_DEFAULT};
    const char *key_file = NULL;
    static const cli_opt opts[] = {{"model", false, NULL},   {"host", false, NULL},         {"port", false, NULL},
                                   {"api-key", false, NULL}, {"api-key-file", false, NULL}, {"ctx", false, NULL},
                                   {"slots", false, NULL},   {"queue", false, NULL},        {"task", false, NULL},
                                   {"name", false, NULL},    {"precision", false, NULL},    {"base-dtype", false, NULL},
                                   {"kv-type", false, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "serve", argc, argv, 1, opts, 0);
    const char *f, *val;
    int r;
    while ((r = cli_next(&p, &f, &val)) > 0) {
        long v;
        if (!f) return cli_usage_error("serve", "unexpected argument '%s'", val);
        if (!strcmp(f, "model")) o.model_path = val;
        else if (!strcmp(f, "host")) o.host = val;
        else if (!strcmp(f, "name")) {
            if (!val[0] || strlen(val) > 200) return cli_usage_error("serve", "--name needs 1..200 characters");
            o.model_id = val;
        }
        else if (!strcmp(f, "api-key")) o.api_key = val;
        else if (!strcmp(f, "precision")) {
            if (strcmp(val, "fp32") && strcmp(val, "bf16"))
                return cli_usage_error("serve", "--precision takes fp32 or bf16, not '%s'", val);
            o.bf16 = !strcmp(val, "bf16");
        } else if (!strcmp(f, "kv-type")) {
            if (!ftc_kv_type_parse(val, &o.kv_type))
                return cli_usage_error("serve", "--kv-type takes " CLI_KV_TYPES ", not '%s'", val);
        } else if (!strcmp(f, "base-dtype")) {
            if (ftc_quant_from_name(val) < 0)
                return cli_usage_error("serve", "--base-dtype takes q8_0, q4_0, q4_1, q4_k, nf4 or nf4dq, not '%s'", val);
            o.base_dtype = val;
        }
        else if (!strcmp(f, "api-key-file")) key_file = val;
        else if (!strcmp(f, "task")) {
            if (!strcmp(val, "causal-lm")) o.task = FTC_TASK_CAUSAL_LM;
            else if (!strcmp(val, "classify")) o.task = FTC_TASK_CLASSIFY;
            else if (!strcmp(val, "encode")) o.task = FTC_TASK_ENCODE;
            else return cli_usage_error("serve", "--task needs causal-lm, classify or encode, not '%s'", val);
        } else if (!strcmp(f, "port")) {
            if (!cli_parse_long(val, 0, 65535, &v)) return cli_usage_error("serve", "--port needs 0..65535, not '%s'", val);
            o.port = (int)v;
        } else if (!strcmp(f, "ctx")) {
            if (!cli_parse_long(val, 2, 1 << 24, &v)) return cli_usage_error("serve", "--ctx needs an integer >= 2, not '%s'", val);
            o.ctx = (int)v;
        } else if (!strcmp(f, "slots")) {
            if (!cli_parse_long(val, 1, 64, &v)) return cli_usage_error("serve", "--slots needs 1..64, not '%s'", val);
            o.slots = (int)v;
        } else if (!strcmp(f, "queue")) {
            if (!cli_parse_long(val, 1, 4096, &v)) return cli_usage_error("serve", "--queue needs 1..4096, not '%s'", val);
            o.queue = (int)v;
        }
    }
    if (r < 0) return 1;
    if (!o.model_path) return cli_usage_error("serve", "--model DIR|RUNDIR is required");
    if (o.api_key && key_file) return cli_usage_error("serve", "--api-key and --api-key-file: give one");
    if (o.api_key && !o.api_key[0]) return cli_usage_error("serve", "--api-key needs a non-empty key");
    char *file_key = NULL;
    if (key_file) {
        int rc = read_key_file(key_file, &file_key);
        if (rc) return rc;
        o.api_key = file_key;
    }
    /* SIGINT/SIGTERM go through a handler that writes to a pipe this thread reads. Only a handler (not sigwait
     * with the signals blocked) holds for every thread: OpenBLAS starts its threads when the library loads,
     * before main, with nothing blocked, and a signal the kernel hands one of them (a second SIGTERM, or one
     * during the model's load) took the default action and killed the server with 143. The server's own
     * threads start with both blocked, so their system calls are not interrupted. */
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK)) {
        free(file_key);
        fprintf(stderr, "ftc serve: cannot create a pipe: %s\n", strerror(errno));
        return 3;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    ftc_err err;
    ftc_server *s;
    ftc_status st = ftc_server_start(&o, &s, &err);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    if (st) {
        free(file_key);
        return cli_fail("serve", &err);
    }
    const char *h = o.host;
    char weights[64] = "";
    if (o.base_dtype || o.bf16)
        snprintf(weights, sizeof weights, " (weights: %s%s%s)", o.bf16 ? "bf16" : "", o.bf16 && o.base_dtype ? " + " : "",
                 o.base_dtype ? o.base_dtype : "");
    fprintf(stderr, "ftc serve: model %s%s on http://%s%s%s:%d/ (%s). Ctrl-C stops.\n", ftc_server_model_id(s), weights,
            strchr(h, ':') ? "[" : "", h, strchr(h, ':') ? "]" : "", ftc_server_port(s),
            o.api_key ? "API key required" : "no API key");
    struct pollfd pfd = {stop_pipe[0], POLLIN, 0};
    while (!stop_sig) poll(&pfd, 1, -1); /* EINTR or a byte: look at the flag again */
    fprintf(stderr, "ftc serve: %s: finishing the requests in progress\n", stop_sig == SIGINT ? "SIGINT" : "SIGTERM");
    ftc_server_stop(s);
    fprintf(stderr, "ftc serve: stopped\n");
    free(file_key);
    return 0;
}

/* ftc serve: a tuned model behind the OpenAI HTTP API (src/serve/). The library side parses requests, runs
 * them on the model and writes the JSON responses; the HTTP transport is civetweb (Debian's libcivetweb).
 * Nothing here prints or exits: the CLI (src/cli/cmd_serve.c) owns signals and the terminal. */
#ifndef FTC_SERVE_H
#define FTC_SERVE_H
#include "ftc/base.h"
#include "ftc/status.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

/* ---- a request body, parsed and checked (src/serve/request.c) ---- */
typedef enum { FTC_SERVE_COMPLETION, FTC_SERVE_CHAT, FTC_SERVE_CLASSIFY, FTC_SERVE_EMBED } ftc_serve_kind;

enum { FTC_SERVE_MAX_STOP = 4, FTC_SERVE_MAX_N = 16, FTC_SERVE_MAX_TOP_LOGPROBS = 20, FTC_SERVE_MAX_INPUTS = 2048 };

typedef struct {
    ftc_serve_kind kind;
    char *model;             /* NULL when the body names none */
    char *prompt;            /* completions */
    struct json_t *messages; /* chat: the list as sent (a reference the request owns) */
    float temperature;       /* default 1 (OpenAI's); 0 = greedy */
    float top_p;             /* default 1 */
    int top_k;               /* default 0 = all (an extension: llama-server, vLLM) */
    int max_tokens;          /* -1: not given */
    char *stop[FTC_SERVE_MAX_STOP];
    int n_stop;
    bool has_seed;
    uint64_t seed;
    int n;                   /* choices, default 1 */
    bool stream, include_usage;
    int logprobs;            /* -1: none; else how many alternatives per token (completions: logprobs=K; chat:
                                logprobs=true with top_logprobs=K, K may be 0) */
    char **inputs;           /* classify, embeddings: "input" (a string or a list of strings) */
    int n_inputs;
    int top;                 /* classify: labels per input, 0 = all (default) */
    bool base64;             /* embeddings: encoding_format "base64" (little-endian float32) */
} ftc_serve_request;

/* Parses a /v1/completions, /v1/chat/completions, /v1/classify or /v1/embeddings body. Malformed JSON, a field of the wrong type or out of its
 * range is FTC_E_INPUT with a message naming the field (the server answers 400 with it). Fields this server does
 * not use (user, presence_penalty, ...) are accepted and ignored, as OpenAI-compatible servers do. */
ftc_status ftc_serve_parse_request(const char *body, size_t len, ftc_serve_kind kind, ftc_serve_request *out,
                                   ftc_err *err);
void ftc_serve_request_free(ftc_serve_request *r);

/* ---- the server (src/serve/server.c) ---- */
typedef struct {
    const char *model_path; /* a model directory or an ftc run directory */
    const char *model_id;   /* the name clients use, NULL: the directory's name */
    int task;               /* FTC_TASK_* (model.h), or -1: the run's, else what config.json's architectures name */
    const char *host;       /* default 127.0.0.1 */
    int port;               /* 0: any free port (ftc_server_port tells which) */
    const char *api_key;    /* NULL: no key needed */
    int ctx;                /* positions per sequence, 0 = the model's context */
    int slots;              /* sequences decoded together, default 1 */
    int queue;              /* requests waiting for a slot beyond which the server answers 503, default 16 */
    bool bf16;              /* causal-lm: matmul weights kept in bf16, products in bf16 (ftc generate --precision bf16) */
    const char *base_dtype; /* causal-lm: NULL, or q8_0|q4_0|q4_1|q4_k|nf4|nf4dq: matmul weights block-quantized
                               (ftc generate --base-dtype) */
    ftc_kv_type kv_type;    /* causal-lm: the slots' KV caches: FTC_KV_F32 (0, the library's default; ftc serve
                               --kv-type f32), FTC_KV_F16 (ftc serve's default) or FTC_KV_Q8_0 (ftc_kv_cache_create_typed) */
    size_t max_body;        /* request bodies over this get 413, default 1 MiB */
    void (*log)(void *ctx, const char *line); /* one line per request and event, or NULL */
    void *log_ctx;
} ftc_serve_opts;

typedef struct ftc_server ftc_server;
/* Loads the model and starts listening; returns once requests are being served. */
ftc_status ftc_server_start(const ftc_serve_opts *o, ftc_server **out, ftc_err *err);
int ftc_server_port(const ftc_server *s);
const char *ftc_server_model_id(const ftc_server *s);
/* Graceful stop: new requests get 503, generations in progress end at their next token with what they have
 * (finish_reason "length"), every response is completed, then the model is freed. */
void ftc_server_stop(ftc_server *s);
#endif

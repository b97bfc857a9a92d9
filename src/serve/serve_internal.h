/* Shared by the server's files: the model engine (engine.c) and the HTTP side (http.c). One engine thread
 * owns the model, the tokenizer and every KV cache; HTTP handler threads parse requests, queue jobs and wait on
 * the job's condition variable for text. Everything a handler reads of a job is guarded by ftc_server.mu. */
#ifndef FTC_SERVE_INTERNAL_H
#define FTC_SERVE_INTERNAL_H
#include "ftc/data.h"
#include "ftc/infer.h"
#include "ftc/serve.h"
#include <poll.h>
#include <pthread.h>

typedef struct {
    int32_t id;
    float logprob;
    char *text; /* the token's own text (special tokens included) */
} ftc_sv_alt;

typedef struct {
    ftc_sv_alt tok;
    ftc_sv_alt top[FTC_SERVE_MAX_TOP_LOGPROBS];
    int n_top;
    size_t end; /* the choice's text length once this token was added */
} ftc_sv_logprob;

typedef struct ftc_sv_job ftc_sv_job;
typedef struct {
    ftc_sv_job *job;
    int index;
    ftc_rng rng;
    ftc_text_stream ts;
    bool ts_init;
    char *text;            /* decoded text (guarded by mu: handlers read text[0..shown)) */
    size_t len, cap, shown;
    int tokens;            /* generated (stop token excluded) */
    int32_t prev;          /* the last generated token */
    const char *finish;    /* "stop" | "length" | NULL while generating */
    ftc_sv_logprob *lps;   /* one per generated token when logprobs were asked */
    int n_lps, cap_lps;
    int slot;              /* -1: not admitted yet */
} ftc_sv_choice;

struct ftc_sv_job {
    ftc_serve_request req;
    char id[48];
    long long created;
    int32_t *prompt;
    int n_prompt, max_new;
    bool prepared;
    ftc_sv_choice ch[FTC_SERVE_MAX_N];
    int n_admitted, n_finished;
    bool cancelled;        /* the client went away (a failed write, or the engine saw its socket close) */
    int fd;                /* the client's socket, polled by the engine between decode steps (-1: unknown) */
    bool released;         /* the engine no longer touches the job: the handler may free it */
    int status;            /* 0, or the HTTP error status the request ends with */
    char error[1100];
    const char *error_code;
    float *vecs;           /* classify: probabilities [n_inputs, num_labels]; embeddings [n_inputs, hidden] */
    int in_tokens;         /* classify, embeddings: tokens of every input */
    pthread_cond_t cv;
    ftc_sv_job *next;
};

typedef struct {
    ftc_kv_cache *cache;
    float *logits, *prob;
    int32_t *idx;
    ftc_sv_choice *c;     /* NULL: free */
    bool prefilled;
} ftc_sv_slot;

struct ftc_server {
    ftc_serve_opts o;
    char *api_key;
    ftc_infer_model im;
    bool have_im;
    ftc_task task;
    int num_labels, hidden, max_len; /* classify / encode */
    char **labels;
    ftc_chat_template *tmpl;
    const char *template_why;
    int32_t stop_gen[16], stop_chat[16];
    int n_stop_gen, n_stop_chat;
    char *chat_stop_text;  /* an end-of-turn of several tokens, or plain's next question */
    int ctx, V;
    char model_id[256];
    long long created;
    pthread_mutex_t mu;
    pthread_cond_t work;
    ftc_sv_job *qhead, *qtail;
    int queued;
    struct pollfd *pfds;   /* check_clients' scratch (engine thread only) */
    ftc_sv_job **pjobs;
    int cap_pfds;
    ftc_sv_slot *slots;
    int n_slots;
    /* one decode pass over the busy slots (engine thread only) */
    ftc_kv_cache **batch_caches;
    int32_t *batch_ids;
    int *batch_slot;
    float *batch_logits;
    bool stopping;
    int handlers;          /* requests being answered; ftc_server_stop waits for 0 before civetweb stops */
    pthread_cond_t idle;   /* signalled when handlers drops to 0 */
    pthread_t engine;
    bool engine_started;
    struct mg_context *mg;
    int port;
    unsigned long long counter;
};

/* page.c: the HTML of / */
const char *ftc_sv_page(size_t *len); /* a function, not an exported array: ASan would add __odr_asan symbols */

/* engine.c */
ftc_status ftc_sv_engine_init(ftc_server *s, ftc_err *err);
void ftc_sv_engine_free(ftc_server *s);
/* Queues j (prepared by the engine thread); false when the queue is full or the server stops (then nothing
 * was queued). Called with mu held. */
bool ftc_sv_enqueue(ftc_server *s, ftc_sv_job *j);
ftc_sv_job *ftc_sv_job_new(void);
void ftc_sv_job_free(ftc_sv_job *j);
#endif

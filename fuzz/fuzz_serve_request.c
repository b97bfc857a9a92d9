/* libFuzzer: any request body for /v1/completions and /v1/chat/completions must parse or be refused with a
 * message (the server's 400), never crash or leak; an accepted request satisfies what the engine relies on. The
 * first byte picks the endpoint: completions, chat, classify, embeddings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "ftc/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ftc_serve_kind kind = (ftc_serve_kind)(data[0] & 3); /* completions, chat, classify, embeddings */
    ftc_serve_request r;
    ftc_err err;
    err.msg[0] = 0;
    ftc_status st = ftc_serve_parse_request((const char *)data + 1, size - 1, kind, &r, &err);
    if (st != FTC_OK) {
        if (!err.msg[0]) abort();
        return 0;
    }
    if (r.kind != kind || r.n < 1 || r.n > FTC_SERVE_MAX_N || r.n_stop < 0 || r.n_stop > FTC_SERVE_MAX_STOP ||
        !(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p > 0 && r.top_p <= 1) || r.top_k < 0 ||
        r.max_tokens < -1 || r.logprobs < -1 || r.logprobs > FTC_SERVE_MAX_TOP_LOGPROBS)
        abort();
    for (int i = 0; i < r.n_stop; i++)
        if (!r.stop[i] || !r.stop[i][0]) abort();
    if (kind == FTC_SERVE_COMPLETION && !r.prompt) abort();
    if (kind == FTC_SERVE_CLASSIFY || kind == FTC_SERVE_EMBED) {
        if (r.n_inputs < 1 || r.n_inputs > FTC_SERVE_MAX_INPUTS || r.top < 0) abort();
        for (int i = 0; i < r.n_inputs; i++)
            if (!r.inputs[i]) abort();
    }
    if (kind == FTC_SERVE_CHAT) {
        if (!json_is_array(r.messages) || json_array_size(r.messages) == 0) abort();
        size_t i;
        json_t *m;
        json_array_foreach(r.messages, i, m) /* what the template sees: a role and a string content */
            if (!json_is_string(json_object_get(m, "role")) || !json_is_string(json_object_get(m, "content"))) abort();
    }
    ftc_serve_request_free(&r);
    return 0;
}

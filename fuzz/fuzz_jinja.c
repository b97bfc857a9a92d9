/* libFuzzer: the Jinja interpreter on arbitrary templates and variables. Input: TEMPLATE \0 VARS-JSON (no \0: the
 * whole input is the template, rendered with a small conversation). Must never crash, leak, overflow the stack
 * or run away: every failure is an error naming the template ("fuzz:LINE:COL: ..." or "fuzz: ..."). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/jinja.h"

static const char DEFAULT_VARS[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": "
    "{\"a\": [1, 2.5, null, true]}}}]}], \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    " \"tools\": null}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - data) : size;
    json_t *vars = NULL;
    if (nul) vars = json_loadb((const char *)nul + 1, size - len - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!vars || !json_is_object(vars)) {
        json_decref(vars);
        vars = json_loads(DEFAULT_VARS, 0, NULL);
    }
    ftc_jinja *t;
    ftc_err e;
    if (ftc_jinja_compile("fuzz", src, len, &t, &e) == FTC_OK) {
        ftc_jinja_opts o = {.now = 1721995200, .max_steps = 200000, .max_output = 1 << 20, .max_memory = 64 << 20};
        ftc_jinja_output out;
        if (ftc_jinja_render(t, vars, &o, &out, &e) == FTC_OK) {
            if (strlen(out.text) > out.len) abort();
            for (int i = 0; i < out.n_gen; i++)
                if (out.gen[i].start > out.gen[i].end || out.gen[i].end > out.len) abort();
            ftc_jinja_output_free(&out);
        } else if (strncmp(e.msg, "fuzz:", 5)) {
            abort();
        }
        ftc_jinja_free(t);
    } else if (strncmp(e.msg, "fuzz:", 5)) {
        abort();
    }
    json_decref(vars);
    return 0;
}

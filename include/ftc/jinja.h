/* A Jinja interpreter for chat templates (src/data/jinja/): the subset of Jinja2 that model chat templates
 * use, with the semantics of Python's jinja2 in the environment transformers' apply_chat_template builds:
 * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols,
 * {% generation %}]), transformers' tojson (json.dumps, ensure_ascii=False, indent/separators/sort_keys),
 * raise_exception and strftime_now. Renders are byte-identical to jinja2 for the templates and data in
 * tests/fixtures/jinja/ (tools/gen_template_fixtures.py).
 *
 *   ftc_jinja_compile  source -> a compiled template (syntax errors name the line and column)
 *   ftc_jinja_render   template + variables (a JSON object) -> text, and where {% generation %} blocks wrote
 *
 * A compiled template is immutable: one may be rendered from several threads at once. */
#ifndef FTC_JINJA_H
#define FTC_JINJA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ftc/status.h"

struct json_t; /* jansson */

typedef struct ftc_jinja ftc_jinja;

/* name: how errors call the template ("SmolLM2/tokenizer_config.json chat_template"); copied. src[len] is the
 * UTF-8 source (invalid UTF-8 is an error). Errors: FTC_E_INPUT "NAME:LINE:COL: what". */
ftc_status ftc_jinja_compile(const char *name, const char *src, size_t len, ftc_jinja **out, ftc_err *err);
void ftc_jinja_free(ftc_jinja *t);
const char *ftc_jinja_name(const ftc_jinja *t);
/* Whether the template has {% generation %} blocks (transformers' return_assistant_tokens_mask markup). */
bool ftc_jinja_has_generation(const ftc_jinja *t);

typedef struct {
    size_t start, end; /* byte offsets into the rendered text */
} ftc_jinja_span;

typedef struct {
    char *text; /* NUL-terminated, malloc'd */
    size_t len;
    ftc_jinja_span *gen; /* what each {% generation %} block wrote, in order (malloc'd) */
    int n_gen;
} ftc_jinja_output;
void ftc_jinja_output_free(ftc_jinja_output *o);

typedef struct {
    int64_t now;          /* strftime_now's clock, seconds since the epoch (local time); 0: the real clock */
    size_t max_output;    /* bytes any one string may reach; 0: 256 MB */
    int64_t max_steps;    /* evaluation steps before giving up; 0: 1e9 */
    size_t max_memory;    /* bytes of working memory one render may use; 0: 2 GB */
} ftc_jinja_opts;

/* vars: a JSON object whose members are the template's variables (messages, add_generation_prompt,
 * bos_token, tools, ...). JSON null is Python None; a name not given is undefined. o may be NULL.
 * Errors (FTC_E_INPUT) name the template, line and column: "NAME:LINE:COL: what", and for
 * raise_exception the template's own message. */
ftc_status ftc_jinja_render(const ftc_jinja *t, const struct json_t *vars, const ftc_jinja_opts *o,
                            ftc_jinja_output *out, ftc_err *err);

#endif

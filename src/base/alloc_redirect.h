/* Force-included into every library source (CMakeLists.txt: -include): the C allocation functions become the
 * ftc_mem_* wrappers of alloc.c, which ask the allocation hook (include/ftc/alloc.h) first, and jansson's
 * parsers become wrappers that keep it usable under a hook (see ftc_mem_json_loadb). Not for the CLI, tests or
 * benchmarks. free is unchanged: the wrappers return what the C library returned. */
#ifndef FTC_ALLOC_REDIRECT_H
#define FTC_ALLOC_REDIRECT_H
#include <jansson.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void *ftc_mem_malloc(size_t n);
void *ftc_mem_calloc(size_t n, size_t size);
void *ftc_mem_realloc(void *p, size_t n);
char *ftc_mem_strdup(const char *s);
char *ftc_mem_strndup(const char *s, size_t n);
int ftc_mem_posix_memalign(void **p, size_t align, size_t n);
void *ftc_mem_aligned_alloc(size_t align, size_t n);
/* Memory for model weights, freed with free: 64-byte aligned; from FTC_MEM_HUGE_MIN bytes up also 2 MB aligned and
 * marked for transparent huge pages (Linux madvise MADV_HUGEPAGE; the kernel's THP mode is often "madvise", which
 * gives huge pages only to regions that ask). A decoded token streams every weight once: with 4 KB pages that is
 * a TLB miss per 4 KB read (Zen 3's 2048-entry L2 TLB maps 8 MB), with 2 MB pages one per 2 MB. Asks the
 * allocation hook like posix_memalign; returns 0 or ENOMEM. */
#define FTC_MEM_HUGE_MIN ((size_t)4 << 20)
int ftc_mem_alloc_weights(void **p, size_t n);

/* jansson's loaders and dumpers, made safe to run under a hook. jansson 2.14's lexer ignores a failed growth of
 * its text buffer and parses on (a key loses characters, or it reads past what it saved and crashes), it
 * reports other allocation failures as syntax errors or not at all, and its dumper ignores a failed append of
 * an object key (the text comes out without it, or short). So while one of these runs, an allocation the hook refuses is
 * still made, and the call then fails as out of memory: a load returns NULL with json_error_code(je) ==
 * json_error_out_of_memory ("out of memory"), as it also does when jansson itself ran out (an error left
 * empty); callers test that code to return FTC_E_NOMEM. json_dumps returns NULL. error may be
 * NULL, as for jansson's own. */
json_t *ftc_mem_json_loads(const char *input, size_t flags, json_error_t *error);
json_t *ftc_mem_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);
json_t *ftc_mem_json_loadf(FILE *input, size_t flags, json_error_t *error);
char *ftc_mem_json_dumps(const json_t *json, size_t flags);

#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup
#define malloc(n) ftc_mem_malloc(n)
#define calloc(n, s) ftc_mem_calloc(n, s)
#define realloc(p, n) ftc_mem_realloc(p, n)
#define strdup(s) ftc_mem_strdup(s)
#define strndup(s, n) ftc_mem_strndup(s, n)
#define posix_memalign(p, a, n) ftc_mem_posix_memalign(p, a, n)
#define aligned_alloc(a, n) ftc_mem_aligned_alloc(a, n)
#define json_loads(s, f, e) ftc_mem_json_loads(s, f, e)
#define json_loadb(b, n, f, e) ftc_mem_json_loadb(b, n, f, e)
#define json_loadf(in, f, e) ftc_mem_json_loadf(in, f, e)
#define json_dumps(j, f) ftc_mem_json_dumps(j, f)
#endif

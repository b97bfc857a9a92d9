/* The allocation hook (include/ftc/alloc.h) and the wrappers every library source allocates through
 * (alloc_redirect.h, force-included by CMake). Without a hook each wrapper is one predictable branch. */
#include "alloc_redirect.h" /* already force-included, with the redirecting macros: undone here */
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup
#undef posix_memalign
#undef aligned_alloc
#undef json_loads
#undef json_loadb
#undef json_loadf
#undef json_dumps
#include "ftc/alloc.h"
#include <errno.h>
#include <sys/mman.h>
#include <stdbool.h>

static ftc_alloc_hook hook;
static void *hook_ud;
static json_malloc_t saved_json_malloc; /* jansson's allocators before a hook was set, restored when cleared */
static json_free_t saved_json_free;

static _Thread_local unsigned long refused; /* allocations the hook refused on this thread */
static _Thread_local int parsing;           /* inside one of jansson's loaders or dumpers (ftc_mem_json_*) */

static bool allowed(size_t n) {
    if (!hook || hook(hook_ud, n)) return true;
    refused++;
    return false;
}

void *ftc_mem_malloc(size_t n) { return allowed(n) ? malloc(n) : NULL; }
void *ftc_mem_calloc(size_t n, size_t size) { return allowed(n * size) ? calloc(n, size) : NULL; }
void *ftc_mem_realloc(void *p, size_t n) { return allowed(n) ? realloc(p, n) : NULL; }
char *ftc_mem_strdup(const char *s) { return allowed(strlen(s) + 1) ? strdup(s) : NULL; }
char *ftc_mem_strndup(const char *s, size_t n) { return allowed(strnlen(s, n) + 1) ? strndup(s, n) : NULL; }
int ftc_mem_posix_memalign(void **p, size_t align, size_t n) {
    if (!allowed(n)) return ENOMEM;
    return posix_memalign(p, align, n);
}
void *ftc_mem_aligned_alloc(size_t align, size_t n) { return allowed(n) ? aligned_alloc(align, n) : NULL; }

int ftc_mem_alloc_weights(void **p, size_t n) {
    if (!allowed(n)) return ENOMEM;
    const size_t huge = (size_t)2 << 20;
    if (n < FTC_MEM_HUGE_MIN) return posix_memalign(p, 64, n ? n : 1);
    int e = posix_memalign(p, huge, n);
#ifdef MADV_HUGEPAGE
    /* before the first touch, so the page faults take huge pages; a kernel without THP says EINVAL: 4 KB pages */
    if (!e) (void)madvise(*p, (n + 4095) & ~(size_t)4095, MADV_HUGEPAGE);
#endif
    return e;
}

/* jansson's allocator while a hook is set: a refusal fails the allocation, except inside a loader, where it is
 * counted and the memory given anyway (see alloc_redirect.h) */
static void *json_malloc(size_t n) {
    bool ok = allowed(n);
    return ok || parsing ? saved_json_malloc(n) : NULL;
}
static void json_free(void *p) { saved_json_free(p); }

/* After a jansson load: NULL with an out-of-memory error when the hook refused an allocation during it or
 * jansson failed without saying why (it leaves the error as initialised when an allocation fails). */
static json_t *loaded(json_t *j, json_error_t *je, unsigned long refused_before) {
    bool oom = refused != refused_before || (!j && je->text[0] == 0);
    parsing--;
    if (!oom) return j;
    json_decref(j);
    memset(je, 0, sizeof *je);
    je->line = je->column = je->position = -1;
    snprintf(je->text, sizeof je->text - 1, "out of memory");
    je->text[sizeof je->text - 1] = (char)json_error_out_of_memory; /* where json_error_code reads it */
    return NULL;
}

json_t *ftc_mem_json_loads(const char *input, size_t flags, json_error_t *error) {
    json_error_t local, *je = error ? error : &local;
    unsigned long before = refused;
    parsing++;
    return loaded(json_loads(input, flags, je), je, before);
}
json_t *ftc_mem_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error) {
    json_error_t local, *je = error ? error : &local;
    unsigned long before = refused;
    parsing++;
    return loaded(json_loadb(buffer, buflen, flags, je), je, before);
}
json_t *ftc_mem_json_loadf(FILE *input, size_t flags, json_error_t *error) {
    json_error_t local, *je = error ? error : &local;
    unsigned long before = refused;
    parsing++;
    return loaded(json_loadf(input, flags, je), je, before);
}

char *ftc_mem_json_dumps(const json_t *json, size_t flags) {
    unsigned long before = refused;
    parsing++;
    char *text = json_dumps(json, flags);
    parsing--;
    if (refused == before) return text;
    saved_json_free(text); /* a refusal means a hook is set: jansson allocated it through json_malloc */
    return NULL;
}

void ftc_alloc_hook_set(ftc_alloc_hook h, void *ud) {
    if (h && !hook) json_get_alloc_funcs(&saved_json_malloc, &saved_json_free);
    if (h) json_set_alloc_funcs(json_malloc, json_free);
    else if (hook) json_set_alloc_funcs(saved_json_malloc, saved_json_free);
    hook = h;
    hook_ud = ud;
}

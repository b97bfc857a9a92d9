/* Allocation hook: fault injection the SQLite way, or a memory cap for an embedding program.
 * When a hook is set, every allocation libftc makes (malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * strdup, strndup in src/, and jansson's while the hook is set) first calls hook(ud, bytes); false makes that
 * allocation fail as if the system were out of memory, and the library returns FTC_E_NOMEM from the call that
 * needed it (nothing leaks, nothing half-built is left behind, no file is written with a part missing).
 * One exception: while jansson parses or prints JSON, a refused allocation is still made and the parse or print
 * then fails as out of memory (jansson 2.14 mishandles some of its own allocation failures there: see
 * src/base/alloc_redirect.h). There is no hook by default: nothing changes until a program sets one.
 * Allocations inside OpenBLAS, PCRE2, libyaml, utf8proc and the C library's own (stdio buffers) are not seen.
 * Process-wide: set or clear it while no other thread is inside libftc; the hook may be called from the
 * library's pool threads. tests/test_alloc_faults.c fails the Nth allocation for every N over tokenizer load,
 * model load, a training step, checkpoint save and model save. */
#ifndef FTC_ALLOC_H
#define FTC_ALLOC_H
#include <stdbool.h>
#include <stddef.h>

typedef bool (*ftc_alloc_hook)(void *ud, size_t bytes);
/* Sets the hook (NULL: none) and its user data. While a hook is set, jansson allocates through it too
 * (json_set_alloc_funcs, on top of the allocator jansson had); clearing it gives jansson back that allocator. */
void ftc_alloc_hook_set(ftc_alloc_hook hook, void *ud);

#endif

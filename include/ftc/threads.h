/* The library's one thread pool. Every parallel loop in libftc (matmuls, elementwise ops, norms, attention,
 * the optimizer, batch tokenization, weight conversion) runs on it; there is no OpenMP and no other set of
 * threads (OpenBLAS, when it is the matmul fallback, is pinned to one thread: see matmul.h).
 *
 * The pool is created lazily by the first parallel job, with ftc_threads() threads: the calling thread plus
 * ftc_threads() - 1 workers. Workers spin for a few tens of microseconds after a job (back-to-back ops) and
 * then sleep on a condition variable, so an idle pool costs nothing. A job runs on the caller and the
 * workers; the caller waits only for chunks a worker has already claimed, so a descheduled worker on a
 * loaded machine delays no job by a time slice.
 *
 * Size: ftc_threads_set(n); before that, FTC_THREADS from the environment, else OMP_NUM_THREADS (older
 * scripts set it), else the CPUs this process may run on; at most FTC_THREADS_MAX.
 * A parallel loop called from inside a job, or while another thread's job holds the pool, runs on its
 * caller alone (no nested teams, no oversubscription). Results never depend on the number of threads: each
 * loop's work is split along an index whose items are computed the same way whatever thread runs them. */
#ifndef FTC_THREADS_H
#define FTC_THREADS_H
#include <stdint.h>

#define FTC_THREADS_MAX 16

/* Sets the number of threads jobs use (caller included), 1..FTC_THREADS_MAX; n <= 0 restores the default
 * above. Waits for a running job, stops the workers when the count changes (the next job starts the new
 * ones) and returns the count now in effect. Safe to call from any thread that is not inside a job. */
int ftc_threads_set(int n);
/* The number of threads jobs use (resolving the default on the first call). */
int ftc_threads(void);
/* Stops and joins the workers and frees what they hold (their matmul packing buffers). For a program that
 * embeds libftc and wants no thread of ours left (before dlclose, fork, or a leak check); the next job
 * starts them again. Waits for a running job; not from inside one. */
void ftc_threads_shutdown(void);

/* Runs fn(ctx, i) for i = 0..n-1 on the pool (the caller and the workers claim indices one at a time; order
 * unspecified); on the caller alone when n is 1, inside a job, or while another thread's job holds the pool. */
void ftc_parallel_for(int n, void (*fn)(void *ctx, int i), void *ctx);
/* Runs fn(ctx, lo, hi) over [0, n) cut into contiguous ranges (a few per thread), on the pool when `worth`
 * (the caller's size threshold: below it a job costs more than it saves), else fn(ctx, 0, n) on the caller. */
void ftc_parallel_range(int64_t n, int worth, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);

#endif

/* The library's thread pool (include/ftc/threads.h). One pool per process, created by the first parallel job
 * and stopped by ftc_threads_shutdown / ftc_threads_set; the matmuls (matmul.c) and every parallel op run on it.
 *
 * Not an OpenMP team on purpose: on a shared machine a core is often taken by another process, and an OpenMP
 * join waits for every thread to have run, so one descheduled thread stalls each job for a scheduler time
 * slice (measured on matmuls: 3 instead of 150 GFLOP/s). Here the caller works too and waits only for chunks
 * a worker has actually claimed; a worker that wakes late finds nothing left.
 * The ticket packs generation (24 bits), chunk count (20) and next chunk (20), so a stale worker can never
 * claim a chunk of a job other than the one it read. */
#include "ftc/threads.h"
#include "matmul_internal.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHUNKS (1 << 20)

typedef void (*chunk_fn)(void *arg, int chunk, int nchunks);

static struct {
    pthread_mutex_t lock; /* guards sleeping workers' wait on `wake` and `stop` */
    pthread_cond_t wake;
    pthread_mutex_t call; /* one job at a time; a second concurrent caller runs alone */
    _Atomic uint64_t ticket;
    _Atomic unsigned done;
    _Atomic unsigned published; /* generation of the latest job */
    _Atomic int sleepers;
    _Atomic bool stop;
    chunk_fn fn;
    void *arg;
    _Atomic int size; /* threads per job, caller included; 0: not resolved yet */
    int workers; /* started */
    pthread_t tid[FTC_THREADS_MAX];
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, false,
          NULL, NULL, 0, 0, {0}};

/* Set on the workers for good and on a caller while it runs a job: parallel loops there run alone. */
static _Thread_local bool in_job;

static int env_threads(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 1 ? (int)(v > FTC_THREADS_MAX ? FTC_THREADS_MAX : v) : 0;
}

static int default_threads(void) {
    int n = env_threads("FTC_THREADS");
    if (!n) n = env_threads("OMP_NUM_THREADS");
    if (!n) {
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    if (n < 1) n = 1;
    return n > FTC_THREADS_MAX ? FTC_THREADS_MAX : n;
}

/* Under pool.call. */
static int size_locked(void) {
    if (!pool.size) pool.size = default_threads();
    return pool.size;
}

static uint64_t make_ticket(unsigned gen, unsigned n, unsigned next) {
    return (uint64_t)(gen & 0xffffff) << 40 | (uint64_t)(n & 0xfffff) << 20 | (next & 0xfffff);
}

/* Claims and runs chunks of generation gen until none is left. */
static void work_on(unsigned gen) {
    for (;;) {
        uint64_t t = atomic_load(&pool.ticket);
        unsigned g = (unsigned)(t >> 40), n = (unsigned)(t >> 20) & 0xfffff, next = (unsigned)t & 0xfffff;
        if (g != (gen & 0xffffff) || next >= n) return;
        if (!atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) continue;
        pool.fn(pool.arg, (int)next, (int)n); /* fn and arg stay valid: the job's caller waits for this chunk */
        atomic_fetch_add(&pool.done, 1);
    }
}

static void *worker(void *unused) {
    (void)unused;
    in_job = true;
    unsigned seen = atomic_load(&pool.published);
    for (;;) {
        unsigned gen = atomic_load(&pool.published);
        for (int spin = 0; gen == seen && spin < 2000 && !atomic_load(&pool.stop); spin++) {
#if defined(__x86_64__)
            __builtin_ia32_pause(); /* tens of microseconds: back-to-back jobs */
#endif
            gen = atomic_load(&pool.published);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((gen = atomic_load(&pool.published)) == seen && !atomic_load(&pool.stop))
                pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        if (gen == seen && atomic_load(&pool.stop)) break;
        seen = gen;
        work_on(gen);
    }
    ftc_mm_release_own();
    return NULL;
}

/* Under pool.call: starts the workers the size asks for, once; returns how many run. */
static int start_locked(void) {
    int want = size_locked() - 1;
    while (pool.workers < want && pool.workers < FTC_THREADS_MAX) {
        if (pthread_create(&pool.tid[pool.workers], NULL, worker, NULL) != 0) break; /* run with fewer */
        pool.workers++;
    }
    return pool.workers;
}

/* Under pool.call: stops and joins every worker. */
static void stop_locked(void) {
    if (!pool.workers) return;
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, true);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.workers; i++) pthread_join(pool.tid[i], NULL);
    pool.workers = 0;
    atomic_store(&pool.stop, false);
}

int ftc_threads_set(int n) {
    pthread_mutex_lock(&pool.call);
    int size = n <= 0 ? default_threads() : n > FTC_THREADS_MAX ? FTC_THREADS_MAX : n;
    if (size != pool.size) stop_locked();
    pool.size = size;
    pthread_mutex_unlock(&pool.call);
    return size;
}

int ftc_threads(void) {
    pthread_mutex_lock(&pool.call);
    int n = size_locked();
    pthread_mutex_unlock(&pool.call);
    return n;
}

void ftc_threads_shutdown(void) {
    pthread_mutex_lock(&pool.call);
    stop_locked();
    pthread_mutex_unlock(&pool.call);
}

int ftc_mm_pool_threads(void) {
    if (in_job) return 1;
    int n = atomic_load_explicit(&pool.size, memory_order_relaxed);
    return n ? n : ftc_threads();
}

bool ftc_mm_pool_run(int chunks, void (*fn)(void *arg, int chunk, int nchunks), void *arg) {
    if (in_job || chunks < 2 || chunks >= MAX_CHUNKS || pthread_mutex_trylock(&pool.call) != 0) return false;
    if (size_locked() < 2 || start_locked() == 0) {
        pthread_mutex_unlock(&pool.call);
        return false;
    }
    unsigned gen = atomic_load(&pool.published) + 1;
    if ((gen & 0xffffff) == 0) gen++; /* keeps a stale worker's generation from matching after a wrap */
    pool.fn = fn, pool.arg = arg;
    atomic_store(&pool.done, 0);
    atomic_store(&pool.ticket, make_ticket(gen, (unsigned)chunks, 0));
    atomic_store(&pool.published, gen);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    in_job = true;
    work_on(gen);
    in_job = false;
    /* Only chunks a worker already claimed are left. Spin briefly; then yield, in case that worker waits for
     * this very core (an overloaded machine). */
    for (int spin = 0; atomic_load(&pool.done) < (unsigned)chunks; spin++) {
        if (spin < 4000) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
    pthread_mutex_unlock(&pool.call);
    return true;
}

typedef struct {
    void (*fn)(void *ctx, int i);
    void *ctx;
} for_job;

static void for_chunk(void *arg, int chunk, int nchunks) {
    (void)nchunks;
    const for_job *j = arg;
    j->fn(j->ctx, chunk);
}

void ftc_parallel_for(int n, void (*fn)(void *ctx, int i), void *ctx) {
    for_job j = {fn, ctx};
    if (n > 1 && ftc_mm_pool_threads() > 1 && ftc_mm_pool_run(n, for_chunk, &j)) return;
    for (int i = 0; i < n; i++) fn(ctx, i);
}

typedef struct {
    int64_t n;
    void (*fn)(void *ctx, int64_t lo, int64_t hi);
    void *ctx;
} range_job;

static void range_chunk(void *arg, int chunk, int nchunks) {
    const range_job *j = arg;
    int64_t lo = j->n * chunk / nchunks, hi = j->n * (chunk + 1) / nchunks;
    if (hi > lo) j->fn(j->ctx, lo, hi);
}

void ftc_parallel_range(int64_t n, int worth, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx) {
    if (n <= 0) return;
    int nt = worth && n > 1 ? ftc_mm_pool_threads() : 1;
    if (nt > 1) {
        /* a few ranges per thread, so that a late thread costs little */
        int64_t chunks = n < 4 * (int64_t)nt ? n : 4 * (int64_t)nt;
        range_job j = {n, fn, ctx};
        if (ftc_mm_pool_run((int)chunks, range_chunk, &j)) return;
    }
    fn(ctx, 0, n);
}

/* ftc train over MPI: data parallelism (docs/distributed.md). The library has no transport; this file gives the
 * trainer its ftc_train_dp from MPI when ftc is built with it (CMake found MPI, FTC_MPI on: FTC_HAVE_MPI), and
 * says clearly why not otherwise. MPI starts only when a launcher started this process (mpirun sets
 * OMPI_COMM_WORLD_SIZE, MPICH's hydra PMI_SIZE): a plain `ftc train` never touches MPI. */
#include "cli.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef FTC_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#endif

/* The processes the launcher started (0: none, not started by a launcher) and this one's rank. */
static int launch_size(int *rank) {
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", NULL};
    static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", NULL};
    *rank = 0;
    for (int i = 0; sizes[i]; i++) {
        const char *v = getenv(sizes[i]);
        if (!v || !*v) continue;
        const char *r = getenv(ranks[i]);
        *rank = r ? atoi(r) : 0;
        return atoi(v) > 0 ? atoi(v) : 0;
    }
    return 0;
}

bool cli_dp_built(void) {
#ifdef FTC_HAVE_MPI
    return true;
#else
    return false;
#endif
}

#ifdef FTC_HAVE_MPI
static bool mpi_started;
static ftc_train_dp mpi_dp;

static ftc_status mpi_fail(int rc, const char *what, ftc_err *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    return ftc_errf(err, FTC_E_IO, "%s: %s", what, msg);
}

/* MPI counts are int: a long buffer goes in pieces of at most 2^30 elements */
static ftc_status allreduce(void *buf, int64_t n, MPI_Datatype type, size_t elem, ftc_err *err) {
    for (int64_t off = 0; off < n; off += (int64_t)1 << 30) {
        int64_t k = n - off < ((int64_t)1 << 30) ? n - off : (int64_t)1 << 30;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * elem, (int)k, type, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce", err);
    }
    return FTC_OK;
}
static ftc_status allreduce_f32(void *ctx, float *buf, int64_t n, ftc_err *err) {
    (void)ctx;
    return allreduce(buf, n, MPI_FLOAT, sizeof(float), err);
}
static ftc_status allreduce_f64(void *ctx, double *buf, int64_t n, ftc_err *err) {
    (void)ctx;
    return allreduce(buf, n, MPI_DOUBLE, sizeof(double), err);
}
/* Overlap (FTC_DP_OVERLAP=1, docs/distributed.md): MPI_Iallreduce per bucket, MPI_Testall between blocks of the
 * backward (Open MPI moves a nonblocking collective on only inside MPI calls), MPI_Waitall before the optimizer. */
static struct {
    MPI_Request *req;
    int n, cap;
} pending;
static ftc_status istart_f32(void *ctx, float *buf, int64_t n, ftc_err *err) {
    (void)ctx;
    for (int64_t off = 0; off < n; off += (int64_t)1 << 30) {
        int64_t k = n - off < ((int64_t)1 << 30) ? n - off : (int64_t)1 << 30;
        if (pending.n == pending.cap) {
            int cap = pending.cap ? 2 * pending.cap : 64;
            MPI_Request *q = realloc(pending.req, (size_t)cap * sizeof *q);
            if (!q) return ftc_errf(err, FTC_E_NOMEM, "out of memory for MPI requests");
            pending.req = q, pending.cap = cap;
        }
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                &pending.req[pending.n]);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Iallreduce", err);
        pending.n++;
    }
    return FTC_OK;
}
static ftc_status iprogress(void *ctx, ftc_err *err) {
    (void)ctx;
    int done = 0;
    int rc = pending.n ? MPI_Testall(pending.n, pending.req, &done, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Testall", err);
    if (done) pending.n = 0;
    return FTC_OK;
}
static ftc_status iwait_all(void *ctx, ftc_err *err) {
    (void)ctx;
    int rc = pending.n ? MPI_Waitall(pending.n, pending.req, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    pending.n = 0;
    return rc == MPI_SUCCESS ? FTC_OK : mpi_fail(rc, "MPI_Waitall", err);
}
static ftc_status barrier(void *ctx, ftc_err *err) {
    (void)ctx;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? FTC_OK : mpi_fail(rc, "MPI_Barrier", err);
}
#endif

int cli_dp_begin(const ftc_train_dp **out) {
    *out = NULL;
    int rank, size = launch_size(&rank);
    if (size == 0) return 0;
#ifdef FTC_HAVE_MPI
    int provided;
    /* the library's thread pool never calls MPI: only this thread does */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "ftc train: error: MPI_Init failed (rank %d of %d)\n", rank, size);
        return 3;
    }
    mpi_started = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* errors come back as codes (the trainer reports them), not as MPI's default abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    mpi_dp = (ftc_train_dp){.rank = rank, .size = size, .ctx = NULL, .allreduce_sum_f32 = allreduce_f32,
                            .allreduce_sum_f64 = allreduce_f64, .barrier = barrier};
    /* FTC_DP_OVERLAP=1: buckets overlapped with the backward; else (default: it measured slower on a quiet 2-core
     * machine, docs/distributed.md) one MPI_Allreduce after the backward */
    const char *ov = getenv("FTC_DP_OVERLAP");
    if (ov && strcmp(ov, "1") == 0) {
        mpi_dp.allreduce_start_f32 = istart_f32;
        mpi_dp.allreduce_progress = iprogress;
        mpi_dp.allreduce_wait_all = iwait_all;
    }
    if (size > 1) *out = &mpi_dp;
    return 0;
#else
    if (size == 1) return 0;
    if (rank == 0)
        fprintf(stderr, "ftc train: error: started as %d processes (mpirun), but this ftc was built without MPI "
                        "(FTC_MPI=OFF, or CMake found no MPI): install libopenmpi-dev and rebuild, or run one process\n",
                size);
    return 1;
#endif
}

void cli_dp_end(void) {
#ifdef FTC_HAVE_MPI
    if (mpi_started) MPI_Finalize();
    free(pending.req);
    pending.req = NULL, pending.n = pending.cap = 0;
    mpi_started = false;
#endif
}

void cli_dp_abort(int rc) {
#ifdef FTC_HAVE_MPI
    if (mpi_started && mpi_dp.size > 1) MPI_Abort(MPI_COMM_WORLD, rc ? rc : 3);
#endif
    (void)rc;
}

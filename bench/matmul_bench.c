/* Matmul microbenchmark: GFLOP/s of one implementation on the shapes training uses (bench/run_matmul.sh runs
 * it for each implementation alternately and tabulates medians).
 *
 *   matmul_bench --impl avx512|openblas|generic|bf16 [--reps R] [--only SUBSTRING] [--cpu-time]
 *
 * Each Linear (rows x in -> out) gives three matmuls: forward y = x W^T (NT: M=rows, N=out, K=in), input
 * gradient dx = dy W (NN: M=rows, N=in, K=out), weight gradient dW = dy^T x (TN: M=out, N=in, K=rows).
 * "peak" is a large square NN product. bf16 = ftc_matmul_bf16 with both operands already bf16.
 * Prints one line per shape: name layout M N K median min max (GFLOP/s over R timed runs after a warm-up). */
#include "ftc/base.h"
#include "ftc/matmul.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int rows, in, out; } linear_shape;
static const linear_shape linears[] = {
    {"minilm.qkvo", 2048, 384, 384},   {"minilm.ffn_up", 2048, 384, 1536}, {"minilm.ffn_down", 2048, 1536, 384},
    {"gpt2.c_attn", 1024, 768, 2304},  {"gpt2.c_proj", 1024, 768, 768},    {"gpt2.mlp_fc", 1024, 768, 3072},
    {"gpt2.mlp_proj", 1024, 3072, 768}, {"gpt2.lm_head", 1024, 768, 50257}, {"lora.A_r8", 2048, 768, 8},
    {"lora.B_r8", 2048, 8, 768},
};

/* --cpu-time: process CPU time instead of wall time. With one thread (OMP_NUM_THREADS=1) this measures the
 * kernel's speed per core, robust to other processes taking the cores (for comparing code changes). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct { float *A, *B, *C; uint16_t *Ah, *Bh; } buffers;

static void run_one(const char *impl, const buffers *b, bool ta, bool tb, int M, int N, int K) {
    int lda = ta ? M : K, ldb = tb ? K : N;
    if (strcmp(impl, "bf16") == 0)
        ftc_matmul_bf16(ta, tb, M, N, K, 1.0f, b->Ah, FTC_MM_BF16, lda, b->Bh, FTC_MM_BF16, ldb, 0.0f, b->C, N);
    else
        ftc_matmul(ta, tb, M, N, K, 1.0f, b->A, lda, b->B, ldb, 0.0f, b->C, N);
}

static void bench(const char *impl, const buffers *b, const char *name, const char *layout, int M, int N, int K,
                  int reps) {
    bool ta = layout[0] == 'T', tb = layout[1] == 'T';
    double flops = 2.0 * M * N * K, g[64];
    /* small products: repeat inside one timing so that clock resolution and call overhead do not dominate */
    int inner = (int)(2e8 / flops) + 1;
    run_one(impl, b, ta, tb, M, N, K); /* warm-up: packing buffers, threads, caches */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < inner; i++) run_one(impl, b, ta, tb, M, N, K);
        g[r] = flops * inner / (now() - t0) * 1e-9;
    }
    qsort(g, (size_t)reps, sizeof g[0], cmp_double);
    double med = reps % 2 ? g[reps / 2] : 0.5 * (g[reps / 2 - 1] + g[reps / 2]);
    printf("%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\n", name, layout, M, N, K, med, g[0], g[reps - 1]);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *impl = "avx512", *only = NULL;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--impl") == 0 && i + 1 < argc) impl = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--cpu-time") == 0) bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        else {
            fprintf(stderr, "usage: matmul_bench --impl avx512|openblas|generic|bf16 [--reps R] [--only SUBSTRING] [--cpu-time]\n");
            return 1;
        }
    }
    if (reps < 1 || reps > 64) reps = 5;
    const char *backend = strcmp(impl, "bf16") == 0 ? "avx512" : impl;
    if (!ftc_matmul_set_backend(backend)) {
        fprintf(stderr, "matmul_bench: backend %s not available on this CPU\n", backend);
        return 2;
    }
    size_t big = (size_t)3072 * 3072; /* the peak shape; every operand and C of the table must fit too */
    for (size_t s = 0; s < sizeof linears / sizeof linears[0]; s++) {
        const linear_shape *l = &linears[s];
        size_t sizes[3] = {(size_t)l->rows * l->in, (size_t)l->rows * l->out, (size_t)l->in * l->out};
        for (int i = 0; i < 3; i++) big = sizes[i] > big ? sizes[i] : big;
    }
    buffers b = {malloc(4 * big), malloc(4 * big), malloc(4 * big), malloc(2 * big), malloc(2 * big)};
    if (!b.A || !b.B || !b.C || !b.Ah || !b.Bh) {
        fprintf(stderr, "matmul_bench: out of memory\n");
        return 3;
    }
    ftc_rng r;
    ftc_rng_seed(&r, 1);
    for (size_t i = 0; i < big; i++) b.A[i] = ftc_rng_normal(&r), b.B[i] = ftc_rng_normal(&r);
    ftc_f32_to_bf16_n(b.A, b.Ah, big);
    ftc_f32_to_bf16_n(b.B, b.Bh, big);
    printf("# impl=%s backend=%s bf16=%s reps=%d\n", impl, ftc_matmul_backend(), ftc_matmul_bf16_backend(), reps);
    for (size_t s = 0; s < sizeof linears / sizeof linears[0]; s++) {
        const linear_shape *l = &linears[s];
        if (only && !strstr(l->name, only)) continue;
        bench(impl, &b, l->name, "NT", l->rows, l->out, l->in, reps);
        bench(impl, &b, l->name, "NN", l->rows, l->in, l->out, reps);
        bench(impl, &b, l->name, "TN", l->out, l->in, l->rows, reps);
    }
    if (!only || strstr("peak", only)) bench(impl, &b, "peak", "NN", 3072, 3072, 3072, reps);
    free(b.A), free(b.B), free(b.C), free(b.Ah), free(b.Bh);
    return 0;
}

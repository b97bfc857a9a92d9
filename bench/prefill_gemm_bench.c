/* A prompt chunk's weight products alone (issue 24: llama-1b bf16 prefill against llama.cpp): the seven GEMMs of one
 * llama-1b block (q 2048x2048, k and v 512x2048, o 2048x2048, gate and up 8192x2048, down 2048x8192, bf16 weights
 * stored N x K on huge pages as a loaded model has them) on --rows activation rows (f32, rewritten before each
 * product as the op before it would), as ftc_linear_forward_bf16 calls them.
 *   prefill_gemm_bench [--layers 4] [--reps 5] [--rows 256] [--threads 2] [--ldc-pad 0]
 * --ldc-pad P: C's rows P floats longer than N (C's stride off a power of two, to see whether the tiles' stores
 * alias in the caches; on the Zen 4 of 2026-12-05 it changed nothing).
 * --layers copies of the block (4: 486 MB, past the last-level cache, as a prefill streams 16 layers). Prints the
 * best CPU time of a pass over all layers (all threads' CPU: on a shared machine it compares builds more steadily
 * than wall time), per product, and a checksum of the last product (it must not change between builds: same bits).
 * Build A against build B alternated, this separates changes of 2-3% that decode_bench's prefill lines cannot on a
 * loaded machine. */
#include "ftc/matmul.h"
#include "ftc/threads.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static const char *const NAMES[7] = {"q", "k", "v", "o", "gate", "up", "down"};
static const int SHAPES[7][2] = {{2048, 2048}, {512, 2048}, {512, 2048}, {2048, 2048},
                                 {8192, 2048}, {8192, 2048}, {2048, 8192}}; /* N (outputs), K (inputs) */
#define MAX_LAYERS 32

int main(int argc, char **argv) {
    int layers = 4, reps = 5, rows = 256, threads = 2, pad = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--layers") == 0) layers = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) rows = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) threads = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--ldc-pad") == 0) pad = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: prefill_gemm_bench [--layers 4] [--reps 5] [--rows 256] [--threads 2] [--ldc-pad 0]\n");
            return 2;
        }
    }
    if (layers < 1 || layers > MAX_LAYERS || reps < 1 || rows < 1 || threads < 1 || pad < 0) {
        fprintf(stderr, "prefill_gemm_bench: --layers 1..%d, --reps, --rows and --threads positive\n", MAX_LAYERS);
        return 2;
    }
    ftc_threads_set(threads);
    uint16_t *W[MAX_LAYERS][7];
    float *x = malloc(sizeof(float) * (size_t)rows * 8192), *y = malloc(sizeof(float) * (size_t)rows * (8192 + pad));
    if (!x || !y) {
        fprintf(stderr, "prefill_gemm_bench: out of memory\n");
        return 1;
    }
    uint32_t s = 1;
    for (size_t i = 0; i < (size_t)rows * 8192; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
    for (int l = 0; l < layers; l++)
        for (int w = 0; w < 7; w++) {
            size_t n = (size_t)SHAPES[w][0] * SHAPES[w][1], bytes = sizeof(uint16_t) * n;
            void *p = NULL;
            if (posix_memalign(&p, (size_t)2 << 20, bytes)) {
                fprintf(stderr, "prefill_gemm_bench: out of memory\n");
                return 1;
            }
#ifdef MADV_HUGEPAGE
            (void)madvise(p, bytes, MADV_HUGEPAGE); /* as ftc_mem_alloc_weights */
#endif
            W[l][w] = p;
            for (size_t i = 0; i < n; i++) { /* bf16 values of magnitude about 2^-7 .. 1, either sign */
                s = s * 1664525u + 1013904223u;
                W[l][w][i] = (uint16_t)(0x3c00u | ((s >> 16) & 0x80ffu));
            }
        }
    double best = 1e30, per[7];
    for (int w = 0; w < 7; w++) per[w] = 1e30;
    for (int r = 0; r < reps; r++) {
        double pass = 0, acc[7] = {0};
        for (int l = 0; l < layers; l++)
            for (int w = 0; w < 7; w++) {
                int N = SHAPES[w][0], K = SHAPES[w][1];
                for (size_t i = 0; i < (size_t)rows * K; i++) x[i] = x[i] * 1.0f; /* written by the op before */
                double t0 = cpu_now();
                ftc_matmul_bf16(false, true, rows, N, K, 1.0f, x, FTC_MM_F32, K, W[l][w], FTC_MM_BF16, K, 0.0f, y, N + pad);
                double t = cpu_now() - t0;
                acc[w] += t, pass += t;
            }
        if (pass < best) best = pass;
        for (int w = 0; w < 7; w++)
            if (acc[w] < per[w]) per[w] = acc[w];
    }
    double check = 0;
    for (size_t i = 0; i < (size_t)rows * SHAPES[6][0]; i++)
        check += y[i / SHAPES[6][0] * (SHAPES[6][0] + pad) + i % SHAPES[6][0]] * (double)(i % 7 + 1);
    printf("prefill GEMMs, %d rows x %d layers, %d threads (%s, bf16 %s): best pass %.4f CPU s (%.1f rows per CPU s)\n",
           rows, layers, threads, ftc_matmul_backend(), ftc_matmul_bf16_backend(), best, rows * (double)layers / best);
    printf("per product, CPU ms over the layers:");
    for (int w = 0; w < 7; w++) printf(" %s %.1f", NAMES[w], per[w] * 1e3);
    printf("; checksum %.9g\n", check);
    for (int l = 0; l < layers; l++)
        for (int w = 0; w < 7; w++) free(W[l][w]);
    free(x), free(y);
    return 0;
}

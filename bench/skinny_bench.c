/* Decoding's skinny products alone (issue 24): the read rate of ftc_matmul / ftc_matmul_bf16 with 1..8 rows of A
 * against weights read along K, in each way the AVX-512 kernels can stream them (FTC_SKINNY: tiles, zen4, rows).
 *   skinny_bench [--layers 10] [--reps 7] [--threads 1]
 * The weights: --layers copies of one SmolLM2-135M block's seven products (q 576x576, k and v 192x576, o 576x576,
 * up and gate 1536x576, down 576x1536), f32 and bf16, far more than the last-level cache (10 layers: 142 MB f32),
 * each pass reading every weight once, as one decoding step does. Prints per row count and way the best CPU time
 * of a pass over --reps rounds (the ways alternate inside each round) and the weight bytes per CPU second: on a
 * shared machine CPU time compares the ways more steadily than wall time. Row results are the same bits in every
 * way (test_matmul); this measures speed only. */
#include "ftc/matmul.h"
#include "ftc/threads.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static const int SHAPES[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};

int main(int argc, char **argv) {
    int layers = 10, reps = 7, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--layers") == 0) layers = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: skinny_bench [--layers 10] [--reps 7] [--threads 1]\n");
            return 2;
        }
    }
    if (layers < 1 || reps < 1 || threads < 1) {
        fprintf(stderr, "skinny_bench: --layers, --reps and --threads take positive numbers\n");
        return 2;
    }
    ftc_threads_set(threads);
    int n = layers * 7;
    float **w = calloc((size_t)n, sizeof *w);
    uint16_t **wh = calloc((size_t)n, sizeof *wh);
    float *x = malloc(sizeof(float) * 8 * 1536), *y = malloc(sizeof(float) * 8 * 1536);
    if (!w || !wh || !x || !y) return 1;
    double bytes = 0;
    for (int i = 0; i < n; i++) {
        size_t e = (size_t)SHAPES[i % 7][0] * SHAPES[i % 7][1];
        if (posix_memalign((void **)&w[i], 64, e * sizeof(float)) || posix_memalign((void **)&wh[i], 64, e * 2)) return 1;
        for (size_t k = 0; k < e; k++) w[i][k] = (float)((k * 7 + (size_t)i) % 13) * 0.01f - 0.06f;
        ftc_f32_to_bf16_n(w[i], wh[i], e);
        bytes += (double)e * sizeof(float);
    }
    for (int i = 0; i < 8 * 1536; i++) x[i] = (float)(i % 17) * 0.03f - 0.2f;
    const int rows[] = {1, 2, 3, 4, 8};
    const char *ways[] = {"tiles", "zen4", "rows"};
    double best[2][5][3];
    for (int b = 0; b < 2; b++)
        for (int m = 0; m < 5; m++)
            for (int h = 0; h < 3; h++) best[b][m][h] = 1e30;
    printf("skinny_bench: %d layers (%.0f MB f32), %d threads, best of %d; CPU default: %s\n", layers, bytes / 1e6,
           threads, reps, ftc_matmul_skinny());
    for (int r = 0; r < reps; r++)
        for (int b = 0; b < 2; b++)
            for (int m = 0; m < 5; m++)
                for (int h = 0; h < 3; h++) {
                    if (!ftc_matmul_set_skinny(ways[h])) return 1;
                    int M = rows[m];
                    double t0 = cpu_now();
                    for (int i = 0; i < n; i++) {
                        int N = SHAPES[i % 7][0], K = SHAPES[i % 7][1];
                        if (b) ftc_matmul_bf16(false, true, M, N, K, 1.0f, x, FTC_MM_F32, K, wh[i], FTC_MM_BF16, K, 0.0f, y, N);
                        else ftc_matmul(false, true, M, N, K, 1.0f, x, K, w[i], K, 0.0f, y, N);
                    }
                    double t = cpu_now() - t0;
                    if (t < best[b][m][h]) best[b][m][h] = t;
                }
    ftc_matmul_set_skinny("auto");
    for (int b = 0; b < 2; b++) {
        printf("%s weights (bf16 products: %s):\n", b ? "bf16" : "f32", b ? ftc_matmul_bf16_dot() : "-");
        for (int m = 0; m < 5; m++) {
            printf("  %d row%s of A:", rows[m], rows[m] > 1 ? "s" : " ");
            for (int h = 0; h < 3; h++)
                printf("  %s %6.2f ms CPU (%5.1f GB/s)", ways[h], best[b][m][h] * 1e3,
                       bytes / (b ? 2 : 1) / best[b][m][h] / 1e9);
            printf("\n");
        }
    }
    for (int i = 0; i < n; i++) free(w[i]), free(wh[i]);
    free(w), free(wh), free(x), free(y);
    return 0;
}

/* Fused quantized matmul vs f32 / bf16 matmul at training shapes: forward Y = X W^T and input gradient
 * dX = dY W, milliseconds per call (best of reps); last rows: generation's forward with 8-bit activations (q8a: the row kernels, q8g: prefill's int8 GEMM). Usage: qmatmul_bench [N I O [reps]]
 * qmatmul_bench --decode [ROWS [STEPS]]: the products of decoding one token (ROWS sequences) of SmolLM2-135M
 * alone, 30 layers' own weights + the LM head, Q8_0 / Q4_0 / Q4_1 with 8-bit activations, per kernel set
 * (FTC_MATMUL avx2 and auto, alternated): ms a step (median of STEPS), weights GB/s, and CPU ms a step (all
 * threads; the figure to compare on a loaded machine, with FTC_THREADS=1).
 * qmatmul_bench --decode ROWS STEPS TYPES: only the types named in TYPES (e.g. q4_0,q4_1); with "auto" in it, only
 * the default kernels (e.g. q4_0,auto). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "ftc/matmul.h"
#include "ftc/quant.h"
#include "ftc/threads.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* SmolLM2-135M's products of one decoding step: per layer q, k, v, o, gate, up (576 in), down (1536 in); the head */
static int decode_sim(int rows, int steps, const char *only) {
    enum { L = 30, C = 576, KV = 192, F = 1536, V = 49152, NP = 7 * L + 1 };
    int shape[NP][2];
    for (int l = 0; l < L; l++) {
        const int s[7][2] = {{C, C}, {C, KV}, {C, KV}, {C, C}, {C, F}, {C, F}, {F, C}};
        memcpy(shape[7 * l], s, sizeof s);
    }
    shape[NP - 1][0] = C, shape[NP - 1][1] = V;
    float *src = malloc(sizeof(float) * 1024 * F), *X = malloc(sizeof(float) * (size_t)rows * F);
    float *Y = malloc(sizeof(float) * (size_t)rows * V);
    for (size_t i = 0; i < 1024 * (size_t)F; i++) src[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)rows * F; i++) X[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
    const int types[] = {FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1};
    printf("decode products of SmolLM2-135M, %d row(s), %d threads: ms a step (median of %d), weights GB/s, CPU ms\n", rows,
           ftc_threads(), steps);
    for (int t = 0; t < 3; t++) {
        if (only && !strstr(only, ftc_quant_name(types[t]))) continue;
        size_t off[NP + 1];
        off[0] = 0;
        for (int p = 0; p < NP; p++)
            off[p + 1] = (off[p] + ftc_quant_tensor_bytes(types[t], shape[p][1], shape[p][0]) + 4095) & ~(size_t)4095;
        uint8_t *Wq;
        if (posix_memalign((void **)&Wq, 2 << 20, off[NP])) return 1;
        madvise(Wq, off[NP], MADV_HUGEPAGE); /* as the model's weights (ftc_mem_alloc_weights) */
        for (int p = 0; p < NP; p++) /* 1024 rows at a time from one pattern */
            for (int o = 0; o < shape[p][1]; o += 1024) {
                int n = shape[p][1] - o < 1024 ? shape[p][1] - o : 1024;
                ftc_quantize_tensor(types[t], src, Wq + off[p] + (size_t)o * ftc_quant_row_bytes(types[t], shape[p][0]),
                                    n, shape[p][0]);
            }
        const char *be[2] = {"avx2", "auto"};
        const int b0 = only && strstr(only, "auto") ? 1 : 0; /* "auto" in TYPES: the auto kernels alone */
        double *ms[2] = {malloc(sizeof(double) * steps), malloc(sizeof(double) * steps)};
        double *cpu[2] = {malloc(sizeof(double) * steps), malloc(sizeof(double) * steps)};
        for (int s = -1; s < steps; s++) /* step -1: warm-up */
            for (int b = b0; b < 2; b++) {
                ftc_matmul_set_backend(be[b]);
                double t0 = now(), c0 = cpu_now();
                for (int p = 0; p < NP; p++)
                    ftc_qmatmul_forward_q8act(Y, X, Wq + off[p], types[t], rows, shape[p][0], shape[p][1], 0);
                if (s >= 0) ms[b][s] = (now() - t0) * 1e3, cpu[b][s] = (cpu_now() - c0) * 1e3;
            }
        for (int b = b0; b < 2; b++) {
            qsort(ms[b], steps, sizeof(double), cmp_double);
            qsort(cpu[b], steps, sizeof(double), cmp_double);
            double med = ms[b][steps / 2];
            printf("%-5s %-5s %8.3f ms  %6.1f GB/s  %7.1f tokens/s  %8.3f CPU ms\n", ftc_quant_name(types[t]), be[b],
                   med, (double)off[NP] / med / 1e6, rows * 1e3 / med, cpu[b][steps / 2]);
            free(ms[b]), free(cpu[b]);
        }
        ftc_matmul_set_backend("auto");
        free(Wq);
    }
    free(src), free(X), free(Y);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--decode"))
        return decode_sim(argc > 2 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 20, argc > 4 ? argv[4] : NULL);
    int N = argc > 3 ? atoi(argv[1]) : 512, I = argc > 3 ? atoi(argv[2]) : 768, O = argc > 3 ? atoi(argv[3]) : 3072;
    int reps = argc > 4 ? atoi(argv[4]) : 5;
    float *W = malloc(sizeof(float) * (size_t)O * I), *X = malloc(sizeof(float) * (size_t)N * I);
    float *Y = malloc(sizeof(float) * (size_t)N * O), *dX = malloc(sizeof(float) * (size_t)N * I);
    uint16_t *Wb = malloc(2 * (size_t)O * I);
    for (size_t i = 0; i < (size_t)O * I; i++) W[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)N * I; i++) X[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
    ftc_f32_to_bf16_n(W, Wb, (size_t)O * I);
    printf("N=%d I=%d O=%d backend %s / %s\n%-6s %10s %10s\n", N, I, O, ftc_matmul_backend(), ftc_matmul_bf16_backend(),
           "weight", "fwd ms", "dX ms");
    const int types[] = {-1, -2, FTC_GGML_Q8_0, FTC_GGML_Q4_0, FTC_GGML_Q4_1, FTC_GGML_Q4_K, FTC_QUANT_NF4, FTC_QUANT_NF4DQ};
    for (int t = 0; t < 14; t++) {
      bool b16 = t >= 8;
      int tt = b16 ? t - 6 : t; /* rows 8..13: the quantized types with bf16 products */
        void *Wq = NULL;
        if (types[tt] >= 0) {
            Wq = malloc(ftc_quant_tensor_bytes(types[tt], O, I));
            ftc_quantize_tensor(types[tt], W, Wq, O, I);
        }
        double best[2] = {1e9, 1e9};
        for (int r = 0; r < reps; r++)
            for (int pass = 0; pass < 2; pass++) {
                double t0 = now();
                if (types[tt] == -1) {
                    if (!pass) ftc_matmul(false, true, N, O, I, 1, X, I, W, I, 0, Y, O);
                    else ftc_matmul(false, false, N, I, O, 1, Y, O, W, I, 1, dX, I);
                } else if (types[tt] == -2) {
                    if (!pass) ftc_matmul_bf16(false, true, N, O, I, 1, X, FTC_MM_F32, I, Wb, FTC_MM_BF16, I, 0, Y, O);
                    else ftc_matmul_bf16(false, false, N, I, O, 1, Y, FTC_MM_F32, O, Wb, FTC_MM_BF16, I, 1, dX, I);
                } else if (!pass) ftc_qmatmul_forward(Y, X, Wq, types[tt], N, I, O, 0, b16);
                else ftc_qmatmul_backward_input(dX, Y, Wq, types[tt], N, I, O, b16);
                double dt = now() - t0;
                if (dt < best[pass]) best[pass] = dt;
            }
        printf("%-6s%s %10.2f %10.2f\n", types[tt] == -1 ? "f32" : types[tt] == -2 ? "bf16" : ftc_quant_name(types[tt]),
               b16 ? "/bf16" : "     ", best[0] * 1e3, best[1] * 1e3);
        free(Wq);
    }
    for (int t = 2; t < 5; t++) { /* generation's forward: 8-bit activations, integer block dots */
        void *Wq = malloc(ftc_quant_tensor_bytes(types[t], O, I));
        ftc_quantize_tensor(types[t], W, Wq, O, I);
        double best = 1e9;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            ftc_qmatmul_forward_q8act(Y, X, Wq, types[t], N, I, O, 0);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf("%-6s/q8a  %10.2f %10s\n", ftc_quant_name(types[t]), best * 1e3, "-");
        best = 1e9;
        for (int r = 0; r < reps; r++) { /* prefill's int8 GEMM (prompt chunks past 16 rows) */
            double t0 = now();
            ftc_qgemm_q8act_forward(Y, X, Wq, types[t], N, I, O, 0);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf("%-6s/q8g  %10.2f %10s\n", ftc_quant_name(types[t]), best * 1e3, "-");
        free(Wq);
    }
    return 0;
}

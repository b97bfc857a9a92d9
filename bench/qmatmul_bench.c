/* Fused quantized matmul vs f32 / bf16 matmul at training shapes: forward Y = X W^T and input gradient
 * dX = dY W, milliseconds per call (best of reps); last rows: generation's forward with 8-bit activations (q8a: the row kernels, q8g: prefill's int8 GEMM). Usage: qmatmul_bench [N I O [reps]] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "ftc/matmul.h"
#include "ftc/quant.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
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

/* Fused elementwise passes that follow a matmul: one trip through memory instead of one per op. */
#include "ftc/ops.h"

/* Rows per block: a block of pre-activations (16 x 3072 f32 = 192 KB at GPT-2's widest) stays in L2 between
 * the bias add and the activation. */
enum { FUSED_ROWS = 16 };

/* The matmul leaves x = X W^T without bias (beta 0: it neither writes a bias first nor reads C back); here
 * each row block gets its bias, then GELU, while it is in cache. Before, the bias was copied into every row,
 * the matmul read it back and GELU read the sum again: two more passes over N x O values. The results equal
 * add-then-GELU exactly (the same ops per value; the GELU kernels are elementwise). */
void ftc_bias_gelu_forward(float *y, float *x, const float *b, int N, int O, bool tanh_form) {
    int nblk = (N + FUSED_ROWS - 1) / FUSED_ROWS;
#pragma omp parallel for schedule(static) if ((long)N * O > 65536)
    for (int blk = 0; blk < nblk; blk++) {
        int n0 = blk * FUSED_ROWS, n1 = n0 + FUSED_ROWS < N ? n0 + FUSED_ROWS : N;
        float *xb = x + (size_t)n0 * O;
        if (b)
            for (int n = n0; n < n1; n++) {
                float *row = x + (size_t)n * O;
                for (int o = 0; o < O; o++) row[o] += b[o];
            }
        /* inside this region the GELU kernels run on this thread (no nested teams) */
        if (tanh_form) ftc_gelu_tanh_forward(y + (size_t)n0 * O, xb, (n1 - n0) * O);
        else ftc_gelu_erf_forward(y + (size_t)n0 * O, xb, (n1 - n0) * O);
    }
}

/* s = a + b (the residual stream, kept for backward), then y = norm(s), per row block while it is in cache:
 * the norm's reads of s come from L2 instead of memory. Each row's result is the norm kernel's own (it works
 * row by row), so this equals ftc_add_forward then the norm exactly. */
static void add_norm_forward(float *s, float *y, float *mean, float *rstd, const float *a, const float *b,
                             const float *w, const float *bias, int N, int C, float eps, bool rms) {
    int nblk = (N + FUSED_ROWS - 1) / FUSED_ROWS;
#pragma omp parallel for schedule(static) if ((long)N * C > 65536)
    for (int blk = 0; blk < nblk; blk++) {
        int n0 = blk * FUSED_ROWS, rows = (n0 + FUSED_ROWS < N ? n0 + FUSED_ROWS : N) - n0;
        size_t o = (size_t)n0 * C;
        ftc_add_forward(s + o, a + o, b + o, rows * C);
        if (rms) ftc_rmsnorm_forward(y + o, rstd + n0, s + o, w, rows, C, eps);
        else ftc_layernorm_forward(y + o, mean + n0, rstd + n0, s + o, w, bias, rows, C, eps);
    }
}

void ftc_add_layernorm_forward(float *s, float *y, float *mean, float *rstd, const float *a, const float *b,
                           const float *w, const float *bias, int N, int C, float eps) {
    add_norm_forward(s, y, mean, rstd, a, b, w, bias, N, C, eps, false);
}

void ftc_add_rmsnorm_forward(float *s, float *y, float *rstd, const float *a, const float *b, const float *w, int N, int C,
                         float eps) {
    add_norm_forward(s, y, NULL, rstd, a, b, w, NULL, N, C, eps, true);
}

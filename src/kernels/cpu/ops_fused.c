/* Fused elementwise passes that follow a matmul: one trip through memory instead of one per op. */
#include "ftc/ops.h"
#include "ftc/threads.h"

/* Rows per block: a block of pre-activations (16 x 3072 f32 = 192 KB at GPT-2's widest) stays in L2 between
 * the bias add and the activation. */
enum { FUSED_ROWS = 16 };

/* The matmul leaves x = X W^T without bias (beta 0: it neither writes a bias first nor reads C back); here
 * each row block gets its bias, then GELU, while it is in cache. Before, the bias was copied into every row,
 * the matmul read it back and GELU read the sum again: two more passes over N x O values. The results equal
 * add-then-GELU exactly (the same ops per value; the GELU kernels are elementwise). */
typedef struct {
    float *y, *x;
    const float *b;
    int N, O;
    bool tanh_form;
} bias_gelu_job;

static void bias_gelu_range(void *ctx, int64_t lo, int64_t hi) {
    const bias_gelu_job *j = ctx;
    float *y = j->y, *x = j->x;
    const float *b = j->b;
    int N = j->N, O = j->O;
    bool tanh_form = j->tanh_form;
    for (int blk = (int)lo; blk < (int)hi; blk++) {
        int n0 = blk * FUSED_ROWS, n1 = n0 + FUSED_ROWS < N ? n0 + FUSED_ROWS : N;
        float *xb = x + (size_t)n0 * O;
        if (b)
            for (int n = n0; n < n1; n++) {
                float *row = x + (size_t)n * O;
                for (int o = 0; o < O; o++) row[o] += b[o];
            }
        /* inside a pool job the GELU kernels run on this thread (no nested jobs) */
        if (tanh_form) ftc_gelu_tanh_forward(y + (size_t)n0 * O, xb, (n1 - n0) * O);
        else ftc_gelu_erf_forward(y + (size_t)n0 * O, xb, (n1 - n0) * O);
    }
}

void ftc_bias_gelu_forward(float *y, float *x, const float *b, int N, int O, bool tanh_form) {
    bias_gelu_job j = {y, x, b, N, O, tanh_form};
    ftc_parallel_range((N + FUSED_ROWS - 1) / FUSED_ROWS, (long)N * O > 65536, bias_gelu_range, &j);
}

/* s = a + b (the residual stream, kept for backward), then y = norm(s), per row block while it is in cache:
 * the norm's reads of s come from L2 instead of memory. Each row's result is the norm kernel's own (it works
 * row by row), so this equals ftc_add_forward then the norm exactly. */
typedef struct {
    float *s, *y, *mean, *rstd;
    const float *a, *b, *w, *bias;
    int N, C;
    float eps;
    bool rms;
} add_norm_job;

static void add_norm_range(void *ctx, int64_t lo, int64_t hi) {
    const add_norm_job *j = ctx;
    int N = j->N, C = j->C;
    for (int blk = (int)lo; blk < (int)hi; blk++) {
        int n0 = blk * FUSED_ROWS, rows = (n0 + FUSED_ROWS < N ? n0 + FUSED_ROWS : N) - n0;
        size_t o = (size_t)n0 * C;
        ftc_add_forward(j->s + o, j->a + o, j->b + o, rows * C);
        if (j->rms) ftc_rmsnorm_forward(j->y + o, j->rstd + n0, j->s + o, j->w, rows, C, j->eps);
        else ftc_layernorm_forward(j->y + o, j->mean + n0, j->rstd + n0, j->s + o, j->w, j->bias, rows, C, j->eps);
    }
}

static void add_norm_forward(float *s, float *y, float *mean, float *rstd, const float *a, const float *b,
                             const float *w, const float *bias, int N, int C, float eps, bool rms) {
    add_norm_job j = {s, y, mean, rstd, a, b, w, bias, N, C, eps, rms};
    ftc_parallel_range((N + FUSED_ROWS - 1) / FUSED_ROWS, (long)N * C > 65536, add_norm_range, &j);
}

void ftc_add_layernorm_forward(float *s, float *y, float *mean, float *rstd, const float *a, const float *b,
                           const float *w, const float *bias, int N, int C, float eps) {
    add_norm_forward(s, y, mean, rstd, a, b, w, bias, N, C, eps, false);
}

void ftc_add_rmsnorm_forward(float *s, float *y, float *rstd, const float *a, const float *b, const float *w, int N, int C,
                         float eps) {
    add_norm_forward(s, y, NULL, rstd, a, b, w, NULL, N, C, eps, true);
}

/* Linear layer (nn.Linear layout, W [O,I]); every product goes through ftc_matmul (f32) or ftc_matmul_bf16. */
#include "ftc/ops.h"
#include "ftc/matmul.h"
#include "ftc/threads.h"
#include "ftc/quant.h"
#include "quant_internal.h"
#include "vmath.h"
#include <string.h>

/* y starts from the bias so the matmul adds onto it; returns the matmul's beta */
static float bias_init(float *y, const float *b, int N, int O) {
    if (!b) return 0.0f;
    for (int n = 0; n < N; n++) memcpy(y + (size_t)n * O, b, sizeof(float) * O);
    return 1.0f;
}

/* db[O] += sum_n dy[n,:]: rows in order n = 0..N-1 for every channel: deterministic; threads split channels.
 * A block of 64 channels sums into a local array that stays in registers over all rows (16 AVX-512 or SSE
 * registers), instead of loading and storing db for every row; compiled plain and for AVX-512 (vmath.h). */
enum { BIAS_CB = 64 };
VM_FORCE_INLINE void bias_block_body(float *db, const float *dy, int N, int O, int o0) {
    float acc[BIAS_CB];
    for (int j = 0; j < BIAS_CB; j++) acc[j] = db[o0 + j];
    for (int n = 0; n < N; n++) {
        const float *g = dy + (size_t)n * O + o0;
        for (int j = 0; j < BIAS_CB; j++) acc[j] += g[j];
    }
    for (int j = 0; j < BIAS_CB; j++) db[o0 + j] = acc[j];
}
VM_TWO_PATHS(bias_block, (float *db, const float *dy, int N, int O, int o0), (db, dy, N, O, o0))

typedef struct {
    float *db;
    const float *dy;
    int N, O;
    void (*blk)(float *, const float *, int, int, int);
} bias_bwd_job;

static void bias_bwd_range(void *ctx, int64_t lo, int64_t hi) {
    const bias_bwd_job *j = ctx;
    float *db = j->db;
    const float *dy = j->dy;
    int N = j->N, O = j->O, nfull = O / BIAS_CB, o_tail = nfull * BIAS_CB;
    for (int b = (int)lo; b < (int)hi; b++) {
        if (b < nfull) {
            j->blk(db, dy, N, O, b * BIAS_CB);
            continue;
        }
        for (int n = 0; n < N && o_tail < O; n++) /* the last O % 64 channels */
            for (int o = o_tail; o < O; o++) db[o] += dy[(size_t)n * O + o];
    }
}

static void bias_backward(float *db, const float *dy, int N, int O) {
    bias_bwd_job j = {db, dy, N, O, ftc_vm_use_avx512() ? bias_block_avx512 : bias_block_generic};
    ftc_parallel_range(O / BIAS_CB + 1, (long)N * O > 65536, bias_bwd_range, &j);
}

/* y[N,O] = x[N,I] @ W[O,I]^T + b[O] */
void ftc_linear_forward(float *y, const float *x, const float *W, const float *b, int N, int I, int O) {
    float beta = bias_init(y, b, N, O);
    ftc_matmul(false, true, N, O, I, 1.0f, x, I, W, I, beta, y, O);
}

/* dx[N,I] += dy[N,O] @ W[O,I]; dW[O,I] += dy^T @ x; db[O] += sum_n dy[n,:] */
void ftc_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int N, int I,
                     int O) {
    if (dx) ftc_matmul(false, false, N, I, O, 1.0f, dy, O, W, I, 1.0f, dx, I);
    if (dW) ftc_matmul(true, false, O, I, N, 1.0f, dy, O, x, I, 1.0f, dW, I);
    if (db) bias_backward(db, dy, N, O);
}

void ftc_linear_forward_bf16(float *y, const float *x, const uint16_t *W, const float *b, int N, int I, int O) {
    float beta = bias_init(y, b, N, O);
    ftc_matmul_bf16(false, true, N, O, I, 1.0f, x, FTC_MM_F32, I, W, FTC_MM_BF16, I, beta, y, O);
}

void ftc_linear_backward_bf16(float *dx, float *dW, float *db, const float *dy, const float *x, const uint16_t *W, int N,
                          int I, int O) {
    if (dx) ftc_matmul_bf16(false, false, N, I, O, 1.0f, dy, FTC_MM_F32, O, W, FTC_MM_BF16, I, 1.0f, dx, I);
    if (dW) ftc_matmul_bf16(true, false, O, I, N, 1.0f, dy, FTC_MM_F32, O, x, FTC_MM_F32, I, 1.0f, dW, I);
    if (db) bias_backward(db, dy, N, O);
}

void ftc_linear_forward_q(float *y, const float *x, const void *W, int qtype, const float *b, int N, int I, int O,
                          bool bf16) {
    float beta = bias_init(y, b, N, O);
    ftc_qmatmul_forward(y, x, W, qtype, N, I, O, beta, bf16);
}

void ftc_linear_forward_q8act(float *y, const float *x, const void *W, int qtype, const float *b, int N, int I, int O,
                              bool gemm) {
    float beta = bias_init(y, b, N, O);
    if (gemm) ftc_qgemm_q8act_forward(y, x, W, qtype, N, I, O, beta);
    else ftc_qmatmul_forward_q8act(y, x, W, qtype, N, I, O, beta);
}

void ftc_linear_forward_q8act_multi(float *const *y, const float *x, const void *const *W, int qtype,
                                    const float *const *b, const int *O, int n, int N, int I,
                                    void (*ep)(void *ctx, int o0, int o1), void *ep_ctx) {
    enum { GROUP = 4 };
    if (ep && n > GROUP) { /* the epilogue needs every product in one pass: the products, then ep */
        ftc_linear_forward_q8act_multi(y, x, W, qtype, b, O, n, N, I, NULL, NULL);
        ep(ep_ctx, 0, O[0]);
        return;
    }
    for (int p0 = 0; p0 < n; p0 += GROUP) { /* in groups, for the betas' array */
        const int g = n - p0 < GROUP ? n - p0 : GROUP;
        float beta[GROUP];
        for (int p = 0; p < g; p++) beta[p] = bias_init(y[p0 + p], b[p0 + p], N, O[p0 + p]);
        ftc_qmatmul_forward_q8act_multi_ep(y + p0, W + p0, O + p0, beta, g, x, qtype, N, I, ep, ep_ctx);
    }
}

void ftc_linear_backward_q(float *dx, float *db, const float *dy, const void *W, int qtype, int N, int I, int O,
                           bool bf16) {
    if (dx) ftc_qmatmul_backward_input(dx, dy, W, qtype, N, I, O, bf16);
    if (db) bias_backward(db, dy, N, O);
}

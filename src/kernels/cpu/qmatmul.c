/* Matmuls on a block-quantized weight W [O, I] (include/ftc/quant.h) without materialising it: the work is
 * cut into panels of W (rows x columns, 32768 values, 128 KB as f32 + 64 KB as bf16, on the thread's stack); each panel is decoded
 * once per call by the thread that owns it and multiplied with the f32 activations by ftc_matmul, which runs
 * single-threaded inside the pool's job. Threads own disjoint outputs, so no reduction and no locks:
 *   forward        Y[:, o-panel]  = X @ P^T over the column blocks, panels of 64 rows x 512 columns, threads
 *                  split the row panels (output columns of Y)
 *   input grad     dX[:, k-block] += dY[:, o-block] @ P, panels of 128 rows x 256 columns, threads split the
 *                  column blocks (columns of dX)
 * Every weight value is decoded exactly once per call: the decode is O*I work against N*O*I multiply-adds.
 * bf16 products of Q8_0/Q4_0/Q4_1 on AVX512-BF16 past SKINNY_N rows (and the input gradient at any rows) skip the
 * panels: qmatmul_bf16.c decodes the blocks straight into the bf16 GEMM's packed layout, with these same bits. */
#include "ftc/quant.h"
#include <stdlib.h>
#include <string.h>
#include "ftc/matmul.h"
#include "ftc/threads.h"
#include "matmul_internal.h" /* ftc_bf16_round_f32_avx2 */
#include "quant_internal.h"
#include "vmath.h" /* ftc_vm_isa: the vector decoders this CPU and FTC_MATMUL allow */

enum { PANEL = 32768, F_ROWS = 64, F_COLS = 512, B_ROWS = 128, B_COLS = 256 };

static bool parallel_worth(int N, int I, int O) { return (double)N * I * O >= 1 << 20; }

/* The panel's product: f32, or bf16 operands with f32 accumulation (P rounded into P16 first). pre (bf16 on the
 * AVX2 bf16 path only): A already holds the bf16 roundings of the activations as f32 (panel_job.Xr), and P is
 * rounded in place, so the product is ftc_matmul's on them: what ftc_matmul_bf16 computes there (matmul.c
 * bf16_avx2: both operands rounded to bf16 and kept as f32, then the f32 GEMM), to the bit, without its per-call
 * copies (two heap buffers per panel, and the rounding of the activations again for every panel). */
static void panel_mm(bool bf16, bool pre, bool tb, int M, int Nc, int K, const float *A, int lda, float *P,
                     uint16_t *P16, int ldp, float beta, float *C, int ldc, int pn) {
    if (pre) {
        ftc_bf16_round_f32_avx2(P, FTC_MM_F32, P, (size_t)pn);
        ftc_matmul(false, tb, M, Nc, K, 1.0f, A, lda, P, ldp, beta, C, ldc);
        return;
    }
    if (!bf16) {
        ftc_matmul(false, tb, M, Nc, K, 1.0f, A, lda, P, ldp, beta, C, ldc);
        return;
    }
    ftc_f32_to_bf16_n(P, P16, (size_t)pn);
    ftc_matmul_bf16(false, tb, M, Nc, K, 1.0f, A, FTC_MM_F32, lda, P16, FTC_MM_BF16, ldp, beta, C, ldc);
}

/* Decoding (at most SKINNY_N rows of X): panels of whole rows of W, each decoded once and multiplied by
 * ftc_matmul's skinny path (the weight's values are read once, as the f32 and bf16 decode paths read theirs);
 * the panels go to the pool (ftc_parallel_for), like the rest of decoding. */
enum { SKINNY_N = 16 };
/* Arguments of the panel loops (forward: Y = out, X = in; input grad: Y = dX, X = dY); rows: the skinny path's
 * rows of W per panel; dq / tail: NF4DQ's decoder and the weight's offset and scale2 (dec is NULL then). */
typedef struct {
    float *Y;
    const float *X;
    const float *Xr; /* set: X rounded to bf16 (as f32) for the AVX2 bf16 path (panel_mm's pre) */
    const uint8_t *W;
    size_t row_bytes;
    int block, block_bytes, N, I, O, rows;
    float beta;
    bool bf16;
    ftc_quant_decode_fn dec;
    ftc_nf4dq_decode_fn dq;
    const float *tail;
} panel_job;

/* rows [o0, o0+no) x columns [k0, k0+nk) of W into P [no, nk] */
static void decode_panel(float *P, const panel_job *j, int o0, int no, int k0, int nk) {
    for (int r = 0; r < no; r++) {
        const uint8_t *w = j->W + (size_t)(o0 + r) * j->row_bytes + (size_t)(k0 / j->block) * (size_t)j->block_bytes;
        if (j->dq) j->dq(w, P + (size_t)r * nk, nk / j->block, j->tail, (int64_t)(o0 + r) * (j->I / j->block) + k0 / j->block);
        else j->dec(w, P + (size_t)r * nk, nk / j->block);
    }
}

/* The job of a weight: its decoder(s) and sizes */
static panel_job make_job(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta, bool bf16) {
    panel_job j = {Y, X, NULL, W, ftc_quant_row_bytes(type, I), ftc_quant_block(type), ftc_quant_block_bytes(type), N, I, O,
                   0, beta, bf16, ftc_quant_decoder(type, ftc_vm_isa()), NULL, NULL};
    if (type == FTC_QUANT_NF4DQ) {
        j.dq = ftc_nf4dq_decoder(ftc_vm_isa());
        j.tail = (const float *)((const uint8_t *)W + ftc_nf4dq_tail(O, I));
    }
    return j;
}

static void skinny_panel(void *ctx, int p) {
    const panel_job *j = ctx;
    _Alignas(64) float P[PANEL];
    _Alignas(64) uint16_t P16[PANEL];
    int o0 = p * j->rows, no = j->O - o0 < j->rows ? j->O - o0 : j->rows;
    decode_panel(P, j, o0, no, 0, j->I);
    panel_mm(j->bf16, false, true, j->N, no, j->I, j->X, j->I, P, P16, j->I, j->beta, j->Y + o0, j->O, no * j->I);
}

/* At most FUSED_N rows of X, f32, on an AVX2 CPU: the fused kernels (qmatmul_avx2.c; one row: matrix-vector,
 * 2..8: each decoded block used for every row of X), rows of W in chunks of at most MATVEC_ROWS on the matmul
 * threads, at least 4 chunks per thread (SmolLM2's 192-row K and V projections were 3 chunks of 64 rows for 2
 * threads: one thread did two thirds). Past 8 rows the kernel makes a second pass over each W row and its 5 vector
 * ops per block and row lose to the panel path's f32 4x3 tiles (4 FMA): qmatmul_bench 16 576 12288, one thread,
 * Q8_0 4.8 ms fused vs 4.4 ms panels; 12 rows even; 2..8 rows fused 1.2-2.2x faster (bench/RESULTS.md). */
enum { MATVEC_ROWS = 64, FUSED_N = 8 };
typedef struct {
    float *y;
    const float *x, *xsum;
    const void *W;
    size_t row_bytes;
    int type, N, I, O, rows;
    float beta;
} matvec_job;

static void matvec_chunk(void *ctx, int c) {
    const matvec_job *j = ctx;
    int o0 = c * j->rows, o1 = o0 + j->rows < j->O ? o0 + j->rows : j->O;
    if (j->N == 1) ftc_qmatvec_avx2(j->type, j->y, j->x, j->xsum, j->W, j->row_bytes, j->I, o0, o1, j->beta);
    else ftc_qmatrows_avx2(j->type, j->y, j->x, j->xsum, j->N, j->W, j->row_bytes, j->I, j->O, o0, o1, j->beta);
}

static void forward_panel(void *ctx, int p) {
    const panel_job *j = ctx;
    _Alignas(64) float P[PANEL];
    _Alignas(64) uint16_t P16[PANEL];
    int I = j->I, O = j->O, o0 = p * F_ROWS, no = O - o0 < F_ROWS ? O - o0 : F_ROWS;
    for (int k0 = 0; k0 < I; k0 += F_COLS) {
        int nk = I - k0 < F_COLS ? I - k0 : F_COLS;
        decode_panel(P, j, o0, no, k0, nk);
        panel_mm(j->bf16, j->Xr != NULL, true, j->N, no, nk, (j->Xr ? j->Xr : j->X) + k0, I, P, P16, nk,
                 k0 == 0 ? j->beta : 1.0f, j->Y + o0, O, no * nk);
    }
}

static void backward_block(void *ctx, int kb) {
    const panel_job *j = ctx;
    _Alignas(64) float P[PANEL];
    _Alignas(64) uint16_t P16[PANEL];
    int I = j->I, O = j->O, k0 = kb * B_COLS, nk = I - k0 < B_COLS ? I - k0 : B_COLS;
    for (int o0 = 0; o0 < O; o0 += B_ROWS) {
        int no = O - o0 < B_ROWS ? O - o0 : B_ROWS;
        decode_panel(P, j, o0, no, k0, nk);
        panel_mm(j->bf16, j->Xr != NULL, false, j->N, nk, no, (j->Xr ? j->Xr : j->X) + o0, O, P, P16, nk, 1.0f,
                 j->Y + k0, I, no * nk);
    }
}

/* The panel paths' bf16 products on the AVX2 bf16 path (ftc_matmul_bf16_backend() "avx2"), past SKINNY_N rows: the
 * activations rounded once per call ([rows, cols] f32, freed by the caller), so each panel's product is a plain f32
 * GEMM (panel_mm's pre). NULL: not that path, or out of memory (the panels then go through ftc_matmul_bf16). */
static float *round_activations(bool bf16, const float *X, int rows, int cols) {
    /* up to SKINNY_N rows ftc_matmul_bf16 takes its skinny bf16 kernel, not the f32 GEMM: left to it */
    if (!bf16 || rows <= SKINNY_N || strcmp(ftc_matmul_bf16_backend(), "avx2") != 0) return NULL;
    size_t n = (size_t)rows * (size_t)cols;
    float *Xr = malloc(sizeof(float) * n);
    if (Xr) ftc_bf16_round_f32_avx2(X, FTC_MM_F32, Xr, n);
    return Xr;
}

void ftc_qmatmul_forward(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta, bool bf16) {
    if (N <= 0 || O <= 0) return;
    if (I <= 0) {
        for (size_t i = 0; i < (size_t)N * O; i++) Y[i] = beta == 0.0f ? 0.0f : beta * Y[i];
        return;
    }
    panel_job j = make_job(Y, X, W, type, N, I, O, beta, bf16);
    if (N <= FUSED_N && !bf16 && I <= PANEL && ftc_vm_isa() == 1 && ftc_qmatvec_avx2_ok() &&
        (type == FTC_GGML_Q8_0 || type == FTC_GGML_Q4_0 || type == FTC_GGML_Q4_1)) {
        float xsum[FUSED_N * (PANEL / 32)]; /* Q4_1's block sums of each row of X (32 KB of stack) */
        if (type == FTC_GGML_Q4_1)
            for (int n = 0; n < N; n++) ftc_qmatvec_xsum_avx2(X + (size_t)n * I, I, xsum + (size_t)n * (I / 32));
        int per = 4 * ftc_threads(), rows = ((O + per - 1) / per + 3) & ~3; /* whole 4-row blocks */
        if (rows > MATVEC_ROWS) rows = MATVEC_ROWS;
        matvec_job mj = {Y, X, xsum, W, j.row_bytes, type, N, I, O, rows, beta};
        ftc_parallel_for((O + rows - 1) / rows, matvec_chunk, &mj);
        return;
    }
    if (N <= SKINNY_N && I <= PANEL) {
        j.rows = PANEL / I;
        ftc_parallel_for((O + j.rows - 1) / j.rows, skinny_panel, &j);
        return;
    }
    if (bf16 && ftc_qmatmul_bf16_direct_ok(type) && ftc_qmatmul_forward_bf16_direct(Y, X, W, type, N, I, O, beta)) return;
    float *Xr = round_activations(bf16, X, N, I);
    j.Xr = Xr;
    int panels = (O + F_ROWS - 1) / F_ROWS;
    if (parallel_worth(N, I, O)) ftc_parallel_for(panels, forward_panel, &j);
    else
        for (int p = 0; p < panels; p++) forward_panel(&j, p);
    free(Xr);
}

void ftc_qmatmul_backward_input(float *dX, const float *dY, const void *W, int type, int N, int I, int O, bool bf16) {
    if (N <= 0 || O <= 0 || I <= 0) return;
    if (bf16 && ftc_qmatmul_bf16_direct_ok(type) && ftc_qmatmul_backward_input_bf16_direct(dX, dY, W, type, N, I, O)) return;
    panel_job j = make_job(dX, dY, W, type, N, I, O, 1.0f, bf16);
    float *Xr = round_activations(bf16, dY, N, O);
    j.Xr = Xr;
    int kblocks = (I + B_COLS - 1) / B_COLS;
    if (parallel_worth(N, I, O)) ftc_parallel_for(kblocks, backward_block, &j);
    else
        for (int kb = 0; kb < kblocks; kb++) backward_block(&j, kb);
    free(Xr);
}

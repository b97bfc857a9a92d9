/* Generation's products on Q8_0 / Q4_0 / Q4_1 weights with 8-bit activations (issue 24, as llama.cpp does its
 * vec_dot on q8 blocks; our own code): each row of X is quantized once per product to blocks of 32 int8 with one
 * f32 scale (d = max|x| / 127, q = round-to-nearest-even(x * (1 / d)); s = d sum q for Q4_1's m term), and each
 * (W block, X block) pair is an exact integer dot product scaled once by d_w d_x in f32:
 *   Q8_0  sum_b d_w d_x sum q_w q_x     Q4_0  ... sum (q_w - 8) q_x     Q4_1  ... sum q_w q_x + m_w s_x
 * This is the portable twin (used where neither the AVX-512 VNNI kernels of qmatmul_avx512.c nor the AVX2 ones of
 * qmatmul_avx2.c run: FTC_MATMUL=generic, or a CPU without AVX2/F16C), and the quantizer all share (same bits). The result differs from the f32 product by
 * the activations' rounding: per value at most d_x / 2, so per output at most sum_b |d_w| d_x / 2 sum |q_w|
 * (plus f32 summation order); test_quant checks both. Training keeps the f32-activation kernels (qmatmul.c). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "ftc/threads.h"
#include "quant_internal.h"
#include "vmath.h"

void ftc_q8a_quantize(const float *x, int I, int8_t *q, float *d, float *s) {
    for (int b = 0; b < I / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            float v = rintf(xb[i] * id); /* nearest even, as vcvtps2dq; saturated as vpacksswb */
            int qi = v > 127.0f ? 127 : v >= -128.0f ? (int)v : -128;
            q[32 * b + i] = (int8_t)qi;
            sum += qi;
        }
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

static float wscale(int type, const uint8_t *w, int b, int32_t qv[32], float *m) {
    if (type == FTC_GGML_Q8_0) {
        const ftc_block_q8_0 *blk = (const ftc_block_q8_0 *)w + b;
        for (int i = 0; i < 32; i++) qv[i] = blk->qs[i];
        return ftc_f16_to_f32(blk->d);
    }
    const uint8_t *qs =
        type == FTC_GGML_Q4_0 ? ((const ftc_block_q4_0 *)w + b)->qs : ((const ftc_block_q4_1 *)w + b)->qs;
    const int off = type == FTC_GGML_Q4_0 ? 8 : 0;
    for (int i = 0; i < 16; i++) qv[i] = (qs[i] & 15) - off, qv[i + 16] = (qs[i] >> 4) - off;
    if (type == FTC_GGML_Q4_0) return ftc_f16_to_f32(((const ftc_block_q4_0 *)w + b)->d);
    *m = ftc_f16_to_f32(((const ftc_block_q4_1 *)w + b)->m);
    return ftc_f16_to_f32(((const ftc_block_q4_1 *)w + b)->d);
}

void ftc_q8a_matrows_c(int type, float *Y, const int8_t *XQ, const float *XD, const float *XS, int N, const void *W,
                       size_t row_bytes, int I, int O, int o0, int o1, float beta) {
    const int nb = I / 32;
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = (const uint8_t *)W + (size_t)o * row_bytes;
        for (int n = 0; n < N; n++) {
            const int8_t *xq = XQ + (size_t)n * I;
            float acc = 0.0f, macc = 0.0f;
            for (int b = 0; b < nb; b++) {
                int32_t qv[32], isum = 0;
                float m = 0.0f, d = wscale(type, w, b, qv, &m);
                for (int i = 0; i < 32; i++) isum += qv[i] * xq[32 * b + i];
                acc += d * XD[(size_t)n * nb + b] * (float)isum;
                if (type == FTC_GGML_Q4_1) macc += m * XS[(size_t)n * nb + b];
            }
            float *y = Y + (size_t)n * O + o, r = acc + macc;
            *y = beta == 0.0f ? r : r + beta * *y;
        }
    }
}

bool ftc_qmatmul_q8act_supported(int type, int I) {
    return (type == FTC_GGML_Q8_0 || type == FTC_GGML_Q4_0 || type == FTC_GGML_Q4_1) && I > 0 && I % 32 == 0;
}

/* Both threads split the rows of W (output columns), chunks of whole 4-row groups as the f32 fused kernels. Several
 * products of one prepared X (ftc_qmatmul_forward_q8act_multi) run as one parallel_for over all their chunks: each
 * product keeps the chunk size it has alone, so the same kernel calls on the same rows (the same bits). */
enum { Q8A_ROWS = 64, Q8A_MAX_OUT = 4, Q8A_EP_CHUNKS = 256 };
typedef struct {
    float *Y[Q8A_MAX_OUT];
    const void *W[Q8A_MAX_OUT];
    int O[Q8A_MAX_OUT], rows[Q8A_MAX_OUT], first[Q8A_MAX_OUT + 1]; /* first: product p's first chunk index */
    float beta[Q8A_MAX_OUT];
    const int8_t *xq;
    const float *xd, *xs;
    const void *xp; /* isa 2: the prepared rows */
    size_t row_bytes;
    int type, N, I, n_out, isa;
    /* non-NULL (every O equal): ep(ep_ctx, o0, o1) once the columns [o0, o1) of column chunk c are written in every
     * product, by the thread that completed the last of them (cdone[c] counts them) */
    void (*ep)(void *ctx, int o0, int o1);
    void *ep_ctx;
    _Atomic int *cdone;
} q8a_job;

static void q8a_rows(const q8a_job *j, int p, int o0, int o1) {
    const int O = j->O[p];
    if (j->isa == 2)
        ftc_q8a_matrows_avx512(j->type, j->Y[p], j->xp, j->N, j->W[p], j->row_bytes, j->I, O, o0, o1, j->beta[p]);
    else if (j->isa == 1)
        ftc_q8a_matrows_avx2(j->type, j->Y[p], j->xq, j->xd, j->xs, j->N, j->W[p], j->row_bytes, j->I, O, o0, o1,
                             j->beta[p]);
    else
        ftc_q8a_matrows_c(j->type, j->Y[p], j->xq, j->xd, j->xs, j->N, j->W[p], j->row_bytes, j->I, O, o0, o1,
                          j->beta[p]);
}

static void q8a_chunk(void *ctx, int c) {
    const q8a_job *j = ctx;
    int p = 0;
    while (c >= j->first[p + 1]) p++;
    c -= j->first[p];
    const int O = j->O[p], rows = j->rows[p], o0 = c * rows, o1 = o0 + rows < O ? o0 + rows : O;
    q8a_rows(j, p, o0, o1);
    /* the products' chunks keep their order (each product's rows one stream; chunks that interleaved the products'
     * weights cost the 8-row Q4_0 tiles 8% on one thread); the same columns of every product are then done */
    if (j->ep && atomic_fetch_add(&j->cdone[c], 1) + 1 == j->n_out) j->ep(j->ep_ctx, o0, o1);
}

int ftc_q8a_isa(void) {
    const int isa = ftc_vm_isa();
    if (isa == 2 && ftc_q8a_avx512_ok()) return 2;
    return isa >= 1 && ftc_qmatvec_avx2_ok() ? 1 : 0;
}

void ftc_qmatmul_forward_q8act_multi(float *const *Y, const void *const *W, const int *O, const float *beta, int n_out,
                                     const float *X, int type, int N, int I) {
    ftc_qmatmul_forward_q8act_multi_ep(Y, W, O, beta, n_out, X, type, N, I, NULL, NULL);
}

/* the products alone, then ep over all columns on this thread (the shapes the fused pass does not take) */
static void multi_then_ep(float *const *Y, const void *const *W, const int *O, const float *beta, int n_out,
                          const float *X, int type, int N, int I, void (*ep)(void *ctx, int o0, int o1), void *ep_ctx) {
    ftc_qmatmul_forward_q8act_multi_ep(Y, W, O, beta, n_out, X, type, N, I, NULL, NULL);
    if (ep && O[0] > 0) ep(ep_ctx, 0, O[0]);
}

void ftc_qmatmul_forward_q8act_multi_ep(float *const *Y, const void *const *W, const int *O, const float *beta,
                                        int n_out, const float *X, int type, int N, int I, void (*ep)(void *ctx, int o0, int o1),
                                        void *ep_ctx) {
    if (N <= 0 || n_out <= 0) return;
    if (ep) {
        bool same = n_out <= Q8A_MAX_OUT && ftc_qmatmul_q8act_supported(type, I) && O[0] > 0;
        for (int p = 1; same && p < n_out; p++) same = O[p] == O[0];
        if (!same) {
            multi_then_ep(Y, W, O, beta, n_out, X, type, N, I, ep, ep_ctx);
            return;
        }
    }
    if (n_out > Q8A_MAX_OUT) { /* more than the job holds: in groups */
        ftc_qmatmul_forward_q8act_multi(Y, W, O, beta, Q8A_MAX_OUT, X, type, N, I);
        ftc_qmatmul_forward_q8act_multi(Y + Q8A_MAX_OUT, W + Q8A_MAX_OUT, O + Q8A_MAX_OUT, beta + Q8A_MAX_OUT,
                                        n_out - Q8A_MAX_OUT, X, type, N, I);
        return;
    }
    if (!ftc_qmatmul_q8act_supported(type, I)) {
        for (int p = 0; p < n_out; p++)
            if (O[p] > 0) ftc_qmatmul_forward(Y[p], X, W[p], type, N, I, O[p], beta[p], false);
        return;
    }
    const int nb = I / 32;
    int isa = ftc_q8a_isa();
    if (isa == 2 && !ftc_q8a_avx512_tiles(type, I)) isa = 1; /* rows past the tiles' gather offsets: AVX2 */
    /* the rows' scratch: isa 2 its prepared layout, else q [N, I] int8 after d and s [N, nb] f32 */
    const size_t bytes = isa == 2 ? ftc_q8a_prepared_bytes(type, N, I) : (size_t)N * I + 2 * sizeof(float) * (size_t)N * nb;
    _Alignas(64) unsigned char stack[32768];
    void *heap = NULL, *buf = stack;
    if (bytes > sizeof stack) {
        buf = heap = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!heap) { /* no scratch: the f32-activation product (the library does not fail a forward on this) */
            for (int p = 0; p < n_out; p++)
                if (O[p] > 0) ftc_qmatmul_forward(Y[p], X, W[p], type, N, I, O[p], beta[p], false);
            if (ep && O[0] > 0) ep(ep_ctx, 0, O[0]);
            return;
        }
    }
    float *xd = buf, *xs = xd + (size_t)N * nb;
    int8_t *xq = (int8_t *)(xs + (size_t)N * nb);
    if (isa == 2) ftc_q8a_prepare_avx512(type, X, N, I, buf);
    else
        for (int n = 0; n < N; n++) {
            const float *x = X + (size_t)n * I;
            int8_t *q = xq + (size_t)n * I;
            float *d = xd + (size_t)n * nb, *s = xs + (size_t)n * nb;
            if (isa == 1) ftc_q8a_quantize_avx2(x, I, q, d, s);
            else ftc_q8a_quantize(x, I, q, d, s);
        }
    q8a_job j = {.xq = xq, .xd = xd, .xs = xs, .xp = buf, .row_bytes = ftc_quant_row_bytes(type, I), .type = type,
                 .N = N, .I = I, .n_out = n_out, .isa = isa, .ep = ep, .ep_ctx = ep_ctx};
    const int per = 4 * ftc_threads();
    for (int p = 0; p < n_out; p++) {
        const int o = O[p] > 0 ? O[p] : 0;
        int rows = ((o + per - 1) / per + 3) & ~3;
        if (rows > Q8A_ROWS) rows = Q8A_ROWS;
        if (isa == 2) { /* whole 16-row tiles, at most 48 (SmolLM2's 576: 12 chunks) */
            rows = ((o + per - 1) / per + 15) & ~15;
            if (rows > 48) rows = 48;
        }
        if (rows < 1) rows = 1;
        j.Y[p] = Y[p], j.W[p] = W[p], j.O[p] = o, j.rows[p] = rows, j.beta[p] = beta[p];
        j.first[p + 1] = j.first[p] + (o + rows - 1) / rows;
    }
    _Atomic int cdone_stack[Q8A_EP_CHUNKS], *cdone_heap = NULL;
    if (ep) { /* per column chunk, how many products have written it */
        j.cdone = j.first[1] <= Q8A_EP_CHUNKS ? cdone_stack : (cdone_heap = malloc(sizeof(_Atomic int) * j.first[1]));
        if (!j.cdone) j.ep = NULL; /* no memory: ep after the pass */
        for (int c = 0; j.cdone && c < j.first[1]; c++) atomic_init(&j.cdone[c], 0);
    }
    ftc_parallel_for(j.first[n_out], q8a_chunk, &j);
    if (ep && !j.ep) ep(ep_ctx, 0, O[0]);
    free(cdone_heap);
    free(heap);
}

void ftc_qmatmul_forward_q8act(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta) {
    if (N <= 0 || O <= 0) return;
    ftc_qmatmul_forward_q8act_multi(&Y, &W, &O, &beta, 1, X, type, N, I);
}

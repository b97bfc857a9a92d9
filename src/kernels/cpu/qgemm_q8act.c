/* Prefill's products on Q8_0 / Q4_0 / Q4_1 weights (issue 24): prompt chunks of more than 16 rows with 8-bit
 * activations, as llama.cpp's prompt processing. The activations are quantized once per row (ftc_q8a_quantize, the
 * bits of the decode kernels) and every output is exactly what the portable twin ftc_q8a_matrows_c computes:
 * per block pair the exact integer dot isum, then acc += (d_w d_x) isum in block order in f32, Q4_1's m term
 * summed apart (macc += m_w s_x), y = acc + macc (+ beta y). The vector kernels only reorder the integer work:
 *
 * A group of 16 rows of W is repacked once per call into 4-byte columns: for block b and byte group k (values
 * 4k..4k+3), 16 rows x 4 bytes = 64 bytes, so one vpdpbusd (AVX-512 VNNI) with 4 bytes of an X row broadcast
 * adds 4 products to each of the 16 rows' int32 lanes; 8 of them make the block's 16 dots, then one conversion and
 * three f32 ops for the 16 outputs (the decode kernels spend ~6 ops per block for ONE output). Register tile:
 * R rows of X (8; 6 with Q4_1's second accumulators) x 16 rows of W. vpdpbusd multiplies unsigned by signed
 * bytes, so W is stored unsigned and the offset taken back in the integer sum, once per (X row, block):
 *   Q8_0  (w + 128) . x - 128 sum x      Q4_0  q . x - 8 sum x (q the nibble, w = q - 8)      Q4_1  q . x
 * AVX2 (no VNNI): the same packing as two halves of 8 rows; vpmaddubsw + vpmaddwd. Its pair sums saturate at
 * 2^15, which (w + 128) x can pass, so there Q8_0 keeps w signed and takes the decode kernels' sign trick (|w|
 * times x with w's sign: at most 2 x 128 x 127). Nibbles times x stay below 2 x 15 x 127.
 * Threads split the groups of W (ftc_parallel_for); each packs its group on its stack and runs all rows of X.
 * Training never comes here (it keeps f32 activations for its gradients). */
#include <stdlib.h>
#include <string.h>
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "ftc/threads.h"
#include "quant_internal.h"
#include "vmath.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QG_X86 1
#define VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX2_FN __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))
#endif

enum { GR = 16, BLK = 32, KG = BLK / 4, BLOCK_BYTES = GR * BLK, STACK_I = 4096 };

/* The call's arguments: X quantized (xq [N, I], xd / xs [N, nb]) and xc [N, nb] the integer offset term of each
 * (row, block): -c sum xq with c the packing's offset (128, 8 or 0) */
typedef struct {
    float *Y;
    const int8_t *xq;
    const float *xd, *xs;
    const int32_t *xc;
    const void *W;
    size_t row_bytes;
    int type, N, I, O, isa; /* isa: 2 AVX-512 VNNI, 1 AVX2, 0 portable */
    float beta;
} gemm_job;

static bool offset_q8(int isa) { return isa == 2; } /* Q8_0 stored as w + 128 (VNNI) or signed (AVX2) */

#ifdef QG_X86
/* The group's packed values: w [nb][KG][GR][4] bytes, d and m [nb][GR] (m only for Q4_1); rows past the weight's
 * end are zero (their outputs are not stored) */
typedef struct {
    uint8_t *w;
    float *d, *m;
} packed;

/* w's block b as 32 values: Q8_0 signed bytes (+ 128 when `offset`), nibbles 0..15 for Q4_0 / Q4_1 */
static float unpack_block(int type, const uint8_t *row, int b, bool offset, uint8_t v[BLK], float *m) {
    if (type == FTC_GGML_Q8_0) {
        const ftc_block_q8_0 *blk = (const ftc_block_q8_0 *)row + b;
        for (int i = 0; i < BLK; i++) v[i] = (uint8_t)blk->qs[i] ^ (offset ? 0x80 : 0);
        return ftc_f16_to_f32(blk->d);
    }
    const uint8_t *qs =
        type == FTC_GGML_Q4_0 ? ((const ftc_block_q4_0 *)row + b)->qs : ((const ftc_block_q4_1 *)row + b)->qs;
    for (int i = 0; i < BLK / 2; i++) v[i] = qs[i] & 15, v[i + BLK / 2] = qs[i] >> 4;
    if (type == FTC_GGML_Q4_0) return ftc_f16_to_f32(((const ftc_block_q4_0 *)row + b)->d);
    *m = ftc_f16_to_f32(((const ftc_block_q4_1 *)row + b)->m);
    return ftc_f16_to_f32(((const ftc_block_q4_1 *)row + b)->d);
}

static void pack_group(packed *p, int type, const void *W, size_t row_bytes, int nb, int o0, int rows, bool offset) {
    for (int r = 0; r < GR; r++) {
        const uint8_t *row = (const uint8_t *)W + (size_t)(o0 + r) * row_bytes;
        for (int b = 0; b < nb; b++) {
            uint8_t v[BLK] = {0};
            float m = 0.0f, d = r < rows ? unpack_block(type, row, b, offset, v, &m) : 0.0f;
            uint8_t *dst = p->w + (size_t)b * BLOCK_BYTES + 4 * r;
            for (int k = 0; k < KG; k++) memcpy(dst + k * GR * 4, v + 4 * k, 4);
            p->d[b * GR + r] = d;
            if (p->m) p->m[b * GR + r] = m;
        }
    }
}


static inline int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* R rows of X (from n0) x the group's 16 rows: y = acc + macc (+ beta y) for the rows below `rows` */
INLINE VNNI_FN void tile_vnni(const gemm_job *j, const packed *p, const int R, bool q41, int n0, int o0, int rows) {
    const int I = j->I, nb = I / BLK;
    __m512 acc[8], macc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps(), macc[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const __m512i *wp = (const __m512i *)(p->w + (size_t)b * BLOCK_BYTES);
        __m512i ia[8];
        for (int r = 0; r < R; r++) ia[r] = _mm512_set1_epi32(j->xc[(size_t)(n0 + r) * nb + b]);
        for (int k = 0; k < KG; k++) {
            const __m512i wk = _mm512_load_si512(wp + k);
            for (int r = 0; r < R; r++)
                ia[r] = _mm512_dpbusd_epi32(ia[r], wk, _mm512_set1_epi32(load4(j->xq + (size_t)(n0 + r) * I + BLK * b + 4 * k)));
        }
        const __m512 dw = _mm512_load_ps(p->d + b * GR);
        for (int r = 0; r < R; r++) {
            const size_t xb = (size_t)(n0 + r) * nb + b;
            const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(j->xd[xb]));
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(s, _mm512_cvtepi32_ps(ia[r])));
            if (q41) macc[r] = _mm512_add_ps(macc[r], _mm512_mul_ps(_mm512_load_ps(p->m + b * GR), _mm512_set1_ps(j->xs[xb])));
        }
    }
    const __mmask16 mask = (__mmask16)((1u << rows) - 1);
    for (int r = 0; r < R; r++) {
        float *y = j->Y + (size_t)(n0 + r) * j->O + o0;
        __m512 v = _mm512_add_ps(acc[r], macc[r]);
        if (j->beta != 0.0f)
            v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(j->beta), _mm512_maskz_loadu_ps(mask, y)));
        _mm512_mask_storeu_ps(y, mask, v);
    }
}

/* one group: all rows of X, R at a time */
static VNNI_FN void group_vnni(const gemm_job *j, const packed *p, int o0, int rows) {
    int n = 0;
    if (j->type == FTC_GGML_Q4_1) {
        for (; n + 6 <= j->N; n += 6) tile_vnni(j, p, 6, true, n, o0, rows);
        for (; n < j->N; n++) tile_vnni(j, p, 1, true, n, o0, rows);
    } else {
        for (; n + 8 <= j->N; n += 8) tile_vnni(j, p, 8, false, n, o0, rows);
        for (; n + 4 <= j->N; n += 4) tile_vnni(j, p, 4, false, n, o0, rows);
        for (; n < j->N; n++) tile_vnni(j, p, 1, false, n, o0, rows);
    }
}

/* AVX2: 8 of the group's rows (half h), R rows of X; sgn: Q8_0's signed bytes (the sign trick) */
INLINE AVX2_FN void tile_avx2(const gemm_job *j, const packed *p, const int R, bool q41, bool sgn, int n0, int o0,
                              int h, int rows) {
    const int I = j->I, nb = I / BLK;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4], macc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps(), macc[r] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = p->w + (size_t)b * BLOCK_BYTES + 32 * h;
        __m256i ia[4];
        for (int r = 0; r < R; r++) ia[r] = _mm256_set1_epi32(j->xc[(size_t)(n0 + r) * nb + b]);
        for (int k = 0; k < KG; k++) {
            const __m256i wk = _mm256_load_si256((const __m256i *)(wb + k * GR * 4));
            const __m256i uk = sgn ? _mm256_sign_epi8(wk, wk) : wk;
            for (int r = 0; r < R; r++) {
                __m256i xk = _mm256_set1_epi32(load4(j->xq + (size_t)(n0 + r) * I + BLK * b + 4 * k));
                if (sgn) xk = _mm256_sign_epi8(xk, wk);
                ia[r] = _mm256_add_epi32(ia[r], _mm256_madd_epi16(_mm256_maddubs_epi16(uk, xk), ones));
            }
        }
        const __m256 dw = _mm256_load_ps(p->d + b * GR + 8 * h);
        for (int r = 0; r < R; r++) {
            const size_t xb = (size_t)(n0 + r) * nb + b;
            const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(j->xd[xb]));
            acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(s, _mm256_cvtepi32_ps(ia[r])));
            if (q41)
                macc[r] = _mm256_add_ps(macc[r], _mm256_mul_ps(_mm256_load_ps(p->m + b * GR + 8 * h), _mm256_set1_ps(j->xs[xb])));
        }
    }
    const int live = rows - 8 * h; /* rows of this half to store (1..8) */
    for (int r = 0; r < R; r++) {
        float *y = j->Y + (size_t)(n0 + r) * j->O + o0 + 8 * h, v[8];
        _mm256_storeu_ps(v, _mm256_add_ps(acc[r], macc[r]));
        for (int i = 0; i < 8 && i < live; i++) y[i] = j->beta == 0.0f ? v[i] : v[i] + j->beta * y[i];
    }
}

static AVX2_FN void group_avx2(const gemm_job *j, const packed *p, int o0, int rows) {
    const bool q41 = j->type == FTC_GGML_Q4_1, sgn = j->type == FTC_GGML_Q8_0;
    for (int h = 0; h < 2 && 8 * h < rows; h++) {
        int n = 0;
        if (q41) {
            for (; n + 4 <= j->N; n += 4) tile_avx2(j, p, 4, true, false, n, o0, h, rows);
            for (; n < j->N; n++) tile_avx2(j, p, 1, true, false, n, o0, h, rows);
        } else if (sgn) {
            for (; n + 4 <= j->N; n += 4) tile_avx2(j, p, 4, false, true, n, o0, h, rows);
            for (; n < j->N; n++) tile_avx2(j, p, 1, false, true, n, o0, h, rows);
        } else {
            for (; n + 4 <= j->N; n += 4) tile_avx2(j, p, 4, false, false, n, o0, h, rows);
            for (; n < j->N; n++) tile_avx2(j, p, 1, false, false, n, o0, h, rows);
        }
    }
}
#endif

/* group g: rows [16 g, 16 g + 16) of W for every row of X */
static void gemm_group(void *ctx, int g) {
    const gemm_job *j = ctx;
    const int o0 = g * GR, rows = j->O - o0 < GR ? j->O - o0 : GR;
    if (j->isa == 0) {
        ftc_q8a_matrows_c(j->type, j->Y, j->xq, j->xd, j->xs, j->N, j->W, j->row_bytes, j->I, j->O, o0, o0 + rows, j->beta);
        return;
    }
#ifdef QG_X86
    const int nb = j->I / BLK;
    _Alignas(64) uint8_t sw[GR * STACK_I];
    _Alignas(64) float sd[GR * (STACK_I / BLK)], sm[GR * (STACK_I / BLK)];
    packed p = {sw, sd, j->type == FTC_GGML_Q4_1 ? sm : NULL};
    void *heap = NULL;
    if (j->I > STACK_I) { /* one group of a wide weight: 20 bytes per column */
        heap = aligned_alloc(64, (size_t)GR * j->I + 2 * sizeof(float) * GR * (size_t)nb);
        if (!heap) { /* no scratch: the portable twin (same bits; the library does not fail a forward on this) */
            ftc_q8a_matrows_c(j->type, j->Y, j->xq, j->xd, j->xs, j->N, j->W, j->row_bytes, j->I, j->O, o0, o0 + rows,
                              j->beta);
            return;
        }
        p.w = heap, p.d = (float *)(p.w + (size_t)GR * j->I), p.m = p.m ? p.d + (size_t)GR * nb : NULL;
    }
    pack_group(&p, j->type, j->W, j->row_bytes, nb, o0, rows, offset_q8(j->isa));
    if (j->isa == 2) group_vnni(j, &p, o0, rows);
    else group_avx2(j, &p, o0, rows);
    free(heap);
#endif
}

static bool cpu_has_vnni(void) {
#ifdef QG_X86
    static int has = -1; /* asked once; a benign race, every thread writes the same value */
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512vnni");
    }
    return has;
#else
    return false;
#endif
}

int ftc_qgemm_q8act_isa(void) {
    if (ftc_vm_isa() == 2 && cpu_has_vnni()) return 2;
    return ftc_q8a_use_avx2() ? 1 : 0;
}

void ftc_qgemm_q8act_forward(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta) {
    if (N <= 0 || O <= 0) return;
    if (!ftc_qmatmul_q8act_supported(type, I)) {
        ftc_qmatmul_forward(Y, X, W, type, N, I, O, beta, false);
        return;
    }
    const int nb = I / BLK, isa = ftc_qgemm_q8act_isa();
    const size_t nbs = (size_t)N * nb;
    float *xd = malloc(3 * sizeof(float) * nbs + (size_t)N * I);
    if (!xd) { /* no scratch: the f32-activation product (the library does not fail a forward on this) */
        ftc_qmatmul_forward(Y, X, W, type, N, I, O, beta, false);
        return;
    }
    float *xs = xd + nbs;
    int32_t *xc = (int32_t *)(xs + nbs);
    int8_t *xq = (int8_t *)(xc + nbs);
    const int c = type == FTC_GGML_Q4_0 ? 8 : type == FTC_GGML_Q8_0 && offset_q8(isa) ? 128 : 0;
    for (int n = 0; n < N; n++) {
        const size_t r = (size_t)n * I;
        if (isa) ftc_q8a_quantize_avx2(X + r, I, xq + r, xd + (size_t)n * nb, xs + (size_t)n * nb);
        else ftc_q8a_quantize(X + r, I, xq + r, xd + (size_t)n * nb, xs + (size_t)n * nb);
        for (int b = 0; b < nb; b++) {
            int32_t sum = 0;
            for (int i = 0; i < BLK; i++) sum += xq[r + (size_t)BLK * b + i];
            xc[(size_t)n * nb + b] = -c * sum;
        }
    }
    gemm_job j = {Y, xq, xd, xs, xc, W, ftc_quant_row_bytes(type, I), type, N, I, O, isa, beta};
    ftc_parallel_for((O + GR - 1) / GR, gemm_group, &j);
    free(xd);
}

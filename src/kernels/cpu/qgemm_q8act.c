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
 * times x with w's sign: at most 2 x 128 x 127); nibble pairs (at most 2 x 15 x 127) add up in int16 over the
 * block's 8 byte groups (30480) and widen once.
 * Threads split the groups of W (ftc_parallel_for); each packs its group on its stack and runs all rows of X.
 * Training never comes here (it keeps f32 activations for its gradients). */
#include <stdlib.h>
#include <string.h>
#include "ftc/quant.h"
#include "ftc/threads.h"
#include "quant_internal.h"
#include "vmath.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QG_X86 1
#define VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
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
 * end hold zero scales and are never stored */
typedef struct {
    uint8_t *w;
    float *d, *m;
} packed;

/* Packs rows [o0, o0 + rows) of W (rows <= 16) into p, 8 rows per gather (each lane one row's 4 bytes, so a
 * gather is a column of the packed block); rows past `rows` are not read (zeros, flipped with the offset). offset: Q8_0 as w + 128.
 * The scales through F16C, as the decode kernels' (exact for every f16). */
static AVX2_FN void pack_group(packed *p, int type, const void *W, size_t row_bytes, int nb, int o0, int rows,
                               bool offset) {
    const size_t bbytes = type == FTC_GGML_Q8_0 ? sizeof(ftc_block_q8_0)
                          : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0) : sizeof(ftc_block_q4_1);
    const int qoff = type == FTC_GGML_Q8_0 ? 2 : type == FTC_GGML_Q4_0 ? 2 : 4; /* the values after d (and m) */
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), nib = _mm256_set1_epi8(15);
    const __m256i flip = _mm256_set1_epi8(offset ? (char)0x80 : 0), lo16 = _mm256_set1_epi32(0xffff);
    for (int h = 0; h < 2; h++) {
        const __m256i idx = _mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)row_bytes));
        const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows - 8 * h), lanes), zero = _mm256_setzero_si256();
        const uint8_t *base = (const uint8_t *)W + (size_t)(o0 + 8 * h) * row_bytes;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = base + (size_t)b * bbytes;
            uint8_t *dst = p->w + (size_t)b * BLOCK_BYTES + 32 * h;
#define GATHER(off) _mm256_mask_i32gather_epi32(zero, (const int *)(blk + (off)), idx, live, 1)
            if (type == FTC_GGML_Q8_0)
                for (int k = 0; k < KG; k++)
                    _mm256_store_si256((__m256i *)(dst + k * GR * 4), _mm256_xor_si256(GATHER(qoff + 4 * k), flip));
            else /* bytes 4k..4k+3 of qs hold values 4k.. (low nibbles) and 16 + 4k.. (high) */
                for (int k = 0; k < KG / 2; k++) {
                    const __m256i g = GATHER(qoff + 4 * k);
                    _mm256_store_si256((__m256i *)(dst + k * GR * 4), _mm256_and_si256(g, nib));
                    _mm256_store_si256((__m256i *)(dst + (k + KG / 2) * GR * 4),
                                       _mm256_and_si256(_mm256_srli_epi16(g, 4), nib));
                }
            const __m256i dm = GATHER(0); /* d in the low half, Q4_1's m in the high one */
#undef GATHER
            const __m256i dl = _mm256_and_si256(dm, lo16), ml = _mm256_srli_epi32(dm, 16);
            _mm256_store_ps(p->d + b * GR + 8 * h, _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(dl),
                                                                                   _mm256_extracti128_si256(dl, 1))));
            if (p->m)
                _mm256_store_ps(p->m + b * GR + 8 * h, _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(ml),
                                                                                       _mm256_extracti128_si256(ml, 1))));
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
        __m256i ia[4], s16[4];
        for (int r = 0; r < R; r++) ia[r] = _mm256_set1_epi32(j->xc[(size_t)(n0 + r) * nb + b]);
        for (int r = 0; r < R; r++) s16[r] = _mm256_setzero_si256();
        for (int k = 0; k < KG; k++) {
            const __m256i wk = _mm256_load_si256((const __m256i *)(wb + k * GR * 4));
            const __m256i uk = sgn ? _mm256_sign_epi8(wk, wk) : wk;
            for (int r = 0; r < R; r++) {
                __m256i xk = _mm256_set1_epi32(load4(j->xq + (size_t)(n0 + r) * I + BLK * b + 4 * k));
                if (sgn) { /* pairs up to 2 x 128 x 127: widened at once */
                    xk = _mm256_sign_epi8(xk, wk);
                    ia[r] = _mm256_add_epi32(ia[r], _mm256_madd_epi16(_mm256_maddubs_epi16(uk, xk), ones));
                } else { /* nibble pairs up to 2 x 15 x 127: the block's 8 fit an int16 (30480), widened once */
                    s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(uk, xk));
                }
            }
        }
        if (!sgn)
            for (int r = 0; r < R; r++) ia[r] = _mm256_add_epi32(ia[r], _mm256_madd_epi16(s16[r], ones));
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
        heap = aligned_alloc(64, ((size_t)GR * j->I + 2 * sizeof(float) * GR * (size_t)nb + 63) & ~(size_t)63);
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

/* X's rows quantized, QROWS per job: the quantizer's bits, and each block's offset term xc */
enum { QROWS = 8 };
typedef struct {
    const float *X;
    int8_t *xq;
    float *xd, *xs;
    int32_t *xc;
    int N, I, c, isa;
} quant_job;

static void quant_rows(void *ctx, int t) {
    const quant_job *j = ctx;
    const int nb = j->I / BLK;
    for (int n = t * QROWS; n < j->N && n < (t + 1) * QROWS; n++) {
        const size_t r = (size_t)n * j->I, rb = (size_t)n * nb;
        if (j->isa) ftc_q8a_quantize_avx2(j->X + r, j->I, j->xq + r, j->xd + rb, j->xs + rb);
        else ftc_q8a_quantize(j->X + r, j->I, j->xq + r, j->xd + rb, j->xs + rb);
        for (int b = 0; b < nb; b++) {
            int32_t sum = 0;
            for (int i = 0; i < BLK; i++) sum += j->xq[r + (size_t)BLK * b + i];
            j->xc[rb + b] = -j->c * sum;
        }
    }
}

void ftc_qgemm_q8act_forward(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta) {
    if (N <= 0 || O <= 0) return;
    if (!ftc_qmatmul_q8act_supported(type, I)) {
        ftc_qmatmul_forward(Y, X, W, type, N, I, O, beta, false);
        return;
    }
    const int nb = I / BLK, isa = ftc_q8a_isa();
    const size_t nbs = (size_t)N * nb;
    float *xd = malloc(3 * sizeof(float) * nbs + (size_t)N * I);
    if (!xd) { /* no scratch: the f32-activation product (the library does not fail a forward on this) */
        ftc_qmatmul_forward(Y, X, W, type, N, I, O, beta, false);
        return;
    }
    float *xs = xd + nbs;
    int32_t *xc = (int32_t *)(xs + nbs);
    int8_t *xq = (int8_t *)(xc + nbs);
    quant_job q = {X, xq, xd, xs, xc, N, I, type == FTC_GGML_Q4_0 ? 8 : type == FTC_GGML_Q8_0 && offset_q8(isa) ? 128 : 0, isa};
    ftc_parallel_for((N + QROWS - 1) / QROWS, quant_rows, &q);
    gemm_job j = {Y, xq, xd, xs, xc, W, ftc_quant_row_bytes(type, I), type, N, I, O, isa, beta};
    ftc_parallel_for((O + GR - 1) / GR, gemm_group, &j);
    free(xd);
}

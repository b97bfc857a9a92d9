/* bf16 products of packed weights (Q8_0, Q4_0, Q4_1) past decoding's few rows, on AVX512-BF16 (issue 18): the
 * weight's blocks are decoded straight into the bf16 GEMM's packed op(B) slivers (matmul_avx512.c), and the
 * activations are packed once per call, not once per panel. The panel path (qmatmul.c) decoded each panel to f32,
 * rounded it to bf16 and handed it to ftc_matmul_bf16, which packed it again and packed its slice of the
 * activations again for every panel: on llama-1b at 128 rows that cost about what the products did.
 *
 * Same bits as the panel path: the same K slices (forward 512 columns of W, input gradient 128 rows of W, each
 * slice's product added to the output as the panel path's calls did), the same roundings (a block's values d * q
 * (+ m) in f32, then bf16 nearest even; no value is a denormal, so vcvtne2ps2bf16 rounds them as the scalar
 * rounding does) and the GEMM's own micro-kernel on the same packed words:
 *   forward     Y[:, o0..o0+32] (beta on the first slice) += X[:, slice] W[o0..o0+32, slice]^T: a sliver of 32 rows
 *               of W per unit, 16 rows' blocks decoded to pair words and transposed in registers
 *   input grad  dX[:, c0..c0+256] += dY[:, slice] W[slice, c0..c0+256]: 8 slivers (8 block columns) per unit, rows
 *               2kp and 2kp+1 of a block column interleaved into one sliver row
 * Threads take contiguous ranges of units; each prefetches the weight bytes of its next slice while it computes.
 * The activations are packed once per pass over K (at most 512 KB of packed words per pass: see run_direct). */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/quant.h"
#include "ftc/threads.h"
#include "matmul_internal.h"
#include "quant_internal.h"
#include "transpose16_avx512.h"

#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16,f16c")))

enum { NR = FTC_MM_NR, MR = FTC_MM_MR, F_KC = 512, B_KC = 128, B_UNIT = 256, BLK = 32 };

bool ftc_qmatmul_bf16_direct_ok(int type) {
    if (type != FTC_GGML_Q8_0 && type != FTC_GGML_Q4_0 && type != FTC_GGML_Q4_1) return false;
    return strcmp(ftc_matmul_bf16_backend(), "avx512bf16") == 0;
}

BF16_FN static inline float half_to_f32(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); /* exact, as quant.c's h2f */
}

/* One block's 32 values (quant.c's decoders, the same f32 operations) as 32 bf16 in value order: pair word q
 * holds values 2q (low half) and 2q+1. lo/hi: the f32 values 0..15 and 16..31. */
BF16_FN static inline void dec_block(int type, const uint8_t *b, __m512 *lo, __m512 *hi) {
    if (type == FTC_GGML_Q8_0) {
        __m512 d = _mm512_set1_ps(half_to_f32(b));
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));
        *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d);
        *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d);
        return;
    }
    const __m512i low4 = _mm512_set1_epi32(15);
    if (type == FTC_GGML_Q4_0) {
        __m512 d = _mm512_set1_ps(half_to_f32(b));
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))), eight = _mm512_set1_epi32(8);
        *lo = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, low4), eight)));
        *hi = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight)));
        return;
    }
    /* Q4_1: d * q, then + m (two roundings, as the decoder) */
    __m512 d = _mm512_set1_ps(half_to_f32(b)), m = _mm512_set1_ps(half_to_f32(b + 2));
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + 4)));
    *lo = _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(v, low4))), m);
    *hi = _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4))), m);
}

BF16_FN static inline __m512i block_pairs(int type, const uint8_t *b) {
    __m512 lo, hi;
    dec_block(type, b, &lo, &hi);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* In-register transpose of 16 x 16 words: r[i] = row i on entry, column i on return. */
BF16_FN static inline void transpose16(__m512i ri[16]) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_castsi512_ps(ri[i]);
    ftc_transpose16_ps(r);
    for (int i = 0; i < 16; i++) ri[i] = _mm512_castps_si512(r[i]);
}

typedef struct {
    float *Y;        /* forward: Y [N, O]; input grad: dX [N, I] */
    const float *X;  /* forward: X [N, I]; input grad: dY [N, O] */
    const uint8_t *W;
    size_t row_bytes;
    int type, bbytes, N, I, O, K, kslice, m_round;
    float beta;
    int k_lo, k_hi;  /* the K range of this pass (whole slices) */
    uint32_t *apack; /* its op(A) packed: the slice at k0 at m_round * (k0 - k_lo) / 2 words */
} direct_job;

static inline const uint32_t *apack_at(const direct_job *j, int k0) {
    return j->apack + (size_t)j->m_round * (size_t)((k0 - j->k_lo) / 2);
}

static void pack_a_slice(void *ctx, int s) {
    const direct_job *j = ctx;
    int k0 = j->k_lo + s * j->kslice, kc = j->k_hi - k0 < j->kslice ? j->k_hi - k0 : j->kslice;
    ftc_gemm_bf16_avx512_pack_a(j->X, j->K, j->N, k0, kc, (uint32_t *)apack_at(j, k0));
}

/* Bytes [from, to) of rows r0..r1 of W towards L2 (the next slice's, while this one computes). */
static inline void prefetch_rows(const direct_job *j, int r0, int r1, size_t from, size_t to) {
    for (int r = r0; r < r1; r++) {
        const char *p = (const char *)j->W + (size_t)r * j->row_bytes;
        for (size_t off = from; off < to; off += 64) _mm_prefetch(p + off, _MM_HINT_T1);
    }
}

/* forward: rows o0..o0+nr (nr <= 32) of W, blocks b0..b0+nb (nb <= 16) as one sliver of nb * 16 k pairs (type: a
 * constant once inlined into pack_fwd's cases) */
__attribute__((always_inline)) BF16_FN static inline void pack_fwd_t(const direct_job *j, int type, int o0, int nr, int b0,
                                                                     int nb, uint32_t *d) {
    const uint8_t *w = j->W + (size_t)o0 * j->row_bytes + (size_t)b0 * j->bbytes;
    for (int h = 0; h < 2; h++) {
        int rows = nr - 16 * h;
        if (rows <= 0) { /* no rows here: zero columns (their outputs are never stored) */
            for (int kp = 0; kp < nb * 16; kp++) _mm512_store_si512((void *)(d + (size_t)kp * NR + 16), _mm512_setzero_si512());
            continue;
        }
        for (int bb = 0; bb < nb; bb++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? block_pairs(type, w + (size_t)(16 * h + i) * j->row_bytes + (size_t)bb * j->bbytes)
                                : _mm512_setzero_si512();
            transpose16(r);
            uint32_t *o = d + (size_t)bb * 16 * NR + 16 * h;
            for (int c = 0; c < 16; c++) _mm512_store_si512((void *)(o + (size_t)c * NR), r[c]);
        }
    }
}

BF16_FN static void pack_fwd(const direct_job *j, int o0, int nr, int b0, int nb, uint32_t *d) {
    switch (j->type) {
    case FTC_GGML_Q8_0: pack_fwd_t(j, FTC_GGML_Q8_0, o0, nr, b0, nb, d); break;
    case FTC_GGML_Q4_0: pack_fwd_t(j, FTC_GGML_Q4_0, o0, nr, b0, nb, d); break;
    default: pack_fwd_t(j, FTC_GGML_Q4_1, o0, nr, b0, nb, d); break;
    }
}

BF16_FN static void forward_range(void *ctx, int64_t lo, int64_t hi) {
    const direct_job *j = ctx;
    _Alignas(64) uint32_t bp[F_KC / 2 * NR]; /* one sliver of one slice: 32 KB */
    int blo = j->k_lo / BLK, bhi = j->k_hi / BLK, sb = F_KC / BLK;
    for (int64_t u = lo; u < hi; u++) {
        int o0 = (int)u * NR, nr = j->O - o0 < NR ? j->O - o0 : NR;
        for (int b0 = blo; b0 < bhi; b0 += sb) {
            int nb = bhi - b0 < sb ? bhi - b0 : sb;
            if (b0 + sb < bhi) /* this sliver's next slice */
                prefetch_rows(j, o0, o0 + nr, (size_t)(b0 + sb) * j->bbytes,
                              (size_t)(b0 + sb + (bhi - b0 - sb < sb ? bhi - b0 - sb : sb)) * j->bbytes);
            else if (u + 1 < hi) { /* the next sliver's first slice */
                int o1 = o0 + NR, n1 = j->O - o1 < NR ? j->O - o1 : NR;
                prefetch_rows(j, o1, o1 + n1, (size_t)blo * j->bbytes, (size_t)(bhi - blo < sb ? bhi : blo + sb) * j->bbytes);
            }
            pack_fwd(j, o0, nr, b0, nb, bp);
            int k0 = b0 * BLK;
            ftc_gemm_bf16_avx512_packed(j->N, nr, nb * 16, apack_at(j, k0), bp, k0 == 0 ? j->beta : 1.0f, j->Y + o0, j->O);
        }
    }
}

/* input grad: rows k0..k0+kc of W (a slice of K = O), block columns c0..c0+nbk (nbk <= 8) as nbk slivers of
 * kp_n = (kc + 1) / 2 k pairs */
__attribute__((always_inline)) BF16_FN static inline void pack_bwd_t(const direct_job *j, int type, int k0, int kc, int c0,
                                                                     int nbk, uint32_t *d) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int kp_n = (kc + 1) / 2;
    for (int kp = 0; kp < kp_n; kp++) {
        const uint8_t *w0 = j->W + (size_t)(k0 + 2 * kp) * j->row_bytes + (size_t)c0 * j->bbytes;
        const uint8_t *w1 = 2 * kp + 1 < kc ? w0 + j->row_bytes : NULL;
        for (int bb = 0; bb < nbk; bb++) {
            __m512 a_lo, a_hi, b_lo = _mm512_setzero_ps(), b_hi = _mm512_setzero_ps();
            dec_block(type, w0 + (size_t)bb * j->bbytes, &a_lo, &a_hi);
            if (w1) dec_block(type, w1 + (size_t)bb * j->bbytes, &b_lo, &b_hi);
            /* words 0..15 row 2kp, 16..31 row 2kp+1, then interleaved: word c = row 2kp | row 2kp+1 << 16 */
            __m512i p0 = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b_lo, a_lo));
            __m512i p1 = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b_hi, a_hi));
            uint32_t *o = d + (size_t)bb * kp_n * NR + (size_t)kp * NR;
            _mm512_store_si512((void *)o, p0);
            _mm512_store_si512((void *)(o + 16), p1);
        }
    }
}

BF16_FN static void pack_bwd(const direct_job *j, int k0, int kc, int c0, int nbk, uint32_t *d) {
    switch (j->type) {
    case FTC_GGML_Q8_0: pack_bwd_t(j, FTC_GGML_Q8_0, k0, kc, c0, nbk, d); break;
    case FTC_GGML_Q4_0: pack_bwd_t(j, FTC_GGML_Q4_0, k0, kc, c0, nbk, d); break;
    default: pack_bwd_t(j, FTC_GGML_Q4_1, k0, kc, c0, nbk, d); break;
    }
}

BF16_FN static void backward_range(void *ctx, int64_t lo, int64_t hi) {
    const direct_job *j = ctx;
    _Alignas(64) uint32_t bp[B_UNIT / BLK * (B_KC / 2) * NR]; /* 8 slivers of one slice: 64 KB */
    int k_lo = j->k_lo, k_hi = j->k_hi;
    for (int64_t u = lo; u < hi; u++) {
        int c0 = (int)u * (B_UNIT / BLK), ncols = j->I - c0 * BLK < B_UNIT ? j->I - c0 * BLK : B_UNIT, nbk = ncols / BLK;
        size_t from = (size_t)c0 * j->bbytes, to = from + (size_t)nbk * j->bbytes;
        for (int k0 = k_lo; k0 < k_hi; k0 += B_KC) {
            int kc = k_hi - k0 < B_KC ? k_hi - k0 : B_KC, k1 = k0 + B_KC;
            if (k1 < k_hi) prefetch_rows(j, k1, k1 + (k_hi - k1 < B_KC ? k_hi - k1 : B_KC), from, to);
            else if (u + 1 < hi) { /* the next unit's first slice */
                int n1 = j->I - (c0 + nbk) * BLK < B_UNIT ? j->I - (c0 + nbk) * BLK : B_UNIT;
                prefetch_rows(j, k_lo, k_lo + (k_hi - k_lo < B_KC ? k_hi - k_lo : B_KC), to, to + (size_t)(n1 / BLK) * j->bbytes);
            }
            pack_bwd(j, k0, kc, c0, nbk, bp);
            ftc_gemm_bf16_avx512_packed(j->N, ncols, (kc + 1) / 2, apack_at(j, k0), bp, 1.0f, j->Y + (size_t)c0 * BLK, j->I);
        }
    }
}

static bool parallel_worth(int N, int I, int O) { return (double)N * I * O >= 1 << 20; }

/* The packed activations of one pass at most A_WORDS (512 KB, or one slice): the whole of a long K would stay
 * allocated on the calling thread (a LM head's input gradient, K = vocabulary: tens of MB of peak RSS). */
enum { A_WORDS = 1 << 17 };

/* units over K in passes of whole slices, each slice's product added onto the output in K order as the panel
 * path's calls did (so the passes change no bit); op(A) (X [N, K] f32) packed once per pass. false: out of memory,
 * nothing done. */
static bool run_direct(direct_job *j, int64_t units, void (*fn)(void *ctx, int64_t lo, int64_t hi)) {
    j->m_round = (j->N + MR - 1) / MR * MR;
    int per = A_WORDS / (j->m_round * (j->kslice / 2));
    int chunk = (per < 1 ? 1 : per) * j->kslice;
    if (chunk > j->K) chunk = (j->K + 1) / 2 * 2;
    j->apack = ftc_gemm_bf16_avx512_abuf((size_t)j->m_round * (size_t)(chunk / 2));
    if (!j->apack) return false;
    int worth = parallel_worth(j->N, j->I, j->O);
    for (j->k_lo = 0; j->k_lo < j->K; j->k_lo += chunk) {
        j->k_hi = j->K - j->k_lo < chunk ? j->K : j->k_lo + chunk;
        int slices = (j->k_hi - j->k_lo + j->kslice - 1) / j->kslice;
        if (parallel_worth(j->N, j->k_hi - j->k_lo, 64)) ftc_parallel_for(slices, pack_a_slice, j);
        else
            for (int s = 0; s < slices; s++) pack_a_slice(j, s);
        ftc_parallel_range(units, worth, fn, j);
    }
    return true;
}

bool ftc_qmatmul_forward_bf16_direct(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta) {
    direct_job j = {Y, X, W, ftc_quant_row_bytes(type, I), type, ftc_quant_block_bytes(type), N, I, O, I, F_KC, 0,
                    beta, 0, 0, NULL};
    return run_direct(&j, (O + NR - 1) / NR, forward_range);
}

bool ftc_qmatmul_backward_input_bf16_direct(float *dX, const float *dY, const void *W, int type, int N, int I, int O) {
    direct_job j = {dX, dY, W, ftc_quant_row_bytes(type, I), type, ftc_quant_block_bytes(type), N, I, O, O, B_KC, 0,
                    1.0f, 0, 0, NULL};
    return run_direct(&j, (I + B_UNIT - 1) / B_UNIT, backward_range);
}

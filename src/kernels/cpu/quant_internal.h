/* Block decoders shared by quant.c and qmatmul.c. */
#ifndef FTC_QUANT_INTERNAL_H
#define FTC_QUANT_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Q8_0's rounding of y = x / d (ggml's quantize_row_q8_0_ref: roundf, half away from zero) for |y| <= 127 up to
 * rounding, without the library call: the truncation, then the fraction, which is exact; out of range to +-127, a
 * NaN (an infinite or NaN input) to 0. The weights' and a q8_0 KV cache's quantizer (quant.c) and the cache's
 * 8-bit queries (ops_attention_decode_q8.inc) round with it, or with its 16-lane copy below: the same integers. */
static inline int8_t ftc_round_q8(float y) {
    y = y >= -127.0f && y <= 127.0f ? y : y > 0.0f ? 127.0f : y < 0.0f ? -127.0f : 0.0f;
    const int t = (int)y;
    const float f = y - (float)t;
    return (int8_t)(t + (f >= 0.5f) - (f <= -0.5f));
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* ftc_round_q8 on 16 lanes, narrowed to 16 int8 (the same operations) */
__attribute__((target("avx2,f16c,avx512f,avx512dq,avx512bw,avx512vl"))) static inline __m128i
ftc_round_q8_x16(__m512 y) {
    const __m512 lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f), zero = _mm512_setzero_ps();
    const __mmask16 in = _mm512_cmp_ps_mask(y, nlim, _CMP_GE_OQ) & _mm512_cmp_ps_mask(y, lim, _CMP_LE_OQ);
    const __m512 out = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ),
                                            _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), zero, nlim),
                                            lim);
    y = _mm512_mask_blend_ps(in, out, y);
    const __m512i t = _mm512_cvttps_epi32(y), one = _mm512_set1_epi32(1);
    const __m512 f = _mm512_sub_ps(y, _mm512_cvtepi32_ps(t));
    __m512i r = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, one);
    r = _mm512_mask_sub_epi32(r, _mm512_cmp_ps_mask(f, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), r, one);
    return _mm512_cvtepi32_epi8(r);
}
#endif

/* Decodes nb consecutive blocks into nb * block floats. */
typedef void (*ftc_quant_decode_fn)(const void *in, float *y, int64_t nb);
/* The decoder of a type (NULL if unsupported): isa 2 the AVX-512 copy, 1 the AVX2 one, 0 the portable one (same
 * bits; ftc_vm_isa() says which runs). */
ftc_quant_decode_fn ftc_quant_decoder(int type, int isa);
/* NF4DQ's decoder: nb blocks starting at block g0 of the weight (row-major block index), tail: the weight's
 * offset and scale2 (quant.h, ftc_nf4dq_tail) */
typedef void (*ftc_nf4dq_decode_fn)(const void *in, float *y, int64_t nb, const float *tail, int64_t g0);
ftc_nf4dq_decode_fn ftc_nf4dq_decoder(int isa);

/* AVX2 + FMA matrix-vector product on packed Q8_0/Q4_0/Q4_1 rows (qmatmul_avx2.c; only when ftc_vm_isa() == 1):
 * y[o] = W[o] . x (or + beta y[o]) for o in [o0, o1); I a multiple of 32; xsum: per-block sums of x (Q4_1) */
void ftc_qmatvec_avx2(int type, float *y, const float *x, const float *xsum, const void *W, size_t row_bytes, int I,
                      int o0, int o1, float beta);
/* The same for N rows of X [N, I] (2..16, batched decoding) into Y [N, O], columns [o0, o1); xsum [N, I/32] (Q4_1);
 * each row's values have the bits ftc_qmatvec_avx2 gives it alone */
void ftc_qmatrows_avx2(int type, float *Y, const float *X, const float *xsum, int N, const void *W, size_t row_bytes,
                       int I, int O, int o0, int o1, float beta);
void ftc_qmatvec_xsum_avx2(const float *x, int I, float *xsum);
/* The CPU has F16C, which ftc_qmatvec_avx2 also needs (every AVX2 CPU so far has it) */
bool ftc_qmatvec_avx2_ok(void);

/* 8-bit activations (qmatmul_q8act.c, generation). One row x [I] (I a multiple of 32) to I/32 blocks of 32 int8:
 * q [I] in value order, d [I/32] the scales (max|x| / 127), s [I/32] d * sum q (Q4_1's m term). The AVX2 copy
 * gives the same bits. */
void ftc_q8a_quantize(const float *x, int I, int8_t *q, float *d, float *s);
void ftc_q8a_quantize_avx2(const float *x, int I, int8_t *q, float *d, float *s);
/* Rows [o0, o1) of W (Q8_0/Q4_0/Q4_1) times N quantized rows of X (XQ [N, I], XD / XS [N, I/32]) into Y [N, O]
 * columns o0..o1 (Y = v, or v + beta Y): the portable twin and the AVX2 kernels (each row's values independent of
 * the other rows: the same bits alone and in a batch). AVX2 only when ftc_q8a_isa() == 1. */
void ftc_q8a_matrows_c(int type, float *Y, const int8_t *XQ, const float *XD, const float *XS, int N, const void *W,
                       size_t row_bytes, int I, int O, int o0, int o1, float beta);
void ftc_q8a_matrows_avx2(int type, float *Y, const int8_t *XQ, const float *XD, const float *XS, int N,
                          const void *W, size_t row_bytes, int I, int O, int o0, int o1, float beta);
/* The AVX-512 VNNI kernels (qmatmul_avx512.c): each row of X prepared once per product into its own layout
 * (ftc_q8a_prepared_bytes; the quantizer's bits), then the same rows and outputs as
 * ftc_q8a_matrows_c, within f32 rounding of it; each row's values independent of the other rows. */
bool ftc_q8a_avx512_ok(void);
size_t ftc_q8a_prepared_bytes(int type, int N, int I);
void ftc_q8a_prepare_avx512(int type, const float *X, int N, int I, void *buf);
void ftc_q8a_matrows_avx512(int type, float *Y, const void *buf, int N, const void *W, size_t row_bytes, int I, int O,
                            int o0, int o1, float beta);
/* whether ftc_q8a_matrows_avx512 can take this weight (Q8_0, Q4_0, Q4_1 rows within its 32-bit gather offsets:
 * 16 rows under 2 GB); ftc_qmatmul_forward_q8act uses the AVX2 kernels where not. Threads take whole 16-row tiles. */
bool ftc_q8a_avx512_tiles(int type, int I);
/* Which of them ftc_qmatmul_forward_q8act and the int8 GEMM of prompt chunks (qgemm_q8act.c) run: 2 AVX-512
 * VNNI (ftc_vm_isa() == 2 and the CPU has VNNI, BW, VL),
 * 1 AVX2 (ftc_vm_isa() >= 1: FTC_MATMUL=avx2 on an AVX-512 CPU), 0 the portable twin (FTC_MATMUL=generic) */
int ftc_q8a_isa(void);
/* n_out products of one X [N, I] on weights of one type: Y[p] = X W[p]^T + beta[p] Y[p] (W[p]: O[p] rows of I),
 * X quantized (prepared) once and all products' chunks in one parallel_for (a decoding step's q/k/v and gate/up);
 * each Y[p] has the bits ftc_qmatmul_forward_q8act gives it alone */
void ftc_qmatmul_forward_q8act_multi(float *const *Y, const void *const *W, const int *O, const float *beta, int n_out,
                                     const float *X, int type, int N, int I);
/* The same with an epilogue when every O[p] is equal: the same chunks in the same order (the same bits), and once a
 * column chunk [o0, o1) is written in every product, ep(ep_ctx, o0, o1) on the thread that wrote the last of them,
 * in the same parallel pass (e.g. SwiGLU of a decoding step's gate and up for those columns); other shapes run
 * ep(ep_ctx, 0, O) after the products. ep NULL: ftc_qmatmul_forward_q8act_multi. */
void ftc_qmatmul_forward_q8act_multi_ep(float *const *Y, const void *const *W, const int *O, const float *beta,
                                        int n_out, const float *X, int type, int N, int I, void (*ep)(void *ctx, int o0, int o1),
                                        void *ep_ctx);
/* bf16 products of Q8_0/Q4_0/Q4_1 weights on AVX512-BF16, the weight decoded straight into the bf16 GEMM's packed
 * layout (qmatmul_bf16.c): whether this type and the bf16 backend now in effect take it, and the forward
 * (Y = X W^T + beta Y) and input gradient (dX += dY W) with the panel path's bits; false: out of memory, nothing
 * done. */
bool ftc_qmatmul_bf16_direct_ok(int type);
bool ftc_qmatmul_forward_bf16_direct(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta);
bool ftc_qmatmul_backward_input_bf16_direct(float *dX, const float *dY, const void *W, int type, int N, int I, int O);
#endif

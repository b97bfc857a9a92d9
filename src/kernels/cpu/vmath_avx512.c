/* AVX-512 exp (vmath.h): the same steps as vm_exp1, 16 lanes at a time, with FMA and vscalefps (which
 * applies 2^n over the whole range, denormals and overflow included). Target attributes instead of -march:
 * vmath.c calls in only after a CPU-feature check. */
#include "vmath.h"
#include <immintrin.h>

#define AVX512_FN __attribute__((target("avx512f,avx512dq,fma")))

AVX512_FN static inline __m512 exp16(__m512 x) {
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 5040.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f)); /* 1 + expm1(r) */
    return _mm512_mask_mov_ps(_mm512_scalef_ps(p, n), nan, x);
}

AVX512_FN void ftc_vm_exp_avx512(float *y, const float *x, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

AVX512_FN double ftc_vm_exp_sum_avx512(float *y, const float *x, float shift, int n) {
    __m512 s = _mm512_set1_ps(shift);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int i = 0;
    /* full vectors unmasked (masked loads and stores on every vector cost 1.6x in the GELU kernels), then
     * the masked tail: the same additions in the same order either way */
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        if (y) _mm512_storeu_ps(y + i, e);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
        if (y) _mm512_mask_storeu_ps(y + i, m, e);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

/* AdamW over [0, n) (ops_optim.c): the scalar loop's operations in the same order, 16 lanes at a time.
 * sqrt and division are correctly rounded and no multiply-add is fused, so the result is bit-identical to
 * the portable loop (which libm's errno-setting sqrtf keeps from vectorising). */
AVX512_FN void ftc_vm_adamw_avx512(float *w, const float *g, float *m, float *v, int64_t n, float step_size,
                               float bc2_sqrt, float decay, float beta1, float one_m_b1, float beta2, float one_m_b2,
                               float eps, float gscale) {
    const __m512 vgs = _mm512_set1_ps(gscale); /* g * gscale first: what a clip would have stored */
    const __m512 vstep = _mm512_set1_ps(step_size), vbc2 = _mm512_set1_ps(bc2_sqrt), vdec = _mm512_set1_ps(decay);
    const __m512 vb1 = _mm512_set1_ps(beta1), v1b1 = _mm512_set1_ps(one_m_b1), vb2 = _mm512_set1_ps(beta2);
    const __m512 v1b2 = _mm512_set1_ps(one_m_b2), veps = _mm512_set1_ps(eps);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 wi = _mm512_maskz_loadu_ps(k, w + i), gi = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + i), vgs);
        __m512 mi = _mm512_maskz_loadu_ps(k, m + i), vi = _mm512_maskz_loadu_ps(k, v + i);
        wi = _mm512_mul_ps(wi, vdec);
        mi = _mm512_add_ps(_mm512_mul_ps(vb1, mi), _mm512_mul_ps(v1b1, gi));
        vi = _mm512_add_ps(_mm512_mul_ps(vb2, vi), _mm512_mul_ps(_mm512_mul_ps(v1b2, gi), gi));
        __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc2), veps);
        wi = _mm512_sub_ps(wi, _mm512_div_ps(_mm512_mul_ps(vstep, mi), den));
        _mm512_mask_storeu_ps(w + i, k, wi);
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
    }
}

/* ---- GELU (ops_act.c): the portable loops' formulas, 16 lanes at a time, fused into one pass (no scratch
 * array between the polynomial, the exp and the combination). FMA where the portable code has a multiply and
 * an add, so results differ from the portable path by a few ulp (tests/test_vmath.c bounds both). ---- */

static const float GELU_K16 = 0.7978845608028654f; /* sqrt(2/pi) */
static const float GELU_C16 = 0.044715f;

/* exp(-2u), u = sqrt(2/pi) (x + 0.044715 x^3): gelu_tanh's y = x / (1 + exp(-2u)) */
AVX512_FN static inline __m512 gelu_tanh_e16(__m512 x) {
    __m512 c3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_C16), x), x);
    __m512 u = _mm512_mul_ps(_mm512_set1_ps(GELU_K16), _mm512_fmadd_ps(c3, x, x));
    return exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u));
}

/* Phi(x) = 0.5 erfc(-x/sqrt 2), the Numerical Recipes erfcc fit (see normal_cdf1 in ops_act.c) */
AVX512_FN static inline __m512 normal_cdf16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    __m512 u = _mm512_div_ps(one, _mm512_fmadd_ps(half, z, one));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(-1.26551223f));
    __m512 h = _mm512_mul_ps(_mm512_mul_ps(half, u), exp16(_mm512_fnmadd_ps(z, z, p))); /* erfc(z) / 2 */
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(neg, _mm512_sub_ps(one, h), h);
}

static inline __mmask16 tail_mask(int left) { return (__mmask16)((1u << left) - 1); }

/* Each kernel: one 16-lane step on lanes k, run unmasked over the full vectors (k constant, so the masked
 * loads and stores fold into plain ones) and masked over the tail. */
#define LOOP16(step, n, ...)                                                                                           \
    do {                                                                                                               \
        int i_ = 0;                                                                                                    \
        for (; i_ + 16 <= (n); i_ += 16) step(i_, (__mmask16)0xffff, __VA_ARGS__);                                     \
        if (i_ < (n)) step(i_, tail_mask((n) - i_), __VA_ARGS__);                                                      \
    } while (0)

AVX512_FN static inline void gelu_tanh_step(int i, __mmask16 k, float *y, const float *x) {
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), gelu_tanh_e16(v))));
}
AVX512_FN void ftc_vm_gelu_tanh_avx512(float *y, const float *x, int n) { LOOP16(gelu_tanh_step, n, y, x); }

/* dx += dy (s + 2 x s (1 - s) u'),  s = sigmoid(2u), u' = sqrt(2/pi)(1 + 3*0.044715 x^2) */
AVX512_FN static inline void gelu_tanh_backward_step(int i, __mmask16 k, float *dx, const float *dy, const float *x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, gelu_tanh_e16(v)));
    __m512 du = _mm512_mul_ps(_mm512_set1_ps(GELU_K16), /* (3c x) x, as the portable loop: no overflow below 5e19 */
                              _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(3.0f * GELU_C16), v), v, one));
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(v, v), s), _mm512_sub_ps(one, s)), du);
    __m512 d = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dy + i), _mm512_add_ps(s, t), _mm512_maskz_loadu_ps(k, dx + i));
    _mm512_mask_storeu_ps(dx + i, k, d);
}
AVX512_FN void ftc_vm_gelu_tanh_backward_avx512(float *dx, const float *dy, const float *x, int n) {
    LOOP16(gelu_tanh_backward_step, n, dx, dy, x);
}

AVX512_FN static inline void gelu_erf_step(int i, __mmask16 k, float *y, const float *x) {
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(v, normal_cdf16(v)));
}
AVX512_FN void ftc_vm_gelu_erf_avx512(float *y, const float *x, int n) { LOOP16(gelu_erf_step, n, y, x); }

/* dx += dy (Phi(x) + x phi(x)),  phi(x) = exp(-x^2/2) / sqrt(2 pi) */
AVX512_FN static inline void gelu_erf_backward_step(int i, __mmask16 k, float *dx, const float *dy, const float *x) {
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    __m512 pdf = _mm512_mul_ps(exp16(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), v), v)),
                               _mm512_set1_ps(0.3989422804014327f));
    __m512 d = _mm512_fmadd_ps(v, pdf, normal_cdf16(v));
    _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dy + i), d, _mm512_maskz_loadu_ps(k, dx + i)));
}
AVX512_FN void ftc_vm_gelu_erf_backward_avx512(float *dx, const float *dy, const float *x, int n) {
    LOOP16(gelu_erf_backward_step, n, dx, dy, x);
}

/* ---- Dropout (ops_act.c): dropout_keep's splitmix64 hash on 8 64-bit lanes (vpmullq: AVX512DQ), two vectors
 * per 16 floats; integer arithmetic, so the mask is bit-identical to the portable loop's. ---- */

AVX512_FN static inline __mmask8 dropout_keep8(__m512i z, __m512i threshold) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94D049BB133111EBull));
    z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
    return _mm512_cmpge_epu64_mask(_mm512_srli_epi64(z, 40), threshold);
}

AVX512_FN void ftc_vm_dropout_avx512(float *y, float *mask, const float *x, int i0, int i1, uint64_t key,
                                 uint32_t threshold, float keep_scale) {
    const __m512i thr = _mm512_set1_epi64((long long)threshold), gamma = _mm512_set1_epi64((long long)VM_DROP_GAMMA);
    const __m512i step = _mm512_set1_epi64((long long)(16 * VM_DROP_GAMMA));
    const __m512 scale = _mm512_set1_ps(keep_scale);
    /* counters key + (i + 1) gamma for lanes i0 .. i0 + 7 and i0 + 8 .. i0 + 15, advanced 16 gamma a step */
    __m512i lane = _mm512_set_epi64(8, 7, 6, 5, 4, 3, 2, 1);
    __m512i base = _mm512_add_epi64(_mm512_set1_epi64((long long)(key + (uint64_t)i0 * VM_DROP_GAMMA)),
                                    _mm512_mullo_epi64(lane, gamma));
    __m512i lo = base, hi = _mm512_add_epi64(base, _mm512_set1_epi64((long long)(8 * VM_DROP_GAMMA)));
    int i = i0;
    for (; i + 16 <= i1; i += 16) {
        __mmask16 k = (__mmask16)(dropout_keep8(lo, thr) | ((unsigned)dropout_keep8(hi, thr) << 8));
        __m512 m = _mm512_maskz_mov_ps(k, scale);
        _mm512_storeu_ps(mask + i, m);
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), m));
        lo = _mm512_add_epi64(lo, step);
        hi = _mm512_add_epi64(hi, step);
    }
    if (i < i1) {
        __mmask16 t = tail_mask(i1 - i);
        __mmask16 k = (__mmask16)(dropout_keep8(lo, thr) | ((unsigned)dropout_keep8(hi, thr) << 8));
        __m512 m = _mm512_maskz_mov_ps(k, scale);
        _mm512_mask_storeu_ps(mask + i, t, m);
        _mm512_mask_storeu_ps(y + i, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + i), m));
    }
}

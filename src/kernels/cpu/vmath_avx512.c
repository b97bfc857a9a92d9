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

AVX512_FN void vm_exp_avx512(float *y, const float *x, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

AVX512_FN double vm_exp_sum_avx512(float *y, const float *x, float shift, int n) {
    __m512 s = _mm512_set1_ps(shift);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
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
AVX512_FN void vm_adamw_avx512(float *w, const float *g, float *m, float *v, int64_t n, float step_size,
                               float bc2_sqrt, float decay, float beta1, float one_m_b1, float beta2, float one_m_b2,
                               float eps) {
    const __m512 vstep = _mm512_set1_ps(step_size), vbc2 = _mm512_set1_ps(bc2_sqrt), vdec = _mm512_set1_ps(decay);
    const __m512 vb1 = _mm512_set1_ps(beta1), v1b1 = _mm512_set1_ps(one_m_b1), vb2 = _mm512_set1_ps(beta2);
    const __m512 v1b2 = _mm512_set1_ps(one_m_b2), veps = _mm512_set1_ps(eps);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 wi = _mm512_maskz_loadu_ps(k, w + i), gi = _mm512_maskz_loadu_ps(k, g + i);
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

/* Vectorised exp for the elementwise ops (GELU, SwiGLU, softmax cross-entropy): libm's scalar calls were
 * about 15% of a GPT-2 training step. One algorithm, two paths: AVX-512 (vmath_avx512.c, target attributes,
 * used after a CPU-feature check) and portable C (this header's vm_exp1, what CI on any CPU also runs).
 * FTC_MATMUL=generic (or ftc_matmul_set_backend("generic")) forces the portable path here too.
 *
 * exp(x) = 2^n (1 + p(r)), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite, |r| <= ln2/2), p = Taylor
 * expm1 to degree 7 (truncation < 6e-9). Max relative error about 2 ulp over the normal range; denormal
 * results and overflow to +inf as libm; exp(-inf) = 0, NaN stays NaN. No errno.
 * The GELU kernels (vm_gelu_*_avx512) fuse ops_act.c's formulas around the same exp, one pass per vector.
 * Dropout's keep decision (dropout_keep) lives here too, so both of its paths share one definition. */
#ifndef FTC_VMATH_H
#define FTC_VMATH_H
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* c ? a : b as a bitwise select: no branch, so loops that use it vectorise (SSE2 and/andnot/or) and a
 * data-dependent choice costs no mispredictions. */
static inline float vm_select(bool c, float a, float b) {
    uint32_t ua, ub, m = (uint32_t)0 - (uint32_t)c, r;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    r = (ua & m) | (ub & ~m);
    float f;
    memcpy(&f, &r, 4);
    return f;
}

/* Portable scalar exp, the generic path. Written without FMA or libm calls so that it compiles to the same
 * arithmetic everywhere (C11 mode: no contraction), and without branches so that loops calling it vectorise. */
static inline float vm_exp1(float x) {
    bool nan = x != x;
    /* vm_select, not ?:, keeps GCC's if-conversion working under -ftrapping-math (the default) */
    float xc = vm_select(nan, 0.0f, x);          /* keeps the int conversion below defined; NaN returns at the end */
    xc = vm_select(xc < -104.0f, -104.0f, xc);  /* exp(-104) < 2^-150: rounds to 0 below */
    xc = vm_select(xc > 89.0f, 89.0f, xc);      /* exp(89) > FLT_MAX: +inf below */
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer (ties to even) */
    float t = xc * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = xc - n * 0.693145751953125f; /* ln2 high part: n * it is exact for |n| < 2^8 */
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 40320.0f;
    p = p * r + 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r; /* expm1(r) */
    int ni = (int)n, h = ni / 2; /* 2^n as two normal halves: n reaches -150 and 129 */
    uint32_t b1 = (uint32_t)(h + 127) << 23, b2 = (uint32_t)(ni - h + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return vm_select(nan, x, (1.0f + p) * s1 * s2);
}

/* Dropout's keep decision for value i of a call with the given key (ops_act.c): the top 24 bits of
 * splitmix64's output at counter position i + 1 of the stream keyed by key, that is the finaliser of
 * key + (i + 1) * golden-ratio constant, compared with p at 24-bit resolution (the resolution of
 * ftc_rng_uniform, which the mask used to be drawn from): kept iff bits >= ceil(p 2^24). Different keys are
 * far-apart offsets in one 2^64 stream, so two calls' masks are independent. Integer arithmetic only: the
 * AVX-512 path (ftc_vm_dropout_avx512) computes the same bits. */
static const uint64_t VM_DROP_GAMMA = 0x9E3779B97F4A7C15ull;
static inline uint64_t vm_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint32_t dropout_threshold(float p) {
    return p >= 1.0f ? 1u << 24 : (uint32_t)ceil((double)p * 16777216.0); /* exact: p has 24 bits */
}
static inline bool dropout_keep(uint64_t key, uint64_t i, uint32_t threshold) {
    return (uint32_t)(vm_splitmix64_mix(key + (i + 1) * VM_DROP_GAMMA) >> 40) >= threshold;
}

/* Loops compiled twice: a VM_FORCE_INLINE body, wrapped once plainly and once in a VM_AVX512_TARGET function
 * (GCC then vectorises it 16 lanes wide), picked at run time by ftc_vm_use_avx512(). Only for bodies whose
 * floating-point operations do not depend on the vector width: GCC does not reassociate without -ffast-math
 * and C11 mode forbids FMA contraction, so the two copies give bit-identical results. */
#define VM_FORCE_INLINE static inline __attribute__((always_inline))
#ifdef __clang__
/* clang contracts a*b+c into an FMA by default (GCC in C11 mode does not), which would make the AVX-512
 * copy differ from the portable one: off for every file that includes this header */
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VM_AVX512_TARGET __attribute__((target("avx512f,avx512dq,prefer-vector-width=512")))
#elif defined(__x86_64__)
#define VM_AVX512_TARGET __attribute__((target("avx512f,avx512dq")))
#else
#define VM_AVX512_TARGET
#endif
#define VM_TWO_PATHS(name, params, args)                                                                                \
    static void name##_generic params { name##_body args; }                                                            \
    VM_AVX512_TARGET static void name##_avx512 params { name##_body args; }
/* A third copy for AVX2 CPUs without AVX-512 (8 lanes), picked when ftc_vm_use_avx2(). Target "avx2" without
 * "fma", so that no compiler can contract and the copy stays bit-identical to the portable one. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VM_AVX2_TARGET __attribute__((target("avx2")))
#else
#define VM_AVX2_TARGET
#endif
#define VM_THREE_PATHS(name, params, args)                                                                              \
    VM_TWO_PATHS(name, params, args)                                                                                   \
    VM_AVX2_TARGET static void name##_avx2 params { name##_body args; }

/* Sums in double over 16 lanes (lane j takes the values at c = j mod 16), then a fixed tree: a row sum that
 * vectorises (a single running double sum is one dependent add per value) and whose order does not depend
 * on the path or the thread count. */
VM_FORCE_INLINE double vm_sum16(const double a[16]) {
    double h[8];
    for (int j = 0; j < 8; j++) h[j] = a[j] + a[j + 8];
    return ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
}

/* sum of x[i]^2 in double over vm_sum16's 16 lanes (lane j takes i = j mod 16): RMSNorm's row statistic and
 * the gradient norm (ftc_sum_squares) */
VM_FORCE_INLINE double vm_sum_squares16(const float *x, int64_t n) {
    double a[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) a[j] += (double)x[i + j] * (double)x[i + j];
    for (int j = 0; i + j < n; j++) a[j] += (double)x[i + j] * (double)x[i + j];
    return vm_sum16(a);
}

/* Whether the AVX-512 path runs (CPU has it and neither the generic nor the avx2 backend is forced). */
bool ftc_vm_use_avx512(void);
/* Whether the AVX2 copies run where there is no AVX-512 path (CPU has AVX2 and generic is not forced); callers
 * ask ftc_vm_use_avx512() first. FTC_MATMUL=avx2 makes AVX-512 CPUs take them too (tests). */
bool ftc_vm_use_avx2(void);
/* The instruction set of the vector paths: 2 AVX-512, 1 AVX2, 0 portable (ftc_quant_decoder takes it). */
int ftc_vm_isa(void);

/* y[i] = exp(x[i]) for n values; y == x allowed. */
void ftc_vm_exp(float *y, const float *x, int n);
/* sum_i exp(x[i] - shift), summed in double (in a fixed order for a given path); also stores the
 * exponentials in y unless y is NULL (y == x allowed). */
double ftc_vm_exp_sum(float *y, const float *x, float shift, int n);

/* AVX-512 kernels (vmath_avx512.c); call only when ftc_vm_use_avx512(). */
void ftc_vm_exp_avx512(float *y, const float *x, int n);
double ftc_vm_exp_sum_avx512(float *y, const float *x, float shift, int n);
/* GELU forward (y = gelu(x)) and backward (dx += dy gelu'(x)) in the tanh and erf forms, for ops_act.c */
void ftc_vm_gelu_tanh_avx512(float *y, const float *x, int n);
void ftc_vm_gelu_tanh_backward_avx512(float *dx, const float *dy, const float *x, int n);
void ftc_vm_gelu_erf_avx512(float *y, const float *x, int n);
void ftc_vm_gelu_erf_backward_avx512(float *dx, const float *dy, const float *x, int n);
/* Dropout over values [i0, i1): mask[i] = dropout_keep(key, i, threshold) ? keep_scale : 0, y[i] = x[i] mask[i] */
void ftc_vm_dropout_avx512(float *y, float *mask, const float *x, int i0, int i1, uint64_t key, uint32_t threshold,
                       float keep_scale);
/* AdamW's update on n values with precomputed scalars (ops_optim.c), bit-identical to its scalar loop. */
void ftc_vm_adamw_avx512(float *w, const float *g, float *m, float *v, int64_t n, float step_size, float bc2_sqrt,
                     float decay, float beta1, float one_m_b1, float beta2, float one_m_b2, float eps, float gscale);
#endif

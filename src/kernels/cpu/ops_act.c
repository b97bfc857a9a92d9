/* Elementwise ops: GELU (tanh approximation and exact erf), SwiGLU, residual add, tanh, inverted dropout.
 * Elementwise work is split across threads in fixed chunks; no reductions, so results are deterministic. */
#include "ftc/ops.h"
#include "ftc/threads.h"
#include "vmath.h"
#include <math.h>
#include <string.h>

#define PAR_N 32768 /* below this many values threads cost more than they save */

static const float GELU_K = 0.7978845608028654f; /* sqrt(2/pi) */
static const float GELU_C = 0.044715f;

/* Chunk of values whose exponentials are taken in one vector call (stack scratch). */
enum { VCHUNK = 512 };

static inline int chunk_len(int ch, int n) { return n - ch * VCHUNK < VCHUNK ? n - ch * VCHUNK : VCHUNK; }

/* An elementwise op's forward y = f(x) and backward dx += dy * f'(x) on VCHUNK-value chunks split across
 * threads, each chunk through the AVX-512 kernel when ftc_vm_use_avx512(), else the portable one. */
typedef void (*unary_chunk)(float *y, const float *x, int len);
typedef void (*grad_chunk)(float *dx, const float *dy, const float *x, int len);

typedef struct {
    float *y;
    const float *x, *dy;
    int n;
    unary_chunk uf;
    grad_chunk gf;
} elem_job;

static void unary_range(void *ctx, int64_t lo, int64_t hi) {
    const elem_job *j = ctx;
    for (int ch = (int)lo; ch < (int)hi; ch++) j->uf(j->y + (size_t)ch * VCHUNK, j->x + (size_t)ch * VCHUNK, chunk_len(ch, j->n));
}

static void grad_range(void *ctx, int64_t lo, int64_t hi) {
    const elem_job *j = ctx;
    for (int ch = (int)lo; ch < (int)hi; ch++) {
        size_t o = (size_t)ch * VCHUNK;
        j->gf(j->y + o, j->dy + o, j->x + o, chunk_len(ch, j->n));
    }
}

static void run_unary(float *y, const float *x, int n, unary_chunk avx512, unary_chunk portable) {
    elem_job j = {y, x, NULL, n, ftc_vm_use_avx512() ? avx512 : portable, NULL};
    ftc_parallel_range((n + VCHUNK - 1) / VCHUNK, n > PAR_N, unary_range, &j);
}

static void run_grad(float *dx, const float *dy, const float *x, int n, grad_chunk avx512, grad_chunk portable) {
    elem_job j = {dx, x, dy, n, NULL, ftc_vm_use_avx512() ? avx512 : portable};
    ftc_parallel_range((n + VCHUNK - 1) / VCHUNK, n > PAR_N, grad_range, &j);
}

/* exp(-2u), u = sqrt(2/pi) (x + 0.044715 x^3) */
static inline float gelu_tanh_e1(float v) { return vm_exp1(-2.0f * (GELU_K * (v + GELU_C * v * v * v))); }

/* y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)   (GPT-2 gelu_new, torch gelu(approximate='tanh')),
 * computed as y = x sigmoid(2u) = x / (1 + exp(-2u)): the same function, one vectorised exp instead of libm's
 * tanhf, and no cancellation in 1 + tanh(u) for negative u.
 * Each op below has two paths: AVX-512 (vmath_avx512.c, the same formulas fused 16 lanes at a time) when
 * ftc_vm_use_avx512(), else the portable loop over branchless inline functions, which GCC vectorises with what
 * the build targets (SSE2 on a portable x86-64 binary). */
static void gelu_tanh_portable(float *y, const float *x, int len) {
    for (int i = 0; i < len; i++) y[i] = x[i] / (1.0f + gelu_tanh_e1(x[i]));
}

void ftc_gelu_tanh_forward(float *y, const float *x, int n) { run_unary(y, x, n, ftc_vm_gelu_tanh_avx512, gelu_tanh_portable); }

/* dx += dy * (0.5 (1 + t) + 0.5 x (1 - t^2) u'),  t = tanh(u), u' = sqrt(2/pi)(1 + 3*0.044715 x^2);
 * with s = sigmoid(2u): 0.5 (1 + t) = s and 0.5 (1 - t^2) = 2 s (1 - s). */
static void gelu_tanh_backward_portable(float *dx, const float *dy, const float *x, int len) {
    for (int i = 0; i < len; i++) {
        float v = x[i], s = 1.0f / (1.0f + gelu_tanh_e1(v));
        float du = GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        dx[i] += dy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
    }
}

void ftc_gelu_tanh_backward(float *dx, const float *dy, const float *x, int n) {
    run_grad(dx, dy, x, n, ftc_vm_gelu_tanh_backward_avx512, gelu_tanh_backward_portable);
}

/* Phi(x) = 0.5 (1 + erf(x/sqrt 2)) = 0.5 erfc(-x/sqrt 2), with erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2),
 * z = |x|/sqrt 2 >= 0: the Chebyshev fit of Numerical Recipes (erfcc; fractional error below 1.2e-7 for all
 * z >= 0), so Phi keeps its relative accuracy in the far negative tail, where 1 + erf would cancel.
 * One vectorisable exp instead of libm's erff; the sign picks erfc/2 or 1 - erfc/2 by a bitwise select (a
 * branch here mispredicted on every other value: GELU inputs are about half negative). */
static inline float normal_cdf1(float x) {
    float z = fabsf(x) * 0.70710678118654752f, u = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * u - 0.82215223f;
    p = p * u + 1.48851587f;
    p = p * u - 1.13520398f;
    p = p * u + 0.27886807f;
    p = p * u - 0.18628806f;
    p = p * u + 0.09678418f;
    p = p * u + 0.37409196f;
    p = p * u + 1.00002368f;
    p = p * u - 1.26551223f;
    float half_erfc = 0.5f * u * vm_exp1(p - z * z);
    return vm_select(x < 0.0f, half_erfc, 1.0f - half_erfc);
}

/* y = 0.5 x (1 + erf(x / sqrt 2)) = x Phi(x)   (BERT gelu, torch gelu default) */
static void gelu_erf_portable(float *y, const float *x, int len) {
    for (int i = 0; i < len; i++) y[i] = x[i] * normal_cdf1(x[i]);
}

void ftc_gelu_erf_forward(float *y, const float *x, int n) { run_unary(y, x, n, ftc_vm_gelu_erf_avx512, gelu_erf_portable); }

/* dx += dy * (Phi(x) + x phi(x)),  phi(x) = exp(-x^2/2) / sqrt(2 pi) */
static void gelu_erf_backward_portable(float *dx, const float *dy, const float *x, int len) {
    for (int i = 0; i < len; i++) {
        float v = x[i], pdf = vm_exp1(-0.5f * v * v) * 0.3989422804014327f;
        dx[i] += dy[i] * (normal_cdf1(v) + v * pdf);
    }
}

void ftc_gelu_erf_backward(float *dx, const float *dy, const float *x, int n) {
    run_grad(dx, dy, x, n, ftc_vm_gelu_erf_backward_avx512, gelu_erf_backward_portable);
}

/* y[n] = silu(gate) * up,  silu(g) = g * sigmoid(g) = g / (1 + exp(-g))   (Llama MLP: down(act(gate(x)) * up(x))) */
typedef struct {
    float *y, *dgate, *dup;
    const float *gate, *up, *dy;
    int n;
} swiglu_job;

/* one element of the forward from e = exp(-g): the expression both forwards below use, so they give the same bits */
static inline float swiglu1(float g, float e, float u) { return g / (1.0f + e) * u; }

static void swiglu_fwd_range(void *ctx, int64_t lo, int64_t hi) {
    const swiglu_job *j = ctx;
    const float *gate = j->gate, *up = j->up;
    float *y = j->y;
    for (int ch = (int)lo; ch < (int)hi; ch++) {
        size_t o = (size_t)ch * VCHUNK;
        float e[VCHUNK];
        int len = chunk_len(ch, j->n);
        for (int i = 0; i < len; i++) e[i] = -gate[o + i];
        ftc_vm_exp(e, e, len);
        for (int i = 0; i < len; i++) y[o + i] = swiglu1(gate[o + i], e[i], up[o + i]);
    }
}

void ftc_swiglu_forward(float *y, const float *gate, const float *up, int n) {
    swiglu_job j = {y, NULL, NULL, gate, up, NULL, n};
    ftc_parallel_range((n + VCHUNK - 1) / VCHUNK, n > PAR_N, swiglu_fwd_range, &j);
}

void ftc_swiglu_forward_cols(float *y, const float *gate, const float *up, int N, int ld, int c0, int c1) {
    const int n = c1 - c0;
    if (n <= 0) return;
    const int rows = n > VCHUNK ? 1 : VCHUNK / n; /* rows an exp call takes */
    for (int r0 = 0; r0 < N; r0 += rows) {
        const int nr = N - r0 < rows ? N - r0 : rows;
        for (int part = 0; part < n; part += VCHUNK) { /* columns in pieces of VCHUNK when a row's exceed it */
            const int len = n - part < VCHUNK ? n - part : VCHUNK;
            float e[VCHUNK];
            for (int r = 0; r < nr; r++)
                for (int i = 0; i < len; i++) e[r * len + i] = -gate[(size_t)(r0 + r) * ld + c0 + part + i];
            ftc_vm_exp(e, e, nr * len);
            for (int r = 0; r < nr; r++) {
                const size_t o = (size_t)(r0 + r) * ld + c0 + part;
                for (int i = 0; i < len; i++) y[o + i] = swiglu1(gate[o + i], e[r * len + i], up[o + i]);
            }
        }
    }
}

/* dgate += dy * up * s (1 + g (1 - s)),  s = sigmoid(g);  dup += dy * silu(g) */
static void swiglu_bwd_range(void *ctx, int64_t lo, int64_t hi) {
    const swiglu_job *j = ctx;
    const float *gate = j->gate, *up = j->up, *dy = j->dy;
    float *dgate = j->dgate, *dup = j->dup;
    for (int ch = (int)lo; ch < (int)hi; ch++) {
        size_t o = (size_t)ch * VCHUNK;
        float e[VCHUNK];
        int len = chunk_len(ch, j->n);
        for (int i = 0; i < len; i++) e[i] = -gate[o + i];
        ftc_vm_exp(e, e, len);
        for (int i = 0; i < len; i++) {
            float g = gate[o + i], s = 1.0f / (1.0f + e[i]);
            if (dgate) dgate[o + i] += dy[o + i] * up[o + i] * s * (1.0f + g * (1.0f - s));
            if (dup) dup[o + i] += dy[o + i] * g * s;
        }
    }
}

void ftc_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int n) {
    swiglu_job j = {NULL, dgate, dup, gate, up, dy, n};
    ftc_parallel_range((n + VCHUNK - 1) / VCHUNK, n > PAR_N, swiglu_bwd_range, &j);
}

/* y = a + b  (backward: both inputs receive dy unchanged, so the caller adds dy where it is needed) */
typedef struct {
    float *y;
    const float *a, *b;
} binary_job;

static void add_range(void *ctx, int64_t lo, int64_t hi) {
    const binary_job *j = ctx;
    float *y = j->y;
    const float *a = j->a, *b = j->b;
    for (int64_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
}

void ftc_add_forward(float *y, const float *a, const float *b, int n) {
    binary_job j = {y, a, b};
    ftc_parallel_range(n, n > PAR_N, add_range, &j);
}

/* y = tanh(x) */
void ftc_tanh_forward(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

/* dx += dy * (1 - y^2), y = tanh(x) saved from forward */
void ftc_tanh_backward(float *dx, const float *dy, const float *y, int n) {
    for (int i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

/* Inverted dropout (ftc/ops.h). One 64-bit key per call from the model's rng, then value i's keep decision is
 * a counter-based hash of (key, i) -- dropout_keep, shared with the AVX-512 path in vmath.h -- so values are
 * drawn independently of each other: threads and vector lanes split the work without changing the mask, and
 * the rng advances once per call (checkpoints, resume and activation recomputation replay it exactly). */
enum { DROP_CHUNK = 16384 }; /* values per thread task: a multiple of 16 */

typedef struct {
    float *y, *mask;
    const float *x;
    int n;
    uint64_t key;
    uint32_t threshold;
    float keep_scale;
    bool avx512;
} drop_job;

static void dropout_range(void *ctx, int64_t lo, int64_t hi) {
    const drop_job *j = ctx;
    for (int ch = (int)lo; ch < (int)hi; ch++) {
        int i0 = ch * DROP_CHUNK, i1 = j->n - i0 < DROP_CHUNK ? j->n : i0 + DROP_CHUNK;
        if (j->avx512) {
            ftc_vm_dropout_avx512(j->y, j->mask, j->x, i0, i1, j->key, j->threshold, j->keep_scale);
            continue;
        }
        float *y = j->y, *mask = j->mask;
        const float *x = j->x;
        uint64_t key = j->key;
        uint32_t threshold = j->threshold;
        float keep_scale = j->keep_scale;
        for (int i = i0; i < i1; i++) {
            float m = vm_select(dropout_keep(key, (uint64_t)i, threshold), keep_scale, 0.0f);
            mask[i] = m;
            y[i] = x[i] * m;
        }
    }
}

void ftc_dropout_forward(float *y, float *mask, const float *x, int n, float p, ftc_rng *rng) {
    if (p <= 0.0f) {
        if (y != x) memcpy(y, x, sizeof(float) * n);
        for (int i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    uint64_t key = ftc_rng_u64(rng);
    float keep_scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    uint32_t threshold = dropout_threshold(p);
    drop_job j = {y, mask, x, n, key, threshold, keep_scale, ftc_vm_use_avx512()};
    ftc_parallel_range((n + DROP_CHUNK - 1) / DROP_CHUNK, n > PAR_N, dropout_range, &j);
}

/* dx += dy * mask */
static void dropout_bwd_range(void *ctx, int64_t lo, int64_t hi) {
    const binary_job *j = ctx;
    float *dx = j->y;
    const float *dy = j->a, *mask = j->b;
    for (int64_t i = lo; i < hi; i++) dx[i] += dy[i] * mask[i];
}

void ftc_dropout_backward(float *dx, const float *dy, const float *mask, int n) {
    binary_job j = {dx, dy, mask};
    ftc_parallel_range(n, n > PAR_N, dropout_bwd_range, &j);
}

/* The vectorised exp (src/kernels/cpu/vmath.h) and the ops built on it (GELU tanh and erf, SwiGLU,
 * softmax cross-entropy), on the portable path and, where the CPU has it, the AVX-512 path, against double libm.
 * Also: AdamW's AVX-512 loop, the norms' two compilations and the gradient norm's sum of squares are bit-identical
 * to the portable ones.
 * Bound: max relative error 1e-6 over results in the normal range (the algorithm gives about 2 ulp). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include "kernels/cpu/vmath.h"

/* Runs fn once per path this CPU has: generic, avx512, then avx2 (FTC_MATMUL=avx2 takes the AVX2 copies also
 * on an AVX-512 CPU). */
static void each_path(void (*fn)(const char *path)) {
    const char *paths[] = {"generic", "avx512", "avx2"};
    for (int i = 0; i < 3; i++) {
        if (!ftc_matmul_set_backend(paths[i])) {
            fprintf(stderr, "(no %s on this CPU: skipped)\n", paths[i]);
            continue;
        }
        assert_int_equal(ftc_vm_use_avx512(), i == 1);
        if (i == 2) assert_true(ftc_vm_use_avx2());
        assert_int_equal(ftc_vm_isa(), i == 0 ? 0 : i == 1 ? 2 : 1);
        fn(paths[i]);
    }
    ftc_matmul_set_backend("auto");
}

static void check_exp(const char *path) {
    enum { N = 200003 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    ftc_rng r;
    ftc_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) /* a sweep over the whole range, and random points near 0 */
        x[i] = i % 2 ? -104.0f + 193.0f * (float)i / N : 4.0f * (ftc_rng_uniform(&r) - 0.5f);
    ftc_vm_exp(y, x, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double ref = exp((double)x[i]);
        if (ref > FLT_MAX) { assert_true(isinf(y[i]) && y[i] > 0); continue; }
        if (ref < FLT_MIN) { assert_true(fabs(y[i] - ref) <= 2 * ldexp(1.0, -149)); continue; } /* denormal */
        double rel = fabs(y[i] - ref) / ref;
        if (rel > worst) worst = rel;
    }
    fprintf(stderr, "exp %s: max relative error %.3g\n", path, worst);
    assert_true(worst < 1e-6);
    /* n not a multiple of 16 and in place */
    for (int n = 0; n < 40; n++) {
        float a[40], b[40];
        for (int i = 0; i < n; i++) a[i] = b[i] = (float)i * 0.37f - 5.0f;
        ftc_vm_exp(a, a, n);
        for (int i = 0; i < n; i++) assert_true(fabs(a[i] - exp((double)b[i])) <= 1e-6 * exp((double)b[i]));
    }
    float sp[6] = {-INFINITY, INFINITY, NAN, 0.0f, -1000.0f, 1000.0f}, so[6];
    ftc_vm_exp(so, sp, 6);
    assert_true(so[0] == 0.0f);
    assert_true(isinf(so[1]) && so[1] > 0);
    assert_true(isnan(so[2]));
    assert_true(so[3] == 1.0f);
    assert_true(so[4] == 0.0f);
    assert_true(isinf(so[5]));
    /* exp_sum: shifted sum in double, with and without storing */
    for (int n = 1; n < 100; n += 7) {
        double ref = 0;
        for (int i = 0; i < n; i++) ref += exp((double)(x[i] - 1.5f));
        float *e = malloc((size_t)n * sizeof *e);
        assert_non_null(e);
        double s1 = ftc_vm_exp_sum(NULL, x, 1.5f, n), s2 = ftc_vm_exp_sum(e, x, 1.5f, n);
        assert_true(s1 == s2);
        assert_true(fabs(s1 - ref) <= 1e-6 * ref);
        for (int i = 0; i < n; i++) {
            double ref_i = exp((double)(x[i] - 1.5f));
            assert_true(fabs(e[i] - ref_i) <= 1e-6 * ref_i + ldexp(1.0, -148));
        }
        free(e);
    }
    free(x);
    free(y);
}
static void test_exp(void **state) { (void)state; each_path(check_exp); }

/* The AVX2 copies of exp and exp_sum are the portable loop compiled for 8 lanes: bit-identical to it, with
 * every tail length and the special values. */
static void test_exp_avx2_bit_identical(void **state) {
    (void)state;
    if (!ftc_matmul_set_backend("avx2")) {
        ftc_matmul_set_backend("auto");
        skip();
    }
    enum { N = 1000 };
    float x[N], ya[N], yg[N];
    ftc_rng r;
    ftc_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) x[i] = 200.0f * (ftc_rng_uniform(&r) - 0.5f);
    x[3] = NAN, x[4] = INFINITY, x[5] = -INFINITY, x[6] = -103.9f, x[7] = 88.7f;
    for (int n = 0; n < 40; n++) {
        int len = n < 33 ? n : N - (40 - n);
        ftc_matmul_set_backend("avx2");
        ftc_vm_exp(ya, x, len);
        double sa = ftc_vm_exp_sum(NULL, x, 2.5f, len);
        ftc_matmul_set_backend("generic");
        ftc_vm_exp(yg, x, len);
        double sg = ftc_vm_exp_sum(NULL, x, 2.5f, len);
        assert_memory_equal(ya, yg, sizeof(float) * (size_t)len);
        assert_memory_equal(&sa, &sg, sizeof sa);
    }
    ftc_matmul_set_backend("auto");
}

static double gelu_ref(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

/* GELU forward/backward and SwiGLU against double formulas (the GELU backward against torch's tanh form of
 * the derivative). The bound allows for the input's own rounding: u = sqrt(2/pi)(x + 0.044715 x^3) is
 * formed in float (relative error ~2^-23), and exp(-2u) turns that into a relative error of about
 * |2u| 2^-23 of the result, so the error is divided by (1 + |2u|) before the 2e-6 test. Gradients start at
 * 0 (a float accumulator would hide tiny values' errors); accumulation is checked by a second call. */
static void check_act(const char *path) {
    enum { N = 70001 }; /* above the threading threshold, odd length */
    float *x = malloc(N * sizeof *x), *u = malloc(N * sizeof *u), *y = malloc(N * sizeof *y),
          *dy = malloc(N * sizeof *dy), *dx = malloc(N * sizeof *dx), *du = malloc(N * sizeof *du);
    assert_true(x && u && y && dy && dx && du);
    ftc_rng r;
    ftc_rng_seed(&r, 11);
    for (int i = 0; i < N; i++) {
        x[i] = 12.0f * (ftc_rng_uniform(&r) - 0.5f);
        u[i] = ftc_rng_normal(&r);
        dy[i] = ftc_rng_normal(&r);
        dx[i] = 0.0f;
        du[i] = 0.0f;
    }
    double wf = 0, wb = 0, ws = 0, wsg = 0, wsu = 0;
    ftc_gelu_tanh_forward(y, x, N);
    for (int i = 0; i < N; i++) {
        double v = x[i], u2 = 2 * 0.7978845608028654 * fabs(v + 0.044715 * v * v * v);
        double ref = gelu_ref(v), e = fabs(y[i] - ref) / (fabs(ref) + 1e-30) / (1 + u2);
        if (fabs(ref) > 1e-30 && e > wf) wf = e;
    }
    ftc_gelu_tanh_backward(dx, dy, x, N);
    for (int i = 0; i < N; i++) {
        /* the derivative in its tanh form (torch's formula), in double */
        double v = x[i], t = tanh(0.7978845608028654 * (v + 0.044715 * v * v * v));
        double d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
        double u2 = 2 * 0.7978845608028654 * fabs(v + 0.044715 * v * v * v);
        /* near the derivative's zero (x ~ -0.75) its two terms cancel: measure against their magnitudes */
        double sg = 1 / (1 + exp(-u2 * (v < 0 ? -1 : 1)));
        double mag = fabs(dy[i]) * (sg + fabs(2 * v * sg * (1 - sg) * 0.7978845608028654 * (1 + 3 * 0.044715 * v * v)));
        double e = fabs(dx[i] - dy[i] * d) / (mag + 1e-30) / (1 + u2);
        if (e > wb) wb = e;
    }
    float first = dx[123];
    ftc_gelu_tanh_backward(dx, dy, x, N); /* accumulates */
    assert_true(fabs(dx[123] - 2 * first) <= 1e-6 * fabs(first));
    ftc_swiglu_forward(y, x, u, N);
    for (int i = 0; i < N; i++) {
        double g = x[i], s = 1 / (1 + exp(-g)), ref = g * s * u[i];
        double e = fabs(y[i] - ref) / (fabs(ref) + 1e-30);
        if (fabs(ref) > 1e-30 && e > ws) ws = e;
    }
    for (int i = 0; i < N; i++) dx[i] = 0.0f;
    ftc_swiglu_backward(dx, du, dy, x, u, N);
    for (int i = 0; i < N; i++) {
        double g = x[i], s = 1 / (1 + exp(-g));
        double rg = dy[i] * u[i] * s * (1 + g * (1 - s)), ru = dy[i] * g * s;
        double mg = fabs(dy[i] * u[i]) * s * (1 + fabs(g) * (1 - s)); /* sum of the terms' magnitudes */
        double eg = fabs(dx[i] - rg) / (mg + 1e-30) / (1 + fabs(g)), eu = fabs(du[i] - ru) / (fabs(ru) + 1e-30) / (1 + fabs(g));
        if (eg > wsg) wsg = eg;
        if (eu > wsu) wsu = eu;
    }
    fprintf(stderr, "%s: gelu fwd %.3g bwd %.3g, swiglu fwd %.3g dgate %.3g dup %.3g (relative)\n", path, wf, wb, ws,
            wsg, wsu);
    assert_true(wf < 2e-6);
    assert_true(wb < 2e-6);
    assert_true(ws < 2e-6);
    assert_true(wsg < 2e-6);
    assert_true(wsu < 2e-6);
    free(x), free(u), free(y), free(dy), free(dx), free(du);
}
static void test_activations(void **state) { (void)state; each_path(check_act); }

/* GELU (erf form) against double erf/erfc; relative error divided by (1 + x^2), the conditioning of
 * Phi's tail (x^2/2 formed in float, then exponentiated). */
static void check_gelu_erf(const char *path) {
    enum { N = 70001 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *dy = malloc(N * sizeof *dy),
          *dx = malloc(N * sizeof *dx);
    assert_true(x && y && dy && dx);
    ftc_rng r;
    ftc_rng_seed(&r, 13);
    for (int i = 0; i < N; i++) {
        x[i] = i % 2 ? 26.0f * (ftc_rng_uniform(&r) - 0.5f) : 2.0f * ftc_rng_normal(&r);
        dy[i] = ftc_rng_normal(&r);
        dx[i] = 0.0f;
    }
    ftc_gelu_erf_forward(y, x, N);
    ftc_gelu_erf_backward(dx, dy, x, N);
    double wf = 0, wb = 0;
    for (int i = 0; i < N; i++) {
        double v = x[i], cdf = 0.5 * erfc(-v / sqrt(2.0)), pdf = exp(-0.5 * v * v) / sqrt(2 * M_PI);
        double ref = v * cdf, cond = 1 + v * v;
        if (fabs(ref) > 1e-37) {
            double e = fabs(y[i] - ref) / fabs(ref) / cond;
            if (e > wf) wf = e;
        }
        double d = dy[i] * (cdf + v * pdf), mag = fabs(dy[i]) * (cdf + fabs(v * pdf)); /* terms cancel near -0.75 */
        if (mag > 1e-37) {
            double e = fabs(dx[i] - d) / mag / cond;
            if (e > wb) wb = e;
        }
    }
    fprintf(stderr, "%s: gelu_erf fwd %.3g bwd %.3g (relative, over 1 + x^2)\n", path, wf, wb);
    assert_true(wf < 1e-6);
    assert_true(wb < 1e-6);
    free(x), free(y), free(dy), free(dx);
}
static void test_gelu_erf(void **state) { (void)state; each_path(check_gelu_erf); }

/* GELU on inputs that the training data rarely reach: a fine sweep of [-20, 20], magnitudes from denormal to
 * 1e30 of both signs, +-0, +-inf, NaN and random normals. Length not a multiple of 16 (the masked tail). */
static float *gelu_inputs(int *n_out) {
    int n = 0, cap = 60000;
    float *x = malloc((size_t)cap * sizeof *x);
    assert_non_null(x);
    for (int i = 0; i <= 40000; i++) x[n++] = -20.0f + 40.0f * (float)i / 40000.0f;
    for (int e = -45; e <= 30; e++)
        for (int m = 1; m < 10; m++) {
            float v = (float)(m * pow(10.0, e));
            if (v == 0.0f) continue;
            x[n++] = v;
            x[n++] = -v;
        }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN};
    for (int i = 0; i < (int)(sizeof special / sizeof *special); i++) x[n++] = special[i];
    ftc_rng r;
    ftc_rng_seed(&r, 21);
    while (n < 50003) x[n++] = 3.0f * ftc_rng_normal(&r);
    *n_out = n;
    return x;
}

/* The four GELU functions on one path: out[0] forward tanh, [1] backward tanh, [2] forward erf, [3] backward
 * erf, the backward ones with dy = 1 into dx = 0 (so out[1], out[3] are the derivatives). */
static void gelu_all(float *out[4], const float *x, const float *ones, int n) {
    for (int i = 0; i < n; i++) out[1][i] = out[3][i] = 0.0f;
    ftc_gelu_tanh_forward(out[0], x, n);
    ftc_gelu_tanh_backward(out[1], ones, x, n);
    ftc_gelu_erf_forward(out[2], x, n);
    ftc_gelu_erf_backward(out[3], ones, x, n);
}

/* Double references. The tanh form through s = sigmoid(2u) = 0.5 (1 + tanh u) and s (1 - s) = e / (1 + e)^2,
 * e = exp(-2u): the same functions as torch's 0.5 x (1 + tanh u), but without the cancellation that makes
 * 1 + tanh u (and 1 - tanh^2 u) worthless in double for x below about -6. The erf form through erfc. */
static void gelu_tanh_ref(double v, double *y, double *d, double *dmag) {
    double du = 0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
    double e = exp(-2 * 0.7978845608028654 * (v + 0.044715 * v * v * v)), s = 1 / (1 + e);
    double s1ms = 1 / ((1 + e) * (1 + 1 / e)); /* s (1 - s), also for e = 0 and e = inf */
    *y = v * s;
    *d = s + 2 * v * s1ms * du;
    *dmag = s + fabs(2 * v * s1ms * du); /* the derivative's terms cancel near x = -0.75 */
}
static double gelu_ref_of(int k, double v, double *mag) {
    double y, d, dmag, cdf = 0.5 * erfc(-v / sqrt(2.0)), pdf = exp(-0.5 * v * v) / sqrt(2 * M_PI);
    gelu_tanh_ref(v, &y, &d, &dmag);
    switch (k) {
    case 0: *mag = fabs(y); return y;
    case 1: *mag = dmag; return d;
    case 2: *mag = fabs(v * cdf); return v * cdf;
    default: *mag = cdf + fabs(v * pdf); return cdf + v * pdf;
    }
}
/* The conditioning of each function at v (see check_act and check_gelu_erf): the float rounding of its
 * argument, amplified by the exponential. */
static double gelu_cond(int k, double v) {
    return k < 2 ? 1 + 2 * 0.7978845608028654 * fabs(v + 0.044715 * v * v * v) : 1 + v * v;
}

/* Error of got against ref, in units of the bound's scale: relative to mag and divided by cond, after an
 * absolute allowance of 32 FLT_MIN |x|: results that small have only absolute precision (denormals, and
 * the tanh form's x / (1 + exp(-2u)) is 0 once exp(-2u) overflows float, for x below about -10, where the
 * true value is still ~3e-38). NaN and infinities must match exactly: 0 if they do, INFINITY if not. */
static double gelu_err(double got, double ref, double mag, double cond, double v) {
    if (isnan(ref) || isnan(got)) return isnan(ref) && isnan(got) ? 0 : INFINITY;
    if (isinf(ref) || isinf(got)) return got == ref ? 0 : INFINITY;
    double e = fabs(got - ref) - 32 * FLT_MIN * fmax(1.0, fabs(v));
    return e <= 0 ? 0 : e / (mag + 1e-300) / cond;
}

static void test_gelu_paths_and_tails(void **state) {
    (void)state;
    int n;
    float *x = gelu_inputs(&n), *ones = malloc((size_t)n * sizeof *ones), *out[2][4];
    assert_non_null(ones);
    for (int i = 0; i < n; i++) ones[i] = 1.0f;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 4; k++) {
            out[p][k] = malloc((size_t)n * sizeof(float));
            assert_non_null(out[p][k]);
        }
    const char *names[4] = {"tanh fwd", "tanh bwd", "erf fwd", "erf bwd"};
    const double bound[4] = {2e-6, 2e-6, 1e-6, 1e-6}; /* as check_act and check_gelu_erf */
    int have_avx512 = ftc_matmul_set_backend("avx512");
    for (int p = 0; p < 1 + have_avx512; p++) {
        ftc_matmul_set_backend(p == 0 ? "generic" : "avx512");
        gelu_all(out[p], x, ones, n);
        for (int k = 0; k < 4; k++) {
            double worst = 0, worst_x = 0;
            for (int i = 0; i < n; i++) {
                double v = x[i];
                /* beyond |x| ~ 5e19, 0.134 x^2 overflows float and the tanh form's derivative is inf * 0 = NaN
                 * on both paths (as it always was); double has no such overflow, so those are not compared */
                if (k == 1 && isfinite(v) && fabs(v) > 5e19) continue;
                double mag, ref = gelu_ref_of(k, v, &mag);
                double e = gelu_err(out[p][k][i], ref, mag, gelu_cond(k, v), v);
                if (e > worst) worst = e, worst_x = v;
            }
            fprintf(stderr, "%s gelu %s vs double over %d inputs: max error %.3g (at x = %g)\n",
                    p ? "avx512" : "generic", names[k], n, worst, worst_x);
            assert_true(worst < bound[k]);
        }
    }
    if (have_avx512) {
        /* the two paths compute the same formulas and differ only by FMA and rounding order: a few ulp,
         * scaled by the same conditioning */
        for (int k = 0; k < 4; k++) {
            double worst = 0, worst_x = 0;
            for (int i = 0; i < n; i++) {
                double v = x[i], mag;
                gelu_ref_of(k, v, &mag);
                double e = gelu_err(out[1][k][i], out[0][k][i], mag, gelu_cond(k, v), v);
                if (e > worst) worst = e, worst_x = v;
            }
            fprintf(stderr, "gelu %s avx512 vs generic: max difference %.3g (at x = %g)\n", names[k], worst, worst_x);
            assert_true(worst < 6e-7);
        }
    } else {
        fprintf(stderr, "(no avx512 on this CPU: paths not compared)\n");
    }
    ftc_matmul_set_backend("auto");
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 4; k++) free(out[p][k]);
    free(x), free(ones);
}

/* Softmax cross-entropy against double, on a vocabulary-sized row count, ignored rows included. */
static void check_ce(const char *path) {
    enum { N = 9, V = 5003 };
    float *lg = malloc(N * V * sizeof *lg), *d = malloc(N * V * sizeof *d);
    assert_true(lg && d);
    int32_t tg[N];
    ftc_rng r;
    ftc_rng_seed(&r, 3);
    for (int i = 0; i < N * V; i++) lg[i] = 8.0f * ftc_rng_normal(&r);
    for (int n = 0; n < N; n++) tg[n] = n == 4 ? -100 : (int32_t)ftc_rng_below(&r, V);
    double loss_ref = 0;
    int cnt_ref = 0;
    for (int n = 0; n < N; n++) {
        if (tg[n] < 0) continue;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, lg[n * V + v]);
        for (int v = 0; v < V; v++) s += exp(lg[n * V + v] - mx);
        loss_ref += mx + log(s) - lg[n * V + tg[n]];
        cnt_ref++;
    }
    loss_ref /= cnt_ref;
    int cnt;
    float loss = ftc_cross_entropy_forward(lg, tg, N, V, &cnt);
    assert_int_equal(cnt, cnt_ref);
    assert_true(fabs(loss - loss_ref) <= 1e-6 * fabs(loss_ref));
    ftc_cross_entropy_backward(d, lg, tg, N, V, 2.0f);
    double worst = 0;
    for (int n = 0; n < N; n++) {
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, lg[n * V + v]);
        for (int v = 0; v < V; v++) s += exp(lg[n * V + v] - mx);
        for (int v = 0; v < V; v++) {
            double ref = tg[n] < 0 ? 0 : 2.0 / cnt_ref * (exp(lg[n * V + v] - mx) / s - (v == tg[n]));
            double e = fabs(d[n * V + v] - ref);
            if (tg[n] < 0) assert_true(d[n * V + v] == 0.0f);
            else if (e / (fabs(ref) + 1e-12) > worst) worst = e / (fabs(ref) + 1e-12);
        }
    }
    fprintf(stderr, "%s: cross-entropy loss %.7g (ref %.7g), grad max relative error %.3g\n", path, loss, loss_ref,
            worst);
    assert_true(worst < 2e-6);
    free(lg), free(d);
}
static void test_cross_entropy(void **state) { (void)state; each_path(check_ce); }

/* AdamW's AVX-512 loop performs the portable loop's operations in the same order: bit-identical results,
 * for lengths that are and are not multiples of 16, threaded or not. */
static void test_adamw_paths_identical(void **state) {
    (void)state;
    if (!ftc_matmul_set_backend("avx512")) { skip(); return; }
    const int64_t lens[] = {1, 15, 17, 100003};
    for (int li = 0; li < 4; li++) {
        int64_t n = lens[li];
        float *buf[2][3], *g = malloc((size_t)n * sizeof *g);
        assert_non_null(g);
        ftc_rng r;
        ftc_rng_seed(&r, 5);
        for (int64_t i = 0; i < n; i++) g[i] = ftc_rng_normal(&r);
        for (int p = 0; p < 2; p++) {
            for (int k = 0; k < 3; k++) {
                buf[p][k] = malloc((size_t)n * sizeof(float));
                assert_non_null(buf[p][k]);
                for (int64_t i = 0; i < n; i++) buf[p][k][i] = k == 0 ? (float)i * 1e-3f - 0.3f : k == 1 ? 0.01f : 0.0f;
            }
            ftc_matmul_set_backend(p == 0 ? "generic" : "avx512");
            for (int t = 1; t <= 3; t++)
                ftc_adamw_update(buf[p][0], g, buf[p][1], buf[p][2], n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        }
        for (int k = 0; k < 3; k++) assert_memory_equal(buf[0][k], buf[1][k], (size_t)n * sizeof(float));
        assert_true(buf[1][0][0] != -0.3f); /* it did update */
        for (int p = 0; p < 2; p++)
            for (int k = 0; k < 3; k++) free(buf[p][k]);
        free(g);
    }
    ftc_matmul_set_backend("auto");
}

/* ftc_adamw_update_scaled (the clip folded into the update) gives the bits of scaling the gradients first and
 * then updating, on every path. */
static void check_adamw_scaled(const char *path) {
    enum { N = 100003 };
    float *g = malloc(N * sizeof *g), *gs = malloc(N * sizeof *gs), *st[2][3];
    assert_non_null(g);
    assert_non_null(gs);
    ftc_rng r;
    ftc_rng_seed(&r, 9);
    const float scale = 0.1234567f;
    for (int i = 0; i < N; i++) g[i] = ftc_rng_normal(&r), gs[i] = g[i] * scale;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 3; k++) {
            st[p][k] = malloc(N * sizeof(float));
            assert_non_null(st[p][k]);
            for (int i = 0; i < N; i++) st[p][k][i] = k == 0 ? (float)i * 1e-3f - 0.3f : k == 1 ? 0.01f : 0.0f;
        }
    for (int t = 1; t <= 3; t++) {
        ftc_adamw_update(st[0][0], gs, st[0][1], st[0][2], N, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        ftc_adamw_update_scaled(st[1][0], g, st[1][1], st[1][2], N, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t, scale);
    }
    for (int k = 0; k < 3; k++) assert_memory_equal(st[0][k], st[1][k], N * sizeof(float));
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 3; k++) free(st[p][k]);
    free(g);
    free(gs);
    fprintf(stderr, "adamw scaled %s: ok\n", path);
}
static void test_adamw_scaled(void **state) { (void)state; each_path(check_adamw_scaled); }

/* LayerNorm and RMSNorm (ops_norm.c) and the linear bias gradient (ops_linear.c) compile each loop twice (portable, AVX-512) with the same operations in
 * the same order: bit-identical outputs, statistics and gradients, for widths that are and are not
 * multiples of 16, threaded or not; and the forward matches a double reference (the path's sums are right,
 * not just equal). */
static void test_norm_paths_identical(void **state) {
    (void)state;
    if (!ftc_matmul_set_backend("avx512")) { skip(); return; }
    const int widths[] = {1, 15, 16, 37, 384, 1000};
    for (int wi = 0; wi < 6; wi++) {
        int C = widths[wi], N = 97, NC = N * C; /* N * C above the threading threshold for the wide rows */
        float *x = malloc(NC * sizeof *x), *dy = malloc(NC * sizeof *dy), *w = malloc(C * sizeof *w),
              *b = malloc(C * sizeof *b), *out[2][8];
        assert_true(x && dy && w && b);
        ftc_rng r;
        ftc_rng_seed(&r, 17 + (uint64_t)wi);
        for (int i = 0; i < NC; i++) x[i] = 3.0f + 2.0f * ftc_rng_normal(&r), dy[i] = ftc_rng_normal(&r);
        for (int c = 0; c < C; c++) w[c] = 1.0f + 0.1f * ftc_rng_normal(&r), b[c] = 0.1f * ftc_rng_normal(&r);
        const size_t sizes[8] = {NC, N, N, NC, C, C, NC, C}; /* y mean rstd dx dw db rms-y(then dx) rms-dw */
        for (int p = 0; p < 2; p++) {
            for (int k = 0; k < 8; k++) {
                out[p][k] = calloc(sizes[k] + (k == 6 ? NC : 0), sizeof(float));
                assert_non_null(out[p][k]);
            }
            ftc_matmul_set_backend(p == 0 ? "generic" : "avx512");
            float **o = out[p];
            ftc_layernorm_forward(o[0], o[1], o[2], x, w, b, N, C, 1e-5f);
            ftc_layernorm_backward(o[3], o[4], o[5], dy, x, w, o[1], o[2], N, C);
            float *rstd = malloc(N * sizeof *rstd);
            assert_non_null(rstd);
            ftc_rmsnorm_forward(o[6], rstd, x, w, N, C, 1e-6f);
            ftc_rmsnorm_backward(o[6] + NC, o[7], dy, x, w, rstd, N, C);
            free(rstd);
        }
        for (int k = 0; k < 8; k++)
            assert_memory_equal(out[0][k], out[1][k], (sizes[k] + (k == 6 ? NC : 0)) * sizeof(float));
        /* the bias gradient of a linear layer (ops_linear.c, same two-path scheme): db += sum over rows */
        float *db[2] = {calloc(C, sizeof(float)), calloc(C, sizeof(float))};
        assert_true(db[0] && db[1]);
        for (int p = 0; p < 2; p++) {
            ftc_matmul_set_backend(p == 0 ? "generic" : "avx512");
            for (int c = 0; c < C; c++) db[p][c] = 0.5f;
            ftc_linear_backward(NULL, NULL, db[p], dy, x, w, N, 1, C);
        }
        assert_memory_equal(db[0], db[1], C * sizeof(float));
        for (int c = 0; c < C; c++) {
            double ref = 0.5;
            for (int n = 0; n < N; n++) ref += dy[n * C + c];
            assert_true(fabs(db[1][c] - ref) < 1e-4);
        }
        free(db[0]), free(db[1]);
        double worst = 0;
        for (int n = 0; n < N; n++) {
            double mu = 0, var = 0;
            for (int c = 0; c < C; c++) mu += x[n * C + c];
            mu /= C;
            for (int c = 0; c < C; c++) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
            double rs = 1 / sqrt(var / C + 1e-5);
            assert_true(fabs(out[1][1][n] - mu) <= 1e-6 * fabs(mu));
            for (int c = 0; c < C; c++) {
                double ref = (x[n * C + c] - mu) * rs * w[c] + b[c];
                worst = fmax(worst, fabs(out[1][0][n * C + c] - ref));
            }
        }
        fprintf(stderr, "norms and bias grad C = %d: generic and avx512 bit-identical; layernorm max abs error %.3g\n", C, worst);
        assert_true(worst < 2e-5); /* a few float roundings of values of size ~4 */
        for (int p = 0; p < 2; p++)
            for (int k = 0; k < 8; k++) free(out[p][k]);
        free(x), free(dy), free(w), free(b);
    }
    ftc_matmul_set_backend("auto");
}

/* The sum of squares behind the gradient norm (--clip): the same bits on every path, for lengths that are and
 * are not multiples of 16, and right against a long double sum (relative error < 1e-13). */
static double sumsq_first[4];
static void check_sum_squares(const char *path) {
    const int64_t lens[] = {0, 7, 33, 1000003};
    for (int li = 0; li < 4; li++) {
        int64_t n = lens[li];
        float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
        assert_non_null(x);
        ftc_rng r;
        ftc_rng_seed(&r, 11);
        long double ref = 0;
        for (int64_t i = 0; i < n; i++) {
            x[i] = ftc_rng_normal(&r) * (i % 3 ? 1e-3f : 2.0f); /* magnitudes that a single float sum would lose */
            ref += (long double)x[i] * x[i];
        }
        double s = ftc_sum_squares(x, n);
        if (n == 0) assert_true(s == 0.0);
        else assert_true(fabsl((long double)s - ref) / ref < 1e-13L);
        if (!strcmp(path, "generic")) sumsq_first[li] = s;
        else assert_memory_equal(&s, &sumsq_first[li], sizeof s);
        free(x);
    }
    fprintf(stderr, "sum_squares %s: ok\n", path);
}
static void test_sum_squares(void **state) { (void)state; each_path(check_sum_squares); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_exp_avx2_bit_identical),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_gelu_erf),
        cmocka_unit_test(test_gelu_paths_and_tails),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_adamw_paths_identical),
        cmocka_unit_test(test_adamw_scaled),
        cmocka_unit_test(test_norm_paths_identical),
        cmocka_unit_test(test_sum_squares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The tiled (FlashAttention-style) attention against the materialising one it replaces, against finite
 * differences of its own forward, and for 1 vs 3 threads. Shapes span several 64-row query blocks and 256-key
 * tiles with ragged last ones, GQA/MQA/MHA, causal and bidirectional, left and right key padding, probability dropout (the same
 * counter-based mask: the key is the one draw ftc_dropout_forward takes) and bf16 products. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include "ftc/threads.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/ops.h"

static ftc_rng rng;
static float *randn(size_t n, float scale) {
    float *a = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) a[i] = ftc_rng_normal(&rng) * scale;
    return a;
}
static float *filled(size_t n, float v) {
    float *a = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) a[i] = v;
    return a;
}
static double max_err(const float *a, const float *ref, size_t n) { /* |a - ref| / max(1, |ref|) */
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - ref[i]) / fmax(1.0, fabs(ref[i]));
        if (!(e <= w)) w = e; /* NaN counts as the worst */
    }
    return w;
}

typedef struct {
    int B, T, H, Hkv, D;
    bool causal, padded, bf16;
    float p;
} shape;

static uint8_t *make_mask(const shape *s) {
    if (!s->padded) return NULL;
    uint8_t *m = malloc((size_t)s->B * s->T);
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++) /* row 0 left-padded (bidirectional models), others right-padded */
            m[b * s->T + t] = b == 0 ? t >= s->T / 5 : t < s->T - 3 - 7 * b;
    return m;
}

/* flash vs materialising: forward outputs and the three input gradients (accumulated onto 0.25) */
static void run_equiv(shape s, double tol, const char *tag) {
    size_t nq = (size_t)s.B * s.T * s.H * s.D, nk = (size_t)s.B * s.T * s.Hkv * s.D, na = (size_t)s.B * s.H * s.T * s.T;
    float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *dy = randn(nq, 1);
    uint8_t *mask = make_mask(&s);
    float *out0 = filled(nq, 0), *att = filled(na, 0), *adrop = filled(na, 0), *dmask = filled(na, 0),
          *scratch0 = filled(na, 0), *dq0 = filled(nq, 0.25f), *dk0 = filled(nk, 0.25f), *dv0 = filled(nk, 0.25f);
    float *out1 = filled(nq, 7), *lse = filled((size_t)s.B * s.H * s.T, 0),
          *scratch1 = filled(ftc_attention_flash_scratch_floats(s.B, s.T, s.H, s.Hkv, s.D), NAN),
          *dq1 = filled(nq, 0.25f), *dk1 = filled(nk, 0.25f), *dv1 = filled(nk, 0.25f);
    ftc_rng r0 = rng, r1 = rng;
    attention_opts o0 = {.dropout_p = s.p, .rng = &r0, .att_drop = adrop, .drop_mask = dmask, .bf16 = s.bf16};
    attention_opts o1 = {.dropout_p = s.p, .drop_key = ftc_rng_u64(&r1), .bf16 = s.bf16};
    ftc_attention_forward_ex(out0, att, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal, &o0);
    ftc_attention_backward_ex(dq0, dk0, dv0, dy, att, q, k, v, s.B, s.T, s.H, s.Hkv, s.D, scratch0, &o0);
    ftc_attention_flash_forward(out1, lse, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal, &o1);
    ftc_attention_flash_backward(dq1, dk1, dv1, dy, out1, lse, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal,
                                 scratch1, &o1);
    /* lse: the log of each row's softmax denominator; check it against the materialised probabilities on
     * row i's own key (always visible): att[i,i] = exp(score_ii - lse_i) */
    double lse_err = 0;
    float scale = 1.0f / sqrtf((float)s.D);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++)
            for (int i = 0; i < s.T; i++) {
                const float *qi = q + (((size_t)b * s.T + i) * s.H + h) * s.D;
                const float *ki = k + (((size_t)b * s.T + i) * s.Hkv + h / (s.H / s.Hkv)) * s.D;
                double sc = 0;
                for (int d = 0; d < s.D; d++) sc += (double)qi[d] * ki[d];
                double pii = exp(sc * scale - lse[((size_t)b * s.H + h) * s.T + i]);
                double e = fabs(pii - att[(((size_t)b * s.H + h) * s.T + i) * s.T + i]);
                if (!(e <= lse_err)) lse_err = e;
            }
    double e[5] = {max_err(out1, out0, nq), max_err(dq1, dq0, nq), max_err(dk1, dk0, nk), max_err(dv1, dv0, nk),
                   lse_err};
    if (s.bf16) { /* both bf16 paths against the fp32 one: the tiled path rounds no worse than the materialising */
        float *o32 = filled(nq, 0), *l32 = filled((size_t)s.B * s.H * s.T, 0), *q32 = filled(nq, 0.25f),
              *k32 = filled(nk, 0.25f), *v32 = filled(nk, 0.25f);
        attention_opts o2 = o1;
        o2.bf16 = false;
        ftc_attention_flash_forward(o32, l32, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal, &o2);
        ftc_attention_flash_backward(q32, k32, v32, dy, o32, l32, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal,
                                     scratch1, &o2);
        const float *ref[4] = {o32, q32, k32, v32}, *mat[4] = {out0, dq0, dk0, dv0}, *fl[4] = {out1, dq1, dk1, dv1};
        size_t n[4] = {nq, nq, nk, nk};
        for (int i = 0; i < 4; i++) {
            double em = 0, ef = 0;
            for (size_t j = 0; j < n[i]; j++) {
                em += fabs((double)mat[i][j] - ref[i][j]), ef += fabs((double)fl[i][j] - ref[i][j]);
            }
            printf("    vs fp32, mean abs error (%s): materialising %.2e tiled %.2e\n", (const char *[]){"out", "dq", "dk", "dv"}[i],
                   em / n[i], ef / n[i]);
            assert_true(ef <= 1.25 * em);
        }
        free(o32); free(l32); free(q32); free(k32); free(v32);
    }
    printf("  flash vs materialising %-28s out %.1e dq %.1e dk %.1e dv %.1e p_ii %.1e\n", tag, e[0], e[1], e[2], e[3],
           e[4]);
    for (int i = 0; i < 5; i++) assert_true(e[i] <= tol);
    free(q); free(k); free(v); free(dy); free(mask); free(out0); free(att); free(adrop); free(dmask); free(scratch0);
    free(dq0); free(dk0); free(dv0); free(out1); free(lse); free(scratch1); free(dq1); free(dk1); free(dv1);
}

static void test_equiv_fp32(void **state) {
    (void)state;
    run_equiv((shape){2, 300, 4, 2, 16, true, true, false, 0}, 2e-6, "gqa causal pad T=300");
    run_equiv((shape){2, 600, 3, 1, 8, false, true, false, 0}, 2e-6, "mqa bidir pad T=600");
    run_equiv((shape){1, 129, 2, 2, 32, true, false, false, 0}, 2e-6, "mha causal T=129");
    run_equiv((shape){2, 7, 2, 1, 4, true, true, false, 0}, 2e-6, "mqa causal pad T=7");
}
static void test_equiv_dropout(void **state) {
    (void)state;
    run_equiv((shape){2, 300, 4, 2, 16, false, true, false, 0.2f}, 2e-6, "gqa bidir pad drop T=300");
    run_equiv((shape){1, 100, 2, 2, 8, true, false, false, 0.5f}, 2e-6, "mha causal drop T=100");
}
static void test_equiv_bf16(void **state) {
    (void)state;
    run_equiv((shape){2, 300, 4, 2, 16, true, true, true, 0}, 2e-2, "bf16 gqa causal pad T=300");
    run_equiv((shape){2, 300, 4, 4, 16, false, true, true, 0.1f}, 2e-2, "bf16 mha bidir drop T=300");
}

/* ---- finite differences of the flash forward ---- */
#define H_STEP 1e-2f
#define TOL 2e-3
typedef struct {
    shape s;
    const uint8_t *mask;
    float *out, *lse, *q, *k, *v;
    attention_opts o;
} fd_ctx;
static double fd_loss(fd_ctx *c, const float *r, size_t nq) {
    ftc_attention_flash_forward(c->out, c->lse, c->q, c->k, c->v, c->mask, c->s.B, c->s.T, c->s.H, c->s.Hkv, c->s.D,
                                c->s.causal, &c->o);
    double L = 0;
    for (size_t i = 0; i < nq; i++) L += (double)c->out[i] * r[i];
    return L;
}
/* every stride-th input (the tiles' edges fall on every residue for the strides used) */
static void fd_check(const char *what, fd_ctx *c, const float *r, size_t nq, float *x, const float *g, size_t n,
                     size_t stride) {
    double worst = 0;
    for (size_t i = 0; i < n; i += stride) {
        float keep = x[i];
        x[i] = keep + H_STEP;
        double lp = fd_loss(c, r, nq);
        x[i] = keep - H_STEP;
        double lm = fd_loss(c, r, nq);
        x[i] = keep;
        double num = (lp - lm) / ((double)(keep + H_STEP) - (double)(keep - H_STEP));
        double e = fabs((g[i] - 0.25f) - num) / fmax(1.0, fabs(num));
        if (!(e <= worst)) worst = e;
    }
    printf("  gradcheck flash %-28s n=%-5zu max err %.2e\n", what, (n + stride - 1) / stride, worst);
    assert_true(worst <= TOL);
}
static void run_fd(shape s, size_t stride, const char *tag) {
    size_t nq = (size_t)s.B * s.T * s.H * s.D, nk = (size_t)s.B * s.T * s.Hkv * s.D;
    fd_ctx c = {.s = s, .mask = make_mask(&s), .out = filled(nq, 0), .lse = filled((size_t)s.B * s.H * s.T, 0),
                .q = randn(nq, 1), .k = randn(nk, 1), .v = randn(nk, 1),
                .o = {.dropout_p = s.p, .drop_key = ftc_rng_u64(&rng)}};
    float *r = randn(nq, 1), *dq = filled(nq, 0.25f), *dk = filled(nk, 0.25f), *dv = filled(nk, 0.25f);
    float *scratch = filled(ftc_attention_flash_scratch_floats(s.B, s.T, s.H, s.Hkv, s.D), 0);
    fd_loss(&c, r, nq);
    ftc_attention_flash_backward(dq, dk, dv, r, c.out, c.lse, c.q, c.k, c.v, c.mask, s.B, s.T, s.H, s.Hkv, s.D,
                                 s.causal, scratch, &c.o);
    char name[64];
    snprintf(name, sizeof name, "%s dq", tag), fd_check(name, &c, r, nq, c.q, dq, nq, stride);
    snprintf(name, sizeof name, "%s dk", tag), fd_check(name, &c, r, nq, c.k, dk, nk, stride);
    snprintf(name, sizeof name, "%s dv", tag), fd_check(name, &c, r, nq, c.v, dv, nk, stride);
    free((void *)c.mask); free(c.out); free(c.lse); free(c.q); free(c.k); free(c.v); free(r); free(dq); free(dk);
    free(dv); free(scratch);
}
static void test_gradcheck(void **state) {
    (void)state;
    run_fd((shape){2, 70, 2, 1, 4, true, true, false, 0}, 1, "gqa causal pad T=70");
    run_fd((shape){1, 70, 2, 2, 4, false, true, false, 0.3f}, 1, "mha bidir pad drop T=70");
    run_fd((shape){1, 300, 2, 1, 4, true, true, false, 0.1f}, 7, "gqa causal pad drop T=300");
}

/* ---- 1 vs 3 threads: bit-identical ---- */
static void test_threads(void **state) {
    (void)state;
    shape s = {2, 300, 4, 2, 16, true, true, false, 0.1f};
    size_t nq = (size_t)s.B * s.T * s.H * s.D, nk = (size_t)s.B * s.T * s.Hkv * s.D, nl = (size_t)s.B * s.H * s.T;
    float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *dy = randn(nq, 1);
    uint8_t *mask = make_mask(&s);
    float *res[2][5];
    attention_opts o = {.dropout_p = s.p, .drop_key = 12345};
    float *scratch = filled(ftc_attention_flash_scratch_floats(s.B, s.T, s.H, s.Hkv, s.D), 0);
    int saved = ftc_threads();
    for (int t = 0; t < 2; t++) {
        ftc_threads_set(t ? 3 : 1);
        float *out = res[t][0] = filled(nq, 0), *lse = res[t][1] = filled(nl, 0);
        float *dq = res[t][2] = filled(nq, 0), *dk = res[t][3] = filled(nk, 0), *dv = res[t][4] = filled(nk, 0);
        ftc_attention_flash_forward(out, lse, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal, &o);
        ftc_attention_flash_backward(dq, dk, dv, dy, out, lse, q, k, v, mask, s.B, s.T, s.H, s.Hkv, s.D, s.causal,
                                     scratch, &o);
    }
    ftc_threads_set(saved);
    size_t n[5] = {nq, nl, nq, nk, nk};
    for (int i = 0; i < 5; i++) {
        assert_memory_equal(res[0][i], res[1][i], n[i] * sizeof(float));
        free(res[0][i]), free(res[1][i]);
    }
    free(q); free(k); free(v); free(dy); free(mask); free(scratch);
}

static int setup(void **state) {
    (void)state;
    ftc_rng_seed(&rng, 4321);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_equiv_fp32, setup),
        cmocka_unit_test_setup(test_equiv_dropout, setup),
        cmocka_unit_test_setup(test_equiv_bf16, setup),
        cmocka_unit_test_setup(test_gradcheck, setup),
        cmocka_unit_test_setup(test_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

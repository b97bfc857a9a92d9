/* Every op's backward against central finite differences of its forward.
 * Loss L = sum_i out[i] * r[i] in double with fixed random r, so dL/dout = r is the upstream gradient fed to
 * backward, and dL/dx[k] ~ (L(x + h e_k) - L(x - h e_k)) / 2h.
 * Tolerance: the forward runs in float32, so each out[i] carries a relative rounding error of ~6e-8; L sums
 * <= ~500 such terms of size ~1, giving absolute noise ~1e-6 in L, i.e. ~1e-6 / (2h) = 5e-5 in the quotient for
 * h = 1e-2; the truncation error h^2 f'''/6 is ~2e-5 for these O(1) inputs. We require
 * |analytic - numeric| <= 2e-3 * max(1, |numeric|): 10-40x above the expected error, far below what any
 * wrong term in a gradient produces (those show up as errors of order 1e-1 and larger).
 * Backward functions accumulate: gradient buffers start at a nonzero value that is subtracted afterwards, so
 * an op that overwrote instead of adding would fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/ops.h"

#define H_STEP 1e-2f
#define TOL 2e-3
#define PREFILL 0.25f

static ftc_rng rng;

static float *randn(int n, float scale) {
    float *a = malloc(sizeof(float) * (n > 0 ? n : 1));
    for (int i = 0; i < n; i++) a[i] = ftc_rng_normal(&rng) * scale;
    return a;
}
static float *filled(int n, float v) {
    float *a = malloc(sizeof(float) * (n > 0 ? n : 1));
    for (int i = 0; i < n; i++) a[i] = v;
    return a;
}
static void unprefill(float *g, int n) {
    for (int i = 0; i < n; i++) g[i] -= PREFILL;
}

typedef void (*fwd_fn)(void *ctx);

static double weighted_loss(fwd_fn f, void *ctx, const float *out, const float *r, int nout) {
    f(ctx);
    double L = 0;
    for (int i = 0; i < nout; i++) L += (double)out[i] * r[i];
    return L;
}

/* Compares grad (analytic) with finite differences for every element of x; returns the max scaled error. */
static double check_input(const char *what, fwd_fn f, void *ctx, const float *out, const float *r, int nout,
                          float *x, const float *grad, int n) {
    double worst = 0;
    for (int k = 0; k < n; k++) {
        float keep = x[k];
        x[k] = keep + H_STEP;
        double lp = weighted_loss(f, ctx, out, r, nout);
        x[k] = keep - H_STEP;
        double lm = weighted_loss(f, ctx, out, r, nout);
        x[k] = keep;
        /* the step actually taken in float */
        double num = (lp - lm) / ((double)(keep + H_STEP) - (double)(keep - H_STEP));
        double err = fabs(grad[k] - num) / fmax(1.0, fabs(num));
        if (err > worst) worst = err;
        if (err > TOL) print_error("%s[%d]: analytic %.6g numeric %.6g\n", what, k, grad[k], num);
    }
    f(ctx); /* leave the outputs of the unperturbed inputs */
    printf("  gradcheck %-28s n=%-4d max err %.2e\n", what, n, worst);
    assert_true(worst <= TOL);
    return worst;
}

/* ---------------- embedding ---------------- */
enum { EN = 7, EC = 5, EV = 4, EP = 6, ET = 2 };
typedef struct { float *out, *wte, *wpe, *wtt; int32_t ids[EN], pos[EN], types[EN]; } emb_ctx;
static void emb_fwd(void *p) {
    emb_ctx *c = p;
    ftc_embedding_forward(c->out, c->ids, c->pos, c->types, c->wte, c->wpe, c->wtt, EN, EC);
}
static void test_embedding(void **state) {
    (void)state;
    emb_ctx c = {.out = filled(EN * EC, 0), .wte = randn(EV * EC, 1), .wpe = randn(EP * EC, 1), .wtt = randn(ET * EC, 1)};
    for (int n = 0; n < EN; n++) { c.ids[n] = (n * 3) % EV; c.pos[n] = n % EP; c.types[n] = n > 3; } /* ids repeat */
    float *r = randn(EN * EC, 1);
    float *dwte = filled(EV * EC, PREFILL), *dwpe = filled(EP * EC, PREFILL), *dwtt = filled(ET * EC, PREFILL);
    emb_fwd(&c);
    ftc_embedding_backward(dwte, dwpe, dwtt, r, c.ids, c.pos, c.types, EN, EC);
    unprefill(dwte, EV * EC); unprefill(dwpe, EP * EC); unprefill(dwtt, ET * EC);
    check_input("embedding dwte", emb_fwd, &c, c.out, r, EN * EC, c.wte, dwte, EV * EC);
    check_input("embedding dwpe", emb_fwd, &c, c.out, r, EN * EC, c.wpe, dwpe, EP * EC);
    check_input("embedding dwtt", emb_fwd, &c, c.out, r, EN * EC, c.wtt, dwtt, ET * EC);
    /* without position/type tables only wte is used */
    float *o2 = filled(EN * EC, 0);
    ftc_embedding_forward(o2, c.ids, NULL, NULL, c.wte, NULL, NULL, EN, EC);
    for (int n = 0; n < EN; n++)
        for (int k = 0; k < EC; k++) assert_float_equal(o2[n * EC + k], c.wte[c.ids[n] * EC + k], 0);
    free(o2); free(c.out); free(c.wte); free(c.wpe); free(c.wtt); free(r); free(dwte); free(dwpe); free(dwtt);
}

/* ---------------- layernorm / rmsnorm ---------------- */
enum { NN = 4, NC = 9 };
typedef struct { float *y, *mean, *rstd, *x, *w, *b; bool rms; } norm_ctx;
static void norm_fwd(void *p) {
    norm_ctx *c = p;
    if (c->rms) ftc_rmsnorm_forward(c->y, c->rstd, c->x, c->w, NN, NC, 1e-5f);
    else ftc_layernorm_forward(c->y, c->mean, c->rstd, c->x, c->w, c->b, NN, NC, 1e-5f);
}
static void run_norm(bool rms) {
    norm_ctx c = {.y = filled(NN * NC, 0), .mean = filled(NN, 0), .rstd = filled(NN, 0), .x = randn(NN * NC, 1),
                  .w = randn(NC, 1), .b = randn(NC, 1), .rms = rms};
    for (int i = 0; i < NN * NC; i++) c.x[i] += 0.5f; /* nonzero mean */
    float *r = randn(NN * NC, 1), *dx = filled(NN * NC, PREFILL), *dw = filled(NC, PREFILL), *db = filled(NC, PREFILL);
    norm_fwd(&c);
    if (rms) ftc_rmsnorm_backward(dx, dw, r, c.x, c.w, c.rstd, NN, NC);
    else ftc_layernorm_backward(dx, dw, db, r, c.x, c.w, c.mean, c.rstd, NN, NC);
    unprefill(dx, NN * NC); unprefill(dw, NC); unprefill(db, NC);
    check_input(rms ? "rmsnorm dx" : "layernorm dx", norm_fwd, &c, c.y, r, NN * NC, c.x, dx, NN * NC);
    check_input(rms ? "rmsnorm dw" : "layernorm dw", norm_fwd, &c, c.y, r, NN * NC, c.w, dw, NC);
    if (!rms) check_input("layernorm db", norm_fwd, &c, c.y, r, NN * NC, c.b, db, NC);
    free(c.y); free(c.mean); free(c.rstd); free(c.x); free(c.w); free(c.b); free(r); free(dx); free(dw); free(db);
}
static void test_layernorm(void **state) { (void)state; run_norm(false); }
static void test_rmsnorm(void **state) { (void)state; run_norm(true); }

/* ---------------- linear ---------------- */
enum { LN = 5, LI = 6, LO = 4 };
typedef struct { float *y, *x, *W, *b; } lin_ctx;
static void lin_fwd(void *p) { lin_ctx *c = p; ftc_linear_forward(c->y, c->x, c->W, c->b, LN, LI, LO); }
static void test_linear(void **state) {
    (void)state;
    lin_ctx c = {.y = filled(LN * LO, 0), .x = randn(LN * LI, 1), .W = randn(LO * LI, 1), .b = randn(LO, 1)};
    float *r = randn(LN * LO, 1), *dx = filled(LN * LI, PREFILL), *dW = filled(LO * LI, PREFILL), *db = filled(LO, PREFILL);
    lin_fwd(&c);
    ftc_linear_backward(dx, dW, db, r, c.x, c.W, LN, LI, LO);
    unprefill(dx, LN * LI); unprefill(dW, LO * LI); unprefill(db, LO);
    check_input("linear dx", lin_fwd, &c, c.y, r, LN * LO, c.x, dx, LN * LI);
    check_input("linear dW", lin_fwd, &c, c.y, r, LN * LO, c.W, dW, LO * LI);
    check_input("linear db", lin_fwd, &c, c.y, r, LN * LO, c.b, db, LO);
    /* NULL gradients are skipped and do not change the others */
    float *dW2 = filled(LO * LI, 0);
    ftc_linear_backward(NULL, dW2, NULL, r, c.x, c.W, LN, LI, LO);
    for (int i = 0; i < LO * LI; i++) assert_float_equal(dW2[i], dW[i], 1e-5);
    /* no bias: y = x W^T */
    float *y2 = filled(LN * LO, 0);
    ftc_linear_forward(y2, c.x, c.W, NULL, LN, LI, LO);
    for (int i = 0; i < LN * LO; i++) assert_float_equal(y2[i], c.y[i] - c.b[i % LO], 1e-5);
    free(y2); free(dW2); free(c.y); free(c.x); free(c.W); free(c.b); free(r); free(dx); free(dW); free(db);
}

/* ---------------- elementwise activations ---------------- */
enum { AN = 40 };
typedef enum { ACT_GELU_TANH, ACT_GELU_ERF, ACT_TANH } act_kind;
typedef struct { float *y, *x; act_kind kind; } act_ctx;
static void act_fwd(void *p) {
    act_ctx *c = p;
    if (c->kind == ACT_GELU_TANH) ftc_gelu_tanh_forward(c->y, c->x, AN);
    else if (c->kind == ACT_GELU_ERF) ftc_gelu_erf_forward(c->y, c->x, AN);
    else ftc_tanh_forward(c->y, c->x, AN);
}
static void run_act(act_kind kind, const char *name) {
    act_ctx c = {.y = filled(AN, 0), .x = randn(AN, 2), .kind = kind};
    float *r = randn(AN, 1), *dx = filled(AN, PREFILL);
    act_fwd(&c);
    if (kind == ACT_GELU_TANH) ftc_gelu_tanh_backward(dx, r, c.x, AN);
    else if (kind == ACT_GELU_ERF) ftc_gelu_erf_backward(dx, r, c.x, AN);
    else ftc_tanh_backward(dx, r, c.y, AN);
    unprefill(dx, AN);
    check_input(name, act_fwd, &c, c.y, r, AN, c.x, dx, AN);
    free(c.y); free(c.x); free(r); free(dx);
}
static void test_gelu_tanh(void **state) { (void)state; run_act(ACT_GELU_TANH, "gelu_tanh dx"); }
static void test_gelu_erf(void **state) { (void)state; run_act(ACT_GELU_ERF, "gelu_erf dx"); }
static void test_tanh(void **state) { (void)state; run_act(ACT_TANH, "tanh dx"); }

typedef struct { float *y, *gate, *up; } swi_ctx;
static void swi_fwd(void *p) { swi_ctx *c = p; ftc_swiglu_forward(c->y, c->gate, c->up, AN); }
static void test_swiglu(void **state) {
    (void)state;
    swi_ctx c = {.y = filled(AN, 0), .gate = randn(AN, 2), .up = randn(AN, 1)};
    float *r = randn(AN, 1), *dg = filled(AN, PREFILL), *du = filled(AN, PREFILL);
    swi_fwd(&c);
    ftc_swiglu_backward(dg, du, r, c.gate, c.up, AN);
    unprefill(dg, AN); unprefill(du, AN);
    check_input("swiglu dgate", swi_fwd, &c, c.y, r, AN, c.gate, dg, AN);
    check_input("swiglu dup", swi_fwd, &c, c.y, r, AN, c.up, du, AN);
    float *s = filled(AN, 0);
    ftc_add_forward(s, c.gate, c.up, AN);
    for (int i = 0; i < AN; i++) assert_float_equal(s[i], c.gate[i] + c.up[i], 0);
    free(s); free(c.y); free(c.gate); free(c.up); free(r); free(dg); free(du);
}

typedef struct { float *y, *mask, *x; float p; } drop_ctx;
static void drop_fwd(void *p) {
    drop_ctx *c = p;
    ftc_rng r;
    ftc_rng_seed(&r, 99); /* the same mask on every call */
    ftc_dropout_forward(c->y, c->mask, c->x, AN, c->p, &r);
}
static void test_dropout(void **state) {
    (void)state;
    drop_ctx c = {.y = filled(AN, 0), .mask = filled(AN, 0), .x = randn(AN, 1), .p = 0.3f};
    float *r = randn(AN, 1), *dx = filled(AN, PREFILL);
    drop_fwd(&c);
    int zeros = 0;
    for (int i = 0; i < AN; i++) {
        assert_true(c.mask[i] == 0.0f || fabsf(c.mask[i] - 1.0f / 0.7f) < 1e-6f);
        zeros += c.mask[i] == 0.0f;
    }
    assert_true(zeros > 0 && zeros < AN);
    ftc_dropout_backward(dx, r, c.mask, AN);
    unprefill(dx, AN);
    check_input("dropout dx", drop_fwd, &c, c.y, r, AN, c.x, dx, AN);
    /* the kept fraction is 1-p over many draws */
    enum { BIG = 100000 };
    float *bx = filled(BIG, 1), *by = filled(BIG, 0), *bm = filled(BIG, 0);
    ftc_rng rr;
    ftc_rng_seed(&rr, 5);
    ftc_dropout_forward(by, bm, bx, BIG, 0.3f, &rr);
    double mean = 0;
    for (int i = 0; i < BIG; i++) mean += by[i];
    assert_true(fabs(mean / BIG - 1.0) < 0.01); /* inverted dropout keeps the expectation */
    ftc_dropout_forward(by, bm, bx, BIG, 0.0f, &rr);
    for (int i = 0; i < BIG; i++) assert_true(by[i] == 1.0f && bm[i] == 1.0f);
    free(bx); free(by); free(bm); free(c.y); free(c.mask); free(c.x); free(r); free(dx);
}

/* ---------------- rope ---------------- */
enum { RN = 5, RH = 3, RD = 8 };
typedef struct { float *y, *x, inv_freq[RD / 2]; int32_t pos[RN]; } rope_ctx;
static void rope_fwd(void *p) {
    rope_ctx *c = p;
    memcpy(c->y, c->x, sizeof(float) * RN * RH * RD);
    ftc_rope_forward(c->y, c->pos, c->inv_freq, RN, RH, RD);
}
static void test_rope(void **state) {
    (void)state;
    rope_ctx c = {.y = filled(RN * RH * RD, 0), .x = randn(RN * RH * RD, 1)};
    ftc_rope_inv_freq(c.inv_freq, RD, 10000.0f);
    for (int n = 0; n < RN; n++) c.pos[n] = 3 * n + 1;
    float *r = randn(RN * RH * RD, 1), *dx = malloc(sizeof(float) * RN * RH * RD);
    memcpy(dx, r, sizeof(float) * RN * RH * RD);
    rope_fwd(&c);
    ftc_rope_backward(dx, c.pos, c.inv_freq, RN, RH, RD);
    check_input("rope dx", rope_fwd, &c, c.y, r, RN * RH * RD, c.x, dx, RN * RH * RD);
    /* a rotation keeps each pair's norm; position 0 is the identity */
    for (int n = 0; n < RN; n++)
        for (int h = 0; h < RH; h++)
            for (int i = 0; i < RD / 2; i++) {
                const float *a = c.x + (n * RH + h) * RD, *b = c.y + (n * RH + h) * RD;
                assert_float_equal(a[i] * a[i] + a[i + RD / 2] * a[i + RD / 2],
                                   b[i] * b[i] + b[i + RD / 2] * b[i + RD / 2], 1e-4);
            }
    int32_t zero = 0;
    float v[RH * RD];
    memcpy(v, c.x, sizeof v);
    ftc_rope_forward(v, &zero, c.inv_freq, 1, RH, RD);
    for (int i = 0; i < RH * RD; i++) assert_float_equal(v[i], c.x[i], 0);
    free(c.y); free(c.x); free(r); free(dx);
}

/* ---------------- attention ---------------- */
typedef struct {
    int B, T, H, Hkv, D;
    bool causal;
    const uint8_t *mask;
    float *out, *att, *q, *k, *v;
} att_ctx;
static void att_fwd(void *p) {
    att_ctx *c = p;
    ftc_attention_forward(c->out, c->att, c->q, c->k, c->v, c->mask, c->B, c->T, c->H, c->Hkv, c->D, c->causal);
}
static void run_attention(int H, int Hkv, bool causal, bool padded, const char *tag) {
    enum { B = 2, T = 5, D = 4 };
    /* batch 0 left-padded by 2, batch 1 right-padded by 1 */
    static const uint8_t mask[B * T] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    att_ctx c = {.B = B, .T = T, .H = H, .Hkv = Hkv, .D = D, .causal = causal, .mask = padded ? mask : NULL};
    int nq = B * T * H * D, nk = B * T * Hkv * D;
    c.out = filled(nq, 0); c.att = filled(B * H * T * T, 0);
    c.q = randn(nq, 1); c.k = randn(nk, 1); c.v = randn(nk, 1);
    float *r = randn(nq, 1), *dq = filled(nq, PREFILL), *dk = filled(nk, PREFILL), *dv = filled(nk, PREFILL);
    float *scratch = filled(B * H * T * T, 0);
    att_fwd(&c);
    /* probabilities: rows sum to 1, masked keys get exactly 0, nothing is NaN */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double s = 0;
                for (int j = 0; j < T; j++) {
                    float p = c.att[((b * H + h) * T + i) * T + j];
                    assert_false(isnan(p));
                    bool vis = (!causal || j <= i) && (!c.mask || c.mask[b * T + j] || j == i);
                    if (!vis) assert_true(p == 0.0f);
                    s += p;
                }
                assert_float_equal(s, 1.0, 1e-5);
            }
    ftc_attention_backward(dq, dk, dv, r, c.att, c.q, c.k, c.v, B, T, H, Hkv, D, scratch);
    unprefill(dq, nq); unprefill(dk, nk); unprefill(dv, nk);
    char name[64];
    snprintf(name, sizeof name, "attention %s dq", tag);
    check_input(name, att_fwd, &c, c.out, r, nq, c.q, dq, nq);
    snprintf(name, sizeof name, "attention %s dk", tag);
    check_input(name, att_fwd, &c, c.out, r, nq, c.k, dk, nk);
    snprintf(name, sizeof name, "attention %s dv", tag);
    check_input(name, att_fwd, &c, c.out, r, nq, c.v, dv, nk);
    free(c.out); free(c.att); free(c.q); free(c.k); free(c.v); free(r); free(dq); free(dk); free(dv); free(scratch);
}
static void test_attention_mha_causal(void **state) { (void)state; run_attention(2, 2, true, false, "mha causal"); }
static void test_attention_gqa_causal_padded(void **state) { (void)state; run_attention(4, 2, true, true, "gqa causal+pad"); }
static void test_attention_mqa_bidir_padded(void **state) { (void)state; run_attention(3, 1, false, true, "mqa bidir+pad"); }

/* ---------------- cross entropy ---------------- */
enum { CN = 5, CV = 7 };
typedef struct { float *logits, loss; int32_t targets[CN]; int counted; } ce_ctx;
static void ce_fwd(void *p) {
    ce_ctx *c = p;
    c->loss = ftc_cross_entropy_forward(c->logits, c->targets, CN, CV, &c->counted);
}
static void test_cross_entropy(void **state) {
    (void)state;
    ce_ctx c = {.logits = randn(CN * CV, 2), .targets = {3, -100, 0, 6, -1}};
    float *dl = filled(CN * CV, 123.0f); /* written, not accumulated */
    float r = 0.7f;
    ce_fwd(&c);
    assert_int_equal(c.counted, 3);
    ftc_cross_entropy_backward(dl, c.logits, c.targets, CN, CV, r);
    for (int v = 0; v < CV; v++) assert_true(dl[1 * CV + v] == 0.0f && dl[4 * CV + v] == 0.0f);
    check_input("cross_entropy dlogits", ce_fwd, &c, &c.loss, &r, 1, c.logits, dl, CN * CV);
    /* the mean over counted rows, recomputed in double */
    double ref = 0;
    for (int n = 0; n < CN; n++) {
        if (c.targets[n] < 0) continue;
        double s = 0;
        for (int v = 0; v < CV; v++) s += exp(c.logits[n * CV + v]);
        ref += log(s) - c.logits[n * CV + c.targets[n]];
    }
    assert_float_equal(c.loss, ref / 3, 1e-5);
    /* all rows ignored: loss 0, gradient 0 */
    int32_t none[CN] = {-100, -100, -100, -100, -100};
    int cnt = 7;
    assert_true(ftc_cross_entropy_forward(c.logits, none, CN, CV, &cnt) == 0.0f);
    assert_int_equal(cnt, 0);
    ftc_cross_entropy_backward(dl, c.logits, none, CN, CV, 1.0f);
    for (int i = 0; i < CN * CV; i++) assert_true(dl[i] == 0.0f);
    free(c.logits); free(dl);
}

/* ---------------- R-Drop's symmetric KL ---------------- */
enum { RP = 4, RK = 6 };
typedef struct { float *logits, loss; int32_t targets[RP]; int pairs; } rd_ctx;
static void rd_fwd(void *p) {
    rd_ctx *c = p;
    c->loss = (float)ftc_rdrop_kl_forward(c->logits, c->targets, RP, RK, &c->pairs);
}
static void test_rdrop_kl(void **state) {
    (void)state;
    rd_ctx c = {.logits = randn(2 * RP * RK, 1.5f), .targets = {2, -100, 0, 5}};
    float *dl = filled(2 * RP * RK, PREFILL), r = 0.8f;
    rd_fwd(&c);
    assert_int_equal(c.pairs, 3);
    ftc_rdrop_kl_backward(dl, c.logits, c.targets, RP, RK, r);
    unprefill(dl, 2 * RP * RK); /* accumulated onto what was there */
    for (int k = 0; k < RK; k++) assert_true(dl[1 * RK + k] == 0.0f && dl[(RP + 1) * RK + k] == 0.0f);
    check_input("rdrop_kl dlogits", rd_fwd, &c, &c.loss, &r, 1, c.logits, dl, 2 * RP * RK);
    /* KL(p||q) + KL(q||p) recomputed in double from its definition, mean over the counted pairs */
    double ref = 0;
    for (int i = 0; i < RP; i++) {
        if (c.targets[i] < 0) continue;
        double p[RK], q[RK], sp = 0, sq = 0;
        for (int k = 0; k < RK; k++) sp += p[k] = exp(c.logits[i * RK + k]), sq += q[k] = exp(c.logits[(RP + i) * RK + k]);
        for (int k = 0; k < RK; k++) p[k] /= sp, q[k] /= sq;
        for (int k = 0; k < RK; k++) ref += p[k] * log(p[k] / q[k]) + q[k] * log(q[k] / p[k]);
    }
    assert_float_equal(c.loss, ref / 3, 1e-6);
    /* by hand: one pair over two labels, logits (0, 0) and (log 3, 0): p = (1/2, 1/2), q = (3/4, 1/4),
     * S = (1/2 - 3/4) log(2/3) + (1/2 - 1/4) log(2) = (1/4) log 3; dS/da_0 = p0 (d0 - E_p d) + p0 - q0 with
     * d = (log(2/3), log 2): E_p d = (1/2) log(4/3), so dS/da_0 = (1/2)(log(2/3) - (1/2) log(4/3)) - 1/4 */
    float two[4] = {0.0f, 0.0f, (float)log(3.0), 0.0f}, g2[4] = {0, 0, 0, 0};
    int pairs = -1;
    assert_float_equal(ftc_rdrop_kl_forward(two, NULL, 1, 2, &pairs), 0.25 * log(3.0), 1e-7);
    assert_int_equal(pairs, 1);
    ftc_rdrop_kl_backward(g2, two, NULL, 1, 2, 1.0f);
    assert_float_equal(g2[0], 0.5 * (log(2.0 / 3.0) - 0.5 * log(4.0 / 3.0)) - 0.25, 1e-6);
    assert_float_equal(g2[0] + g2[1], 0, 1e-7); /* a softmax's logits: the gradient sums to zero */
    /* identical passes: S = 0 and no gradient; no counted pair: 0 */
    memcpy(two + 2, two, 2 * sizeof(float));
    assert_float_equal(ftc_rdrop_kl_forward(two, NULL, 1, 2, NULL), 0, 1e-12);
    int32_t none[RP] = {-100, -100, -100, -100};
    assert_true(ftc_rdrop_kl_forward(c.logits, none, RP, RK, &pairs) == 0.0 && pairs == 0);
    free(c.logits); free(dl);
}

/* ---------------- pooling ---------------- */
enum { PB = 3, PT = 4, PC = 3 };
static const uint8_t pool_mask[PB * PT] = {1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0}; /* right pad, left pad, empty */
typedef struct { float *out, *x; int kind; } pool_ctx;
static void pool_fwd(void *p) {
    pool_ctx *c = p;
    if (c->kind == 0) ftc_pool_cls_forward(c->out, c->x, PB, PT, PC);
    else if (c->kind == 1) ftc_pool_mean_forward(c->out, c->x, pool_mask, PB, PT, PC);
    else ftc_pool_last_forward(c->out, c->x, pool_mask, PB, PT, PC);
}
static void test_pools(void **state) {
    (void)state;
    static const char *names[3] = {"pool_cls dx", "pool_mean dx", "pool_last dx"};
    for (int kind = 0; kind < 3; kind++) {
        pool_ctx c = {.out = filled(PB * PC, 0), .x = randn(PB * PT * PC, 1), .kind = kind};
        float *r = randn(PB * PC, 1), *dx = filled(PB * PT * PC, PREFILL);
        pool_fwd(&c);
        if (kind == 0) ftc_pool_cls_backward(dx, r, PB, PT, PC);
        else if (kind == 1) ftc_pool_mean_backward(dx, r, pool_mask, PB, PT, PC);
        else ftc_pool_last_backward(dx, r, pool_mask, PB, PT, PC);
        unprefill(dx, PB * PT * PC);
        check_input(names[kind], pool_fwd, &c, c.out, r, PB * PC, c.x, dx, PB * PT * PC);
        if (kind == 1) /* mean of the 3 real rows of batch 0 */
            assert_float_equal(c.out[0], (c.x[0] + c.x[PC] + c.x[2 * PC]) / 3, 1e-6);
        if (kind == 2) { /* batch 0: token 2; batch 1: token 3; batch 2 has none -> 0 */
            assert_float_equal(c.out[0], c.x[2 * PC], 0);
            assert_float_equal(c.out[PC], c.x[(PT + 3) * PC], 0);
            assert_float_equal(c.out[2 * PC], 0, 0);
        }
        free(c.out); free(c.x); free(r); free(dx);
    }
}

static int setup(void **state) {
    (void)state;
    ftc_rng_seed(&rng, 1234);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_embedding, setup),
        cmocka_unit_test_setup(test_layernorm, setup),
        cmocka_unit_test_setup(test_rmsnorm, setup),
        cmocka_unit_test_setup(test_linear, setup),
        cmocka_unit_test_setup(test_gelu_tanh, setup),
        cmocka_unit_test_setup(test_gelu_erf, setup),
        cmocka_unit_test_setup(test_tanh, setup),
        cmocka_unit_test_setup(test_swiglu, setup),
        cmocka_unit_test_setup(test_dropout, setup),
        cmocka_unit_test_setup(test_rope, setup),
        cmocka_unit_test_setup(test_attention_mha_causal, setup),
        cmocka_unit_test_setup(test_attention_gqa_causal_padded, setup),
        cmocka_unit_test_setup(test_attention_mqa_bidir_padded, setup),
        cmocka_unit_test_setup(test_cross_entropy, setup),
        cmocka_unit_test_setup(test_rdrop_kl, setup),
        cmocka_unit_test_setup(test_pools, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The ops at shapes large enough to run on the thread pool (include/ftc/threads.h): results must be bit-identical for 1 and 3
 * threads (every cross-row sum runs in a fixed order), and attention / norm reductions must agree with a
 * plain double-precision reference (the parallel indexing is right, not just repeatable). */
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
#include "ftc/matmul.h"
#include "ftc/ops.h"

static ftc_rng rng;
static float *randn(size_t n, float scale) {
    float *a = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) a[i] = ftc_rng_normal(&rng) * scale;
    return a;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

/* Runs fn(ctx, out_set) with 1 and then 3 threads; each call writes its outputs into its own set. */
typedef void (*run_fn)(void *ctx, int set);
static void run_both(run_fn fn, void *ctx) {
    int saved = ftc_threads();
    ftc_threads_set(1);
    fn(ctx, 0);
    ftc_threads_set(3);
    fn(ctx, 1);
    ftc_threads_set(saved);
}
static void assert_same(const char *what, const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof(float)) != 0) {
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
                fail_msg("%s: 1 vs 3 threads differ at %zu: %.9g vs %.9g", what, i, a[i], b[i]);
            }
    }
}
static double max_rel(const float *a, const double *ref, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - ref[i]) / fmax(1.0, fabs(ref[i]));
        if (!(e <= w)) w = e;
    }
    return w;
}

/* ---------------- attention ---------------- */
enum { AB = 2, AT = 48, AH = 4, AKV = 2, AD = 16 };
#define NQ ((size_t)AB * AT * AH * AD)
#define NK ((size_t)AB * AT * AKV * AD)
#define NA ((size_t)AB * AH * AT * AT)
typedef struct {
    float *q, *k, *v, *dy;
    uint8_t mask[AB * AT];
    bool causal;
    float *out[2], *att[2], *dq[2], *dk[2], *dv[2], *scratch;
} att_ctx;
static void att_run(void *p, int s) {
    att_ctx *c = p;
    memset(c->dq[s], 0, NQ * 4); memset(c->dk[s], 0, NK * 4); memset(c->dv[s], 0, NK * 4);
    ftc_attention_forward(c->out[s], c->att[s], c->q, c->k, c->v, c->mask, AB, AT, AH, AKV, AD, c->causal);
    ftc_attention_backward(c->dq[s], c->dk[s], c->dv[s], c->dy, c->att[s], c->q, c->k, c->v, AB, AT, AH, AKV, AD,
                       c->scratch);
}
/* double reference, written independently of the op: explicit masks, softmax, and the chain rule */
static void att_reference(const att_ctx *c, double *out, double *dq, double *dk, double *dv) {
    double scale = 1.0 / sqrt(AD), P[AT], dP[AT];
    memset(out, 0, NQ * 8); memset(dq, 0, NQ * 8); memset(dk, 0, NK * 8); memset(dv, 0, NK * 8);
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < AH; h++) {
            int g = h / (AH / AKV);
            for (int i = 0; i < AT; i++) {
                const float *qi = c->q + ((size_t)(b * AT + i) * AH + h) * AD;
                const float *doi = c->dy + ((size_t)(b * AT + i) * AH + h) * AD;
                double mx = -1e300, sum = 0, dot = 0;
                for (int j = 0; j < AT; j++) {
                    bool vis = (!c->causal || j <= i) && (c->mask[b * AT + j] || i == j);
                    const float *kj = c->k + ((size_t)(b * AT + j) * AKV + g) * AD;
                    double s = 0;
                    for (int d = 0; d < AD; d++) s += (double)qi[d] * kj[d];
                    P[j] = vis ? s * scale : -INFINITY;
                    if (P[j] > mx) mx = P[j];
                }
                for (int j = 0; j < AT; j++) { P[j] = exp(P[j] - mx); sum += P[j]; }
                for (int j = 0; j < AT; j++) {
                    P[j] /= sum;
                    const float *vj = c->v + ((size_t)(b * AT + j) * AKV + g) * AD;
                    double s = 0;
                    for (int d = 0; d < AD; d++) {
                        out[((size_t)(b * AT + i) * AH + h) * AD + d] += P[j] * vj[d];
                        dv[((size_t)(b * AT + j) * AKV + g) * AD + d] += P[j] * doi[d];
                        s += (double)doi[d] * vj[d];
                    }
                    dP[j] = s;
                    dot += P[j] * s;
                }
                for (int j = 0; j < AT; j++) {
                    double dS = P[j] * (dP[j] - dot) * scale;
                    const float *kj = c->k + ((size_t)(b * AT + j) * AKV + g) * AD;
                    for (int d = 0; d < AD; d++) {
                        dq[((size_t)(b * AT + i) * AH + h) * AD + d] += dS * kj[d];
                        dk[((size_t)(b * AT + j) * AKV + g) * AD + d] += dS * qi[d];
                    }
                }
            }
        }
}
static void run_attention(bool causal) {
    att_ctx c = {.q = randn(NQ, 1), .k = randn(NK, 1), .v = randn(NK, 1), .dy = randn(NQ, 1), .causal = causal,
                 .scratch = zeros(NA)};
    for (int t = 0; t < AT; t++) { c.mask[t] = t >= 5; c.mask[AT + t] = t < AT - 7; } /* left and right padding */
    for (int s = 0; s < 2; s++) {
        c.out[s] = zeros(NQ); c.att[s] = zeros(NA); c.dq[s] = zeros(NQ); c.dk[s] = zeros(NK); c.dv[s] = zeros(NK);
    }
    run_both(att_run, &c);
    assert_same("attention out", c.out[0], c.out[1], NQ);
    assert_same("attention att", c.att[0], c.att[1], NA);
    assert_same("attention dq", c.dq[0], c.dq[1], NQ);
    assert_same("attention dk", c.dk[0], c.dk[1], NK);
    assert_same("attention dv", c.dv[0], c.dv[1], NK);
    double *out = malloc(NQ * 8), *dq = malloc(NQ * 8), *dk = malloc(NK * 8), *dv = malloc(NK * 8);
    att_reference(&c, out, dq, dk, dv);
    double e[4] = {max_rel(c.out[1], out, NQ), max_rel(c.dq[1], dq, NQ), max_rel(c.dk[1], dk, NK),
                   max_rel(c.dv[1], dv, NK)};
    printf("  attention %s T=%d vs double: out %.1e dq %.1e dk %.1e dv %.1e\n", causal ? "causal" : "bidir", AT, e[0],
           e[1], e[2], e[3]);
    for (int i = 0; i < 4; i++) assert_true(e[i] < 1e-5); /* float sums of <= 48 O(1) terms */
    free(out); free(dq); free(dk); free(dv);
    for (int s = 0; s < 2; s++) { free(c.out[s]); free(c.att[s]); free(c.dq[s]); free(c.dk[s]); free(c.dv[s]); }
    free(c.q); free(c.k); free(c.v); free(c.dy); free(c.scratch);
}
static void test_attention_causal(void **state) { (void)state; run_attention(true); }
static void test_attention_bidir(void **state) { (void)state; run_attention(false); }

/* ---------------- norms ---------------- */
enum { NN = 64, NC = 512 };
typedef struct { float *x, *w, *b, *dy, *y[2], *mean[2], *rstd[2], *dx[2], *dw[2], *db[2]; bool rms; } norm_ctx;
static void norm_run(void *p, int s) {
    norm_ctx *c = p;
    memset(c->dx[s], 0, NN * NC * 4); memset(c->dw[s], 0, NC * 4); memset(c->db[s], 0, NC * 4);
    if (c->rms) {
        ftc_rmsnorm_forward(c->y[s], c->rstd[s], c->x, c->w, NN, NC, 1e-6f);
        ftc_rmsnorm_backward(c->dx[s], c->dw[s], c->dy, c->x, c->w, c->rstd[s], NN, NC);
    } else {
        ftc_layernorm_forward(c->y[s], c->mean[s], c->rstd[s], c->x, c->w, c->b, NN, NC, 1e-5f);
        ftc_layernorm_backward(c->dx[s], c->dw[s], c->db[s], c->dy, c->x, c->w, c->mean[s], c->rstd[s], NN, NC);
    }
}
static void run_norm(bool rms) {
    norm_ctx c = {.x = randn(NN * NC, 2), .w = randn(NC, 1), .b = randn(NC, 1), .dy = randn(NN * NC, 1), .rms = rms};
    for (int s = 0; s < 2; s++) {
        c.y[s] = zeros(NN * NC); c.mean[s] = zeros(NN); c.rstd[s] = zeros(NN);
        c.dx[s] = zeros(NN * NC); c.dw[s] = zeros(NC); c.db[s] = zeros(NC);
    }
    run_both(norm_run, &c);
    assert_same("norm y", c.y[0], c.y[1], NN * NC);
    assert_same("norm dx", c.dx[0], c.dx[1], NN * NC);
    assert_same("norm dw", c.dw[0], c.dw[1], NC);
    assert_same("norm db", c.db[0], c.db[1], NC);
    /* dw and db summed over all rows, in double */
    double *dw = calloc(NC, 8), *db = calloc(NC, 8);
    for (int n = 0; n < NN; n++) {
        const float *x = c.x + n * NC;
        double mu = 0, var = 0;
        if (!rms) {
            for (int k = 0; k < NC; k++) mu += x[k];
            mu /= NC;
        }
        for (int k = 0; k < NC; k++) var += (x[k] - mu) * (x[k] - mu);
        double rs = 1.0 / sqrt(var / NC + (rms ? 1e-6 : 1e-5));
        for (int k = 0; k < NC; k++) {
            dw[k] += c.dy[n * NC + k] * (x[k] - mu) * rs;
            db[k] += c.dy[n * NC + k];
        }
    }
    double e_w = max_rel(c.dw[1], dw, NC), e_b = rms ? 0 : max_rel(c.db[1], db, NC);
    printf("  %s N=%d C=%d vs double: dw %.1e db %.1e\n", rms ? "rmsnorm" : "layernorm", NN, NC, e_w, e_b);
    assert_true(e_w < 1e-5 && e_b < 1e-5);
    free(dw); free(db);
    for (int s = 0; s < 2; s++) {
        free(c.y[s]); free(c.mean[s]); free(c.rstd[s]); free(c.dx[s]); free(c.dw[s]); free(c.db[s]);
    }
    free(c.x); free(c.w); free(c.b); free(c.dy);
}
static void test_layernorm(void **state) { (void)state; run_norm(false); }
static void test_rmsnorm(void **state) { (void)state; run_norm(true); }

/* ---------------- the rest: determinism only (their math is checked at small shapes) ---------------- */
enum { EN = 300, EC = 256, EV = 50, LN = 128, LI = 32, LO = 600, CN = 40, CV = 2000, XN = 40000,
       RN = 64, RH = 8, RD = 64, WN = 70000 };
typedef struct {
    int32_t ids[EN], pos[EN], targets[CN];
    float *wte, *wpe, *edy, *lx, *lW, *lb, *ldy, *logits, *x, *x2, *dy, *rx, *w0, *g, inv_freq[RD / 2];
    float *eout[2], *dwte[2], *dwpe[2], *ly[2], *ldx[2], *ldW[2], *ldb[2], *dlogits[2], loss[2], *act[2][8], *rope[2][2],
        *w[2], *m[2], *v[2];
} misc_ctx;
static void misc_run(void *p, int s) {
    misc_ctx *c = p;
    ftc_embedding_forward(c->eout[s], c->ids, c->pos, NULL, c->wte, c->wpe, NULL, EN, EC);
    ftc_embedding_backward(c->dwte[s], c->dwpe[s], NULL, c->edy, c->ids, c->pos, NULL, EN, EC);
    ftc_linear_forward(c->ly[s], c->lx, c->lW, c->lb, LN, LI, LO);
    ftc_linear_backward(c->ldx[s], c->ldW[s], c->ldb[s], c->ldy, c->lx, c->lW, LN, LI, LO);
    int counted;
    c->loss[s] = ftc_cross_entropy_forward(c->logits, c->targets, CN, CV, &counted);
    ftc_cross_entropy_backward(c->dlogits[s], c->logits, c->targets, CN, CV, 1.0f);
    ftc_gelu_tanh_forward(c->act[s][0], c->x, XN);
    ftc_gelu_tanh_backward(c->act[s][1], c->dy, c->x, XN);
    ftc_gelu_erf_forward(c->act[s][2], c->x, XN);
    ftc_gelu_erf_backward(c->act[s][3], c->dy, c->x, XN);
    ftc_swiglu_forward(c->act[s][4], c->x, c->x2, XN);
    ftc_swiglu_backward(c->act[s][5], c->act[s][6], c->dy, c->x, c->x2, XN);
    ftc_add_forward(c->act[s][7], c->x, c->x2, XN);
    int32_t pos[RN];
    for (int n = 0; n < RN; n++) pos[n] = n * 7;
    memcpy(c->rope[s][0], c->rx, sizeof(float) * RN * RH * RD);
    memcpy(c->rope[s][1], c->rx, sizeof(float) * RN * RH * RD);
    ftc_rope_forward(c->rope[s][0], pos, c->inv_freq, RN, RH, RD);
    ftc_rope_backward(c->rope[s][1], pos, c->inv_freq, RN, RH, RD);
    memcpy(c->w[s], c->w0, sizeof(float) * WN);
    for (int t = 1; t <= 3; t++) ftc_adamw_update(c->w[s], c->g, c->m[s], c->v[s], WN, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
}
static void test_misc_deterministic(void **state) {
    (void)state;
    misc_ctx c = {0};
    for (int n = 0; n < EN; n++) { c.ids[n] = (int32_t)ftc_rng_below(&rng, EV); c.pos[n] = n % 17; }
    for (int n = 0; n < CN; n++) c.targets[n] = n % 5 == 0 ? -100 : (int32_t)ftc_rng_below(&rng, CV);
    c.wte = randn(EV * EC, 1); c.wpe = randn(17 * EC, 1); c.edy = randn(EN * EC, 1);
    c.lx = randn(LN * LI, 1); c.lW = randn(LO * LI, 1); c.lb = randn(LO, 1); c.ldy = randn(LN * LO, 1);
    c.logits = randn((size_t)CN * CV, 3); c.x = randn(XN, 2); c.x2 = randn(XN, 1); c.dy = randn(XN, 1);
    c.rx = randn(RN * RH * RD, 1); c.w0 = randn(WN, 1); c.g = randn(WN, 0.1f);
    ftc_rope_inv_freq(c.inv_freq, RD, 10000.0f);
    for (int s = 0; s < 2; s++) {
        c.eout[s] = zeros(EN * EC); c.dwte[s] = zeros(EV * EC); c.dwpe[s] = zeros(17 * EC);
        c.ly[s] = zeros(LN * LO); c.ldx[s] = zeros(LN * LI); c.ldW[s] = zeros(LO * LI); c.ldb[s] = zeros(LO);
        c.dlogits[s] = zeros((size_t)CN * CV);
        for (int a = 0; a < 8; a++) c.act[s][a] = zeros(XN);
        c.rope[s][0] = zeros(RN * RH * RD); c.rope[s][1] = zeros(RN * RH * RD);
        c.w[s] = zeros(WN); c.m[s] = zeros(WN); c.v[s] = zeros(WN);
    }
    run_both(misc_run, &c);
    assert_same("embedding out", c.eout[0], c.eout[1], EN * EC);
    assert_same("embedding dwte", c.dwte[0], c.dwte[1], EV * EC);
    assert_same("embedding dwpe", c.dwpe[0], c.dwpe[1], 17 * EC);
    assert_same("linear db", c.ldb[0], c.ldb[1], LO);
    assert_same("cross_entropy loss", &c.loss[0], &c.loss[1], 1);
    assert_same("cross_entropy dlogits", c.dlogits[0], c.dlogits[1], (size_t)CN * CV);
    for (int a = 0; a < 8; a++) assert_same("activation", c.act[0][a], c.act[1][a], XN);
    assert_same("rope forward", c.rope[0][0], c.rope[1][0], RN * RH * RD);
    assert_same("rope backward", c.rope[0][1], c.rope[1][1], RN * RH * RD);
    assert_same("adamw w", c.w[0], c.w[1], WN);
    /* embedding backward against a serial scatter in double */
    double *ref = calloc(EV * EC, 8);
    for (int n = 0; n < EN; n++)
        for (int k = 0; k < EC; k++) ref[c.ids[n] * EC + k] += c.edy[n * EC + k];
    double e = max_rel(c.dwte[1], ref, EV * EC);
    printf("  embedding dwte N=%d vs double: %.1e; cross_entropy loss %.6f\n", EN, e, c.loss[1]);
    assert_true(e < 1e-5);
    free(ref);
    for (int s = 0; s < 2; s++) {
        free(c.eout[s]); free(c.dwte[s]); free(c.dwpe[s]); free(c.ly[s]); free(c.ldx[s]); free(c.ldW[s]); free(c.ldb[s]);
        free(c.dlogits[s]);
        for (int a = 0; a < 8; a++) free(c.act[s][a]);
        free(c.rope[s][0]); free(c.rope[s][1]); free(c.w[s]); free(c.m[s]); free(c.v[s]);
    }
    free(c.wte); free(c.wpe); free(c.edy); free(c.lx); free(c.lW); free(c.lb); free(c.ldy); free(c.logits);
    free(c.x); free(c.x2); free(c.dy); free(c.rx); free(c.w0); free(c.g);
}

/* RoPE in two steps (ftc_rope_cos_sin once, ftc_rope_forward_cs for q and k of every layer: generation) gives the
 * bits of ftc_rope_forward: rows 1, 8 and 64 (one thread and the pool's split), heads 9 and 3, D 64 and 6, positions
 * from 0 to past 100k, plain and Llama-3-scaled frequencies, 1 and 3 threads. */
static void test_rope_cos_sin_same_bits(void **state) {
    (void)state;
    enum { NM = 64, HM = 9, DM = 64 };
    const int Ns[] = {1, 8, NM}, Hs[] = {HM, 3}, Ds[] = {DM, 6};
    const int saved = ftc_threads();
    float inv_freq[DM / 2], cs[NM * DM];
    int32_t pos[NM];
    float *x = randn(NM * HM * DM, 1), *a = zeros(NM * HM * DM), *b = zeros(NM * HM * DM);
    for (int th = 1; th <= 3; th += 2) {
        ftc_threads_set(th);
        for (int f = 0; f < 2; f++)
            for (int di = 0; di < 2; di++) {
                const int D = Ds[di];
                if (f) ftc_rope_inv_freq_llama3(inv_freq, D, 500000.0f, 32.0f, 1.0f, 4.0f, 8192);
                else ftc_rope_inv_freq(inv_freq, D, 10000.0f);
                for (int ni = 0; ni < 3; ni++)
                    for (int hi = 0; hi < 2; hi++) {
                        const int N = Ns[ni], H = Hs[hi];
                        for (int n = 0; n < N; n++) pos[n] = n == 0 ? (N == 1 ? 5 : 0) : n % 3 == 0 ? 100003 + 977 * n : 17 * n + 1;
                        const size_t len = (size_t)N * H * D;
                        memcpy(a, x, len * sizeof(float)), memcpy(b, x, len * sizeof(float));
                        ftc_rope_forward(a, pos, inv_freq, N, H, D);
                        ftc_rope_cos_sin(cs, pos, inv_freq, N, D);
                        ftc_rope_forward_cs(b, cs, N, H, D);
                        if (memcmp(a, b, len * sizeof(float)))
                            fail_msg("rope cos/sin: N=%d H=%d D=%d freq %d threads %d differs from ftc_rope_forward",
                                     N, H, D, f, th);
                        if (!memcmp(a, x, len * sizeof(float))) fail_msg("rope cos/sin: nothing rotated");
                    }
            }
    }
    ftc_threads_set(saved);
    free(x), free(a), free(b);
}

/* SwiGLU on a block of columns (ftc_swiglu_forward_cols, a decoding step's up/gate epilogue) gives the bits of
 * ftc_swiglu_forward on the whole rows, on every backend (the exp has three paths): column blocks of 48 (8 rows in one
 * exp call), 1, 600 (past the 512 of one call: in pieces) and 1536 (the whole row), rows 1, 8 and 64; outside the
 * block nothing is written; gates from -30 to 30 (exp's range) and 0. */
static void test_swiglu_cols_same_bits(void **state) {
    (void)state;
    enum { NM = 64, F = 1536 };
    const char *backends[] = {"generic", "avx2", "auto"};
    const int Ns[] = {1, 8, NM}, blocks[][2] = {{48, 96}, {1535, 1536}, {0, 1}, {900, 1500}, {0, F}};
    float *gate = randn((size_t)NM * F, 4), *up = randn((size_t)NM * F, 1), *got = zeros((size_t)NM * F);
    gate[0] = 0.0f, gate[1] = -30.0f, gate[2] = 30.0f, gate[F + 47] = -0.0f;
    for (int be = 0; be < 3; be++) {
        if (!ftc_matmul_set_backend(backends[be])) continue;
        float *ref_be = zeros((size_t)NM * F);
        ftc_swiglu_forward(ref_be, gate, up, NM * F);
        for (int ni = 0; ni < 3; ni++)
            for (int bi = 0; bi < 5; bi++) {
                const int N = Ns[ni], c0 = blocks[bi][0], c1 = blocks[bi][1];
                for (size_t i = 0; i < (size_t)NM * F; i++) got[i] = 12345.0f;
                ftc_swiglu_forward_cols(got, gate, up, N, F, c0, c1);
                for (int r = 0; r < NM; r++)
                    for (int c = 0; c < F; c++) {
                        const size_t i = (size_t)r * F + c;
                        const bool in = r < N && c >= c0 && c < c1;
                        if (in ? memcmp(&got[i], &ref_be[i], sizeof(float)) : got[i] != 12345.0f)
                            fail_msg("swiglu cols %s N=%d [%d, %d): row %d column %d %s", backends[be], N, c0, c1, r, c,
                                     in ? "differs from ftc_swiglu_forward" : "written outside the block");
                    }
            }
        free(ref_be);
    }
    ftc_matmul_set_backend("auto");
    free(gate), free(up), free(got);
}

static int setup(void **state) {
    (void)state;
    ftc_rng_seed(&rng, 77);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_attention_causal, setup),
        cmocka_unit_test_setup(test_attention_bidir, setup),
        cmocka_unit_test_setup(test_layernorm, setup),
        cmocka_unit_test_setup(test_rmsnorm, setup),
        cmocka_unit_test_setup(test_misc_deterministic, setup),
        cmocka_unit_test_setup(test_rope_cos_sin_same_bits, setup),
        cmocka_unit_test_setup(test_swiglu_cols_same_bits, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

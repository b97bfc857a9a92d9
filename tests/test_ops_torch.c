/* ftc's ops against PyTorch/transformers: forward outputs and gradients from tools/gen_ops_fixtures.py
 * (tests/fixtures/ops/NAME.bin, format described in that script).
 * Tolerance: |ours - torch| <= 1e-5 * max(1, |torch|) per element. Both sides run in float32
 * (eps 1.2e-7) but sum in different orders (BLAS blocking, double accumulators here, vectorised float sums
 * there) over at most a few dozen to a few hundred terms of size ~1-10, which moves results by ~1e-6; a wrong
 * formula or convention (rotate_half pairing, biased vs unbiased variance, GQA head mapping, eps placement)
 * moves them by 1e-2 or more. */
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

#define TOL 1e-5

enum { MAX_TENSORS = 32 };
typedef struct {
    char name[64];
    int dtype, ndim;
    uint32_t dims[8];
    size_t numel;
    void *data; /* own aligned copy */
} fx_tensor;
typedef struct {
    int n;
    fx_tensor t[MAX_TENSORS];
} fixture;

static void fx_free(fixture *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].data);
    f->n = 0;
}

/* Parses a fixture file; fails the test with the file name on any malformed byte. */
static void fx_load(fixture *f, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/ops/%s.bin", src ? src : ".", name);
    char *buf;
    size_t len;
    ftc_err e;
    if (ftc_read_file(path, &buf, &len, &e) != FTC_OK) fail_msg("%s", e.msg);
    const uint8_t *p = (const uint8_t *)buf, *end = p + len;
#define NEED(k) do { if ((size_t)(end - p) < (size_t)(k)) fail_msg("%s: truncated", path); } while (0)
    NEED(12);
    if (memcmp(p, "FTCOPS1\n", 8) != 0) fail_msg("%s: bad magic", path);
    uint32_t count;
    memcpy(&count, p + 8, 4);
    p += 12;
    if (count > MAX_TENSORS) fail_msg("%s: %u tensors", path, count);
    f->n = 0;
    for (uint32_t i = 0; i < count; i++) {
        fx_tensor *t = &f->t[f->n++];
        NEED(1);
        int nl = *p++;
        NEED(nl + 2);
        if (nl >= (int)sizeof t->name) fail_msg("%s: long name", path);
        memcpy(t->name, p, nl);
        t->name[nl] = 0;
        p += nl;
        t->dtype = *p++;
        t->ndim = *p++;
        if (t->dtype > 2 || t->ndim > 8) fail_msg("%s: tensor %s: bad dtype/ndim", path, t->name);
        NEED(4 * t->ndim);
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            memcpy(&t->dims[d], p, 4);
            p += 4;
            t->numel *= t->dims[d];
        }
        size_t bytes = t->numel * (t->dtype == 2 ? 1 : 4);
        NEED(bytes);
        t->data = malloc(bytes ? bytes : 1);
        memcpy(t->data, p, bytes);
        p += bytes;
    }
    if (p != end) fail_msg("%s: trailing bytes", path);
#undef NEED
    free(buf);
}

static fx_tensor *fx_get(fixture *f, const char *name, int dtype) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) {
            if (f->t[i].dtype != dtype) fail_msg("tensor %s: dtype %d, expected %d", name, f->t[i].dtype, dtype);
            return &f->t[i];
        }
    fail_msg("tensor %s missing from fixture", name);
    return NULL;
}
static float *F32(fixture *f, const char *name) { return fx_get(f, name, 0)->data; }
static int32_t *I32(fixture *f, const char *name) { return fx_get(f, name, 1)->data; }
static size_t NUMEL(fixture *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return f->t[i].numel;
    fail_msg("tensor %s missing from fixture", name);
    return 0;
}
static uint32_t DIM(fixture *f, const char *name, int d) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return f->t[i].dims[d];
    fail_msg("tensor %s missing", name);
    return 0;
}

/* Compares ours with the fixture's tensor `name`, prints the max error, fails above TOL. */
static double compare(const char *op, fixture *f, const char *name, const float *ours, size_t n) {
    assert_int_equal(NUMEL(f, name), n);
    const float *ref = F32(f, name);
    double worst = 0, worst_abs = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        double err = d / fmax(1.0, fabs(ref[i]));
        if (!(err <= worst)) worst = err; /* NaN propagates into worst */
        if (d > worst_abs) worst_abs = d;
        if (!(err <= TOL)) print_error("%s %s[%zu]: ours %.9g torch %.9g\n", op, name, i, ours[i], ref[i]);
    }
    printf("  vs torch %-22s %-8s n=%-5zu max err %.2e (abs %.2e)\n", op, name, n, worst, worst_abs);
    assert_true(worst <= TOL);
    return worst;
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static void test_embedding(void **state) {
    (void)state;
    fixture f;
    fx_load(&f, "embedding");
    int N = (int)NUMEL(&f, "ids"), C = (int)DIM(&f, "wte", 1);
    float *out = zeros((size_t)N * C), *dwte = zeros(NUMEL(&f, "wte")), *dwpe = zeros(NUMEL(&f, "wpe")),
          *dwtt = zeros(NUMEL(&f, "wtt"));
    ftc_embedding_forward(out, I32(&f, "ids"), I32(&f, "pos"), I32(&f, "types"), F32(&f, "wte"), F32(&f, "wpe"),
                      F32(&f, "wtt"), N, C);
    ftc_embedding_backward(dwte, dwpe, dwtt, F32(&f, "dy"), I32(&f, "ids"), I32(&f, "pos"), I32(&f, "types"), N, C);
    compare("embedding", &f, "out", out, (size_t)N * C);
    compare("embedding", &f, "dwte", dwte, NUMEL(&f, "wte"));
    compare("embedding", &f, "dwpe", dwpe, NUMEL(&f, "wpe"));
    compare("embedding", &f, "dwtt", dwtt, NUMEL(&f, "wtt"));
    free(out); free(dwte); free(dwpe); free(dwtt);
    fx_free(&f);
}

static void run_norm(const char *name, bool rms) {
    fixture f;
    fx_load(&f, name);
    int N = (int)DIM(&f, "x", 0), C = (int)DIM(&f, "x", 1);
    float eps = F32(&f, "eps")[0];
    float *y = zeros((size_t)N * C), *mean = zeros(N), *rstd = zeros(N), *dx = zeros((size_t)N * C),
          *dw = zeros(C), *db = zeros(C);
    if (rms) {
        ftc_rmsnorm_forward(y, rstd, F32(&f, "x"), F32(&f, "w"), N, C, eps);
        ftc_rmsnorm_backward(dx, dw, F32(&f, "dy"), F32(&f, "x"), F32(&f, "w"), rstd, N, C);
    } else {
        ftc_layernorm_forward(y, mean, rstd, F32(&f, "x"), F32(&f, "w"), F32(&f, "b"), N, C, eps);
        ftc_layernorm_backward(dx, dw, db, F32(&f, "dy"), F32(&f, "x"), F32(&f, "w"), mean, rstd, N, C);
    }
    compare(name, &f, "y", y, (size_t)N * C);
    compare(name, &f, "dx", dx, (size_t)N * C);
    compare(name, &f, "dw", dw, C);
    if (!rms) compare(name, &f, "db", db, C);
    free(y); free(mean); free(rstd); free(dx); free(dw); free(db);
    fx_free(&f);
}
static void test_layernorm(void **state) { (void)state; run_norm("layernorm", false); }
static void test_rmsnorm(void **state) { (void)state; run_norm("rmsnorm", true); }

static void test_linear(void **state) {
    (void)state;
    fixture f;
    fx_load(&f, "linear");
    int N = (int)DIM(&f, "x", 0), I = (int)DIM(&f, "x", 1), O = (int)DIM(&f, "W", 0);
    float *y = zeros((size_t)N * O), *dx = zeros((size_t)N * I), *dW = zeros((size_t)O * I), *db = zeros(O);
    ftc_linear_forward(y, F32(&f, "x"), F32(&f, "W"), F32(&f, "b"), N, I, O);
    ftc_linear_backward(dx, dW, db, F32(&f, "dy"), F32(&f, "x"), F32(&f, "W"), N, I, O);
    compare("linear", &f, "y", y, (size_t)N * O);
    compare("linear", &f, "dx", dx, (size_t)N * I);
    compare("linear", &f, "dW", dW, (size_t)O * I);
    compare("linear", &f, "db", db, O);
    free(y); free(dx); free(dW); free(db);
    fx_free(&f);
}

static void run_act(const char *name) {
    fixture f;
    fx_load(&f, name);
    int n = (int)NUMEL(&f, "x");
    float *y = zeros(n), *dx = zeros(n);
    const float *x = F32(&f, "x"), *dy = F32(&f, "dy");
    if (strcmp(name, "gelu_tanh") == 0) { ftc_gelu_tanh_forward(y, x, n); ftc_gelu_tanh_backward(dx, dy, x, n); }
    else if (strcmp(name, "gelu_erf") == 0) { ftc_gelu_erf_forward(y, x, n); ftc_gelu_erf_backward(dx, dy, x, n); }
    else { ftc_tanh_forward(y, x, n); ftc_tanh_backward(dx, dy, y, n); }
    compare(name, &f, "y", y, n);
    compare(name, &f, "dx", dx, n);
    free(y); free(dx);
    fx_free(&f);
}
static void test_gelu_tanh(void **state) { (void)state; run_act("gelu_tanh"); }
static void test_gelu_erf(void **state) { (void)state; run_act("gelu_erf"); }
static void test_tanh(void **state) { (void)state; run_act("tanh"); }

static void test_swiglu(void **state) {
    (void)state;
    fixture f;
    fx_load(&f, "swiglu");
    int n = (int)NUMEL(&f, "gate");
    float *y = zeros(n), *dg = zeros(n), *du = zeros(n);
    ftc_swiglu_forward(y, F32(&f, "gate"), F32(&f, "up"), n);
    ftc_swiglu_backward(dg, du, F32(&f, "dy"), F32(&f, "gate"), F32(&f, "up"), n);
    compare("swiglu", &f, "y", y, n);
    compare("swiglu", &f, "dgate", dg, n);
    compare("swiglu", &f, "dup", du, n);
    free(y); free(dg); free(du);
    fx_free(&f);
}

static void run_rope(const char *name, bool llama3) {
    fixture f;
    fx_load(&f, name);
    int N = (int)DIM(&f, "x", 0), H = (int)DIM(&f, "x", 1), D = (int)DIM(&f, "x", 2);
    float theta = F32(&f, "theta")[0], *inv_freq = zeros(D / 2);
    if (llama3) {
        const float *s = F32(&f, "llama3"); /* factor, low, high, original_max_position_embeddings */
        ftc_rope_inv_freq_llama3(inv_freq, D, theta, s[0], s[1], s[2], (int)s[3]);
    } else {
        ftc_rope_inv_freq(inv_freq, D, theta);
    }
    compare(name, &f, "inv_freq", inv_freq, D / 2);
    size_t n = (size_t)N * H * D;
    float *y = zeros(n), *dx = zeros(n);
    memcpy(y, F32(&f, "x"), n * sizeof(float));
    ftc_rope_forward(y, I32(&f, "pos"), inv_freq, N, H, D);
    memcpy(dx, F32(&f, "dy"), n * sizeof(float));
    ftc_rope_backward(dx, I32(&f, "pos"), inv_freq, N, H, D);
    compare(name, &f, "y", y, n);
    compare(name, &f, "dx", dx, n);
    free(inv_freq); free(y); free(dx);
    fx_free(&f);
}
static void test_rope(void **state) { (void)state; run_rope("rope", false); }
static void test_rope_llama3(void **state) { (void)state; run_rope("rope_llama3", true); }

static void run_attention(const char *name) {
    fixture f;
    fx_load(&f, name);
    const int32_t *dims = I32(&f, "dims");
    int B = dims[0], T = dims[1], H = dims[2], Hkv = dims[3], D = dims[4];
    bool causal = I32(&f, "causal")[0] != 0;
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * Hkv * D, na = (size_t)B * H * T * T;
    float *out = zeros(nq), *att = zeros(na), *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk), *scratch = zeros(na);
    const uint8_t *mask = fx_get(&f, "key_mask", 2)->data;
    ftc_attention_forward(out, att, F32(&f, "q"), F32(&f, "k"), F32(&f, "v"), mask, B, T, H, Hkv, D, causal);
    ftc_attention_backward(dq, dk, dv, F32(&f, "dy"), att, F32(&f, "q"), F32(&f, "k"), F32(&f, "v"), B, T, H, Hkv, D,
                       scratch);
    compare(name, &f, "out", out, nq);
    compare(name, &f, "att", att, na);
    compare(name, &f, "dq", dq, nq);
    compare(name, &f, "dk", dk, nk);
    compare(name, &f, "dv", dv, nk);
    /* the tiled attention on the same fixture: no probabilities to compare, the rest within the same tolerances */
    float *lse = zeros((size_t)B * H * T), *fscratch = zeros(ftc_attention_flash_scratch_floats(B, T, H, Hkv, D));
    memset(dq, 0, nq * sizeof(float)), memset(dk, 0, nk * sizeof(float)), memset(dv, 0, nk * sizeof(float));
    ftc_attention_flash_forward(out, lse, F32(&f, "q"), F32(&f, "k"), F32(&f, "v"), mask, B, T, H, Hkv, D, causal, NULL);
    ftc_attention_flash_backward(dq, dk, dv, F32(&f, "dy"), out, lse, F32(&f, "q"), F32(&f, "k"), F32(&f, "v"), mask, B,
                                 T, H, Hkv, D, causal, fscratch, NULL);
    char fname[96];
    snprintf(fname, sizeof fname, "%s (flash)", name);
    compare(fname, &f, "out", out, nq);
    compare(fname, &f, "dq", dq, nq);
    compare(fname, &f, "dk", dk, nk);
    compare(fname, &f, "dv", dv, nk);
    free(lse); free(fscratch);
    free(out); free(att); free(dq); free(dk); free(dv); free(scratch);
    fx_free(&f);
}
static void test_attention_gqa_causal(void **state) { (void)state; run_attention("attention_gqa_causal"); }
static void test_attention_mha_bidir(void **state) { (void)state; run_attention("attention_mha_bidir"); }

static void test_cross_entropy(void **state) {
    (void)state;
    fixture f;
    fx_load(&f, "cross_entropy");
    int N = (int)DIM(&f, "logits", 0), V = (int)DIM(&f, "logits", 1), counted = -1;
    float loss = ftc_cross_entropy_forward(F32(&f, "logits"), I32(&f, "targets"), N, V, &counted);
    float *dl = zeros((size_t)N * V);
    ftc_cross_entropy_backward(dl, F32(&f, "logits"), I32(&f, "targets"), N, V, F32(&f, "dloss")[0]);
    assert_int_equal(counted, N - 2);
    compare("cross_entropy", &f, "loss", &loss, 1);
    compare("cross_entropy", &f, "dlogits", dl, (size_t)N * V);
    free(dl);
    fx_free(&f);
}

/* R-Drop's loss as ftc composes it (the model's classify loss under --rdrop): the cross-entropy over both passes'
 * 2P rows + alpha/4 x ftc_rdrop_kl_forward, its gradient the cross-entropy's + ftc_rdrop_kl_backward's, against
 * PyTorch's 0.5 (CE(l1) + CE(l2)) + alpha/4 x mean(KL(p1||p2) + KL(p2||p1)) written with F.kl_div. */
static void test_rdrop(void **state) {
    (void)state;
    fixture f;
    fx_load(&f, "rdrop");
    int N = (int)DIM(&f, "logits", 0), K = (int)DIM(&f, "logits", 1), P = N / 2, pairs = -1;
    const float *logits = F32(&f, "logits");
    const int32_t *targets = I32(&f, "targets");
    float alpha = F32(&f, "alpha")[0], dloss = F32(&f, "dloss")[0];
    float sym = (float)ftc_rdrop_kl_forward(logits, targets, P, K, &pairs);
    float loss = ftc_cross_entropy_forward(logits, targets, N, K, NULL) + alpha / 4 * sym;
    float *dl = zeros((size_t)N * K);
    ftc_cross_entropy_backward(dl, logits, targets, N, K, dloss);
    ftc_rdrop_kl_backward(dl, logits, targets, P, K, dloss * alpha / 4);
    assert_int_equal(pairs, P);
    compare("rdrop", &f, "sym_kl", &sym, 1);
    compare("rdrop", &f, "loss", &loss, 1);
    compare("rdrop", &f, "dlogits", dl, (size_t)N * K);
    free(dl);
    fx_free(&f);
}

static void run_pool(const char *name) {
    fixture f;
    fx_load(&f, name);
    int B = (int)DIM(&f, "x", 0), T = (int)DIM(&f, "x", 1), C = (int)DIM(&f, "x", 2);
    const uint8_t *mask = fx_get(&f, "mask", 2)->data;
    float *out = zeros((size_t)B * C), *dx = zeros((size_t)B * T * C);
    const float *x = F32(&f, "x"), *dy = F32(&f, "dy");
    if (strcmp(name, "pool_cls") == 0) { ftc_pool_cls_forward(out, x, B, T, C); ftc_pool_cls_backward(dx, dy, B, T, C); }
    else if (strcmp(name, "pool_mean") == 0) {
        ftc_pool_mean_forward(out, x, mask, B, T, C);
        ftc_pool_mean_backward(dx, dy, mask, B, T, C);
    } else {
        ftc_pool_last_forward(out, x, mask, B, T, C);
        ftc_pool_last_backward(dx, dy, mask, B, T, C);
    }
    compare(name, &f, "out", out, (size_t)B * C);
    compare(name, &f, "dx", dx, (size_t)B * T * C);
    free(out); free(dx);
    fx_free(&f);
}
static void test_pools(void **state) {
    (void)state;
    run_pool("pool_cls");
    run_pool("pool_mean");
    run_pool("pool_last");
}

/* Several torch.optim.AdamW steps with the fixture's gradients; weights compared after every step. */
static void run_adamw(const char *name) {
    fixture f;
    fx_load(&f, name);
    const float *hp = F32(&f, "hparams");
    int n = (int)NUMEL(&f, "w0"), steps = (int)DIM(&f, "grads", 0);
    float *w = zeros(n), *m = zeros(n), *v = zeros(n);
    memcpy(w, F32(&f, "w0"), sizeof(float) * n);
    const float *grads = F32(&f, "grads"), *ws = F32(&f, "w");
    double worst = 0;
    for (int s = 0; s < steps; s++) {
        ftc_adamw_update(w, grads + (size_t)s * n, m, v, n, hp[0], hp[1], hp[2], hp[3], hp[4], s + 1);
        for (int i = 0; i < n; i++) {
            double err = fabs((double)w[i] - ws[(size_t)s * n + i]) / fmax(1.0, fabs(ws[(size_t)s * n + i]));
            if (err > worst) worst = err;
        }
    }
    printf("  vs torch %-22s %-8s n=%-5d max err %.2e over %d steps\n", name, "w", n, worst, steps);
    assert_true(worst <= TOL);
    compare(name, &f, "m", m, n);
    compare(name, &f, "v", v, n);
    free(w); free(m); free(v);
    fx_free(&f);
}
static void test_adamw(void **state) {
    (void)state;
    run_adamw("adamw_default");
    run_adamw("adamw_odd");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_gelu_tanh),
        cmocka_unit_test(test_gelu_erf),
        cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_llama3),
        cmocka_unit_test(test_attention_gqa_causal),
        cmocka_unit_test(test_attention_mha_bidir),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_rdrop),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

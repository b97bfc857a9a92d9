/* The chunked LM head for training (ftc_model_set_loss_only on a model with trainable parameters): the logits
 * and their gradient exist a few rows at a time, never [B x T, V]. Against the full-logits path on the same
 * model, batch and dropout randomness:
 *  - loss and every gradient bit-identical (both paths run the head in the same 256-row pieces, and each
 *    position's loss is kept and summed in the unchunked order): a frozen head (LoRA; f32 and bf16 products, a
 *    q8_0 base), for the weight the forward was told (the head's gradient taken during the forward) and for
 *    another one (the logits computed again in the backward); a trainable head (full fine-tuning, tied and
 *    untied: its weight gradient summed over the pieces in the same order);
 *  - masked labels (answer-only loss: the first positions of every row -100, a right-padded row);
 *  - finite differences of the chunked loss against its gradient (LoRA B entries, the tied head);
 *  - evaluation metrics from the logits a piece at a time (ftc_lm_metrics_add_rows) equal the full ones;
 *  - the plan: smaller than the full-logits one, and ftc_model_activation_bytes_for equal to a reserve's;
 *  - a vocabulary large for the block scratch (6000 words on a 32-wide model): with --grad-checkpoint the pieces
 *    shrink to fit in it, and loss and gradients stay those of the full-logits path without checkpointing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/eval.h"
#include "ftc/hf_config.h"
#include "ftc/model.h"
#include "ftc/quant.h"

/* At most 50 positions a row, as many rows as make about 600 positions (equal pieces of at most 256 rows
 * at the reserved 38 x T, the batch's last one partial): the fixtures have 16 positions, stories260K 512 */
enum { BMAX = 38, T = 50, POSITIONS = 600 };

static bool model_dir(char *out, size_t n, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR"), *shared = getenv("FTC_SHARED_DATA");
    if (!strcmp(name, "stories260K")) snprintf(out, n, "%s/models/stories260K-hf", shared ? shared : "../shared/data");
    else snprintf(out, n, "%s/tests/fixtures/models/%s", src ? src : ".", name);
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    return access(cfg, R_OK) == 0;
}

typedef struct {
    int32_t ids[BMAX * T], labels[BMAX * T];
    uint8_t mask[BMAX * T];
    ftc_batch b;
} batch_t;

static int seq_len(const ftc_model *m) {
    int mp = ftc_model_config_of(m)->max_positions;
    return T < mp ? T : mp;
}

static void make_batch(batch_t *bt, const ftc_model *m) {
    int V = ftc_model_config_of(m)->vocab_size, Tn = seq_len(m), B = (POSITIONS + Tn - 1) / Tn;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < Tn; t++) {
            int i = r * Tn + t;
            bt->ids[i] = (int32_t)((3 + 11 * r + 17 * t + t * t) % V);
            bt->mask[i] = r % 3 != 1 || t < Tn - Tn / 4; /* rows 1, 4, ... right-padded */
            /* answer-only: the first positions are the prompt */
            bt->labels[i] = bt->mask[i] && t >= (3 + r) % (Tn / 2) ? bt->ids[i] : -100;
        }
    bt->b = (ftc_batch){B, Tn, bt->ids, NULL, bt->mask, bt->labels};
}

typedef struct {
    float loss;
    int n;
    float **g; /* per parameter, NULL when frozen */
} result;

static void result_free(result *r) {
    for (int i = 0; i < r->n; i++) free(r->g[i]);
    free(r->g);
}

/* one forward + backward_weighted(weight) with the forward told hint (ftc_model_set_loss_weight) */
static result step(ftc_model *m, const batch_t *bt, bool chunked, float hint, float weight) {
    ftc_err e;
    assert_int_equal(ftc_model_set_loss_only(m, chunked, &e), FTC_OK);
    ftc_model_zero_grad(m);
    ftc_rng_seed(ftc_model_rng(m), 42); /* the same dropout masks on both paths */
    ftc_model_set_loss_weight(m, hint);
    result r = {0, ftc_model_n_params(m), NULL};
    if (ftc_model_forward(m, &bt->b, true, &r.loss, &e)) fail_msg("%s", e.msg);
    if (chunked) assert_null(ftc_model_logits(m));
    if (ftc_model_backward_weighted(m, weight, &e)) fail_msg("%s", e.msg);
    r.g = calloc((size_t)r.n, sizeof *r.g);
    for (int i = 0; i < r.n; i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!p->grad) continue;
        r.g[i] = malloc((size_t)p->numel * sizeof(float));
        memcpy(r.g[i], p->grad, (size_t)p->numel * sizeof(float));
    }
    return r;
}

static bool is_head(ftc_model *m, int i) {
    const char *n = ftc_model_param(m, i)->name;
    return strstr(n, "lm_head") || strstr(n, "embed_tokens") || strstr(n, "wte");
}

/* the same loss and gradients, bit for bit */
static void compare(ftc_model *m, const result *a, const result *b, const char *what) {
    assert_memory_equal(&a->loss, &b->loss, sizeof(float));
    int n_cmp = 0;
    for (int i = 0; i < a->n; i++) {
        if (!a->g[i]) continue;
        ftc_param *p = ftc_model_param(m, i);
        n_cmp++;
        if (memcmp(a->g[i], b->g[i], (size_t)p->numel * sizeof(float)))
            fail_msg("%s: gradient of %s not bit-identical", what, p->name);
    }
    assert_true(n_cmp > 0);
}

static ftc_model *load(const char *dir, int qtype) {
    ftc_model *m;
    ftc_err e;
    ftc_status s = qtype >= 0 ? ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, qtype, &m, &e)
                              : ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e);
    if (s) fail_msg("%s: %s", dir, e.msg);
    return m;
}

/* LoRA (frozen head): everything bit-identical, at both weights, f32 and bf16 products, f32 and q8_0 base */
static void lora_case(const char *name, int qtype, ftc_precision prec) {
    char dir[4096];
    if (!model_dir(dir, sizeof dir, name)) { printf("  SKIP %s: not found\n", name); return; }
    ftc_model *m = load(dir, qtype);
    ftc_err e;
    if (ftc_model_add_lora(m, "all-linear", 4, 8.0f, 0.0f, 7, &e)) fail_msg("%s", e.msg);
    /* LoRA B starts at zero: give it values so that A's gradients are not zero too */
    for (int i = 0; i < ftc_model_n_params(m); i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (p->is_lora && strstr(p->name, "lora_B"))
            for (int64_t k = 0; k < p->numel; k++) p->data[k] = 0.01f * (float)((k * 7919 + i) % 13 - 6);
    }
    if (ftc_model_set_precision(m, prec, &e)) fail_msg("%s", e.msg);
    if (ftc_model_reserve(m, BMAX, seq_len(m), &e)) fail_msg("%s", e.msg);
    batch_t bt;
    make_batch(&bt, m);
    const float w = 0.37f;
    result full = step(m, &bt, false, 1.0f, w);
    int64_t full_bytes = ftc_model_activation_bytes(m);
    result fused = step(m, &bt, true, w, w);    /* the head's gradient taken in the forward */
    int64_t chunk_bytes = ftc_model_activation_bytes(m);
    result again = step(m, &bt, true, 1.0f, w); /* another weight: the logits again in the backward */
    char what[200];
    snprintf(what, sizeof what, "%s lora %s%s", name, prec == FTC_PREC_BF16 ? "bf16" : "f32", qtype >= 0 ? " q8_0" : "");
    compare(m, &full, &fused, what);
    compare(m, &full, &again, what);
    /* with --grad-checkpoint the logits piece overlays the shared block activations (the plan's head_overlay) */
    if (ftc_model_set_grad_checkpoint(m, true, &e)) fail_msg("%s", e.msg);
    result ck_fused = step(m, &bt, true, w, w), ck_again = step(m, &bt, true, 1.0f, w);
    int64_t ck_bytes = ftc_model_activation_bytes(m);
    strncat(what, " ckpt", sizeof what - strlen(what) - 1);
    compare(m, &full, &ck_fused, what);
    compare(m, &full, &ck_again, what);
    assert_int_equal(ftc_model_activation_bytes_for(m, BMAX, seq_len(m)), ck_bytes);
    if (ftc_model_set_grad_checkpoint(m, false, &e)) fail_msg("%s", e.msg);
    result_free(&ck_fused), result_free(&ck_again);
    assert_true(chunk_bytes < full_bytes);
    assert_int_equal(ftc_model_activation_bytes_for(m, BMAX, seq_len(m)), chunk_bytes);
    printf("  %-28s loss %.7f bit-identical, gradients bit-identical; activations %.2f -> %.2f MiB (%.2f)\n", what,
           full.loss, full_bytes / 1048576.0, chunk_bytes / 1048576.0, ck_bytes / 1048576.0);
    result_free(&full), result_free(&fused), result_free(&again);
    ftc_model_free(m);
}

/* the same loss; every gradient within tol of the largest entry of its parameter's (another matmul row count
 * may sum in another order); returns the largest such difference */
static double compare_close(ftc_model *m, const result *a, const result *b, double tol, const char *what) {
    assert_memory_equal(&a->loss, &b->loss, sizeof(float));
    double worst = 0;
    for (int i = 0; i < a->n; i++) {
        if (!a->g[i]) continue;
        ftc_param *p = ftc_model_param(m, i);
        double big = 0, diff = 0;
        for (int64_t k = 0; k < p->numel; k++) {
            big = fmax(big, fabs(a->g[i][k]));
            diff = fmax(diff, fabs((double)a->g[i][k] - b->g[i][k]));
        }
        if (big > 0 && diff / big > tol) fail_msg("%s: gradient of %s differs by %g of its largest", what, p->name, diff / big);
        if (big > 0) worst = fmax(worst, diff / big);
    }
    return worst;
}

/* LoRA on a random llama whose 6000-word head outgrows the checkpointed block scratch: smaller pieces (crossing
 * the 256-row pieces' bounds), each row's gradient scale as in those, so everything stays bit-identical */
static void test_small_pieces(void **state) {
    (void)state;
    const char *json = "{\"model_type\":\"llama\",\"vocab_size\":6000,\"hidden_size\":32,\"num_hidden_layers\":2,"
                       "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":48,"
                       "\"max_position_embeddings\":64,\"initializer_range\":0.3,\"rope_theta\":100.0}";
    for (int prec = 0; prec < 2; prec++) {
        ftc_model_config cfg;
        ftc_err e;
        if (ftc_config_parse(json, strlen(json), "test config", &cfg, &e)) fail_msg("%s", e.msg);
        ftc_model *m;
        if (ftc_model_create(&cfg, FTC_TASK_CAUSAL_LM, 42, &m, &e)) fail_msg("%s", e.msg);
        ftc_config_free(&cfg);
        if (ftc_model_add_lora(m, "all-linear", 4, 8.0f, 0.0f, 7, &e)) fail_msg("%s", e.msg);
        for (int i = 0; i < ftc_model_n_params(m); i++) {
            ftc_param *p = ftc_model_param(m, i);
            if (p->is_lora && strstr(p->name, "lora_B"))
                for (int64_t k = 0; k < p->numel; k++) p->data[k] = 0.01f * (float)((k * 7919 + i) % 13 - 6);
        }
        if (ftc_model_set_precision(m, prec ? FTC_PREC_BF16 : FTC_PREC_FP32, &e)) fail_msg("%s", e.msg);
        if (ftc_model_reserve(m, BMAX, seq_len(m), &e)) fail_msg("%s", e.msg);
        batch_t bt;
        make_batch(&bt, m);
        const float w = 0.37f;
        result full = step(m, &bt, false, 1.0f, w);
        ftc_model_set_loss_only(m, true, &e);
        int rows = ftc_model_lm_chunk_rows(m);
        if (ftc_model_set_grad_checkpoint(m, true, &e)) fail_msg("%s", e.msg);
        result ck_full = step(m, &bt, false, 1.0f, w);
        result ck_fused = step(m, &bt, true, w, w), ck_again = step(m, &bt, true, 1.0f, w);
        int ck_rows = ftc_model_lm_chunk_rows(m);
        /* fewer rows (the last of the batch's 600 positions a piece of 12), no 256-row bound shared */
        assert_true(ck_rows < rows && ck_rows >= 96 && 600 % ck_rows != 0 && rows % ck_rows != 0);
        assert_int_equal(ftc_model_activation_bytes_for(m, BMAX, seq_len(m)), ftc_model_activation_bytes(m));
        char what[64];
        snprintf(what, sizeof what, "6000-word llama lora %s ckpt", prec ? "bf16" : "f32");
        compare(m, &ck_full, &ck_fused, what); /* the same pieces: bit for bit */
        compare(m, &ck_full, &ck_again, what);
        /* against the plan without checkpointing (pieces of 238 rows): the loss bit for bit (each row's loss is
         * the same), the gradients within what other row counts of the head's matmuls change in their sums
         * (each row's gradient scale is the same, see lm_head_backward_rows) */
        double d = compare_close(m, &full, &ck_fused, 1e-6, what);
        printf("  %-28s pieces of %d rows (%d without checkpointing): loss %.7f bit-identical, gradients "
               "bit-identical to the full-logits path's, within %.1e of the unchecked plan's\n", what, ck_rows, rows,
               full.loss, d);
        result_free(&ck_full);
        result_free(&full), result_free(&ck_fused), result_free(&ck_again);
        ftc_model_free(m);
    }
}

static void test_lora(void **state) {
    (void)state;
    const char *names[] = {"llama_tied", "llama_gqa", "gpt2", "stories260K"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        lora_case(names[i], -1, FTC_PREC_FP32);
        lora_case(names[i], -1, FTC_PREC_BF16);
    }
    lora_case("llama_gqa", FTC_GGML_Q8_0, FTC_PREC_FP32);
    lora_case("stories260K", FTC_GGML_Q8_0, FTC_PREC_FP32);
}

/* Full fine-tuning: the head trains (tied: the token table, also an embedding) */
static void full_case(const char *name, ftc_precision prec) {
    char dir[4096];
    if (!model_dir(dir, sizeof dir, name)) { printf("  SKIP %s: not found\n", name); return; }
    ftc_model *m = load(dir, -1);
    ftc_err e;
    if (ftc_model_set_precision(m, prec, &e)) fail_msg("%s", e.msg);
    if (ftc_model_reserve(m, BMAX, seq_len(m), &e)) fail_msg("%s", e.msg);
    batch_t bt;
    make_batch(&bt, m);
    result full = step(m, &bt, false, 1.0f, 1.0f);
    result chunked = step(m, &bt, true, 1.0f, 1.0f);
    char what[200];
    snprintf(what, sizeof what, "%s full %s", name, prec == FTC_PREC_BF16 ? "bf16" : "f32");
    compare(m, &full, &chunked, what);
    /* checkpointing: the head's pieces over the shared block activations, computed again in the backward */
    if (ftc_model_set_grad_checkpoint(m, true, &e)) fail_msg("%s", e.msg);
    result ck = step(m, &bt, true, 1.0f, 1.0f);
    strncat(what, " ckpt", sizeof what - strlen(what) - 1);
    compare(m, &full, &ck, what);
    printf("  %-28s loss %.7f and all gradients (the head's too) bit-identical, with checkpointing too\n", what,
           full.loss);
    result_free(&full), result_free(&chunked), result_free(&ck);
    ftc_model_free(m);
}

static void test_full(void **state) {
    (void)state;
    const char *names[] = {"llama_tied", "llama_gqa", "gpt2"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        full_case(names[i], FTC_PREC_FP32);
        full_case(names[i], FTC_PREC_BF16);
    }
}

static float loss_of(ftc_model *m, const batch_t *bt) {
    ftc_err e;
    float l;
    ftc_rng_seed(ftc_model_rng(m), 42);
    if (ftc_model_forward(m, &bt->b, true, &l, &e)) fail_msg("%s", e.msg);
    return l;
}

/* central differences of the chunked loss (f64 would be better; f32 with step h and a 3% tolerance on
 * entries that matter) against the chunked gradient */
static void fd_case(const char *name, bool lora, float h) {
    char dir[4096];
    if (!model_dir(dir, sizeof dir, name)) { printf("  SKIP %s: not found\n", name); return; }
    ftc_model *m = load(dir, -1);
    ftc_err e;
    if (lora && ftc_model_add_lora(m, "all-linear", 4, 8.0f, 0.0f, 7, &e)) fail_msg("%s", e.msg);
    if (ftc_model_reserve(m, BMAX, seq_len(m), &e)) fail_msg("%s", e.msg);
    batch_t bt;
    make_batch(&bt, m);
    result g = step(m, &bt, true, 1.0f, 1.0f);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < g.n && checked < 12; i++) {
        ftc_param *p = ftc_model_param(m, i);
        if (!g.g[i] || (lora ? !strstr(p->name, "lora_B") : !is_head(m, i))) continue;
        /* the entry with the largest gradient of this parameter */
        int64_t k = 0;
        for (int64_t j = 1; j < p->numel; j++)
            if (fabsf(g.g[i][j]) > fabsf(g.g[i][k])) k = j;
        if (fabsf(g.g[i][k]) < 1e-3f) continue;
        float v = p->data[k];
        p->data[k] = v + h;
        ftc_model_weights_changed(m);
        float lp = loss_of(m, &bt);
        p->data[k] = v - h;
        ftc_model_weights_changed(m);
        float lm = loss_of(m, &bt);
        p->data[k] = v;
        ftc_model_weights_changed(m);
        double fd = ((double)lp - lm) / (2.0 * h), rel = fabs(fd - g.g[i][k]) / fabs(g.g[i][k]);
        if (rel > 0.03) fail_msg("%s %s[%lld]: finite difference %g, gradient %g", name, p->name, (long long)k, fd, g.g[i][k]);
        worst = fmax(worst, rel);
        checked++;
    }
    assert_true(checked > 0);
    printf("  %-28s %d entries: finite differences within %.2f%% of the chunked gradient\n", name, checked,
           100 * worst);
    result_free(&g);
    ftc_model_free(m);
}

static void test_finite_differences(void **state) {
    (void)state;
    fd_case("llama_gqa", true, 1e-2f);
    fd_case("gpt2", true, 1e-2f);
    fd_case("llama_tied", false, 5e-4f); /* an embedding entry of weights ~0.02, used by many positions: a smaller step */
}

/* evaluation: the metrics from pieces of logits equal the ones from the whole tensor */
static void eval_pieces(bool ckpt) {
    char dir[4096];
    if (!model_dir(dir, sizeof dir, "gpt2")) { printf("  SKIP gpt2: not found\n"); return; }
    ftc_model *m = load(dir, -1);
    ftc_err e;
    if (ftc_model_add_lora(m, "all-linear", 4, 8.0f, 0.0f, 7, &e)) fail_msg("%s", e.msg);
    if (ftc_model_reserve(m, BMAX, seq_len(m), &e)) fail_msg("%s", e.msg);
    if (ftc_model_set_grad_checkpoint(m, ckpt, &e)) fail_msg("%s", e.msg);
    batch_t bt;
    make_batch(&bt, m);
    int V = ftc_model_config_of(m)->vocab_size, B = bt.b.B, T = bt.b.T;
    ftc_lm_metrics whole, pieces;
    ftc_lm_metrics_init(&whole), ftc_lm_metrics_init(&pieces);
    float l1, l2;
    if (ftc_model_forward(m, &bt.b, false, &l1, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ftc_lm_metrics_add_logits(&whole, ftc_model_logits(m), bt.labels, B, T, V, &e), FTC_OK);
    assert_int_equal(ftc_model_set_loss_only(m, true, &e), FTC_OK);
    if (ftc_model_forward(m, &bt.b, false, &l2, &e)) fail_msg("%s", e.msg);
    int R = ftc_model_lm_chunk_rows(m), n = 0;
    assert_true(R > 0 && R < B * T);
    assert_null(ftc_model_lm_logits_rows(m, B * T - R + 1, R)); /* past the end */
    for (int r0 = 0; r0 < B * T; r0 += R, n++) {
        int rows = B * T - r0 < R ? B * T - r0 : R;
        assert_int_equal(ftc_lm_metrics_add_rows(&pieces, ftc_model_lm_logits_rows(m, r0, rows), bt.labels, B, T, V,
                                                 r0, rows, &e), FTC_OK);
    }
    assert_memory_equal(&l1, &l2, sizeof l1);
    assert_memory_equal(&whole.nll_sum, &pieces.nll_sum, sizeof whole.nll_sum);
    assert_true(whole.n_tokens == pieces.n_tokens && whole.n_correct == pieces.n_correct &&
                whole.n_sequences == pieces.n_sequences);
    assert_true(whole.n_tokens > 0);
    printf("  eval in %d pieces of %d rows%s: loss %.7f, %lld tokens, nll sum and accuracy bit-identical\n", n, R,
           ckpt ? " (grad checkpointing)" : "", ftc_lm_loss(&pieces), (long long)pieces.n_tokens);
    ftc_model_free(m);
}

/* (the logits pieces overlay the training scratch: with checkpointing, the shared block activations too) */
static void test_eval_pieces(void **state) {
    (void)state;
    eval_pieces(false);
    eval_pieces(true);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_small_pieces),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_eval_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

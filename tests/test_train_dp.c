/* The trainer's data-parallel pieces (src/train/dp.c) without a transport: which rows of a batch each rank takes,
 * the gradient sum over the ranks for gradients in one span and scattered ones, and the evaluation counts summed.
 * The transport here stands for N ranks holding the same buffers (every all-reduce multiplies by N) and counts
 * its calls; the overlap's buckets against a transport that records what it is asked to start; tests/cli_mpi.sh runs the whole trainer over MPI. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "train/train_internal.h"

typedef struct { int calls; int64_t values; } fake;
static ftc_status fake_f32(void *ctx, float *buf, int64_t n, ftc_err *err) {
    (void)err;
    fake *f = ctx;
    f->calls++, f->values += n;
    for (int64_t i = 0; i < n; i++) buf[i] *= 3; /* three ranks with the same buffer */
    return FTC_OK;
}
static ftc_status fake_f64(void *ctx, double *buf, int64_t n, ftc_err *err) {
    (void)err;
    fake *f = ctx;
    f->calls++, f->values += n;
    for (int64_t i = 0; i < n; i++) buf[i] *= 3;
    return FTC_OK;
}
static ftc_status fake_barrier(void *ctx, ftc_err *err) { (void)ctx; (void)err; return FTC_OK; }

static void test_shards_cover_the_batch(void **state) {
    (void)state;
    for (int size = 1; size <= 5; size++)
        for (int B = 0; B <= 13; B++) {
            int next = 0;
            for (int rank = 0; rank < size; rank++) {
                ftc_train_dp dp = {.rank = rank, .size = size};
                int lo, hi;
                ftc_tr_dp_shard(&dp, B, &lo, &hi);
                assert_int_equal(lo, next); /* contiguous, in rank order */
                assert_true(hi - lo == B / size || hi - lo == B / size + 1); /* as even as it goes */
                next = hi;
            }
            assert_int_equal(next, B);
        }
    int lo, hi;
    ftc_tr_dp_shard(NULL, 7, &lo, &hi); /* one process: every row */
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 7);
    assert_false(ftc_train_dp_active(NULL));
    assert_false(ftc_train_dp_active(&(ftc_train_dp){.rank = 0, .size = 1}));
}

/* Three params whose gradients lie in one buffer in order (one all-reduce over the span, padding included), then
 * out of order (packed: the sum still lands in each param's own gradient). */
static void test_gradient_sum(void **state) {
    (void)state;
    float buf[48];
    ftc_param p[3];
    memset(p, 0, sizeof p);
    int64_t numel[3] = {5, 16, 3};
    for (int layout = 0; layout < 2; layout++) {
        for (int i = 0; i < 48; i++) buf[i] = (float)(i + 1);
        int64_t off[3] = {0, 16, 32}; /* each rounded up to 16 floats, as the model lays them out */
        if (layout == 1) off[0] = 32, off[2] = 0; /* the first param's gradient after the others' */
        ftc_param *ptrs[3];
        for (int i = 0; i < 3; i++) {
            p[i].numel = numel[i], p[i].grad = buf + off[i], p[i].trainable = true, p[i].data = buf;
            ptrs[i] = &p[i];
        }
        ftc_optimizer o;
        ftc_err err;
        assert_int_equal(ftc_optim_init(&o, ptrs, 3, &FTC_ADAMW_DEFAULTS, &err), FTC_OK);
        fake f = {0};
        ftc_train_dp dp = {.rank = 0, .size = 3, .ctx = &f, .allreduce_sum_f32 = fake_f32, .allreduce_sum_f64 = fake_f64,
                           .barrier = fake_barrier};
        float *pack = NULL;
        assert_int_equal(ftc_tr_dp_allreduce_grads(&dp, &o, &pack, &err), FTC_OK);
        assert_int_equal(f.calls, 1);
        for (int i = 0; i < 3; i++)
            for (int64_t j = 0; j < numel[i]; j++) assert_true(p[i].grad[j] == 3.0f * (float)(off[i] + j + 1));
        if (layout == 0) {
            assert_null(pack); /* one span: no copy */
            assert_int_equal(f.values, 16 + 16 + 3);
        } else {
            assert_non_null(pack);
            assert_int_equal(f.values, 5 + 16 + 3);
            assert_true(buf[5] == 6.0f); /* outside every gradient: untouched */
        }
        free(pack);
        ftc_optim_free(&o);
    }
}

/* Overlap: buckets of params adjacent in the gradient buffer with the same readiness (the heads, then each block from
 * the last, then the embeddings), started in that order as the backward reports blocks done. */
typedef struct { int n, progress; int64_t off[8], len[8]; float *base; } fake_async;
static ftc_status fake_start(void *ctx, float *buf, int64_t n, ftc_err *err) {
    (void)err;
    fake_async *f = ctx;
    f->off[f->n] = buf - f->base, f->len[f->n] = n, f->n++;
    return FTC_OK;
}
static ftc_status fake_progress(void *ctx, ftc_err *err) { (void)err; ((fake_async *)ctx)->progress++; return FTC_OK; }
static ftc_status fake_wait(void *ctx, ftc_err *err) { (void)ctx; (void)err; return FTC_OK; }

static void test_buckets(void **state) {
    (void)state;
    float buf[160] = {0};
    ftc_param p[6];
    memset(p, 0, sizeof p);
    /* offset, numel, role, block: in optimizer order unlike memory order; the block-1 param at 128 lies past a gap
     * (a trainable param outside the optimizer) so it is a bucket of its own */
    struct { int64_t off, numel; ftc_param_role role; int block; } d[6] = {
        {80, 7, FTC_PARAM_CLASSIFIER, -1}, {0, 20, FTC_PARAM_EMBEDDING, -1}, {48, 16, FTC_PARAM_BLOCK, 0},
        {32, 5, FTC_PARAM_BLOCK, 0},       {64, 3, FTC_PARAM_BLOCK, 1},       {128, 9, FTC_PARAM_BLOCK, 1}};
    ftc_param *ptrs[6];
    for (int i = 0; i < 6; i++) {
        p[i].numel = d[i].numel, p[i].grad = buf + d[i].off, p[i].role = d[i].role, p[i].block = d[i].block;
        p[i].trainable = true, p[i].data = buf;
        ptrs[i] = &p[i];
    }
    ftc_optimizer o;
    ftc_err err;
    assert_int_equal(ftc_optim_init(&o, ptrs, 6, &FTC_ADAMW_DEFAULTS, &err), FTC_OK);
    fake_async f = {.base = buf};
    ftc_train_dp dp = {.rank = 0, .size = 2, .ctx = &f, .allreduce_start_f32 = fake_start,
                       .allreduce_progress = fake_progress, .allreduce_wait_all = fake_wait};
    assert_true(ftc_tr_dp_overlaps(&dp));
    assert_false(ftc_tr_dp_overlaps(&(ftc_train_dp){.rank = 0, .size = 2, .allreduce_start_f32 = fake_start}));
    ftc_tr_buckets bk = {0};
    assert_int_equal(ftc_tr_dp_buckets_plan(&bk, &o, &err), FTC_OK);
    assert_int_equal(bk.n, 5);
    assert_int_equal(ftc_tr_dp_buckets_start(&dp, &bk, 1, &err), FTC_OK); /* block 1 done: the head and block 1 */
    assert_int_equal(f.n, 3);
    assert_int_equal(f.progress, 1);
    assert_int_equal(ftc_tr_dp_buckets_start(&dp, &bk, 0, &err), FTC_OK); /* block 0: its two params as one span */
    assert_int_equal(ftc_tr_dp_buckets_start(&dp, &bk, INT_MIN, &err), FTC_OK); /* the rest: the embeddings */
    assert_int_equal(ftc_tr_dp_buckets_start(&dp, &bk, INT_MIN, &err), FTC_OK); /* nothing left to start */
    assert_int_equal(f.n, 5);
    int64_t off[5] = {80, 64, 128, 32, 0}, len[5] = {7, 3, 9, 32, 20};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f.off[i], off[i]);
        assert_int_equal(f.len[i], len[i]);
    }
    /* re-planned (a new optimizer, LP-FT's second stage): all not started again */
    assert_int_equal(ftc_tr_dp_buckets_plan(&bk, &o, &err), FTC_OK);
    assert_int_equal(bk.next, 0);
    ftc_tr_dp_buckets_free(&bk);
    ftc_optim_free(&o);
}

static void test_metrics_sum(void **state) {
    (void)state;
    fake f = {0};
    ftc_train_dp dp = {.rank = 1, .size = 3, .ctx = &f, .allreduce_sum_f32 = fake_f32, .allreduce_sum_f64 = fake_f64,
                       .barrier = fake_barrier};
    ftc_err err;
    ftc_class_metrics cm;
    assert_int_equal(ftc_class_metrics_init(&cm, 2, &err), FTC_OK);
    float logits[4] = {2, 0, 0, 1}; /* row 0 predicts 0 (right), row 1 predicts 1 (wrong: label 0) */
    int32_t labels[2] = {0, 0};
    assert_int_equal(ftc_class_metrics_add_logits(&cm, logits, labels, 2, &err), FTC_OK);
    double nll = cm.nll_sum;
    assert_int_equal(ftc_tr_dp_reduce_class(&dp, &cm, &err), FTC_OK);
    ftc_class_metrics_finish(&cm);
    assert_int_equal(cm.n_examples, 6);
    assert_int_equal(cm.confusion[0], 3); /* true 0, predicted 0 */
    assert_int_equal(cm.confusion[1], 3); /* true 0, predicted 1 */
    assert_true(cm.accuracy == 0.5);
    assert_true(cm.nll_sum == 3 * nll);
    ftc_class_metrics_free(&cm);
    ftc_lm_metrics lm = {.n_sequences = 2, .n_tokens = 10, .n_correct = 4, .nll_sum = 7.5};
    assert_int_equal(ftc_tr_dp_reduce_lm(&dp, &lm, &err), FTC_OK);
    assert_int_equal(lm.n_sequences, 6);
    assert_int_equal(lm.n_tokens, 30);
    assert_int_equal(lm.n_correct, 12);
    assert_true(lm.nll_sum == 22.5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_cover_the_batch),
        cmocka_unit_test(test_gradient_sum),
        cmocka_unit_test(test_metrics_sum),
        cmocka_unit_test(test_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Optimizer pieces against PyTorch (tests/fixtures/train_optim.json from tools/gen_optim_fixtures.py):
 * AdamW with per-param weight decay, clip_grad_norm_, and the HF warmup schedules; the per-tensor rates of a new
 * head (--head-lr) and of layer-wise decay (--layer-decay). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/train.h"
#include "train/train_internal.h"

static json_t *fixture;

static int load_fixture(void **state) {
    (void)state;
    const char *src = getenv("FTC_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/train_optim.json", src ? src : ".");
    json_error_t je;
    fixture = json_load_file(path, 0, &je);
    if (!fixture) fprintf(stderr, "%s: %s\n", path, je.text);
    return fixture ? 0 : -1;
}
static int free_fixture(void **state) { (void)state; json_decref(fixture); return 0; }

static void fill(float *dst, json_t *arr) {
    size_t i; json_t *v;
    json_array_foreach(arr, i, v) dst[i] = (float)json_number_value(v);
}

static void test_schedules_match_transformers(void **state) {
    (void)state;
    size_t i; json_t *s;
    int checked = 0;
    json_array_foreach(json_object_get(fixture, "schedules"), i, s) {
        const char *kind = json_string_value(json_object_get(s, "kind"));
        ftc_sched_kind k = !strcmp(kind, "linear") ? FTC_SCHED_LINEAR
                           : !strcmp(kind, "cosine") ? FTC_SCHED_COSINE : FTC_SCHED_CONSTANT;
        int64_t warmup = json_integer_value(json_object_get(s, "warmup"));
        int64_t total = json_integer_value(json_object_get(s, "total"));
        size_t j; json_t *f;
        json_array_foreach(json_object_get(s, "factors"), j, f) {
            double want = json_number_value(f), got = ftc_schedule_factor(k, (int64_t)j, warmup, total);
            if (fabs(want - got) > 1e-12) fail_msg("%s warmup %lld total %lld step %zu: want %.17g got %.17g", kind,
                                                   (long long)warmup, (long long)total, j, want, got);
            checked++;
        }
    }
    assert_true(checked > 50);
}

/* Runs one fixture case through ftc_optimizer and compares every parameter after every step. */
static void run_adamw_case(json_t *c) {
    json_t *specs = json_object_get(c, "params");
    int np = (int)json_array_size(specs);
    ftc_param params[8];
    ftc_param *ptrs[8];
    memset(params, 0, sizeof params);
    for (int i = 0; i < np; i++) {
        json_t *sp = json_array_get(specs, i);
        ftc_param *p = &params[i];
        snprintf(p->name, sizeof p->name, "%s", json_string_value(json_object_get(sp, "name")));
        p->numel = 1;
        json_t *shape = json_object_get(sp, "shape");
        p->ndim = (int)json_array_size(shape);
        for (int d = 0; d < p->ndim; d++) p->numel *= (p->shape[d] = json_integer_value(json_array_get(shape, d)));
        p->data = calloc((size_t)p->numel, sizeof(float));
        p->grad = calloc((size_t)p->numel, sizeof(float));
        p->trainable = true;
        p->decay = json_is_true(json_object_get(sp, "decay"));
        fill(p->data, json_array_get(json_object_get(c, "init"), i));
        ptrs[i] = p;
    }
    /* a frozen param must be ignored: no state, no change */
    float frozen_data[3] = {1, 2, 3};
    ftc_param frozen = {.name = "frozen", .ndim = 1, .shape = {3}, .numel = 3, .data = frozen_data};
    ptrs[np] = &frozen;

    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    h.weight_decay = (float)json_number_value(json_object_get(c, "weight_decay"));
    ftc_optimizer o;
    ftc_err err;
    assert_int_equal(ftc_optim_init(&o, ptrs, np + 1, &h, &err), FTC_OK);
    assert_int_equal(o.n, np);
    float max_norm = (float)json_number_value(json_object_get(c, "max_norm"));
    double lr0 = json_number_value(json_object_get(c, "lr"));
    int64_t warmup = json_integer_value(json_object_get(c, "warmup")), total = json_integer_value(json_object_get(c, "total"));
    json_t *grads = json_object_get(c, "grads"), *after = json_object_get(c, "after");
    double worst = 0;
    for (size_t step = 0; step < json_array_size(grads); step++) {
        for (int i = 0; i < np; i++) fill(params[i].grad, json_array_get(json_array_get(grads, step), i));
        double lr = lr0 * ftc_schedule_factor(FTC_SCHED_LINEAR, (int64_t)step, warmup, total);
        double want_lr = json_number_value(json_array_get(json_object_get(c, "lrs"), step));
        assert_true(fabs(lr - want_lr) <= 1e-9 * fabs(want_lr) + 1e-15);
        double norm = ftc_clip_grad_norm(&o, max_norm);
        double want_norm = json_number_value(json_array_get(json_object_get(c, "norms"), step));
        if (fabs(norm - want_norm) > 1e-5 * want_norm) fail_msg("step %zu: norm %.9g, torch %.9g", step, norm, want_norm);
        ftc_optim_step(&o, (float)lr);
        for (int i = 0; i < np; i++) {
            json_t *want = json_array_get(json_array_get(after, step), i);
            for (int64_t j = 0; j < params[i].numel; j++) {
                double w = json_number_value(json_array_get(want, (size_t)j)), d = fabs(w - params[i].data[j]);
                if (d > worst) worst = d;
                if (d > 5e-7 * (1 + fabs(w)))
                    fail_msg("%s step %zu: %s[%lld] = %.9g, torch %.9g", json_string_value(json_object_get(c, "name")),
                             step, params[i].name, (long long)j, params[i].data[j], w);
            }
        }
    }
    assert_int_equal(o.t, (int64_t)json_array_size(grads));
    assert_true(frozen_data[0] == 1 && frozen_data[1] == 2 && frozen_data[2] == 3);
    printf("  %s: max |ftc - torch| = %.3g\n", json_string_value(json_object_get(c, "name")), worst);
    ftc_optim_free(&o);
    for (int i = 0; i < np; i++) { free(params[i].data); free(params[i].grad); }
}

static void test_adamw_matches_torch(void **state) {
    (void)state;
    size_t i; json_t *c;
    json_array_foreach(json_object_get(fixture, "adamw"), i, c) run_adamw_case(c);
    assert_true(json_array_size(json_object_get(fixture, "adamw")) >= 3);
}

static void test_optim_rejects_all_frozen(void **state) {
    (void)state;
    float d[2] = {0};
    ftc_param p = {.name = "x", .ndim = 1, .shape = {2}, .numel = 2, .data = d};
    ftc_param *pp = &p;
    ftc_optimizer o;
    ftc_err err;
    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    assert_int_equal(ftc_optim_init(&o, &pp, 1, &h, &err), FTC_E_INPUT);
    assert_non_null(strstr(err.msg, "no trainable"));
}

static void test_clip_scales_to_max_norm(void **state) {
    (void)state;
    float d[2] = {0}, g[2] = {3, 4};
    ftc_param p = {.name = "x", .ndim = 1, .shape = {2}, .numel = 2, .data = d, .grad = g, .trainable = true};
    ftc_param *pp = &p;
    ftc_optimizer o;
    ftc_err err;
    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    assert_int_equal(ftc_optim_init(&o, &pp, 1, &h, &err), FTC_OK);
    assert_true(fabs(ftc_clip_grad_norm(&o, 1.0f) - 5.0) < 1e-9);
    assert_true(fabs(ftc_grad_norm(&o) - 1.0) < 1e-5);
    assert_true(fabs(ftc_clip_grad_norm(&o, 10.0f) - 1.0) < 1e-5); /* below max: unchanged */
    assert_true(fabs(g[0] - 0.6f) < 1e-6 && fabs(g[1] - 0.8f) < 1e-6);
    ftc_optim_free(&o);
}

/* --layer-decay X: embeddings (depth 0) at X^(L+1), block i at X^(L-i), the head at 1 (x head_lr/lr when new);
 * off (X = 1) with no new head: no per-tensor rates at all. */
static void test_layer_decay_rates(void **state) {
    (void)state;
    float d[5][2] = {{0}}, g[5][2] = {{0}};
    ftc_param p[5] = {
        {.name = "emb", .role = FTC_PARAM_EMBEDDING, .block = -1},
        {.name = "b0", .role = FTC_PARAM_BLOCK, .block = 0},
        {.name = "b1", .role = FTC_PARAM_BLOCK, .block = 1},
        {.name = "pooler", .role = FTC_PARAM_POOLER, .block = -1},
        {.name = "cls", .role = FTC_PARAM_CLASSIFIER, .block = -1},
    };
    ftc_param *pp[5];
    for (int i = 0; i < 5; i++) {
        p[i].ndim = 1, p[i].shape[0] = 2, p[i].numel = 2, p[i].data = d[i], p[i].grad = g[i], p[i].trainable = true;
        pp[i] = &p[i];
    }
    ftc_train_config c;
    ftc_train_config_defaults(&c);
    c.task = FTC_TASK_CLASSIFY, c.method = FTC_METHOD_FULL, c.lr = 1e-4f, c.head_lr = 1e-3f, c.layer_decay = 0.5f;
    ftc_adamw_hparams h = FTC_ADAMW_DEFAULTS;
    ftc_optimizer o;
    ftc_err err;
    const float want_new[5] = {0.125f, 0.25f, 0.5f, 1.0f, 10.0f}, want_kept[5] = {0.125f, 0.25f, 0.5f, 1.0f, 1.0f};
    for (int new_head = 0; new_head < 2; new_head++) {
        assert_int_equal(ftc_optim_init(&o, pp, 5, &h, &err), FTC_OK);
        assert_int_equal(ftc_tr_set_head_lr(&o, &c, new_head, &err), FTC_OK);
        assert_non_null(o.lr_scale);
        for (int i = 0; i < 5; i++) assert_true(fabsf(o.lr_scale[i] - (new_head ? want_new : want_kept)[i]) < 1e-5f);
        ftc_optim_free(&o);
    }
    c.layer_decay = 1;
    assert_int_equal(ftc_optim_init(&o, pp, 5, &h, &err), FTC_OK);
    assert_int_equal(ftc_tr_set_head_lr(&o, &c, false, &err), FTC_OK);
    assert_null(o.lr_scale);
    ftc_optim_free(&o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_match_transformers),
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_optim_rejects_all_frozen),
        cmocka_unit_test(test_clip_scales_to_max_norm),
        cmocka_unit_test(test_layer_decay_rates),
    };
    return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}

/* `ftc train` settings: setters, YAML and JSON files with the same keys, errors naming file/line/key,
 * the combination checks, and the resolved JSON. */
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
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/train.h"
#include "lib/test_util.h"

static char dir[64];

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ftc_err e;
    assert_int_equal(ftc_write_file_atomic(path, text, strlen(text), &e), FTC_OK);
    return path;
}

static void test_setters_and_errors(void **state) {
    (void)state;
    ftc_train_config c;
    ftc_err e;
    ftc_train_config_defaults(&c);
    assert_int_equal(ftc_train_config_set(&c, "grad-accum", "4", &e), FTC_OK);
    assert_int_equal(c.grad_accum, 4);
    assert_int_equal(ftc_train_config_set(&c, "grad_accum", "2", &e), FTC_OK);
    assert_int_equal(c.grad_accum, 2);
    assert_int_equal(ftc_train_config_set(&c, "lr", "2e-5", &e), FTC_OK);
    assert_true(fabsf(c.lr - 2e-5f) < 1e-12f);
    assert_int_equal(ftc_train_config_set(&c, "method", "lora", &e), FTC_OK);
    assert_int_equal(c.method, FTC_METHOD_LORA);
    assert_int_equal(ftc_train_config_set(&c, "schedule", "cosine", &e), FTC_OK);
    assert_int_equal(c.schedule, FTC_SCHED_COSINE);
    assert_int_equal(ftc_train_config_set(&c, "batch", "0", &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "batch"));
    assert_int_equal(ftc_train_config_set(&c, "lr", "fast", &e), FTC_E_USAGE);
    assert_int_equal(ftc_train_config_set(&c, "method", "adapter", &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "full, head, lora"));
    /* names from HF Trainer / Axolotl are aliases; a typo names the closest settings */
    assert_int_equal(ftc_train_config_set(&c, "learning_rate", "3e-4", &e), FTC_OK);
    assert_true(fabsf(c.lr - 3e-4f) < 1e-12f);
    assert_int_equal(ftc_train_config_set(&c, "num-epochs", "7", &e), FTC_OK);
    assert_int_equal(c.epochs, 7);
    assert_int_equal(ftc_train_config_set(&c, "output_dir", "runs/o", &e), FTC_OK);
    assert_string_equal(c.out, "runs/o");
    assert_int_equal(ftc_train_config_set(&c, "template", "chatml", &e), FTC_OK);
    assert_string_equal(c.template_name, "chatml");
    assert_int_equal(ftc_train_config_set(&c, "bf16", "true", &e), FTC_OK);
    assert_int_equal(c.precision, FTC_PREC_BF16);
    assert_int_equal(ftc_train_config_set(&c, "bf16", "false", &e), FTC_OK);
    assert_int_equal(c.precision, FTC_PREC_FP32);
    assert_string_equal(ftc_train_option_name("per_device_train_batch_size"), "batch");
    assert_null(ftc_train_option_name("learning-rat"));
    assert_int_equal(ftc_train_config_set(&c, "learning-rat", "1", &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "unknown setting 'learning-rat' (did you mean learning-rate?)"));
    assert_int_equal(ftc_train_config_set(&c, "zzzzzz", "1", &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "unknown setting 'zzzzzz' (run 'ftc train --help'"));
    /* every alias names a setting of the table */
    for (const ftc_train_alias *a = ftc_train_aliases(); a->alias; a++) assert_non_null(ftc_train_option_name(a->name));
    assert_int_equal(ftc_train_config_set(&c, "seed", "-3", &e), FTC_E_USAGE);
}

static void test_yaml_and_json_files_agree(void **state) {
    (void)state;
    const char *yaml = write_tmp("c.yaml", "# run settings\nmodel: /m\ndata: d.jsonl\nout: runs/x\ntask: classify\n"
                                           "method: head\nlr: 0.001\nbatch: 8\ngrad_accum: 2\nwarmup: 0.1\n"
                                           "unfreeze-last: 2\nmetric: macro_f1\nval-split: 0.2\npatience: 3\n");
    ftc_train_config a, b;
    ftc_err e;
    ftc_train_config_defaults(&a);
    assert_int_equal(ftc_train_config_load_file(&a, yaml, &e), FTC_OK);
    const char *json = write_tmp("c.json", "{\"model\": \"/m\", \"data\": \"d.jsonl\", \"out\": \"runs/x\", "
                                           "\"task\": \"classify\", \"method\": \"head\", \"lr\": 0.001, \"batch\": 8, "
                                           "\"grad_accum\": 2, \"warmup\": 0.1, \"unfreeze_last\": 2, "
                                           "\"metric\": \"macro_f1\", \"val_split\": 0.2, \"patience\": 3}");
    ftc_train_config_defaults(&b);
    assert_int_equal(ftc_train_config_load_file(&b, json, &e), FTC_OK);
    assert_int_equal(ftc_train_config_finalize(&a, &e), FTC_OK);
    assert_int_equal(ftc_train_config_finalize(&b, &e), FTC_OK);
    json_t *ja = ftc_train_config_json(&a), *jb = ftc_train_config_json(&b);
    assert_true(json_equal(ja, jb));
    assert_int_equal(json_integer_value(json_object_get(ja, "unfreeze_last")), 2);
    assert_string_equal(json_string_value(json_object_get(ja, "metric")), "macro_f1");
    assert_int_equal(a.batch, 8);
    /* the resolved JSON loads back to the same settings */
    char *text = json_dumps(ja, 0);
    ftc_train_config r;
    ftc_train_config_defaults(&r);
    assert_int_equal(ftc_train_config_load_file(&r, write_tmp("r.json", text), &e), FTC_OK);
    json_t *jr = ftc_train_config_json(&r);
    assert_true(json_equal(ja, jr));
    free(text);
    /* a run recorded before --layer-decay and --label-smoothing existed resumes as it trained: one rate, the
     * plain cross-entropy, whatever the method's defaults have become */
    json_object_del(ja, "layer_decay");
    json_object_del(ja, "label_smoothing");
    json_object_del(ja, "rdrop"); /* and before R-Drop: each example once */
    text = json_dumps(ja, 0);
    ftc_train_config_defaults(&r);
    assert_true(r.layer_decay < 0 && r.label_smoothing < 0 && r.rdrop < 0); /* unset: the method's */
    assert_int_equal(ftc_train_config_load_resolved(&r, write_tmp("old.json", text), &e), FTC_OK);
    assert_true(r.layer_decay == 1 && r.label_smoothing == 0 && r.rdrop == 0);
    free(text);
    json_decref(ja); json_decref(jb); json_decref(jr);
}

static void test_file_errors_name_file_line_key(void **state) {
    (void)state;
    ftc_train_config c;
    ftc_err e;
    ftc_train_config_defaults(&c);
    const char *p = write_tmp("bad.yaml", "model: /m\nbatch: many\n");
    assert_int_equal(ftc_train_config_load_file(&c, p, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "bad.yaml: line 2: key 'batch'"));
    p = write_tmp("bad2.yaml", "model: /m\nlora-targets: [q, v]\n");
    assert_int_equal(ftc_train_config_load_file(&c, p, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "line 2"));
    p = write_tmp("bad3.yaml", "model: [unclosed\n");
    assert_int_equal(ftc_train_config_load_file(&c, p, &e), FTC_E_INPUT);
    p = write_tmp("bad.json", "{\"model\": \"/m\",\n \"epochs\": -1}");
    assert_int_equal(ftc_train_config_load_file(&c, p, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "key 'epochs'"));
    p = write_tmp("bad2.json", "{\"model\": \"/m\",\n \"epochs\": }");
    assert_int_equal(ftc_train_config_load_file(&c, p, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "line 2"));
    assert_int_equal(ftc_train_config_load_file(&c, "/nonexistent/c.yaml", &e), FTC_E_IO);
}

static void test_finalize_checks_combinations(void **state) {
    (void)state;
    ftc_train_config c;
    ftc_err e;
    ftc_train_config_defaults(&c);
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "--model"));
    ftc_train_config_set(&c, "model", "m", &e);
    ftc_train_config_set(&c, "data", "d", &e);
    ftc_train_config_set(&c, "out", "o", &e);
    ftc_train_config_set(&c, "task", "causal-lm", &e);
    ftc_train_config_set(&c, "metric", "accuracy", &e);
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_E_USAGE);
    ftc_train_config_set(&c, "metric", "val_loss", &e);
    ftc_train_config_set(&c, "method", "head", &e);
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_OK);
    assert_int_equal(c.unfreeze_last, 1); /* causal-lm head: last block by default */
    ftc_train_config_set(&c, "patience", "2", &e);
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "validation"));
    ftc_train_config_set(&c, "patience", "0", &e);
    assert_true(c.label_smoothing == 0 && c.layer_decay == 1); /* causal-lm: plain loss, one rate */
    ftc_train_config_set(&c, "label-smoothing", "0.1", &e); /* no labels to smooth */
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "--label-smoothing needs --task classify"));
    ftc_train_config_set(&c, "label-smoothing", "0", &e);
    assert_true(c.rdrop == 0);
    ftc_train_config_set(&c, "rdrop", "1", &e); /* R-Drop compares label distributions: classify only */
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "--rdrop needs --task classify"));
    ftc_train_config_set(&c, "rdrop", "0", &e);
    ftc_train_config_set(&c, "lora-r", "4", &e);
    assert_int_equal(ftc_train_config_finalize(&c, &e), FTC_E_USAGE);
    /* method defaults fill what was not given; what was given wins */
    ftc_train_config d;
    ftc_train_config_defaults(&d);
    ftc_train_config_set(&d, "model", "m", &e);
    ftc_train_config_set(&d, "data", "d", &e);
    ftc_train_config_set(&d, "out", "o", &e);
    ftc_train_config_set(&d, "method", "head", &e);
    assert_int_equal(ftc_train_config_finalize(&d, &e), FTC_OK);
    ftc_train_defaults hd = ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_HEAD);
    assert_true(d.lr == hd.lr && d.batch == hd.batch && d.warmup == hd.warmup);
    assert_true(d.rdrop == 0 && hd.rdrop == 0); /* the head on cached features: nothing to run twice */
    ftc_train_config_set(&d, "rdrop", "1", &e);
    assert_int_equal(ftc_train_config_finalize(&d, &e), FTC_E_USAGE);
    assert_non_null(strstr(e.msg, "--no-feature-cache"));
    ftc_train_config_set(&d, "feature-cache", "false", &e);
    assert_int_equal(ftc_train_config_finalize(&d, &e), FTC_OK);
    assert_true(d.rdrop == 1);
    assert_true(hd.lr > 100 * ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_FULL).lr);
    ftc_train_config_defaults(&d);
    ftc_train_config_set(&d, "model", "m", &e);
    ftc_train_config_set(&d, "data", "d", &e);
    ftc_train_config_set(&d, "out", "o", &e);
    ftc_train_config_set(&d, "method", "lora", &e);
    ftc_train_config_set(&d, "lr", "0.5", &e);
    ftc_train_config_set(&d, "batch", "3", &e);
    assert_int_equal(ftc_train_config_finalize(&d, &e), FTC_OK);
    assert_true(d.lr == 0.5f && d.batch == 3);
    assert_true(d.head_lr == ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_LORA).head_lr);
    assert_true(d.layer_decay == ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_LORA).layer_decay);
    assert_true(d.label_smoothing == ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_LORA).label_smoothing);
    assert_true(d.rdrop == ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_LORA).rdrop);
    assert_true(d.rdrop == 0); /* lora: each example once */
    /* full on classify (LP-FT's stage 2; the head stage runs the head method's 0): R-Drop at alpha 1 by default,
     * --rdrop 0 turns it off, and a run saved with 0 resumes with 0 */
    for (int off = 0; off < 2; off++) {
        ftc_train_config f, g;
        ftc_train_config_defaults(&f);
        ftc_train_config_set(&f, "model", "m", &e);
        ftc_train_config_set(&f, "data", "d", &e);
        ftc_train_config_set(&f, "out", "o", &e);
        ftc_train_config_set(&f, "method", "full", &e);
        if (off) ftc_train_config_set(&f, "rdrop", "0", &e);
        assert_int_equal(ftc_train_config_finalize(&f, &e), FTC_OK);
        assert_true(f.rdrop == (off ? 0.0f : 1.0f));
        json_t *jf = ftc_train_config_json(&f);
        char *ft = json_dumps(jf, 0);
        ftc_train_config_defaults(&g);
        assert_int_equal(ftc_train_config_load_resolved(&g, write_tmp("full.json", ft), &e), FTC_OK);
        assert_int_equal(ftc_train_config_finalize(&g, &e), FTC_OK);
        assert_true(g.rdrop == f.rdrop);
        free(ft);
        json_decref(jf);
    }
    assert_true(ftc_train_method_defaults(FTC_TASK_CLASSIFY, FTC_METHOD_FULL).rdrop == 1);
    assert_true(ftc_train_method_defaults(FTC_TASK_CAUSAL_LM, FTC_METHOD_FULL).rdrop == 0);
    assert_int_equal(d.metric, FTC_METRIC_ACCURACY); /* classify keeps its most accurate checkpoint */
    ftc_train_config lm;
    ftc_train_config_defaults(&lm);
    ftc_train_config_set(&lm, "model", "m", &e);
    ftc_train_config_set(&lm, "data", "d", &e);
    ftc_train_config_set(&lm, "out", "o", &e);
    ftc_train_config_set(&lm, "task", "causal-lm", &e);
    assert_int_equal(ftc_train_config_finalize(&lm, &e), FTC_OK);
    assert_int_equal(lm.metric, FTC_METRIC_VAL_LOSS); /* causal-lm its lowest validation loss */
    ftc_train_config_set(&d, "metric", "val_loss", &e); /* given: it wins */
    assert_int_equal(ftc_train_config_finalize(&d, &e), FTC_OK);
    assert_int_equal(d.metric, FTC_METRIC_VAL_LOSS);
    /* epochs from the data's size: enough steps for a small set, fewer passes over a large one */
    assert_int_equal(d.epochs, 0);
    int few = ftc_train_auto_epochs(&d, 30), mid = ftc_train_auto_epochs(&d, 2000), many = ftc_train_auto_epochs(&d, 100000);
    assert_int_equal(few, 10);  /* 10 steps per epoch at batch 3: 10 epochs for 100 steps */
    assert_int_equal(mid, 3);
    assert_int_equal(many, 1);
    ftc_train_config_set(&d, "epochs", "2", &e);
    ftc_train_config_fit_data(&d, 30);
    assert_int_equal(d.epochs, 2);
}

static int setup(void **state) { (void)state; return ftc_test_tmpdir_make(dir, sizeof dir, "cfg"); }
static int teardown(void **state) { (void)state; return ftc_test_tmpdir_remove(dir); }

/* The defaults a run's settings are compared with in the report: the method's, resolved as the trainer resolves
 * them for that run's model width and data size. */
/* The one table: every option has its help (group, text), and the default its help shows is the default: set
 * through the parser it leaves the defaults' JSON as it was, and the JSON has a key for every option but --resume. */
static void test_option_table_defaults_and_help(void **state) {
    (void)state;
    ftc_train_config d, c;
    ftc_err e;
    ftc_train_config_defaults(&d);
    json_t *want = ftc_train_config_json(&d);
    int n = 0;
    for (const ftc_train_option *o = ftc_train_options(); o->name; o++, n++) {
        assert_non_null(o->group);
        assert_non_null(o->help);
        assert_true(strlen(o->help) > 3);
        assert_true(o->is_bool == (o->arg == NULL));
        char key[64];
        snprintf(key, sizeof key, "%s", o->name);
        for (char *p = key; *p; p++) if (*p == '-') *p = '_';
        if (strcmp(o->name, "resume")) assert_non_null(json_object_get(want, key));
        /* "", -1 or 0 (a number): chosen later (finalize, the model, the data) or none */
        if (!o->def[0] || o->def[0] == '-' || (!o->is_bool && !strcmp(o->def, "0"))) continue;
        ftc_train_config_defaults(&c);
        if (ftc_train_config_set(&c, o->name, o->def, &e) != FTC_OK) fail_msg("%s %s: %s", o->name, o->def, e.msg);
        json_t *got = ftc_train_config_json(&c);
        if (!json_equal(got, want)) fail_msg("--%s %s (its documented default) changes the defaults", o->name, o->def);
        json_decref(got);
    }
    assert_int_equal((int)json_object_size(want), n - 1);
    json_decref(want);
}

static void test_defaults_json_of_a_run(void **state) {
    (void)state;
    json_t *run = json_pack("{s:s, s:s, s:i, s:i, s:i}", "task", "causal-lm", "method", "lora", "train_examples", 40,
                            "batch", 4, "grad_accum", 1);
    json_t *d = ftc_train_config_defaults_json(run, 64);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "method")), "lora");
    /* causal-lm lora: 8.5e-4 for width 768, x12 for width 64 */
    assert_true(fabs(json_real_value(json_object_get(d, "lr")) - (double)ftc_train_default_lr(FTC_TASK_CAUSAL_LM,
                                                                                            FTC_METHOD_LORA, 64)) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(d, "lr")) - 0.0102) < 1e-6);
    /* 40 examples in batches of 4: 10 steps an epoch, 10 epochs give the 100 steps */
    assert_int_equal(json_integer_value(json_object_get(d, "epochs")), 10);
    assert_int_equal(json_integer_value(json_object_get(d, "batch")), 8); /* the method's batch, not the run's */
    assert_int_equal(json_integer_value(json_object_get(d, "unfreeze_last")), 0);
    json_decref(d);
    json_decref(run);
    /* classify head: lr and head_lr 1e-2, no warmup */
    run = json_pack("{s:s, s:s}", "task", "classify", "method", "head");
    d = ftc_train_config_defaults_json(run, 0);
    assert_true(fabs(json_real_value(json_object_get(d, "head_lr")) - 1e-2) < 1e-9);
    assert_true(json_real_value(json_object_get(d, "warmup")) == 0);
    json_decref(d);
    json_decref(run);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setters_and_errors),
        cmocka_unit_test(test_yaml_and_json_files_agree),
        cmocka_unit_test(test_file_errors_name_file_line_key),
        cmocka_unit_test(test_finalize_checks_combinations),
        cmocka_unit_test(test_defaults_json_of_a_run),
        cmocka_unit_test(test_option_table_defaults_and_help),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

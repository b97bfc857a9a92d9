/* report.html from synthetic runs: well-formed (tags balance), charts and heat map present, the
 * numbers of eval.json in the table, text escaped, and bad inputs named by file, line and key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/eval.h"

static char g_dir[64];

static void write_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ftc_err e;
    assert_int_equal(ftc_write_file_atomic(path, text, strlen(text), &e), FTC_OK);
}

static void copy_fixture(const char *fixture, const char *name) {
    const char *src = getenv("FTC_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s/%s", src ? src : ".", fixture, name);
    char *text;
    size_t n;
    ftc_err e;
    assert_int_equal(ftc_read_file(path, &text, &n, &e), FTC_OK);
    write_text(g_dir, name, text);
    free(text);
}

static char *read_report(void) {
    static char *text; /* static: GCC 12 otherwise warns (falsely) that the result dangles */
    char path[512];
    size_t n;
    ftc_err e;
    snprintf(path, sizeof path, "%s/report.html", g_dir);
    assert_int_equal(ftc_read_file(path, &text, &n, &e), FTC_OK);
    return text;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Every opened element is closed in order (void and self-closing elements aside). Returns NULL if so,
 * else a description of the first mismatch. */
static const char *tags_balance(const char *html, char *why, size_t n) {
    static const char *const VOID[] = {"meta", "br", "hr", "img", "input", "link", NULL};
    char stack[256][32];
    int depth = 0;
    for (const char *p = strchr(html, '<'); p; p = strchr(p + 1, '<')) {
        if (p[1] == '!') continue; /* doctype */
        bool closing = p[1] == '/';
        const char *s = p + 1 + closing;
        size_t len = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        const char *end = strchr(s, '>');
        if (!len || len >= 32 || !end) { snprintf(why, n, "bad tag at offset %ld", (long)(p - html)); return why; }
        char name[32];
        memcpy(name, s, len);
        name[len] = 0;
        if (closing) {
            if (!depth || strcmp(stack[depth - 1], name)) {
                snprintf(why, n, "</%s> closes <%s>", name, depth ? stack[depth - 1] : "(nothing)");
                return why;
            }
            depth--;
            continue;
        }
        if (end[-1] == '/') continue;
        bool is_void = false;
        for (int i = 0; VOID[i]; i++) is_void |= !strcmp(VOID[i], name);
        if (is_void) continue;
        if (depth == 256) { snprintf(why, n, "nesting too deep"); return why; }
        strcpy(stack[depth++], name);
    }
    if (depth) { snprintf(why, n, "<%s> never closed", stack[depth - 1]); return why; }
    return NULL;
}

static void assert_well_formed(const char *html) {
    char why[128];
    const char *bad = tags_balance(html, why, sizeof why);
    if (bad) fail_msg("report.html is not well-formed: %s", bad);
    assert_true(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    assert_null(strstr(html, "<script"));
    /* nothing fetched from the network: the only URL is the SVG namespace name */
    assert_int_equal(count(html, "http://"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    assert_null(strstr(html, "https://"));
}

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/ftc_report_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    const char *names[] = {"metrics.jsonl", "eval.json", "samples.jsonl", "report.html", "config.resolved.json"};
    char path[512];
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
    return 0;
}

/* The committed synthetic FAQ run (tools/make_report_fixtures.py): 28 intents, one never predicted. */
static void test_classify_fixture_report(void **state) {
    (void)state;
    copy_fixture("report_run_classify", "metrics.jsonl");
    copy_fixture("report_run_classify", "eval.json");
    copy_fixture("report_run_classify", "config.resolved.json");
    ftc_err e;
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    char *html = read_report();
    assert_well_formed(html);
    /* loss, validation metrics, gradient norm, throughput, learning rate and the confusion heat map */
    assert_int_equal(count(html, "<svg"), 6);
    assert_int_equal(count(html, "class=\"heatmap\""), 1);
    assert_int_equal(count(html, "<polyline"), 7); /* train loss, val loss, accuracy, macro-F1, grad norm, tok/s, lr */
    assert_non_null(strstr(html, "aria-label=\"Gradient norm (before clipping)\""));
    assert_non_null(strstr(html, "aria-label=\"Throughput\""));
    /* the best checkpoint (val_loss falls to the last evaluation, step 300) marked on each of the five charts */
    assert_int_equal(count(html, "class=\"best\""), 5);
    assert_int_equal(count(html, ">best 300</text>"), 5);
    assert_non_null(strstr(html, "Best checkpoint: step 300 (val_loss 0.3468)"));
    assert_non_null(strstr(html, "training time 2 min 11 s</p>"));
    /* digits on the dark diagonal are white, those on pale cells dark */
    assert_non_null(strstr(html, "class=\"cellnum ondark\">9</text>"));
    assert_non_null(strstr(html, "class=\"cellnum\">1</text>"));
    assert_null(strstr(html, "class=\"cellnum ondark\">1</text>"));
    /* settings: what every run names and what differs from a classify full run's defaults, nothing else */
    const char *set = strstr(html, "<h2>Run settings</h2>");
    assert_non_null(set);
    /* (metric: the fixture keeps the lowest val_loss; classify's default keeps the most accurate checkpoint) */
    const char *shown[] = {"model", "data", "val", "task", "method", "epochs", "max_steps", "lr", "eval_every",
                           "log_every", "metric"};
    for (size_t i = 0; i < sizeof shown / sizeof *shown; i++) {
        char row[64];
        snprintf(row, sizeof row, "<tr><th>%s</th>", shown[i]);
        if (!strstr(set, row)) fail_msg("settings lack %s", shown[i]);
    }
    assert_non_null(strstr(set, "<tr><th>lr</th><td>3e-05</td></tr>"));
    assert_int_equal(count(set, "<tr><th>"), (int)(sizeof shown / sizeof *shown));
    assert_null(strstr(set, "lora_r"));
    assert_null(strstr(set, "head_lr"));
    free(html);
    /* a full run's LP-FT head stage (RUNDIR/head-stage) adds its time */
    char hs[256];
    snprintf(hs, sizeof hs, "%s/head-stage", g_dir);
    assert_int_equal(ftc_mkdirs(hs, &e), FTC_OK);
    write_text(hs, "metrics.jsonl", "{\"step\":1,\"loss\":2,\"elapsed_s\":3.5}\n{\"step\":2,\"finished\":true,\"elapsed_s\":20}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    html = read_report();
    assert_non_null(strstr(html, "training time 2 min 31 s (the head-first stage's 20.0 s included)"));
    assert_int_equal(ftc_remove_tree(hs, &e), FTC_OK);
    /* the table shows eval.json's numbers, tuned and base */
    char path[512], cell[64];
    snprintf(path, sizeof path, "%s/eval.json", g_dir);
    json_t *ev = json_load_file(path, 0, NULL);
    assert_non_null(ev);
    const char *keys[] = {"accuracy", "macro_f1", "loss"};
    for (int i = 0; i < 3; i++) {
        snprintf(cell, sizeof cell, "<td>%.4f</td>", json_real_value(json_object_get(ev, keys[i])));
        assert_non_null(strstr(html, cell));
        snprintf(cell, sizeof cell, "<td>%.4f</td>", json_real_value(json_object_get(json_object_get(ev, "base"), keys[i])));
        assert_non_null(strstr(html, cell));
    }
    json_decref(ev);
    /* the never-predicted class heads the worst-classes table and its mistakes are in the heat map */
    const char *worst = strstr(html, "<h2>Worst classes</h2>");
    assert_non_null(worst);
    assert_non_null(strstr(worst, "<tbody>\n<tr><td>reserve_bike</td><td>0.0000</td><td>0.0000</td><td>0.0000</td>"));
    assert_non_null(strstr(html, "<title>true reserve_bike, predicted unlock_bike: 5</title>"));
    free(html);
}

/* A run made here: metrics through ftc_class_metrics_json, a log with null and extra keys, and
 * label names that must be escaped. */
static void test_escaping_and_round_trip(void **state) {
    (void)state;
    write_text(g_dir, "metrics.jsonl",
               "{\"step\": 1, \"loss\": 1.5, \"lr\": 0.001, \"tok_s\": 900}\n"
               "\n"
               "{\"step\": 2, \"loss\": null, \"lr\": 0.002, \"note\": \"skipped\"}\n"
               "{\"step\": 2, \"val_loss\": 1.25, \"accuracy\": 0.5, \"macro_f1\": 0.4}\n");
    ftc_class_metrics m;
    ftc_err e;
    assert_int_equal(ftc_class_metrics_init(&m, 3, &e), FTC_OK);
    const int y[] = {0, 0, 1, 2}, p[] = {0, 1, 1, 1};
    for (int i = 0; i < 4; i++) assert_int_equal(ftc_class_metrics_add(&m, y[i], p[i], &e), FTC_OK);
    ftc_class_metrics_finish(&m);
    const char *labels[] = {"a<b", "R&D", "\"quoted\""};
    json_t *j = ftc_class_metrics_json(&m, labels);
    char path[512];
    snprintf(path, sizeof path, "%s/eval.json", g_dir);
    assert_int_equal(json_dump_file(j, path, 0), 0);
    json_decref(j);
    write_text(g_dir, "config.resolved.json",
               "{\"method\": \"lora\", \"lr\": 0.0005, \"epochs\": 3, \"lora_targets\": [\"query\"], \"note\": \"<x>\"}");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    char *html = read_report();
    assert_well_formed(html);
    assert_non_null(strstr(html, "<tr><th>method</th><td>lora</td></tr>"));
    assert_non_null(strstr(html, "<tr><th>lr</th><td>0.0005</td></tr>"));
    assert_non_null(strstr(html, "<tr><th>note</th><td>&lt;x&gt;</td></tr>"));
    assert_non_null(strstr(html, "a&lt;b"));
    assert_non_null(strstr(html, "R&amp;D"));
    assert_non_null(strstr(html, "&quot;quoted&quot;"));
    assert_null(strstr(html, "a<b"));
    char cell[64];
    snprintf(cell, sizeof cell, "<td>%.4f</td>", m.accuracy); /* 2/4 */
    assert_non_null(strstr(html, cell));
    snprintf(cell, sizeof cell, "<td>%.4f</td>", m.macro_f1);
    assert_non_null(strstr(html, cell));
    assert_non_null(strstr(html, "3 log lines, 1 train steps logged, 1 evaluations"));
    free(html);
    ftc_class_metrics_free(&m);
}

static void test_lm_fixture_with_samples(void **state) {
    (void)state;
    copy_fixture("report_run_lm", "metrics.jsonl");
    copy_fixture("report_run_lm", "eval.json");
    copy_fixture("report_run_lm", "samples.jsonl");
    ftc_err e;
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    char *html = read_report();
    assert_well_formed(html);
    assert_null(strstr(html, "heatmap"));
    assert_int_equal(count(html, "<svg"), 4); /* loss, token accuracy, perplexity, lr */
    assert_int_equal(count(html, ">best 200</text>"), 4); /* no config: the best by val_loss, the last evaluation */
    assert_non_null(strstr(html, "<th>perplexity</th>"));
    assert_non_null(strstr(html, "<h2>Sample answers</h2>"));
    assert_non_null(strstr(html, "<td>Escape &lt;b&gt;&amp;&lt;/b&gt; &quot;quotes&quot;</td>"));
    assert_int_equal(count(html, "<tr><td>"), 3); /* one row per sample */
    free(html);
}

static void test_bad_inputs_are_named(void **state) {
    (void)state;
    ftc_err e;
    char report[512];
    snprintf(report, sizeof report, "%s/report.html", g_dir);
    /* no log at all */
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_IO);
    assert_non_null(strstr(e.msg, "metrics.jsonl"));
    assert_int_equal(ftc_report_write("/nonexistent/run", &e), FTC_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/run"));
    /* broken JSON on line 2 */
    write_text(g_dir, "metrics.jsonl", "{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": \n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "metrics.jsonl:2"));
    /* a plotted key that is not a number */
    write_text(g_dir, "metrics.jsonl", "{\"step\": 1, \"loss\": \"low\"}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "metrics.jsonl:1: \"loss\""));
    write_text(g_dir, "metrics.jsonl", "{\"loss\": 1}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "\"step\""));
    /* eval.json with a confusion matrix of the wrong shape */
    write_text(g_dir, "metrics.jsonl", "{\"step\": 1, \"loss\": 2}\n");
    write_text(g_dir, "eval.json",
               "{\"task\":\"classify\",\"accuracy\":1,\"labels\":[\"x\",\"y\"],"
               "\"per_class\":[{\"precision\":1,\"recall\":1,\"f1\":1,\"support\":1},"
               "{\"precision\":1,\"recall\":1,\"f1\":1,\"support\":1}],\"confusion\":[[1,0],[0]]}");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "eval.json: \"confusion\"[1]"));
    write_text(g_dir, "eval.json", "{\"task\":\"regression\"}");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "\"task\""));
    /* a sample without its tuned answer */
    write_text(g_dir, "eval.json", "{\"task\":\"causal-lm\",\"loss\":1.0}");
    write_text(g_dir, "samples.jsonl", "{\"prompt\":\"p\",\"base\":\"b\"}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "samples.jsonl:1"));
    /* none of the failures left a report behind */
    assert_false(ftc_file_exists(report));
    /* and once the input is fixed, the report appears */
    write_text(g_dir, "samples.jsonl", "{\"prompt\":\"p\",\"base\":\"b\",\"tuned\":\"t\"}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    assert_true(ftc_file_exists(report));
}

/* Further string keys of the first sample become columns in its order; a line without one gets an empty cell. */
static void test_samples_extra_columns(void **state) {
    (void)state;
    ftc_err e;
    write_text(g_dir, "metrics.jsonl", "{\"step\": 1, \"loss\": 2}\n");
    write_text(g_dir, "samples.jsonl",
               "{\"prompt\":\"p1\",\"base\":\"b1\",\"tuned\":\"t1\",\"rag\":\"r<1>\",\"steps\":3,\"reference\":\"x1\"}\n"
               "{\"prompt\":\"p2\",\"reference\":\"x2\",\"base\":\"b2\",\"tuned\":\"t2\"}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    char *html = read_report();
    assert_well_formed(html);
    assert_non_null(strstr(html, "<th>tuned model</th><th>rag</th><th>reference</th></tr>"));
    assert_non_null(strstr(html, "<td>t1</td><td>r&lt;1&gt;</td><td>x1</td></tr>"));
    assert_non_null(strstr(html, "<td>t2</td><td></td><td>x2</td></tr>"));
    free(html);
}

/* Series that are flat relative to their size, or span more than a double can subtract, still give a
 * page (this once looped forever: a tick step below the values' precision never advanced). */
static void test_flat_and_extreme_series(void **state) {
    (void)state;
    ftc_err e;
    write_text(g_dir, "metrics.jsonl", "{\"step\":0,\"loss\":1e15}\n{\"step\":1,\"loss\":1000000000000000.2}\n"
                                       "{\"step\":1,\"lr\":0.1}\n{\"step\":2,\"lr\":0.1}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    char *html = read_report();
    assert_well_formed(html);
    assert_int_equal(count(html, "<polyline"), 2);
    assert_true(count(html, "class=\"ytick\"") <= 2 * 21);
    free(html);
    write_text(g_dir, "metrics.jsonl", "{\"step\":0,\"loss\":-1e308}\n{\"step\":1,\"loss\":1e308}\n");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    html = read_report();
    assert_well_formed(html);
    assert_non_null(strstr(html, "Loss: values out of the drawable range."));
    free(html);
}

/* The most confident mistakes of eval.json ("worst") listed with their text, escaped; a bad entry is named. */
static void test_worst_examples(void **state) {
    (void)state;
    copy_fixture("report_run_classify", "metrics.jsonl");
    copy_fixture("report_run_classify", "eval.json");
    ftc_err e;
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_OK);
    char *html = read_report();
    assert_well_formed(html);
    const char *w = strstr(html, "<h2>Most confident mistakes</h2>");
    assert_non_null(w);
    assert_non_null(strstr(w, "<tr><td>my bike won&#39;t come out of the dock</td><td>bike_wont_unlock</td>"
                              "<td>unlock_bike</td><td>0.941</td></tr>"));
    assert_non_null(strstr(w, "<td>can I book a bike for &lt;8am&gt; &amp; pick it up later?</td>"));
    assert_int_equal(count(w, "<tr><td>"), 3);
    free(html);
    write_text(g_dir, "eval.json",
               "{\"task\":\"classify\",\"accuracy\":0.5,\"labels\":[\"x\",\"y\"],"
               "\"per_class\":[{\"precision\":1,\"recall\":1,\"f1\":1,\"support\":1},"
               "{\"precision\":1,\"recall\":1,\"f1\":1,\"support\":1}],\"confusion\":[[1,0],[1,0]],"
               "\"worst\":[{\"text\":\"t\",\"label\":\"y\",\"predicted\":\"x\",\"prob\":0.7},{\"label\":\"y\",\"prob\":1}]}");
    assert_int_equal(ftc_report_write(g_dir, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "eval.json: \"worst\"[1]"));
}

/* Three runs on one page: a colour each, curves overlaid with each best checkpoint marked, metrics side by side
 * with the best marked, and only the settings that differ. */
static void test_several_runs(void **state) {
    (void)state;
    char dirs[3][200];
    const char *names[] = {"head", "lora", "full"};
    const double acc[] = {0.71, 0.93, 0.88};
    const int best[] = {100, 300, 200};
    const double tok_s[] = {90000, 900, 300}; /* a head on cached features is orders of magnitude faster */
    ftc_err e;
    char *cfg_text, path[2048];
    size_t n;
    snprintf(path, sizeof path, "%s/tests/fixtures/report_run_classify/config.resolved.json",
             getenv("FTC_SOURCE_DIR") ? getenv("FTC_SOURCE_DIR") : ".");
    assert_int_equal(ftc_read_file(path, &cfg_text, &n, &e), FTC_OK);
    for (int r = 0; r < 3; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/%s", g_dir, names[r]);
        assert_int_equal(ftc_mkdirs(dirs[r], &e), FTC_OK);
        /* val_loss falls to its lowest at best[r], then rises */
        char log[4096];
        int len = 0;
        for (int step = 50; step <= 300; step += 50) {
            double vl = 0.5 + 0.001 * (step > best[r] ? step - best[r] : best[r] - step);
            len += snprintf(log + len, sizeof log - len,
                            "{\"step\":%d,\"loss\":%g,\"lr\":0.001,\"grad_norm\":1.5,\"tok_s\":%g}\n"
                            "{\"step\":%d,\"val_loss\":%g,\"accuracy\":0.8,\"macro_f1\":0.7}\n",
                            step, 2.0 - step / 300.0 - r * 0.1, tok_s[r], step, vl);
        }
        snprintf(path, sizeof path, "%s/metrics.jsonl", dirs[r]);
        assert_int_equal(ftc_write_file_atomic(path, log, strlen(log), &e), FTC_OK);
        char ev[256];
        snprintf(ev, sizeof ev, "{\"task\":\"causal-lm\",\"n_examples\":60,\"accuracy\":%g,\"loss\":%g}", acc[r],
                 1.0 - acc[r]);
        snprintf(path, sizeof path, "%s/eval.json", dirs[r]);
        assert_int_equal(ftc_write_file_atomic(path, ev, strlen(ev), &e), FTC_OK);
        json_t *cfg = json_loads(cfg_text, 0, NULL);
        json_object_set_new(cfg, "method", json_string(names[r]));
        if (r == 1) json_object_set_new(cfg, "lora_r", json_integer(16));
        snprintf(path, sizeof path, "%s/config.resolved.json", dirs[r]);
        assert_int_equal(json_dump_file(cfg, path, 0), 0);
        json_decref(cfg);
    }
    free(cfg_text);
    const char *runs[] = {dirs[0], dirs[1], dirs[2]};
    char out[2048];
    snprintf(out, sizeof out, "%s/cmp.html", g_dir);
    assert_int_equal(ftc_report_write_runs(runs, 3, out, &e), FTC_OK);
    char *html;
    assert_int_equal(ftc_read_file(out, &html, &n, &e), FTC_OK);
    assert_well_formed(html);
    assert_non_null(strstr(html, "<h1>ftc report: 3 runs</h1>"));
    /* charts: loss (6 lines: train and val of each run), accuracy, macro-F1, gradient norm, throughput, lr (3 each) */
    assert_int_equal(count(html, "<svg"), 6);
    assert_int_equal(count(html, "<polyline"), 6 + 5 * 3);
    assert_int_equal(count(html, "stroke-dasharray=\"6 3\" points="), 3); /* the validation losses */
    /* each chart marks each run's best checkpoint in the run's colour */
    assert_int_equal(count(html, "class=\"best\" stroke="), 6 * 3);
    assert_int_equal(count(html, ">best 100</text>"), 6);
    assert_int_equal(count(html, ">best 300</text>"), 6);
    assert_non_null(strstr(html, "class=\"best\" stroke=\"#d62728\""));
    assert_non_null(strstr(html, "step 200 (val_loss 0.5000)"));
    /* throughput over 2.5 decades: a log axis, ticks 1-2-5 per decade from 100 to 100000; the gradient norm
     * (1.5 in every run) stays linear */
    const char *tp = strstr(html, "class=\"title\">Throughput (log scale)</text>");
    assert_non_null(tp);
    const char *tp_end = strstr(tp, "</svg>");
    assert_non_null(tp_end);
    char *chart = strndup(tp, (size_t)(tp_end - tp));
    assert_non_null(strstr(chart, "class=\"ytick\">100</text>"));
    assert_non_null(strstr(chart, "class=\"ytick\">2000</text>"));
    assert_non_null(strstr(chart, "class=\"ytick\">100000</text>"));
    assert_null(strstr(chart, "class=\"ytick\">200000</text>"));
    free(chart);
    assert_null(strstr(html, "Gradient norm (before clipping) (log scale)"));
    assert_non_null(strstr(html, "class=\"title\">Gradient norm (before clipping)</text>"));
    /* metrics side by side: the higher accuracy and the lower loss of the lora run starred */
    assert_non_null(strstr(html, "<tr><th>accuracy</th><td>0.7100</td><td class=\"best\">0.9300 &#9733;</td>"
                                 "<td>0.8800</td></tr>"));
    assert_non_null(strstr(html, "<tr><th>loss</th><td>0.2900</td><td class=\"best\">0.0700 &#9733;</td>"));
    assert_non_null(strstr(html, "<tr><th>examples</th><td>60</td><td>60</td><td>60</td></tr>"));
    /* settings: only method differs (LoRA's settings are compared among LoRA runs: one here); out never is */
    const char *set = strstr(html, "<h2>Settings that differ</h2>");
    assert_non_null(set);
    assert_non_null(strstr(set, "<tr><th>method</th><td>head</td><td>lora</td><td>full</td></tr>"));
    assert_int_equal(count(set, "<tr><th>"), 2); /* the header and method */
    assert_non_null(strstr(set, "42 other settings are the same in every run."));
    free(html);
    /* a broken run among them: its file named, no page */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dirs[2]);
    assert_int_equal(ftc_write_file_atomic(path, "{\"step\": 1}\nx\n", 14, &e), FTC_OK);
    unlink(out);
    assert_int_equal(ftc_report_write_runs(runs, 3, out, &e), FTC_E_INPUT);
    assert_non_null(strstr(e.msg, "full/metrics.jsonl:2"));
    assert_false(ftc_file_exists(out));
    for (int r = 0; r < 3; r++) assert_int_equal(ftc_remove_tree(dirs[r], &e), FTC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_classify_fixture_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_and_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lm_fixture_with_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flat_and_extreme_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_samples_extra_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worst_examples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_runs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

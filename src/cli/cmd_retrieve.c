/* ftc retrieve: the no-training baseline. Each text gets the label of its nearest training text by
 * mean-pooled embedding (RAG-like intent routing); with labelled data it prints accuracy and macro-F1. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/data.h"
#include "ftc/eval.h"
#include "ftc/retrieval.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "Usage: ftc retrieve --model DIR --index FILE --data FILE [--max-len N] [--json]\n\n"
                 "Classifies each text of --data by the label of its most similar text in --index (cosine of\n"
                 "mean-pooled, normalised embeddings from the encoder in DIR). No training: the RAG-like baseline.\n"
                 "Both files hold {\"text\", \"label\"} records (JSONL or CSV, as ftc train reads them).\n\n"
                 "  --max-len N   tokens per text (default 128)\n"
                 "  --batch N     texts per forward pass (default 32)\n"
                 "  --json        accuracy, macro_f1, n_examples, latency_ms per query as JSON\n"
                 "  --predictions print one line per text: predicted label, similarity, text\n"
            "\nExamples:\n"
            "  ftc retrieve --model all-MiniLM-L6-v2 --index examples/faq/train.jsonl --data examples/faq/test.jsonl\n"
            "  ftc retrieve --model all-MiniLM-L6-v2 --index train.csv --data new.csv --predictions\n");
}

typedef struct { char **text, **label; size_t n, cap; } texts;

static void texts_free(texts *t) {
    for (size_t i = 0; i < t->n; i++) { free(t->text[i]); free(t->label[i]); }
    free(t->text);
    free(t->label);
}

static ftc_status read_labelled(const char *path, texts *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    ftc_read_opts o = {.format = FTC_FMT_LABEL};
    ftc_reader *r;
    ftc_status st = ftc_reader_open(path, &o, &r, err);
    if (st) return st;
    ftc_record rec = {0};
    bool got;
    while (!(st = ftc_reader_next(r, &rec, &got, err)) && got) {
        if (!rec.label) { st = ftc_errf(err, FTC_E_INPUT, "%s:%ld: record has no label", path, rec.line); break; }
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 256;
            out->text = realloc(out->text, sizeof(char *) * out->cap);
            out->label = realloc(out->label, sizeof(char *) * out->cap);
            if (!out->text || !out->label) { st = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
        }
        out->text[out->n] = strdup(rec.text);
        out->label[out->n] = strdup(rec.label);
        out->n++;
    }
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    if (!st && out->n == 0) st = ftc_errf(err, FTC_E_INPUT, "%s: no records", path);
    return st;
}

int cmd_retrieve(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *model = NULL, *index = NULL, *data = NULL;
    int max_len = 128, batch = 32;
    bool as_json = false, preds = false;
    static const cli_opt opts[] = {{"model", false, NULL}, {"index", false, NULL}, {"data", false, NULL},
                                   {"max-len", false, NULL}, {"batch", false, NULL}, {"json", true, NULL},
                                   {"predictions", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "retrieve", argc, argv, 1, opts, 0);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        long n;
        if (!a) return cli_usage_error("retrieve", "unexpected argument '%s'", v);
        if (!strcmp(a, "json")) as_json = cli_true(v);
        else if (!strcmp(a, "predictions")) preds = cli_true(v);
        else if (!strcmp(a, "model")) model = v;
        else if (!strcmp(a, "index")) index = v;
        else if (!strcmp(a, "data")) data = v;
        else if (!strcmp(a, "max-len")) {
            if (!cli_parse_long(v, 2, 1 << 20, &n)) return cli_usage_error("retrieve", "--max-len must be an integer >= 2");
            max_len = (int)n;
        } else {
            if (!cli_parse_long(v, 1, 1 << 16, &n)) return cli_usage_error("retrieve", "--batch must be an integer >= 1");
            batch = (int)n;
        }
    }
    if (r < 0) return 1;
    if (!model || !index || !data) return cli_usage_error("retrieve", "--model, --index and --data are required");

    ftc_err err;
    int rc = 0;
    texts tr = {0}, te = {0};
    ftc_tokenizer *tok = NULL;
    ftc_model *m = NULL;
    float *ek = NULL, *eq = NULL;
    int32_t *best = NULL;
    float *sim = NULL;
    ftc_label_map map = {0};
    ftc_class_metrics cm = {0};
    bool have_cm = false;
    if (read_labelled(index, &tr, &err) || read_labelled(data, &te, &err) ||
        ftc_tokenizer_load(model, &tok, &err) || ftc_model_load(model, FTC_TASK_ENCODE, &m, &err)) {
        rc = cli_fail("retrieve", &err);
        goto done;
    }
    int C = ftc_model_config_of(m)->hidden_size;
    ek = malloc(sizeof(float) * tr.n * C);
    eq = malloc(sizeof(float) * te.n * C);
    best = malloc(sizeof(int32_t) * te.n);
    sim = malloc(sizeof(float) * te.n);
    if (!ek || !eq || !best || !sim) { ftc_errf(&err, FTC_E_NOMEM, "out of memory"); rc = cli_fail("retrieve", &err); goto done; }
    double t0 = ftc_now();
    if (ftc_embed_texts(m, tok, (const char *const *)tr.text, tr.n, max_len, batch, ek, &err)) {
        rc = cli_fail("retrieve", &err);
        goto done;
    }
    double t1 = ftc_now();
    /* Latency as a user sees it: one query at a time (batch 1), embedding plus search. */
    for (size_t i = 0; i < te.n; i++) {
        if (ftc_embed_texts(m, tok, (const char *const *)&te.text[i], 1, max_len, 1, eq + i * C, &err)) {
            rc = cli_fail("retrieve", &err);
            goto done;
        }
        ftc_nearest(eq + i * C, 1, ek, tr.n, C, &best[i], &sim[i]);
    }
    double t2 = ftc_now(), latency_ms = 1000.0 * (t2 - t1) / (double)te.n;
    if (ftc_label_map_build((const char *const *)tr.label, tr.n, &map, &err) ||
        ftc_class_metrics_init(&cm, map.n, &err)) {
        rc = cli_fail("retrieve", &err);
        goto done;
    }
    have_cm = true;
    for (size_t i = 0; i < te.n; i++) {
        int truth = ftc_label_map_find(&map, te.label[i]);
        int pred = ftc_label_map_find(&map, tr.label[best[i]]);
        if (truth < 0) {
            ftc_errf(&err, FTC_E_INPUT, "%s: label \"%s\" (record %zu) never occurs in %s", data, te.label[i], i + 1, index);
            rc = cli_fail("retrieve", &err);
            goto done;
        }
        if (ftc_class_metrics_add(&cm, truth, pred, &err)) { rc = cli_fail("retrieve", &err); goto done; }
        if (preds) printf("%s\t%.3f\t%s\n", tr.label[best[i]], sim[i], te.text[i]);
    }
    ftc_class_metrics_finish(&cm);
    if (as_json) {
        json_t *o = ftc_class_metrics_json(&cm, (const char *const *)map.names);
        json_object_set_new(o, "method", json_string("retrieval"));
        json_object_set_new(o, "n_index", json_integer((json_int_t)tr.n));
        json_object_set_new(o, "index_seconds", json_real(t1 - t0));
        json_object_set_new(o, "latency_ms", json_real(latency_ms));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("retrieval baseline: %zu queries against %zu indexed texts (%d labels)\n", te.n, tr.n, map.n);
        printf("  accuracy   %.4f\n  macro-F1   %.4f\n  indexing   %.2f s\n  latency    %.1f ms per query\n",
               cm.accuracy, cm.macro_f1, t1 - t0, latency_ms);
    }
done:
    if (have_cm) ftc_class_metrics_free(&cm);
    if (map.names) ftc_label_map_free(&map);
    free(ek); free(eq); free(best); free(sim);
    ftc_model_free(m);
    ftc_tokenizer_free(tok);
    texts_free(&tr);
    texts_free(&te);
    return rc;
}

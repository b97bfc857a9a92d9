/* ftc classify: label texts with a classification model (an ftc classify run, or a model directory with a
 * sequence-classification head): the label, its probability and the top 3, as text or JSONL. */
#include "cli.h"
#include "ftc/infer.h"
#include "base/base_internal.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc classify --model RUNDIR|DIR [--jsonl] [--top K] [--batch N] TEXT...\n"
            "       ftc classify --model RUNDIR|DIR [--jsonl] [--top K] [--batch N] --file F\n\n"
            "Prints, for each text, the predicted label, its probability and the K most likely labels.\n"
            "  --model RUNDIR|DIR  an ftc run trained with --task classify (its model/ and labels), or a model\n"
            "                      directory whose config.json has id2label and whose weights have the head\n"
            "                      (classifier.* / score.*), e.g. one written by ftc export\n"
            "  --file F            texts from F ('-' = standard input): one per line, or JSONL lines\n"
            "                      {\"text\": ...} (other keys are ignored); blank lines are skipped\n"
            "  --jsonl             one JSON object per text: {\"text\", \"label\", \"probability\",\n"
            "                      \"top\": [{\"label\", \"probability\"}, ...]}\n"
            "  --top K             how many labels to list (default 3)\n"
            "  --batch N           texts per forward pass (default 16)\n"
            "Text output: LABEL<TAB>PROBABILITY<TAB>top: L1 P1, L2 P2, L3 P3<TAB>TEXT\n"
            "Texts longer than the model's context (or the run's --max-len) are truncated as in training.\n"
            "Exit codes: 0 ok, 1 usage error, 2 bad input (model, file), 3 internal error.\n"
            "\nExamples:\n"
            "  ftc classify --model runs/intents \"my card was charged twice\" \"where is my refund\"\n"
            "  ftc classify --model runs/intents --file questions.txt --jsonl --top 3\n");
}

typedef struct {
    ftc_infer_model im;
    int num_labels, top, max_len, batch;
    char **names;
    bool jsonl;
    /* the batch being filled */
    char **texts;
    ftc_ids *ids;
    int n;
    int *order;
} classifier;

static const float *sort_prob;
static int by_prob(const void *a, const void *b) {
    float pa = sort_prob[*(const int *)a], pb = sort_prob[*(const int *)b];
    if (pa != pb) return pa > pb ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

static int print_result(classifier *c, const char *text, const float *p) {
    for (int i = 0; i < c->num_labels; i++) c->order[i] = i;
    sort_prob = p;
    qsort(c->order, (size_t)c->num_labels, sizeof *c->order, by_prob);
    int k = c->top < c->num_labels ? c->top : c->num_labels;
    if (c->jsonl) {
        json_t *o = json_object(), *top = json_array();
        json_object_set_new(o, "text", json_string(text));
        json_object_set_new(o, "label", json_string(c->names[c->order[0]]));
        json_object_set_new(o, "probability", json_real(p[c->order[0]]));
        for (int i = 0; i < k; i++)
            json_array_append_new(top, json_pack("{s:s,s:f}", "label", c->names[c->order[i]], "probability",
                                                 (double)p[c->order[i]]));
        json_object_set_new(o, "top", top);
        char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6));
        json_decref(o);
        if (!line) return 3;
        puts(line);
        free(line);
    } else {
        printf("%s\t%.4f\ttop:", c->names[c->order[0]], p[c->order[0]]);
        for (int i = 0; i < k; i++) printf("%s %s %.4f", i ? "," : "", c->names[c->order[i]], p[c->order[i]]);
        putchar('\t');
        for (const char *s = text; *s; s++) putchar(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s);
        putchar('\n');
    }
    return 0;
}

/* Runs the collected texts through the model (one right-padded batch) and prints them in order. */
static int flush_batch(classifier *c) {
    if (!c->n) return 0;
    ftc_err err;
    float *probs = malloc((size_t)c->n * c->num_labels * sizeof *probs);
    if (!probs) return 3;
    if (ftc_classify_ids(&c->im, c->ids, c->n, c->num_labels, probs, &err)) {
        free(probs);
        return cli_fail("classify", &err);
    }
    int rc = 0;
    for (int i = 0; i < c->n && !rc; i++) rc = print_result(c, c->texts[i], probs + (size_t)i * c->num_labels);
    free(probs);
    for (int i = 0; i < c->n; i++) free(c->texts[i]), c->ids[i].n = 0;
    c->n = 0;
    fflush(stdout);
    return rc;
}

static int add_text(classifier *c, const char *text, const char *where) {
    ftc_err err;
    if (ftc_classify_encode(&c->im, text, c->max_len, &c->ids[c->n], &err)) {
        ftc_err_prefix(&err, "%s", where);
        return cli_fail("classify", &err);
    }
    c->texts[c->n] = strdup(text);
    if (!c->texts[c->n]) return 3;
    c->n++;
    return c->n == c->batch ? flush_batch(c) : 0;
}

static int classify_file(classifier *c, const char *file) {
    FILE *f = stdin;
    ftc_err oe;
    if (strcmp(file, "-") && ftc_open_read(file, &f, &oe)) return cli_fail("classify", &oe);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) continue;
        char where[4200];
        snprintf(where, sizeof where, "%.4000s:%ld", file, lineno);
        if (*p == '{') { /* JSONL */
            json_error_t je;
            json_t *o = json_loads(p, 0, &je);
            json_t *t = o ? json_object_get(o, "text") : NULL;
            if (!o || !json_is_string(t)) {
                if (!o) fprintf(stderr, "ftc classify: error: %s:%d: not valid JSON: %s\n", where, je.column, je.text);
                else fprintf(stderr, "ftc classify: error: %s: field \"text\" is missing or not a string\n", where);
                json_decref(o);
                rc = 2;
                break;
            }
            rc = add_text(c, json_string_value(t), where);
            json_decref(o);
        } else {
            rc = add_text(c, line, where);
        }
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "ftc classify: error: reading %s: %s\n", file, strerror(errno));
        rc = 2;
    }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

/* Label names: the run's labels.json, else config.json id2label, else the class indices. */
static int load_names(classifier *c, const char *model) {
    ftc_err err;
    if (ftc_classify_labels(&c->im, model, c->num_labels, &c->names, &err)) return cli_fail("classify", &err);
    return 0;
}

int cmd_classify(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *model = NULL, *file = NULL;
    classifier c;
    memset(&c, 0, sizeof c);
    c.top = 3, c.batch = 16;
    static const cli_opt opts[] = {{"model", false, NULL}, {"file", false, NULL}, {"top", false, NULL},
                                   {"batch", false, NULL}, {"jsonl", true, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "classify", argc, argv, 1, opts, CLI_HAS_POSITIONAL | CLI_POSITIONAL_ENDS);
    const char *f, *v;
    int r, first = argc;
    while ((r = cli_next(&p, &f, &v)) > 0) {
        if (!f) { first = p.i - 1; break; }
        if (!strcmp(f, "jsonl")) c.jsonl = cli_true(v);
        else if (!strcmp(f, "model")) model = v;
        else if (!strcmp(f, "file")) file = v;
        else {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || end == v || n < 1 || n > 4096)
                return cli_usage_error("classify", "--%s needs an integer in 1..4096, not '%s'", f, v);
            if (!strcmp(f, "top")) c.top = (int)n;
            else c.batch = (int)n;
        }
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("classify", "--model RUNDIR|DIR is required");
    if (file && first < argc) return cli_usage_error("classify", "give TEXT arguments or --file F, not both");
    if (!file && first >= argc) return cli_usage_error("classify", "give TEXT arguments or --file F");
    for (int i = first; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == '-')
            return cli_usage_error("classify", "options go before the texts: '%s'", argv[i]);
    ftc_err err;
    if (ftc_infer_open(model, FTC_TASK_CLASSIFY, &c.im, &err)) return cli_fail("classify", &err);
    int rc = 0;
    const ftc_model_config *cfg = ftc_model_config_of(c.im.model);
    if ((c.num_labels = ftc_classify_num_labels(&c.im)) < 0) {
        fprintf(stderr, "ftc classify: error: %s has no classification head (config.json id2label and %s weights); "
                        "train one with ftc train --task classify\n", model,
                cfg->family == FTC_FAMILY_BERT ? "classifier.*" : "score.*");
        ftc_infer_close(&c.im);
        return 2;
    }
    /* pooling is the model's: ftc_pooling in config.json (what the run trained with), else the family's
     * (BERT's [CLS] through its pooler, decoders' last real token, as transformers' *ForSequenceClassification) */
    c.max_len = ftc_classify_max_len(&c.im);
    if ((rc = load_names(&c, model))) goto done;
    c.texts = calloc((size_t)c.batch, sizeof *c.texts);
    c.ids = calloc((size_t)c.batch, sizeof *c.ids);
    c.order = malloc((size_t)c.num_labels * sizeof *c.order);
    if (!c.texts || !c.ids || !c.order) {
        fprintf(stderr, "ftc classify: error: out of memory\n");
        rc = 3;
        goto done;
    }
    if (file) rc = classify_file(&c, file);
    else
        for (int i = first; i < argc && !rc; i++) {
            char where[32];
            snprintf(where, sizeof where, "text %d", i - first + 1);
            rc = add_text(&c, argv[i], where);
        }
    if (!rc) rc = flush_batch(&c);
    if (!rc) rc = cli_check_stdout("classify");
done:
    for (int i = 0; c.texts && i < c.n; i++) free(c.texts[i]);
    for (int i = 0; c.ids && i < c.batch; i++) ftc_ids_free(&c.ids[i]);
    ftc_classify_free_labels(c.names, c.num_labels);
    free(c.texts), free(c.ids), free(c.order);
    ftc_infer_close(&c.im);
    return rc;
}

/* ftc data: check task data before training (every bad line, lengths, duplicates, leakage, labels, steps),
 * preview how examples are templated and masked, and write train/val/test splits. */
#include "cli.h"
#include "ftc/base.h"
#include "ftc/data.h"
#include "ftc/tokenizer.h"
#include "ftc/train.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: ftc data check --model DIR --data FILE [--val FILE] [--max-len N] [--json] [options]\n"
            "       ftc data preview --model DIR --data FILE [-n N] [options]\n"
            "       ftc data split --data FILE --out DIR [--val-split F] [--test-split F] [--seed N] [options]\n\n"
            "check    reads all of FILE (and --val FILE), reports every bad line as file:line:column (up to\n"
            "         --max-errors, all counted) and the statistics that matter before training: tokens per\n"
            "         example, how many exceed --max-len, examples with nothing to train on, exact and near\n"
            "         duplicates, train/val overlap, label counts and imbalance, tokens and steps of the run.\n"
            "         Exit 0 when the data has no errors, 2 when it has.\n"
            "preview  prints the first N (default 3) examples as the trainer sees them: the templated text,\n"
            "         with trained tokens between [[ and ]].\n"
            "split    writes DIR/train.jsonl, DIR/val.jsonl (and DIR/test.jsonl): shuffled with --seed,\n"
            "         stratified by label for labelled data (classification), records in JSONL.\n\n"
            "Data (formats in docs/data.md):\n"
            "  --data FILE          .jsonl (text | prompt+completion | messages | text+label), .csv/.tsv with a\n"
            "                       header, .txt (one example per blank-line-separated paragraph), or a\n"
            "                       directory of .txt/.md files (one example per file)\n"
            "  --val FILE           validation data (check: leakage and unseen labels)\n"
            "  --format F           text | completion | chat | label (default: from the first valid record)\n"
            "  --file-type T        jsonl | csv | tsv | txt (default: from the extension)\n"
            "  --text-col C         CSV/TSV column with the text (default: text, sentence, content, ...)\n"
            "  --label-col C        CSV/TSV column with the label (default: label, category, intent, ...)\n"
            "  --text-pair-col C    CSV/TSV column with the second text of a pair (default: text_pair, or the\n"
            "                       pairs sentence1/sentence2, premise/hypothesis, question1/question2)\n"
            "  --txt-mode M         paragraph | file: a whole .txt file is one example (default: paragraph for\n"
            "                       a file, file for a directory)\n"
            "Examples:\n"
            "  --model DIR          the model (its tokenizer and tokenizer_config.json chat_template)\n"
            "  --task T             causal-lm | classify (default: classify for labelled data)\n"
            "  --chat-template T    the model's own Jinja template (default), or chatml | llama3 | llama2 |\n"
            "                       zephyr | plain, or a .jinja file; chat data needs one\n"
            "  --train-on-inputs    train on prompt/user tokens too (default: answers only)\n"
            "  --max-len N          tokens per example (default 128, as ftc train)\n"
            "  --truncation S       right (default) | left: which end --max-len cuts\n"
            "check:\n"
            "  --batch N --grad-accum N --epochs N   for the step estimate (defaults as ftc train: 16, 1, 3)\n"
            "  --max-errors N       errors listed (default 50)\n"
            "  --json               the report as JSON\n"
            "split:\n"
            "  --val-split F --test-split F   shares in [0, 1) (default 0.1 and 0)\n"
            "  --seed N             shuffle seed (default 42)\n");
}

typedef struct {
    const char *model, *data, *val, *out;
    ftc_read_opts read;
    ftc_encode_opts enc;
    bool task_given, json;
    const char *tmpl_value;        /* --chat-template */
    ftc_chat_template *tmpl;       /* what enc.tmpl points to (freed by teardown) */
    int batch, grad_accum, epochs, max_errors, preview_n;
    double val_share, test_share;
    uint64_t seed;
} data_args;

static int parse_int(const char *cmd, const char *flag, const char *s, int lo, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > 1 << 30)
        return cli_usage_error(cmd, "%s needs an integer >= %d, got '%s'", flag, lo, s);
    *out = (int)v;
    return 0;
}

static int parse_share(const char *cmd, const char *flag, const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= 0 && v < 1)) return cli_usage_error(cmd, "%s needs a number in [0, 1), got '%s'", flag, s);
    *out = v;
    return 0;
}

static int parse_args(const char *cmd, int argc, char **argv, data_args *a) {
    ftc_train_config defaults;
    ftc_train_config_defaults(&defaults);
    memset(a, 0, sizeof *a);
    a->enc.max_len = defaults.max_len;
    a->batch = defaults.batch;
    a->grad_accum = defaults.grad_accum;
    a->epochs = defaults.epochs;
    a->max_errors = 50;
    a->preview_n = 3;
    a->val_share = 0.1;
    a->seed = defaults.seed;
    ftc_err err;
    static const cli_opt opts[] = {
        {"model", false, NULL}, {"data", false, NULL}, {"val", false, NULL}, {"out", false, NULL},
        {"text-col", false, NULL}, {"label-col", false, NULL}, {"text-pair-col", false, NULL}, {"max-len", false, NULL},
        {"batch", false, NULL}, {"grad-accum", false, NULL}, {"epochs", false, NULL}, {"max-errors", false, NULL},
        {"-n", false, NULL}, {"val-split", false, NULL}, {"test-split", false, NULL}, {"seed", false, NULL},
        {"format", false, NULL}, {"file-type", false, NULL}, {"txt-mode", false, NULL}, {"chat-template", false, NULL},
        {"task", false, NULL}, {"truncation", false, NULL}, {"json", true, NULL}, {"train-on-inputs", true, NULL},
        {"template", false, "chat-template"}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, cmd, argc, argv, 2, opts, 0);
    const char *f, *v;
    int r;
    while ((r = cli_next(&p, &f, &v)) > 0) {
        int rc = 0;
        if (!f) return cli_usage_error(cmd, "unexpected argument '%s'", v);
        if (!strcmp(f, "json")) a->json = cli_true(v);
        else if (!strcmp(f, "train-on-inputs")) a->enc.train_on_inputs = cli_true(v);
        else if (!strcmp(f, "model")) a->model = v;
        else if (!strcmp(f, "data")) a->data = v;
        else if (!strcmp(f, "val")) a->val = v;
        else if (!strcmp(f, "out")) a->out = v;
        else if (!strcmp(f, "text-col")) a->read.text_col = v;
        else if (!strcmp(f, "label-col")) a->read.label_col = v;
        else if (!strcmp(f, "text-pair-col")) a->read.text_pair_col = v;
        else if (!strcmp(f, "max-len")) rc = parse_int(cmd, "--max-len", v, 1, &a->enc.max_len);
        else if (!strcmp(f, "batch")) rc = parse_int(cmd, "--batch", v, 1, &a->batch);
        else if (!strcmp(f, "grad-accum")) rc = parse_int(cmd, "--grad-accum", v, 1, &a->grad_accum);
        else if (!strcmp(f, "epochs")) rc = parse_int(cmd, "--epochs", v, 1, &a->epochs);
        else if (!strcmp(f, "max-errors")) rc = parse_int(cmd, "--max-errors", v, 0, &a->max_errors);
        else if (!strcmp(f, "-n")) rc = parse_int(cmd, "-n", v, 1, &a->preview_n);
        else if (!strcmp(f, "val-split")) rc = parse_share(cmd, "--val-split", v, &a->val_share);
        else if (!strcmp(f, "test-split")) rc = parse_share(cmd, "--test-split", v, &a->test_share);
        else if (!strcmp(f, "seed")) {
            char *end;
            a->seed = strtoull(v, &end, 10);
            if (*end || end == v) return cli_usage_error(cmd, "--seed needs a non-negative integer, got '%s'", v);
        } else if (!strcmp(f, "format")) {
            if (ftc_data_format_parse(v, &a->read.format, &err)) return cli_usage_error(cmd, "%s", err.msg);
        } else if (!strcmp(f, "file-type")) {
            if (ftc_file_kind_parse(v, &a->read.file_kind, &err)) return cli_usage_error(cmd, "%s", err.msg);
        } else if (!strcmp(f, "txt-mode")) {
            if (!strcmp(v, "paragraph")) a->read.txt_mode = FTC_TXT_PARAGRAPH;
            else if (!strcmp(v, "file")) a->read.txt_mode = FTC_TXT_FILE;
            else return cli_usage_error(cmd, "--txt-mode is paragraph or file, got '%s'", v);
        } else if (!strcmp(f, "chat-template")) {
            a->tmpl_value = v;
        } else if (!strcmp(f, "task")) {
            if (!strcmp(v, "causal-lm")) a->enc.task = FTC_TASK_CAUSAL_LM;
            else if (!strcmp(v, "classify")) a->enc.task = FTC_TASK_CLASSIFY;
            else return cli_usage_error(cmd, "--task is causal-lm or classify, got '%s'", v);
            a->task_given = true;
        } else if (!strcmp(f, "truncation")) {
            if (!strcmp(v, "right")) a->enc.truncation = FTC_TRUNC_RIGHT;
            else if (!strcmp(v, "left")) a->enc.truncation = FTC_TRUNC_LEFT;
            else return cli_usage_error(cmd, "--truncation is left or right, got '%s'", v);
        }
        if (rc) return rc;
    }
    if (r < 0) return 1;
    if (!a->data) return cli_usage_error(cmd, "--data FILE is required");
    return 0;
}

/* The format of the data (first valid record), to choose the task when --task is not given. */
static ftc_data_format sniff_format(const data_args *a) {
    ftc_reader *r;
    ftc_err e;
    if (ftc_reader_open(a->data, &a->read, &r, &e) != FTC_OK) return FTC_FMT_AUTO;
    ftc_record rec = {0};
    bool got = false;
    for (int i = 0; i < 1000; i++) {
        ftc_status s = ftc_reader_next(r, &rec, &got, &e);
        if (s == FTC_OK || s != FTC_E_INPUT) break;
    }
    ftc_data_format f = got ? rec.format : ftc_reader_format(r);
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    return f;
}

/* Task and template defaults; the tokenizer when --model is given. */
static int setup(const char *cmd, data_args *a, ftc_tokenizer **tok, ftc_data_encoder *enc) {
    ftc_err err;
    *tok = NULL;
    if (!a->task_given) a->enc.task = sniff_format(a) == FTC_FMT_LABEL ? FTC_TASK_CLASSIFY : FTC_TASK_CAUSAL_LM;
    if (a->model && !ftc_is_dir(a->model)) {
        ftc_errf(&err, FTC_E_IO, "%s: not a directory", a->model);
        return cli_fail(cmd, &err);
    }
    /* --chat-template (a preset, a .jinja file, "model"), else the model's own */
    ftc_status s = ftc_chat_template_choose(a->tmpl_value, a->model, &a->tmpl, &err);
    if (s == FTC_E_USAGE) return cli_usage_error(cmd, "%s", err.msg);
    if (s != FTC_OK) return cli_fail(cmd, &err);
    a->enc.tmpl = a->tmpl;
    if (!a->model) return 0;
    if (ftc_tokenizer_load(a->model, tok, &err)) {
        ftc_chat_template_free(a->tmpl);
        return cli_fail(cmd, &err);
    }
    ftc_data_encoder_from_tokenizer(*tok, enc);
    return 0;
}

static int run_check(int argc, char **argv) {
    const char *cmd = "data check";
    data_args a;
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc) return rc;
    ftc_tokenizer *tok;
    ftc_data_encoder enc;
    if ((rc = setup(cmd, &a, &tok, &enc))) return rc;
    ftc_check_opts o = {.read = a.read, .enc = a.enc, .task_given = a.task_given, .max_errors = a.max_errors,
                        .batch = a.batch, .grad_accum = a.grad_accum, .epochs = a.epochs};
    json_t *report;
    ftc_err err;
    ftc_status s = ftc_data_check(a.data, a.val, &o, tok ? &enc : NULL, &report, &err);
    ftc_tokenizer_free(tok);
    ftc_chat_template_free(a.tmpl);
    if (s != FTC_OK) return cli_fail(cmd, &err);
    if (a.json) {
        json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    } else {
        if (!a.model) printf("(no --model: token statistics skipped)\n");
        ftc_data_check_print(report, stdout);
    }
    int n_err = (int)json_integer_value(json_object_get(report, "n_errors"));
    json_decref(report);
    return n_err ? 2 : 0;
}

static int run_preview(int argc, char **argv) {
    const char *cmd = "data preview";
    data_args a;
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc) return rc;
    if (!a.model) return cli_usage_error(cmd, "--model DIR is required (its tokenizer makes the tokens)");
    ftc_tokenizer *tok;
    ftc_data_encoder enc;
    if ((rc = setup(cmd, &a, &tok, &enc))) return rc;
    ftc_reader *r;
    ftc_err err;
    if (ftc_reader_open(a.data, &a.read, &r, &err)) {
        ftc_tokenizer_free(tok);
        ftc_chat_template_free(a.tmpl);
        return cli_fail(cmd, &err);
    }
    ftc_record rec = {0};
    int shown = 0;
    rc = 0;
    while (shown < a.preview_n) {
        bool got;
        ftc_status s = ftc_reader_next(r, &rec, &got, &err);
        if (s != FTC_OK) { rc = cli_fail(cmd, &err); break; }
        if (!got) break;
        ftc_example ex;
        bool cut;
        s = ftc_data_encode_record(&rec, &a.enc, &enc, NULL, a.data, &ex, &cut, &err);
        if (s != FTC_OK) { rc = cli_fail(cmd, &err); break; }
        printf("--- %s:%ld: %d tokens, %d trained%s%s\n", a.data, rec.line, ex.len,
               a.enc.task == FTC_TASK_CLASSIFY ? 0 : ftc_example_trained_tokens(&ex), cut ? ", truncated" : "",
               a.enc.task == FTC_TASK_CLASSIFY ? "" : "");
        if (a.enc.task == FTC_TASK_CLASSIFY) printf("label: %s\n", rec.label);
        /* the text piece by piece: runs of trained tokens decoded between [[ ]] */
        for (int i = 0; i < ex.len;) {
            bool trained = ex.labels && i > 0 && ex.labels[i] != -100;
            int j = i + 1;
            while (j < ex.len && (ex.labels && j > 0 && ex.labels[j] != -100) == trained) j++;
            char *text = NULL;
            if (ftc_tokenizer_decode(tok, ex.ids + i, (size_t)(j - i), false, &text, &err) == FTC_OK) {
                printf("%s%s%s", trained ? "[[" : "", text, trained ? "]]" : "");
                free(text);
            }
            i = j;
        }
        printf("\n");
        ftc_example_free(&ex);
        shown++;
    }
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    ftc_tokenizer_free(tok);
    ftc_chat_template_free(a.tmpl);
    return rc;
}

static int run_split(int argc, char **argv) {
    const char *cmd = "data split";
    data_args a;
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc) return rc;
    if (!a.out) return cli_usage_error(cmd, "--out DIR is required");
    if (a.val_share + a.test_share >= 1) return cli_usage_error(cmd, "--val-split + --test-split must be below 1");
    /* no tokenizer needed: records are written back as JSONL */
    ftc_err err;
    ftc_reader *r;
    if (ftc_reader_open(a.data, &a.read, &r, &err)) return cli_fail(cmd, &err);
    ftc_record *recs = NULL;
    size_t n = 0, cap = 0;
    ftc_status s = FTC_OK;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            ftc_record *x = realloc(recs, cap * sizeof *x);
            if (!x) { s = ftc_errf(&err, FTC_E_NOMEM, "out of memory"); break; }
            recs = x;
        }
        memset(&recs[n], 0, sizeof recs[n]);
        bool got;
        s = ftc_reader_next(r, &recs[n], &got, &err);
        if (s != FTC_OK || !got) break;
        n++;
    }
    ftc_reader_close(r);
    const char **names = NULL;
    int32_t *cls = NULL;
    uint8_t *which = NULL;
    ftc_label_map map = {0};
    bool labelled = n && recs[0].format == FTC_FMT_LABEL;
    if (s == FTC_OK && n == 0) s = ftc_errf(&err, FTC_E_INPUT, "%s: no records", a.data);
    if (s == FTC_OK && labelled) {
        names = malloc(n * sizeof *names);
        cls = malloc(n * sizeof *cls);
        if (!names || !cls) s = ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        for (size_t i = 0; s == FTC_OK && i < n; i++) names[i] = recs[i].label;
        if (s == FTC_OK) s = ftc_label_map_build(names, n, &map, &err);
        for (size_t i = 0; s == FTC_OK && i < n; i++) cls[i] = ftc_label_map_find(&map, recs[i].label);
    }
    if (s == FTC_OK && !(which = malloc(n))) s = ftc_errf(&err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) s = ftc_data_split(n, cls, a.val_share, a.test_share, a.seed, which, &err);
    if (s == FTC_OK) s = ftc_mkdirs(a.out, &err);
    const char *files[] = {"train", "val", "test"};
    size_t counts[3] = {0, 0, 0};
    for (int k = 0; s == FTC_OK && k < 3; k++) {
        if (k == 2 && a.test_share == 0) break;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.jsonl", a.out, files[k]);
        ftc_atomic_file af;
        if ((s = ftc_atomic_open(&af, path, &err))) break;
        for (size_t i = 0; i < n; i++) {
            if (which[i] != k) continue;
            char *line = ftc_record_to_jsonl(&recs[i]);
            if (line) { fputs(line, af.f); fputc('\n', af.f); free(line); }
            counts[k]++;
        }
        s = ftc_atomic_commit(&af, &err);
        if (s == FTC_OK) printf("%s: %zu records\n", path, counts[k]);
    }
    for (size_t i = 0; i < n; i++) ftc_record_clear(&recs[i]);
    if (recs && n < cap) ftc_record_clear(&recs[n]);
    free(recs);
    free(names);
    free(cls);
    free(which);
    ftc_label_map_free(&map);
    if (s != FTC_OK) return cli_fail(cmd, &err);
    if (labelled) printf("stratified by label (%d labels), seed %llu\n", map.n, (unsigned long long)a.seed);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "check")) return run_check(argc, argv);
    if (!strcmp(argv[1], "preview")) return run_preview(argc, argv);
    if (!strcmp(argv[1], "split")) return run_split(argc, argv);
    return cli_usage_error("data", "unknown subcommand '%s' (check, preview or split)", argv[1]);
}

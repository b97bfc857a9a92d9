/* `ftc eval --model RUNDIR`: evaluates a training run's model (RUNDIR/model: the best; a LoRA run's base + adapter/)
 * on data read the way the run read its own (src/train/rundir.c); with --compare BASE_DIR, the base model
 * on the same examples beside it. Called from cmd_eval. */
#include "cli.h"
#include "ftc/train.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double num(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_REAL_PRECISION(8));
    printf("%s\n", s ? s : "null");
    free(s);
}

/* What the base column is, in words (printed above the table, and kept in the --json output). held: the type the
 * base column keeps the frozen weights in as the run did (ftc_run_dir_compare_base_dtype), NULL: as stored. */
static void base_note(char *buf, size_t n, const char *base, bool classify, const char *held) {
    char how[96] = "";
    if (held)
        snprintf(how, sizeof how, ", its frozen weights in %s as the run trained on them (--base-dtype)", held);
    if (classify)
        snprintf(buf, n, "base = %s backbone with the tuned run's classification head (the base model has no head of "
                 "its own)%s", base, how);
    else
        snprintf(buf, n, "base = %s (the pretrained model; for a LoRA run: without the adapters)%s, on the same "
                 "examples, tokenizer and chat template", base, how);
}

static bool same_path(const char *a, const char *b) {
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb ? !strcmp(ra, rb) : !strcmp(a, b);
    free(ra), free(rb);
    return same;
}

/* metric | base | tuned | delta; integers (counts) without a delta. */
static void print_table(const json_t *base, const json_t *tuned, bool classify) {
    static const char *const lm_keys[] = {"loss", "perplexity", "token_accuracy", "n_tokens", "n_examples"};
    static const char *const lm_names[] = {"loss", "perplexity", "token acc.", "tokens", "examples"};
    static const char *const cls_keys[] = {"loss", "accuracy", "macro_f1", "weighted_f1", "n_examples"};
    static const char *const cls_names[] = {"loss", "accuracy", "macro-F1", "weighted F1", "examples"};
    const char *const *keys = classify ? cls_keys : lm_keys, *const *names = classify ? cls_names : lm_names;
    printf("%-12s %12s %12s %12s\n", "metric", "base", "tuned", "delta");
    for (int i = 0; i < 5; i++) {
        double b = num(base, keys[i]), t = num(tuned, keys[i]);
        if (!strncmp(keys[i], "n_", 2))
            printf("%-12s %12.0f %12.0f\n", names[i], b, t);
        else
            printf("%-12s %12.4f %12.4f %+12.4f\n", names[i], b, t, t - b);
    }
}

/* The evaluation as --json prints it and RUNDIR/eval.json keeps it: the tuned model's keys at the top (as
 * `ftc report` reads them), with a comparison also "tuned", "base", "base_model" and "base_note".
 * Borrows j and base; NULL when out of memory. */
static json_t *eval_document(json_t *j, json_t *base, const char *compare, const char *note, const char *data) {
    json_t *out = json_deep_copy(j);
    if (!out) return NULL;
    if (data) json_object_set_new(out, "data", json_string(data));
    if (compare) {
        json_object_set(out, "tuned", j);
        json_object_set(out, "base", base);
        json_object_set_new(out, "base_model", json_string(compare));
        json_object_set_new(out, "base_note", json_string(note));
    }
    return out;
}

int cli_print_eval(json_t *j, json_t *base, const char *compare, const char *note, const char *tuned_name,
                      bool as_json) {
    bool classify = json_object_get(j, "accuracy") != NULL;
    int rc = 0;
    if (as_json) {
        json_t *out = eval_document(j, base, compare, note, NULL);
        if (!out) {
            ftc_err err;
            ftc_errf(&err, FTC_E_NOMEM, "out of memory");
            rc = cli_fail("eval", &err);
        } else {
            print_json(out);
            json_decref(out);
        }
    } else if (compare) {
        printf("%s\ntuned = %s\n", note, tuned_name);
        print_table(base, j, classify);
    } else if (classify) {
        printf("loss        %.4f\naccuracy    %.4f\nmacro-F1    %.4f\nexamples    %lld\n", num(j, "loss"),
               num(j, "accuracy"), num(j, "macro_f1"), (long long)num(j, "n_examples"));
    } else {
        printf("loss        %.4f\nperplexity  %.3f\ntoken acc.  %.4f\ntokens      %lld (trained tokens of %lld examples)\n",
               num(j, "loss"), num(j, "perplexity"), num(j, "token_accuracy"), (long long)num(j, "n_tokens"),
               (long long)num(j, "n_examples"));
    }
    json_decref(j);
    json_decref(base);
    return rc;
}

/* RUNDIR/eval.json (atomically): what `ftc report` shows as the final metrics. */
static ftc_status save_eval_json(const char *rundir, json_t *doc, ftc_err *err) {
    char path[FTC_PATH_MAX + 16];
    if (!ftc_path_join(path, sizeof path, rundir, "eval.json"))
        return ftc_errf(err, FTC_E_INPUT, "%s: run directory path too long", rundir);
    char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
    if (!text) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room for its NUL: the newline takes it */
    ftc_status s = ftc_write_file_atomic(path, text, n + 1, err);
    free(text);
    return s;
}

ftc_status cli_eval_record(const char *rundir, const ftc_dataset *d, const char *data_label, bool print, ftc_err *err) {
    ftc_train_config *rc = malloc(sizeof *rc);
    char path[FTC_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.resolved.json", rundir);
    if (!rc) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_train_config_defaults(rc);
    ftc_status s = ftc_train_config_load_file(rc, path, err);
    /* a head trained alone on a frozen base: the base column would be the same model */
    bool head_only = rc->task == FTC_TASK_CLASSIFY && rc->method == FTC_METHOD_HEAD && rc->unfreeze_last == 0;
    const char *base_dir = head_only ? NULL : rc->model;
    json_t *j = NULL, *base = NULL, *doc = NULL;
    if (s == FTC_OK) s = ftc_run_dir_eval_dataset(rundir, base_dir, d, 0, &j, &base, err);
    char note[3 * FTC_PATH_MAX];
    note[0] = 0;
    if (s == FTC_OK && base_dir)
        base_note(note, sizeof note, base_dir, rc->task == FTC_TASK_CLASSIFY,
                  ftc_run_dir_compare_base_dtype(rc, base_dir));
    if (s == FTC_OK && !(doc = eval_document(j, base, base_dir, note, data_label)))
        s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) s = save_eval_json(rundir, doc, err);
    if (s == FTC_OK && print && base_dir) {
        printf("%s: %s\n", data_label, note);
        print_table(base, j, rc->task == FTC_TASK_CLASSIFY);
    }
    json_decref(doc);
    json_decref(j);
    json_decref(base);
    free(rc);
    return s;
}

int cli_eval_run_dir(const char *rundir, const char *data, bool as_json, const char *compare) {
    ftc_err err;
    json_t *j = NULL, *base = NULL;
    /* the run's settings: the base model it was trained from (a bare --compare), and notes for the table */
    ftc_train_config *rc = malloc(sizeof *rc);
    char path[FTC_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.resolved.json", rundir);
    if (!rc) {
        ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        return cli_fail("eval", &err);
    }
    ftc_train_config_defaults(rc);
    if (ftc_train_config_load_file(rc, path, &err) != FTC_OK) {
        free(rc);
        return cli_fail("eval", &err);
    }
    char base_dir[FTC_PATH_MAX], run_base[FTC_PATH_MAX];
    snprintf(run_base, sizeof run_base, "%s", rc->model);
    if (compare && !*compare) { /* a bare --compare: the model the run was trained from */
        snprintf(base_dir, sizeof base_dir, "%s", rc->model);
        compare = base_dir;
    }
    if (compare) {
        if (ftc_run_dir_eval_compare(rundir, compare, data, 0, &j, &base, &err) != FTC_OK) {
            free(rc);
            return cli_fail("eval", &err);
        }
    } else if (ftc_run_dir_eval(rundir, data, 0, &j, &err) != FTC_OK) {
        free(rc);
        return cli_fail("eval", &err);
    }
    if (!j) {
        free(rc);
        ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        return cli_fail("eval", &err);
    }
    bool classify = json_object_get(j, "accuracy") != NULL;
    char note[3 * FTC_PATH_MAX];
    note[0] = 0;
    if (compare) {
        base_note(note, sizeof note, compare, classify, ftc_run_dir_compare_base_dtype(rc, compare));
        size_t n = strlen(note);
        if (classify && rc->method == FTC_METHOD_HEAD && rc->unfreeze_last == 0)
            n += (size_t)snprintf(note + n, sizeof note - n, "; the run trained the head only, so both columns "
                                  "are the same model");
        if (!same_path(rc->model, compare) && n < sizeof note)
            snprintf(note + n, sizeof note - n, "; note: the run was trained from %s", rc->model);
    }
    free(rc);
    json_t *doc = eval_document(j, base, compare, note, data);
    ftc_status s = doc ? save_eval_json(rundir, doc, &err) : ftc_errf(&err, FTC_E_NOMEM, "out of memory");
    json_decref(doc);
    if (s != FTC_OK) {
        json_decref(j);
        json_decref(base);
        return cli_fail("eval", &err);
    }
    char tuned[2 * FTC_PATH_MAX + 32], p[FTC_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/model/config.json", rundir);
    if (ftc_file_exists(p)) snprintf(tuned, sizeof tuned, "%s/model", rundir);
    else snprintf(tuned, sizeof tuned, "%s + %s/adapter", run_base, rundir);
    return cli_print_eval(j, base, compare, compare ? note : NULL, tuned, as_json);
}

int cli_eval_classifier_dir(const char *dir, const char *data, int max_len, bool as_json, const char *compare) {
    ftc_err err;
    json_t *j = NULL, *base = NULL;
    if (ftc_model_dir_eval_classify(dir, compare, data, max_len, 0, &j, &base, &err) != FTC_OK)
        return cli_fail("eval", &err);
    char note[3 * FTC_PATH_MAX];
    if (compare)
        snprintf(note, sizeof note, "base = %s backbone with %s's classification head (the base model has no head "
                 "of its own)%s", compare, dir, same_path(dir, compare) ? "; base and tuned are the same model" : "");
    return cli_print_eval(j, base, compare, compare ? note : NULL, dir, as_json);
}

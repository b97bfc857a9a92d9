/* `ftc eval --model RUNDIR`: evaluates a training run's model (RUNDIR/model: the best, adapters merged)
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

/* What the base column is, in words (printed above the table, and kept in the --json output). */
static void base_note(char *buf, size_t n, const char *base, bool classify) {
    if (classify)
        snprintf(buf, n, "base = %s backbone with the tuned run's classification head (the base model has no head of "
                 "its own)", base);
    else
        snprintf(buf, n, "base = %s (the pretrained model; for a LoRA run: without the adapters), on the same "
                 "examples, tokenizer and chat template", base);
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

int cli_eval_run_dir(const char *rundir, const char *data, bool as_json, const char *compare) {
    ftc_err err;
    json_t *j = NULL, *base = NULL;
    if (compare) {
        if (ftc_run_dir_eval_compare(rundir, compare, data, 0, &j, &base, &err) != FTC_OK) return cli_fail("eval", &err);
    } else if (ftc_run_dir_eval(rundir, data, 0, &j, &err) != FTC_OK) {
        return cli_fail("eval", &err);
    }
    if (!j) {
        ftc_errf(&err, FTC_E_NOMEM, "out of memory");
        return cli_fail("eval", &err);
    }
    bool classify = json_object_get(j, "accuracy") != NULL;
    if (compare) {
        char note[3 * FTC_PATH_MAX];
        base_note(note, sizeof note, compare, classify);
        /* two things worth knowing when reading the columns, from the run's own settings */
        ftc_train_config *rc = malloc(sizeof *rc);
        char path[FTC_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/config.resolved.json", rundir);
        if (rc) ftc_train_config_defaults(rc);
        if (rc && ftc_train_config_load_file(rc, path, &err) == FTC_OK) {
            size_t n = strlen(note);
            if (classify && rc->method == FTC_METHOD_HEAD && rc->unfreeze_last == 0)
                n += (size_t)snprintf(note + n, sizeof note - n, "; the run trained the head only, so both columns "
                                      "are the same model");
            if (!same_path(rc->model, compare) && n < sizeof note)
                snprintf(note + n, sizeof note - n, "; note: the run was trained from %s", rc->model);
        }
        free(rc);
        if (as_json) {
            /* the tuned model's keys stay at the top (as without --compare, and as `ftc report` reads
             * eval.json: top level = tuned, "base" = base), plus both sides by name */
            json_t *out = json_deep_copy(j);
            if (!out) {
                ftc_errf(&err, FTC_E_NOMEM, "out of memory");
                json_decref(j), json_decref(base);
                return cli_fail("eval", &err);
            }
            json_object_set(out, "tuned", j);
            json_object_set(out, "base", base);
            json_object_set_new(out, "base_model", json_string(compare));
            json_object_set_new(out, "base_note", json_string(note));
            print_json(out);
            json_decref(out);
        } else {
            printf("%s\ntuned = %s/model\n", note, rundir);
            print_table(base, j, classify);
        }
    } else if (as_json) {
        print_json(j);
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
    return 0;
}

/* ftc logits --model DIR|RUNDIR [--adapter DIR] --ids FILE: the raw model outputs for given token ids, one
 * JSON line per input line, to compare ftc with another implementation (tools/check_export.py). */
#include "cli.h"
#include "model_arg.h"
#include "ftc/base.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "Usage: ftc logits --model DIR|RUNDIR --ids FILE [--adapter DIR] [--task causal-lm|classify|encode]\n\n"
            "Reads FILE as JSONL, one {\"input_ids\": [...], \"token_type_ids\": [...]?} per line, runs each line as\n"
            "its own sequence (no padding) and prints one JSON line per input: causal-lm [T][vocab] logits,\n"
            "classify [num_labels] logits, encode [T][hidden] last hidden states. For checking ftc against\n"
            "transformers/PEFT on the same ids.\n"
            "  --adapter DIR  apply a PEFT LoRA adapter to the base model first\n"
            "  --task         for a plain model directory (default: from config.json's architectures)\n"
            "\nExamples:\n"
            "  echo '{\"input_ids\": [1, 403, 407]}' > ids.jsonl\n"
            "  ftc logits stories260K --ids ids.jsonl\n");
}

static ftc_status read_ids(json_t *arr, const char *key, const char *file, int line, int32_t **out, int *n, int vmax,
                           ftc_err *err) {
    if (!json_is_array(arr) || json_array_size(arr) < 1 || json_array_size(arr) > 1 << 20)
        return ftc_errf(err, FTC_E_INPUT, "%s: line %d: \"%s\" must be a non-empty list of ids", file, line, key);
    *n = (int)json_array_size(arr);
    *out = malloc((size_t)*n * sizeof(int32_t));
    if (!*out) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < *n; i++) {
        json_t *v = json_array_get(arr, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vmax)
            return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s[%d] is not an id in [0, %d)", file, line, key, i, vmax);
        (*out)[i] = (int32_t)json_integer_value(v);
    }
    return FTC_OK;
}

static ftc_status run_line(ftc_model *m, json_t *o, const char *file, int line, ftc_err *err) {
    const ftc_model_config *c = ftc_model_config_of(m);
    int32_t *ids = NULL, *types = NULL;
    int T = 0, Tt = 0;
    ftc_status s = read_ids(json_object_get(o, "input_ids"), "input_ids", file, line, &ids, &T, c->vocab_size, err);
    json_t *jt = json_object_get(o, "token_type_ids");
    if (!s && jt && c->type_vocab_size > 0) {
        s = read_ids(jt, "token_type_ids", file, line, &types, &Tt, c->type_vocab_size, err);
        if (!s && Tt != T) s = ftc_errf(err, FTC_E_INPUT, "%s: line %d: %d token_type_ids for %d input_ids", file, line, Tt, T);
    }
    if (!s) s = ftc_model_reserve(m, 1, T, err);
    ftc_batch b = {1, T, ids, types, NULL, NULL};
    float loss;
    if (!s) s = ftc_model_forward(m, &b, false, &loss, err);
    if (!s) {
        ftc_task task = ftc_model_task(m);
        const float *x = task == FTC_TASK_ENCODE ? ftc_model_hidden(m) : ftc_model_logits(m);
        int rows = task == FTC_TASK_CLASSIFY ? 1 : T;
        int cols = task == FTC_TASK_CAUSAL_LM ? c->vocab_size : task == FTC_TASK_ENCODE ? c->hidden_size : 0;
        if (task == FTC_TASK_CLASSIFY)
            for (int i = 0; i < ftc_model_n_params(m); i++) {
                ftc_param *p = ftc_model_param(m, i);
                if (!p->is_lora && (!strcmp(p->name, "classifier.weight") || !strcmp(p->name, "score.weight")))
                    cols = (int)p->shape[0];
            }
        if (rows > 1) putchar('[');
        for (int r = 0; r < rows; r++) {
            putchar('[');
            for (int k = 0; k < cols; k++) printf("%s%.9g", k ? "," : "", (double)x[(size_t)r * cols + k]);
            printf("]%s", r + 1 < rows ? "," : "");
        }
        printf("%s\n", rows > 1 ? "]" : "");
    }
    free(ids), free(types);
    return s;
}

int cmd_logits(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *model = NULL, *ids = NULL, *adapter = NULL, *task = NULL;
    static const cli_opt opts[] = {{"model", false, NULL}, {"ids", false, NULL}, {"adapter", false, NULL},
                                   {"task", false, NULL}, {NULL, false, NULL}};
    cli_args p;
    cli_args_init(&p, "logits", argc, argv, 1, opts, CLI_HAS_POSITIONAL);
    const char *a, *v;
    int r;
    while ((r = cli_next(&p, &a, &v)) > 0) {
        if (!a && !model) { model = v; continue; } /* the model or run directory, positionally */
        if (!a) return cli_usage_error("logits", "unexpected argument '%s'", v);
        const char **slot = !strcmp(a, "model") ? &model : !strcmp(a, "ids") ? &ids : !strcmp(a, "adapter") ? &adapter : &task;
        *slot = v;
    }
    if (r < 0) return 1;
    if (!model) return cli_usage_error("logits", "missing --model DIR");
    if (!ids) return cli_usage_error("logits", "missing --ids FILE");
    ftc_err err;
    cli_model cm;
    ftc_status s = cli_model_open(model, task, adapter, &cm, &err);
    FILE *f = NULL;
    if (!s) s = ftc_open_read(ids, &f, &err);
    char *line = NULL;
    size_t cap = 0;
    for (int ln = 1; !s && getline(&line, &cap, f) > 0; ln++) {
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!json_is_object(o)) s = ftc_errf(&err, FTC_E_INPUT, "%s: line %d: not a JSON object", ids, ln);
        else s = run_line(cm.m, o, ids, ln, &err);
        json_decref(o);
    }
    free(line);
    if (f) fclose(f);
    cli_model_close(&cm);
    return s ? cli_fail("logits", &err) : 0;
}

/* Model argument shared by export and logits (see model_arg.h). */
#include "model_arg.h"
#include "cli.h"
#include "ftc/base.h"
#include "base/base_internal.h"
#include "ftc/export.h"
#include "ftc/gguf.h"
#include "ftc/hf_config.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ftc_status cli_parse_task(const char *name, ftc_task *task, ftc_err *err) {
    if (!strcmp(name, "causal-lm")) *task = FTC_TASK_CAUSAL_LM;
    else if (!strcmp(name, "classify")) *task = FTC_TASK_CLASSIFY;
    else if (!strcmp(name, "encode")) *task = FTC_TASK_ENCODE;
    else return ftc_errf(err, FTC_E_USAGE, "unknown task '%s' (causal-lm, classify, encode)", name);
    return FTC_OK;
}

ftc_status cli_read_labels(const char *path, char ***names, int *n, ftc_err *err) {
    *names = NULL, *n = 0;
    if (!ftc_file_exists(path)) return FTC_OK;
    json_error_t je;
    json_t *a = ftc_json_load_file(path, 0, &je);
    if (!a) return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", path, je.line, je.text);
    if (!json_is_array(a) || json_array_size(a) < 1) {
        json_decref(a);
        return ftc_errf(err, FTC_E_INPUT, "%s: expected a JSON list of label names", path);
    }
    int k = (int)json_array_size(a);
    char **v = calloc((size_t)k, sizeof *v);
    for (int i = 0; v && i < k; i++) {
        const char *s = json_string_value(json_array_get(a, (size_t)i));
        if (!s) {
            for (int j = 0; j < i; j++) free(v[j]);
            free(v);
            json_decref(a);
            return ftc_errf(err, FTC_E_INPUT, "%s: entry %d is not a string", path, i);
        }
        v[i] = strdup(s);
    }
    json_decref(a);
    if (!v) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    *names = v, *n = k;
    return FTC_OK;
}

/* The task a plain HF directory was saved for, from its architectures entry. */
static ftc_task task_of_dir(const char *dir) {
    ftc_model_config c;
    ftc_err e;
    if (ftc_config_load(dir, &c, &e)) return FTC_TASK_ENCODE; /* the load reports the error */
    /* ftc's classifier saved as the bare encoder (a head no transformers class computes): "ftc_pooling" */
    ftc_task t = strstr(c.architecture, "ForSequenceClassification") || (c.pooling[0] && c.num_labels > 0)
                     ? FTC_TASK_CLASSIFY
                 : strstr(c.architecture, "ForCausalLM") || strstr(c.architecture, "LMHeadModel") ? FTC_TASK_CAUSAL_LM
                                                                                                   : FTC_TASK_ENCODE;
    ftc_config_free(&c);
    return t;
}

ftc_status cli_model_open(const char *path, const char *task_name, const char *adapter, cli_model *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    char p[FTC_PATH_MAX + 64], model_dir[FTC_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/config.resolved.json", path);
    ftc_status s;
    if (ftc_file_exists(p)) {
        out->is_run = true;
        ftc_train_config_defaults(&out->run);
        if ((s = ftc_train_config_load_file(&out->run, p, err))) return s;
        out->task = out->run.task;
        snprintf(out->base, sizeof out->base, "%s", out->run.model);
        snprintf(model_dir, sizeof model_dir, "%s/model", path);
        snprintf(p, sizeof p, "%s/labels.json", path);
        if ((s = cli_read_labels(p, &out->labels, &out->n_labels, err))) return s;
        if (!ftc_file_exists(strcat(strcpy(p, model_dir), "/config.json"))) {
            /* a LoRA run keeping its adapter only: base + adapter, merged (ftc_run_dir_load) */
            ftc_task run_task = out->task;
            if (task_name && (s = cli_parse_task(task_name, &out->task, err))) return s;
            if (out->task != run_task)
                return ftc_errf(err, FTC_E_USAGE, "run %s was trained for %s, not %s", path, ftc_task_name(run_task),
                                ftc_task_name(out->task));
            if ((s = ftc_run_dir_load(path, &out->m, &out->run, err))) return s;
            goto adapter;
        }
    } else {
        snprintf(model_dir, sizeof model_dir, "%s", path);
        snprintf(out->base, sizeof out->base, "%s", path);
        out->task = task_of_dir(path);
    }
    if (task_name && (s = cli_parse_task(task_name, &out->task, err))) return s;
    if ((s = ftc_model_load(model_dir, out->task, &out->m, err))) return s;
adapter:
    if (adapter) {
        if ((s = ftc_model_load_adapter(out->m, adapter, err))) return s;
        snprintf(p, sizeof p, "%s/labels.json", adapter);
        if (out->task == FTC_TASK_CLASSIFY && ftc_file_exists(p)) {
            for (int i = 0; i < out->n_labels; i++) free(out->labels[i]);
            free(out->labels);
            if ((s = cli_read_labels(p, &out->labels, &out->n_labels, err))) return s;
        }
    }
    return FTC_OK;
}

void cli_model_close(cli_model *cm) {
    ftc_model_free(cm->m);
    for (int i = 0; i < cm->n_labels; i++) free(cm->labels[i]);
    free(cm->labels);
    memset(cm, 0, sizeof *cm);
}

int cli_resolve_gguf_args(int argc, char **argv) {
    if (argc < 2) return 0;
    bool positional = !strcmp(argv[1], "inspect");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *path = NULL, *prefix = "";
        static const char *const flags[] = {"--model", "--base", "--compare"};
        for (size_t k = 0; k < sizeof flags / sizeof *flags && !path; k++) {
            size_t n = strlen(flags[k]);
            if (!strcmp(argv[i - 1], flags[k])) path = a;
            else if (!strncmp(a, flags[k], n) && a[n] == '=') path = a + n + 1, prefix = flags[k];
        }
        if (!path && positional && a[0] != '-') path = a;
        if (!path || !ftc_is_gguf_path(path)) continue;
        char dir[FTC_PATH_MAX];
        ftc_err err;
        if (ftc_gguf_resolve(path, dir, sizeof dir, &err)) return cli_fail(argv[1], &err);
        size_t n = strlen(prefix) + strlen(dir) + 2;
        char *v = malloc(n); /* lives as long as argv */
        if (!v) return 3;
        snprintf(v, n, "%s%s%s", prefix, *prefix ? "=" : "", dir);
        argv[i] = v;
    }
    return 0;
}

/* A finished run directory as a model: `ftc eval --model RUNDIR` loads RUNDIR/model with the run's task
 * and reads evaluation data the way the run read its training data. */
#include "ftc/train.h"
#include "ftc/base.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool ftc_is_run_dir(const char *dir) {
    char a[FTC_PATH_MAX + 64], b[FTC_PATH_MAX + 64];
    snprintf(a, sizeof a, "%s/config.resolved.json", dir);
    snprintf(b, sizeof b, "%s/model/config.json", dir);
    return ftc_file_exists(a) && ftc_file_exists(b);
}

ftc_status ftc_run_dir_load(const char *dir, ftc_model **out, ftc_train_config *cfg, ftc_err *err) {
    char path[FTC_PATH_MAX + 64];
    *out = NULL;
    ftc_train_config_defaults(cfg);
    snprintf(path, sizeof path, "%s/config.resolved.json", dir);
    ftc_status s = ftc_train_config_load_file(cfg, path, err);
    if (s != FTC_OK) return s;
    snprintf(path, sizeof path, "%s/model", dir);
    s = ftc_model_load(path, cfg->task, out, err);
    if (s != FTC_OK) ftc_err_prefix(err, "run %s", dir);
    return s;
}

/* The run's label names in class order (labels.json), so evaluation data maps labels the same way. */
static ftc_status load_label_map(const char *dir, ftc_dataset *map, ftc_err *err) {
    char path[FTC_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/labels.json", dir);
    json_error_t je;
    json_t *a = json_load_file(path, 0, &je);
    if (!a) return ftc_errf(err, FTC_E_INPUT, "%s: line %d: %s", path, je.line, je.text);
    if (!json_is_array(a) || json_array_size(a) < 2) {
        json_decref(a);
        return ftc_errf(err, FTC_E_INPUT, "%s: expected a list of at least 2 label names", path);
    }
    memset(map, 0, sizeof *map);
    map->num_labels = (int)json_array_size(a);
    map->label_names = calloc((size_t)map->num_labels, sizeof(char *));
    bool numeric = true;
    for (int i = 0; i < map->num_labels; i++) {
        const char *name = json_string_value(json_array_get(a, (size_t)i));
        map->label_names[i] = strdup(name ? name : "");
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        numeric = numeric && name && !strcmp(name, k);
    }
    json_decref(a);
    if (numeric) { /* integer labels in the data: no names to map */
        for (int i = 0; i < map->num_labels; i++) free(map->label_names[i]);
        free(map->label_names);
        map->label_names = NULL;
    }
    return FTC_OK;
}

ftc_status ftc_run_dir_eval(const char *dir, const char *data_path, int batch, json_t **json, ftc_err *err) {
    *json = NULL;
    ftc_train_config cfg;
    ftc_model *m;
    ftc_status s = ftc_run_dir_load(dir, &m, &cfg, err);
    if (s != FTC_OK) return s;
    ftc_dataset map = {0}, d = {0};
    if (cfg.task == FTC_TASK_CLASSIFY) s = load_label_map(dir, &map, err);
    if (s == FTC_OK)
        s = ftc_dataset_load_tokenized(data_path, cfg.task, cfg.task == FTC_TASK_CLASSIFY ? &map : NULL,
                                       ftc_model_config_of(m)->vocab_size, &d, err);
    if (s == FTC_OK && map.label_names) {
        d.label_names = map.label_names;
        map.label_names = NULL;
    }
    ftc_eval_result r;
    if (s == FTC_OK) s = ftc_train_evaluate(m, cfg.task, &d, batch > 0 ? batch : cfg.batch, cfg.max_len, &r, json, err);
    ftc_dataset_free(&d);
    ftc_dataset_free(&map);
    ftc_model_free(m);
    return s;
}

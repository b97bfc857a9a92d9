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

ftc_status ftc_run_dir_eval(const char *dir, const char *data_path, int batch, json_t **json, ftc_err *err) {
    *json = NULL;
    ftc_train_config cfg;
    ftc_model *m;
    ftc_status s = ftc_run_dir_load(dir, &m, &cfg, err);
    if (s != FTC_OK) return s;
    ftc_dataset d = {0};
    s = ftc_run_dir_load_data(dir, &cfg, data_path, ftc_model_config_of(m)->vocab_size, &d, err);
    /* evaluation only: no gradient memory */
    for (int i = 0; s == FTC_OK && i < ftc_model_n_params(m); i++) ftc_model_set_trainable(m, i, false);
    ftc_eval_result r;
    if (s == FTC_OK) s = ftc_train_evaluate(m, cfg.task, &d, batch > 0 ? batch : cfg.batch, cfg.max_len, &r, json, err);
    ftc_dataset_free(&d);
    ftc_model_free(m);
    return s;
}

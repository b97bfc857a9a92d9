/* --model DIR|RUNDIR [--adapter DIR] as the inference-side commands take it (export, logits): a run
 * directory (config.resolved.json + model/, or a LoRA run's adapter/ on its base) loads its final model with the
 * run's task and labels; a plain
 * HF directory loads with --task or the task its config.json's architectures name. */
#ifndef FTC_CLI_MODEL_ARG_H
#define FTC_CLI_MODEL_ARG_H
#include "ftc/model.h"
#include "ftc/train.h"

typedef struct {
    ftc_model *m;
    ftc_task task;
    bool is_run;
    ftc_train_config run; /* the run's settings (is_run) */
    char base[FTC_PATH_MAX]; /* where the tokenizer files are: the run's base model, or the directory itself */
    char **labels;           /* classify: class names from RUNDIR/labels.json or the adapter's labels.json */
    int n_labels;
} cli_model;

/* task_name: "causal-lm" | "classify" | "encode" | NULL (from the run or config.json). adapter may be NULL. */
ftc_status cli_model_open(const char *path, const char *task_name, const char *adapter, cli_model *out, ftc_err *err);
void cli_model_close(cli_model *cm);
/* Reads a JSON list of label names (RUNDIR/labels.json); *names NULL when the file is absent. */
ftc_status cli_read_labels(const char *path, char ***names, int *n, ftc_err *err);
ftc_status cli_parse_task(const char *name, ftc_task *task, ftc_err *err);
/* A GGUF model is taken wherever a model is: every `--model X.gguf` / `--base X.gguf` / `--compare X.gguf` (`=` forms too; and inspect's
 * positional path) is replaced in argv by the Hugging Face directory converted from it, cached
 * (ftc_gguf_resolve). Returns 0, or the exit code after printing the error. Called by main before any command. */
int cli_resolve_gguf_args(int argc, char **argv);
#endif

/* An ftc run directory read from below the trainer (the model layer): what inference and evaluation need to load a
 * run's model, without the training configuration. RUNDIR/config.resolved.json says how the run read its model;
 * RUNDIR/model (HF layout) is its final model, or for a LoRA run without --save-merged RUNDIR/adapter on the
 * base model. The trainer's own reader (ftc_run_dir_load in train.h) goes through the same loader. */
#ifndef FTC_RUNDIR_H
#define FTC_RUNDIR_H
#include <stdbool.h>
#include "ftc/model.h"
#include "ftc/status.h"

#define FTC_PATH_MAX 4096 /* paths ftc keeps in its settings */

typedef struct {
    ftc_task task;           /* "task" */
    bool lora;               /* "method" is lora: RUNDIR/adapter is the run's model when there is no model/ */
    char model[FTC_PATH_MAX];        /* "model": the base model the run trained from */
    char template_name[32];  /* "chat_template": "" = the model's own */
    char pooling[8];         /* "pooling": classify's choice (auto | cls | mean | last) */
    int max_len;             /* "max_len" */
    int base_qtype;          /* the frozen base weights as the run held them: block-quantized (ftc_ggml_type), or -1 */
    bool base_bf16;          /* ... or in bf16 */
    bool base_gguf;          /* ... or in the types of the GGUF it came from (--base-dtype auto, ftc_model_load_gguf_base) */
    /* Not from the file: the caller's choice. A LoRA run (without model/) whose base is held block-quantized keeps
     * its adapters unmerged: the model computes exactly what training's evaluations computed, and the targeted
     * weights stay packed (merging dequantizes each to f32). For evaluation; inference merges (the default). */
    bool keep_adapters_on_packed_base;
} ftc_run_info;

/* Whether a run directory holds its final model: RUNDIR/model/config.json, or a LoRA run's
 * RUNDIR/adapter/adapter_config.json (its default: the adapter only, no merged copy). */
bool ftc_run_dir_has_model(const char *dir);
/* RUNDIR/config.resolved.json's model settings. A missing file or a bad value: FTC_E_INPUT naming file and key. */
ftc_status ftc_run_info_read(const char *dir, ftc_run_info *out, ftc_err *err);
/* The run's final model with its task: RUNDIR/model when there is one, else (a LoRA run) the base model read as the
 * run read it, with RUNDIR/adapter applied and merged and the run's pooling: the model --save-merged writes. */
ftc_status ftc_run_model_load(const char *dir, const ftc_run_info *ri, ftc_model **out, ftc_err *err);
/* Whether any frozen weight of m is held block-quantized (ftc_model_load_quant_base / _gguf_base). */
bool ftc_model_has_packed_weights(ftc_model *m);

/* "cls" | "mean" | "last" -> *out (true); anything else (NULL, "", "auto") -> false. */
bool ftc_pooling_parse(const char *name, ftc_pooling *out);
/* --pooling choice for the model in model_dir: a named pooling as it is; auto: what a classifier ftc saved
 * records ("ftc_pooling"), a sentence-transformers model's own (1_Pooling/config.json), else CLS (+ the pooler)
 * for encoders and the last real token for decoders. */
ftc_pooling ftc_train_pooling(const char *choice, const char *model_dir, ftc_family family);
#endif

/* Export of a tuned model for other tools, and PEFT adapters in ftc (src/model/export.c, adapter.c).
 *   HF:   a directory transformers' from_pretrained reads: config.json (architectures, id2label/label2id,
 *         num_labels, problem_type), model.safetensors with the task class's names, tokenizer files.
 *   PEFT: adapter_config.json + adapter_model.safetensors as PEFT writes them
 *         (base_model.model.<HF module path>.lora_A.weight [r,in], .lora_B.weight [out,r], head as modules_to_save).
 * Both are built in a temporary sibling directory and renamed into place, so a reader never sees half an export. */
#ifndef FTC_EXPORT_H
#define FTC_EXPORT_H
#include <stdbool.h>
#include "ftc/model.h"
#include "ftc/status.h"

typedef struct {
    const char *tokenizer_dir;        /* copy tokenizer files (tokenizer.json, vocab.txt, ...) from here; NULL: none */
    const char *const *label_names;   /* classify: names in class order (NULL: the model's own, else LABEL_i) */
    int n_labels;
    const char *base_model;           /* PEFT: base_model_name_or_path */
    bool overwrite;                   /* replace an existing non-empty output directory */
} ftc_export_opts;

/* Whether the model's classification head is exactly a transformers *ForSequenceClassification head:
 * BERT with its pooler and CLS pooling, GPT-2/Llama with last-token pooling. On false, *why says what differs. */
bool ftc_export_head_is_hf(const ftc_model *m, const char **why);

/* Writes m (adapters merged first by the caller: unmerged LoRA is refused) in HF layout to out. */
ftc_status ftc_export_hf(const ftc_model *m, const char *out, const ftc_export_opts *o, ftc_err *err);
/* The same files written straight into dir (created by the caller, no staging): what ftc_export_hf puts in place,
 * and what ftc train writes as RUNDIR/model (in its own staging directory), so the two never differ. */
ftc_status ftc_export_hf_files(const ftc_model *m, const char *dir, const ftc_export_opts *o, ftc_err *err);

/* Writes m's LoRA adapters (and a classification head as modules_to_save) as a PEFT adapter to out.
 * The adapters must share one rank, alpha and dropout. */
ftc_status ftc_export_peft(const ftc_model *m, const char *out, const ftc_export_opts *o, ftc_err *err);

/* Writes m's LoRA adapters as llama.cpp's LoRA GGUF (general.type adapter, adapter.type lora, adapter.lora.alpha;
 * blk.N.<weight>.weight.lora_a [r, in] / .lora_b [out, r], f32, llama's q/k rows permuted like the base's) to the file
 * out, for llama.cpp's --lora on the base model's GGUF. One rank and alpha for all adapters. name: general.name. */
ftc_status ftc_export_gguf_lora(const ftc_model *m, const char *out, const char *name, ftc_err *err);

/* Applies the PEFT LoRA adapter in dir (adapter_config.json + adapter_model.safetensors) to a loaded base
 * model: LoRA adapters on the modules the file names, with its A/B values, scale lora_alpha/r
 * (lora_alpha/sqrt(r) with use_rslora), and modules_to_save tensors (a classification head) loaded.
 * For a classify model the head's size comes from the file. The adapters stay unmerged
 * (ftc_model_merge_lora merges them). Errors name the file and the field or tensor. */
ftc_status ftc_model_load_adapter(ftc_model *m, const char *dir, ftc_err *err);
#endif

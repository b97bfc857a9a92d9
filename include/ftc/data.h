/* Task data: the files users have (JSONL, CSV/TSV, plain text) -> validated records -> chat template ->
 * token ids with the loss mask the trainer needs (ftc_dataset, below), label maps, splits, and the
 * statistics `ftc data check` prints.
 *
 *   reader (streaming, one record at a time)  ->  ftc_record
 *   ftc_data_encode_record(template, encoder) ->  ftc_example (ids, labels with -100, class index)
 *   ftc_data_pack                             ->  fixed-length sequences for causal-lm (--pack)
 *
 * Every error names file:line:column and what is wrong. The reader moves past a bad record, so a
 * caller may stop at the first error (training) or collect them all (data check). */
#ifndef FTC_DATA_H
#define FTC_DATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "ftc/status.h"
#include "ftc/tokenizer.h"
#include "ftc/model.h" /* ftc_task */

struct json_t; /* jansson */

/* ---- examples: token ids with the loss mask, as the trainer takes them ---- */
typedef struct {
    int32_t *ids;      /* [len] */
    int32_t *labels;   /* causal-lm: [len], HF convention (labels = ids, -100 = not trained); NULL: all trained */
    int32_t *type_ids; /* [len] BERT token types, or NULL */
    int len;
    int label;         /* classify: class index */
} ftc_example;

typedef struct {
    ftc_example *ex;
    int n;
    int num_labels;      /* classify */
    char **label_names;  /* [num_labels] or NULL */
    int pad_id;
} ftc_dataset;

/* Frees every example's arrays, the names and the array itself (for datasets built with malloc). */
void ftc_dataset_free(ftc_dataset *d);
/* Pre-tokenized JSONL: {"input_ids": [..], "labels": [..]?} (causal-lm) or {"input_ids": [..], "label": k | "name",
 * "token_type_ids": [..]?} (classify). label_map: the training set whose labels validation must use, or NULL.
 * Ids are checked against vocab_size (> 0). Errors name file, line and key. */
ftc_status ftc_dataset_load_tokenized(const char *path, ftc_task task, const ftc_dataset *label_map, int vocab_size,
                                      ftc_dataset *out, ftc_err *err);
/* Moves a seeded random share of `all` into val (the rest stays in all). */
ftc_status ftc_dataset_split(ftc_dataset *all, double val_share, uint64_t seed, ftc_dataset *val, ftc_err *err);

/* ---- records ---- */
typedef enum {
    FTC_FMT_AUTO = 0,   /* detect from the first valid record */
    FTC_FMT_TEXT,       /* {"text": ...}: continued pretraining, every token trained */
    FTC_FMT_COMPLETION, /* {"prompt": ..., "completion": ...}: completion (+ EOS) trained */
    FTC_FMT_CHAT,       /* {"messages": [{"role", "content", "weight"?}, ...]}: OpenAI chat format */
    FTC_FMT_LABEL,      /* {"text": ..., "label": "name" | 3, "text_pair"?: ...}: classification */
} ftc_data_format;
typedef enum { FTC_FILE_AUTO = 0, FTC_FILE_JSONL, FTC_FILE_CSV, FTC_FILE_TSV, FTC_FILE_TXT } ftc_file_kind;
/* AUTO: paragraphs of a .txt file; whole files when the data path is a directory of .txt/.md files. */
typedef enum { FTC_TXT_AUTO = 0, FTC_TXT_PARAGRAPH, FTC_TXT_FILE } ftc_txt_mode;

typedef enum { FTC_ROLE_SYSTEM, FTC_ROLE_USER, FTC_ROLE_ASSISTANT } ftc_role;
typedef struct {
    ftc_role role;
    char *content;
    int weight; /* assistant turns: 1 trained (default), 0 not trained */
} ftc_chat_msg;

typedef struct {
    ftc_data_format format;
    char *text;               /* TEXT, LABEL */
    char *text_pair;          /* LABEL, optional: the second text of a pair (NLI, paraphrase): BERT type ids 1 */
    char *prompt, *completion; /* COMPLETION */
    ftc_chat_msg *msgs;       /* CHAT */
    int n_msgs;
    char *label;              /* LABEL: the label as written ("card_arrival", or "3" for the integer 3) */
    bool label_is_int;
    long line;                /* 1-based line of the file where the record starts */
} ftc_record;
void ftc_record_clear(ftc_record *r); /* frees the contents, leaves an empty record */

const char *ftc_data_format_name(ftc_data_format f); /* "text", "completion", "chat", "label" */
/* Parses a --format value; also accepts "prompt-completion", "messages", "classify". */
ftc_status ftc_data_format_parse(const char *s, ftc_data_format *out, ftc_err *err);
ftc_status ftc_file_kind_parse(const char *s, ftc_file_kind *out, ftc_err *err); /* jsonl|csv|tsv|txt */
const char *ftc_file_kind_name(ftc_file_kind k);

/* ---- the streaming reader ---- */
typedef struct {
    ftc_file_kind file_kind;  /* AUTO: by extension (.jsonl/.json, .csv, .tsv, .txt), else by the first byte;
                                 a directory is read as its .txt/.md files in name order */
    ftc_data_format format;   /* AUTO: from the first valid record */
    const char *text_col;     /* CSV/TSV: column holding the text (NULL: text, sentence, content, ...) */
    const char *label_col;    /* CSV/TSV: column holding the label (NULL: label, category, intent, ...) */
    const char *text_pair_col; /* CSV/TSV: second text of a pair (NULL: text_pair; sentence1/sentence2,
                                  premise/hypothesis and question1/question2 are found as pairs) */
    ftc_txt_mode txt_mode;    /* .txt: one record per blank-line-separated paragraph, or per file */
} ftc_read_opts;

typedef struct ftc_reader ftc_reader;
ftc_status ftc_reader_open(const char *path, const ftc_read_opts *o, ftc_reader **out, ftc_err *err);
/* From memory (fuzzing, tests); name is used in messages. The buffer must outlive the reader. */
ftc_status ftc_reader_open_mem(const void *data, size_t len, const char *name, const ftc_read_opts *o,
                               ftc_reader **out, ftc_err *err);
/* Next record into *rec (cleared first). *got = false at the end of the file.
 * A bad record returns FTC_E_INPUT with "file:line:column: what" in err and the reader positioned after
 * it, so the caller may call again to continue. I/O errors return FTC_E_IO (do not continue). */
ftc_status ftc_reader_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err);
ftc_data_format ftc_reader_format(const ftc_reader *r); /* AUTO until the first valid record */
ftc_file_kind ftc_reader_file_kind(const ftc_reader *r);
const char *ftc_reader_path(const ftc_reader *r);
void ftc_reader_close(ftc_reader *r);

/* ---- chat templates (src/data/template.c; the Jinja interpreter in src/data/jinja/, docs/data.md) ---- */
/* A chat template: the model's own Jinja chat_template or a preset, compiled. Immutable once made. */
typedef struct ftc_chat_template ftc_chat_template;
/* Presets: chatml, llama3, llama2, zephyr (those models' official Jinja) and plain (### Question / ### Answer). */
ftc_status ftc_chat_template_preset(const char *name, ftc_chat_template **out, ftc_err *err);
const char *ftc_chat_template_preset_source(const char *name); /* NULL if no such preset */
/* From Jinja text: a file, a GGUF's tokenizer.chat_template. name is how errors call it. */
ftc_status ftc_chat_template_from_text(const char *name, const char *src, size_t len, ftc_chat_template **out,
                                       ftc_err *err);
/* The model's own: tokenizer_config.json "chat_template" (a string, or a list of {"name", "template"}: the one
 * named "default"), else chat_template.jinja; the special tokens of tokenizer_config.json come with it.
 * *out = NULL when the model has none. */
ftc_status ftc_chat_template_from_model_dir(const char *dir, ftc_chat_template **out, ftc_err *err);
/* A --chat-template value: NULL/"" (the model's own, *out NULL if none), "model" (the model's own, an error if
 * none), a preset name, or a path to a .jinja file. */
ftc_status ftc_chat_template_choose(const char *value, const char *model_dir, ftc_chat_template **out, ftc_err *err);
void ftc_chat_template_free(ftc_chat_template *t);
const char *ftc_chat_template_name(const ftc_chat_template *t); /* "none" for NULL */
const char *ftc_chat_template_source(const ftc_chat_template *t);
/* The plain preset only: encoded with the tokenizer's special tokens (BOS), and a reply ends at the next question. */
bool ftc_chat_template_adds_special(const ftc_chat_template *t);
const char *ftc_chat_template_stop_text(const ftc_chat_template *t); /* NULL for all but plain */

typedef struct {
    const char *bos, *eos;       /* the tokenizer's BOS/EOS texts (bos_token, eos_token); NULL or "": not set */
    const struct json_t *vars;   /* more variables, overriding: tools, enable_thinking, other special tokens... */
    bool add_generation_prompt;  /* end with the header of the assistant's next answer */
    bool train_on_inputs;        /* one piece, all trained */
    int64_t now;                 /* strftime_now's clock (seconds since the epoch); 0: the real clock */
} ftc_render_opts;

/* A rendered example: the text in pieces, each trained or not. Concatenated, the pieces are exactly what
 * transformers' apply_chat_template renders. Trained: each assistant answer with the end-of-turn marker the
 * template writes after it ({% generation %} blocks where the template has them). */
typedef struct {
    char *text;      /* the whole rendering, NUL-terminated */
    size_t len;
    size_t *starts;  /* [n] byte offset where piece i starts */
    bool *trained;   /* [n] */
    int n;
} ftc_rendered;
void ftc_rendered_free(ftc_rendered *r);
/* A CHAT record through the template (t NULL: FTC_E_USAGE asking for --chat-template); COMPLETION: prompt
 * untrained + completion + EOS trained; TEXT: text + EOS trained. A conversation the template refuses
 * (raise_exception: roles must alternate...) is FTC_E_INPUT with the template's message and position. */
ftc_status ftc_template_render(const ftc_chat_template *t, const ftc_record *rec, const ftc_render_opts *o,
                               ftc_rendered *out, ftc_err *err);
/* Any messages (a JSON list: roles, tool calls, ...; "weight": 0 leaves an assistant answer untrained). */
ftc_status ftc_template_render_messages(const ftc_chat_template *t, const struct json_t *messages,
                                        const ftc_render_opts *o, ftc_rendered *out, ftc_err *err);
struct json_t *ftc_record_messages_json(const ftc_record *rec);
/* The end-of-turn text the template writes after an answer ("<|im_end|>", "<|eot_id|>", "</s>"), found by
 * rendering a probe conversation; *eot = NULL (malloc'd otherwise) when the template writes none. */
ftc_status ftc_chat_template_end_of_turn(const ftc_chat_template *t, const ftc_render_opts *o, char **eot,
                                         ftc_err *err);

/* ---- turning records into examples ---- */
/* How text becomes ids: normally the model's tokenizer (ftc_data_encoder_from_tokenizer). encode appends
 * the ids of text to out (add_special: the tokenizer's post-processor, e.g. BOS or [CLS]..[SEP]). */
typedef struct {
    void *ctx;
    ftc_status (*encode)(void *ctx, const char *text, size_t len, bool add_special, ftc_ids *out, ftc_err *err);
    int32_t bos, eos, pad;         /* -1 when absent */
    const char *bos_text, *eos_text; /* "" when absent */
    /* Optional (may be NULL): ids -> text with special tokens kept, malloc'd. Used only where the text before a
     * piece tokenizes differently alone than inside the whole (GPT-2 "\n\n" + "Paris" is "\n","\n","Paris"),
     * to find which tokens start before the piece, as transformers' offsets would say. */
    ftc_status (*decode)(void *ctx, const int32_t *ids, size_t n, char **out, ftc_err *err);
    /* Optional: a text pair with the post-processor's pair template and token types, truncated to max_len
     * (> 0) longest-first as transformers does. Needed for records with text_pair. */
    ftc_status (*encode_pair)(void *ctx, const char *a, size_t alen, const char *b, size_t blen, int max_len,
                              ftc_ids *out, ftc_ids *type_ids, ftc_err *err);
} ftc_data_encoder;
void ftc_data_encoder_from_tokenizer(const ftc_tokenizer *t, ftc_data_encoder *out);

typedef enum { FTC_TRUNC_RIGHT = 0, FTC_TRUNC_LEFT } ftc_truncation;
typedef struct {
    ftc_task task;           /* causal-lm | classify */
    const ftc_chat_template *tmpl; /* chat records; NULL = error for chat data */
    bool train_on_inputs;    /* causal-lm: train prompt/user tokens too */
    int max_len;             /* 0 = no limit */
    ftc_truncation truncation;
} ftc_encode_opts;

/* One record -> one example. causal-lm: ids + labels (= id where trained, -100 elsewhere); EOS follows
 * each trained answer. classify: ids with the tokenizer's special tokens, label = class index from map.
 * *truncated (may be NULL) tells whether max_len cut tokens. */
typedef struct ftc_label_map ftc_label_map;
ftc_status ftc_data_encode_record(const ftc_record *rec, const ftc_encode_opts *o, const ftc_data_encoder *enc,
                                  const ftc_label_map *labels, const char *path, ftc_example *out, bool *truncated,
                                  ftc_err *err);
/* A rendering's tokens and loss labels: the whole text tokenized once (add_special: the tokenizer's BOS etc.);
 * a token is trained when it starts inside a trained piece (where the text before a piece tokenizes apart
 * from the whole, the token that starts before the piece belongs to the piece before). */
ftc_status ftc_data_encode_rendered(const ftc_rendered *r, bool add_special, const ftc_data_encoder *enc,
                                   ftc_example *out, ftc_err *err);
/* Number of label entries != -100 after the model's shift (positions 1..len-1). */
int ftc_example_trained_tokens(const ftc_example *e);
void ftc_example_free(ftc_example *e);

/* --pack (causal-lm): concatenates the examples in order and cuts the stream into sequences of max_len
 * (the last may be shorter). The first token of every example is not trained (its prediction would cross
 * from the previous example). Attention is NOT confined to each example: a packed sequence is one causal
 * sequence, as in transformers' group_texts. Replaces d's examples. */
ftc_status ftc_data_pack(ftc_dataset *d, int max_len, ftc_err *err);

/* ---- label maps: sorted training labels, saved as a JSON array (labels.json), class index = position ---- */
struct ftc_label_map {
    char **names;  /* sorted: numerically when every label is an integer, else by bytes */
    int n;
    bool numeric;
};
/* From the labels of the training records (duplicates fine). */
ftc_status ftc_label_map_build(const char *const *labels, size_t n, ftc_label_map *out, ftc_err *err);
int ftc_label_map_find(const ftc_label_map *m, const char *label); /* -1 if absent */
ftc_status ftc_label_map_save(const ftc_label_map *m, const char *path, ftc_err *err); /* atomic */
ftc_status ftc_label_map_load(const char *path, ftc_label_map *out, ftc_err *err);
void ftc_label_map_free(ftc_label_map *m);

/* ---- splits ---- */
typedef enum { FTC_SPLIT_TRAIN = 0, FTC_SPLIT_VAL = 1, FTC_SPLIT_TEST = 2 } ftc_split;
/* Assigns each of n items to train/val/test: round(share * n) of each label group (stratified when
 * labels != NULL; class indices) or of all items, chosen by a seeded shuffle. A label group keeps at
 * least one training item. Deterministic for a seed. out: [n]. */
ftc_status ftc_data_split(size_t n, const int32_t *labels, double val_share, double test_share, uint64_t seed,
                          uint8_t *out, ftc_err *err);
/* One JSONL line for a record, in the record's format (the split files the user can read and reuse). */
char *ftc_record_to_jsonl(const ftc_record *r);

/* ---- loading a whole data set for training ---- */
typedef struct {
    ftc_read_opts read;
    ftc_encode_opts enc;
    double val_share, test_share; /* used when no val file is given */
    uint64_t seed;
    bool pack;
    const char *out_dir;  /* when set: labels.json, chat_template.json, split/{train,val,test}.jsonl */
} ftc_load_opts;
/* Reads path (and val_path if non-NULL) to datasets. Stops at the first bad record. A label map (labels,
 * may be NULL) given by the caller is used instead of one built from training data (eval, predict). */
ftc_status ftc_data_load(const char *path, const char *val_path, const ftc_load_opts *o, const ftc_data_encoder *enc,
                         const ftc_label_map *labels, ftc_dataset *train, ftc_dataset *val, ftc_dataset *test,
                         ftc_err *err);

/* ---- ftc data check ---- */
typedef struct {
    ftc_read_opts read;
    ftc_encode_opts enc;          /* task AUTO-like: causal-lm unless the data is FMT_LABEL */
    bool task_given;
    int max_errors;               /* report at most this many errors (default 50), keep counting */
    int batch, grad_accum, epochs; /* for the step estimate */
    double near_dup_min_chars;    /* ignored when 0 */
} ftc_check_opts;
/* Reads data (and val if non-NULL) completely; returns a JSON report (new reference in *report):
 * {"errors": [{"file","line","column","message"}], "n_errors", "warnings": [...], "train": {stats}, ...}.
 * enc may be NULL (no token statistics). Returns FTC_OK even when the data has errors (see n_errors);
 * only I/O or internal failures are returned as errors. */
ftc_status ftc_data_check(const char *data, const char *val, const ftc_check_opts *o, const ftc_data_encoder *enc,
                          struct json_t **report, ftc_err *err);
/* The human-readable report. */
void ftc_data_check_print(const struct json_t *report, FILE *out);

#endif

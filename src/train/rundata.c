/* Where a run's examples come from: text data through the data layer (the model's tokenizer, chat
 * template, label map, split), or pre-tokenized JSONL ({"input_ids": ...}) read directly. Shared by
 * `ftc train` and `ftc eval --model RUNDIR`, so evaluation reads data exactly as training did. */
#include "ftc/train.h"
#include "ftc/base.h"
#include "ftc/data.h"
#include "ftc/tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True when the first non-blank line of path is a JSON object with "input_ids". */
static bool is_pretokenized(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[8192];
    bool yes = false;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) continue;
        yes = *p == '{' && strstr(p, "\"input_ids\"") != NULL;
        break;
    }
    fclose(f);
    return yes;
}

static ftc_status encode_opts(const ftc_train_config *c, const char *tok_dir, ftc_load_opts *o, ftc_err *err) {
    memset(o, 0, sizeof *o);
    ftc_status s = FTC_OK;
    if (c->format[0]) s = ftc_data_format_parse(c->format, &o->read.format, err);
    if (s == FTC_OK && c->template_name[0]) s = ftc_template_parse(c->template_name, &o->enc.tmpl, err);
    else if (s == FTC_OK) s = ftc_template_from_model_dir(tok_dir, &o->enc.tmpl, NULL, err);
    o->read.text_col = c->text_col[0] ? c->text_col : NULL;
    o->read.label_col = c->label_col[0] ? c->label_col : NULL;
    o->enc.task = c->task;
    o->enc.train_on_inputs = c->train_on_inputs;
    o->enc.max_len = c->max_len;
    o->seed = c->seed;
    o->pack = c->pack;
    return s;
}

/* The tokenizer of a run: the tuned model's directory has a copy; else the base model's. */
static const char *tokenizer_dir(const char *preferred, const char *fallback) {
    char p[FTC_PATH_MAX + 128];
    const char *files[] = {"tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model"};
    for (size_t i = 0; preferred && i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", preferred, files[i]);
        if (ftc_file_exists(p)) return preferred;
    }
    return fallback;
}

static ftc_status load_text(const ftc_train_config *c, const char *tok_dir, const char *data, const char *val_path,
                            double val_share, const char *out_dir, const ftc_label_map *labels, ftc_dataset *train,
                            ftc_dataset *val, ftc_err *err) {
    ftc_load_opts o;
    ftc_status s = encode_opts(c, tok_dir, &o, err);
    if (s != FTC_OK) return s;
    o.val_share = val_path ? 0 : val_share;
    o.out_dir = out_dir;
    ftc_tokenizer *tok = NULL;
    if ((s = ftc_tokenizer_load(tok_dir, &tok, err)) != FTC_OK) return s;
    ftc_data_encoder enc;
    ftc_data_encoder_from_tokenizer(tok, &enc);
    s = ftc_data_load(data, val_path, &o, &enc, labels, train, val, NULL, err);
    ftc_tokenizer_free(tok);
    return s;
}

ftc_status ftc_train_load_data(const ftc_train_config *c, int vocab_size, ftc_dataset *train, ftc_dataset *val,
                               bool *have_val, ftc_err *err) {
    *have_val = false;
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    ftc_status s;
    if (is_pretokenized(c->data)) {
        s = ftc_dataset_load_tokenized(c->data, c->task, NULL, vocab_size, train, err);
        if (s == FTC_OK && c->val[0])
            s = ftc_dataset_load_tokenized(c->val, c->task, c->task == FTC_TASK_CLASSIFY ? train : NULL, vocab_size, val, err);
        else if (s == FTC_OK && c->val_split > 0)
            s = ftc_dataset_split(train, c->val_split, c->seed, val, err);
    } else {
        if ((s = ftc_mkdirs(c->out, err)) != FTC_OK) return s;
        s = load_text(c, c->model, c->data, c->val[0] ? c->val : NULL, c->val_split, c->out, NULL, train, val, err);
    }
    *have_val = s == FTC_OK && val->n > 0;
    return s;
}

ftc_status ftc_run_dir_load_data(const char *dir, const ftc_train_config *c, const char *data_path, int vocab_size,
                                 ftc_dataset *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    char path[FTC_PATH_MAX + 64];
    ftc_label_map map = {0};
    ftc_status s = FTC_OK;
    bool have_map = false;
    if (c->task == FTC_TASK_CLASSIFY) {
        snprintf(path, sizeof path, "%s/labels.json", dir);
        if ((s = ftc_label_map_load(path, &map, err)) != FTC_OK) return s;
        have_map = true;
    }
    if (is_pretokenized(data_path)) {
        /* the run's label names, in class order, map string labels; integer labels are class indices */
        ftc_dataset names = {0};
        if (have_map && !map.numeric) {
            names.num_labels = map.n;
            names.label_names = map.names;
        } else if (have_map) {
            names.num_labels = map.n;
        }
        s = ftc_dataset_load_tokenized(data_path, c->task, have_map ? &names : NULL, vocab_size, out, err);
        if (s == FTC_OK && have_map && !map.numeric) {
            out->label_names = calloc((size_t)map.n, sizeof(char *));
            for (int i = 0; out->label_names && i < map.n; i++) out->label_names[i] = strdup(map.names[i]);
        }
    } else {
        snprintf(path, sizeof path, "%s/model", dir);
        ftc_dataset none = {0}; /* no validation part, but the loader gives it the label names */
        s = load_text(c, tokenizer_dir(path, c->model), data_path, NULL, 0, NULL, have_map ? &map : NULL, out, &none,
                      err);
        ftc_dataset_free(&none);
    }
    if (have_map) ftc_label_map_free(&map);
    return s;
}

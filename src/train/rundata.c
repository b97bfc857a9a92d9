/* Where a run's examples come from: text data through the data layer (the model's tokenizer, chat
 * template, label map, split), or pre-tokenized JSONL ({"input_ids": ...}) read directly. Shared by
 * `ftc train` and `ftc eval --model RUNDIR`, so evaluation reads data exactly as training did. */
#include "ftc/train.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/data.h"
#include "ftc/tokenizer.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True when the first non-blank line of path is a JSON object with "input_ids". */
static bool is_pretokenized(const char *path) {
    FILE *f;
    ftc_err e;
    if (ftc_open_read(path, &f, &e)) return false; /* the reader that follows reports it */
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

/* The chat template a run applied (RUNDIR/chat_template.json "jinja"), NULL in *out when it recorded none. */
static ftc_status run_template(const char *run_dir, ftc_chat_template **out, ftc_err *err) {
    char p[FTC_PATH_MAX + 64];
    *out = NULL;
    snprintf(p, sizeof p, "%s/chat_template.json", run_dir);
    if (!ftc_file_exists(p)) return FTC_OK;
    json_error_t je;
    json_t *o = ftc_json_load_file(p, 0, &je);
    if (!o) return ftc_errf(err, FTC_E_INPUT, "%s:%d:%d: %s", p, je.line, je.column, je.text);
    json_t *src = json_object_get(o, "jinja");
    ftc_status s = json_is_string(src) ? ftc_chat_template_from_text(p, json_string_value(src), json_string_length(src), out, err)
                                       : FTC_OK;
    json_decref(o);
    return s;
}

/* *tmpl: the chat template the examples are rendered with (the caller frees it): the run's own when evaluating
 * a run, else --template (a preset, a .jinja file), else the model's. */
static ftc_status encode_opts(const ftc_train_config *c, const char *tok_dir, const char *run_dir, ftc_load_opts *o,
                              ftc_chat_template **tmpl, ftc_err *err) {
    memset(o, 0, sizeof *o);
    *tmpl = NULL;
    ftc_status s = FTC_OK;
    if (c->format[0]) s = ftc_data_format_parse(c->format, &o->read.format, err);
    bool chat = c->task != FTC_TASK_CLASSIFY; /* classification never renders a chat */
    if (s == FTC_OK && chat && run_dir) s = run_template(run_dir, tmpl, err);
    if (s == FTC_OK && chat && !*tmpl) s = ftc_chat_template_choose(c->template_name, tok_dir, tmpl, err);
    o->enc.tmpl = *tmpl;
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

static ftc_status load_text(const ftc_train_config *c, const char *tok_dir, const char *run_dir, const char *data,
                            const char *val_path, double val_share, const char *out_dir, const ftc_label_map *labels,
                            ftc_dataset *train, ftc_dataset *val, ftc_err *err) {
    ftc_load_opts o;
    ftc_chat_template *tmpl;
    ftc_status s = encode_opts(c, tok_dir, run_dir, &o, &tmpl, err);
    if (s != FTC_OK) return s;
    o.val_share = val_path ? 0 : val_share;
    o.out_dir = out_dir;
    ftc_tokenizer *tok = NULL;
    if ((s = ftc_tokenizer_load(tok_dir, &tok, err)) != FTC_OK) {
        ftc_chat_template_free(tmpl);
        return s;
    }
    ftc_data_encoder enc;
    ftc_data_encoder_from_tokenizer(tok, &enc);
    s = ftc_data_load(data, val_path, &o, &enc, labels, train, val, NULL, err);
    ftc_tokenizer_free(tok);
    ftc_chat_template_free(tmpl);
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
        /* data parallel: every rank reads the data, rank 0 alone writes labels.json and split/ */
        bool writer = !ftc_train_dp_active(c->dp) || c->dp->rank == 0;
        if (writer && (s = ftc_mkdirs(c->out, err)) != FTC_OK) return s;
        s = load_text(c, c->model, NULL, c->data, c->val[0] ? c->val : NULL, c->val_split, writer ? c->out : NULL, NULL,
                      train, val, err);
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
        s = load_text(c, tokenizer_dir(path, c->model), dir, data_path, NULL, 0, NULL, have_map ? &map : NULL, out,
                      &none, err);
        ftc_dataset_free(&none);
    }
    if (have_map) ftc_label_map_free(&map);
    return s;
}

/* Whether the first record of a pre-tokenized file has an integer "label". */
static bool first_label_is_integer(const char *path) {
    FILE *f;
    ftc_err e;
    if (ftc_open_read(path, &f, &e)) return false;
    json_error_t je;
    json_t *o = json_loadf(f, JSON_DISABLE_EOF_CHECK, &je);
    fclose(f);
    bool yes = json_is_integer(json_object_get(o, "label"));
    json_decref(o);
    return yes;
}

/* Rewrites the data layer's "not in the training labels" into words about the model directory's labels. */
static ftc_status unknown_label_error(ftc_status s, const char *dir, ftc_err *err) {
    const char *phrases[] = {"never appears in the training labels", "is not in the training labels"};
    for (int i = 0; s == FTC_E_INPUT && i < 2; i++) {
        char *at = strstr(err->msg, phrases[i]);
        if (!at) continue;
        char tail[FTC_PATH_MAX + 64];
        snprintf(tail, sizeof tail, "is not one of the labels of %s (config.json id2label)", dir);
        snprintf(at, sizeof err->msg - (size_t)(at - err->msg), "%s", tail);
    }
    return s;
}

ftc_status ftc_model_dir_load_class_data(const char *dir, const ftc_model_config *mc, const char *data_path,
                                         int max_len, int vocab_size, ftc_dataset *out, ftc_err *err) {
    memset(out, 0, sizeof *out);
    int k = mc->num_labels;
    if (k < 1 || !mc->id2label) return ftc_errf(err, FTC_E_INPUT, "%s/config.json has no id2label", dir);
    ftc_status s;
    if (is_pretokenized(data_path)) {
        /* string labels by name; integer labels (judged by the first record, as the loader does) as indices */
        ftc_dataset names = {.num_labels = k, .label_names = first_label_is_integer(data_path) ? NULL : mc->id2label};
        s = ftc_dataset_load_tokenized(data_path, FTC_TASK_CLASSIFY, &names, vocab_size, out, err);
        if (s == FTC_OK) {
            out->label_names = calloc((size_t)k, sizeof(char *));
            for (int i = 0; out->label_names && i < k; i++) out->label_names[i] = strdup(mc->id2label[i]);
        }
        return unknown_label_error(s, dir, err);
    }
    /* The data layer finds a label by name in a sorted map. Its entries: the label names and, unless every name
     * is an integer (then integers are names, as in the run's labels.json), the class indices "0".."k-1";
     * class_of turns a map position into the class index. */
    bool names_numeric = true;
    for (int i = 0; i < k; i++) {
        const char *p = mc->id2label[i] ? mc->id2label[i] : "";
        if (*p == '-') p++;
        if (!*p || strspn(p, "0123456789") != strlen(p)) names_numeric = false;
    }
    int n_entries = names_numeric ? k : 2 * k;
    char **entries = calloc((size_t)n_entries, sizeof(char *));
    int *class_of = NULL;
    ftc_label_map map = {0};
    if (!entries) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int i = 0; i < k; i++) entries[i] = mc->id2label[i] ? mc->id2label[i] : "";
    char (*index_text)[16] = calloc((size_t)k, 16);
    if (!index_text) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    else {
        for (int i = 0; !names_numeric && i < k; i++) {
            snprintf(index_text[i], 16, "%d", i);
            entries[k + i] = index_text[i];
        }
        s = ftc_label_map_build((const char *const *)entries, (size_t)n_entries, &map, err);
    }
    if (s == FTC_OK && !(class_of = malloc((size_t)map.n * sizeof(int)))) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    for (int p = 0; s == FTC_OK && p < map.n; p++) {
        class_of[p] = -1;
        for (int i = 0; i < k && class_of[p] < 0; i++) /* a name first, then an index */
            if (!strcmp(map.names[p], entries[i])) class_of[p] = i;
        if (class_of[p] < 0) class_of[p] = atoi(map.names[p]);
    }
    free(index_text);
    free(entries);
    if (s == FTC_OK) {
        ftc_train_config *c = malloc(sizeof *c);
        if (!c) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
        else {
            ftc_train_config_defaults(c);
            c->task = FTC_TASK_CLASSIFY;
            c->max_len = max_len;
            snprintf(c->model, sizeof c->model, "%s", dir);
            ftc_dataset none = {0};
            s = load_text(c, dir, NULL, data_path, NULL, 0, NULL, &map, out, &none, err);
            ftc_dataset_free(&none);
            free(c);
        }
    }
    if (s == FTC_OK) {
        for (int i = 0; i < out->n; i++) out->ex[i].label = class_of[out->ex[i].label];
        if (out->label_names)
            for (int i = 0; i < out->num_labels; i++) free(out->label_names[i]);
        free(out->label_names);
        out->num_labels = k;
        out->label_names = calloc((size_t)k, sizeof(char *));
        for (int i = 0; out->label_names && i < k; i++) out->label_names[i] = strdup(mc->id2label[i]);
        if (!out->label_names) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    free(class_of);
    ftc_label_map_free(&map);
    return unknown_label_error(s, dir, err);
}

bool ftc_train_task_of_data(const ftc_train_config *c, ftc_task *task, const char **why) {
    if (is_pretokenized(c->data)) { /* {"input_ids", "label"} classifies; "labels" or none: a language model */
        FILE *f;
        ftc_err e;
        if (ftc_open_read(c->data, &f, &e)) return false;
        char line[8192];
        bool label = false;
        while (fgets(line, sizeof line, f)) {
            if (line[strspn(line, " \t\r\n")] == 0) continue;
            label = strstr(line, "\"label\"") != NULL;
            break;
        }
        fclose(f);
        *task = label ? FTC_TASK_CLASSIFY : FTC_TASK_CAUSAL_LM;
        *why = label ? "pre-tokenized with a label" : "pre-tokenized without a label";
        return true;
    }
    ftc_read_opts o = {0};
    ftc_err e;
    if (c->format[0] && ftc_data_format_parse(c->format, &o.format, &e) != FTC_OK) return false;
    o.text_col = c->text_col[0] ? c->text_col : NULL;
    o.label_col = c->label_col[0] ? c->label_col : NULL;
    ftc_reader *r;
    if (ftc_reader_open(c->data, &o, &r, &e) != FTC_OK) return false;
    ftc_record rec = {0};
    bool got = false;
    for (int i = 0; i < 1000; i++) { /* the first valid record */
        ftc_status s = ftc_reader_next(r, &rec, &got, &e);
        if (s == FTC_OK || s != FTC_E_INPUT) break;
    }
    ftc_data_format f = got ? rec.format : ftc_reader_format(r);
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    if (f == FTC_FMT_AUTO) return false;
    *task = f == FTC_FMT_LABEL ? FTC_TASK_CLASSIFY : FTC_TASK_CAUSAL_LM;
    *why = f == FTC_FMT_LABEL ? "labelled records" : f == FTC_FMT_CHAT ? "chat records (messages)"
         : f == FTC_FMT_COMPLETION ? "prompt/completion records" : "text records";
    return true;
}

ftc_status ftc_model_eval_lm_data(ftc_model *m, const char *tok_dir, const char *data_path, int max_len, int batch,
                                  json_t **json, ftc_err *err) {
    *json = NULL;
    ftc_train_config *c = malloc(sizeof *c);
    if (!c) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_train_config_defaults(c); /* what ftc train would do with this file and no flags */
    c->task = FTC_TASK_CAUSAL_LM;
    snprintf(c->model, sizeof c->model, "%s", tok_dir);
    int positions = ftc_model_config_of(m)->max_positions;
    if (max_len > 0) c->max_len = max_len;
    if (positions > 0 && c->max_len > positions) c->max_len = positions;
    if (batch <= 0) batch = c->batch > 0 ? c->batch : 8; /* the method's default batch is set later in training */
    ftc_dataset d = {0}, none = {0};
    int vocab = ftc_model_config_of(m)->vocab_size;
    ftc_status s = is_pretokenized(data_path)
                       ? ftc_dataset_load_tokenized(data_path, FTC_TASK_CAUSAL_LM, NULL, vocab, &d, err)
                       : load_text(c, tok_dir, NULL, data_path, NULL, 0, NULL, NULL, &d, &none, err);
    ftc_dataset_free(&none);
    ftc_eval_result r;
    if (s == FTC_OK) s = ftc_train_evaluate(m, FTC_TASK_CAUSAL_LM, &d, batch, c->max_len, &r, json, err);
    if (s == FTC_OK && !*json) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_dataset_free(&d);
    free(c);
    return s;
}

/* ftc data check: reads the training (and validation) data completely, collects every bad record (up to a
 * cap, counting all), and the statistics that spoil a run when nobody looks: token lengths against
 * --max-len, examples with nothing to train on, duplicates and near-duplicates, train/validation leakage,
 * label balance, and the step count the run will take. The report is a JSON object; the CLI prints it
 * as text or as is. Memory: a few integers per example (lengths and two hashes), not the data. */
#include "data_internal.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Per example: 32 bytes (+ 8 for the token counts) is all check keeps. */
typedef struct {
    uint64_t hash;  /* of the normalised content (near-duplicates, leakage) */
    uint64_t exact; /* of the whole record as canonical JSON (exact duplicates) */
    uint64_t label; /* of the label (labelled data), to find one text with two labels */
    long line;
} hashed;

typedef struct {
    const char *path;
    ftc_data_format format;
    ftc_file_kind kind;
    long records, bad;
    int *tokens;       /* per valid example: ids before truncation (with enc) */
    int *trained;      /* trained tokens after truncation */
    size_t n, cap;
    hashed *h;
    long over_max, no_trainable, missing_system, missing_user, assistant_msgs;
    json_t *labels;    /* name -> count */
    int label_kind;    /* 0 unknown, 1 int, 2 string */
    long label_kind_line;
} file_stats;

typedef struct {
    const ftc_check_opts *o;
    const ftc_data_encoder *enc;
    json_t *errors;
    long n_errors;
} checker;

static uint64_t fnv1a(const void *p, size_t n, uint64_t h) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 0x100000001b3ULL; }
    return h;
}
#define FNV_START 0xcbf29ce484222325ULL

/* Lower case, accents and punctuation dropped, whitespace collapsed: "Hello, World!" == "hello world". */
static uint64_t near_hash(const char *s, uint64_t h) {
    utf8proc_uint8_t *folded = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, 0, &folded,
                                      UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |
                                          UTF8PROC_CASEFOLD | UTF8PROC_STRIPMARK);
    if (n < 0) return fnv1a(s, strlen(s), h);
    bool gap = false, any = false;
    for (utf8proc_ssize_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(folded + i, n - i, &cp);
        if (k <= 0) break;
        utf8proc_category_t c = utf8proc_category(cp);
        bool word = (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
                    (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
        if (word) {
            if (gap && any) h = fnv1a(" ", 1, h);
            h = fnv1a(folded + i, (size_t)k, h);
            any = true;
            gap = false;
        } else {
            gap = true;
        }
        i += k;
    }
    free(folded);
    return h;
}

static uint64_t content_near_hash(const ftc_record *r) {
    uint64_t h = FNV_START;
    switch (r->format) {
    case FTC_FMT_TEXT: return near_hash(r->text, h);
    case FTC_FMT_LABEL:
        h = near_hash(r->text, h);
        if (r->text_pair) { h = fnv1a("\x1f", 1, h); h = near_hash(r->text_pair, h); }
        return h;
    case FTC_FMT_COMPLETION: h = near_hash(r->prompt, h); h = fnv1a("\x1f", 1, h); return near_hash(r->completion, h);
    case FTC_FMT_CHAT:
        for (int i = 0; i < r->n_msgs; i++) {
            unsigned char role = (unsigned char)r->msgs[i].role;
            h = fnv1a(&role, 1, h);
            h = near_hash(r->msgs[i].content, h);
        }
        return h;
    default: return h;
    }
}

/* Splits "path:line:col: msg" / "path:line: msg" back into its parts for the JSON report. */
static void add_error(checker *c, const char *path, const ftc_err *e) {
    c->n_errors++;
    if ((long)json_array_size(c->errors) >= c->o->max_errors) return;
    const char *m = e->msg;
    long line = 0, col = 0;
    size_t pl = strlen(path);
    if (!strncmp(m, path, pl) && m[pl] == ':') {
        char *end;
        const char *p = m + pl + 1;
        line = strtol(p, &end, 10);
        if (end != p && *end == ':') {
            p = end + 1;
            long c2 = strtol(p, &end, 10);
            if (end != p && *end == ':') { col = c2; p = end + 1; }
            while (*p == ' ') p++;
            m = p;
        } else {
            line = 0;
        }
    }
    json_t *o = json_pack("{s:s, s:I, s:I, s:s}", "file", path, "line", (json_int_t)line, "column", (json_int_t)col,
                          "message", m);
    json_array_append_new(c->errors, o);
}

static bool push(file_stats *f) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 1024;
        int *t = realloc(f->tokens, cap * sizeof *t);
        if (t) f->tokens = t;
        int *tr = realloc(f->trained, cap * sizeof *tr);
        if (tr) f->trained = tr;
        hashed *h = realloc(f->h, cap * sizeof *h);
        if (h) f->h = h;
        if (!t || !tr || !h) return false;
        f->cap = cap;
    }
    return true;
}

static ftc_status check_file(checker *c, const char *path, file_stats *f, ftc_err *err) {
    ftc_reader *rd;
    ftc_status s = ftc_reader_open(path, &c->o->read, &rd, err);
    if (s != FTC_OK) return s;
    f->path = path;
    f->labels = json_object();
    ftc_record rec = {0};
    ftc_encode_opts eo = c->o->enc;
    eo.max_len = 0; /* measure whole examples, compare with max_len here */
    for (;;) {
        bool got;
        ftc_err e;
        s = ftc_reader_next(rd, &rec, &got, &e);
        if (s == FTC_E_INPUT) {
            f->records++;
            f->bad++;
            add_error(c, path, &e);
            continue;
        }
        if (s != FTC_OK) { *err = e; break; }
        if (!got) break;
        f->records++;
        if (!push(f)) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
        /* labels */
        if (rec.format == FTC_FMT_LABEL) {
            int kind = rec.label_is_int ? 1 : 2;
            if (f->label_kind && kind != f->label_kind) {
                ftc_errf(&e, FTC_E_INPUT, "%s:%ld: label %s%s%s is %s but the label on line %ld is %s", path, rec.line,
                         kind == 1 ? "" : "\"", rec.label, kind == 1 ? "" : "\"", kind == 1 ? "an integer" : "a string",
                         f->label_kind_line,
                         f->label_kind == 1 ? "an integer" : "a string");
                f->bad++;
                add_error(c, path, &e);
                continue;
            }
            if (!f->label_kind) { f->label_kind = kind; f->label_kind_line = rec.line; }
            json_t *cnt = json_object_get(f->labels, rec.label);
            json_object_set_new(f->labels, rec.label, json_integer(cnt ? json_integer_value(cnt) + 1 : 1));
        }
        if (rec.format == FTC_FMT_CHAT) {
            bool sys = false, user = false;
            for (int i = 0; i < rec.n_msgs; i++) {
                sys |= rec.msgs[i].role == FTC_ROLE_SYSTEM;
                user |= rec.msgs[i].role == FTC_ROLE_USER;
                f->assistant_msgs += rec.msgs[i].role == FTC_ROLE_ASSISTANT;
            }
            f->missing_system += !sys;
            f->missing_user += !user;
        }
        int n_tok = 0, n_trained = 0;
        if (c->enc) {
            if (rec.format == FTC_FMT_CHAT && !eo.tmpl) {
                s = ftc_errf(err, FTC_E_USAGE, "%s is chat data: the model has no chat template (tokenizer_config.json "
                                               "\"chat_template\"); choose one with --chat-template (chatml, llama3, "
                                               "llama2, zephyr, plain or a .jinja file)",
                             path);
                break;
            }
            ftc_example ex;
            s = ftc_data_encode_record(&rec, &eo, c->enc, NULL, path, &ex, NULL, &e);
            if (s == FTC_E_INPUT) {
                f->bad++;
                add_error(c, path, &e);
                s = FTC_OK;
                continue;
            }
            if (s != FTC_OK) { *err = e; break; }
            n_tok = ex.len;
            int max_len = c->o->enc.max_len;
            if (max_len > 0 && n_tok > max_len) {
                f->over_max++;
                /* what survives truncation */
                int from = c->o->enc.truncation == FTC_TRUNC_LEFT ? n_tok - max_len : 0;
                ftc_example cut = ex;
                cut.ids += from;
                if (cut.labels) cut.labels += from;
                cut.len = max_len;
                n_trained = eo.task == FTC_TASK_CLASSIFY ? 1 : ftc_example_trained_tokens(&cut);
            } else {
                n_trained = eo.task == FTC_TASK_CLASSIFY ? 1 : ftc_example_trained_tokens(&ex);
            }
            if (n_trained == 0) f->no_trainable++;
            ftc_example_free(&ex);
        }
        f->tokens[f->n] = n_tok;
        f->trained[f->n] = n_trained;
        char *canon = ftc_record_to_jsonl(&rec);
        uint64_t exact_hash = canon ? fnv1a(canon, strlen(canon), FNV_START) : 0;
        free(canon);
        f->h[f->n] = (hashed){content_near_hash(&rec), exact_hash,
                              rec.label ? fnv1a(rec.label, strlen(rec.label), FNV_START) : 0, rec.line};
        f->n++;
    }
    if (s == FTC_OK && f->n == 0) { /* nothing to train on is an error, not an empty report */
        ftc_err e;
        ftc_errf(&e, FTC_E_INPUT, "%s:%ld: no valid examples (%ld records read)", path, rd->line_no, f->records);
        add_error(c, path, &e);
    }
    f->format = ftc_reader_format(rd);
    f->kind = ftc_reader_file_kind(rd);
    ftc_record_clear(&rec);
    ftc_reader_close(rd);
    return s;
}

static int cmp_near(const void *a, const void *b) {
    const hashed *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}
static int cmp_exact(const void *a, const void *b) {
    const hashed *x = a, *y = b;
    if (x->exact != y->exact) return x->exact < y->exact ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}
static uint64_t key_of(const hashed *h, bool exact) { return exact ? h->exact : h->hash; }
static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Sorts h and counts entries equal to an earlier one; appends up to 5 examples "line A = line B". */
static long count_dups(hashed *h, size_t n, bool exact, json_t *examples) {
    if (n < 2) return 0;
    qsort(h, n, sizeof *h, exact ? cmp_exact : cmp_near);
    long dups = 0;
    for (size_t i = 1; i < n; i++) {
        if (key_of(&h[i], exact) != key_of(&h[i - 1], exact)) continue;
        dups++;
        size_t first = i - 1;
        while (first > 0 && key_of(&h[first - 1], exact) == key_of(&h[i], exact)) first--;
        if (examples && json_array_size(examples) < 5)
            json_array_append_new(examples, json_pack("{s:I, s:I}", "line", (json_int_t)h[i].line, "same_as_line",
                                                      (json_int_t)h[first].line));
    }
    return dups;
}

static json_t *stats_json(checker *c, file_stats *f) {
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(f->path));
    json_object_set_new(o, "file_type", json_string(ftc_file_kind_name(f->kind)));
    json_object_set_new(o, "format", json_string(ftc_data_format_name(f->format)));
    json_object_set_new(o, "records", json_integer(f->records));
    json_object_set_new(o, "bad_records", json_integer(f->bad));
    json_object_set_new(o, "examples", json_integer((json_int_t)f->n));
    if (c->enc && f->n) {
        int *sorted = malloc(f->n * sizeof *sorted);
        long long total = 0, trained = 0;
        int max_len = c->o->enc.max_len;
        for (size_t i = 0; i < f->n; i++) {
            sorted[i] = f->tokens[i];
            total += max_len > 0 && f->tokens[i] > max_len ? max_len : f->tokens[i];
            trained += f->trained[i];
        }
        qsort(sorted, f->n, sizeof *sorted, cmp_int);
        size_t p95 = (size_t)ceil(0.95 * (double)f->n) - 1;
        json_object_set_new(o, "tokens", json_pack("{s:i, s:f, s:i, s:i, s:I}", "min", sorted[0], "median",
                                                   f->n % 2 ? sorted[f->n / 2] : 0.5 * (sorted[f->n / 2 - 1] + sorted[f->n / 2]),
                                                   "p95", sorted[p95], "max", sorted[f->n - 1], "total", (json_int_t)total));
        free(sorted);
        json_object_set_new(o, "trained_tokens", json_integer(trained));
        json_object_set_new(o, "over_max_len", json_integer(f->over_max));
        json_object_set_new(o, "no_trainable_tokens", json_integer(f->no_trainable));
    }
    json_t *ex_dup = json_array(), *near_dup = json_array();
    long exact = count_dups(f->h, f->n, true, ex_dup);
    /* near duplicates: same normalised content but not an exact duplicate (leaves h sorted by content) */
    long near = count_dups(f->h, f->n, false, NULL) - exact;
    hashed *h = f->h;
    for (size_t i = 1; i < f->n && json_array_size(near_dup) < 5; i++) {
        if (h[i].hash != h[i - 1].hash) continue;
        size_t first = i - 1;
        while (first > 0 && h[first - 1].hash == h[i].hash) first--;
        bool exact_dup = false; /* listed with the exact duplicates already */
        for (size_t k = first; k < i; k++) exact_dup |= h[k].exact == h[i].exact;
        if (!exact_dup)
            json_array_append_new(near_dup, json_pack("{s:I, s:I}", "line", (json_int_t)h[i].line, "same_as_line",
                                                      (json_int_t)h[first].line));
    }
    /* one (normalised) text under two labels: the classifier is told two things */
    long conflicts = 0;
    json_t *conf_ex = json_array();
    for (size_t i = 1; i < f->n; i++) {
        if (h[i].hash != h[i - 1].hash || h[i].label == h[i - 1].label) continue;
        size_t first = i - 1;
        while (first > 0 && h[first - 1].hash == h[i].hash) first--;
        bool seen = false; /* count each group once */
        for (size_t k = first + 1; k < i; k++) seen |= h[k].label != h[k - 1].label;
        if (seen) continue;
        conflicts++;
        if (json_array_size(conf_ex) < 5)
            json_array_append_new(conf_ex, json_pack("{s:I, s:I}", "line", (json_int_t)h[i].line, "same_as_line",
                                                     (json_int_t)h[i - 1].line));
    }
    if (json_object_size(f->labels)) {
        json_object_set_new(o, "conflicting_labels", json_integer(conflicts));
        json_object_set_new(o, "conflicting_label_examples", conf_ex);
    } else {
        json_decref(conf_ex);
    }
    json_object_set_new(o, "exact_duplicates", json_integer(exact));
    json_object_set_new(o, "exact_duplicate_examples", ex_dup);
    json_object_set_new(o, "near_duplicates", json_integer(near < 0 ? 0 : near));
    json_object_set_new(o, "near_duplicate_examples", near_dup);
    if (f->format == FTC_FMT_CHAT) {
        json_object_set_new(o, "missing_system_message", json_integer(f->missing_system));
        json_object_set_new(o, "missing_user_message", json_integer(f->missing_user));
        json_object_set_new(o, "assistant_messages", json_integer(f->assistant_msgs));
    }
    if (json_object_size(f->labels)) {
        json_object_set(o, "labels", f->labels);
        json_int_t lo = -1, hi = 0;
        const char *k;
        json_t *v;
        json_object_foreach(f->labels, k, v) {
            json_int_t n = json_integer_value(v);
            if (lo < 0 || n < lo) lo = n;
            if (n > hi) hi = n;
        }
        json_object_set_new(o, "num_labels", json_integer((json_int_t)json_object_size(f->labels)));
        json_object_set_new(o, "imbalance_ratio", json_real(lo > 0 ? (double)hi / (double)lo : 0));
    }
    return o;
}

static void stats_free(file_stats *f) {
    free(f->tokens);
    free(f->trained);
    free(f->h);
    json_decref(f->labels);
}

static int cmp_hash_only(const void *a, const void *b) {
    const hashed *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

ftc_status ftc_data_check(const char *data, const char *val, const ftc_check_opts *o, const ftc_data_encoder *enc,
                          json_t **report, ftc_err *err) {
    *report = NULL;
    checker c = {o, enc, json_array(), 0};
    file_stats tr = {0}, va = {0};
    ftc_status s = check_file(&c, data, &tr, err);
    if (s == FTC_OK && val) s = check_file(&c, val, &va, err);
    if (s != FTC_OK) {
        stats_free(&tr);
        stats_free(&va);
        json_decref(c.errors);
        return s;
    }
    json_t *r = json_object();
    json_t *warnings = json_array();
    ftc_task task = o->enc.task;
    json_object_set_new(r, "task", json_string(ftc_task_name(task)));
    json_object_set_new(r, "chat_template", json_string(ftc_chat_template_name(o->enc.tmpl)));
    json_object_set_new(r, "max_len", json_integer(o->enc.max_len));
    json_t *trj = stats_json(&c, &tr);
    json_object_set_new(r, "train", trj);
    if (val) {
        json_object_set_new(r, "val", stats_json(&c, &va));
        /* leakage: validation examples whose normalised content is in training (near includes exact) */
        /* tr.h is sorted by content hash (stats_json) */
        long leaks = 0;
        json_t *ex = json_array();
        for (size_t i = 0; tr.n && i < va.n; i++) {
            hashed *hit = bsearch(&va.h[i], tr.h, tr.n, sizeof *tr.h, cmp_hash_only);
            if (!hit) continue;
            leaks++;
            if (json_array_size(ex) < 5)
                json_array_append_new(ex, json_pack("{s:I, s:I}", "val_line", (json_int_t)va.h[i].line, "train_line",
                                                    (json_int_t)hit->line));
        }
        json_object_set_new(r, "leakage", json_pack("{s:I, s:o}", "val_examples_in_train", (json_int_t)leaks, "examples", ex));
        if (leaks)
            json_array_append_new(warnings, json_sprintf("%ld validation examples also occur in the training data "
                                                         "(after normalising case, accents and punctuation)", leaks));
        /* validation labels never seen in training are errors: the classifier cannot predict them */
        const char *k;
        json_t *v;
        json_object_foreach(va.labels, k, v) {
            if (json_object_get(tr.labels, k)) continue;
            ftc_err e;
            ftc_errf(&e, FTC_E_INPUT, "label \"%s\" (%lld examples) never appears in the training labels", k,
                     (long long)json_integer_value(v));
            add_error(&c, val, &e);
        }
    }
    /* warnings a person should read before training */
    if (json_integer_value(json_object_get(trj, "over_max_len")) > 0)
        json_array_append_new(warnings, json_sprintf("%lld training examples exceed --max-len %d and will be truncated "
                                                     "(%s)",
                                                     (long long)json_integer_value(json_object_get(trj, "over_max_len")),
                                                     o->enc.max_len,
                                                     o->enc.truncation == FTC_TRUNC_LEFT ? "from the left" : "from the right"));
    if (json_integer_value(json_object_get(trj, "no_trainable_tokens")) > 0)
        json_array_append_new(warnings, json_sprintf("%lld training examples have no trainable tokens (after truncation)",
                                                     (long long)json_integer_value(json_object_get(trj, "no_trainable_tokens"))));
    if (json_integer_value(json_object_get(trj, "exact_duplicates")) > 0)
        json_array_append_new(warnings, json_sprintf("%lld exact duplicates in the training data",
                                                     (long long)json_integer_value(json_object_get(trj, "exact_duplicates"))));
    if (json_integer_value(json_object_get(trj, "near_duplicates")) > 0)
        json_array_append_new(warnings, json_sprintf("%lld near-duplicates in the training data (same text up to case, "
                                                     "accents, punctuation and spacing)",
                                                     (long long)json_integer_value(json_object_get(trj, "near_duplicates"))));
    if (json_integer_value(json_object_get(trj, "conflicting_labels")) > 0)
        json_array_append_new(warnings, json_sprintf("%lld texts appear in the training data with different labels",
                                                     (long long)json_integer_value(json_object_get(trj, "conflicting_labels"))));
    double imb = json_real_value(json_object_get(trj, "imbalance_ratio"));
    if (imb >= 3)
        json_array_append_new(warnings, json_sprintf("labels are imbalanced: the largest class has %.1fx the examples of "
                                                     "the smallest", imb));
    if (json_object_get(trj, "num_labels") && json_integer_value(json_object_get(trj, "num_labels")) < 2)
        json_array_append_new(warnings, json_string("only one label in the training data: nothing to classify"));
    if (json_integer_value(json_object_get(trj, "missing_user_message")) > 0)
        json_array_append_new(warnings, json_sprintf("%lld conversations have no user message",
                                                     (long long)json_integer_value(json_object_get(trj, "missing_user_message"))));
    /* the run this data makes */
    int batch = o->batch > 0 ? o->batch : 1, accum = o->grad_accum > 0 ? o->grad_accum : 1;
    int epochs = o->epochs > 0 ? o->epochs : 1;
    long long per_epoch = ((long long)tr.n + (long long)batch * accum - 1) / ((long long)batch * accum);
    json_t *est = json_pack("{s:i, s:i, s:i, s:I, s:I}", "batch", batch, "grad_accum", accum, "epochs", epochs,
                            "steps_per_epoch", (json_int_t)per_epoch, "steps", (json_int_t)(per_epoch * epochs));
    json_t *tok = json_object_get(trj, "tokens");
    if (tok)
        json_object_set_new(est, "training_tokens",
                            json_integer(json_integer_value(json_object_get(tok, "total")) * epochs));
    json_object_set_new(r, "estimate", est);
    json_object_set_new(r, "warnings", warnings);
    json_object_set_new(r, "n_errors", json_integer(c.n_errors));
    json_object_set_new(r, "errors", c.errors);
    stats_free(&tr);
    stats_free(&va);
    *report = r;
    return FTC_OK;
}

static json_int_t geti(const json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

static void print_file(const json_t *f, const json_t *r, FILE *out) {
    fprintf(out, "%s (%s, format %s): %lld records, %lld examples, %lld bad\n", json_string_value(json_object_get(f, "file")),
            json_string_value(json_object_get(f, "file_type")), json_string_value(json_object_get(f, "format")),
            (long long)geti(f, "records"), (long long)geti(f, "examples"), (long long)geti(f, "bad_records"));
    const json_t *t = json_object_get(f, "tokens");
    if (t) {
        fprintf(out, "  tokens per example: min %lld, median %g, p95 %lld, max %lld\n", (long long)geti(t, "min"),
                json_real_value(json_object_get(t, "median")), (long long)geti(t, "p95"), (long long)geti(t, "max"));
        bool lm = strcmp(json_string_value(json_object_get(r, "task")), "classify") != 0;
        fprintf(out, "  over --max-len %lld (truncated): %lld; tokens after truncation: %lld", (long long)geti(r, "max_len"),
                (long long)geti(f, "over_max_len"), (long long)geti(t, "total"));
        if (lm)
            fprintf(out, ", trained %lld; examples with no trainable tokens: %lld", (long long)geti(f, "trained_tokens"),
                    (long long)geti(f, "no_trainable_tokens"));
        fprintf(out, "\n");
    }
    fprintf(out, "  duplicates: %lld exact, %lld near", (long long)geti(f, "exact_duplicates"),
            (long long)geti(f, "near_duplicates"));
    if (json_object_get(f, "conflicting_labels"))
        fprintf(out, "; same text with different labels: %lld", (long long)geti(f, "conflicting_labels"));
    fprintf(out, "\n");
    const char *lists[][2] = {{"exact_duplicate_examples", "exact"}, {"near_duplicate_examples", "near"},
                              {"conflicting_label_examples", "different labels"}};
    for (int k = 0; k < 3; k++) {
        const json_t *a = json_object_get(f, lists[k][0]);
        if (!json_array_size(a)) continue;
        fprintf(out, "    %s, e.g.", lists[k][1]);
        size_t i;
        json_t *e;
        json_array_foreach(a, i, e)
            fprintf(out, "%s line %lld = line %lld", i ? "," : "", (long long)geti(e, "line"), (long long)geti(e, "same_as_line"));
        fprintf(out, "\n");
    }
    if (json_object_get(f, "missing_system_message"))
        fprintf(out, "  conversations without a system message: %lld, without a user message: %lld\n",
                (long long)geti(f, "missing_system_message"), (long long)geti(f, "missing_user_message"));
    const json_t *labels = json_object_get(f, "labels");
    if (labels) {
        fprintf(out, "  labels: %lld, imbalance (largest/smallest class): %.2f\n", (long long)geti(f, "num_labels"),
                json_real_value(json_object_get(f, "imbalance_ratio")));
        /* the smallest and largest classes are the ones worth seeing */
        const char *k, *kmin = NULL, *kmax = NULL;
        json_t *v;
        json_int_t mn = 0, mx = 0;
        json_object_foreach((json_t *)labels, k, v) {
            json_int_t n = json_integer_value(v);
            if (!kmin || n < mn) { kmin = k; mn = n; }
            if (!kmax || n > mx) { kmax = k; mx = n; }
        }
        fprintf(out, "  smallest class: %s (%lld), largest: %s (%lld)\n", kmin, (long long)mn, kmax, (long long)mx);
    }
}

void ftc_data_check_print(const json_t *r, FILE *out) {
    const json_t *errs = json_object_get(r, "errors");
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e) {
        json_int_t col = geti(e, "column"), line = geti(e, "line");
        if (col) fprintf(out, "error: %s:%lld:%lld: %s\n", json_string_value(json_object_get(e, "file")), (long long)line,
                         (long long)col, json_string_value(json_object_get(e, "message")));
        else if (line) fprintf(out, "error: %s:%lld: %s\n", json_string_value(json_object_get(e, "file")), (long long)line,
                               json_string_value(json_object_get(e, "message")));
        else fprintf(out, "error: %s: %s\n", json_string_value(json_object_get(e, "file")),
                     json_string_value(json_object_get(e, "message")));
    }
    long long n_err = geti(r, "n_errors");
    if (n_err > (long long)json_array_size(errs))
        fprintf(out, "... and %lld more errors (raise --max-errors to see them)\n", n_err - (long long)json_array_size(errs));
    fprintf(out, "task %s, chat template %s\n", json_string_value(json_object_get(r, "task")),
            json_string_value(json_object_get(r, "chat_template")));
    print_file(json_object_get(r, "train"), r, out);
    if (json_object_get(r, "val")) {
        print_file(json_object_get(r, "val"), r, out);
        fprintf(out, "  validation examples also in training: %lld\n",
                (long long)geti(json_object_get(r, "leakage"), "val_examples_in_train"));
    }
    const json_t *est = json_object_get(r, "estimate");
    fprintf(out, "estimate: %lld steps (%lld per epoch x %lld epochs, batch %lld, grad-accum %lld)",
            (long long)geti(est, "steps"), (long long)geti(est, "steps_per_epoch"), (long long)geti(est, "epochs"),
            (long long)geti(est, "batch"), (long long)geti(est, "grad_accum"));
    if (json_object_get(est, "training_tokens"))
        fprintf(out, ", %lld training tokens", (long long)geti(est, "training_tokens"));
    fprintf(out, "\n");
    json_array_foreach(json_object_get(r, "warnings"), i, e) fprintf(out, "warning: %s\n", json_string_value(e));
    fprintf(out, "%lld error%s\n", n_err, n_err == 1 ? "" : "s");
}

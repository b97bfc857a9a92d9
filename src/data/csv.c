/* CSV (RFC 4180) and TSV with a header row. Quoted fields may hold the separator, doubled quotes ("") and
 * line breaks (kept as written). A quote inside an unquoted field is taken literally (as Python's csv does);
 * text after a closing quote other than the separator or the line end is an error, as is a quoted field
 * still open at the end of the file. Blank lines between records are skipped. */
#include "data_internal.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void ftc_ds_csv_free(ftc_reader *r) {
    for (int i = 0; i < r->n_cols; i++) free(r->cols[i]);
    free(r->cols);
    free(r->field_buf);
    free(r->field_off);
    free(r->field_line);
    free(r->field_col);
    r->cols = NULL;
    r->n_cols = 0;
}

static bool buf_put(ftc_reader *r, const char *s, size_t n) {
    if (r->field_len + n + 1 > r->field_cap) {
        size_t cap = (r->field_len + n + 1) * 2;
        char *b = realloc(r->field_buf, cap);
        if (!b) return false;
        r->field_buf = b;
        r->field_cap = cap;
    }
    memcpy(r->field_buf + r->field_len, s, n);
    r->field_len += n;
    return true;
}

static bool field_begin(ftc_reader *r, long line, long col) {
    if (r->n_fields == r->fields_cap) {
        int cap = r->fields_cap ? 2 * r->fields_cap : 16;
        size_t *o = realloc(r->field_off, (size_t)cap * sizeof *o);
        if (o) r->field_off = o;
        long *l = realloc(r->field_line, (size_t)cap * sizeof *l);
        if (l) r->field_line = l;
        long *c = realloc(r->field_col, (size_t)cap * sizeof *c);
        if (c) r->field_col = c;
        if (!o || !l || !c) return false;
        r->fields_cap = cap;
    }
    r->field_off[r->n_fields] = r->field_len;
    r->field_line[r->n_fields] = line;
    r->field_col[r->n_fields] = col;
    r->n_fields++;
    return true;
}

#define FIELD(r, i) ((r)->field_buf + (r)->field_off[i])

/* Reads one record (possibly several physical lines) into the field buffer. *got = false at the end. */
static ftc_status read_record(ftc_reader *r, long *rec_line, bool *got, ftc_err *err) {
    r->field_len = 0;
    r->n_fields = 0;
    *got = false;
    size_t len;
    bool io;
    const char *line;
    for (;;) {
        line = ftc_ds_read_line(r, &len, &io);
        if (io) { r->done = true; return ftc_ds_read_error(r, err); }
        if (!line) { r->done = true; return FTC_OK; }
        if (len == 0 || (len == 1 && line[0] == '\r')) continue;
        break;
    }
    *got = true;
    *rec_line = r->line_no;
    ftc_status s = ftc_ds_check_utf8(r, line, len, r->line_no, err);
    if (s != FTC_OK) return s;
    const char sep = r->sep;
    size_t i = 0;
    for (;;) { /* one field per iteration */
        if (!field_begin(r, r->line_no, ftc_ds_char_col(line, i))) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
        if (i < len && line[i] == '"') {
            long open_line = r->line_no, open_col = ftc_ds_char_col(line, i);
            i++;
            for (;;) {
                const char *q = memchr(line + i, '"', len - i);
                if (q) {
                    size_t k = (size_t)(q - line);
                    if (!buf_put(r, line + i, k - i)) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
                    if (k + 1 < len && line[k + 1] == '"') { /* "" is one quote */
                        if (!buf_put(r, "\"", 1)) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
                        i = k + 2;
                        continue;
                    }
                    i = k + 1;
                    break;
                }
                /* the quoted field goes on over a line break: keep the break as written */
                if (!buf_put(r, line + i, len - i) || !buf_put(r, "\n", 1))
                    return ftc_errf(err, FTC_E_NOMEM, "out of memory");
                line = ftc_ds_read_line(r, &len, &io);
                if (io) { r->done = true; return ftc_ds_read_error(r, err); }
                if (!line) {
                    r->done = true;
                    return ftc_ds_err_at(err, r, open_line, open_col, "quoted field is not closed before the end of the file");
                }
                s = ftc_ds_check_utf8(r, line, len, r->line_no, err);
                if (s != FTC_OK) return s;
                i = 0;
            }
            bool at_end = i == len || (i + 1 == len && line[i] == '\r');
            if (!at_end && line[i] != sep)
                return ftc_ds_err_at(err, r, r->line_no, ftc_ds_char_col(line, i),
                                 "unexpected text after a closing quote (a quote inside a quoted field must be doubled: \"\")");
            if (!buf_put(r, "", 1)) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
            if (at_end) break;
            i++;
        } else {
            const char *e = memchr(line + i, sep, len - i);
            size_t k = e ? (size_t)(e - line) : len;
            size_t end = k;
            if (!e && end > i && line[end - 1] == '\r') end--;
            if (!buf_put(r, line + i, end - i) || !buf_put(r, "", 1)) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
            if (!e) break;
            i = k + 1;
        }
    }
    return FTC_OK;
}

static int find_col(ftc_reader *r, const char *const *names) {
    for (int k = 0; names[k]; k++)
        for (int i = 0; i < r->n_cols; i++)
            if (!strcasecmp(r->cols[i], names[k])) return i;
    return -1;
}

static void list_cols(ftc_reader *r, char *out, size_t n) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < r->n_cols && used + 4 < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : "", r->cols[i]);
}

static ftc_status named_col(ftc_reader *r, const char *name, int *out, ftc_err *err) {
    for (int i = 0; i < r->n_cols; i++)
        if (!strcmp(r->cols[i], name)) { *out = i; return FTC_OK; }
    char cols[600];
    list_cols(r, cols, sizeof cols);
    return ftc_ds_err_at(err, r, 1, 1, "no column \"%s\" in the header (columns: %s)", name, cols);
}

static ftc_status read_header(ftc_reader *r, ftc_err *err) {
    long line;
    bool got;
    ftc_status s = read_record(r, &line, &got, err);
    if (s != FTC_OK) return s;
    if (!got) return ftc_errf(err, FTC_E_INPUT, "%s: empty file (expected a header row)", r->path);
    r->cols = calloc((size_t)r->n_fields, sizeof *r->cols);
    if (!r->cols) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    r->n_cols = r->n_fields;
    for (int i = 0; i < r->n_fields; i++) {
        /* header names are compared without surrounding blanks */
        const char *c = FIELD(r, i);
        while (*c == ' ') c++;
        size_t n = strlen(c);
        while (n && c[n - 1] == ' ') n--;
        r->cols[i] = ftc_ds_strndup(c, n);
        if (!r->cols[i]) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    }
    /* columns are found by name (case-insensitively): two of one name would silently give the first */
    for (int i = 0; i < r->n_cols; i++)
        for (int j = 0; j < i; j++)
            if (r->cols[i][0] && !strcasecmp(r->cols[i], r->cols[j]))
                return ftc_ds_err_at(err, r, 1, r->field_col[i], "header: column %d \"%s\" and column %d \"%s\" have "
                                     "the same name; rename one", j + 1, r->cols[j], i + 1, r->cols[i]);
    static const char *const TEXT[] = {"text", "sentence", "content", "document", "utterance", "query", "input",
                                       "question", "review", NULL};
    static const char *const LABEL[] = {"label", "labels", "category", "intent", "class", "target", NULL};
    static const char *const PROMPT[] = {"prompt", NULL}, *const COMPLETION[] = {"completion", NULL};
    if (r->o.text_col) { s = named_col(r, r->o.text_col, &r->text_i, err); if (s) return s; }
    else r->text_i = find_col(r, TEXT);
    if (r->o.label_col) { s = named_col(r, r->o.label_col, &r->label_i, err); if (s) return s; }
    else r->label_i = find_col(r, LABEL);
    if (r->o.text_pair_col) { s = named_col(r, r->o.text_pair_col, &r->pair_i, err); if (s) return s; }
    else r->pair_i = find_col(r, (const char *const[]){"text_pair", NULL});
    /* well-known pair columns, when no single text column is named */
    static const char *const PAIRS[][2] = {{"sentence1", "sentence2"}, {"premise", "hypothesis"},
                                           {"question1", "question2"}};
    for (int k = 0; k < 3 && !r->o.text_col && r->pair_i < 0; k++) {
        int a = find_col(r, (const char *const[]){PAIRS[k][0], NULL}), b = find_col(r, (const char *const[]){PAIRS[k][1], NULL});
        if (a >= 0 && b >= 0) { r->text_i = a; r->pair_i = b; }
    }
    r->prompt_i = find_col(r, PROMPT);
    r->completion_i = find_col(r, COMPLETION);
    if (r->fmt == FTC_FMT_AUTO) {
        if (r->prompt_i >= 0 && r->completion_i >= 0 && !r->o.text_col) r->fmt = FTC_FMT_COMPLETION;
        else if (r->text_i >= 0 && r->label_i >= 0) r->fmt = FTC_FMT_LABEL;
        else if (r->text_i >= 0) r->fmt = FTC_FMT_TEXT;
    }
    char cols[600];
    list_cols(r, cols, sizeof cols);
    if (r->fmt == FTC_FMT_AUTO || ((r->fmt == FTC_FMT_TEXT || r->fmt == FTC_FMT_LABEL) && r->text_i < 0))
        return ftc_ds_err_at(err, r, 1, 1, "cannot tell which column holds the text (columns: %s); use --text-col", cols);
    if (r->fmt == FTC_FMT_LABEL && r->label_i < 0)
        return ftc_ds_err_at(err, r, 1, 1, "cannot tell which column holds the label (columns: %s); use --label-col", cols);
    if (r->fmt == FTC_FMT_COMPLETION && (r->prompt_i < 0 || r->completion_i < 0))
        return ftc_ds_err_at(err, r, 1, 1, "format 'completion' needs columns \"prompt\" and \"completion\" (columns: %s)",
                         cols);
    return FTC_OK;
}

static ftc_status take(ftc_reader *r, int i, const char *what, char **out, ftc_err *err) {
    if (ftc_ds_blank(FIELD(r, i)))
        return ftc_ds_err_at(err, r, r->field_line[i], r->field_col[i], "%s (column \"%s\") is empty", what, r->cols[i]);
    *out = strdup(FIELD(r, i));
    return *out ? FTC_OK : ftc_errf(err, FTC_E_NOMEM, "out of memory");
}

ftc_status ftc_ds_csv_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err) {
    ftc_status s;
    if (!r->header_done) {
        r->header_done = true;
        s = read_header(r, err);
        if (s != FTC_OK) {
            r->done = true; /* without a usable header no row can be read */
            *got = s == FTC_E_INPUT;
            return s;
        }
    }
    long line = 0;
    s = read_record(r, &line, got, err);
    if (s != FTC_OK || !*got) return s;
    rec->line = line;
    if (r->n_fields != r->n_cols) {
        long col = r->n_fields > r->n_cols ? r->field_col[r->n_cols] : 1;
        long at = r->n_fields > r->n_cols ? r->field_line[r->n_cols] : line;
        return ftc_ds_err_at(err, r, at, col, "%d fields, the header has %d", r->n_fields, r->n_cols);
    }
    rec->format = r->fmt;
    switch (r->fmt) {
    case FTC_FMT_TEXT: s = take(r, r->text_i, "text", &rec->text, err); break;
    case FTC_FMT_LABEL:
        s = take(r, r->text_i, "text", &rec->text, err);
        if (s == FTC_OK && r->pair_i >= 0) s = take(r, r->pair_i, "text pair", &rec->text_pair, err);
        if (s == FTC_OK) s = take(r, r->label_i, "label", &rec->label, err);
        if (s == FTC_OK) {
            /* an integer label written as digits is an integer label, as in JSONL */
            const char *p = rec->label;
            if (*p == '-') p++;
            bool digits = *p != 0;
            for (; *p; p++) if (*p < '0' || *p > '9') digits = false;
            rec->label_is_int = digits && strlen(rec->label) < 19;
        }
        break;
    case FTC_FMT_COMPLETION:
        s = take(r, r->prompt_i, "prompt", &rec->prompt, err);
        if (s == FTC_OK) s = take(r, r->completion_i, "completion", &rec->completion, err);
        break;
    default: s = ftc_errf(err, FTC_E_INTERNAL, "bad format");
    }
    if (s != FTC_OK) {
        ftc_record_clear(rec);
        rec->line = line;
    }
    return s;
}

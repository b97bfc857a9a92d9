/* Shared by the files of src/data only. */
#ifndef FTC_DATA_INTERNAL_H
#define FTC_DATA_INTERNAL_H
#include "ftc/data.h"
#include <sys/types.h>

/* A line source: a FILE (read with getline, so memory is bounded by the longest line) or a memory buffer. */
typedef struct {
    FILE *f;
    const char *mem;
    size_t mem_len, mem_pos;
    char *buf;
    size_t cap;
} line_source;

struct ftc_reader {
    char path[4096];
    ftc_read_opts o;
    ftc_file_kind kind;
    ftc_data_format fmt;
    line_source src;
    char **dir_files; /* a directory of text files: their paths, read one after the other */
    int n_dir_files, dir_i;
    long line_no;     /* lines consumed so far */
    int read_errno;   /* why ftc_ds_read_line last failed (ENOMEM: a line too long for memory) */
    bool started;     /* BOM checked */
    bool done;        /* end reached or a fatal error */
    /* CSV/TSV */
    char sep;
    bool header_done;
    int n_cols;
    char **cols;
    int text_i, label_i, prompt_i, completion_i, pair_i;
    char *field_buf;   /* the fields of one record, NUL-separated */
    size_t field_len, field_cap;
    size_t *field_off; /* [n] offsets into field_buf */
    long *field_line, *field_col;
    int n_fields, fields_cap;
};

/* Next physical line without its '\n' (a trailing '\r' is kept); *len its length; NULL at the end. On a read
 * error returns NULL and sets *io_error. */
const char *ftc_ds_read_line(ftc_reader *r, size_t *len, bool *io_error);
/* The error for a failed ftc_ds_read_line: out of memory (FTC_E_NOMEM, exit 3) with the line and its size so
 * far, or a read error with its cause. */
ftc_status ftc_ds_read_error(const ftc_reader *r, ftc_err *err);
/* Checks a line is valid UTF-8 without NUL bytes; on failure writes "path:line:col: ..." into err. */
ftc_status ftc_ds_check_utf8(const ftc_reader *r, const char *s, size_t len, long line, ftc_err *err);
/* 1-based character column of byte offset off in s. */
long ftc_ds_char_col(const char *s, size_t off);
/* A "path:line:col: msg" error. */
ftc_status ftc_ds_err_at(ftc_err *err, const ftc_reader *r, long line, long col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

ftc_status ftc_ds_jsonl_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err);
ftc_status ftc_ds_csv_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err);
void ftc_ds_csv_free(ftc_reader *r);

/* Whitespace-only (ASCII and the usual Unicode spaces are all ASCII here) or empty. */
bool ftc_ds_blank(const char *s);
char *ftc_ds_strndup(const char *s, size_t n);
#endif

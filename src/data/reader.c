/* The streaming reader: opens a file (or a memory buffer), skips a UTF-8 BOM, checks every line is UTF-8,
 * and hands one record at a time to the JSONL, CSV/TSV or plain-text parser. Never holds more than one
 * record (one line for JSONL) in memory, except plain text in one-document-per-file mode. */
#include "data_internal.h"
#include "ftc/base.h"
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

char *ftc_ds_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

bool ftc_ds_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' && *s != '\f' && *s != '\v') return false;
    return true;
}

long ftc_ds_char_col(const char *s, size_t off) {
    long col = 1;
    for (size_t i = 0; i < off; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) col++;
    return col;
}

ftc_status ftc_ds_err_at(ftc_err *err, const ftc_reader *r, long line, long col, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ftc_errf(err, FTC_E_INPUT, "%s:%ld:%ld: %s", r->path, line, col, msg);
}

/* Byte offset of the first invalid UTF-8 sequence (overlongs, surrogates and > U+10FFFF are invalid),
 * or of a NUL byte; len when the whole string is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0) return i;
        if (c < 0x80) { i++; continue; }
        size_t n;
        unsigned min;
        if ((c & 0xE0) == 0xC0) { n = 1; min = 0x80; c &= 0x1F; }
        else if ((c & 0xF0) == 0xE0) { n = 2; min = 0x800; c &= 0x0F; }
        else if ((c & 0xF8) == 0xF0) { n = 3; min = 0x10000; c &= 0x07; }
        else return i;
        if (len - i <= n) return i; /* truncated sequence */
        unsigned cp = c;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

ftc_status ftc_ds_check_utf8(const ftc_reader *r, const char *s, size_t len, long line, ftc_err *err) {
    size_t bad = utf8_invalid_at((const unsigned char *)s, len);
    if (bad == len) return FTC_OK;
    if (s[bad] == 0) return ftc_ds_err_at(err, r, line, ftc_ds_char_col(s, bad), "NUL byte (the file must be UTF-8 text)");
    return ftc_ds_err_at(err, r, line, ftc_ds_char_col(s, bad), "invalid UTF-8 (byte 0x%02x); the file must be UTF-8",
                     (unsigned char)s[bad]);
}

const char *ftc_ds_read_line(ftc_reader *r, size_t *len, bool *io_error) {
    *io_error = false;
    line_source *src = &r->src;
    const char *line;
    size_t n;
    if (src->f) {
        errno = 0;
        ssize_t got = getline(&src->buf, &src->cap, src->f);
        if (got < 0) {
            /* getline's allocation failure (a line longer than memory allows) is not the end of the file */
            if (ferror(src->f) || errno == ENOMEM || errno == EOVERFLOW) {
                r->read_errno = errno ? errno : EIO;
                *io_error = true;
            }
            return NULL;
        }
        n = (size_t)got;
        line = src->buf;
    } else {
        if (src->mem_pos >= src->mem_len) return NULL;
        const char *start = src->mem + src->mem_pos;
        const char *nl = memchr(start, '\n', src->mem_len - src->mem_pos);
        n = nl ? (size_t)(nl - start) + 1 : src->mem_len - src->mem_pos;
        src->mem_pos += n;
        /* copy so that every line is NUL-terminated like getline's */
        if (n + 1 > src->cap) {
            char *b = realloc(src->buf, n + 1);
            if (!b) { r->read_errno = ENOMEM; *io_error = true; return NULL; }
            src->buf = b;
            src->cap = n + 1;
        }
        memcpy(src->buf, start, n);
        src->buf[n] = 0;
        line = src->buf;
    }
    r->line_no++;
    if (!r->started) {
        r->started = true;
        if (n >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
            memmove(src->buf, src->buf + 3, n - 3 + 1);
            n -= 3;
        }
    }
    if (n && line[n - 1] == '\n') n--;
    *len = n;
    return src->buf;
}

void ftc_record_clear(ftc_record *r) {
    free(r->text);
    free(r->text_pair);
    free(r->prompt);
    free(r->completion);
    for (int i = 0; i < r->n_msgs; i++) free(r->msgs[i].content);
    free(r->msgs);
    free(r->label);
    memset(r, 0, sizeof *r);
}

static const char *const FORMAT_NAMES[] = {"auto", "text", "completion", "chat", "label"};
const char *ftc_data_format_name(ftc_data_format f) {
    return (unsigned)f < 5 ? FORMAT_NAMES[f] : "?";
}

ftc_status ftc_data_format_parse(const char *s, ftc_data_format *out, ftc_err *err) {
    static const struct { const char *name; ftc_data_format f; } names[] = {
        {"auto", FTC_FMT_AUTO}, {"text", FTC_FMT_TEXT}, {"completion", FTC_FMT_COMPLETION},
        {"prompt-completion", FTC_FMT_COMPLETION}, {"chat", FTC_FMT_CHAT}, {"messages", FTC_FMT_CHAT},
        {"label", FTC_FMT_LABEL}, {"classify", FTC_FMT_LABEL}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i].name)) { *out = names[i].f; return FTC_OK; }
    return ftc_errf(err, FTC_E_USAGE, "unknown data format '%s' (use text, completion, chat or label)", s);
}

static const char *const KIND_NAMES[] = {"auto", "jsonl", "csv", "tsv", "txt"};
const char *ftc_file_kind_name(ftc_file_kind k) { return (unsigned)k < 5 ? KIND_NAMES[k] : "?"; }

ftc_status ftc_file_kind_parse(const char *s, ftc_file_kind *out, ftc_err *err) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, KIND_NAMES[i])) { *out = (ftc_file_kind)i; return FTC_OK; }
    if (!strcmp(s, "json")) { *out = FTC_FILE_JSONL; return FTC_OK; }
    return ftc_errf(err, FTC_E_USAGE, "unknown file type '%s' (use jsonl, csv, tsv or txt)", s);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

static ftc_file_kind kind_from_name(const char *path) {
    if (ends_with(path, ".jsonl") || ends_with(path, ".json") || ends_with(path, ".ndjson")) return FTC_FILE_JSONL;
    if (ends_with(path, ".csv")) return FTC_FILE_CSV;
    if (ends_with(path, ".tsv") || ends_with(path, ".tab")) return FTC_FILE_TSV;
    if (ends_with(path, ".txt") || ends_with(path, ".md")) return FTC_FILE_TXT;
    return FTC_FILE_AUTO;
}

static ftc_status finish_open(ftc_reader *r, int first_byte, ftc_reader **out, ftc_err *err) {
    if (r->kind == FTC_FILE_AUTO) r->kind = kind_from_name(r->path);
    /* unknown extension: JSON objects start with '{' (after an optional BOM), anything else is CSV */
    if (r->kind == FTC_FILE_AUTO) r->kind = first_byte == '{' ? FTC_FILE_JSONL : FTC_FILE_CSV;
    r->sep = r->kind == FTC_FILE_TSV ? '\t' : ',';
    r->fmt = r->o.format;
    if (r->kind == FTC_FILE_TXT) {
        if (r->fmt != FTC_FMT_AUTO && r->fmt != FTC_FMT_TEXT) {
            ftc_status s = ftc_errf(err, FTC_E_USAGE, "%s: plain text files hold format 'text', not '%s'", r->path,
                                    ftc_data_format_name(r->fmt));
            ftc_reader_close(r);
            return s;
        }
        r->fmt = FTC_FMT_TEXT;
    }
    if ((r->kind == FTC_FILE_CSV || r->kind == FTC_FILE_TSV) && r->fmt == FTC_FMT_CHAT) {
        ftc_status s = ftc_errf(err, FTC_E_USAGE, "%s: chat data must be JSONL ({\"messages\": [...]}), not %s",
                                r->path, ftc_file_kind_name(r->kind));
        ftc_reader_close(r);
        return s;
    }
    *out = r;
    return FTC_OK;
}

static ftc_reader *new_reader(const char *name, const ftc_read_opts *o) {
    ftc_reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->path, sizeof r->path, "%s", name);
    if (o) r->o = *o;
    r->kind = r->o.file_kind;
    r->text_i = r->label_i = r->prompt_i = r->completion_i = r->pair_i = -1;
    return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A directory: its .txt/.md files in name order, each one document (txt_mode AUTO) or its paragraphs. */
static ftc_status open_dir(const char *path, const ftc_read_opts *o, ftc_reader **out, ftc_err *err) {
    DIR *d = opendir(path);
    if (!d) return ftc_errf(err, FTC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    ftc_reader *r = new_reader(path, o);
    if (!r) { closedir(d); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
    ftc_status s = FTC_OK;
    int cap = 0;
    for (struct dirent *e; s == FTC_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.' || !(kind_from_name(e->d_name) == FTC_FILE_TXT)) continue;
        if (r->n_dir_files == cap) {
            cap = cap ? 2 * cap : 64;
            char **f = realloc(r->dir_files, (size_t)cap * sizeof *f);
            if (!f) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
            r->dir_files = f;
        }
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) { s = ftc_errf(err, FTC_E_NOMEM, "out of memory"); break; }
        snprintf(p, n, "%s/%s", path, e->d_name);
        r->dir_files[r->n_dir_files++] = p;
    }
    closedir(d);
    if (s == FTC_OK && r->n_dir_files == 0) s = ftc_errf(err, FTC_E_INPUT, "%s: no .txt or .md files in the directory", path);
    if (s == FTC_OK && r->o.file_kind != FTC_FILE_AUTO && r->o.file_kind != FTC_FILE_TXT)
        s = ftc_errf(err, FTC_E_USAGE, "%s: a directory is read as text files, not %s", path, ftc_file_kind_name(r->o.file_kind));
    if (s != FTC_OK) { ftc_reader_close(r); return s; }
    qsort(r->dir_files, (size_t)r->n_dir_files, sizeof *r->dir_files, cmp_str);
    if (r->o.txt_mode == FTC_TXT_AUTO) r->o.txt_mode = FTC_TXT_FILE;
    r->kind = FTC_FILE_TXT;
    r->dir_i = -1;
    r->done = true; /* the first call of next opens the first file */
    return finish_open(r, -1, out, err);
}

ftc_status ftc_ds_read_error(const ftc_reader *r, ftc_err *err) {
    if (r->read_errno == ENOMEM || r->read_errno == EOVERFLOW)
        return ftc_errf(err, FTC_E_NOMEM, "%s:%ld: out of memory reading the line (needed more than %zu bytes for it)",
                        r->path, r->line_no + 1, r->src.cap);
    return ftc_errf(err, FTC_E_IO, "%s: read error: %s", r->path, strerror(r->read_errno ? r->read_errno : EIO));
}

ftc_status ftc_reader_open(const char *path, const ftc_read_opts *o, ftc_reader **out, ftc_err *err) {
    *out = NULL;
    if (ftc_is_dir(path)) return open_dir(path, o, out, err);
    ftc_reader *r = new_reader(path, o);
    if (!r) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    ftc_status os = ftc_open_read(path, &r->src.f, err);
    if (os) {
        free(r);
        return os;
    }
    /* peek at the first meaningful byte for files without a known extension */
    int c = getc(r->src.f);
    if (c == 0xEF) { getc(r->src.f); getc(r->src.f); c = getc(r->src.f); }
    while (c == ' ' || c == '\n' || c == '\r' || c == '\t') c = getc(r->src.f);
    rewind(r->src.f);
    return finish_open(r, c, out, err);
}

ftc_status ftc_reader_open_mem(const void *data, size_t len, const char *name, const ftc_read_opts *o,
                               ftc_reader **out, ftc_err *err) {
    *out = NULL;
    ftc_reader *r = new_reader(name, o);
    if (!r) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    r->src.mem = data;
    r->src.mem_len = len;
    const unsigned char *p = data, *e = p + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return finish_open(r, p < e ? *p : -1, out, err);
}

void ftc_reader_close(ftc_reader *r) {
    if (!r) return;
    if (r->src.f) fclose(r->src.f);
    free(r->src.buf);
    for (int i = 0; i < r->n_dir_files; i++) free(r->dir_files[i]);
    free(r->dir_files);
    ftc_ds_csv_free(r);
    free(r);
}

ftc_data_format ftc_reader_format(const ftc_reader *r) { return r->fmt; }
ftc_file_kind ftc_reader_file_kind(const ftc_reader *r) { return r->kind; }
const char *ftc_reader_path(const ftc_reader *r) { return r->path; }

/* Plain text: paragraphs separated by blank lines, or the whole file as one document. Lines keep their
 * '\n' between them; trailing '\r' of CRLF files is dropped. */
static ftc_status txt_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err) {
    char *doc = NULL;
    size_t n = 0, cap = 0;
    long first = 0;
    ftc_status s = FTC_OK;
    bool bad_line = false;
    for (;;) {
        size_t len;
        bool io;
        const char *line = ftc_ds_read_line(r, &len, &io);
        if (io) { free(doc); return ftc_ds_read_error(r, err); }
        if (!line) { r->done = true; break; }
        if (len && line[len - 1] == '\r') len--;
        if (s == FTC_OK && ftc_ds_check_utf8(r, line, len, r->line_no, err) != FTC_OK) {
            s = FTC_E_INPUT;
            bad_line = true;
        }
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++)
            if (line[i] != ' ' && line[i] != '\t' && line[i] != '\f' && line[i] != '\v') blank = false;
        if (blank && r->o.txt_mode != FTC_TXT_FILE) {
            if (first) break;
            continue;
        }
        if (!first) first = r->line_no;
        if (n + len + 2 > cap) {
            cap = (n + len + 2) * 2;
            char *d = realloc(doc, cap);
            if (!d) { free(doc); return ftc_errf(err, FTC_E_NOMEM, "out of memory"); }
            doc = d;
        }
        if (n) doc[n++] = '\n';
        memcpy(doc + n, line, len);
        n += len;
        doc[n] = 0;
    }
    if (bad_line) { free(doc); *got = true; return s; }
    if (!first || !doc || ftc_ds_blank(doc)) { /* nothing left (an empty or blank file gives no record) */
        free(doc);
        *got = false;
        return FTC_OK;
    }
    rec->format = FTC_FMT_TEXT;
    rec->text = doc;
    rec->line = first;
    *got = true;
    return FTC_OK;
}

/* Moves a directory reader to its next file; false when there is none. */
static bool next_dir_file(ftc_reader *r, ftc_err *err, ftc_status *s) {
    *s = FTC_OK;
    if (r->src.f) { fclose(r->src.f); r->src.f = NULL; }
    if (++r->dir_i >= r->n_dir_files) return false;
    snprintf(r->path, sizeof r->path, "%s", r->dir_files[r->dir_i]);
    if ((*s = ftc_open_read(r->path, &r->src.f, err))) return false;
    r->line_no = 0;
    r->started = false;
    r->done = false;
    return true;
}

ftc_status ftc_reader_next(ftc_reader *r, ftc_record *rec, bool *got, ftc_err *err) {
    ftc_record_clear(rec);
    *got = false;
    if (r->dir_files) {
        for (;;) {
            ftc_status s;
            if (r->done && !next_dir_file(r, err, &s)) return s;
            s = txt_next(r, rec, got, err);
            if (s != FTC_OK || *got) return s;
        }
    }
    if (r->done) return FTC_OK;
    switch (r->kind) {
    case FTC_FILE_JSONL: return ftc_ds_jsonl_next(r, rec, got, err);
    case FTC_FILE_CSV:
    case FTC_FILE_TSV: return ftc_ds_csv_next(r, rec, got, err);
    case FTC_FILE_TXT: return txt_next(r, rec, got, err);
    default: return ftc_errf(err, FTC_E_INTERNAL, "%s: no reader for this file type", r->path);
    }
}

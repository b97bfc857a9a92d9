/* libFuzzer: the CSV/TSV reader (RFC 4180 quoting, embedded line breaks) on arbitrary bytes. Checks that it
 * never crashes, and that a record's fields written back with quoting read again to the same record. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/data.h"

static void put_field(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ftc_read_opts o = {.file_kind = FTC_FILE_CSV};
    if (size && (data[0] & 1)) o.file_kind = FTC_FILE_TSV;
    if (size) { data++; size--; }
    ftc_reader *r;
    ftc_err e;
    if (ftc_reader_open_mem(data, size, "fuzz.csv", &o, &r, &e) != FTC_OK) return 0;
    ftc_record rec = {0};
    for (int i = 0; i < 100000; i++) {
        bool got;
        ftc_status s = ftc_reader_next(r, &rec, &got, &e);
        if (s == FTC_E_INPUT) {
            if (strncmp(e.msg, "fuzz.csv", 8)) abort();
            continue;
        }
        if (s != FTC_OK || !got) break;
        if (rec.format != FTC_FMT_LABEL) continue;
        /* round trip: quote text and label, read back */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        fputs("text,label\n", f);
        put_field(f, rec.text);
        fputc(',', f);
        put_field(f, rec.label);
        fputc('\n', f);
        fclose(f);
        ftc_reader *r2;
        ftc_read_opts o2 = {.file_kind = FTC_FILE_CSV};
        if (ftc_reader_open_mem(buf, len, "rt.csv", &o2, &r2, &e) == FTC_OK) {
            ftc_record back = {0};
            bool got2;
            if (ftc_reader_next(r2, &back, &got2, &e) != FTC_OK || !got2 || strcmp(back.text, rec.text) ||
                strcmp(back.label, rec.label))
                abort();
            ftc_record_clear(&back);
            ftc_reader_close(r2);
        }
        free(buf);
    }
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    return 0;
}

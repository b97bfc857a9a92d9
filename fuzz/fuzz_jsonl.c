/* libFuzzer: the JSONL reader on arbitrary bytes, in every record format. Must never crash, leak or read out
 * of bounds; every record either parses or yields an error naming file:line:column. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the first byte picks the format (auto, text, completion, chat, label) */
    ftc_read_opts o = {.file_kind = FTC_FILE_JSONL};
    if (size) { o.format = (ftc_data_format)(data[0] % 5); data++; size--; }
    ftc_reader *r;
    ftc_err e;
    if (ftc_reader_open_mem(data, size, "fuzz.jsonl", &o, &r, &e) != FTC_OK) return 0;
    ftc_record rec = {0};
    for (int i = 0; i < 100000; i++) {
        bool got;
        ftc_status s = ftc_reader_next(r, &rec, &got, &e);
        if (s == FTC_E_INPUT) {
            if (strncmp(e.msg, "fuzz.jsonl:", 11)) abort(); /* every error names the file */
            continue;
        }
        if (s != FTC_OK || !got) break;
        char *line = ftc_record_to_jsonl(&rec);
        free(line);
    }
    ftc_record_clear(&rec);
    ftc_reader_close(r);
    return 0;
}

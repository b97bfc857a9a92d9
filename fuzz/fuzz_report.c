/* libFuzzer target for ftc_report_write: the input is split at NUL bytes into metrics.jsonl,
 * eval.json and samples.jsonl of a scratch run directory. Any input must give FTC_OK or an error,
 * never a crash, hang or sanitizer report. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/eval.h"

static char dir[64];

static void put(const char *name, const uint8_t *data, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!data) { unlink(path); return; }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, n, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        strcpy(dir, "/tmp/ftc_fuzz_report_XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    const char *names[3] = {"metrics.jsonl", "eval.json", "samples.jsonl"};
    size_t start = 0;
    for (int part = 0; part < 3; part++) {
        if (start > size) { put(names[part], NULL, 0); continue; }
        const uint8_t *nul = part < 2 ? memchr(data + start, 0, size - start) : NULL;
        size_t end = nul ? (size_t)(nul - data) : size;
        put(names[part], data + start, end - start);
        start = end + 1;
    }
    ftc_err err;
    ftc_report_write(dir, &err);
    return 0;
}

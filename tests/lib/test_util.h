/* What the C tests share: where the sources and shared data are, a scratch directory per test binary, and
 * JSONL fixtures. Header-only (static inline), so each cmocka executable stays one source file. */
#ifndef FTC_TEST_UTIL_H
#define FTC_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

/* The repository root (ctest sets FTC_SOURCE_DIR; a binary run by hand from the root works too). */
static inline const char *ftc_test_src_dir(void) {
    const char *s = getenv("FTC_SOURCE_DIR");
    return s ? s : ".";
}

/* ../shared/data beside the repository (ctest sets FTC_SHARED_DATA). */
static inline const char *ftc_test_shared_dir(void) {
    const char *s = getenv("FTC_SHARED_DATA");
    return s ? s : "../shared/data";
}

/* A fresh directory /tmp/ftc_<tag>_XXXXXX into dir; 0 or -1 (cmocka's group setup convention). */
static inline int ftc_test_tmpdir_make(char *dir, size_t cap, const char *tag) {
    if (snprintf(dir, cap, "/tmp/ftc_%s_XXXXXX", tag) >= (int)cap) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

static inline int ftc_test_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it, links not followed; 0 or -1. */
static inline int ftc_test_tmpdir_remove(const char *dir) {
    return nftw(dir, ftc_test_remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* Every line of a JSONL file as one JSON array; NULL (with the file and line on stderr) when the file is
 * missing or a line does not parse: a broken fixture fails its test instead of shrinking it. */
static inline json_t *ftc_test_load_jsonl(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); return NULL; }
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        json_error_t je;
        json_t *v = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v) { fprintf(stderr, "%s: line %d: %s\n", path, lineno, je.text); json_decref(arr); arr = NULL; break; }
        json_array_append_new(arr, v);
    }
    free(line);
    fclose(f);
    return arr;
}

#endif

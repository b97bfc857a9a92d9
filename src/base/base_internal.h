/* Base helpers that need jansson: kept out of the public base.h. */
#ifndef FTC_BASE_INTERNAL_H
#define FTC_BASE_INTERNAL_H
#include <jansson.h>
#include <stddef.h>

/* json_load_file through ftc_open_read: a FIFO or device is an error ("not a regular file" in
 * je->text, path in je->source), never a blocking read. Out of memory: NULL with json_error_code(je) ==
 * json_error_out_of_memory (as every jansson load in the library: src/base/alloc_redirect.h). */
json_t *ftc_json_load_file(const char *path, size_t flags, json_error_t *je);
/* o as indented JSON (9 significant digits for reals) into path, atomically (temp, fsync, rename) */
ftc_status ftc_json_save_file(const char *path, const json_t *o, ftc_err *err);
/* Loads path as a JSON object into *out (caller json_decref's). A missing file, a file that is not
 * regular, text that is not JSON and JSON that is not an object are each an error naming the path
 * (and line:column for a syntax error). */
#include "ftc/status.h"
ftc_status ftc_json_load_object(const char *path, json_t **out, ftc_err *err);
#endif

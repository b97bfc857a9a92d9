/* Errors: every library function that can fail returns an ftc_status and fills an
 * ftc_err with a message that names the file, line/tensor and field. Only the CLI exits. */
#ifndef FTC_STATUS_H
#define FTC_STATUS_H
#include <stddef.h>

typedef enum {
    FTC_OK = 0,
    FTC_E_USAGE = 1,       /* wrong flags or arguments (CLI exit 1) */
    FTC_E_INPUT = 2,       /* bad input: malformed file, unknown field, missing tensor (exit 2) */
    FTC_E_UNSUPPORTED = 4, /* valid input we do not handle yet (exit 2) */
    FTC_E_IO = 5,          /* open/read/write failed (exit 2) */
    FTC_E_NOMEM = 6,       /* allocation failed (exit 3) */
    FTC_E_INTERNAL = 3,    /* a bug or broken invariant (exit 3) */
    FTC_E_DIVERGED = 7,    /* a computation's result is not finite: training loss or gradient norm NaN/Inf (exit 2) */
} ftc_status;

typedef struct {
    ftc_status code;
    char msg[1024];
} ftc_err;

/* Sets err (if non-NULL) to code + printf-style message and returns code. */
ftc_status ftc_errf(ftc_err *err, ftc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with context, e.g. the file name; returns err->code. */
ftc_status ftc_err_prefix(ftc_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code the CLI uses for a status: 0 ok, 1 usage, 2 bad input (and a diverged run), 3 internal. */
int ftc_exit_code(ftc_status s);
const char *ftc_status_name(ftc_status s);

#endif

#include "ftc/status.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

ftc_status ftc_errf(ftc_err *err, ftc_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

ftc_status ftc_err_prefix(ftc_err *err, const char *fmt, ...) {
    if (!err) return FTC_E_INTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* prefix + ": " + old message, truncated to fit */
    size_t n = strlen(prefix), cap = sizeof err->msg - 1;
    if (n > cap) n = cap;
    memcpy(err->msg, prefix, n);
    for (const char *p = ": "; *p && n < cap; p++) err->msg[n++] = *p;
    for (const char *p = old; *p && n < cap; p++) err->msg[n++] = *p;
    err->msg[n] = 0;
    return err->code;
}

int ftc_exit_code(ftc_status s) {
    switch (s) {
    case FTC_OK: return 0;
    case FTC_E_USAGE: return 1;
    case FTC_E_INPUT: case FTC_E_UNSUPPORTED: case FTC_E_IO: case FTC_E_DIVERGED: return 2;
    default: return 3;
    }
}

const char *ftc_status_name(ftc_status s) {
    switch (s) {
    case FTC_OK: return "ok";
    case FTC_E_USAGE: return "usage";
    case FTC_E_INPUT: return "bad input";
    case FTC_E_UNSUPPORTED: return "unsupported";
    case FTC_E_IO: return "i/o error";
    case FTC_E_NOMEM: return "out of memory";
    case FTC_E_DIVERGED: return "diverged";
    default: return "internal error";
    }
}

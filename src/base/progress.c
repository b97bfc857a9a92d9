#include "ftc/base.h"
#include <string.h>
#include <unistd.h>

void ftc_progress_start(ftc_progress *p, const char *label, long total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->t_start = p->t_last_print = ftc_now();
    p->tty = isatty(STDERR_FILENO);
}

static void fmt_eta(char *out, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(out, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, n, "%02ld:%02ld", t / 60, t % 60);
}

static void print_line(ftc_progress *p, bool final) {
    double el = ftc_now() - p->t_start;
    double eta = p->done > 0 ? el / p->done * (p->total - p->done) : -1;
    char etas[32];
    fmt_eta(etas, sizeof etas, final ? el : eta);
    if (p->tty) {
        int width = 24, fill = p->total > 0 ? (int)(width * p->done / p->total) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %ld/%ld %s %s %s", p->label, bar, p->done, p->total, p->extra,
                final ? "took" : "eta", etas);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %ld/%ld %s %s %s\n", p->label, p->done, p->total, p->extra, final ? "took" : "eta", etas);
    }
    fflush(stderr);
}

void ftc_progress_update(ftc_progress *p, long done, const char *extra) {
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    double now = ftc_now();
    /* A TTY redraws often; a log file gets a line every 10 s so it stays readable. */
    double every = p->tty ? 0.1 : 10.0;
    if (now - p->t_last_print >= every || done == p->total) {
        p->t_last_print = now;
        if (done != p->total) print_line(p, false);
    }
}

void ftc_progress_finish(ftc_progress *p) { print_line(p, true); }

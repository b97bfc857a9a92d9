/* report.html: one self-contained page (inline SVG, no JavaScript, no network) that shows how a run went, or
 * compares several runs. Inputs and their keys are documented in docs/report.md:
 *   metrics.jsonl  the trainer's log, one object per line: train steps {"step","loss","lr","grad_norm","tok_s",
 *                  "elapsed_s"}, evaluations {"step","val_loss","accuracy","macro_f1",...}, the last line
 *                  {"step","finished","stopped_early","elapsed_s"}; required
 *   eval.json      final metrics as `ftc eval --json` prints them (ftc_class_metrics_json /
 *                  ftc_lm_metrics_json, classify with "worst": the most confident mistakes), optionally with
 *                  "base": {same keys} for the base model
 *   samples.jsonl  causal-lm sample answers {"prompt","base","tuned"}
 *   config.resolved.json  the trainer's resolved settings: those that differ from the defaults are listed
 * The best checkpoint (the step RUNDIR/model comes from) is found in the log as the trainer finds it. The page is
 * built in memory and written atomically. */
#include "ftc/eval.h"
#include "base/base_internal.h"
#include "ftc/base.h"
#include "ftc/train.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growing string ---- */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = true; return; }
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap * 2 : 1 << 16;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
}

/* Text into HTML/SVG: the five characters that could end an element or attribute. */
static void sb_escape(strbuf *b, const char *text) {
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        case '\'': sb_printf(b, "&#39;"); break;
        default: sb_printf(b, "%c", *p);
        }
    }
}

/* ---- the training log ---- */
typedef struct {
    double *x, *y;
    int n, cap;
} series;

static bool series_add(series *s, double x, double y) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (!nx) return false;
        s->x = nx;
        double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!ny) return false;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return true;
}

/* Keys of metrics.jsonl the report plots; any other key is allowed and ignored. */
enum { K_LOSS, K_VAL_LOSS, K_ACCURACY, K_MACRO_F1, K_TOKEN_ACC, K_VAL_PPL, K_LR, K_GRAD_NORM, K_TOK_S, N_KEYS };
static const char *const LOG_KEYS[N_KEYS] = {"loss", "val_loss", "accuracy", "macro_f1", "token_accuracy",
                                             "val_perplexity", "lr", "grad_norm", "tok_s"};
static const char *const LOG_NAMES[N_KEYS] = {"train loss", "validation loss", "accuracy", "macro-F1",
                                              "token accuracy", "validation perplexity", "learning rate",
                                              "gradient norm", "tokens/s"};
static const char *const LOG_COLORS[N_KEYS] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                                               "#7f7f7f", "#17becf", "#bcbd22"};

typedef struct {
    series s[N_KEYS];
    int n_lines;
    double elapsed;      /* the largest "elapsed_s" (wall seconds since training began); NaN when none logged */
    bool finished, stopped_early;
} run_log;

static void run_log_free(run_log *log) {
    for (int k = 0; k < N_KEYS; k++) { free(log->s[k].x); free(log->s[k].y); }
}

/* The next line of a JSONL text split in place (*p advances past it; NULL at the end), its leading blanks
 * skipped ("" for a blank line); *line_no counts it. */
static char *next_line(char **p, int *line_no) {
    if (!*p || !**p) return NULL;
    (*line_no)++;
    char *line = *p, *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    *p = nl ? nl + 1 : NULL;
    while (*line == ' ' || *line == '\t' || *line == '\r') line++;
    return line;
}

static ftc_status read_log(const char *path, run_log *log, ftc_err *err) {
    char *text;
    size_t len;
    log->elapsed = NAN;
    ftc_status st = ftc_read_file(path, &text, &len, err);
    if (st != FTC_OK) return st;
    int line_no = 0;
    char *p = text, *line;
    while (st == FTC_OK && (line = next_line(&p, &line_no))) {
        if (!*line) continue;
        json_error_t je;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
        if (!o || !json_is_object(o)) {
            st = ftc_errf(err, FTC_E_INPUT, "%s:%d: not a JSON object%s%s", path, line_no, o ? "" : ": ",
                          o ? "" : je.text);
            json_decref(o);
            break;
        }
        json_t *step = json_object_get(o, "step");
        if (!json_is_number(step) || json_number_value(step) < 0) {
            st = ftc_errf(err, FTC_E_INPUT, "%s:%d: \"step\" missing or not a non-negative number", path, line_no);
            json_decref(o);
            break;
        }
        double x = json_number_value(step);
        for (int k = 0; k < N_KEYS; k++) {
            json_t *v = json_object_get(o, LOG_KEYS[k]);
            if (!v || json_is_null(v)) continue; /* null: logged as not-a-number; nothing to draw */
            if (!json_is_number(v)) {
                st = ftc_errf(err, FTC_E_INPUT, "%s:%d: \"%s\" is not a number", path, line_no, LOG_KEYS[k]);
                break;
            }
            double y = json_number_value(v);
            if (isfinite(y) && !series_add(&log->s[k], x, y)) {
                st = ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", path);
                break;
            }
        }
        json_t *el = json_object_get(o, "elapsed_s");
        if (json_is_number(el) && isfinite(json_number_value(el)) &&
            (isnan(log->elapsed) || json_number_value(el) > log->elapsed))
            log->elapsed = json_number_value(el);
        if (json_is_true(json_object_get(o, "finished"))) {
            log->finished = true;
            log->stopped_early = json_is_true(json_object_get(o, "stopped_early"));
        }
        json_decref(o);
        log->n_lines++;
    }
    free(text);
    return st;
}

/* ---- SVG line chart ---- */
/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` intervals over range. */
static double nice_step(double range, int want) {
    double raw = range / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* One format per axis: integers, plain decimals, or (tiny steps such as learning rates) 1.5e-05. */
static void fmt_tick(char *out, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) { snprintf(out, n, "0"); return; }
    if (step >= 1 && fabs(v) < 1e9) snprintf(out, n, "%.0f", v);
    else if (step < 1e-3) snprintf(out, n, "%.1e", v);
    else snprintf(out, n, "%.4g", v);
}

/* One line of a chart: a series, its colour and legend text; dashed for the second line of a run. */
typedef struct {
    const series *s;
    const char *color;
    const char *label;
    bool dashed;
} chart_line;

/* A vertical marker (the best checkpoint's step), labelled at the top. */
typedef struct {
    double x;
    const char *color;
} chart_mark;

/* Draws the lines (those with points) in one chart with the markers; nothing if no line has points.
 * log_ok: a y axis in powers of ten when every value is positive and they span more than LOG_RATIO (runs whose
 * throughput differs by orders of magnitude, e.g. a head on cached features beside a full fine-tune); the
 * title then says "(log scale)". */
enum { LOG_RATIO = 20 };
static void svg_chart(strbuf *b, const chart_line *lines, int nlines, const chart_mark *marks, int nmarks,
                      const char *title, const char *ylabel, bool log_ok) {
    const int W = 820, H = 300, L = 90, R = 240, T = 34, B = 44;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int drawn = 0;
    for (int i = 0; i < nlines; i++) {
        const series *s = lines[i].s;
        for (int j = 0; j < s->n; j++) {
            x0 = fmin(x0, s->x[j]); x1 = fmax(x1, s->x[j]);
            y0 = fmin(y0, s->y[j]); y1 = fmax(y1, s->y[j]);
        }
        drawn += s->n > 0;
    }
    if (!drawn) return;
    /* A flat or nearly flat series (relative to its size) gets a range of +-10% around it, so that the
     * tick step stays representable next to the values. Ranges too large for a double are not drawn. */
    if (x1 - x0 < 1) { x0 -= 0.5; x1 += 0.5; }
    double ymag = fmax(fabs(y0), fabs(y1));
    if (y1 - y0 <= 1e-9 * ymag || y1 - y0 < 1e-12) { double d = ymag > 0 ? ymag * 0.1 : 1; y0 -= d; y1 += d; }
    if (!isfinite(x1 - x0) || !isfinite(y1 - y0)) {
        sb_printf(b, "<p class=\"note\">");
        sb_escape(b, title);
        sb_printf(b, ": values out of the drawable range.</p>\n");
        return;
    }
    bool logy = log_ok && y0 > 0 && y1 / y0 > LOG_RATIO && isfinite(log10(y1) - log10(y0));
    double xs = nice_step(x1 - x0, 6), ys = 1;
    x0 = floor(x0 / xs) * xs; x1 = ceil(x1 / xs) * xs;
    if (logy) { /* the axis in log10 units, whole decades */
        y0 = floor(log10(y0)); y1 = ceil(log10(y1));
    } else {
        ys = nice_step(y1 - y0, 5);
        y0 = floor(y0 / ys) * ys; y1 = ceil(y1 / ys) * ys;
    }
    /* ticks by count, not by repeated addition: a few per axis whatever the values */
    int nyt = (int)lround((y1 - y0) / ys), nxt = (int)lround((x1 - x0) / xs);
    const double pw = W - L - R, ph = H - T - B;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (T + (1 - ((logy ? log10(v) : (v)) - y0) / (y1 - y0)) * ph)
    sb_printf(b, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", W, H, W, H);
    sb_escape(b, title);
    if (logy) sb_printf(b, " (log scale)");
    sb_printf(b, "\">\n<text x=\"%d\" y=\"20\" class=\"title\">", L);
    sb_escape(b, title);
    if (logy) sb_printf(b, " (log scale)");
    sb_printf(b, "</text>\n");
    char lab[64];
    if (logy) { /* 1, 2, 5 times each power of ten when few decades are shown, else the powers alone */
        static const double mult[] = {1, 2, 5};
        int nm = nyt <= 3 ? 3 : 1;
        for (int d = 0; d <= nyt && d <= 40; d++)
            for (int k = 0; k < nm && (d < nyt || k == 0); k++) {
                double v = mult[k] * pow(10, y0 + d);
                double p = pow(10, y0 + d); /* the decade's own tick format */
                fmt_tick(lab, sizeof lab, v, p);
                sb_printf(b, "<line x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                             "<text x=\"%d\" y=\"%.1f\" class=\"ytick\">%s</text>\n",
                          L, L + pw, PY(v), PY(v), L - 6, PY(v) + 4, lab);
            }
    }
    for (int i = 0; !logy && i <= nyt && i <= 20; i++) {
        double v = y0 + i * ys;
        fmt_tick(lab, sizeof lab, v, ys);
        sb_printf(b, "<line x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                     "<text x=\"%d\" y=\"%.1f\" class=\"ytick\">%s</text>\n",
                  L, L + pw, PY(v), PY(v), L - 6, PY(v) + 4, lab);
    }
    for (int i = 0; i <= nxt && i <= 20; i++) {
        double v = x0 + i * xs;
        fmt_tick(lab, sizeof lab, v, xs);
        sb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>"
                     "<text x=\"%.1f\" y=\"%.1f\" class=\"xtick\">%s</text>\n",
                  PX(v), PX(v), T + ph, T + ph + 5, PX(v), T + ph + 18, lab);
    }
    sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" class=\"frame\"/>\n", L, T, pw, ph);
    sb_printf(b, "<text x=\"%.1f\" y=\"%d\" class=\"xlabel\">step</text>\n", L + pw / 2, H - 6);
    sb_printf(b, "<text transform=\"translate(16 %.1f) rotate(-90)\" class=\"ylabel\">", T + ph / 2);
    sb_escape(b, ylabel);
    sb_printf(b, "</text>\n");
    /* the best checkpoints first, under the curves: a dashed vertical line and "best" at its top */
    for (int i = 0; i < nmarks; i++) {
        double x = marks[i].x;
        if (!(x >= x0 && x <= x1)) continue;
        bool right = PX(x) > L + 0.8 * pw; /* near the right edge: the label goes left of the line */
        sb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\" class=\"best\" stroke=\"%s\"/>"
                     "<text x=\"%.1f\" y=\"%d\" class=\"bestlab\"%s style=\"fill:%s\">best %.0f</text>\n",
                  PX(x), PX(x), T, T + ph, marks[i].color, PX(x) + (right ? -3 : 3), T + 11 + 12 * i,
                  right ? " text-anchor=\"end\"" : "", marks[i].color, x);
    }
    int legend = 0;
    for (int i = 0; i < nlines; i++) {
        const series *s = lines[i].s;
        if (!s->n) continue;
        sb_printf(b, "<polyline class=\"series\" stroke=\"%s\"%s points=\"", lines[i].color,
                  lines[i].dashed ? " stroke-dasharray=\"6 3\"" : "");
        for (int j = 0; j < s->n; j++) sb_printf(b, "%s%.1f,%.1f", j ? " " : "", PX(s->x[j]), PY(s->y[j]));
        sb_printf(b, "\"/>\n");
        if (s->n <= 60) /* sparse series (evaluations) also get dots, so a single point is visible */
            for (int j = 0; j < s->n; j++)
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", PX(s->x[j]), PY(s->y[j]),
                          lines[i].color);
        double ly = T + 10 + 20 * legend++;
        sb_printf(b, "\n<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"%s/>"
                     "<text x=\"%.0f\" y=\"%.1f\" class=\"legend\">",
                  L + pw + 12, L + pw + 32, ly, ly, lines[i].color, lines[i].dashed ? " stroke-dasharray=\"6 3\"" : "",
                  L + pw + 38, ly + 4);
        sb_escape(b, lines[i].label);
        sb_printf(b, " (last %.4g)</text>\n", s->y[s->n - 1]);
    }
    sb_printf(b, "</svg>\n");
#undef PX
#undef PY
}

/* ---- final metrics (eval.json) ---- */
static ftc_status eval_bad(ftc_err *err, const char *path, const char *what) {
    return ftc_errf(err, FTC_E_INPUT, "%s: %s", path, what);
}

/* The classification part of an eval object: labels[K], per_class[K] objects, confusion K x K of
 * non-negative integers. Checked once here so the drawing code can trust it. */
static ftc_status check_classify(const char *path, json_t *ev, ftc_err *err) {
    json_t *labels = json_object_get(ev, "labels"), *per = json_object_get(ev, "per_class"),
           *conf = json_object_get(ev, "confusion");
    if (!json_is_array(labels) || json_array_size(labels) == 0)
        return eval_bad(err, path, "\"labels\" missing or not a non-empty array");
    size_t K = json_array_size(labels);
    for (size_t i = 0; i < K; i++)
        if (!json_is_string(json_array_get(labels, i)))
            return ftc_errf(err, FTC_E_INPUT, "%s: \"labels\"[%zu] is not a string", path, i);
    if (!json_is_array(per) || json_array_size(per) != K)
        return ftc_errf(err, FTC_E_INPUT, "%s: \"per_class\" must be an array of %zu objects", path, K);
    for (size_t i = 0; i < K; i++) {
        json_t *pc = json_array_get(per, i);
        const char *keys[] = {"precision", "recall", "f1", "support"};
        for (int k = 0; k < 4; k++)
            if (!json_is_number(json_object_get(pc, keys[k])))
                return ftc_errf(err, FTC_E_INPUT, "%s: \"per_class\"[%zu].%s missing or not a number", path, i,
                                keys[k]);
    }
    json_t *worst = json_object_get(ev, "worst");
    if (worst && !json_is_array(worst)) return eval_bad(err, path, "\"worst\" is not an array");
    for (size_t i = 0; i < json_array_size(worst); i++) {
        json_t *w = json_array_get(worst, i), *text = json_object_get(w, "text");
        if (!json_is_string(json_object_get(w, "label")) || !json_is_string(json_object_get(w, "predicted")) ||
            !json_is_number(json_object_get(w, "prob")) || (text && !json_is_string(text)))
            return ftc_errf(err, FTC_E_INPUT, "%s: \"worst\"[%zu] must have strings label, predicted (and text) and "
                            "a number prob", path, i);
    }
    if (!json_is_array(conf) || json_array_size(conf) != K)
        return ftc_errf(err, FTC_E_INPUT, "%s: \"confusion\" must be a %zu x %zu array", path, K, K);
    for (size_t i = 0; i < K; i++) {
        json_t *row = json_array_get(conf, i);
        if (!json_is_array(row) || json_array_size(row) != K)
            return ftc_errf(err, FTC_E_INPUT, "%s: \"confusion\"[%zu] must have %zu entries", path, i, K);
        for (size_t j = 0; j < K; j++) {
            json_t *v = json_array_get(row, j);
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return ftc_errf(err, FTC_E_INPUT, "%s: \"confusion\"[%zu][%zu] is not a non-negative integer", path,
                                i, j);
        }
    }
    return FTC_OK;
}

static json_int_t conf_at(json_t *conf, size_t t, size_t p) {
    return json_integer_value(json_array_get(json_array_get(conf, t), p));
}

static void cell_number(strbuf *b, json_t *v) {
    if (!json_is_number(v)) sb_printf(b, "<td>&ndash;</td>");
    else if (json_is_integer(v)) sb_printf(b, "<td>%lld</td>", (long long)json_integer_value(v));
    else sb_printf(b, "<td>%.4f</td>", json_number_value(v));
}

static void metrics_table(strbuf *b, json_t *ev, json_t *base) {
    static const char *const keys[] = {"n_examples", "accuracy", "macro_f1", "weighted_f1", "loss",
                                       "perplexity", "token_accuracy", "n_tokens"};
    static const char *const names[] = {"examples", "accuracy", "macro-F1", "weighted F1", "loss",
                                        "perplexity", "token accuracy", "target tokens"};
    sb_printf(b, "<table class=\"metrics\"><thead><tr><th>metric</th>%s<th>tuned</th>%s</tr></thead><tbody>\n",
              base ? "<th>base</th>" : "", base ? "<th>change</th>" : "");
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(ev, keys[i]);
        json_t *bv = base ? json_object_get(base, keys[i]) : NULL;
        if (!json_is_number(v) && !json_is_number(bv)) continue;
        sb_printf(b, "<tr><th>%s</th>", names[i]);
        if (base) cell_number(b, bv);
        cell_number(b, v);
        if (base) {
            if (json_is_number(v) && json_is_number(bv) && !json_is_integer(v))
                sb_printf(b, "<td>%+.4f</td>", json_number_value(v) - json_number_value(bv));
            else
                sb_printf(b, "<td></td>");
        }
        sb_printf(b, "</tr>\n");
    }
    sb_printf(b, "</tbody></table>\n");
}

/* Confusion heat map: each cell shaded by its share of the true class's examples (row-normalised),
 * so small classes show their errors as clearly as large ones. Zero cells are not drawn. */
static void confusion_svg(strbuf *b, json_t *ev) {
    json_t *labels = json_object_get(ev, "labels"), *conf = json_object_get(ev, "confusion");
    size_t K = json_array_size(labels);
    int cell = K <= 10 ? 36 : K <= 30 ? 20 : K <= 60 ? 10 : K <= 120 ? 7 : 4;
    bool names = K <= 40, numbers = cell >= 20;
    int label_w = names ? 170 : 40, top = names ? 170 : 40;
    int size = (int)K * cell, W = label_w + size + (names ? 120 : 20), H = top + size + 40;
    sb_printf(b, "<svg class=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"confusion matrix\">\n", W, H, W, H);
    sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"#999\"/>\n", label_w,
              top, size, size);
    for (size_t t = 0; t < K; t++) {
        json_int_t support = 0;
        for (size_t p = 0; p < K; p++) support += conf_at(conf, t, p);
        for (size_t p = 0; p < K; p++) {
            json_int_t v = conf_at(conf, t, p);
            if (!v) continue;
            double f = (double)v / (double)support;
            /* white -> blue for correct cells, white -> red for errors */
            int r = t == p ? (int)(255 - 222 * f) : 255, g = (int)(255 - (t == p ? 153 : 200) * f),
                bl = t == p ? (int)(255 - 75 * f) : (int)(255 - 200 * f);
            int x = label_w + (int)p * cell, y = top + (int)t * cell;
            sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"><title>true ",
                      x, y, cell, cell, r, g, bl);
            sb_escape(b, json_string_value(json_array_get(labels, t)));
            sb_printf(b, ", predicted ");
            sb_escape(b, json_string_value(json_array_get(labels, p)));
            sb_printf(b, ": %lld</title></rect>", (long long)v);
            /* white digits on a dark cell (a class attribute: the style sheet's text colour beats a fill
             * attribute), dark ones on a light cell; the line between is a luma of one half */
            double luma = (0.299 * r + 0.587 * g + 0.114 * bl) / 255;
            if (numbers)
                sb_printf(b, "<text x=\"%d\" y=\"%d\" class=\"cellnum%s\">%lld</text>", x + cell / 2,
                          y + cell / 2 + 4, luma < 0.5 ? " ondark" : "", (long long)v);
            sb_printf(b, "\n");
        }
    }
    for (size_t i = 0; i < K; i++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        const char *name = names ? json_string_value(json_array_get(labels, i)) : idx;
        int c = (int)i * cell + cell / 2;
        if (!names && i % 5) continue; /* many classes: number every fifth */
        sb_printf(b, "<text x=\"%d\" y=\"%d\" class=\"rowlab\">", label_w - 4, top + c + 4);
        sb_escape(b, name);
        sb_printf(b, "</text><text transform=\"translate(%d %d) rotate(-60)\" class=\"collab\">", label_w + c + 4,
                  top - 4);
        sb_escape(b, name);
        sb_printf(b, "</text>\n");
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\" class=\"xlabel\">predicted class</text>\n", label_w + size / 2, H - 12);
    sb_printf(b, "<text transform=\"translate(12 %d) rotate(-90)\" class=\"ylabel\">true class</text>\n",
              top + size / 2);
    sb_printf(b, "</svg>\n");
    if (!names) {
        sb_printf(b, "<p class=\"note\">Class numbers: ");
        for (size_t i = 0; i < K; i++) {
            sb_printf(b, "%s%zu&nbsp;=&nbsp;", i ? ", " : "", i);
            sb_escape(b, json_string_value(json_array_get(labels, i)));
        }
        sb_printf(b, ".</p>\n");
    }
}

static double pc_num(json_t *per, size_t i, const char *key) {
    return json_number_value(json_object_get(json_array_get(per, i), key));
}

/* Per-class table; `order` lists the rows to show. */
static void class_table(strbuf *b, json_t *ev, const size_t *order, size_t n) {
    json_t *labels = json_object_get(ev, "labels"), *per = json_object_get(ev, "per_class"),
           *conf = json_object_get(ev, "confusion");
    size_t K = json_array_size(labels);
    sb_printf(b, "<table class=\"classes\"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
                 "<th>examples</th><th>most often mistaken for</th></tr></thead><tbody>\n");
    for (size_t r = 0; r < n; r++) {
        size_t c = order[r];
        size_t worst = K;
        json_int_t worst_n = 0;
        for (size_t p = 0; p < K; p++)
            if (p != c && conf_at(conf, c, p) > worst_n) { worst = p; worst_n = conf_at(conf, c, p); }
        sb_printf(b, "<tr><td>");
        sb_escape(b, json_string_value(json_array_get(labels, c)));
        sb_printf(b, "</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%.0f</td><td>", pc_num(per, c, "precision"),
                  pc_num(per, c, "recall"), pc_num(per, c, "f1"), pc_num(per, c, "support"));
        if (worst < K) {
            sb_escape(b, json_string_value(json_array_get(labels, worst)));
            sb_printf(b, " (%lld)", (long long)worst_n);
        }
        sb_printf(b, "</td></tr>\n");
    }
    sb_printf(b, "</tbody></table>\n");
}

static ftc_status classify_sections(strbuf *b, json_t *ev) {
    json_t *per = json_object_get(ev, "per_class");
    size_t K = json_array_size(per);
    size_t *order = malloc(K * sizeof *order);
    if (!order) return FTC_E_NOMEM;
    for (size_t i = 0; i < K; i++) order[i] = i;
    /* worst first: lowest F1, then more examples (a bigger failure), then lower index; same order as
     * ftc_class_metrics_worst */
    for (size_t i = 1; i < K; i++) {
        size_t c = order[i], j = i;
        while (j > 0) {
            size_t o = order[j - 1];
            double fo = pc_num(per, o, "f1"), fc = pc_num(per, c, "f1");
            if (!(fo > fc || (fo == fc && pc_num(per, o, "support") < pc_num(per, c, "support")))) break;
            order[j] = o;
            j--;
        }
        order[j] = c;
    }
    sb_printf(b, "<h2>Confusion matrix</h2>\n<p class=\"note\">Rows: true class; columns: predicted class. "
                 "Shade: share of the row's examples (blue correct, red mistaken); hover a cell for its count.</p>\n");
    confusion_svg(b, ev);
    size_t n_worst = K < 10 ? K : 10;
    sb_printf(b, "<h2>Worst classes</h2>\n");
    class_table(b, ev, order, n_worst);
    sb_printf(b, "<details><summary>All %zu classes</summary>\n", K);
    for (size_t i = 0; i < K; i++) order[i] = i;
    class_table(b, ev, order, K);
    sb_printf(b, "</details>\n");
    /* the examples the model got wrong with the most confidence (ftc eval's "worst") */
    json_t *worst = json_object_get(ev, "worst");
    if (worst) {
        sb_printf(b, "<h2>Most confident mistakes</h2>\n");
        if (!json_array_size(worst)) {
            sb_printf(b, "<p class=\"note\">No example was misclassified.</p>\n");
        } else {
            sb_printf(b, "<p class=\"note\">The %zu misclassified examples the model was surest of, with the "
                         "probability it gave its wrong answer (the text as the model saw it, after tokenization).</p>\n"
                         "<table class=\"worst\"><thead><tr><th>text</th><th>true class</th><th>predicted</th>"
                         "<th>probability</th></tr></thead><tbody>\n", json_array_size(worst));
            size_t i;
            json_t *w;
            json_array_foreach(worst, i, w) {
                const char *text = json_string_value(json_object_get(w, "text"));
                sb_printf(b, "<tr><td>");
                if (text) sb_escape(b, text);
                else sb_printf(b, "&ndash;");
                sb_printf(b, "</td><td>");
                sb_escape(b, json_string_value(json_object_get(w, "label")));
                sb_printf(b, "</td><td>");
                sb_escape(b, json_string_value(json_object_get(w, "predicted")));
                sb_printf(b, "</td><td>%.3f</td></tr>\n", json_number_value(json_object_get(w, "prob")));
            }
            sb_printf(b, "</tbody></table>\n");
        }
    }
    free(order);
    return FTC_OK;
}

static ftc_status samples_section(strbuf *b, const char *path, ftc_err *err) {
    char *text;
    size_t len;
    ftc_status st = ftc_read_file(path, &text, &len, err);
    if (st != FTC_OK) return st;
    /* columns after prompt, base and tuned: the first line's other string keys, in order (e.g. "rag", "reference") */
    enum { MAX_EXTRA = 8 };
    char extra[MAX_EXTRA][64];
    int n_extra = 0;
    const char *first = text;
    while (*first == ' ' || *first == '\t' || *first == '\r' || *first == '\n') first++;
    json_t *o1 = json_loadb(first, strcspn(first, "\n"), 0, NULL);
    const char *key1;
    json_t *v1;
    if (json_is_object(o1)) json_object_foreach(o1, key1, v1) {
        if (n_extra < MAX_EXTRA && json_is_string(v1) && strcmp(key1, "prompt") && strcmp(key1, "base") &&
            strcmp(key1, "tuned") && strlen(key1) < sizeof extra[0])
            strcpy(extra[n_extra++], key1);
    }
    json_decref(o1);
    sb_printf(b, "<h2>Sample answers</h2>\n<table class=\"samples\"><thead><tr><th>prompt</th><th>base model</th>"
                 "<th>tuned model</th>");
    for (int k = 0; k < n_extra; k++) {
        sb_printf(b, "<th>");
        sb_escape(b, extra[k]);
        sb_printf(b, "</th>");
    }
    sb_printf(b, "</tr></thead><tbody>\n");
    int line_no = 0;
    char *p = text, *line;
    while ((line = next_line(&p, &line_no))) {
        if (!*line) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const char *keys[] = {"prompt", "base", "tuned"};
        const char *vals[3] = {0};
        for (int k = 0; k < 3 && o; k++) vals[k] = json_string_value(json_object_get(o, keys[k]));
        if (!o || !vals[0] || !vals[1] || !vals[2]) {
            st = ftc_errf(err, FTC_E_INPUT, "%s:%d: want an object with string fields prompt, base, tuned%s%s",
                          path, line_no, o ? "" : ": ", o ? "" : je.text);
            json_decref(o);
            break;
        }
        sb_printf(b, "<tr>");
        for (int k = 0; k < 3; k++) {
            sb_printf(b, "<td>");
            sb_escape(b, vals[k]);
            sb_printf(b, "</td>");
        }
        for (int k = 0; k < n_extra; k++) {
            const char *v = json_string_value(json_object_get(o, extra[k]));
            sb_printf(b, "<td>");
            sb_escape(b, v ? v : "");
            sb_printf(b, "</td>");
        }
        sb_printf(b, "</tr>\n");
        json_decref(o);
    }
    sb_printf(b, "</tbody></table>\n");
    free(text);
    return st;
}

/* ---- one run's files ---- */
typedef struct {
    const char *dir;
    char log_path[4096], eval_path[4096], samples_path[4096], cfg_path[4096];
    run_log log;
    json_t *ev;            /* eval.json, checked; NULL when absent */
    json_t *base;          /* its "base" object, or NULL */
    const char *task;      /* "classify", "causal-lm" or NULL (unknown) */
    json_t *cfg;           /* config.resolved.json (an object) or NULL */
    json_t *defaults;      /* ftc_train_config_defaults_json for cfg, or NULL */
    bool has_samples;
    double time;           /* training time: the run's elapsed_s, plus its LP-FT head stage's (RUNDIR/head-stage) */
    double head_stage_time; /* NaN when there was no head stage */
    /* the best checkpoint: the step whose model is RUNDIR/model and whose figures eval.json holds (the trainer keeps
     * the best evaluation by the run's metric; without validation the last step is the model) */
    double best_step;      /* NaN: no evaluation logged */
    int best_key;          /* the log key of the run's metric */
    double best_value;
} run_data;

static void run_data_free(run_data *r) {
    run_log_free(&r->log);
    json_decref(r->ev);
    json_decref(r->cfg);
    json_decref(r->defaults);
}

/* The model's width, for the default causal-lm learning rate: RUNDIR/model/config.json, else the base model's. */
static int model_hidden_size(const char *dir, json_t *cfg) {
    const char *names[] = {"hidden_size", "n_embd", "d_model", "dim"};
    char path[4096];
    const char *model = json_string_value(json_object_get(cfg, "model"));
    for (int w = 0; w < 2; w++) {
        const char *d = w == 0 ? dir : model;
        if (!d || !ftc_path_join(path, sizeof path, d, w == 0 ? "model/config.json" : "config.json")) continue;
        json_t *mc = ftc_file_exists(path) ? ftc_json_load_file(path, 0, NULL) : NULL;
        for (int i = 0; i < 4 && mc; i++) {
            json_t *v = json_object_get(mc, names[i]);
            if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 24)) {
                int h = (int)json_integer_value(v);
                json_decref(mc);
                return h;
            }
        }
        json_decref(mc);
    }
    return 0;
}

static ftc_status load_run(const char *dir, run_data *r, ftc_err *err) {
    memset(r, 0, sizeof *r);
    r->dir = dir;
    r->best_step = NAN;
    if (!ftc_path_join(r->log_path, sizeof r->log_path, dir, "metrics.jsonl") ||
        !ftc_path_join(r->eval_path, sizeof r->eval_path, dir, "eval.json") ||
        !ftc_path_join(r->samples_path, sizeof r->samples_path, dir, "samples.jsonl") ||
        !ftc_path_join(r->cfg_path, sizeof r->cfg_path, dir, "config.resolved.json"))
        return ftc_errf(err, FTC_E_INPUT, "%s: run directory path too long", dir);
    if (!ftc_is_dir(dir)) return ftc_errf(err, FTC_E_IO, "%s: not a directory", dir);
    ftc_status st = read_log(r->log_path, &r->log, err);
    if (st != FTC_OK) return st;
    json_error_t je;
    if (ftc_file_exists(r->eval_path)) {
        r->ev = ftc_json_load_file(r->eval_path, JSON_REJECT_DUPLICATES, &je);
        if (!r->ev || !json_is_object(r->ev))
            return ftc_errf(err, FTC_E_INPUT, "%s:%d: not a JSON object%s%s", r->eval_path, r->ev ? 1 : je.line,
                            r->ev ? "" : ": ", r->ev ? "" : je.text);
        r->task = json_string_value(json_object_get(r->ev, "task"));
        if (!r->task || (strcmp(r->task, "classify") && strcmp(r->task, "causal-lm")))
            return eval_bad(err, r->eval_path, "\"task\" must be \"classify\" or \"causal-lm\"");
        if (!strcmp(r->task, "classify") && (st = check_classify(r->eval_path, r->ev, err)) != FTC_OK) return st;
        r->base = json_object_get(r->ev, "base");
        if (r->base && !json_is_object(r->base)) return eval_bad(err, r->eval_path, "\"base\" is not an object");
    } else if (r->log.s[K_ACCURACY].n || r->log.s[K_MACRO_F1].n) {
        r->task = "classify";
    } else if (r->log.s[K_TOKEN_ACC].n || r->log.s[K_VAL_PPL].n || ftc_file_exists(r->samples_path)) {
        r->task = "causal-lm"; /* sample answers are written for causal-lm runs only */
    }
    r->has_samples = ftc_file_exists(r->samples_path);
    /* full fine-tuning with a new head trains the head alone first, in RUNDIR/head-stage: its time counts too */
    r->time = r->log.elapsed;
    r->head_stage_time = NAN;
    char hs_path[4096 + 32];
    snprintf(hs_path, sizeof hs_path, "%s/head-stage/metrics.jsonl", dir);
    if (!isnan(r->time) && ftc_file_exists(hs_path)) {
        run_log hs = {0};
        if ((st = read_log(hs_path, &hs, err)) == FTC_OK && !isnan(hs.elapsed)) {
            r->head_stage_time = hs.elapsed;
            r->time += hs.elapsed;
        }
        run_log_free(&hs);
        if (st != FTC_OK) return st;
    }
    if (ftc_file_exists(r->cfg_path)) {
        r->cfg = ftc_json_load_file(r->cfg_path, 0, &je);
        if (!r->cfg || !json_is_object(r->cfg))
            return ftc_errf(err, FTC_E_INPUT, "%s:%d: not a JSON object%s%s", r->cfg_path, r->cfg ? 1 : je.line,
                            r->cfg ? "" : ": ", r->cfg ? "" : je.text);
        r->defaults = ftc_train_config_defaults_json(r->cfg, model_hidden_size(dir, r->cfg));
        if (!r->defaults) return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", r->cfg_path);
    }
    /* the best evaluation, as the trainer chose it: the first strictly better value of the run's metric */
    const char *metric = json_string_value(json_object_get(r->cfg, "metric"));
    r->best_key = metric && !strcmp(metric, "accuracy") ? K_ACCURACY : metric && !strcmp(metric, "macro_f1") ? K_MACRO_F1
                                                                                                              : K_VAL_LOSS;
    const series *ms = &r->log.s[r->best_key];
    for (int j = 0; j < ms->n; j++)
        if (isnan(r->best_step) || (r->best_key == K_VAL_LOSS ? ms->y[j] < r->best_value : ms->y[j] > r->best_value)) {
            r->best_step = ms->x[j];
            r->best_value = ms->y[j];
        }
    return FTC_OK;
}

/* "1 h 02 min", "3 min 05 s", "42.0 s" */
static void fmt_duration(char *out, size_t n, double s) {
    if (s >= 3600) snprintf(out, n, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(out, n, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(out, n, "%.1f s", s);
}

/* Plain values of a settings object, written as the table shows them. */
static void fmt_setting(strbuf *b, json_t *v) {
    if (!v) sb_printf(b, "&ndash;");
    else if (json_is_string(v)) sb_escape(b, json_string_value(v));
    else if (json_is_integer(v)) sb_printf(b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) sb_printf(b, "%g", json_real_value(v));
    else if (json_is_boolean(v)) sb_printf(b, "%s", json_is_true(v) ? "true" : "false");
    else sb_printf(b, "&ndash;");
}

static bool same_setting(json_t *a, json_t *b) {
    if (!a || !b) return a == b;
    if (json_is_number(a) && json_is_number(b)) {
        /* float settings went through float and 9 printed digits: equal when equal as floats */
        double x = json_number_value(a), y = json_number_value(b);
        return x == y || (float)x == (float)y || fabs(x - y) <= 1e-6 * fmax(fabs(x), fabs(y));
    }
    return json_equal(a, b);
}

/* Facts of the run that config.resolved.json records beside the settings: shown in a line of their own. */
static const char *const RUN_FACTS[] = {"trainable_params", "total_params", "total_steps", "warmup_steps",
                                        "steps_per_epoch", "train_examples", "val_examples", NULL};
static bool is_fact(const char *key) {
    for (int i = 0; RUN_FACTS[i]; i++)
        if (!strcmp(key, RUN_FACTS[i])) return true;
    return false;
}

/* LoRA's settings apply to LoRA runs only (a run without config.resolved.json: to none). */
static bool setting_applies(const run_data *r, const char *key) {
    const char *method = json_string_value(json_object_get(r->cfg, "method"));
    return strncmp(key, "lora_", 5) || (method && !strcmp(method, "lora"));
}

/* Whether a setting of the run mattered: what every run names (model, data, task, method, val), or a value other
 * than the default of its task and method; never LoRA's settings in a run of another method, nor "out" (the run
 * directory itself). */
static bool setting_matters(const run_data *r, const char *key, json_t *v) {
    if (json_is_object(v) || json_is_array(v) || json_is_null(v) || is_fact(key) || !strcmp(key, "out")) return false;
    if (!setting_applies(r, key)) return false;
    if (!strcmp(key, "model") || !strcmp(key, "data") || !strcmp(key, "task") || !strcmp(key, "method"))
        return true;
    if (!strcmp(key, "val")) return json_is_string(v) && *json_string_value(v);
    return !same_setting(v, json_object_get(r->defaults, key));
}

static void settings_section(strbuf *b, const run_data *r) {
    sb_printf(b, "<h2>Run settings</h2>\n<p class=\"note\">The settings that differ from the defaults of a ");
    sb_escape(b, json_is_string(json_object_get(r->cfg, "task")) ? json_string_value(json_object_get(r->cfg, "task")) : "");
    sb_printf(b, " ");
    sb_escape(b, json_is_string(json_object_get(r->cfg, "method")) ? json_string_value(json_object_get(r->cfg, "method")) : "");
    sb_printf(b, " run, besides the model, data, task and method; config.resolved.json has all of them.</p>\n"
                 "<table class=\"settings\"><tbody>\n");
    const char *key;
    json_t *v;
    json_object_foreach(r->cfg, key, v) {
        if (!setting_matters(r, key, v)) continue;
        sb_printf(b, "<tr><th>");
        sb_escape(b, key);
        sb_printf(b, "</th><td>");
        fmt_setting(b, v);
        sb_printf(b, "</td></tr>\n");
    }
    sb_printf(b, "</tbody></table>\n");
}

/* "1,234,567" */
static void fmt_count(char *out, size_t n, long long v) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
    size_t len = strlen(digits), o = 0;
    if (v < 0 && o + 1 < n) out[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
}

/* The meta lines under the title: task, log, training time, the best checkpoint, the run's size. */
static void run_meta(strbuf *b, const run_data *r) {
    sb_printf(b, "<p class=\"meta\">Run ");
    sb_escape(b, r->dir);
    sb_printf(b, " &middot; task %s &middot; %d log lines, %d train steps logged, %d evaluations", r->task ? r->task : "unknown",
              r->log.n_lines, r->log.s[K_LOSS].n, r->log.s[K_VAL_LOSS].n);
    if (!isnan(r->time)) {
        char d[64];
        fmt_duration(d, sizeof d, r->time);
        sb_printf(b, " &middot; training time %s%s", d, r->log.finished ? "" : " so far");
        if (!isnan(r->head_stage_time)) {
            fmt_duration(d, sizeof d, r->head_stage_time);
            sb_printf(b, " (the head-first stage's %s included)", d);
        }
    }
    sb_printf(b, "</p>\n<p class=\"meta\">");
    if (!isnan(r->best_step))
        sb_printf(b, "Best checkpoint: step %.0f (%s %.4f)%s; the model and the final metrics come from it "
                     "(dashed line on the charts).", r->best_step, LOG_KEYS[r->best_key], r->best_value,
                  r->log.stopped_early ? ", early stopping ended the run" : "");
    else
        sb_printf(b, "No validation logged: the model is the last step's.");
    if (r->cfg) {
        json_t *tp = json_object_get(r->cfg, "trainable_params"), *np = json_object_get(r->cfg, "total_params"),
               *nt = json_object_get(r->cfg, "train_examples"), *nv = json_object_get(r->cfg, "val_examples"),
               *ts = json_object_get(r->cfg, "total_steps"), *se = json_object_get(r->cfg, "steps_per_epoch");
        char a[32], c[32];
        if (json_is_integer(tp) && json_is_integer(np)) {
            fmt_count(a, sizeof a, json_integer_value(tp));
            fmt_count(c, sizeof c, json_integer_value(np));
            sb_printf(b, " %s of %s parameters trained.", a, c);
        }
        if (json_is_integer(nt) && json_is_integer(nv))
            sb_printf(b, " %lld training, %lld validation examples.", (long long)json_integer_value(nt),
                      (long long)json_integer_value(nv));
        if (json_is_integer(ts) && json_is_integer(se) && json_integer_value(se) > 0)
            sb_printf(b, " %lld steps (%.3g epochs).", (long long)json_integer_value(ts),
                      (double)json_integer_value(ts) / (double)json_integer_value(se));
    }
    sb_printf(b, "</p>\n");
}

static const char *STYLE =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1000px;color:#222;"
    "padding:0 1em}\n"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}\n"
    ".meta,.note{color:#555;font-size:.9em}\n"
    "table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:right;vertical-align:top}thead th{background:#f3f3f3;text-align:center}tbody th{text-align:left;font-weight:600}\n"
    "table.classes td:first-child,table.classes td:last-child,table.samples td,table.worst td:first-child{text-align:left}\n"
    "table.samples td,table.worst td:first-child{white-space:pre-wrap;max-width:420px}table.settings td{text-align:left}\n"
    "td.best{font-weight:700;background:#eef6ee}.swatch{display:inline-block;width:1.6em;height:.5em;margin-right:.4em}\n"
    "svg text{font-size:12px;fill:#333}svg .title{font-size:14px;font-weight:600}\n"
    ".grid{stroke:#e5e5e5}.axis{stroke:#888}.frame{fill:none;stroke:#888}\n"
    ".series{fill:none;stroke-width:2}.ytick{text-anchor:end}.xtick,.xlabel{text-anchor:middle}\n"
    ".best{stroke-width:1.5;stroke-dasharray:4 3}svg text.bestlab{font-size:11px}\n"
    ".ylabel{text-anchor:middle}.rowlab{text-anchor:end;font-size:11px}.collab{font-size:11px}\n"
    ".cellnum{text-anchor:middle;font-size:10px}svg text.ondark{fill:#fff}\n";

static void page_head(strbuf *b, const char *title) {
    sb_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ftc report: ");
    sb_escape(b, title);
    sb_printf(b, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", STYLE);
}

/* One run's page. */
static ftc_status single_page(strbuf *b, const run_data *r, const char *out_path, ftc_err *err) {
    page_head(b, r->dir);
    sb_printf(b, "<h1>ftc run report</h1>\n");
    run_meta(b, r);
    sb_printf(b, "<h2>Training curves</h2>\n");
    const run_log *log = &r->log;
    chart_mark mark = {r->best_step, "#444"};
    int nm = isnan(r->best_step) ? 0 : 1;
    static const int groups[][3] = {{K_LOSS, K_VAL_LOSS, -1}, {K_ACCURACY, K_MACRO_F1, K_TOKEN_ACC}, {K_VAL_PPL, -1, -1},
                                    {K_GRAD_NORM, -1, -1}, {K_TOK_S, -1, -1}, {K_LR, -1, -1}};
    static const char *const titles[][2] = {{"Loss", "loss"}, {"Validation metrics", "score"},
                                            {"Validation perplexity", "perplexity"},
                                            {"Gradient norm (before clipping)", "L2 norm"},
                                            {"Throughput", "tokens/s"}, {"Learning rate schedule", "learning rate"}};
    if (!log->s[K_LOSS].n && !log->s[K_VAL_LOSS].n) sb_printf(b, "<p class=\"note\">No loss logged yet.</p>\n");
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        chart_line lines[3];
        int n = 0;
        for (int i = 0; i < 3 && groups[g][i] >= 0; i++)
            lines[n++] = (chart_line){&log->s[groups[g][i]], LOG_COLORS[groups[g][i]], LOG_NAMES[groups[g][i]], false};
        /* gradient norm, perplexity and throughput can span orders of magnitude: log axis then */
        svg_chart(b, lines, n, &mark, nm, titles[g][0], titles[g][1], groups[g][0] == K_GRAD_NORM ||
                  groups[g][0] == K_VAL_PPL || groups[g][0] == K_TOK_S);
    }

    sb_printf(b, "<h2>Final metrics</h2>\n");
    if (r->ev) {
        if (r->base) {
            sb_printf(b, "<p class=\"note\">The same test data through the base model and the tuned one.");
            /* what the base column is (ftc eval --compare writes it; for classify: the base encoder + the run's head) */
            const char *note = json_string_value(json_object_get(r->ev, "base_note"));
            if (note) {
                sb_printf(b, " ");
                sb_escape(b, note);
                sb_printf(b, ".");
            }
            sb_printf(b, "</p>\n");
        }
        metrics_table(b, r->ev, r->base);
        if (!strcmp(r->task, "classify") && classify_sections(b, r->ev) != FTC_OK)
            return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", out_path);
    } else {
        sb_printf(b, "<p class=\"note\">No eval.json in the run directory yet: run <code>ftc eval</code>.</p>\n");
    }
    ftc_status st;
    if (r->has_samples && (st = samples_section(b, r->samples_path, err)) != FTC_OK) return st;
    if (r->cfg) settings_section(b, r);
    sb_printf(b, "<footer class=\"meta\"><p>Written by <code>ftc report</code> from metrics.jsonl%s%s%s.</p>"
                 "</footer>\n</body>\n</html>\n",
              r->ev ? ", eval.json" : "", r->has_samples ? ", samples.jsonl" : "", r->cfg ? ", config.resolved.json" : "");
    return FTC_OK;
}

/* ---- several runs on one page ---- */
static const char *const RUN_COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define RUN_COLOR(i) RUN_COLORS[(i) % (int)(sizeof RUN_COLORS / sizeof *RUN_COLORS)]

/* A run's name in legends: its directory without trailing slashes, the last 28 characters when longer. */
static void run_label(char *out, size_t n, const char *dir) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t from = len > 28 ? len - 28 : 0;
    snprintf(out, n, "%s%.*s", from ? "..." : "", (int)(len - from), dir + from);
}

/* Final metrics side by side: one column per run, the best value of each row in bold. */
static void multi_metrics_table(strbuf *b, const run_data *runs, int n, char (*labels)[64]) {
    static const char *const keys[] = {"accuracy", "macro_f1", "weighted_f1", "loss", "perplexity", "token_accuracy",
                                       "n_examples", "n_tokens"};
    static const char *const names[] = {"accuracy", "macro-F1", "weighted F1", "loss", "perplexity", "token accuracy",
                                        "examples", "target tokens"};
    static const int better[] = {1, 1, 1, -1, -1, 1, 0, 0}; /* 1 higher is better, -1 lower, 0 a count */
    sb_printf(b, "<table class=\"metrics\"><thead><tr><th>metric</th>");
    for (int i = 0; i < n; i++) {
        sb_printf(b, "<th><span class=\"swatch\" style=\"background:%s\"></span>", RUN_COLOR(i));
        sb_escape(b, labels[i]);
        sb_printf(b, "</th>");
    }
    sb_printf(b, "</tr></thead><tbody>\n");
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        int best = -1, have = 0;
        for (int i = 0; i < n; i++) {
            json_t *v = json_object_get(runs[i].ev, keys[k]);
            if (!json_is_number(v)) continue;
            have++;
            double x = json_number_value(v);
            if (better[k] && isfinite(x) &&
                (best < 0 || (better[k] > 0 ? x > json_number_value(json_object_get(runs[best].ev, keys[k]))
                                            : x < json_number_value(json_object_get(runs[best].ev, keys[k])))))
                best = i;
        }
        if (!have) continue;
        sb_printf(b, "<tr><th>%s</th>", names[k]);
        for (int i = 0; i < n; i++) {
            json_t *v = json_object_get(runs[i].ev, keys[k]);
            bool is_best = i == best && have > 1;
            if (!json_is_number(v)) sb_printf(b, "<td>&ndash;</td>");
            else if (json_is_integer(v)) sb_printf(b, "<td>%lld</td>", (long long)json_integer_value(v));
            else sb_printf(b, "<td%s>%.4f%s</td>", is_best ? " class=\"best\"" : "", json_number_value(v),
                           is_best ? " &#9733;" : "");
        }
        sb_printf(b, "</tr>\n");
    }
    sb_printf(b, "</tbody></table>\n");
}

/* The settings whose values are not the same in every run (a run without the key shows a dash). */
static void multi_settings_table(strbuf *b, const run_data *runs, int n, char (*labels)[64]) {
    json_t *keys = json_object(); /* the union of the runs' keys, in the order first seen */
    json_t *order = json_array();
    for (int i = 0; i < n; i++) {
        const char *key;
        json_t *v;
        json_object_foreach(runs[i].cfg, key, v) {
            if (json_is_object(v) || json_is_array(v) || json_is_null(v) || is_fact(key) || !strcmp(key, "out")) continue;
            if (json_object_get(keys, key)) continue;
            json_object_set_new(keys, key, json_true());
            json_array_append_new(order, json_string(key));
        }
    }
    int n_same = 0, shown = 0;
    for (size_t k = 0; k < json_array_size(order); k++) {
        const char *key = json_string_value(json_array_get(order, k));
        /* compared among the runs it applies to: LoRA's settings among the LoRA runs only */
        bool differ = false;
        json_t *first = NULL;
        int n_apply = 0;
        for (int i = 0; i < n && !differ; i++) {
            if (!setting_applies(&runs[i], key)) continue;
            json_t *v = json_object_get(runs[i].cfg, key);
            if (n_apply++) differ = !same_setting(first, v);
            else first = v;
        }
        if (!differ) { n_same++; continue; }
        if (!shown++) {
            sb_printf(b, "<table class=\"settings\"><thead><tr><th>setting</th>");
            for (int i = 0; i < n; i++) {
                sb_printf(b, "<th><span class=\"swatch\" style=\"background:%s\"></span>", RUN_COLOR(i));
                sb_escape(b, labels[i]);
                sb_printf(b, "</th>");
            }
            sb_printf(b, "</tr></thead><tbody>\n");
        }
        sb_printf(b, "<tr><th>");
        sb_escape(b, key);
        sb_printf(b, "</th>");
        for (int i = 0; i < n; i++) {
            sb_printf(b, "<td>");
            fmt_setting(b, setting_applies(&runs[i], key) ? json_object_get(runs[i].cfg, key) : NULL);
            sb_printf(b, "</td>");
        }
        sb_printf(b, "</tr>\n");
    }
    if (shown) sb_printf(b, "</tbody></table>\n");
    else sb_printf(b, "<p class=\"note\">Every run has the same settings.</p>\n");
    if (n_same && shown) sb_printf(b, "<p class=\"note\">%d other settings are the same in every run.</p>\n", n_same);
    json_decref(keys);
    json_decref(order);
}

static ftc_status multi_page(strbuf *b, const run_data *runs, int n, const char *out_path, ftc_err *err) {
    char (*labels)[64] = calloc((size_t)n, sizeof *labels);
    char (*line_labels)[80] = calloc((size_t)n * 2, sizeof *line_labels);
    chart_line *lines = calloc((size_t)n * 2, sizeof *lines);
    chart_mark *marks = calloc((size_t)n, sizeof *marks);
    if (!labels || !line_labels || !lines || !marks) {
        free(labels), free(line_labels), free(lines), free(marks);
        return ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", out_path);
    }
    for (int i = 0; i < n; i++) run_label(labels[i], sizeof labels[i], runs[i].dir);
    char title[64];
    snprintf(title, sizeof title, "%d runs", n);
    page_head(b, title);
    sb_printf(b, "<h1>ftc report: %d runs</h1>\n<table class=\"runs\"><thead><tr><th>run</th><th>task</th><th>method</th>"
                 "<th>best checkpoint</th><th>training time</th><th>parameters trained</th></tr></thead><tbody>\n", n);
    int nm = 0;
    for (int i = 0; i < n; i++) {
        const run_data *r = &runs[i];
        sb_printf(b, "<tr><th><span class=\"swatch\" style=\"background:%s\"></span>", RUN_COLOR(i));
        sb_escape(b, r->dir);
        sb_printf(b, "</th><td>%s</td><td>", r->task ? r->task : "unknown");
        fmt_setting(b, json_object_get(r->cfg, "method"));
        if (!isnan(r->best_step))
            sb_printf(b, "</td><td>step %.0f (%s %.4f)</td>", r->best_step, LOG_KEYS[r->best_key], r->best_value);
        else
            sb_printf(b, "</td><td>last step (no validation)</td>");
        char d[64] = "&ndash;";
        if (!isnan(r->time)) fmt_duration(d, sizeof d, r->time);
        sb_printf(b, "<td>%s</td><td>", d);
        json_t *tp = json_object_get(r->cfg, "trainable_params");
        if (json_is_integer(tp)) {
            char c[32];
            fmt_count(c, sizeof c, json_integer_value(tp));
            sb_printf(b, "%s", c);
        } else {
            sb_printf(b, "&ndash;");
        }
        sb_printf(b, "</td></tr>\n");
        if (!isnan(r->best_step)) marks[nm++] = (chart_mark){r->best_step, RUN_COLOR(i)};
    }
    sb_printf(b, "</tbody></table>\n<h2>Training curves</h2>\n<p class=\"note\">One colour per run; in the loss chart "
                 "the training loss is solid and the validation loss dashed. A dashed vertical line marks each run's "
                 "best checkpoint, the step its model and final metrics come from.</p>\n");
    /* loss: both lines of every run */
    int nl = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            snprintf(line_labels[nl], sizeof line_labels[nl], "%s %s", labels[i], k ? "val" : "train");
            lines[nl] = (chart_line){&runs[i].log.s[k ? K_VAL_LOSS : K_LOSS], RUN_COLOR(i), line_labels[nl], k == 1};
            nl++;
        }
    svg_chart(b, lines, nl, marks, nm, "Loss", "loss", false);
    static const int keys[] = {K_ACCURACY, K_MACRO_F1, K_TOKEN_ACC, K_VAL_PPL, K_GRAD_NORM, K_TOK_S, K_LR};
    static const char *const titles[][2] = {{"Validation accuracy", "accuracy"}, {"Validation macro-F1", "macro-F1"},
                                            {"Validation token accuracy", "token accuracy"},
                                            {"Validation perplexity", "perplexity"},
                                            {"Gradient norm (before clipping)", "L2 norm"},
                                            {"Throughput", "tokens/s"}, {"Learning rate schedule", "learning rate"}};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        for (int i = 0; i < n; i++) lines[i] = (chart_line){&runs[i].log.s[keys[k]], RUN_COLOR(i), labels[i], false};
        /* runs of different methods differ by orders of magnitude in throughput (a head on cached features
         * beside a full fine-tune) and in gradient norm: a log axis then keeps every run readable */
        svg_chart(b, lines, n, marks, nm, titles[k][0], titles[k][1],
                  keys[k] == K_TOK_S || keys[k] == K_GRAD_NORM || keys[k] == K_VAL_PPL);
    }
    sb_printf(b, "<h2>Final metrics</h2>\n");
    int with_eval = 0;
    for (int i = 0; i < n; i++) with_eval += runs[i].ev != NULL;
    if (with_eval) {
        sb_printf(b, "<p class=\"note\">Each run's eval.json (its best model on its evaluation data); the best value "
                     "of each row in bold with a star.");
        for (int i = 0; i < n; i++)
            if (!runs[i].ev) {
                sb_printf(b, " No eval.json in ");
                sb_escape(b, runs[i].dir);
                sb_printf(b, ".");
            }
        sb_printf(b, "</p>\n");
        multi_metrics_table(b, runs, n, labels);
    } else {
        sb_printf(b, "<p class=\"note\">No run has an eval.json yet: run <code>ftc eval</code>.</p>\n");
    }
    sb_printf(b, "<h2>Settings that differ</h2>\n");
    multi_settings_table(b, runs, n, labels);
    sb_printf(b, "<footer class=\"meta\"><p>Written by <code>ftc report</code> from each run's metrics.jsonl, eval.json "
                 "and config.resolved.json. Each run's own page: <code>ftc report RUNDIR</code>.</p></footer>\n"
                 "</body>\n</html>\n");
    free(labels), free(line_labels), free(lines), free(marks);
    return FTC_OK;
}

ftc_status ftc_report_write(const char *rundir, ftc_err *err) {
    char out_path[4096];
    if (!ftc_path_join(out_path, sizeof out_path, rundir, "report.html"))
        return ftc_errf(err, FTC_E_INPUT, "%s: run directory path too long", rundir);
    return ftc_report_write_runs(&rundir, 1, out_path, err);
}

ftc_status ftc_report_write_runs(const char *const *rundirs, int n, const char *out_path, ftc_err *err) {
    if (n < 1) return ftc_errf(err, FTC_E_USAGE, "no run directory given");
    run_data *runs = calloc((size_t)n, sizeof *runs);
    if (!runs) return ftc_errf(err, FTC_E_NOMEM, "out of memory");
    strbuf b = {0};
    ftc_status st = FTC_OK;
    for (int i = 0; i < n && st == FTC_OK; i++) st = load_run(rundirs[i], &runs[i], err);
    if (st == FTC_OK) st = n == 1 ? single_page(&b, &runs[0], out_path, err) : multi_page(&b, runs, n, out_path, err);
    if (st == FTC_OK && b.oom) st = ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", out_path);
    if (st == FTC_OK) st = ftc_write_file_atomic(out_path, b.s, b.len, err);
    for (int i = 0; i < n; i++) run_data_free(&runs[i]);
    free(runs);
    free(b.s);
    return st;
}

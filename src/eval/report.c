/* RUNDIR/report.html: one self-contained page (inline SVG, no JavaScript, no network) that shows how a
 * run went. Inputs and their keys are documented in docs/report.md:
 *   metrics.jsonl  the trainer's log, one object per line: train steps {"step","loss","lr"}, evaluations
 *                  {"step","val_loss","accuracy","macro_f1",...}; required
 *   eval.json      final metrics as `ftc eval --json` prints them (ftc_class_metrics_json /
 *                  ftc_lm_metrics_json), optionally with "base": {same keys} for the base model
 *   samples.jsonl  causal-lm sample answers {"prompt","base","tuned"}
 *   config.resolved.json  the trainer's resolved settings: its plain top-level values are listed
 * The page is built in memory and written atomically. */
#include "ftc/eval.h"
#include "base/base_internal.h"
#include "ftc/base.h"
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
enum { K_LOSS, K_VAL_LOSS, K_ACCURACY, K_MACRO_F1, K_TOKEN_ACC, K_VAL_PPL, K_LR, N_KEYS };
static const char *const LOG_KEYS[N_KEYS] = {"loss", "val_loss", "accuracy", "macro_f1", "token_accuracy",
                                             "val_perplexity", "lr"};
static const char *const LOG_NAMES[N_KEYS] = {"train loss", "validation loss", "accuracy", "macro-F1",
                                              "token accuracy", "validation perplexity", "learning rate"};
static const char *const LOG_COLORS[N_KEYS] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                                               "#7f7f7f"};

typedef struct {
    series s[N_KEYS];
    int n_lines;
} run_log;

static void run_log_free(run_log *log) {
    for (int k = 0; k < N_KEYS; k++) { free(log->s[k].x); free(log->s[k].y); }
}

static ftc_status read_log(const char *path, run_log *log, ftc_err *err) {
    char *text;
    size_t len;
    ftc_status st = ftc_read_file(path, &text, &len, err);
    if (st != FTC_OK) return st;
    int line_no = 0;
    char *p = text;
    while (p && *p && st == FTC_OK) {
        line_no++;
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        char *line = p;
        p = nl ? nl + 1 : NULL;
        while (*line == ' ' || *line == '\t' || *line == '\r') line++;
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

/* Draws the series listed in `keys` (those with points) in one chart; nothing if none has points. */
static void svg_line_chart(strbuf *b, const run_log *log, const int *keys, int nkeys, const char *title,
                           const char *ylabel) {
    const int W = 820, H = 300, L = 90, R = 240, T = 34, B = 44;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int drawn = 0;
    for (int i = 0; i < nkeys; i++) {
        const series *s = &log->s[keys[i]];
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
    double xs = nice_step(x1 - x0, 6), ys = nice_step(y1 - y0, 5);
    x0 = floor(x0 / xs) * xs; x1 = ceil(x1 / xs) * xs;
    y0 = floor(y0 / ys) * ys; y1 = ceil(y1 / ys) * ys;
    /* ticks by count, not by repeated addition: a few per axis whatever the values */
    int nyt = (int)lround((y1 - y0) / ys), nxt = (int)lround((x1 - x0) / xs);
    const double pw = W - L - R, ph = H - T - B;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (T + (1 - ((v) - y0) / (y1 - y0)) * ph)
    sb_printf(b, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", W, H, W, H);
    sb_escape(b, title);
    sb_printf(b, "\">\n<text x=\"%d\" y=\"20\" class=\"title\">", L);
    sb_escape(b, title);
    sb_printf(b, "</text>\n");
    char lab[64];
    for (int i = 0; i <= nyt && i <= 20; i++) {
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
    int legend = 0;
    for (int i = 0; i < nkeys; i++) {
        int k = keys[i];
        const series *s = &log->s[k];
        if (!s->n) continue;
        sb_printf(b, "<polyline class=\"series\" stroke=\"%s\" points=\"", LOG_COLORS[k]);
        for (int j = 0; j < s->n; j++) sb_printf(b, "%s%.1f,%.1f", j ? " " : "", PX(s->x[j]), PY(s->y[j]));
        sb_printf(b, "\"/>\n");
        if (s->n <= 60) /* sparse series (evaluations) also get dots, so a single point is visible */
            for (int j = 0; j < s->n; j++)
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", PX(s->x[j]), PY(s->y[j]),
                          LOG_COLORS[k]);
        double ly = T + 10 + 20 * legend++;
        sb_printf(b, "\n<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>"
                     "<text x=\"%.0f\" y=\"%.1f\" class=\"legend\">%s (last %.4g)</text>\n",
                  L + pw + 12, L + pw + 32, ly, ly, LOG_COLORS[k], L + pw + 38, ly + 4, LOG_NAMES[k],
                  s->y[s->n - 1]);
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
            if (numbers)
                sb_printf(b, "<text x=\"%d\" y=\"%d\" class=\"cellnum\"%s>%lld</text>", x + cell / 2,
                          y + cell / 2 + 4, f > 0.6 ? " fill=\"#fff\"" : "", (long long)v);
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
    char *p = text;
    while (p && *p) {
        line_no++;
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        char *line = p;
        p = nl ? nl + 1 : NULL;
        while (*line == ' ' || *line == '\t' || *line == '\r') line++;
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

/* The run's resolved settings (written by ftc train): top-level strings, numbers and booleans. */
static ftc_status settings_section(strbuf *b, const char *path, ftc_err *err) {
    json_error_t je;
    json_t *cfg = ftc_json_load_file(path, 0, &je);
    if (!cfg || !json_is_object(cfg)) {
        ftc_status st = ftc_errf(err, FTC_E_INPUT, "%s:%d: not a JSON object%s%s", path, cfg ? 1 : je.line,
                                 cfg ? "" : ": ", cfg ? "" : je.text);
        json_decref(cfg);
        return st;
    }
    sb_printf(b, "<h2>Run settings</h2>\n<table class=\"settings\"><tbody>\n");
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        if (json_is_object(v) || json_is_array(v) || json_is_null(v)) continue;
        sb_printf(b, "<tr><th>");
        sb_escape(b, key);
        sb_printf(b, "</th><td>");
        if (json_is_string(v)) sb_escape(b, json_string_value(v));
        else if (json_is_integer(v)) sb_printf(b, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v)) sb_printf(b, "%g", json_real_value(v));
        else sb_printf(b, "%s", json_is_true(v) ? "true" : "false");
        sb_printf(b, "</td></tr>\n");
    }
    sb_printf(b, "</tbody></table>\n");
    json_decref(cfg);
    return FTC_OK;
}

static const char *STYLE =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1000px;color:#222;"
    "padding:0 1em}\n"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}\n"
    ".meta,.note{color:#555;font-size:.9em}\n"
    "table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:right;vertical-align:top}thead th{background:#f3f3f3;text-align:center}tbody th{text-align:left;font-weight:600}\n"
    "table.classes td:first-child,table.classes td:last-child,table.samples td{text-align:left}\n"
    "table.samples td{white-space:pre-wrap;max-width:320px}table.settings td{text-align:left}\n"
    "svg text{font-size:12px;fill:#333}svg .title{font-size:14px;font-weight:600}\n"
    ".grid{stroke:#e5e5e5}.axis{stroke:#888}.frame{fill:none;stroke:#888}\n"
    ".series{fill:none;stroke-width:2}.ytick{text-anchor:end}.xtick,.xlabel{text-anchor:middle}\n"
    ".ylabel{text-anchor:middle}.rowlab{text-anchor:end;font-size:11px}.collab{font-size:11px}\n"
    ".cellnum{text-anchor:middle;font-size:10px}\n";

ftc_status ftc_report_write(const char *rundir, ftc_err *err) {
    char log_path[4096], eval_path[4096], samples_path[4096], out_path[4096], cfg_path[4096];
    if (!ftc_path_join(log_path, sizeof log_path, rundir, "metrics.jsonl") ||
        !ftc_path_join(eval_path, sizeof eval_path, rundir, "eval.json") ||
        !ftc_path_join(samples_path, sizeof samples_path, rundir, "samples.jsonl") ||
        !ftc_path_join(out_path, sizeof out_path, rundir, "report.html") ||
        !ftc_path_join(cfg_path, sizeof cfg_path, rundir, "config.resolved.json"))
        return ftc_errf(err, FTC_E_INPUT, "%s: run directory path too long", rundir);
    if (!ftc_is_dir(rundir)) return ftc_errf(err, FTC_E_IO, "%s: not a directory", rundir);

    run_log log = {0};
    json_t *ev = NULL;
    strbuf b = {0};
    ftc_status st = read_log(log_path, &log, err);
    if (st != FTC_OK) goto done;

    const char *task = NULL;
    json_t *base = NULL;
    if (ftc_file_exists(eval_path)) {
        json_error_t je;
        ev = ftc_json_load_file(eval_path, JSON_REJECT_DUPLICATES, &je);
        if (!ev || !json_is_object(ev)) {
            st = ftc_errf(err, FTC_E_INPUT, "%s:%d: not a JSON object%s%s", eval_path, ev ? 1 : je.line,
                          ev ? "" : ": ", ev ? "" : je.text);
            goto done;
        }
        task = json_string_value(json_object_get(ev, "task"));
        if (!task || (strcmp(task, "classify") && strcmp(task, "causal-lm"))) {
            st = eval_bad(err, eval_path, "\"task\" must be \"classify\" or \"causal-lm\"");
            goto done;
        }
        if (!strcmp(task, "classify") && (st = check_classify(eval_path, ev, err)) != FTC_OK) goto done;
        base = json_object_get(ev, "base");
        if (base && !json_is_object(base)) {
            st = eval_bad(err, eval_path, "\"base\" is not an object");
            goto done;
        }
    } else if (log.s[K_ACCURACY].n || log.s[K_MACRO_F1].n) {
        task = "classify";
    } else if (log.s[K_TOKEN_ACC].n || log.s[K_VAL_PPL].n || ftc_file_exists(samples_path)) {
        task = "causal-lm"; /* sample answers are written for causal-lm runs only */
    }

    sb_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ftc report: ");
    sb_escape(&b, rundir);
    sb_printf(&b, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>ftc run report</h1>\n<p class=\"meta\">Run ",
              STYLE);
    sb_escape(&b, rundir);
    sb_printf(&b, " &middot; task %s &middot; %d log lines, %d train steps logged, %d evaluations</p>\n",
              task ? task : "unknown", log.n_lines, log.s[K_LOSS].n, log.s[K_VAL_LOSS].n);

    sb_printf(&b, "<h2>Training curves</h2>\n");
    const int loss_keys[] = {K_LOSS, K_VAL_LOSS};
    const int score_keys[] = {K_ACCURACY, K_MACRO_F1, K_TOKEN_ACC};
    const int ppl_keys[] = {K_VAL_PPL}, lr_keys[] = {K_LR};
    if (!log.s[K_LOSS].n && !log.s[K_VAL_LOSS].n) sb_printf(&b, "<p class=\"note\">No loss logged yet.</p>\n");
    svg_line_chart(&b, &log, loss_keys, 2, "Loss", "loss");
    svg_line_chart(&b, &log, score_keys, 3, "Validation metrics", "score");
    svg_line_chart(&b, &log, ppl_keys, 1, "Validation perplexity", "perplexity");
    svg_line_chart(&b, &log, lr_keys, 1, "Learning rate schedule", "learning rate");

    sb_printf(&b, "<h2>Final metrics</h2>\n");
    if (ev) {
        if (base) {
            sb_printf(&b, "<p class=\"note\">The same test data through the base model and the tuned one.");
            /* what the base column is (ftc eval --compare writes it; for classify: the base encoder + the run's head) */
            const char *note = json_string_value(json_object_get(ev, "base_note"));
            if (note) {
                sb_printf(&b, " ");
                sb_escape(&b, note);
                sb_printf(&b, ".");
            }
            sb_printf(&b, "</p>\n");
        }
        metrics_table(&b, ev, base);
        if (!strcmp(task, "classify") && (st = classify_sections(&b, ev)) != FTC_OK) {
            st = ftc_errf(err, st, "%s: out of memory", out_path);
            goto done;
        }
    } else {
        sb_printf(&b, "<p class=\"note\">No eval.json in the run directory yet: run <code>ftc eval</code>.</p>\n");
    }
    if (ftc_file_exists(samples_path) && (st = samples_section(&b, samples_path, err)) != FTC_OK) goto done;
    if (ftc_file_exists(cfg_path) && (st = settings_section(&b, cfg_path, err)) != FTC_OK) goto done;
    sb_printf(&b, "<footer class=\"meta\"><p>Written by <code>ftc report</code> from metrics.jsonl%s%s%s.</p>"
                  "</footer>\n</body>\n</html>\n",
              ev ? ", eval.json" : "", ftc_file_exists(samples_path) ? ", samples.jsonl" : "",
              ftc_file_exists(cfg_path) ? ", config.resolved.json" : "");
    if (b.oom) {
        st = ftc_errf(err, FTC_E_NOMEM, "%s: out of memory", out_path);
        goto done;
    }
    st = ftc_write_file_atomic(out_path, b.s, b.len, err);
done:
    run_log_free(&log);
    json_decref(ev);
    free(b.s);
    return st;
}

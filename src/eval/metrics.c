/* Classification and language-model metrics; definitions in include/ftc/eval.h. */
#include "ftc/eval.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int ftc_argmax(const float *x, int n) {
    int best = 0;
    if (isnan(x[0])) return 0;
    for (int i = 1; i < n; i++) {
        if (isnan(x[i])) return i; /* numpy: the first NaN is the maximum */
        if (x[i] > x[best]) best = i; /* strict: ties keep the lower index */
    }
    return best;
}

/* -log softmax(x)[target], in double with the max subtracted so large logits do not overflow. */
static double cross_entropy(const float *x, int n, int target) {
    double mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return log(s) + mx - (double)x[target];
}

ftc_status ftc_class_metrics_init(ftc_class_metrics *m, int n_classes, ftc_err *err) {
    memset(m, 0, sizeof *m);
    if (n_classes < 1 || n_classes > 1000000)
        return ftc_errf(err, FTC_E_INPUT, "metrics: number of classes %d out of range", n_classes);
    size_t k = (size_t)n_classes;
    m->n_classes = n_classes;
    m->confusion = calloc(k * k, sizeof *m->confusion);
    m->precision = calloc(k, sizeof *m->precision);
    m->recall = calloc(k, sizeof *m->recall);
    m->f1 = calloc(k, sizeof *m->f1);
    m->support = calloc(k, sizeof *m->support);
    m->predicted = calloc(k, sizeof *m->predicted);
    if (!m->confusion || !m->precision || !m->recall || !m->f1 || !m->support || !m->predicted) {
        ftc_class_metrics_free(m);
        return ftc_errf(err, FTC_E_NOMEM, "metrics: out of memory for %d classes", n_classes);
    }
    m->loss = NAN;
    return FTC_OK;
}

void ftc_class_metrics_free(ftc_class_metrics *m) {
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->support);
    free(m->predicted);
    memset(m, 0, sizeof *m);
}

ftc_status ftc_class_metrics_add(ftc_class_metrics *m, int true_class, int predicted_class, ftc_err *err) {
    if (true_class < 0 || true_class >= m->n_classes)
        return ftc_errf(err, FTC_E_INPUT, "metrics: true class %d outside [0, %d)", true_class, m->n_classes);
    if (predicted_class < 0 || predicted_class >= m->n_classes)
        return ftc_errf(err, FTC_E_INPUT, "metrics: predicted class %d outside [0, %d)", predicted_class,
                        m->n_classes);
    m->confusion[(size_t)true_class * (size_t)m->n_classes + (size_t)predicted_class]++;
    m->n_examples++;
    return FTC_OK;
}

ftc_status ftc_class_metrics_add_logits(ftc_class_metrics *m, const float *logits, const int32_t *labels, int B,
                                        ftc_err *err) {
    int K = m->n_classes;
    /* validate the whole batch first so a bad label leaves the counts untouched */
    for (int b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= K)
            return ftc_errf(err, FTC_E_INPUT, "metrics: batch row %d: true class %d outside [0, %d)", b, labels[b],
                            K);
    for (int b = 0; b < B; b++) {
        const float *row = logits + (size_t)b * (size_t)K;
        ftc_status s = ftc_class_metrics_add(m, labels[b], ftc_argmax(row, K), err);
        if (s != FTC_OK) return s;
        m->nll_sum += cross_entropy(row, K, labels[b]);
        m->n_with_loss++;
    }
    return FTC_OK;
}

static double ratio0(double a, double b) { return b > 0 ? a / b : 0.0; }

void ftc_class_metrics_finish(ftc_class_metrics *m) {
    size_t K = (size_t)m->n_classes;
    int64_t correct = 0;
    for (size_t c = 0; c < K; c++) { m->support[c] = 0; m->predicted[c] = 0; }
    for (size_t t = 0; t < K; t++)
        for (size_t p = 0; p < K; p++) {
            int64_t v = m->confusion[t * K + p];
            m->support[t] += v;
            m->predicted[p] += v;
            if (t == p) correct += v;
        }
    double f1_sum = 0, weighted = 0;
    m->n_absent = 0;
    for (size_t c = 0; c < K; c++) {
        double tp = (double)m->confusion[c * K + c];
        m->precision[c] = ratio0(tp, (double)m->predicted[c]);
        m->recall[c] = ratio0(tp, (double)m->support[c]);
        m->f1[c] = ratio0(2 * m->precision[c] * m->recall[c], m->precision[c] + m->recall[c]);
        f1_sum += m->f1[c];
        weighted += m->f1[c] * (double)m->support[c];
        if (m->support[c] == 0 && m->predicted[c] == 0) m->n_absent++;
    }
    m->accuracy = ratio0((double)correct, (double)m->n_examples);
    m->macro_f1 = f1_sum / (double)K;
    m->weighted_f1 = ratio0(weighted, (double)m->n_examples);
    m->loss = m->n_with_loss > 0 ? m->nll_sum / (double)m->n_with_loss : NAN;
}

void ftc_class_metrics_worst(const ftc_class_metrics *m, int *out) {
    int K = m->n_classes;
    for (int i = 0; i < K; i++) out[i] = i;
    /* insertion sort: stable and K is small (hundreds at most) */
    for (int i = 1; i < K; i++) {
        int c = out[i], j = i - 1;
        while (j >= 0) {
            int o = out[j];
            bool after = m->f1[o] > m->f1[c] || (m->f1[o] == m->f1[c] && m->support[o] < m->support[c]);
            if (!after) break;
            out[j + 1] = o;
            j--;
        }
        out[j + 1] = c;
    }
}

/* json_real refuses NaN/Inf (not JSON); those become null. */
static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

struct json_t *ftc_class_metrics_json(const ftc_class_metrics *m, const char *const *labels) {
    size_t K = (size_t)m->n_classes;
    json_t *o = json_object(), *names = json_array(), *per = json_array(), *conf = json_array();
    if (!o || !names || !per || !conf) goto fail;
    int bad = 0;
    bad |= json_object_set_new(o, "task", json_string("classify"));
    bad |= json_object_set_new(o, "n_examples", json_integer(m->n_examples));
    bad |= json_object_set_new(o, "accuracy", json_real(m->accuracy));
    bad |= json_object_set_new(o, "macro_f1", json_real(m->macro_f1));
    bad |= json_object_set_new(o, "weighted_f1", json_real(m->weighted_f1));
    if (m->n_with_loss > 0) bad |= json_object_set_new(o, "loss", real_or_null(m->loss));
    bad |= json_object_set_new(o, "n_absent_classes", json_integer(m->n_absent));
    for (size_t c = 0; c < K && !bad; c++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", c);
        const char *name = labels ? labels[c] : num;
        json_t *row = json_array();
        json_t *pc = json_pack("{s:s, s:f, s:f, s:f, s:I, s:I}", "label", name, "precision", m->precision[c],
                               "recall", m->recall[c], "f1", m->f1[c], "support", (json_int_t)m->support[c],
                               "predicted", (json_int_t)m->predicted[c]);
        if (!row || !pc) { json_decref(row); json_decref(pc); goto fail; }
        for (size_t p = 0; p < K; p++) bad |= json_array_append_new(row, json_integer(m->confusion[c * K + p]));
        bad |= json_array_append_new(names, json_string(name));
        bad |= json_array_append_new(per, pc);
        bad |= json_array_append_new(conf, row);
    }
    bad |= json_object_set_new(o, "labels", names);
    bad |= json_object_set_new(o, "per_class", per);
    bad |= json_object_set_new(o, "confusion", conf);
    if (bad) { json_decref(o); return NULL; }
    return o;
fail:
    json_decref(o);
    json_decref(names);
    json_decref(per);
    json_decref(conf);
    return NULL;
}

void ftc_lm_metrics_init(ftc_lm_metrics *m) { memset(m, 0, sizeof *m); }

ftc_status ftc_lm_metrics_add_rows(ftc_lm_metrics *m, const float *logits, const int32_t *labels, int B, int T, int V,
                                   int r0, int rows, ftc_err *err) {
    if (r0 == 0) {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int32_t y = labels[(size_t)b * (size_t)T + (size_t)t];
                if (y != FTC_IGNORE_INDEX && (y < 0 || y >= V))
                    return ftc_errf(err, FTC_E_INPUT, "metrics: label %d at row %d position %d outside [0, %d)", y, b,
                                    t, V);
            }
        m->n_sequences += B;
    }
    for (int n = r0; n < r0 + rows; n++) {
        if ((n % T) + 1 >= T) continue; /* a row's last position predicts nothing */
        int32_t y = labels[(size_t)n + 1];
        if (y == FTC_IGNORE_INDEX) continue;
        const float *row = logits + (size_t)(n - r0) * (size_t)V;
        m->nll_sum += cross_entropy(row, V, y);
        m->n_correct += ftc_argmax(row, V) == y;
        m->n_tokens++;
    }
    return FTC_OK;
}

ftc_status ftc_lm_metrics_add_logits(ftc_lm_metrics *m, const float *logits, const int32_t *labels, int B, int T,
                                     int V, ftc_err *err) {
    return ftc_lm_metrics_add_rows(m, logits, labels, B, T, V, 0, B * T, err);
}

double ftc_lm_loss(const ftc_lm_metrics *m) { return m->n_tokens > 0 ? m->nll_sum / (double)m->n_tokens : NAN; }
double ftc_lm_perplexity(const ftc_lm_metrics *m) { return exp(ftc_lm_loss(m)); }
double ftc_lm_token_accuracy(const ftc_lm_metrics *m) {
    return m->n_tokens > 0 ? (double)m->n_correct / (double)m->n_tokens : NAN;
}

struct json_t *ftc_lm_metrics_json(const ftc_lm_metrics *m) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "task", json_string("causal-lm"));
    bad |= json_object_set_new(o, "n_examples", json_integer(m->n_sequences));
    bad |= json_object_set_new(o, "n_tokens", json_integer(m->n_tokens));
    bad |= json_object_set_new(o, "loss", real_or_null(ftc_lm_loss(m)));
    bad |= json_object_set_new(o, "perplexity", real_or_null(ftc_lm_perplexity(m)));
    bad |= json_object_set_new(o, "token_accuracy", real_or_null(ftc_lm_token_accuracy(m)));
    if (bad) { json_decref(o); return NULL; }
    return o;
}

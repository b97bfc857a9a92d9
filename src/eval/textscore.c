/* Answer quality against a reference text: token-F1 (SQuAD) and ROUGE-L (LCS F-measure), on the tokens
 * rouge_score's default tokenizer makes (lowercase, runs of a-z/0-9). See include/ftc/eval.h. */
#include "ftc/eval.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p; /* start in the text */
    int len;
} tok;

static int alnum_lower(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A' + 'a';
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return c;
    return 0;
}

/* Tokens of s into *out (malloc'd; NULL when there are none); drop_articles leaves out a, an, the. */
static ftc_status tokens(const char *s, bool drop_articles, tok **out, int *n, ftc_err *err) {
    size_t len = strlen(s), cap = len / 2 + 1;
    *out = NULL, *n = 0;
    tok *t = malloc(cap * sizeof *t);
    if (!t) return ftc_errf(err, FTC_E_NOMEM, "out of memory (%zu tokens)", cap);
    int k = 0;
    for (size_t i = 0; i < len;) {
        if (!alnum_lower((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && alnum_lower((unsigned char)s[j])) j++;
        tok w = {s + i, (int)(j - i)};
        bool article = false;
        if (drop_articles && w.len <= 3) {
            char low[4] = {0};
            for (int q = 0; q < w.len; q++) low[q] = (char)alnum_lower((unsigned char)w.p[q]);
            article = !strcmp(low, "a") || !strcmp(low, "an") || !strcmp(low, "the");
        }
        if (!article) t[k++] = w;
        i = j;
    }
    *out = t, *n = k;
    return FTC_OK;
}

static bool same(tok a, tok b) {
    if (a.len != b.len) return false;
    for (int i = 0; i < a.len; i++)
        if (alnum_lower((unsigned char)a.p[i]) != alnum_lower((unsigned char)b.p[i])) return false;
    return true;
}

static double fmeasure(double common, int n_pred, int n_ref) {
    if (common <= 0) return 0.0;
    double p = common / n_pred, r = common / n_ref;
    return 2 * p * r / (p + r);
}

ftc_status ftc_text_token_f1(const char *pred, const char *ref, double *f1, ftc_err *err) {
    tok *a = NULL, *b = NULL;
    int na, nb;
    ftc_status s = tokens(pred, true, &a, &na, err);
    if (s == FTC_OK) s = tokens(ref, true, &b, &nb, err);
    bool *used = s == FTC_OK ? calloc((size_t)nb + 1, 1) : NULL;
    if (s == FTC_OK && !used) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) {
        if (na == 0 || nb == 0) *f1 = na == nb ? 1.0 : 0.0; /* SQuAD: both empty agree */
        else {
            int common = 0; /* size of the multiset intersection */
            for (int i = 0; i < na; i++)
                for (int j = 0; j < nb; j++)
                    if (!used[j] && same(a[i], b[j])) {
                        used[j] = true;
                        common++;
                        break;
                    }
            *f1 = fmeasure(common, na, nb);
        }
    }
    free(used);
    free(a);
    free(b);
    return s;
}

ftc_status ftc_text_rouge_l(const char *pred, const char *ref, double *rouge_l, ftc_err *err) {
    tok *a = NULL, *b = NULL;
    int na, nb;
    ftc_status s = tokens(pred, false, &a, &na, err);
    if (s == FTC_OK) s = tokens(ref, false, &b, &nb, err);
    int *row = s == FTC_OK ? calloc(2 * ((size_t)nb + 1), sizeof *row) : NULL;
    if (s == FTC_OK && !row) s = ftc_errf(err, FTC_E_NOMEM, "out of memory");
    if (s == FTC_OK) {
        /* longest common subsequence, two rows of the dynamic programme */
        int *prev = row, *cur = row + nb + 1;
        for (int i = 1; i <= na; i++) {
            cur[0] = 0;
            for (int j = 1; j <= nb; j++)
                cur[j] = same(a[i - 1], b[j - 1]) ? prev[j - 1] + 1 : prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
            int *t = prev;
            prev = cur, cur = t;
        }
        *rouge_l = na && nb ? fmeasure(prev[nb], na, nb) : 0.0; /* rouge_score: 0 when either side is empty */
    }
    free(row);
    free(a);
    free(b);
    return s;
}

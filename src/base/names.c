/* "Did you mean": the known names closest to a mistyped one, for unknown-option and unknown-setting errors. */
#include "ftc/base.h"
#include <stdio.h>
#include <string.h>

/* Optimal string alignment distance (Levenshtein plus adjacent swaps), '_' and '-' counted as equal. */
static int distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            char x = a[i - 1] == '_' ? '-' : a[i - 1], y = b[j - 1] == '_' ? '-' : b[j - 1];
            int c = d[i - 1][j - 1] + (x != y);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && x == b[j - 2] && a[i - 2] == y && d[i - 2][j - 2] + 1 < c) c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[n][m];
}

/* One name contains the other as a '-'-separated part ("epochs" in "num-epochs", "rate" in "learning-rate"). */
static bool shares_word(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la < 3 || lb < 3) return false;
    const char *s = la < lb ? a : b, *l = la < lb ? b : a;
    size_t ls = strlen(s);
    for (const char *p = strstr(l, s); p; p = strstr(p + 1, s)) {
        bool start = p == l || p[-1] == '-' || p[-1] == '_', end = p[ls] == 0 || p[ls] == '-' || p[ls] == '_';
        if (start && end) return true;
    }
    return false;
}

int ftc_closest_names(const char *word, const char *const *names, size_t n, const char *prefix, char *out, size_t cap) {
    if (cap) out[0] = 0;
    int best[3] = {99, 99, 99};
    size_t pick[3] = {0, 0, 0};
    int limit = strlen(word) <= 4 ? 1 : strlen(word) <= 8 ? 2 : 3;
    for (size_t i = 0; i < n; i++) {
        if (!names[i]) continue;
        int d = distance(word, names[i]);
        if (d > limit) d = shares_word(word, names[i]) ? limit + 1 : 99;
        if (d == 99) continue;
        bool dup = false;
        for (int k = 0; k < 3; k++) dup |= best[k] < 99 && !strcmp(names[pick[k]], names[i]);
        if (dup) continue;
        for (int k = 0; k < 3; k++)
            if (d < best[k]) {
                for (int j = 2; j > k; j--) best[j] = best[j - 1], pick[j] = pick[j - 1];
                best[k] = d, pick[k] = i;
                break;
            }
    }
    int found = 0;
    size_t len = 0;
    for (int k = 0; k < 3 && best[k] < 99; k++, found++) {
        const char *sep = k == 0 ? "" : (k + 1 < 3 && best[k + 1] < 99) ? ", " : " or ";
        int w = snprintf(out + len, len < cap ? cap - len : 0, "%s%s%s", sep, prefix, names[pick[k]]);
        if (w > 0) len += (size_t)w;
    }
    return found;
}

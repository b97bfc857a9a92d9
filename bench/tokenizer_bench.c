/* Tokenizer encoding speed, single thread: MB/s of UTF-8 text encoded (no special tokens).
 * The text is cut at line ends into chunks of at most 4 KiB, the same chunks bench/tokenizer_peer.py
 * gives HF tokenizers.   tokenizer_bench --model DIR --text FILE [--reps N]
 * Prints: "<MB/s median> <tokens> <bytes>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/tokenizer.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *model = NULL, *textp = NULL;
    int reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--text")) textp = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    if (!model || !textp || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: tokenizer_bench --model DIR --text FILE [--reps N]\n");
        return 1;
    }
    ftc_err err;
    ftc_tokenizer *t;
    char *text;
    size_t len;
    if (ftc_tokenizer_load(model, &t, &err) || ftc_read_file(textp, &text, &len, &err)) {
        fprintf(stderr, "tokenizer_bench: %s\n", err.msg);
        return 2;
    }
    /* chunks: up to 4096 bytes, cut after a newline when there is one */
    size_t nch = 0, cap = 1024, *cs = malloc(cap * sizeof *cs), *ce = malloc(cap * sizeof *ce);
    for (size_t p = 0; p < len;) {
        size_t e = p + 4096 < len ? p + 4096 : len;
        if (e < len) {
            size_t k = e;
            while (k > p && text[k - 1] != '\n') k--;
            if (k > p) e = k;
            else while (e > p && ((unsigned char)text[e] & 0xC0) == 0x80) e--;
        }
        if (nch == cap) { cap *= 2; cs = realloc(cs, cap * sizeof *cs); ce = realloc(ce, cap * sizeof *ce); }
        cs[nch] = p; ce[nch] = e; nch++;
        p = e;
    }
    double *mbs = malloc((size_t)reps * sizeof *mbs);
    ftc_ids ids = {0};
    size_t tokens = 0;
    for (int r = 0; r < reps; r++) {
        tokens = 0;
        double t0 = ftc_now();
        for (size_t c = 0; c < nch; c++) {
            ids.n = 0;
            if (ftc_tokenizer_encode(t, text + cs[c], ce[c] - cs[c], false, 0, &ids, &err)) {
                fprintf(stderr, "tokenizer_bench: chunk %zu: %s\n", c, err.msg);
                return 2;
            }
            tokens += ids.n;
        }
        mbs[r] = (double)len / 1e6 / (ftc_now() - t0);
    }
    qsort(mbs, (size_t)reps, sizeof *mbs, cmp_d);
    printf("%.2f %zu %zu\n", mbs[reps / 2], tokens, len);
    ftc_ids_free(&ids);
    free(mbs); free(cs); free(ce); free(text);
    ftc_tokenizer_free(t);
    return 0;
}

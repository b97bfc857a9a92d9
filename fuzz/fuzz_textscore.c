/* libFuzzer: token-F1 and ROUGE-L of any two byte strings (split at the first newline) are in [0, 1], symmetric
 * (both are F-measures), 1 for a text against itself when it has tokens, and never crash or leak. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *nl = strchr(buf, '\n'), *b = nl ? nl + 1 : buf + size;
    if (nl) *nl = 0;
    double f1, f1r, rl, rlr, self;
    ftc_err err;
    if (ftc_text_token_f1(buf, b, &f1, &err) || ftc_text_token_f1(b, buf, &f1r, &err) ||
        ftc_text_rouge_l(buf, b, &rl, &err) || ftc_text_rouge_l(b, buf, &rlr, &err) ||
        ftc_text_rouge_l(buf, buf, &self, &err))
        abort();
    if (!(f1 >= 0 && f1 <= 1 && rl >= 0 && rl <= 1) || fabs(f1 - f1r) > 1e-12 || fabs(rl - rlr) > 1e-12) abort();
    if (!(self == 0 || fabs(self - 1) < 1e-12)) abort();
    free(buf);
    return 0;
}

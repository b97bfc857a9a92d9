/* libFuzzer target for ftc_tokenizer_from_json: any bytes must load or fail with an error, never crash;
 * a tokenizer that loads must encode and decode a fixed multilingual text without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/tokenizer.h"

static const char TEXT[] = "Hello world, it's  a test 123 \xE6\x97\xA5\xE6\x9C\xAC <s> [CLS] caf\xC3\xA9\t\n!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ftc_tokenizer *t;
    ftc_err err;
    if (ftc_tokenizer_from_json((const char *)data, size, "fuzz.json", &t, &err) != FTC_OK) return 0;
    ftc_ids ids = {0}, types = {0};
    if (ftc_tokenizer_encode(t, TEXT, sizeof TEXT - 1, true, 0, &ids, &err) == FTC_OK) {
        char *s = NULL;
        if (ftc_tokenizer_decode(t, ids.ids, ids.n, false, &s, &err) == FTC_OK) free(s);
    }
    ids.n = 0;
    ftc_tokenizer_encode_pair(t, TEXT, 12, TEXT + 12, sizeof TEXT - 13, 8, &ids, &types, &err);
    int32_t some[] = {0, 1, 2, 3, 100, -5, 1 << 30};
    char *s = NULL;
    if (ftc_tokenizer_decode(t, some, 7, true, &s, &err) == FTC_OK) free(s);
    ftc_ids_free(&ids);
    ftc_ids_free(&types);
    ftc_tokenizer_free(t);
    return 0;
}

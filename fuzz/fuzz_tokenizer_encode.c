/* libFuzzer target for encode/decode with the real tokenizers (GPT-2, BERT, Llama 2 from
 * $FTC_SHARED_DATA or ../shared/data): the first byte picks the tokenizer, the rest is the text
 * (invalid UTF-8 must give an error, not a crash) and, read as int32s, ids to decode. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/tokenizer.h"

static ftc_tokenizer *toks[3];

static void load(void) {
    const char *d = getenv("FTC_SHARED_DATA");
    const char *names[3] = {"gpt2", "bert-base-uncased", "llama2"};
    for (int i = 0; i < 3; i++) {
        char p[4096];
        ftc_err err;
        snprintf(p, sizeof p, "%s/tokenizers/%s", d ? d : "../shared/data", names[i]);
        if (ftc_tokenizer_load(p, &toks[i], &err)) { fprintf(stderr, "%s\n", err.msg); abort(); }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!toks[0]) load();
    if (size < 1) return 0;
    ftc_tokenizer *t = toks[data[0] % 3];
    bool special = data[0] & 4;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    ftc_ids ids = {0}, types = {0};
    ftc_err err;
    if (ftc_tokenizer_encode(t, text, n, special, (data[0] & 8) ? 16 : 0, &ids, &err) == FTC_OK) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= ftc_tokenizer_vocab_size(t)) abort();
        char *s = NULL;
        if (ftc_tokenizer_decode(t, ids.ids, ids.n, special, &s, &err) != FTC_OK) abort();
        free(s);
    }
    ids.n = 0;
    ftc_tokenizer_encode_pair(t, text, n / 2, text + n / 2, n - n / 2, (data[0] & 16) ? 10 : 0, &ids, &types, &err);
    /* the same bytes as ids (decode must take any ids) */
    size_t k = n / 4;
    int32_t *raw = malloc((k ? k : 1) * sizeof *raw);
    memcpy(raw, text, k * 4);
    for (size_t i = 0; i < k; i++) raw[i] = (int32_t)((uint32_t)raw[i] % 70000u) - 100;
    char *s = NULL;
    if (ftc_tokenizer_decode(t, raw, k, data[0] & 32, &s, &err) != FTC_OK) abort();
    free(s);
    free(raw);
    ftc_ids_free(&ids);
    ftc_ids_free(&types);
    return 0;
}

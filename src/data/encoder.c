/* The data layer's encoder backed by the model's tokenizer (include/ftc/tokenizer.h). */
#include "data_internal.h"

static ftc_status tok_encode(void *ctx, const char *text, size_t len, bool add_special, ftc_ids *out, ftc_err *err) {
    return ftc_tokenizer_encode((const ftc_tokenizer *)ctx, text, len, add_special, 0, out, err);
}

static ftc_status tok_decode(void *ctx, const int32_t *ids, size_t n, char **out, ftc_err *err) {
    return ftc_tokenizer_decode((const ftc_tokenizer *)ctx, ids, n, false, out, err);
}

static ftc_status tok_encode_pair(void *ctx, const char *a, size_t alen, const char *b, size_t blen, int max_len,
                                  ftc_ids *out, ftc_ids *type_ids, ftc_err *err) {
    return ftc_tokenizer_encode_pair((const ftc_tokenizer *)ctx, a, alen, b, blen, max_len, out, type_ids, err);
}

void ftc_data_encoder_from_tokenizer(const ftc_tokenizer *t, ftc_data_encoder *out) {
    ftc_special_ids sp = ftc_tokenizer_special(t);
    const char *bos = sp.bos >= 0 ? ftc_tokenizer_id_to_token(t, sp.bos) : NULL;
    const char *eos = sp.eos >= 0 ? ftc_tokenizer_id_to_token(t, sp.eos) : NULL;
    *out = (ftc_data_encoder){(void *)t, tok_encode, sp.bos, sp.eos, sp.pad, bos ? bos : "", eos ? eos : "", tok_decode, tok_encode_pair};
}

/* Tokenizers that give exactly Hugging Face's ids. Loaded from the files users have:
 * tokenizer.json (BPE byte-level / SentencePiece-style, WordPiece), GPT-2 vocab.json+merges.txt,
 * BERT vocab.txt (+ tokenizer_config.json do_lower_case). */
#ifndef FTC_TOKENIZER_H
#define FTC_TOKENIZER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ftc/status.h"

typedef struct ftc_tokenizer ftc_tokenizer;

/* dir: a model directory or one holding only tokenizer files. Prefers tokenizer.json. */
ftc_status ftc_tokenizer_load(const char *dir, ftc_tokenizer **out, ftc_err *err);
/* From a tokenizer.json text (tests, fuzzing). */
ftc_status ftc_tokenizer_from_json(const char *json, size_t len, const char *name_for_errors, ftc_tokenizer **out,
                                   ftc_err *err);
/* The older file sets only (GPT-2 vocab.json + merges.txt, or BERT vocab.txt + tokenizer_config.json
 * do_lower_case), even when tokenizer.json is present: tests compare both. */
ftc_status ftc_tokenizer_load_legacy(const char *dir, ftc_tokenizer **out, ftc_err *err);
void ftc_tokenizer_free(ftc_tokenizer *t);

typedef struct {
    int32_t *ids;
    size_t n, cap;
} ftc_ids;
void ftc_ids_free(ftc_ids *ids);

/* add_special: apply the post-processor as HF encode() does by default ([CLS] .. [SEP], <s> ..).
 * max_len > 0 truncates (keeping the special tokens). Appends nothing on error. text is UTF-8 of len bytes. */
ftc_status ftc_tokenizer_encode(const ftc_tokenizer *t, const char *text, size_t len, bool add_special, int max_len,
                                ftc_ids *out, ftc_err *err);
/* Batch: outs[i] receives the ids of texts[i] (lens[i] bytes), as ftc_tokenizer_encode, in chunks of 16 texts on
 * the library's pool (threads.h); n_threads == 1 encodes on the caller alone, any other value uses the pool as
 * ftc_threads_set sized it. On error nothing is appended anywhere and err names the (first) failing text's index. */
ftc_status ftc_tokenizer_encode_batch(const ftc_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                      bool add_special, int max_len, ftc_ids *outs, int n_threads, ftc_err *err);
/* Text pair (BERT: [CLS] a [SEP] b [SEP], token types 0/1); type_ids may be NULL. */
ftc_status ftc_tokenizer_encode_pair(const ftc_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                                     int max_len, ftc_ids *out, ftc_ids *type_ids, ftc_err *err);
/* Decodes ids as HF decode() does; returns a malloc'd NUL-terminated string in *out. */
ftc_status ftc_tokenizer_decode(const ftc_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                                ftc_err *err);

int ftc_tokenizer_vocab_size(const ftc_tokenizer *t);            /* including added tokens */
int32_t ftc_tokenizer_token_to_id(const ftc_tokenizer *t, const char *token); /* -1 if absent */
const char *ftc_tokenizer_id_to_token(const ftc_tokenizer *t, int32_t id); /* NULL if out of range */
bool ftc_tokenizer_is_special(const ftc_tokenizer *t, int32_t id);
/* Special ids, -1 when the tokenizer has none: bos/eos (<s>, </s>, <|endoftext|>), pad, unk, cls, sep, mask. */
typedef struct { int32_t bos, eos, pad, unk, cls, sep, mask; } ftc_special_ids;
ftc_special_ids ftc_tokenizer_special(const ftc_tokenizer *t);
#endif

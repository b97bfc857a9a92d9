/* Sentence embeddings and the no-training baseline: classify a text by the label of its nearest
 * training text (cosine of mean-pooled, L2-normalised encoder states, as sentence-transformers does). */
#ifndef FTC_RETRIEVAL_H
#define FTC_RETRIEVAL_H
#include <stddef.h>
#include "ftc/model.h"
#include "ftc/tokenizer.h"

/* Embeds n texts into out[n, hidden_size]: tokenized as the model's tokenizer does (special tokens added,
 * truncated to max_len), run through the model (ENCODE task) in batches of `batch`, mean-pooled over real
 * tokens and L2-normalised. The model must have been loaded with FTC_TASK_ENCODE. */
ftc_status ftc_embed_texts(ftc_model *m, const ftc_tokenizer *tok, const char *const *texts, size_t n, int max_len,
                           int batch, float *out, ftc_err *err);

/* For each of nq query embeddings, the index of the most similar of nk key embeddings (dot product of
 * normalised vectors = cosine; the lowest index wins a tie) and its similarity. */
void ftc_nearest(const float *queries, size_t nq, const float *keys, size_t nk, int dim, int32_t *best,
                 float *best_sim);
#endif

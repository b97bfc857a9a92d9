/* Shared inside the train layer only (not installed, not for embedders). */
#ifndef FTC_TRAIN_INTERNAL_H
#define FTC_TRAIN_INTERNAL_H
#include "ftc/train.h"

/* plan.c: the process's resident set now and at its peak (bytes; 0 where /proc is missing). */
int64_t ftc_plan_rss_now(void);
int64_t ftc_plan_rss_peak(void);
/* Fills p's memory figures for a prepared model whose activations for batch x seq_len take activation_bytes. */
void ftc_plan_memory(const ftc_model *m, int batch, int seq_len, int64_t activation_bytes, int64_t feature_cache_bytes,
                     ftc_train_plan *p);
/* FTC_E_INPUT with the figures and what to change when the planned peak does not fit in available memory. */
ftc_status ftc_plan_check_memory(const ftc_train_plan *p, ftc_err *err);
#endif

/* Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup
 * (LambdaLR factors; the scheduler is stepped after each optimizer step, so update k uses factor(k)). */
#include "ftc/train.h"
#include <math.h>

double ftc_schedule_factor(ftc_sched_kind kind, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    double rest = (double)(total - warmup > 1 ? total - warmup : 1);
    switch (kind) {
    case FTC_SCHED_LINEAR: {
        double f = (double)(total - step) / rest;
        return f > 0 ? f : 0;
    }
    case FTC_SCHED_COSINE: { /* num_cycles = 0.5: one half cosine from 1 down to 0 */
        double progress = (double)(step - warmup) / rest;
        double f = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * progress));
        return f > 0 ? f : 0;
    }
    case FTC_SCHED_CONSTANT: return 1.0;
    }
    return 1.0;
}

const char *ftc_sched_name(ftc_sched_kind kind) {
    switch (kind) {
    case FTC_SCHED_LINEAR: return "linear";
    case FTC_SCHED_COSINE: return "cosine";
    case FTC_SCHED_CONSTANT: return "constant";
    }
    return "?";
}

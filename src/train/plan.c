/* What a run needs before it runs (`ftc plan`, and the memory check of `ftc train`): the memory of a prepared
 * model (weights, gradients, AdamW moments, activations, feature cache) on top of what the process already
 * holds, against what the machine has available. The timings come from ftc_train_run's timing mode. */
#include "train_internal.h"
#include "ftc/model.h"
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* The "NAME: N kB" line of a /proc file, in bytes; 0 when the file or the line is not there. */
static int64_t proc_kb(const char *path, const char *line_format) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, line_format, &kb) == 1) break;
    fclose(f);
    return (int64_t)kb * 1024;
}

/* Resident set of this process now (VmRSS). */
int64_t ftc_plan_rss_now(void) { return proc_kb("/proc/self/status", "VmRSS: %lld kB"); }

int64_t ftc_plan_rss_peak(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)ru.ru_maxrss * 1024; /* Linux: kilobytes */
}

/* What the kernel can give without swapping (MemAvailable). */
static int64_t mem_available(void) { return proc_kb("/proc/meminfo", "MemAvailable: %lld kB"); }

void ftc_plan_memory(const ftc_model *m, int batch, int seq_len, int64_t activation_bytes, int64_t feature_cache_bytes,
                     ftc_train_plan *p) {
    int64_t trainable = ftc_model_count_params(m, true);
    p->total_params = ftc_model_count_params(m, false);
    p->trainable_params = trainable;
    p->weight_bytes = ftc_model_param_bytes(m);
    p->grad_bytes = 4 * trainable;
    p->optimizer_bytes = 8 * trainable;
    p->activation_bytes = activation_bytes;
    p->feature_cache_bytes = feature_cache_bytes;
    p->batch = batch;
    p->seq_len = seq_len;
    /* the weights are in the process already (loaded); gradients, moments and activations are not yet touched */
    p->base_rss_bytes = ftc_plan_rss_now();
    p->peak_bytes = p->base_rss_bytes + p->grad_bytes + p->optimizer_bytes + p->activation_bytes + feature_cache_bytes;
    p->available_bytes = mem_available();
}

static double gib(int64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

ftc_status ftc_plan_check_memory(const ftc_train_plan *p, ftc_err *err) {
    if (p->available_bytes <= 0) return FTC_OK;
    /* what the process holds is already taken from MemAvailable; the rest must still fit */
    int64_t more = p->peak_bytes - p->base_rss_bytes;
    if (more <= p->available_bytes) return FTC_OK;
    return ftc_errf(err, FTC_E_INPUT,
                    "the run needs about %.2f GiB at its peak (process now %.2f GiB, gradients %.2f, AdamW moments "
                    "%.2f, activations %.2f for batch %d x %d tokens%s) but the machine has %.2f GiB available: "
                    "lower --batch or --max-len, add --grad-checkpoint, train fewer weights (--method lora, "
                    "--base-dtype bf16|q8_0|q4_k), or pass --no-memory-check to try anyway (ftc plan shows the figures)",
                    gib(p->peak_bytes), gib(p->base_rss_bytes), gib(p->grad_bytes), gib(p->optimizer_bytes),
                    gib(p->activation_bytes), p->batch, p->seq_len, p->feature_cache_bytes ? ", feature cache" : "",
                    gib(p->available_bytes + p->base_rss_bytes));
}

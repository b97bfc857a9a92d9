/* Softmax cross-entropy over the vocabulary, ignoring rows whose target is negative (HF's -100). */
#include "ftc/ops.h"
#include "ftc/threads.h"
#include "vmath.h"
#include <math.h>

/* max over 16 lanes, then over the lanes: the same value as a running max (max is exact), but vectorised:
 * vm_select keeps the compare-and-pick branch-free (a ?: here is not if-converted under -ftrapping-math) */
VM_FORCE_INLINE float row_max_body(const float *row, int V) {
    float m[16];
    for (int j = 0; j < 16; j++) m[j] = row[0];
    int v = 0;
    for (; v + 16 <= V; v += 16)
        for (int j = 0; j < 16; j++) m[j] = vm_select(row[v + j] > m[j], row[v + j], m[j]);
    for (int j = 0; v + j < V; j++) m[j] = vm_select(row[v + j] > m[j], row[v + j], m[j]);
    float mx = m[0];
    for (int j = 1; j < 16; j++) mx = vm_select(m[j] > mx, m[j], mx);
    return mx;
}
static float row_max_generic(const float *row, int V) { return row_max_body(row, V); }
VM_AVX512_TARGET static float row_max_avx512(const float *row, int V) { return row_max_body(row, V); }
static float row_max(const float *row, int V) { return ftc_vm_use_avx512() ? row_max_avx512(row, V) : row_max_generic(row, V); }

/* log(sum_v exp(row[v])) with the max subtracted first; vectorised exp, summed in double */
static double row_logsumexp(const float *row, int V) {
    float mx = row_max(row, V);
    return mx + log(ftc_vm_exp_sum(NULL, row, mx, V));
}

enum { CHUNKS = 64 };

typedef struct {
    const float *logits;
    const int32_t *targets;
    float *dlogits;
    const double *nll; /* per-row losses already computed (ftc_cross_entropy_reduce), or NULL */
    double *nll_out;   /* per-row losses written (ftc_cross_entropy_rows) */
    double *part;
    int *cnt;
    int N, V, per;
    float g;
} ce_job;

static void ce_fwd_range(void *ctx, int64_t lo, int64_t hi) {
    const ce_job *j = ctx;
    for (int ch = (int)lo; ch < (int)hi; ch++) {
        for (int n = ch * j->per; n < (ch + 1) * j->per && n < j->N; n++) {
            if (j->targets[n] < 0) continue;
            if (j->nll) {
                j->part[ch] += j->nll[n];
            } else {
                const float *row = j->logits + (size_t)n * j->V;
                j->part[ch] += row_logsumexp(row, j->V) - row[j->targets[n]];
            }
            j->cnt[ch]++;
        }
    }
}

/* The mean over counted rows of per-row losses: rows fall into a fixed number of chunks summed in chunk
 * order, so the total does not depend on how many threads ran (a reduction in thread order would).
 * nll NULL: each row's loss computed from logits here. */
static float ce_mean(const float *logits, const double *nll, const int32_t *targets, int N, int V, int *n_counted) {
    double part[CHUNKS] = {0};
    int cnt[CHUNKS] = {0};
    int per = (N + CHUNKS - 1) / CHUNKS;
    if (per < 1) per = 1;
    ce_job j = {logits, targets, NULL, nll, NULL, part, cnt, N, V, per, 0.0f};
    ftc_parallel_range(CHUNKS, nll ? 0 : (long)N * V > 65536, ce_fwd_range, &j);
    double total = 0;
    int counted = 0;
    for (int ch = 0; ch < CHUNKS; ch++) { total += part[ch]; counted += cnt[ch]; }
    if (n_counted) *n_counted = counted;
    return counted ? (float)(total / counted) : 0.0f;
}

/* loss = mean over rows with targets[n] >= 0 of (logsumexp(logits[n,:]) - logits[n, targets[n]]) */
float ftc_cross_entropy_forward(const float *logits, const int32_t *targets, int N, int V, int *n_counted) {
    return ce_mean(logits, NULL, targets, N, V, n_counted);
}

static void ce_nll_range(void *ctx, int64_t lo, int64_t hi) {
    const ce_job *j = ctx;
    double *nll = j->nll_out;
    for (int n = (int)lo; n < (int)hi; n++) {
        const float *row = j->logits + (size_t)n * j->V;
        nll[n] = j->targets[n] < 0 ? 0.0 : row_logsumexp(row, j->V) - row[j->targets[n]];
    }
}

void ftc_cross_entropy_rows(double *nll, const float *logits, const int32_t *targets, int N, int V) {
    ce_job j = {logits, targets, NULL, NULL, nll, NULL, NULL, N, V, 0, 0.0f};
    ftc_parallel_range(N, (long)N * V > 65536, ce_nll_range, &j);
}

float ftc_cross_entropy_reduce(const double *nll, const int32_t *targets, int N, int *n_counted) {
    return ce_mean(NULL, nll, targets, N, 0, n_counted);
}

static void ce_bwd_range(void *ctx, int64_t lo, int64_t hi) {
    const ce_job *j = ctx;
    const float *logits = j->logits;
    const int32_t *targets = j->targets;
    int V = j->V;
    float g = j->g;
    for (int n = (int)lo; n < (int)hi; n++) {
        float *d = j->dlogits + (size_t)n * V;
        const float *row = logits + (size_t)n * V;
        if (targets[n] < 0) {
            for (int v = 0; v < V; v++) d[v] = 0.0f;
            continue;
        }
        /* softmax = exp(row - max) / sum: one pass of exponentials into d, then one scaling pass */
        float mx = row_max(row, V);
        float scale = (float)(g / ftc_vm_exp_sum(d, row, mx, V));
        for (int v = 0; v < V; v++) d[v] *= scale;
        d[targets[n]] -= g;
    }
}

/* dlogits[n,:] = (softmax(logits[n,:]) - onehot(targets[n])) * dloss / n_counted; 0 for ignored rows (written) */
void ftc_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float dloss) {
    int counted = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0;
    float g = counted ? dloss / (float)counted : 0.0f;
    ftc_cross_entropy_backward_rows(dlogits, logits, targets, N, V, g);
}

void ftc_cross_entropy_backward_rows(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float g) {
    ce_job j = {logits, targets, dlogits, NULL, NULL, NULL, NULL, N, V, 0, g};
    ftc_parallel_range(N, (long)N * V > 65536, ce_bwd_range, &j);
}

/* ---- R-Drop's consistency term (Liang et al. 2021) ----
 * Rows [0, P) and [P, 2P) of logits [2P, K] are two dropout passes over the same P examples; with p = softmax of
 * row i and q = softmax of row P + i, S_i = KL(p || q) + KL(q || p) = sum_k (p_k - q_k)(log p_k - log q_k).
 * The log-ratios in double from each row's row_logsumexp (K is a label count): no buffers. */
static bool pair_counted(const int32_t *targets, int i) { return !targets || targets[i] >= 0; }

double ftc_rdrop_kl_forward(const float *logits, const int32_t *targets, int P, int K, int *n_pairs) {
    double total = 0;
    int counted = 0;
    for (int i = 0; i < P; i++) {
        if (!pair_counted(targets, i)) continue;
        const float *a = logits + (size_t)i * K, *b = logits + (size_t)(P + i) * K;
        double la = row_logsumexp(a, K), lb = row_logsumexp(b, K), s = 0;
        for (int k = 0; k < K; k++) {
            double lpa = a[k] - la, lpb = b[k] - lb;
            s += (exp(lpa) - exp(lpb)) * (lpa - lpb);
        }
        total += s;
        counted++;
    }
    if (n_pairs) *n_pairs = counted;
    return counted ? total / counted : 0.0;
}

/* dS/da = p (d - E_p[d]) + p - q and dS/db = q (E_q[d] - d) + q - p, with d = log p - log q (the softmax's
 * Jacobian on each KL's log-ratio, plus the log's own term, which sums to p - q since p and q sum to 1). */
void ftc_rdrop_kl_backward(float *dlogits, const float *logits, const int32_t *targets, int P, int K, float dloss) {
    int counted = 0;
    for (int i = 0; i < P; i++) counted += pair_counted(targets, i);
    if (!counted) return;
    double g = (double)dloss / counted;
    for (int i = 0; i < P; i++) {
        if (!pair_counted(targets, i)) continue;
        const float *a = logits + (size_t)i * K, *b = logits + (size_t)(P + i) * K;
        float *da = dlogits + (size_t)i * K, *db = dlogits + (size_t)(P + i) * K;
        double la = row_logsumexp(a, K), lb = row_logsumexp(b, K), ep = 0, eq = 0;
        for (int k = 0; k < K; k++) {
            double lpa = a[k] - la, lpb = b[k] - lb, d = lpa - lpb;
            ep += exp(lpa) * d, eq += exp(lpb) * d;
        }
        for (int k = 0; k < K; k++) {
            double lpa = a[k] - la, lpb = b[k] - lb, d = lpa - lpb, p = exp(lpa), q = exp(lpb);
            da[k] += (float)(g * (p * (d - ep) + p - q));
            db[k] += (float)(g * (q * (eq - d) + q - p));
        }
    }
}

/* Decoding and prompt processing against the memory-bandwidth ceiling (issue 24).
 *   decode_bench MODEL [--bf16] [--base q8_0|q4_0] [--prompt 256] [--gen 64] [--batch 8] [--pp 256,1024] [--bw-mb 1024]
 *                [--kv f16|f32|q8_0] [--batch-only]
 * MODEL: a model directory (HF layout) or a .gguf file (converted through the ftc cache). --kv: the KV cache's type,
 * f16 by default (the CLI's default and llama-bench's), f32 the library's default (ftc_kv_cache_create), q8_0
 * llama.cpp's -ctk q8_0 -ctv q8_0 (Q8_0 blocks: 34 bytes per 32 values).
 * Prints, one line each:
 *   read bandwidth  a STREAM-like read of a buffer far larger than the caches (both threads, 4 streams each as a
 *                   decode tile reads 4 weight rows; best of 5; with AVX-512 also one stream a thread, as the zen4
 *                   skinny kernels read on AMD, and the better of the two)
 *   weights         bytes of weights one decoded token reads (every matmul weight in the form the matmuls read
 *                   it, the LM head included) and KV-cache bytes at the decode context
 *   prefill N       tokens/s of ftc_model_decode on N prompt tokens into an empty cache (last position's logits),
 *                   measured after a warm-up run of the same N, as llama-bench measures each test after one
 *                   and its CPU seconds (every thread; on a shared machine the steadier figure), an FNV-1a hash of
 *                   those logits bits (two builds that should agree bit for bit compare by it)
 *   decode          tokens/s of one new token at a time after --prompt tokens (--gen of them), the GB/s of weights
 *                   that implies and its share of the read bandwidth; the process's CPU ms per token (on a shared
 *                   machine, FTC_THREADS=1 and this figure compare two builds more steadily than tokens/s)
 *   batch B         ftc_model_decode_batch of B sequences (each after --prompt tokens): tokens/s over all of
 *                   them and the ratio to one sequence's decode, an FNV-1a hash of the last step's logits (all B)
 *   interleaved B   the batch's steps again, each right after one step of the single sequence, timed apart:
 *                   both tokens/s and their ratio, which (unlike the two lines above, minutes or seconds apart)
 *                   sees both in the same state of the machine
 * Benchmarks are short: run them once on a quiet machine and report the load average beside the figures. */
#include <math.h>
#include "ftc/threads.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ftc/gguf.h"
#include "ftc/infer.h"
#include "ftc/matmul.h"
#include "ftc/model.h"
#include "ftc/quant.h"
#include "model/model_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* CPU seconds of the whole process (every thread): on a shared machine, where wall time measures the other jobs
 * as much as ftc, the CPU time per token with one thread is the steadier figure to compare two builds by. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
enum { STREAMS = 4 };
__attribute__((target("avx512f"))) static float sum_avx512(const float *p, size_t n, int streams) {
    /* STREAMS sequential streams at once, as a decode tile reads several weight rows: one stream alone leaves a
     * core's memory-level parallelism unused (this Intel Xeon: 25 GB/s with one stream a thread, decode 31) */
    const size_t q = n / streams & ~(size_t)63;
    __m512 a[STREAMS];
    for (int s = 0; s < STREAMS; s++) a[s] = _mm512_setzero_ps();
    for (size_t i = 0; i < q; i += 64)
        for (int s = 0; s < streams; s++) {
            const float *r = p + s * q + i;
            a[s] = _mm512_add_ps(a[s], _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(r), _mm512_load_ps(r + 16)),
                                                   _mm512_add_ps(_mm512_load_ps(r + 32), _mm512_load_ps(r + 48))));
        }
    __m512 t = a[0];
    for (int s = 1; s < STREAMS; s++) t = _mm512_add_ps(t, a[s]);
    return _mm512_reduce_add_ps(t);
}
/* the same read with 256-bit loads, for AVX2 CPUs (two loads per cycle keep up with memory there too) */
__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n) {
    const size_t q = n / STREAMS & ~(size_t)63;
    __m256 a[STREAMS];
    for (int s = 0; s < STREAMS; s++) a[s] = _mm256_setzero_ps();
    for (size_t i = 0; i < q; i += 32)
        for (int s = 0; s < STREAMS; s++) {
            const float *r = p + s * q + i;
            a[s] = _mm256_add_ps(a[s], _mm256_add_ps(_mm256_add_ps(_mm256_load_ps(r), _mm256_load_ps(r + 8)),
                                                   _mm256_add_ps(_mm256_load_ps(r + 16), _mm256_load_ps(r + 24))));
        }
    __m256 t = a[0];
    for (int s = 1; s < STREAMS; s++) t = _mm256_add_ps(t, a[s]);
    float v[8];
    _mm256_storeu_ps(v, t);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
#endif

static float sum_plain(const float *p, size_t n) {
    float a[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += p[i + j];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

typedef struct {
    float *buf;
    size_t per;
    int avx, streams; /* AVX-512: streams a thread, 4 or 1 (AMD Zen 4 reads one faster: the skinny kernels' zen4) */
    float part[FTC_THREADS_MAX];
} bw_job;

static void fill_part(void *ctx, int t) {
    bw_job *j = ctx;
    for (size_t i = j->per * t; i < j->per * (t + 1); i++) j->buf[i] = (float)(i & 1023) * 1e-3f;
}

static void sum_part(void *ctx, int t) {
    bw_job *j = ctx;
#if defined(__x86_64__)
    j->part[t] = j->avx == 2 ? sum_avx512(j->buf + j->per * t, j->per, j->streams)
                 : j->avx  ? sum_avx2(j->buf + j->per * t, j->per)
                           : sum_plain(j->buf + j->per * t, j->per);
#else
    j->part[t] = sum_plain(j->buf + j->per * t, j->per);
#endif
}

/* GB/s reading bytes of floats with every pool thread, each its own contiguous part; best of 5 (AVX-512: best of
 * 5 with 4 streams a thread and 5 with one; *by_streams gets each). */
static double read_bandwidth(size_t bytes, double by_streams[2]) {
    int nt = ftc_threads();
    bw_job j = {NULL, ((bytes / sizeof(float)) / nt) & ~(size_t)(64 * STREAMS - 1), 0, STREAMS, {0}};
    if (posix_memalign((void **)&j.buf, 64, j.per * nt * sizeof(float))) return 0;
    ftc_parallel_for(nt, fill_part, &j);
#if defined(__x86_64__)
    __builtin_cpu_init();
    j.avx = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r < (j.avx == 2 ? 10 : 5); r++) { /* AVX-512: 5 with 4 streams a thread, 5 with one */
        j.streams = r < 5 ? STREAMS : 1;
        double t0 = now();
        ftc_parallel_for(nt, sum_part, &j);
        float tot = 0;
        for (int t = 0; t < nt; t++) tot += j.part[t];
        double dt = now() - t0;
        sink = tot;
        double gbs = (double)j.per * nt * 4 / dt / 1e9;
        if (gbs > best) best = gbs;
        if (gbs > by_streams[r >= 5]) by_streams[r >= 5] = gbs;
    }
    (void)sink;
    free(j.buf);
    return best;
}

/* bytes the matmuls read per decoded token: each matmul weight once, in the form its matmul reads */
static double weight_bytes(const ftc_model *m) {
    double b = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ftc_param *p = &m->params[i];
        if (!ftc_model_is_matmul_weight(m, i)) continue;
        if (p->data_q) b += (double)ftc_quant_row_bytes(p->qtype, p->numel / p->shape[0]) * (double)p->shape[0];
        else if (p->data_bf16 && (m->precision == FTC_PREC_BF16 || !p->data)) b += 2.0 * (double)p->numel;
        else b += 4.0 * (double)p->numel;
    }
    return b;
}

static void fill_ids(int32_t *ids, int n, int V, unsigned seed) {
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((seed + (unsigned)i * 2654435761u) % (unsigned)(V - 3)) + 3;
}

static int die(const char *what, const ftc_err *e) {
    fprintf(stderr, "decode_bench: %s: %s\n", what, e->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: decode_bench MODEL [--bf16] [--base q8_0|q4_0] [--prompt N] [--gen N] [--batch B] "
                        "[--pp N,N] [--bw-mb MB] [--kv f16|f32|q8_0] [--batch-only]\n");
        return 2;
    }
    const char *model = argv[1], *pp = "256,1024", *base = NULL;
    /* --batch-only: no one-sequence decode, the batch's steps 10 times over (from the same prompts): a profile of
     * the batch step */
    bool bf16 = false, batch_only = false;
    ftc_kv_type kvt = FTC_KV_F16; /* the CLI's default cache (and llama-bench's); --kv f32 for the library's */
    int prompt = 256, gen = 64, batch = 8, bw_mb = 1024; /* 4x the 260 MB L3 of the 2026-12-04 Xeon */
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--bf16")) bf16 = true;
        else if (!strcmp(argv[i], "--batch-only")) batch_only = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--base")) base = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--prompt")) prompt = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--gen")) gen = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--pp")) pp = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--bw-mb")) bw_mb = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--kv") && ftc_kv_type_parse(argv[i + 1], &kvt)) i++;
        else {
            fprintf(stderr, "decode_bench: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (prompt < 1 || gen < 1 || batch < 1 || batch > 64) {
        fprintf(stderr, "decode_bench: --prompt and --gen >= 1, --batch 1..64\n");
        return 2;
    }
    double by_streams[2] = {0, 0};
    double bw = bw_mb > 0 ? read_bandwidth((size_t)bw_mb << 20, by_streams) : 0;
    printf("read bandwidth: %.1f GB/s (%d MB, %d threads, best of 5", bw, bw_mb, ftc_threads());
    if (by_streams[1] > 0) printf("; 4 streams a thread %.1f, one %.1f", by_streams[0], by_streams[1]);
    printf(")\n");

    ftc_err e;
    char dir[8192];
    if (ftc_gguf_resolve(model, dir, sizeof dir, &e)) return die(model, &e);
    ftc_model *m;
    double t0 = now();
    ftc_status s;
    if (base) {
        int qt = !strcmp(base, "q8_0") ? FTC_GGML_Q8_0 : !strcmp(base, "q4_0") ? FTC_GGML_Q4_0
               : !strcmp(base, "q4_1") ? FTC_GGML_Q4_1 : -1;
        if (qt < 0) {
            fprintf(stderr, "decode_bench: --base q8_0|q4_0|q4_1\n");
            return 2;
        }
        s = ftc_model_load_quant_base(dir, FTC_TASK_CAUSAL_LM, qt, &m, &e);
    } else if (bf16) {
        s = ftc_model_load_bf16_base(dir, FTC_TASK_CAUSAL_LM, &m, &e);
    } else {
        s = ftc_model_load(dir, FTC_TASK_CAUSAL_LM, &m, &e);
    }
    if (s) return die(dir, &e);
    if (bf16 && ftc_model_set_precision(m, FTC_PREC_BF16, &e)) return die("bf16", &e);
    double wb = weight_bytes(m);
    int V = m->V;
    double kvb = 2.0 * m->L * (double)ftc_kv_type_bytes(kvt, (size_t)prompt * m->kvdim);
    printf("model: %s, %s%s, loaded in %.1f s; weights read per token %.1f MB; %s KV cache at %d positions %.1f MB; "
           "skinny products %s\n",
           model, bf16 ? "bf16" : "fp32", base ? base : "", now() - t0, wb / 1e6,
           ftc_kv_type_name(kvt),
           prompt, kvb / 1e6, ftc_matmul_skinny());

    int maxn = prompt;
    for (const char *q = pp; *q;) {
        int n = atoi(q);
        if (n > maxn) maxn = n;
        q = strchr(q, ',');
        if (!q) break;
        q++;
    }
    if (maxn < 16) maxn = 16; /* the warm-up's tokens */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(maxn + gen));
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)batch);
    if (!ids || !logits) return 1;
    ftc_kv_cache *c;
    if (ftc_kv_cache_create_typed(m, maxn + gen, kvt, &c, &e)) return die("cache", &e);
    /* warm-up: threads, page faults of the weights */
    fill_ids(ids, 16, V, 1);
    if (ftc_model_decode(m, c, ids, 16, logits, false, &e)) return die("decode", &e);

    for (const char *q = pp; *q;) {
        int n = atoi(q);
        if (n > 0) {
            fill_ids(ids, n, V, 7);
            /* warm-up of the same shape (llama-bench's): the first prompt of a size also faults in the scratch
             * rows and the cache pages it needs, which a server pays once, not per prompt */
            ftc_kv_cache_reset(c);
            if (ftc_model_decode(m, c, ids, n, logits, false, &e)) return die("prefill", &e);
            ftc_kv_cache_reset(c);
            double t = now(), cpu = cpu_now();
            if (ftc_model_decode(m, c, ids, n, logits, false, &e)) return die("prefill", &e);
            double dt = now() - t, dcpu = cpu_now() - cpu;
            uint64_t h = 1469598103934665603ull; /* FNV-1a of the last position's logits: two builds' bits compare */
            for (int i = 0; i < V; i++) {
                uint32_t w;
                memcpy(&w, &logits[i], 4);
                h = (h ^ w) * 1099511628211ull;
            }
            printf("prefill %d: %.1f tokens/s (%.3f s; %.3f CPU s, %.1f tokens per CPU s on all threads), logits "
                   "%016llx\n", n, n / dt, dt, dcpu, n / dcpu, (unsigned long long)h);
        }
        q = strchr(q, ',');
        if (!q) break;
        q++;
    }

    ftc_kv_cache_reset(c);
    fill_ids(ids, prompt + gen, V, 11);
    if (!batch_only && ftc_model_decode(m, c, ids, prompt, logits, false, &e)) return die("prompt", &e);
    double t = now(), cpu0 = cpu_now();
    for (int i = 0; i < (batch_only ? 0 : gen); i++)
        if (ftc_model_decode(m, c, ids + prompt + i, 1, logits, false, &e)) return die("decode", &e);
    double dt = now() - t, tps1 = gen / dt, cpu = (cpu_now() - cpu0) / gen;
    double gbs = tps1 * wb / 1e9;
    char share[64] = " (no read-bandwidth probe: --bw-mb 0)";
    if (bw > 0) snprintf(share, sizeof share, " = %.0f%% of read bandwidth", 100 * gbs / bw);
    if (!batch_only)
        printf("decode after %d: %.1f tokens/s (%d in %.3f s), weights %.1f GB/s%s; %.1f ms CPU per token (%.1f GB/s "
           "per CPU second)\n", prompt, tps1, gen, dt, gbs, share, cpu * 1e3, wb / cpu / 1e9);

    if (batch > 1) {
        ftc_kv_cache **cs = calloc((size_t)batch, sizeof *cs);
        int32_t *next = malloc(sizeof(int32_t) * (size_t)batch);
        if (!cs || !next) return 1;
        for (int b = 0; b < batch; b++) {
            if (ftc_kv_cache_create_typed(m, prompt + gen, kvt, &cs[b], &e)) return die("cache", &e);
            fill_ids(ids, prompt, V, 100 + (unsigned)b);
            if (ftc_model_decode(m, cs[b], ids, prompt, logits, false, &e)) return die("prompt", &e);
        }
        int steps = gen / 2 > 4 ? gen / 2 : 4, rounds = batch_only ? 10 : 1;
        t = now(), cpu0 = cpu_now();
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < steps; i++) {
                if (i == 0)
                    for (int b = 0; b < batch; b++) ftc_kv_cache_truncate(cs[b], prompt);
                fill_ids(next, batch, V, 1000 + (unsigned)i);
                if (ftc_model_decode_batch(m, cs, next, batch, logits, &e)) return die("batch", &e);
            }
        steps *= rounds;
        dt = now() - t;
        double tpsb = (double)steps * batch / dt, cpub = (cpu_now() - cpu0) / ((double)steps * batch);
        uint64_t h = 1469598103934665603ull; /* FNV-1a of the last step's logits, every sequence: bits compare */
        for (size_t i = 0; i < (size_t)V * batch; i++) {
            uint32_t w;
            memcpy(&w, &logits[i], 4);
            h = (h ^ w) * 1099511628211ull;
        }
        printf("batch %d: %.1f tokens/s (%d steps in %.3f s), %.2fx one sequence; %.3f ms CPU per token (%.2fx one "
               "sequence's), logits %016llx\n", batch, tpsb, steps, dt, tpsb / tps1, cpub * 1e3, cpu / cpub,
               (unsigned long long)h);
        if (!batch_only) {
            /* The same steps again, each batch step right after one step of the single sequence (both from
             * --prompt positions on): the two share whatever the machine does meanwhile (a VM whose memory speed
             * changes within seconds gave single runs of either in different states), so their ratio holds */
            double t1 = 0, tb = 0;
            ftc_kv_cache_truncate(c, prompt);
            for (int b = 0; b < batch; b++) ftc_kv_cache_truncate(cs[b], prompt);
            for (int i = 0; i < steps / rounds; i++) {
                double a = now();
                if (ftc_model_decode(m, c, ids + prompt + i, 1, logits, false, &e)) return die("decode", &e);
                double z = now();
                fill_ids(next, batch, V, 1000 + (unsigned)i);
                if (ftc_model_decode_batch(m, cs, next, batch, logits, &e)) return die("batch", &e);
                t1 += z - a, tb += now() - z;
            }
            const int n = steps / rounds;
            printf("interleaved %d: one sequence %.1f tokens/s, batch of %d %.1f tokens/s (%d steps each, one "
                   "sequence's step then the batch's): %.2fx one sequence\n", batch, n / t1, batch, n * batch / tb, n,
                   (n * batch / tb) / (n / t1));
        }
        for (int b = 0; b < batch; b++) ftc_kv_cache_free(cs[b]);
        free(cs), free(next);
    }
    ftc_kv_cache_free(c);
    ftc_model_free(m);
    free(ids), free(logits);
    return 0;
}

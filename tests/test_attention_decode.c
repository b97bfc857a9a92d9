/* ftc_attention_decode_forward against ftc_attention_forward (causal) on the whole sequence: feeding the sequence
 * in chunks (a prefill, then single tokens or uneven chunks) through a KV cache gives the same output rows and
 * probabilities within 1e-5, for multi-head, grouped-query and multi-query attention, head dims that are and
 * are not multiples of 8, batch > 1 and a cache with spare capacity (Tcap > T). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ftc/base.h"
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "ftc/threads.h"
#include "kernels/cpu/ops_internal.h" /* ftc_attention_decode_set_lanes */

static void fill(float *x, size_t n, ftc_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(ftc_rng_uniform(r) * 4.0 - 2.0);
}

/* S sequences' caches for the seqs functions: keys of sequence s at kv + s T ks, values at kv + (S + s) T ks (the
 * same as a [B = S, Tcap = T] cache for the batched ones), kh the same as halves; sequence s holds T - shorter x s
 * positions; q: q_floats queries. f16_values: kv holds the halves' values (widened exactly), so f32 and f16 caches
 * hold the same numbers. */
enum { MAX_SEQS = 8 };
typedef struct {
    float *q, *kv;
    uint16_t *kh;
    const float *kc[MAX_SEQS], *vc[MAX_SEQS];
    const uint16_t *khc[MAX_SEQS], *vhc[MAX_SEQS];
    int len[MAX_SEQS];
} seq_caches;

static void seq_caches_make(seq_caches *c, int S, int T, size_t ks, size_t q_floats, int shorter, bool f16_values,
                            ftc_rng *r) {
    assert_true(S <= MAX_SEQS);
    const size_t nkv = 2 * (size_t)S * T * ks;
    c->q = malloc(sizeof(float) * q_floats), c->kv = malloc(sizeof(float) * nkv), c->kh = malloc(sizeof(uint16_t) * nkv);
    assert_true(c->q && c->kv && c->kh);
    fill(c->q, q_floats, r), fill(c->kv, nkv, r);
    for (size_t i = 0; i < nkv; i++) {
        c->kh[i] = ftc_f32_to_f16(c->kv[i]);
        if (f16_values) c->kv[i] = ftc_f16_to_f32(c->kh[i]);
    }
    for (int s = 0; s < S; s++) {
        c->kc[s] = c->kv + (size_t)s * T * ks, c->vc[s] = c->kv + ((size_t)S + s) * T * ks;
        c->khc[s] = c->kh + (size_t)s * T * ks, c->vhc[s] = c->kh + ((size_t)S + s) * T * ks;
        c->len[s] = T - shorter * s;
    }
}

static void seq_caches_free(seq_caches *c) { free(c->q), free(c->kv), free(c->kh); }

/* chunks: sizes of the successive decode calls, summing to T */
static double check(int B, int T, int H, int Hkv, int D, const int *chunks, int n_chunks) {
    ftc_rng r;
    ftc_rng_seed(&r, (uint64_t)(B * 1000 + T * 100 + H * 10 + Hkv + D));
    int Tcap = T + 5;
    size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    float *q = malloc(sizeof(float) * B * T * qs), *k = malloc(sizeof(float) * B * T * ks);
    float *v = malloc(sizeof(float) * B * T * ks), *out = malloc(sizeof(float) * B * T * qs);
    float *att = malloc(sizeof(float) * B * H * T * T);
    fill(q, (size_t)B * T * qs, &r), fill(k, (size_t)B * T * ks, &r), fill(v, (size_t)B * T * ks, &r);
    ftc_attention_forward(out, att, q, k, v, NULL, B, T, H, Hkv, D, true);

    float *kc = malloc(sizeof(float) * B * Tcap * ks), *vc = malloc(sizeof(float) * B * Tcap * ks);
    for (size_t i = 0; i < (size_t)B * Tcap * ks; i++) kc[i] = vc[i] = NAN; /* unwritten rows must not be read */
    float *qn = malloc(sizeof(float) * B * T * qs), *on = malloc(sizeof(float) * B * T * qs);
    float *an = malloc(sizeof(float) * B * H * T * T);
    double worst = 0;
    int done = 0;
    for (int c = 0; c < n_chunks; c++) {
        int Tn = chunks[c], Tk = done + Tn;
        for (int b = 0; b < B; b++)
            for (int t = done; t < Tk; t++) {
                memcpy(kc + ((size_t)b * Tcap + t) * ks, k + ((size_t)b * T + t) * ks, ks * sizeof(float));
                memcpy(vc + ((size_t)b * Tcap + t) * ks, v + ((size_t)b * T + t) * ks, ks * sizeof(float));
                memcpy(qn + ((size_t)b * Tn + (t - done)) * qs, q + ((size_t)b * T + t) * qs, qs * sizeof(float));
            }
        ftc_attention_decode_forward(on, an, qn, kc, vc, B, Tn, Tk, Tcap, H, Hkv, D);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Tn; i++) {
                const float *ref = out + ((size_t)b * T + done + i) * qs, *got = on + ((size_t)b * Tn + i) * qs;
                for (size_t d = 0; d < qs; d++) {
                    double e = fabs((double)ref[d] - got[d]);
                    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
                }
                for (int h = 0; h < H; h++) {
                    const float *pr = att + (((size_t)b * H + h) * T + done + i) * T;
                    const float *pg = an + (((size_t)b * H + h) * Tn + i) * Tk;
                    for (int j = 0; j < Tk; j++) {
                        double e = fabs((double)pr[j] - pg[j]);
                        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
                    }
                    for (int j = Tk; j < T; j++) assert_true(pr[j] == 0.0f); /* the future was hidden there too */
                }
            }
        done = Tk;
    }
    assert_int_equal(done, T);
    free(q), free(k), free(v), free(out), free(att), free(kc), free(vc), free(qn), free(on), free(an);
    return worst;
}

static void test_single_tokens_gqa(void **state) {
    (void)state;
    int ones[13];
    for (int i = 0; i < 13; i++) ones[i] = 1;
    assert_true(check(2, 13, 6, 2, 8, ones, 13) <= 1e-5);
    assert_true(check(1, 13, 4, 1, 12, ones, 13) <= 1e-5); /* multi-query, D not a multiple of 8 */
}

static void test_prefill_then_steps(void **state) {
    (void)state;
    int chunks[] = {7, 1, 1, 3, 1, 4};
    assert_true(check(2, 17, 4, 4, 16, chunks, 6) <= 1e-5); /* multi-head */
    assert_true(check(3, 17, 8, 2, 5, chunks, 6) <= 1e-5);
    int whole[] = {17};
    assert_true(check(1, 17, 8, 4, 8, whole, 1) <= 1e-5); /* one chunk = the full causal attention */
}

/* Large enough that the pool path runs (B*H*Tn*Tk*D > 65536: ftc_parallel_for over sequence x head). */
static void test_parallel_sizes(void **state) {
    (void)state;
    int chunks[] = {60, 1, 1, 2};
    assert_true(check(2, 64, 8, 2, 32, chunks, 4) <= 1e-5);
}

/* The check itself can fail: a cache row from the wrong batch entry changes the output. */
static void test_detects_wrong_keys(void **state) {
    (void)state;
    int B = 1, T = 4, H = 2, Hkv = 1, D = 8;
    float q[4 * 16], k[4 * 8], v[4 * 8], out[4 * 16], att[2 * 16], on[16], an[2 * 4];
    ftc_rng r;
    ftc_rng_seed(&r, 3);
    fill(q, sizeof q / sizeof *q, &r), fill(k, 32, &r), fill(v, 32, &r);
    ftc_attention_forward(out, att, q, k, v, NULL, B, T, H, Hkv, D, true);
    float kc[32], vc[32];
    memcpy(kc, k, sizeof kc), memcpy(vc, v, sizeof vc);
    kc[0] += 1.0f; /* corrupt position 0's key */
    ftc_attention_decode_forward(on, an, q + 3 * 16, kc, vc, B, 1, T, T, H, Hkv, D);
    double e = 0;
    for (int d = 0; d < 16; d++) e = fmax(e, fabs(out[3 * 16 + d] - on[d]));
    assert_true(e > 1e-4);
}


/* Batched decoding (ftc_attention_decode_seqs_forward): a batch of S >= 4 sequences takes a sequence per job (all
 * its heads over its cached rows in one pass), fewer a key/value head's group of query heads or one head per job.
 * Every grouping computes each head with the same operations in the same order, so each sequence's output and
 * probabilities have the same bits in a batch of 6, of 2 and alone, on every path; and the portable copy
 * ("generic") has the bits of the AVX2 copy, which compiles the same portable exp (the AVX-512 path's exp16 fuses
 * multiply-adds, so there only the grouping is bit-exact; its closeness to the full rows is test_single_tokens_gqa's).
 * Lengths differ per sequence, D = 64 (the value loop's 16/32-channel blocks) and D = 40 (a tail
 * of 8 channels), GQA groups of 1 to 6 query heads (the value loop takes 4 heads at a time, then the rest). */
static void test_seqs_same_bits_any_grouping(void **state) {
    (void)state;
    static const int shapes[][3] = {{9, 3, 64}, {12, 2, 40}, {8, 8, 64}, {5, 1, 24}, {16, 4, 64}};
    const char *paths[] = {"auto", "avx2", "generic"}; /* avx2 then generic: the cross-path check compares them */
    for (int si = 0; si < 5; si++) {
        const int H = shapes[si][0], Hkv = shapes[si][1], D = shapes[si][2], S = 6, T = 70;
        ftc_rng r;
        ftc_rng_seed(&r, (uint64_t)(100 + si));
        size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
        seq_caches c;
        seq_caches_make(&c, S, T, ks, (size_t)S * qs, 0, false, &r);
        const float *q = c.q, *const *kc = c.kc, *const *vc = c.vc;
        int *len = c.len;
        float *ref = malloc(sizeof(float) * S * qs), *got = malloc(sizeof(float) * S * qs);
        float *aref = malloc(sizeof(float) * S * H * T), *agot = malloc(sizeof(float) * S * H * T);
        assert_true(ref && got && aref && agot);
        float *ar[6], *ag[6];
        for (int s = 0; s < S; s++) {
            ar[s] = aref + (size_t)s * H * T, ag[s] = agot + (size_t)s * H * T;
            len[s] = T - 9 * (s * 4 % 6); /* 70, 34, 52, 70, 34, 52: the jobs run longest first */
        }
        for (int p = 0; p < 3; p++) {
            assert_true(ftc_matmul_set_backend(paths[p]));
            for (int s = 0; s < S; s++) /* each alone: a head per job (a group per job where Hkv >= 8) */
                ftc_attention_decode_seqs_forward(ref + s * qs, &ar[s], q + s * qs, &kc[s], &vc[s], &len[s], 1, H,
                                                  Hkv, D);
            if (p == 2) { /* the portable copy gave the AVX2 copy's bits (got holds its batch of 6) */
                assert_memory_equal(ref, got, sizeof(float) * S * qs);
                for (int s = 0; s < S; s++) assert_memory_equal(ar[s], ag[s], sizeof(float) * H * len[s]);
            }
            for (int n = 6; n >= 2; n -= 4) { /* a batch of 6: a sequence per job; of 2: a group per job */
                memset(got, 0xff, sizeof(float) * S * qs);
                ftc_attention_decode_seqs_forward(got, ag, q, kc, vc, len, n, H, Hkv, D);
                assert_memory_equal(ref, got, sizeof(float) * n * qs);
                for (int s = 0; s < n; s++) assert_memory_equal(ar[s], ag[s], sizeof(float) * H * len[s]);
            }
            ftc_attention_decode_seqs_forward(got, ag, q, kc, vc, len, S, H, Hkv, D); /* for the next path */
        }
        ftc_matmul_set_backend("auto");
        seq_caches_free(&c), free(ref), free(got), free(aref), free(agot);
    }
}

/* An f16 cache (issue 24): ftc_attention_decode_forward_f16 / _seqs_forward_f16 give, bit for bit, the f32
 * functions' outputs and probabilities on f32 caches holding the same halves (widened exactly), alone and in a
 * batch, on every path (auto, avx2, generic), with lengths past the 32-key blocks the halves are widened in (T = 70,
 * so the value sums continue over three blocks) and D = 40 (channel tails); few queries (Tn = 3) too, and a prompt
 * chunk's 10 queries (rows here, the GEMM on the f32 cache) within 1e-5. The widening matches the scalar
 * conversion on every non-NaN half. */
static void test_f16_cache_same_bits(void **state) {
    (void)state;
    float *all = malloc(sizeof(float) * 65536);
    uint16_t *hs = malloc(sizeof(uint16_t) * 65536);
    assert_true(all && hs);
    for (int i = 0; i < 65536; i++) hs[i] = (uint16_t)i;
    ftc_f16_to_f32_n(hs, all, 65536);
    for (int i = 0; i < 65536; i++) {
        float ref = ftc_f16_to_f32((uint16_t)i);
        if (!isnan(ref)) assert_memory_equal(&ref, &all[i], sizeof ref);
        else assert_true(isnan(all[i]));
    }
    free(all), free(hs);
    static const int shapes[][3] = {{9, 3, 64}, {12, 2, 40}, {8, 8, 64}, {5, 1, 24}, {16, 4, 64}};
    const char *paths[] = {"auto", "avx2", "generic"};
    for (int si = 0; si < 5; si++) {
        const int H = shapes[si][0], Hkv = shapes[si][1], D = shapes[si][2], S = 6, T = 70;
        ftc_rng r;
        ftc_rng_seed(&r, (uint64_t)(200 + si));
        size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
        seq_caches c;
        seq_caches_make(&c, S, T, ks, (size_t)S * 10 * qs, 9, true, &r);
        const float *q = c.q, *kv = c.kv;
        const uint16_t *kh = c.kh;
        const int *len = c.len;
        float *ref = malloc(sizeof(float) * S * 10 * qs), *got = malloc(sizeof(float) * S * 10 * qs);
        float *aref = malloc(sizeof(float) * S * H * T * 10), *agot = malloc(sizeof(float) * S * H * T * 10);
        assert_true(ref && got && aref && agot);
        float *ar[6], *ag[6];
        for (int s = 0; s < S; s++) ar[s] = aref + (size_t)s * H * T, ag[s] = agot + (size_t)s * H * T;
        for (int p = 0; p < 3; p++) {
            assert_true(ftc_matmul_set_backend(paths[p]));
            for (int n = 6; n >= 1; n -= n == 6 ? 4 : 1) { /* a sequence per job, a group per job, a head per job */
                ftc_attention_decode_seqs_forward(ref, ar, q, c.kc, c.vc, len, n, H, Hkv, D);
                memset(got, 0xff, sizeof(float) * S * qs);
                ftc_attention_decode_seqs_forward_f16(got, ag, q, c.khc, c.vhc, len, n, H, Hkv, D);
                assert_memory_equal(ref, got, sizeof(float) * n * qs);
                for (int s = 0; s < n; s++) assert_memory_equal(ar[s], ag[s], sizeof(float) * H * len[s]);
            }
            /* B = 2 sequences of a [B, Tcap = T] cache, the last Tn of Tk = 61 positions */
            for (int Tn = 1; Tn <= 10; Tn += Tn == 3 ? 7 : 2) {
                const int Tk = 61;
                ftc_attention_decode_forward(ref, aref, q, kv, kv + (size_t)S * T * ks, 2, Tn, Tk, T, H, Hkv, D);
                ftc_attention_decode_forward_f16(got, agot, q, kh, kh + (size_t)S * T * ks, 2, Tn, Tk, T, H, Hkv, D);
                if (Tn < 8) {
                    assert_memory_equal(ref, got, sizeof(float) * 2 * Tn * qs);
                    assert_memory_equal(aref, agot, sizeof(float) * 2 * H * Tn * Tk);
                } else {
                    double worst = 0;
                    for (size_t i = 0; i < 2 * (size_t)Tn * qs; i++) {
                        double d = fabs((double)ref[i] - got[i]);
                        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
                    }
                    assert_true(worst < 1e-5);
                }
            }
        }
        ftc_matmul_set_backend("auto");
        seq_caches_free(&c), free(ref), free(got), free(aref), free(agot);
    }
}

/* ftc_attention_decode_seqs_forward_pre (a batch step's RoPE and cache store in the attention pass): pre runs once
 * for every sequence and before its attention reads the query and the cache (it rewrites both: the query halved,
 * the last cached key/value row new), so the outputs are the plain function's on the rewritten state; f32 and f16
 * caches, a sequence per job (S = 6: pre inside the jobs) and a group per job (S = 2: pre before the pass), 1 and 2
 * threads. */
typedef struct {
    float *q, *kv;
    uint16_t *kh;
    const float *q0, *knew;
    const int *len;
    size_t qs, ks;
    int T, S, calls[MAX_SEQS];
    bool f16;
} pre_check;

static void pre_row(void *ctx, int s) {
    pre_check *p = ctx;
    p->calls[s]++;
    for (size_t i = 0; i < p->qs; i++) p->q[s * p->qs + i] = 0.5f * p->q0[s * p->qs + i];
    const size_t k_at = ((size_t)s * p->T + p->len[s] - 1) * p->ks, v_at = ((size_t)(p->S + s) * p->T + p->len[s] - 1) * p->ks;
    for (size_t i = 0; i < p->ks; i++) {
        const float k = p->knew[s * p->ks + i], v = -0.75f * k;
        if (p->f16) p->kh[k_at + i] = ftc_f32_to_f16(k), p->kh[v_at + i] = ftc_f32_to_f16(v);
        else p->kv[k_at + i] = k, p->kv[v_at + i] = v;
    }
}

static void test_seqs_pre_runs_first(void **state) {
    (void)state;
    const int H = 9, Hkv = 3, D = 64, S = 6, T = 70;
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    const int threads0 = ftc_threads();
    ftc_rng r;
    ftc_rng_seed(&r, 300);
    seq_caches c;
    seq_caches_make(&c, S, T, ks, (size_t)S * qs, 7, true, &r);
    float *q0 = malloc(sizeof(float) * S * qs), *knew = malloc(sizeof(float) * S * ks);
    float *ref = malloc(sizeof(float) * S * qs), *got = malloc(sizeof(float) * S * qs);
    float *aref = malloc(sizeof(float) * S * H * T), *agot = malloc(sizeof(float) * S * H * T), *ar[6], *ag[6];
    assert_true(q0 && knew && ref && got && aref && agot);
    memcpy(q0, c.q, sizeof(float) * S * qs);
    fill(knew, (size_t)S * ks, &r);
    for (int s = 0; s < S; s++) ar[s] = aref + (size_t)s * H * T, ag[s] = agot + (size_t)s * H * T;
    for (int th = 1; th <= 2; th++) {
        ftc_threads_set(th);
        for (int f16 = 0; f16 <= 1; f16++)
            for (int n = 6; n >= 2; n -= 4) {
                for (int s = 0; s < n; s++) /* a stale state: pre must replace it before the attention reads it */
                    for (size_t i = 0; i < qs; i++) c.q[s * qs + i] = 3.0f * q0[s * qs + i];
                pre_check p = {c.q, c.kv, c.kh, q0, knew, c.len, qs, ks, T, S, {0}, f16};
                const void *kc[6], *vc[6];
                for (int s = 0; s < S; s++)
                    kc[s] = f16 ? (const void *)c.khc[s] : (const void *)c.kc[s],
                    vc[s] = f16 ? (const void *)c.vhc[s] : (const void *)c.vc[s];
                memset(got, 0xff, sizeof(float) * S * qs);
                ftc_attention_decode_seqs_forward_pre(got, ag, c.q, kc, vc, f16 ? FTC_KV_F16 : FTC_KV_F32, c.len, n, H, Hkv, D, pre_row, &p);
                for (int s = 0; s < S; s++) assert_int_equal(p.calls[s], s < n ? 1 : 0);
                if (f16)
                    ftc_attention_decode_seqs_forward_f16(ref, ar, c.q, c.khc, c.vhc, c.len, n, H, Hkv, D);
                else
                    ftc_attention_decode_seqs_forward(ref, ar, c.q, c.kc, c.vc, c.len, n, H, Hkv, D);
                assert_memory_equal(ref, got, sizeof(float) * n * qs);
                for (int s = 0; s < n; s++) assert_memory_equal(ar[s], ag[s], sizeof(float) * H * c.len[s]);
                /* the next round's stale rows */
                for (int s = 0; s < S; s++)
                    for (size_t i = 0; i < ks; i++) {
                        const size_t k_at = ((size_t)s * T + c.len[s] - 1) * ks + i;
                        c.kv[k_at] = 1.5f, c.kh[k_at] = ftc_f32_to_f16(1.5f);
                    }
            }
    }
    ftc_threads_set(threads0);
    seq_caches_free(&c), free(q0), free(knew), free(ref), free(got), free(aref), free(agot);
}

/* AVX-512 (issue 24): the rows with the keys in lanes (two keys a zmm, a shuffle tree for 16 keys' sums) give the
 * per-key rows' outputs and probabilities bit for bit, on f32 and f16 caches, alone (a group per job) and in a
 * batch (a sequence per job), Tn = 1 and 3, lengths that end inside a 16-key block and on an odd key (a pair's
 * second key past the end), D = 64, 128 and 48 (64-channel value blocks, 16-channel tails), group sizes 1 to 6.
 * Elsewhere (no AVX-512) both switches take the same rows and the test compares them with themselves. */
static void test_lanes_same_bits(void **state) {
    (void)state;
    /* query heads a key/value head: 3, 4 (3 + 1), 1, 6 (3 + 3), 6, 5 (3 + 2) */
    static const int shapes[][3] = {{9, 3, 64}, {8, 2, 128}, {4, 4, 16}, {6, 1, 48}, {12, 2, 64}, {10, 2, 32}};
    for (int si = 0; si < 6; si++) {
        const int H = shapes[si][0], Hkv = shapes[si][1], D = shapes[si][2], S = 5, T = 77;
        ftc_rng r;
        ftc_rng_seed(&r, (uint64_t)(300 + si));
        size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
        seq_caches c;
        seq_caches_make(&c, S, T, ks, (size_t)S * 3 * qs, 13, false, &r); /* lengths 77, 64, 51, 38, 25 */
        const float *q = c.q, *kv = c.kv;
        const uint16_t *kh = c.kh;
        const int *len = c.len;
        float *out[2], *att[2];
        for (int l = 0; l < 2; l++) {
            out[l] = malloc(sizeof(float) * S * 3 * qs), att[l] = malloc(sizeof(float) * S * H * 3 * T);
            assert_true(out[l] && att[l]);
        }
        float *as[2][5];
        for (int s = 0; s < S; s++)
            for (int l = 0; l < 2; l++) as[l][s] = att[l] + (size_t)s * H * T;
        for (int half = 0; half < 2; half++)
            for (int n = 5; n >= 1; n -= 4) { /* a sequence per job; one sequence: a group per job */
                for (int l = 0; l < 2; l++) {
                    ftc_attention_decode_set_lanes(l == 1);
                    memset(out[l], 0xff, sizeof(float) * S * qs);
                    if (half) ftc_attention_decode_seqs_forward_f16(out[l], as[l], q, c.khc, c.vhc, len, n, H, Hkv, D);
                    else ftc_attention_decode_seqs_forward(out[l], as[l], q, c.kc, c.vc, len, n, H, Hkv, D);
                }
                assert_memory_equal(out[0], out[1], sizeof(float) * n * qs);
                for (int s = 0; s < n; s++) assert_memory_equal(as[0][s], as[1][s], sizeof(float) * H * len[s]);
                for (int Tn = 1; Tn <= 3; Tn += 2) /* B = n sequences of a [B, Tcap = T] cache, Tk = 61 or 60 */
                    for (int Tk = 61; Tk >= 60; Tk--) {
                        for (int l = 0; l < 2; l++) {
                            ftc_attention_decode_set_lanes(l == 1);
                            memset(out[l], 0xff, sizeof(float) * n * Tn * qs);
                            if (half)
                                ftc_attention_decode_forward_f16(out[l], att[l], q, kh, kh + (size_t)S * T * ks, n, Tn,
                                                                 Tk, T, H, Hkv, D);
                            else
                                ftc_attention_decode_forward(out[l], att[l], q, kv, kv + (size_t)S * T * ks, n, Tn, Tk,
                                                             T, H, Hkv, D);
                        }
                        assert_memory_equal(out[0], out[1], sizeof(float) * n * Tn * qs);
                        assert_memory_equal(att[0], att[1], sizeof(float) * n * H * Tn * Tk);
                    }
            }
        ftc_attention_decode_set_lanes(true);
        seq_caches_free(&c);
        for (int l = 0; l < 2; l++) free(out[l]), free(att[l]);
    }
}

/* ftc_f32_to_f16_n (the f16 cache's stores: vcvtps2ph under "auto" / "avx2" where the CPU has it) gives the halves
 * of ftc_f32_to_f16 on every class: both signs and all 256 exponents (f32 zeros and subnormals, half subnormals and
 * the smallest ones' rounding, normals, overflow past 65504 / rounding up to infinity, infinities, NaNs with and
 * without payload, signalling ones) with mantissas at and around each rounding tie, even and odd, and random ones;
 * lengths with vector tails. (All 2^32 floats were compared once: no difference.) */
static void test_f32_to_f16_same_halves(void **state) {
    (void)state;
    const char *paths[] = {"generic", "avx2", "auto"};
    enum { NM = 4 * 24 * 3 + 400 + 5 };
    static uint32_t man[NM];
    int nm = 0;
    ftc_rng r;
    ftc_rng_seed(&r, 5);
    for (int b = 0; b < 24; b++) { /* around the tie of a rounding at bit b, with the kept bit even and odd */
        const uint32_t lo[3] = {(1u << b) - 1, 1u << b, (1u << b) + 1};
        const uint32_t hi[4] = {0, 2u << b, 0x7fffffu & ~((2u << b) - 1), 0x7fffffu & ~((4u << b) - 1)};
        for (int a = 0; a < 4; a++)
            for (int l = 0; l < 3; l++) man[nm++] = (hi[a] | lo[l]) & 0x7fffffu;
    }
    man[nm++] = 0, man[nm++] = 0x7fffffu, man[nm++] = 0x400000u, man[nm++] = 0x3fffffu, man[nm++] = 1;
    while (nm < NM) man[nm++] = (uint32_t)(ftc_rng_uniform(&r) * 8388608.0) & 0x7fffffu;
    const size_t n = (size_t)2 * 256 * NM;
    float *x = malloc(n * sizeof(float));
    uint16_t *h = malloc(n * sizeof(uint16_t));
    assert_non_null(x), assert_non_null(h);
    size_t k = 0;
    for (uint32_t sgn = 0; sgn < 2; sgn++)
        for (uint32_t e = 0; e < 256; e++)
            for (int m = 0; m < NM; m++) {
                uint32_t u = sgn << 31 | e << 23 | man[m];
                memcpy(&x[k++], &u, 4);
            }
    for (int p = 0; p < 3; p++) {
        if (!ftc_matmul_set_backend(paths[p])) continue;
        const size_t lens[] = {n, n - 7, 13};
        for (int li = 0; li < 3; li++) {
            memset(h, 0xa5, n * sizeof(uint16_t));
            ftc_f32_to_f16_n(x + (n - lens[li]), h, lens[li]);
            for (size_t i = 0; i < lens[li]; i++) {
                uint16_t want = ftc_f32_to_f16(x[n - lens[li] + i]);
                if (h[i] != want) {
                    uint32_t u;
                    memcpy(&u, &x[n - lens[li] + i], 4);
                    fail_msg("%s: f32 %08x -> half %04x, ftc_f32_to_f16 %04x", paths[p], u, h[i], want);
                }
            }
        }
    }
    ftc_matmul_set_backend("auto");
    free(x), free(h);
}

/* A Q8_0 cache (issue 24): each cached row of S x T rows [Hkv * D] quantized to Q8_0 blocks (ftc_quantize_row) */
static void *q8_rows(const float *x, size_t rows, size_t ks) {
    assert_true(ks % 32 == 0);
    ftc_block_q8_0 *b = malloc(rows * ks / 32 * sizeof *b);
    assert_true(b != NULL);
    ftc_quantize_row(FTC_GGML_Q8_0, x, b, (int64_t)(rows * ks));
    return b;
}

/* ftc_attention_decode_forward_q8_0 / _seqs_forward_q8_0. Where D is a multiple of 32 the scores come from the
 * heads' queries quantized to 8 bits (integer block dots, llama.cpp's way; the values decoded as d * q): the AVX-512
 * VNNI lanes rows give the portable rows' bits (their scalar reference, with the lanes switched off: the same softmax
 * exp), and so does the AVX2 copy with FTC_MATMUL=generic's (whose exp is the portable one), alone and in a batch (a sequence, a group or a head per job) and for a few
 * queries (Tn = 1, 3) and a prompt chunk's 10 (rows here). Elsewhere (D = 40, 48, 8: heads that straddle or share
 * blocks, the GPT-2 fixture's shape) the values are decoded for the scores too, so the outputs and probabilities are,
 * bit for bit, the f32 functions' on f32 caches holding the dequantized values (ftc_dequantize_row). Lengths past
 * the 16-key blocks (T = 70, seqs of 70 .. 25). Then against the unquantized values: within the bound that q8_0's
 * rounding allows (each value off by at most max|x| / 254 of its block, the query's too where it is quantized). */
static void test_q8_cache_same_bits(void **state) {
    (void)state;
    static const int shapes[][3] = {{9, 3, 64}, {8, 4, 40}, {8, 8, 64}, {5, 1, 32}, {16, 4, 64}, {4, 4, 8}, {6, 2, 48},
                                    {4, 1, 128}};
    /* the portable rows (the reference) and the AVX2 copy; then on AVX-512 the portable rows again (the lanes off: the
     * reference there, whose softmax exp differs from the portable one's) and the lanes rows */
    const char *paths[] = {"generic", "avx2", "auto", "auto"};
    for (int si = 0; si < 8; si++) {
        const int H = shapes[si][0], Hkv = shapes[si][1], D = shapes[si][2], S = 6, T = 70;
        const bool q8s = D % 32 == 0; /* the scores from 8-bit queries */
        ftc_rng r;
        ftc_rng_seed(&r, (uint64_t)(400 + si));
        size_t qs = (size_t)H * D, ks = (size_t)Hkv * D, rows = 2 * (size_t)S * T;
        seq_caches c;
        seq_caches_make(&c, S, T, ks, (size_t)S * 10 * qs, 9, false, &r);
        float *exact = malloc(sizeof(float) * rows * ks); /* the unquantized values */
        assert_true(exact != NULL);
        memcpy(exact, c.kv, sizeof(float) * rows * ks);
        void *kq = q8_rows(c.kv, rows, ks);
        ftc_dequantize_row(FTC_GGML_Q8_0, kq, c.kv, (int64_t)(rows * ks)); /* c.kc, c.vc: the dequantized values */
        const void *kqc[6], *vqc[6];
        const size_t rowb = ks / 32 * sizeof(ftc_block_q8_0);
        for (int s = 0; s < S; s++)
            kqc[s] = (const char *)kq + (size_t)s * T * rowb, vqc[s] = (const char *)kq + ((size_t)S + s) * T * rowb;
        const void *vq = (const char *)kq + (size_t)S * T * rowb;
        const float *q = c.q;
        const int *len = c.len;
        /* references: seqs (all S), then forward B = 2 of a [B, Tcap = T] cache for Tn = 1, 3, 10 (Tk = 61) */
        const size_t nseq = (size_t)S * qs, nfw = 2 * 10 * qs, naseq = (size_t)S * H * T, nafw = 2 * (size_t)H * 10 * 61;
        float *ref = malloc(sizeof(float) * (nseq + 3 * nfw)), *got = malloc(sizeof(float) * (nseq + nfw));
        float *aref = malloc(sizeof(float) * (naseq + 3 * nafw)), *agot = malloc(sizeof(float) * (naseq + nafw));
        assert_true(ref && got && aref && agot);
        float *ar[6], *ag[6];
        for (int s = 0; s < S; s++) ar[s] = aref + (size_t)s * H * T, ag[s] = agot + (size_t)s * H * T;
        static const int tns[3] = {1, 3, 10};
        for (int p = 0; p < 4; p++) {
            if (!ftc_matmul_set_backend(paths[p])) continue;
            ftc_attention_decode_set_lanes(p == 3);
            if (p == 0 || p == 2 || !q8s) { /* the reference: the portable rows, or the f32 functions on the decoded
                                              * values */
                if (q8s) ftc_attention_decode_seqs_forward_q8_0(ref, ar, q, kqc, vqc, len, S, H, Hkv, D);
                else ftc_attention_decode_seqs_forward(ref, ar, q, c.kc, c.vc, len, S, H, Hkv, D);
                for (int t = 0; t < 3; t++) {
                    float *o = ref + nseq + t * nfw, *a = aref + naseq + t * nafw;
                    if (q8s) ftc_attention_decode_forward_q8_0(o, a, q, kq, vq, 2, tns[t], 61, T, H, Hkv, D);
                    else ftc_attention_decode_forward(o, a, q, c.kv, c.kv + (size_t)S * T * ks, 2, tns[t], 61, T, H, Hkv, D);
                }
            }
            for (int n = 6; n >= 1; n -= n == 6 ? 4 : 1) { /* a sequence per job, a group per job, a head per job */
                memset(got, 0xff, sizeof(float) * nseq);
                ftc_attention_decode_seqs_forward_q8_0(got, ag, q, kqc, vqc, len, n, H, Hkv, D);
                assert_memory_equal(ref, got, sizeof(float) * n * qs);
                for (int s = 0; s < n; s++) assert_memory_equal(ar[s], ag[s], sizeof(float) * H * len[s]);
            }
            for (int t = 0; t < 3; t++) {
                const int Tn = tns[t];
                ftc_attention_decode_forward_q8_0(got, agot, q, kq, vq, 2, Tn, 61, T, H, Hkv, D);
                const float *o = ref + nseq + t * nfw, *a = aref + naseq + t * nafw;
                if (q8s || Tn < 8) {
                    assert_memory_equal(o, got, sizeof(float) * 2 * Tn * qs);
                    assert_memory_equal(a, agot, sizeof(float) * 2 * H * Tn * 61);
                } else { /* 10 queries: the f32 function's GEMM, the rows here */
                    double worst = 0;
                    for (size_t i = 0; i < 2 * (size_t)Tn * qs; i++) {
                        double d = fabs((double)o[i] - got[i]);
                        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
                    }
                    assert_true(worst < 1e-5);
                }
            }
        }
        ftc_attention_decode_set_lanes(true);
        ftc_matmul_set_backend("auto");
        /* Against the exact values. A value is off by at most dv = max|x| / 254 of its block (2 / 254 here) and a
         * quantized query's value by max|q| / 254 of its block, so each score by at most
         * eps = (|q_h|_1 dv + D max|q_h| / 254 (2 + dv)) / sqrt(D), each probability by a factor within e^(+-2 eps)
         * and the output by at most dv + (e^(2 eps) - 1) max|v| */
        const float *kx[6], *vx[6];
        for (int s = 0; s < S; s++) kx[s] = exact + (size_t)s * T * ks, vx[s] = exact + ((size_t)S + s) * T * ks;
        ftc_attention_decode_seqs_forward(ref, ar, q, kx, vx, len, S, H, Hkv, D);
        ftc_attention_decode_seqs_forward_q8_0(got, ag, q, kqc, vqc, len, S, H, Hkv, D);
        const double dv = 2.0 / 254;
        double worst = 0, bound = 0;
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++) {
                const float *qh = q + s * qs + (size_t)h * D;
                double l1 = 0, qmax = 0, e = 0;
                for (int d = 0; d < D; d++) l1 += fabs(qh[d]), qmax = fmax(qmax, fabs(qh[d]));
                const double eps = (l1 * dv + (q8s ? D * qmax / 254 * (2 + dv) : 0)) / sqrt((double)D);
                const double b = dv + (exp(2 * eps) - 1) * 2.0;
                for (int d = 0; d < D; d++)
                    e = fmax(e, fabs((double)ref[s * qs + (size_t)h * D + d] - got[s * qs + (size_t)h * D + d]));
                assert_true(e <= b);
                worst = fmax(worst, e), bound = fmax(bound, b);
            }
        printf("H %d Hkv %d D %d%s: q8_0 cache vs exact values: max |diff| %.2e (bound %.2e)\n", H, Hkv, D,
               q8s ? " (8-bit queries)" : "", worst, bound);
        assert_true(worst > 0);      /* the rounding is there */
        assert_true(worst < 3 * dv); /* and no more than it: measured 5.6e-3 .. 1.3e-2 (a block's wrong scale: > 0.1) */
        seq_caches_free(&c), free(exact), free(kq), free(ref), free(got), free(aref), free(agot);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_tokens_gqa),
        cmocka_unit_test(test_prefill_then_steps),
        cmocka_unit_test(test_parallel_sizes),
        cmocka_unit_test(test_detects_wrong_keys),
        cmocka_unit_test(test_seqs_same_bits_any_grouping),
        cmocka_unit_test(test_f16_cache_same_bits),
        cmocka_unit_test(test_lanes_same_bits),
        cmocka_unit_test(test_f32_to_f16_same_halves),
        cmocka_unit_test(test_seqs_pre_runs_first),
        cmocka_unit_test(test_q8_cache_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

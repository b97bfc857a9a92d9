/* Attention for incremental decoding: Tn new queries attend over a key/value cache that already holds the
 * keys and values of every earlier position and of the new ones. Causal by construction: the new query at
 * absolute position p = Tk - Tn + i sees keys 0..p. Same softmax as ftc_attention_forward (max-subtracted, ftc_vm_exp_sum);
 * a decode step's scores are dot products with 8 partial sums (a prompt chunk's come from ftc_matmul, as
 * ftc_attention_forward's do), so decoding reproduces the full-sequence rows to rounding (within 1e-5,
 * test_attention_decode).
 * Work is split per (sequence, head) on the library's pool (ftc_parallel_for), the threads the matmuls around it
 * run on, when there is enough of it (B*H*Tn*Tk*D > 65536); a decode step's smaller products run on the caller.
 * The _f16 entry points read caches of IEEE halves (an f16 KV cache, issue 24), the _q8_0 ones caches of Q8_0 blocks
 * (ops_attention_decode_q8.inc), both decoded in registers by the rows of ops_attention_decode_f16.inc.
 * On AVX-512, decoding's rows (f32 and f16 caches, D a multiple of 16; Q8_0, D a multiple of 32) take the keys in lanes
 * (ops_attention_decode_lanes.inc: the same operations, so the same bits, without a horizontal sum per key). */
#include "ftc/matmul.h"
#include "ftc/ops.h"
#include "ftc/quant.h"
#include "ftc/safetensors.h"
#include "matmul_internal.h" /* ftc_mm_cpu_has_f16c */
#include "quant_internal.h"  /* ftc_q8a_avx512_ok */
#include "ops_internal.h"
#include "vmath.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KV16_X86 1
#endif

typedef float vm_v8 __attribute__((vector_size(32))); /* 8 floats: the AVX2 copy's ymm, two SSE or eight scalars */

/* At least this many queries (a prompt chunk) compute their scores and outputs with ftc_matmul, as
 * ftc_attention_forward does; fewer (decoding) with the dot-product loop. Inside ftc_parallel_for the matmuls
 * run on the calling thread alone (the pool is busy with this very job). */
enum { GEMM_QUERIES = 8 };

/* A decode step reads the key and value rows from memory (a token's pass over the weights evicts the cache from
 * L3): the score loop prefetches the K rows this many keys ahead into L1 and the V rows into L2, where the value
 * loop finds them. Without it attention was 10-15% of a SmolLM2 decode step at 256-512 positions, stalled on
 * those loads. */
enum { KV_AHEAD = 16 };

/* The most query heads one job takes (a sequence's heads in a batch; else a group's or one) */
enum { MAX_JOB_HEADS = 64 };

/* Scores and softmax of query i for NG x GN heads: NG consecutive key/value heads (from kb), GN query heads each
 * (grouped-query attention; head h = g * GN + u uses key head g); head h's query at qb + h * D, probabilities
 * at att + h * Tn * Tk + i * Tk. A key row's slice of the NG heads is read once, in order, for all of them. */
VM_FORCE_INLINE void scores(int NG, int GN, float *att, const float *qb, const float *kb, const float *vb, int i,
                            int Tn, int Tk, size_t qs, size_t ks, int D, int nvis, float scale) {
    const int NH = NG * GN, span = NG * D; /* floats of a cached row the heads read */
    float mx[MAX_JOB_HEADS];
    for (int h = 0; h < NH; h++) mx[h] = -INFINITY;
    const float *qi = qb + (size_t)i * qs;
    float *pi = att + (size_t)i * Tk;
    const size_t ps = (size_t)Tn * Tk;
    for (int j = 0; j < nvis; j++) {
        if (j + KV_AHEAD < nvis) { /* the cache rows were evicted by the weights since the last token */
            const float *kn = kb + (size_t)(j + KV_AHEAD) * ks, *vn = vb + (size_t)(j + KV_AHEAD) * ks;
            for (int d = 0; d < span; d += 16) __builtin_prefetch(kn + d, 0, 3), __builtin_prefetch(vn + d, 0, 2);
        }
        for (int g = 0; g < NG; g++) {
            const float *kj = kb + (size_t)j * ks + (size_t)g * D;
            for (int u = 0; u < GN; u++) {
                int h = g * GN + u;
                float *p = pi + (size_t)h * ps;
                p[j] = ops_dot8(qi + (size_t)h * D, kj, D) * scale;
                if (p[j] > mx[h]) mx[h] = p[j];
            }
        }
    }
    for (int h = 0; h < NH; h++) {
        float *p = pi + (size_t)h * ps;
        /* sum >= 1: the max contributes exp(0) */
        float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx[h], nvis));
        for (int j = nvis; j < Tk; j++) p[j] = 0.0f;
        for (int j = 0; j < nvis; j++) p[j] *= inv;
    }
}

/* o_h = sum_j p_h[j] v_j for GN (1..4) query heads sharing the value rows at vb: j in order, CW channels of every
 * head at a time in registers (a row of o kept in memory was a store-to-load chain per key and most of the time
 * of a decode step's attention), each value vector loaded once for the GN heads. GCC's vector type: each lane's
 * multiply and add is the scalar one (no contraction in C11 mode), so every copy gives the scalar loop's bits. */
VM_FORCE_INLINE void values(const int GN, float *oi, const float *pi, size_t ps, const float *vb, size_t ks, int D,
                            int nvis) {
    const int CW = GN >= 4 ? 16 : 32; /* GN x CW / 8 accumulators <= 12 ymm */
    int d0 = 0;
    for (; d0 + CW <= D; d0 += CW) {
        vm_v8 acc[4][4];
#pragma GCC unroll 4
        for (int h = 0; h < GN; h++)
#pragma GCC unroll 4
            for (int c = 0; c < CW / 8; c++) acc[h][c] = (vm_v8){0};
        for (int j = 0; j < nvis; j++) {
            const float *vj = vb + (size_t)j * ks + d0;
            if (j + KV_AHEAD < nvis) /* from L2, or memory where the scores' prefetch was evicted */
                for (int c = 0; c < CW; c += 16) __builtin_prefetch(vj + (size_t)KV_AHEAD * ks + c);
            vm_v8 v[4];
#pragma GCC unroll 4
            for (int c = 0; c < CW / 8; c++) memcpy(&v[c], vj + 8 * c, sizeof v[c]);
#pragma GCC unroll 4
            for (int h = 0; h < GN; h++) {
                const float pj = pi[(size_t)h * ps + j];
                if (pj == 0.0f) continue;
#pragma GCC unroll 4
                for (int c = 0; c < CW / 8; c++) acc[h][c] += pj * v[c];
            }
        }
        for (int h = 0; h < GN; h++) memcpy(oi + (size_t)h * D + d0, acc[h], sizeof(float) * (size_t)CW);
    }
    for (; d0 < D; d0++)
        for (int h = 0; h < GN; h++) {
            const float *p = pi + (size_t)h * ps;
            float acc = 0.0f;
            for (int j = 0; j < nvis; j++)
                if (p[j] != 0.0f) acc += p[j] * vb[(size_t)j * ks + d0];
            oi[(size_t)h * D + d0] = acc;
        }
}

/* Decoding's queries one at a time for NG x GN heads (see scores; NG * GN <= MAX_JOB_HEADS): head h's output at
 * ob + h * D. Every head's arithmetic is the one-head loop's in the same order (its dot products, its max, its
 * softmax, its sums over the keys in order, channel by channel), so how heads are grouped into a job changes no
 * bit: one sequence decodes the same alone (a head per job) as in a batch (a sequence per job). Compiled plain
 * and per vector ISA (vmath.h; same operations in the same order, so every copy gives the same bits). */
VM_FORCE_INLINE void decode_rows_body(int NG, int GN, float *ob, float *att, const float *qb, const float *kb,
                                      const float *vb, int Tn, int Tk, size_t qs, size_t ks, int D, int start,
                                      float scale) {
    const size_t ps = (size_t)Tn * Tk;
    for (int i = 0; i < Tn; i++) {
        const int nvis = start + i + 1; /* keys 0..start+i */
        if (NG * GN == 1) scores(1, 1, att, qb, kb, vb, i, Tn, Tk, qs, ks, D, nvis, scale); /* one head: its max in a register */
        else scores(NG, GN, att, qb, kb, vb, i, Tn, Tk, qs, ks, D, nvis, scale);
        for (int g = 0; g < NG; g++)
            for (int u = 0; u < GN;) { /* 4 heads at a time, then what is left */
                int n = GN - u < 4 ? GN - u : 4, h = g * GN + u;
                float *oi = ob + (size_t)i * qs + (size_t)h * D;
                const float *pi = att + (size_t)h * ps + (size_t)i * Tk, *vg = vb + (size_t)g * D;
                switch (n) {
                case 1: values(1, oi, pi, ps, vg, ks, D, nvis); break;
                case 2: values(2, oi, pi, ps, vg, ks, D, nvis); break;
                case 3: values(3, oi, pi, ps, vg, ks, D, nvis); break;
                default: values(4, oi, pi, ps, vg, ks, D, nvis); break;
                }
                u += n;
            }
    }
}
VM_THREE_PATHS(decode_rows, (int NG, int GN, float *ob, float *att, const float *qb, const float *kb, const float *vb,
                           int Tn, int Tk, size_t qs, size_t ks, int D, int start, float scale),
             (NG, GN, ob, att, qb, kb, vb, Tn, Tk, qs, ks, D, start, scale))

/* A prompt chunk's probabilities in place: row i of att [Tn, Tk] over keys 0..start+i, the rest zero. The max in
 * 16 lanes (lane u takes keys u mod 16; a max is the same whatever the order, so this is the one-running-max
 * loop's value, without its chain of dependent compares: that loop was most of a 1024-token prefill's attention
 * outside the two products); the exponentials and their sum as before, then the scaling, element by element. */
VM_FORCE_INLINE void softmax_rows_body(float *att, int Tn, int Tk, int start) {
    for (int i = 0; i < Tn; i++) {
        const int nvis = start + i + 1;
        float *p = att + (size_t)i * Tk, m[16], mx = -INFINITY;
        for (int u = 0; u < 16; u++) m[u] = -INFINITY;
        int j = 0;
        for (; j + 16 <= nvis; j += 16)
            for (int u = 0; u < 16; u++) m[u] = p[j + u] > m[u] ? p[j + u] : m[u];
        for (; j < nvis; j++) mx = p[j] > mx ? p[j] : mx;
        for (int u = 0; u < 16; u++) mx = m[u] > mx ? m[u] : mx;
        const float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, nvis));
        for (j = 0; j < nvis; j++) p[j] *= inv;
        for (j = nvis; j < Tk; j++) p[j] = 0.0f;
    }
}
VM_THREE_PATHS(softmax_rows, (float *att, int Tn, int Tk, int start), (att, Tn, Tk, start))

/* Off: AVX-512 takes the per-key rows (decode_rows_avx512 / rows16_avx512: the same bits) instead of the lanes
 * rows (ops_attention_decode_lanes.inc); for the tests that compare them */
static bool lanes_on = true;
void ftc_attention_decode_set_lanes(bool on) { lanes_on = on; }

#include "ops_attention_decode_q8.inc"
#ifdef KV16_X86
#include "ops_attention_decode_lanes.inc"
#endif

/* NG x GN heads of one sequence (see scores; prompt chunks: one head): Tn queries (stride qs) over Tk cached
 * keys/values (stride ks); att: NG x GN x Tn x Tk. */
static void heads(int NG, int GN, float *ob, float *att, const float *qb, const float *kb, const float *vb, int Tn,
                  int Tk, size_t qs, size_t ks, int D) {
    const int start = Tk - Tn; /* absolute position of the first new query */
    const float scale = 1.0f / sqrtf((float)D);
    if (Tn >= GEMM_QUERIES) { /* a prompt chunk: scores and output as two products (on this thread: see above) */
        ftc_matmul(false, true, Tn, Tk, D, scale, qb, (int)qs, kb, (int)ks, 0.0f, att, Tk);
        (ftc_vm_use_avx512() ? softmax_rows_avx512 : ftc_vm_use_avx2() ? softmax_rows_avx2 : softmax_rows_generic)(
            att, Tn, Tk, start);
        ftc_matmul(false, false, Tn, D, Tk, 1.0f, att, Tk, vb, (int)ks, 0.0f, ob, (int)qs);
        return;
    }
#ifdef KV16_X86
    if (ftc_vm_use_avx512() && lanes_ok(LK_F32, NG * GN, D)) { /* decode_rows_avx512's bits */
        lanes_rows(NG, GN, ob, att, qb, kb, vb, Tn, Tk, qs, ks, D, start, scale);
        return;
    }
#endif
    (ftc_vm_use_avx512() ? decode_rows_avx512 : ftc_vm_use_avx2() ? decode_rows_avx2 : decode_rows_generic)(
        NG, GN, ob, att, qb, kb, vb, Tn, Tk, qs, ks, D, start, scale);
}

/* ---- an f16 cache (issue 24: halves the bytes a decode step reads; llama.cpp's default cache type) ----
 * Keys and values are stored as IEEE halves, widened exactly (F16C) as the rows' loops load them. */

typedef void (*widen_fn)(float *dst, const uint16_t *src, size_t n);

static void widen_generic(float *d, const uint16_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ftc_f16_to_f32(s[i]);
}
#ifdef KV16_X86
__attribute__((target("avx2,f16c"))) static void widen_avx2(float *d, const uint16_t *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) d[i] = ftc_f16_to_f32(s[i]);
}
__attribute__((target("avx512f"))) static void widen_avx512(float *d, const uint16_t *s, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
    for (; i < n; i++) d[i] = ftc_f16_to_f32(s[i]);
}
#endif

/* The widening the vector paths take (the same values whichever: the conversion is exact) */
static widen_fn pick_widen(void) {
#ifdef KV16_X86
    if (ftc_vm_use_avx512()) return widen_avx512;
    if (ftc_vm_use_avx2() && ftc_mm_cpu_has_f16c()) return widen_avx2;
#endif
    return widen_generic;
}

void ftc_f16_to_f32_n(const uint16_t *in, float *out, size_t n) { pick_widen()(out, in, n); }

/* The other way, for storing new keys and values: vcvtps2ph rounds to nearest even as ftc_f32_to_f16 does
 * (overflow to infinity, half subnormals exact, f32 subnormals to a signed zero: the same halves, checked over all
 * 2^32 floats once and on every class by test_attention_decode), except NaN, whose payload it keeps where
 * ftc_f32_to_f16 gives the canonical quiet NaN: the lanes holding a NaN take the scalar conversion. */
typedef void (*narrow_fn)(uint16_t *dst, const float *src, size_t n);

static void narrow_generic(uint16_t *d, const float *s, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = ftc_f32_to_f16(s[i]);
}
#ifdef KV16_X86
__attribute__((target("avx2,f16c"))) static void narrow_avx2(uint16_t *d, const float *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(s + i);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        for (unsigned nan = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)); nan; nan &= nan - 1)
            d[i + __builtin_ctz(nan)] = ftc_f32_to_f16(s[i + __builtin_ctz(nan)]);
    }
    for (; i < n; i++) d[i] = ftc_f32_to_f16(s[i]);
}
__attribute__((target("avx512f"))) static void narrow_avx512(uint16_t *d, const float *s, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(s + i);
        _mm256_storeu_si256((__m256i *)(d + i), _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        for (unsigned nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); nan; nan &= nan - 1)
            d[i + __builtin_ctz(nan)] = ftc_f32_to_f16(s[i + __builtin_ctz(nan)]);
    }
    for (; i < n; i++) d[i] = ftc_f32_to_f16(s[i]);
}
#endif

static narrow_fn pick_narrow(void) {
#ifdef KV16_X86
    if (ftc_vm_use_avx512()) return narrow_avx512;
    if (ftc_vm_use_avx2() && ftc_mm_cpu_has_f16c()) return narrow_avx2;
#endif
    return narrow_generic;
}

void ftc_f32_to_f16_n(const float *in, uint16_t *out, size_t n) { pick_narrow()(out, in, n); }

/* The f16 rows, one copy per instruction set (ops_attention_decode_f16.inc), elements addressed from the base */
VM_FORCE_INLINE void load8h_generic(vm_v8 *r, const uint16_t *p) {
    for (int u = 0; u < 8; u++) (*r)[u] = ftc_f16_to_f32(p[u]);
}
#define LOAD1H(b, e) ftc_f16_to_f32(((const uint16_t *)(b))[e])
#define ADDRH(b, e) ((const uint16_t *)(b) + (e))
#define R16(name) name##16_generic
#define R16_TARGET
#define LOAD8H(r, b, e) load8h_generic(r, (const uint16_t *)(b) + (e))
#include "ops_attention_decode_f16.inc"
#undef R16
#undef R16_TARGET
#undef LOAD8H
#ifdef KV16_X86
#define LOAD8H(r, b, e) load8h_f16c(r, (const uint16_t *)(b) + (e))
#define R16(name) name##16_avx2
#define R16_TARGET __attribute__((target("avx2,f16c")))
R16_TARGET VM_FORCE_INLINE void load8h_f16c(vm_v8 *r, const uint16_t *p) {
    __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    memcpy(r, &f, sizeof *r);
}
#include "ops_attention_decode_f16.inc"
#undef R16
#undef R16_TARGET
#if defined(__GNUC__) && !defined(__clang__)
#define R16_TARGET __attribute__((target("avx512f,avx512dq,f16c,prefer-vector-width=512")))
#else
#define R16_TARGET __attribute__((target("avx512f,avx512dq,f16c")))
#endif
#define R16(name) name##16_avx512
#undef LOAD8H
#define LOAD8H(r, b, e) load8h_f16c_512(r, (const uint16_t *)(b) + (e))
R16_TARGET VM_FORCE_INLINE void load8h_f16c_512(vm_v8 *r, const uint16_t *p) {
    __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    memcpy(r, &f, sizeof *r);
}
#include "ops_attention_decode_f16.inc"
#undef R16
#undef R16_TARGET
#undef LOAD8H
#endif
#undef LOAD1H
#undef ADDRH
/* The Q8_0 rows: one portable copy (AVX-512 takes the lanes rows where D is a multiple of 32) */
#define R16(name) name##q8_generic
#define R16_TARGET
#define LOAD8H(r, b, e) load8q_generic(r, b, e)
#define LOAD1H(b, e) q8_at(b, e)
#define ADDRH(b, e) q8_addr(b, e)
#include "ops_attention_decode_f16.inc"
#undef R16
#undef R16_TARGET
#undef LOAD8H
#undef LOAD1H
#undef ADDRH

/* The values of the Q8_0 rows where D is a multiple of 32 (those with 8-bit query scores): o_h[d] = fma(p_h[j], v_j[d],
 * o_h[d]) over the keys in order from 0, keys with p = 0 skipped, v decoded (d * q): the lanes rows' fused
 * multiply-adds (_mm512_fmadd_ps), so their bits (a fused multiply-add is exactly rounded wherever it runs). GN query
 * heads sharing the value rows from element ve; head h's output at oi + h * D, probabilities at pi + h * ps. */
static void q8s_values_scalar(int GN, float *oi, const float *pi, size_t ps, const void *vb, size_t ve, size_t ks,
                              int D, int nvis) {
    for (int h = 0; h < GN; h++) {
        float *o = oi + (size_t)h * D;
        for (int d = 0; d < D; d++) o[d] = 0.0f;
        for (int j = 0; j < nvis; j++) {
            const float p = pi[(size_t)h * ps + j];
            if (p == 0.0f) continue;
            const ftc_block_q8_0 *blk = q8_block(vb, ve + (size_t)j * ks);
            for (int d = 0; d < D; d++) o[d] = fmaf(p, (float)blk[d / 32].qs[d % 32] * ftc_f16_to_f32(blk[d / 32].d), o[d]);
        }
    }
}
#ifdef KV16_X86
/* The same on AVX2 + FMA: 32 channels (a block) of a head in registers at a time */
__attribute__((target("avx2,fma,f16c"))) static void q8s_values_avx2(int GN, float *oi, const float *pi, size_t ps,
                                                                     const void *vb, size_t ve, size_t ks, int D,
                                                                     int nvis) {
    for (int h = 0; h < GN; h++)
        for (int b = 0; b < D / 32; b++) {
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int j = 0; j < nvis; j++) {
                const float p = pi[(size_t)h * ps + j];
                if (p == 0.0f) continue;
                const ftc_block_q8_0 *blk = q8_block(vb, ve + (size_t)j * ks) + b;
                const __m256 P = _mm256_set1_ps(p), d = _mm256_set1_ps(_cvtsh_ss(blk->d));
                for (int c = 0; c < 4; c++) {
                    const __m256 v = _mm256_mul_ps(
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk->qs + 8 * c)))), d);
                    acc[c] = _mm256_fmadd_ps(P, v, acc[c]);
                }
            }
            for (int c = 0; c < 4; c++) _mm256_storeu_ps(oi + (size_t)h * D + 32 * b + 8 * c, acc[c]);
        }
}
#endif

/* The Q8_0 rows where D is a multiple of 32 (q8_scores_ok): the scores of the heads' 8-bit queries (q8_query,
 * q8_score), the softmax, the values with fused multiply-adds (vals: q8s_values_scalar or its AVX2 copy); the
 * portable twin of the lanes rows' (the same bits) */
VM_FORCE_INLINE void rowsq8s_body(int NG, int GN, float *ob, float *att, const float *qb, const void *kb,
                                  const void *vb, size_t e0, int Tn, int Tk, size_t qs, size_t ks, int D, int start,
                                  float scale,
                                  void (*vals)(int, float *, const float *, size_t, const void *, size_t, size_t, int,
                                               int)) {
    const size_t ps = (size_t)Tn * Tk;
    const int nb = D / 32;
    int8_t qq[Q8_DMAX];
    float dq[Q8_DMAX / 32];
    for (int i = 0; i < Tn; i++) {
        const int nvis = start + i + 1;
        const float *qi = qb + (size_t)i * qs;
        float *pi = att + (size_t)i * Tk;
        for (int g = 0; g < NG; g++)
            for (int u = 0; u < GN; u++) {
                const int h = g * GN + u;
                float *p = pi + (size_t)h * ps, mx = -INFINITY;
                q8_query(qi + (size_t)h * D, D, qq, dq);
                for (int j = 0; j < nvis; j++) {
                    p[j] = q8_score(qq, dq, kb, e0 + (size_t)j * ks + (size_t)g * D, nb) * scale;
                    if (p[j] > mx) mx = p[j];
                }
                float inv = (float)(1.0 / ftc_vm_exp_sum(p, p, mx, nvis)); /* sum >= 1: the max contributes exp(0) */
                for (int j = nvis; j < Tk; j++) p[j] = 0.0f;
                for (int j = 0; j < nvis; j++) p[j] *= inv;
            }
        for (int g = 0; g < NG; g++)
            vals(GN, ob + (size_t)i * qs + (size_t)g * GN * D, pi + (size_t)g * GN * ps, ps, vb, e0 + (size_t)g * D, ks,
                 D, nvis);
    }
}

static void rowsq8s_generic(int NG, int GN, float *ob, float *att, const float *qb, const void *kb, const void *vb,
                            size_t e0, int Tn, int Tk, size_t qs, size_t ks, int D, int start, float scale) {
    rowsq8s_body(NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale, q8s_values_scalar);
}
#ifdef KV16_X86
__attribute__((target("avx2,fma,f16c"))) static void rowsq8s_avx2(int NG, int GN, float *ob, float *att,
                                                                  const float *qb, const void *kb, const void *vb,
                                                                  size_t e0, int Tn, int Tk, size_t qs, size_t ks,
                                                                  int D, int start, float scale) {
    rowsq8s_body(NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale, q8s_values_avx2);
}
#endif

/* heads() over an f16 or a Q8_0 cache (type) from its element e0: every Tn by the rows (a prompt chunk's GEMMs want
 * f32 rows: generation widens the cache and calls ftc_attention_decode_forward for those) */
static void headsx(ftc_kv_type type, int NG, int GN, float *ob, float *att, const float *qb, const void *kb,
                   const void *vb, size_t e0, int Tn, int Tk, size_t qs, size_t ks, int D) {
    const int start = Tk - Tn;
    const float scale = 1.0f / sqrtf((float)D);
#ifdef KV16_X86
    const int kind = type == FTC_KV_Q8_0 ? LK_Q8 : LK_F16;
    if (ftc_vm_use_avx512() && lanes_ok(kind, NG * GN, D)) { /* rows16_avx512's / rowsq8s_generic's bits */
        lanes_rowsx(kind, NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale);
        return;
    }
#endif
    if (type == FTC_KV_Q8_0) {
        void (*rows)(int, int, float *, float *, const float *, const void *, const void *, size_t, int, int, size_t,
                     size_t, int, int, float) = q8_scores_ok(D) ? rowsq8s_generic : rowsq8_generic;
#ifdef KV16_X86
        if (q8_scores_ok(D) && (ftc_vm_use_avx512() || ftc_vm_use_avx2()) && ftc_mm_cpu_has_avx2_fma() &&
            ftc_mm_cpu_has_f16c())
            rows = rowsq8s_avx2;
#endif
        rows(NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale);
        return;
    }
#ifdef KV16_X86
    if (ftc_vm_use_avx512()) {
        rows16_avx512(NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale);
        return;
    }
    if (ftc_vm_use_avx2() && ftc_mm_cpu_has_f16c()) {
        rows16_avx2(NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale);
        return;
    }
#endif
    rows16_generic(NG, GN, ob, att, qb, kb, vb, e0, Tn, Tk, qs, ks, D, start, scale);
}

typedef struct {
    float *out, *att;
    const float *q, *k, *v;
    float *const *atts;
    const float *const *ks, *const *vs;
    ftc_kv_type type;                          /* FTC_KV_F16, FTC_KV_Q8_0: kx, vx (ksx, vsx) instead of k, v (ks, vs) */
    const void *kx, *vx;                       /* an f16 or Q8_0 cache's base */
    const void *const *ksx, *const *vsx;       /* f16 or Q8_0 caches */
    const int *lens;
    const int *order; /* sequences by length, longest first (their jobs in that order); NULL: as given */
    void (*pre)(void *ctx, int s); /* non-NULL: run for sequence s before its heads (in its job when it has one) */
    void *pre_ctx;
    int Tn, Tk, Tcap, H, Hkv, D, JH; /* JH: query heads per job (all H, a group's H / Hkv, or 1) */
} job;

/* Query heads per job. S sequences of new queries (decoding; not prompt chunks, which take the GEMM path one
 * head at a time): a batch (S >= 4) takes a sequence per job, so each sequence's cached rows are read once, in
 * order, for all its heads; fewer sequences a key/value head's group of query heads per job when that leaves at
 * least 8 jobs for the pool, else one head per job. The outputs have the same bits either way (decode_rows_body). */
static int heads_per_job(int S, int Tn, int H, int Hkv) {
    if (Tn >= GEMM_QUERIES || Hkv <= 0 || H % Hkv) return 1;
    if (S >= 4 && H <= MAX_JOB_HEADS) return H;
    return (long)S * Hkv >= 8 && H / Hkv <= MAX_JOB_HEADS ? H / Hkv : 1;
}

/* Job t's sequence b and first head h, its key/value heads (NG of them, from g) and query heads per key head (GN) */
static void job_heads(const job *j, int t, int *b, int *h, int *g, int *NG, int *GN) {
    const int per = j->H / j->JH, G = j->H / j->Hkv; /* query heads per key/value head */
    *b = t / per, *h = t % per * j->JH, *g = *h / G;
    if (j->JH >= G) *NG = j->JH / G, *GN = G;
    else *NG = 1, *GN = j->JH;
}

/* An f16 cache: a key/value head's group of query heads per job at least (they share its widened rows: a head
 * per job widened them once per head); the same bits however heads are grouped (decode_rows16_body). */
static int heads_per_job16(int S, int Tn, int H, int Hkv) {
    int jh = heads_per_job(S, Tn < GEMM_QUERIES ? Tn : 1, H, Hkv);
    return jh == 1 && Hkv > 0 && H % Hkv == 0 && H / Hkv <= MAX_JOB_HEADS ? H / Hkv : jh;
}

/* An f32 cache where the lanes rows apply: as with an f16 cache, a group per job at least when decoding (each
 * job reads the group's slice of the cached rows once for its heads: one thread, SmolLM2's shape at 384 positions,
 * 1.9 -> 1.3 ms CPU a step); the same bits */
static int heads_per_job32(int S, int Tn, int H, int Hkv, int D) {
#ifdef KV16_X86
    if (Tn < GEMM_QUERIES && ftc_vm_use_avx512() && Hkv > 0 && H % Hkv == 0 && lanes_ok(LK_F32, H / Hkv, D))
        return heads_per_job16(S, Tn, H, Hkv);
#else
    (void)D;
#endif
    return heads_per_job(S, Tn, H, Hkv);
}

static void run_one(void *ctx, int t) {
    const job *j = ctx;
    int b, h, g, NG, GN;
    job_heads(j, t, &b, &h, &g, &NG, &GN);
    const size_t qs = (size_t)j->H * j->D, ks = (size_t)j->Hkv * j->D;
    float *o = j->out + (size_t)b * j->Tn * qs + (size_t)h * j->D, *a = j->att + ((size_t)b * j->H + h) * j->Tn * j->Tk;
    const float *q = j->q + (size_t)b * j->Tn * qs + (size_t)h * j->D;
    const size_t kv = (size_t)b * j->Tcap * ks + (size_t)g * j->D;
    if (j->type != FTC_KV_F32) headsx(j->type, NG, GN, o, a, q, j->kx, j->vx, kv, j->Tn, j->Tk, qs, ks, j->D);
    else heads(NG, GN, o, a, q, j->k + kv, j->v + kv, j->Tn, j->Tk, qs, ks, j->D);
}

static void decode_forward(job *j, int B) {
    const int Tn = j->Tn, Tk = j->Tk, H = j->H, D = j->D;
    int n = B * (H / j->JH);
    if ((long)B * H * Tn * Tk * D > 65536) {
        ftc_parallel_for(n, run_one, j);
        return;
    }
    for (int t = 0; t < n; t++) run_one(j, t);
}

void ftc_attention_decode_forward(float *out, float *att, const float *q, const float *k_cache, const float *v_cache,
                              int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D) {
    job j = {.out = out, .att = att, .q = q, .k = k_cache, .v = v_cache, .Tn = Tn, .Tk = Tk, .Tcap = Tcap, .H = H,
             .Hkv = Hkv, .D = D, .JH = heads_per_job32(B, Tn, H, Hkv, D)};
    decode_forward(&j, B);
}

void ftc_attention_decode_forward_f16(float *out, float *att, const float *q, const uint16_t *k_cache,
                                      const uint16_t *v_cache, int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D) {
    /* every Tn takes the rows here, in decoding's job shapes */
    job j = {.out = out, .att = att, .q = q, .type = FTC_KV_F16, .kx = k_cache, .vx = v_cache, .Tn = Tn, .Tk = Tk,
             .Tcap = Tcap, .H = H, .Hkv = Hkv, .D = D, .JH = heads_per_job16(B, Tn, H, Hkv)};
    decode_forward(&j, B);
}

void ftc_attention_decode_forward_q8_0(float *out, float *att, const float *q, const void *k_cache, const void *v_cache,
                                       int B, int Tn, int Tk, int Tcap, int H, int Hkv, int D) {
    job j = {.out = out, .att = att, .q = q, .type = FTC_KV_Q8_0, .kx = k_cache, .vx = v_cache, .Tn = Tn, .Tk = Tk,
             .Tcap = Tcap, .H = H, .Hkv = Hkv, .D = D, .JH = heads_per_job16(B, Tn, H, Hkv)};
    decode_forward(&j, B);
}

static void run_seq(void *ctx, int t) { /* sequence s's new query */
    const job *j = ctx;
    int s, h, g, NG, GN;
    job_heads(j, t, &s, &h, &g, &NG, &GN);
    if (j->order) s = j->order[s];
    if (j->pre) j->pre(j->pre_ctx, s); /* one job a sequence (decode_seqs): its new row's preparation */
    const size_t qs = (size_t)j->H * j->D, ks = (size_t)j->Hkv * j->D;
    float *o = j->out + (size_t)s * qs + (size_t)h * j->D, *a = j->atts[s] + (size_t)h * j->lens[s];
    const float *q = j->q + (size_t)s * qs + (size_t)h * j->D;
    const size_t kv = (size_t)g * j->D;
    if (j->type != FTC_KV_F32) headsx(j->type, NG, GN, o, a, q, j->ksx[s], j->vsx[s], kv, 1, j->lens[s], qs, ks, j->D);
    else heads(NG, GN, o, a, q, j->ks[s] + kv, j->vs[s] + kv, 1, j->lens[s], qs, ks, j->D);
}

/* The jobs of S sequences (up to SEQS_MAX; more as given) in the order of their lengths, longest first: the
 * pool's threads take jobs in order as they free up, so sequences of different lengths end together (a long one
 * taken last kept one thread busy alone). The order changes no bit: each sequence's job computes its own
 * outputs. */
enum { SEQS_MAX = 64 };

static void decode_seqs(job *j, int S) {
    long work = 0;
    int order[SEQS_MAX];
    for (int s = 0; s < S; s++) {
        work += (long)j->H * j->lens[s] * j->D;
        if (S > SEQS_MAX) continue;
        int k = s; /* insertion, stable */
        for (; k > 0 && j->lens[order[k - 1]] < j->lens[s]; k--) order[k] = order[k - 1];
        order[k] = s;
    }
    j->order = S <= SEQS_MAX ? order : NULL;
    if (j->pre && j->JH != j->H) { /* several jobs a sequence: each sequence's preparation first, here */
        for (int s = 0; s < S; s++) j->pre(j->pre_ctx, s);
        j->pre = NULL;
    }
    int n = S * (j->H / j->JH);
    if (work > 65536) {
        ftc_parallel_for(n, run_seq, j);
        return;
    }
    for (int t = 0; t < n; t++) run_seq(j, t);
}

void ftc_attention_decode_seqs_forward_pre(float *out, float *const *att, const float *q, const void *const *k_cache,
                                           const void *const *v_cache, ftc_kv_type type, const int *len, int S, int H,
                                           int Hkv, int D, void (*pre)(void *ctx, int s), void *pre_ctx) {
    job j = {.out = out, .q = q, .atts = att, .lens = len, .Tn = 1, .H = H, .Hkv = Hkv, .D = D, .pre = pre,
             .pre_ctx = pre_ctx, .type = type};
    if (type != FTC_KV_F32) {
        j.ksx = k_cache, j.vsx = v_cache;
        j.JH = heads_per_job16(S, 1, H, Hkv);
    } else {
        j.ks = (const float *const *)k_cache, j.vs = (const float *const *)v_cache;
        j.JH = heads_per_job32(S, 1, H, Hkv, D);
    }
    decode_seqs(&j, S);
}

void ftc_attention_decode_seqs_forward(float *out, float *const *att, const float *q, const float *const *k_cache,
                                       const float *const *v_cache, const int *len, int S, int H, int Hkv, int D) {
    ftc_attention_decode_seqs_forward_pre(out, att, q, (const void *const *)k_cache, (const void *const *)v_cache,
                                          FTC_KV_F32, len, S, H, Hkv, D, NULL, NULL);
}

void ftc_attention_decode_seqs_forward_f16(float *out, float *const *att, const float *q,
                                           const uint16_t *const *k_cache, const uint16_t *const *v_cache,
                                           const int *len, int S, int H, int Hkv, int D) {
    ftc_attention_decode_seqs_forward_pre(out, att, q, (const void *const *)k_cache, (const void *const *)v_cache,
                                          FTC_KV_F16, len, S, H, Hkv, D, NULL, NULL);
}

void ftc_attention_decode_seqs_forward_q8_0(float *out, float *const *att, const float *q, const void *const *k_cache,
                                            const void *const *v_cache, const int *len, int S, int H, int Hkv, int D) {
    ftc_attention_decode_seqs_forward_pre(out, att, q, k_cache, v_cache, FTC_KV_Q8_0, len, S, H, Hkv, D, NULL, NULL);
}

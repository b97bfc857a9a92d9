/* Quantizers and dequantizers of the block types in include/ftc/quant.h.
 *
 * The quantizers follow the references' f32 operation order exactly (C11 mode: no FMA contraction; clang is
 * told so below) so that the blocks are bit-identical: gguf.quants (numpy) for Q8_0/Q4_0/Q4_1, ggml's
 * quantize_row_q4_K_ref for Q4_K. Dequantization is d * q (Q8_0, Q4_0) or d * q + m / d * q - m as two
 * roundings, as gguf.quants.dequantize computes it. The block decoders used by the fused matmul (qmatmul.c)
 * are compiled three times from one body (plain, AVX-512 and AVX2, vmath.h's VM_THREE_PATHS): no operation
 * in them depends on the vector width, so all give the same bits. */
#include "ftc/quant.h"
#include <math.h>
#include <string.h>
#include "ftc/safetensors.h" /* f16 conversions */
#include "quant_internal.h"
#include "vmath.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

bool ftc_quant_supported(int type) {
    return type == FTC_GGML_Q8_0 || type == FTC_GGML_Q4_0 || type == FTC_GGML_Q4_1 || type == FTC_GGML_Q4_K ||
           type == FTC_QUANT_NF4 || type == FTC_QUANT_NF4DQ;
}
int ftc_quant_block(int type) {
    return !ftc_quant_supported(type) ? 0 : type == FTC_GGML_Q4_K ? 256 : type == FTC_QUANT_NF4 || type == FTC_QUANT_NF4DQ ? 64 : 32;
}
int ftc_quant_block_bytes(int type) {
    switch (type) {
    case FTC_GGML_Q8_0: return (int)sizeof(ftc_block_q8_0);
    case FTC_GGML_Q4_0: return (int)sizeof(ftc_block_q4_0);
    case FTC_GGML_Q4_1: return (int)sizeof(ftc_block_q4_1);
    case FTC_GGML_Q4_K: return (int)sizeof(ftc_block_q4_k);
    case FTC_QUANT_NF4: return (int)sizeof(ftc_block_nf4);
    case FTC_QUANT_NF4DQ: return (int)sizeof(ftc_block_nf4dq);
    default: return 0;
    }
}
size_t ftc_quant_row_bytes(int type, int64_t n) {
    int b = ftc_quant_block(type);
    if (!b || n < 0 || n % b) return 0;
    return (size_t)(n / b) * (size_t)ftc_quant_block_bytes(type);
}
int ftc_quant_type_for_row(int type, int64_t n) {
    if (ftc_quant_row_bytes(type, n)) return type;
    if (type == FTC_GGML_Q4_K && ftc_quant_row_bytes(FTC_GGML_Q4_1, n)) return FTC_GGML_Q4_1;
    return -1;
}
int ftc_quant_type_for_output(int type, int64_t n) {
    if (!ftc_quant_supported(type)) return -1;
    return ftc_quant_row_bytes(FTC_GGML_Q8_0, n) ? FTC_GGML_Q8_0 : -1;
}
static const struct { const char *name; int type; } NAMES[] = {
    {"q8_0", FTC_GGML_Q8_0}, {"q4_0", FTC_GGML_Q4_0}, {"q4_1", FTC_GGML_Q4_1}, {"q4_k", FTC_GGML_Q4_K}, {"nf4", FTC_QUANT_NF4},
    {"nf4dq", FTC_QUANT_NF4DQ}};
int ftc_quant_from_name(const char *name) {
    for (size_t i = 0; name && i < sizeof NAMES / sizeof *NAMES; i++)
        if (strcmp(name, NAMES[i].name) == 0) return NAMES[i].type;
    return -1;
}
const char *ftc_quant_name(int type) {
    for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
        if (NAMES[i].type == type) return NAMES[i].name;
    return NULL;
}

/* ---- quantizers ---- */

/* gguf.quants.Q8_0: d = max|x| / 127, q = round-half-away(x * (1/d)) (|x * (1/d)| <= 127 up to rounding) */
static void quant_q8_0(const float *x, ftc_block_q8_0 *b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    float d = amax / 127.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    for (int i = 0; i < 32; i++) b->qs[i] = ftc_round_q8(x[i] * id);
    b->d = ftc_f32_to_f16(d);
}
/* gguf.quants.Q4_0: the value of largest magnitude (first one) maps to -8: d = max / -8,
 * q = min(15, trunc(x * (1/d) + 8.5)) */
static void quant_q4_0(const float *x, ftc_block_q4_0 *b) {
    int imax = 0;
    for (int i = 1; i < 32; i++)
        if (fabsf(x[i]) > fabsf(x[imax])) imax = i;
    float d = x[imax] / -8.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    uint8_t q[32];
    for (int i = 0; i < 32; i++) {
        float t = truncf(x[i] * id + 8.5f);
        q[i] = t >= 15.0f ? 15 : t <= 0.0f ? 0 : (uint8_t)t;
    }
    for (int i = 0; i < 16; i++) b->qs[i] = (uint8_t)(q[i] | q[i + 16] << 4);
    b->d = ftc_f32_to_f16(d);
}
/* gguf.quants.Q4_1: d = (max - min) / 15, q = min(15, trunc((x - min) * (1/d) + 0.5)), m = min */
static void quant_q4_1(const float *x, ftc_block_q4_1 *b) {
    float mx = x[0], mn = x[0];
    for (int i = 1; i < 32; i++) {
        mx = x[i] > mx ? x[i] : mx;
        mn = x[i] < mn ? x[i] : mn;
    }
    float d = (mx - mn) / 15.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    uint8_t q[32];
    for (int i = 0; i < 32; i++) {
        float t = truncf((x[i] - mn) * id + 0.5f);
        q[i] = t >= 15.0f ? 15 : t <= 0.0f ? 0 : (uint8_t)t;
    }
    for (int i = 0; i < 16; i++) b->qs[i] = (uint8_t)(q[i] | q[i + 16] << 4);
    b->d = ftc_f32_to_f16(d);
    b->m = ftc_f32_to_f16(mn);
}

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the low mantissa
 * bits (the rounding ggml's K-quant references use). */
static int round_even(float v) {
    float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, 4);
    return (bits & 0x007fffff) - 0x00400000;
}
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One group of 32 for Q4_K: the scale s and offset m (x ~ s * L - m, L in 0..15) that minimise the
 * weighted squared error, searched as ggml's reference does: start from the min/max grid, then try 21
 * grid spacings (nmax + rmin + rdelta * step over the range) and refit s, m by weighted least squares
 * for each assignment, keeping the best. Returns s; *neg_min = m (>= 0, the minimum is clamped at 0). */
static float q4k_fit_group(const float *x, const float *w, uint8_t *L, float *neg_min) {
    enum { NMAX = 15, NSTEP = 20 };
    const float rmin = -1.0f, rdelta = 0.1f;
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < 32; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, 32);
        *neg_min = -mn;
        return 0.0f;
    }
    float iscale = (float)NMAX / (mx - mn), scale = 1.0f / iscale, best = 0.0f;
    for (int i = 0; i < 32; i++) {
        L[i] = (uint8_t)clampi(round_even(iscale * (x[i] - mn)), 0, NMAX);
        float diff = scale * (float)L[i] + mn - x[i];
        best += w[i] * (diff * diff);
    }
    for (int step = 0; step <= NSTEP; step++) {
        iscale = (rmin + rdelta * (float)step + (float)NMAX) / (mx - mn);
        uint8_t La[32];
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < 32; i++) {
            int l = clampi(round_even(iscale * (x[i] - mn)), 0, NMAX);
            La[i] = (uint8_t)l;
            float wl = w[i] * (float)l;
            sl += wl;
            sl2 += wl * (float)l;
            sxl += wl * x[i];
        }
        float D = sum_w * sl2 - sl * sl;
        if (!(D > 0)) continue;
        float s = (sum_w * sxl - sum_x * sl) / D, m = (sl2 * sum_x - sl * sxl) / D;
        if (m > 0) {
            m = 0;
            s = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < 32; i++) {
            float diff = s * (float)La[i] + m - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best) {
            memcpy(L, La, 32);
            best = err;
            scale = s;
            mn = m;
        }
    }
    *neg_min = -mn;
    return scale;
}

static void quant_q4_k(const float *x, ftc_block_q4_k *b) {
    uint8_t L[256];
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int g = 0; g < 8; g++) {
        const float *xg = x + 32 * g;
        float sum_x2 = 0, w[32];
        for (int l = 0; l < 32; l++) sum_x2 += xg[l] * xg[l];
        float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xg[l]);
        scales[g] = q4k_fit_group(xg, w, L + 32 * g, &mins[g]);
        if (scales[g] > max_scale) max_scale = scales[g];
        if (mins[g] > max_min) max_min = mins[g];
    }
    /* 6-bit codes of the group scales and mins relative to the block's largest */
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(b->scales, 0, sizeof b->scales);
    for (int g = 0; g < 8; g++) {
        int ls = (uint8_t)round_even(inv_scale * scales[g]), lm = (uint8_t)round_even(inv_min * mins[g]);
        ls = ls > 63 ? 63 : ls;
        lm = lm > 63 ? 63 : lm;
        if (g < 4) {
            b->scales[g] = (uint8_t)ls;
            b->scales[g + 4] = (uint8_t)lm;
        } else {
            b->scales[g + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            b->scales[g - 4] |= (uint8_t)((ls >> 4) << 6);
            b->scales[g] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    b->d = ftc_f32_to_f16(max_scale / 63.0f);
    b->dmin = ftc_f32_to_f16(max_min / 63.0f);
    /* re-quantize each group against the scales as stored */
    float d = ftc_f16_to_f32(b->d), dmin = ftc_f16_to_f32(b->dmin);
    for (int g = 0; g < 8; g++) {
        int sc, m;
        ftc_q4k_scale_min(b->scales, g, &sc, &m);
        float dg = d * (float)sc;
        if (dg == 0.0f) continue; /* keeps the fit's codes */
        float mg = dmin * (float)m;
        for (int l = 0; l < 32; l++) L[32 * g + l] = (uint8_t)clampi(round_even((x[32 * g + l] + mg) / dg), 0, 15);
    }
    for (int h = 0; h < 4; h++)
        for (int l = 0; l < 32; l++) b->qs[32 * h + l] = (uint8_t)(L[64 * h + l] | L[64 * h + 32 + l] << 4);
}

/* The NF4 levels (bitsandbytes' table, as f32) and the midpoints between neighbours, computed in f32 */
static const float NF4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                              -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                              0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                              0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                              0.7229568362236023f, 1.0f};
static float nf4_absmax(const float *x) {
    float amax = 0.0f;
    for (int i = 0; i < 64; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    return amax;
}
/* bitsandbytes' quantize_4bit for nf4: s = x * (1 / max(absmax, 1e-38)) clamped to [-1, 1]; q = the number of
 * midpoints below s (torch.bucketize, right=False); absmax itself is stored unclamped */
static void nf4_codes(const float *x, float amax, uint8_t qs[32]) {
    float inv = 1.0f / (amax > 1e-38f ? amax : 1e-38f);
    uint8_t q[64];
    for (int i = 0; i < 64; i++) {
        float s = x[i] * inv;
        s = s < -1.0f ? -1.0f : s > 1.0f ? 1.0f : s;
        int k = 0;
        for (int j = 0; j < 15; j++) k += (NF4[j] + NF4[j + 1]) / 2.0f < s;
        q[i] = (uint8_t)k;
    }
    for (int j = 0; j < 32; j++) qs[j] = (uint8_t)(q[2 * j] << 4 | q[2 * j + 1]);
}
static void quant_nf4(const float *x, ftc_block_nf4 *b) {
    b->absmax = nf4_absmax(x);
    nf4_codes(x, b->absmax, b->qs);
}

/* bitsandbytes' create_dynamic_map() (signed, 7 exponent bits) as torch 2.15 computes it in f32 on an AVX2 CPU
 * (linspace, midpoints, decade scales: with torch's scalar kernels 42 of the 256 entries differ by an ulp; the map
 * travels with bitsandbytes' quantization state, ours is this one). tools/gen_nf4_fixtures.py writes it into the
 * fixture; test_quant compares. */
static const float DYN[256] = {
#include "nf4dq_code.inc"
};
const float *ftc_nf4dq_code(void) { return DYN; }

/* bitsandbytes 0.50.2's CPU quantize_blockwise (csrc/cpu_ops.cpp, quantize_cpu_impl) of one value t = v * (1 /
 * absmax), clamped to [-1, 1]: its 65536-entry table, read at index trunc((t + 1) * 0.5 * 65535 + 0.5) (the
 * library's build contracts the last multiply-add into one FMA: done here in double, where u * 65535 + 0.5 is
 * exact for every f32 u in [0, 1], then rounded once), holds for bin i the number of midpoints 0.5 * (DYN[j] +
 * DYN[j+1]) below -1 + 2i / 65535 (f32): the nearest map entry to the bin, not to t. */
static uint8_t dyn_code(float t) {
    t = t < -1.0f ? -1.0f : t > 1.0f ? 1.0f : t;
    float u = (t + 1.0f) * 0.5f;
    int bin = (int)(float)((double)u * 65535.0 + 0.5);
    float val = -1.0f + (2.0f * (float)bin) / 65535.0f;
    int lo = 0, hi = 255; /* the count of midpoints below val: first j in [0, 255] whose midpoint is not */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (0.5f * (DYN[mid] + DYN[mid + 1]) < val) lo = mid + 1;
        else hi = mid;
    }
    return (uint8_t)lo;
}

/* torch's CPU sum of n contiguous f32 values (aten SumKernel.cpp cascade_sum, one thread, 8-lane vectors as on
 * AVX2): lanes of 8, the vectors taken 4 at a time (ilp) into a 4-level cascade of accumulators whose level step is
 * 2^max(4, ceil(log2(n / 32)) / 4), the leftover vectors into the first, the 4 folded, the scalar tail summed
 * first and the 8 lanes added to it in order. */
static int ceil_log2(int64_t x) {
    int r = 0;
    if (x <= 2) return 1;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) r++;
    return r;
}
/* value k of the sum: block k's absmax, computed as it is read from the values x (blocks) or read from x */
#define AM(k) (blocks ? nf4_absmax(x + 64 * (k)) : x[k])
static float torch_sum_absmax(const float *x, int64_t n, bool blocks) {
    enum { V = 8, ILP = 4, LEVELS = 4 };
    int64_t nv = n / V, nilp = nv / ILP;
    int lp = ceil_log2(nilp) / LEVELS > 4 ? ceil_log2(nilp) / LEVELS : 4;
    int64_t step = (int64_t)1 << lp, mask = step - 1, i = 0;
    float acc[LEVELS][ILP][V] = {{{0}}};
    while (i + step <= nilp) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < ILP; k++)
                for (int l = 0; l < V; l++) acc[0][k][l] += AM((i * ILP + k) * V + l);
        for (int j = 1; j < LEVELS; j++) {
            for (int k = 0; k < ILP; k++)
                for (int l = 0; l < V; l++) acc[j][k][l] += acc[j - 1][k][l], acc[j - 1][k][l] = 0.0f;
            if (i & (mask << (j * lp))) break;
        }
    }
    for (; i < nilp; i++)
        for (int k = 0; k < ILP; k++)
            for (int l = 0; l < V; l++) acc[0][k][l] += AM((i * ILP + k) * V + l);
    for (int j = 1; j < LEVELS; j++)
        for (int k = 0; k < ILP; k++)
            for (int l = 0; l < V; l++) acc[0][k][l] += acc[j][k][l];
    for (int64_t r = nilp * ILP; r < nv; r++)
        for (int l = 0; l < V; l++) acc[0][0][l] += AM(r * V + l);
    for (int k = 1; k < ILP; k++)
        for (int l = 0; l < V; l++) acc[0][0][l] += acc[0][k][l];
    float s = 0.0f;
    for (int64_t r = nv * V; r < n; r++) s += AM(r);
    for (int l = 0; l < V; l++) s += acc[0][0][l];
    return s;
}
#undef AM

float ftc_nf4dq_offset(const float *x, int64_t n) {
    int64_t nb = n / 64;
    return nb > 0 ? torch_sum_absmax(x, nb, true) / (float)nb : 0.0f; /* torch: sum.div_(numel), f32 */
}
float ftc_nf4dq_offset_absmax(const float *absmax, int64_t nb) {
    return nb > 0 ? torch_sum_absmax(absmax, nb, false) / (float)nb : 0.0f;
}
void ftc_nf4_absmax_blocks(const float *x, int64_t nb, float *absmax) {
    for (int64_t k = 0; k < nb; k++) absmax[k] = nf4_absmax(x + 64 * k);
}

void ftc_nf4dq_quantize_groups(const float *x, void *W, int64_t O, int64_t I, float offset, int64_t g0, int64_t g1) {
    int64_t nb = O * (I / 64);
    ftc_block_nf4dq *b = W;
    float *tail = (float *)((uint8_t *)W + ftc_nf4dq_tail(O, I));
    if (g0 == 0) { /* the offset, and zeros in the padding before it */
        size_t body = (size_t)nb * sizeof(ftc_block_nf4dq);
        memset((uint8_t *)W + body, 0, ftc_nf4dq_tail(O, I) - body);
        tail[0] = offset;
    }
    for (int64_t g = g0; g < g1; g++) {
        int64_t k0 = g * FTC_NF4DQ_GROUP, k1 = k0 + FTC_NF4DQ_GROUP < nb ? k0 + FTC_NF4DQ_GROUP : nb;
        float v[FTC_NF4DQ_GROUP], amax = 0.0f;
        for (int64_t k = k0; k < k1; k++) {
            const float *xk = x + 64 * (k - g0 * FTC_NF4DQ_GROUP); /* x starts at group g0 */
            float a = nf4_absmax(xk);
            nf4_codes(xk, a, b[k].qs);
            v[k - k0] = a - offset; /* torch: _absmax - offset, f32 */
            amax = fabsf(v[k - k0]) > amax ? fabsf(v[k - k0]) : amax;
        }
        tail[1 + g] = amax;
        float inv = amax == 0.0f ? 0.0f : 1.0f / amax; /* bnb: an all-zero group gets code 0 */
        for (int64_t k = k0; k < k1; k++) b[k].qabsmax = amax == 0.0f ? 0 : dyn_code(v[k - k0] * inv);
    }
}

size_t ftc_quant_tensor_bytes(int type, int64_t O, int64_t I) {
    size_t rb = ftc_quant_row_bytes(type, I);
    if (!rb || O < 0) return 0;
    if (type != FTC_QUANT_NF4DQ) return rb * (size_t)O;
    int64_t nb = O * (I / 64);
    return ftc_nf4dq_tail(O, I) + sizeof(float) * (size_t)(1 + (nb + FTC_NF4DQ_GROUP - 1) / FTC_NF4DQ_GROUP);
}

void ftc_quantize_tensor(int type, const float *x, void *out, int64_t O, int64_t I) {
    if (type == FTC_QUANT_NF4DQ) {
        if (!ftc_quant_row_bytes(type, I)) return;
        int64_t nb = O * (I / 64);
        ftc_nf4dq_quantize_groups(x, out, O, I, ftc_nf4dq_offset(x, O * I), 0, (nb + FTC_NF4DQ_GROUP - 1) / FTC_NF4DQ_GROUP);
        return;
    }
    size_t rb = ftc_quant_row_bytes(type, I);
    for (int64_t o = 0; rb && o < O; o++) ftc_quantize_row(type, x + o * I, (uint8_t *)out + (size_t)o * rb, I);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* quant_q8_0 on AVX-512, nb blocks: the same operations (the max of |x| ignoring NaNs as the scalar compare does, the
 * scalar d and 1 / d, x * (1 / d), ftc_round_q8's clamp and rounding), so the same blocks; a q8_0 KV cache quantizes
 * every new key and value row with it (0.8 -> 0.2 us per 384 values) */
__attribute__((target("avx2,f16c,avx512f,avx512dq,avx512bw,avx512vl"))) static void quant_q8_0_avx512(
    const float *x, ftc_block_q8_0 *out, int64_t nb) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb; k++) {
        const __m512 x0 = _mm512_loadu_ps(x + 32 * k), x1 = _mm512_loadu_ps(x + 32 * k + 16);
        /* max(a, b) returns b where a is NaN: the scalar loop's compare skips NaNs too */
        const __m512 m = _mm512_max_ps(_mm512_abs_ps(x1), _mm512_max_ps(_mm512_abs_ps(x0), zero));
        const float amax = _mm512_reduce_max_ps(m);
        const float d = amax / 127.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
        __m128i q[2];
        for (int hh = 0; hh < 2; hh++) q[hh] = ftc_round_q8_x16(_mm512_mul_ps(hh ? x1 : x0, _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)out[k].qs, q[0]);
        _mm_storeu_si128((__m128i *)(out[k].qs + 16), q[1]);
        out[k].d = ftc_f32_to_f16(d);
    }
}
#endif

void ftc_quantize_row(int type, const float *x, void *out, int64_t n) {
    switch (type) {
    case FTC_GGML_Q8_0:
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (ftc_vm_use_avx512()) {
            quant_q8_0_avx512(x, out, n / 32);
            break;
        }
#endif
        for (int64_t k = 0; k < n / 32; k++) quant_q8_0(x + 32 * k, (ftc_block_q8_0 *)out + k);
        break;
    case FTC_GGML_Q4_0: for (int64_t k = 0; k < n / 32; k++) quant_q4_0(x + 32 * k, (ftc_block_q4_0 *)out + k); break;
    case FTC_GGML_Q4_1: for (int64_t k = 0; k < n / 32; k++) quant_q4_1(x + 32 * k, (ftc_block_q4_1 *)out + k); break;
    case FTC_GGML_Q4_K: for (int64_t k = 0; k < n / 256; k++) quant_q4_k(x + 256 * k, (ftc_block_q4_k *)out + k); break;
    case FTC_QUANT_NF4: for (int64_t k = 0; k < n / 64; k++) quant_nf4(x + 64 * k, (ftc_block_nf4 *)out + k); break;
    default: break;
    }
}

/* ---- decoders: nb blocks from `in` into y, one body per type compiled plain and for AVX-512 ---- */

/* f16 -> f32 without branches (vectorises): normal and zero by exponent rebias, subnormals by a float
 * multiply (exact), inf/NaN by exponent saturation. Same value as ftc_f16_to_f32. */
VM_FORCE_INLINE float h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7fff;
    uint32_t normal = (em << 13) + ((uint32_t)(127 - 15) << 23);
    uint32_t inf = em >= 0x7c00 ? 0x7f800000u | (em & 0x3ff) << 13 : 0;
    float sub = (float)em * 5.9604644775390625e-8f; /* em * 2^-24, exact */
    uint32_t subb;
    memcpy(&subb, &sub, 4);
    uint32_t bits = em < 0x400 ? subb : inf ? inf : normal;
    bits |= sign;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

VM_FORCE_INLINE void dec_q8_0_body(const void *in, float *y, int64_t nb) {
    const ftc_block_q8_0 *b = in;
    for (int64_t k = 0; k < nb; k++) {
        float d = h2f(b[k].d);
        for (int i = 0; i < 32; i++) y[32 * k + i] = (float)b[k].qs[i] * d;
    }
}
VM_FORCE_INLINE void dec_q4_0_body(const void *in, float *y, int64_t nb) {
    const ftc_block_q4_0 *b = in;
    for (int64_t k = 0; k < nb; k++) {
        float d = h2f(b[k].d);
        for (int i = 0; i < 16; i++) {
            y[32 * k + i] = d * (float)((b[k].qs[i] & 15) - 8);
            y[32 * k + 16 + i] = d * (float)((b[k].qs[i] >> 4) - 8);
        }
    }
}
VM_FORCE_INLINE void dec_q4_1_body(const void *in, float *y, int64_t nb) {
    const ftc_block_q4_1 *b = in;
    for (int64_t k = 0; k < nb; k++) {
        float d = h2f(b[k].d), m = h2f(b[k].m);
        for (int i = 0; i < 16; i++) {
            float lo = d * (float)(b[k].qs[i] & 15), hi = d * (float)(b[k].qs[i] >> 4);
            y[32 * k + i] = lo + m;
            y[32 * k + 16 + i] = hi + m;
        }
    }
}
VM_FORCE_INLINE void dec_q4_k_body(const void *in, float *y, int64_t nb) {
    const ftc_block_q4_k *b = in;
    for (int64_t k = 0; k < nb; k++) {
        float d = h2f(b[k].d), dmin = h2f(b[k].dmin);
        for (int h = 0; h < 4; h++) {
            int sc0, m0, sc1, m1;
            ftc_q4k_scale_min(b[k].scales, 2 * h, &sc0, &m0);
            ftc_q4k_scale_min(b[k].scales, 2 * h + 1, &sc1, &m1);
            float d0 = d * (float)sc0, n0 = dmin * (float)m0, d1 = d * (float)sc1, n1 = dmin * (float)m1;
            const uint8_t *q = b[k].qs + 32 * h;
            float *o = y + 256 * k + 64 * h;
            for (int l = 0; l < 32; l++) {
                float lo = d0 * (float)(q[l] & 15), hi = d1 * (float)(q[l] >> 4);
                o[l] = lo - n0;
                o[32 + l] = hi - n1;
            }
        }
    }
}
VM_FORCE_INLINE void dec_nf4_body(const void *in, float *y, int64_t nb) {
    const ftc_block_nf4 *b = in;
    for (int64_t k = 0; k < nb; k++)
        for (int j = 0; j < 32; j++) {
            y[64 * k + 2 * j] = NF4[b[k].qs[j] >> 4] * b[k].absmax;
            y[64 * k + 2 * j + 1] = NF4[b[k].qs[j] & 15] * b[k].absmax;
        }
}
VM_THREE_PATHS(dec_nf4, (const void *in, float *y, int64_t nb), (in, y, nb))
/* bitsandbytes' dequantize_4bit of a nested state: absmax = DYN[q] * scale2 (its CPU dequantize_blockwise), then
 * + offset (torch, f32), then NF4[q] * absmax (its CPU 4-bit dequantization); g0: the first block's index */
VM_FORCE_INLINE void dec_nf4dq_body(const void *in, float *y, int64_t nb, const float *tail, int64_t g0) {
    const ftc_block_nf4dq *b = in;
    float offset = tail[0];
    for (int64_t k = 0; k < nb; k++) {
        float am = DYN[b[k].qabsmax] * tail[1 + (g0 + k) / FTC_NF4DQ_GROUP];
        am = am + offset;
        for (int j = 0; j < 32; j++) {
            y[64 * k + 2 * j] = NF4[b[k].qs[j] >> 4] * am;
            y[64 * k + 2 * j + 1] = NF4[b[k].qs[j] & 15] * am;
        }
    }
}
VM_THREE_PATHS(dec_nf4dq, (const void *in, float *y, int64_t nb, const float *tail, int64_t g0), (in, y, nb, tail, g0))
VM_THREE_PATHS(dec_q8_0, (const void *in, float *y, int64_t nb), (in, y, nb))
VM_THREE_PATHS(dec_q4_0, (const void *in, float *y, int64_t nb), (in, y, nb))
VM_THREE_PATHS(dec_q4_1, (const void *in, float *y, int64_t nb), (in, y, nb))
VM_THREE_PATHS(dec_q4_k, (const void *in, float *y, int64_t nb), (in, y, nb))

#define PICK(name) (isa == 2 ? name##_avx512 : isa == 1 ? name##_avx2 : name##_generic)
ftc_quant_decode_fn ftc_quant_decoder(int type, int isa) {
    switch (type) {
    case FTC_GGML_Q8_0: return PICK(dec_q8_0);
    case FTC_GGML_Q4_0: return PICK(dec_q4_0);
    case FTC_GGML_Q4_1: return PICK(dec_q4_1);
    case FTC_GGML_Q4_K: return PICK(dec_q4_k);
    case FTC_QUANT_NF4: return PICK(dec_nf4);
    default: return NULL;
    }
}

ftc_nf4dq_decode_fn ftc_nf4dq_decoder(int isa) { return PICK(dec_nf4dq); }

void ftc_dequantize_tensor(int type, const void *in, float *y, int64_t O, int64_t I) {
    size_t rb = ftc_quant_row_bytes(type, I);
    if (!rb) return;
    if (type == FTC_QUANT_NF4DQ) {
        dec_nf4dq_generic(in, y, O * (I / 64), (const float *)((const uint8_t *)in + ftc_nf4dq_tail(O, I)), 0);
        return;
    }
    for (int64_t o = 0; o < O; o++) ftc_dequantize_row(type, (const uint8_t *)in + (size_t)o * rb, y + o * I, I);
}

void ftc_dequantize_row(int type, const void *in, float *y, int64_t n) {
    ftc_quant_decode_fn fn = ftc_quant_decoder(type, 0);
    if (fn) fn(in, y, n / ftc_quant_block(type));
}

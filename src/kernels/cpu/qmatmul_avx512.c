/* Generation's products on Q8_0 / Q4_0 / Q4_1 weights with 8-bit activations in AVX-512 VNNI (issue 24): the
 * integer arithmetic of the portable twin (qmatmul_q8act.c: per (W block, X block) pair the exact integer dot
 * product, scaled once by d_w d_x in f32, Q4_1 plus m_w s_x), with vpdpbusd (64 byte products a instruction,
 * against AVX2's vpmaddubsw + vpmaddwd on 32).
 *
 * vpdpbusd multiplies unsigned by signed bytes. The activations stay signed (the quantizer's bytes, memory
 * operand); the weight is made unsigned and the difference taken back exactly through the accumulator's start:
 *   Q8_0  w + 128 (xor 0x80)   start -128 sum x      Q4_0  the nibble n    start -8 sum x     Q4_1  n   start 0
 * All three take the 16-row tiles further down (a W row a lane, the blocks transposed in registers, 8 vpdpbusd
 * per block and row of X with its bytes broadcast, the start once per block; Q4_1 one more FMA for m_w s_x). The
 * pairs described here remain for a row too long for the tiles' 32-bit gather offsets
 * (sum x per 4 activations, the lane of vpdpbusd: each row of X is prepared once per product, ftc_q8a_prepare_avx512,
 * with those starts, its scales spread over the 8 lanes of each block, and Q4_1's s likewise). Each zmm holds
 * two blocks (a pair; an odd last block pairs with a zero block whose scales are 0, exact). Per pair and row of X:
 * vpdpbusd, one conversion, d_w d_x in one multiply, one FMA into 16 f32 lanes (Q4_1: one more FMA for m_w s_x).
 * The lanes differ from the portable twin's order of summation (one f32 sum over blocks), so the results agree
 * within f32 rounding (test_quant), not to the bit. Every (W row, X row) takes the same operations in the same
 * order in every tile, so a sequence gets the same bits alone and in a batch (test_quant, test_decode_batch).
 *
 * The pairs' tiles: one row of X (decoding): 4 rows of W at a time; more rows of X (batched decoding): 2 rows of W x
 * up to 8 rows of X, each prepared weight pair used for every row of X and each loaded activation pair for both rows
 * of W (only where ftc_q8a_avx512_tiles says no).
 * Compiled with target attributes; qmatmul_q8act.c calls in when ftc_vm_isa() == 2 and the CPU has AVX-512 VNNI,
 * BW and VL (ftc_q8a_avx512_ok). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include "ftc/quant.h"
#include "quant_internal.h"

#define AVX512_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define INLINE __attribute__((always_inline)) static inline

bool ftc_q8a_avx512_ok(void) {
    static int ok = -1; /* asked once; a benign race, every thread writes the same value */
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512f") && ftc_qmatvec_avx2_ok();
    }
    return ok;
}

/* The prepared rows (one buffer, 64-byte aligned). Q4_1 (the pairs' kernels): for P = I rounded up to 64 (whole
 * pairs), per row of X
 *   q [P] int8: the quantizer's bytes, 0 past I     c [P / 4] int32: the accumulator's start per lane (above)
 *   d [P / 4] f32: d_x in the 8 lanes of its block   s [P / 4] f32: s_x likewise (Q4_1)
 * each array N rows of P bytes, in this order. Q8_0 / Q4_0 (the 16-row tiles below): the rows in the chunks the
 * tiles take them (tile_chunk), chunk n0 of C rows at byte n0 * I / 32 * 40, there for each block b and row c
 * (C - 1 at most 7) 40 bytes at (b * C + c) * 40: the block's 32 bytes of q, its whole start cb (int32: -128 or -8
 * times its sum of q) and d_x (f32), so that a tile reaches all of a block's activations from one pointer. */
static size_t padded(int I) { return ((size_t)I + 63) & ~(size_t)63; }

typedef struct {
    const int8_t *q;
    const int32_t *c;
    const float *d, *s;
    size_t P; /* bytes of a row in each array */
} prepared;

static prepared rows_of(const void *buf, int N, int I) {
    const size_t P = padded(I), rows = (size_t)N * P;
    const uint8_t *b = buf;
    return (prepared){(const int8_t *)b, (const int32_t *)(b + rows), (const float *)(b + 2 * rows),
                      (const float *)(b + 3 * rows), P};
}

enum { TILE = 16, XE = 40 /* bytes of a (block, row of X) entry of the tiles' layout */ };

bool ftc_q8a_avx512_tiles(int type, int I) {
    return (type == FTC_GGML_Q8_0 || type == FTC_GGML_Q4_0 || type == FTC_GGML_Q4_1) &&
           ftc_quant_row_bytes(type, I) <= (size_t)INT32_MAX / TILE; /* the d gather's 32-bit offsets */
}

size_t ftc_q8a_prepared_bytes(int type, int N, int I) {
    /* the tiles' N I / 32 entries of 40 bytes: 8 rows of SmolLM2's 1536 inputs are 15 KB, on the caller's stack */
    return ftc_q8a_avx512_tiles(type, I) ? (size_t)N * (size_t)(I / 32) * XE : 4 * (size_t)N * padded(I);
}

/* the tiles take the rows of X in chunks of at most 8, as even as can be: per rows a chunk (the last fewer) */
static int tile_chunk(int N) {
    const int chunks = (N + 7) / 8;
    return (N + chunks - 1) / chunks;
}

AVX512_FN void ftc_q8a_prepare_avx512(int type, const float *X, int N, int I, void *buf) {
    const int nb = I / 32;
    /* the weight's unsigned offset: w + 128 for Q8_0, the nibble n = (n - 8) + 8 for Q4_0 */
    const int k = type == FTC_GGML_Q8_0 ? 128 : type == FTC_GGML_Q4_0 ? 8 : 0;
    const __m256i vk = _mm256_set1_epi8((char)k);
    uint8_t *b = buf;
    if (ftc_q8a_avx512_tiles(type, I)) {
        const int per = tile_chunk(N);
        for (int n = 0; n < N; n++) {
            const int n0 = n / per * per, C = N - n0 < per ? N - n0 : per;
            uint8_t *e = b + (size_t)n0 * nb * XE + (size_t)(n - n0) * XE;
            for (int blk = 0; blk < nb; blk++, e += (size_t)C * XE) {
                float db, sb;
                ftc_q8a_quantize_avx2(X + (size_t)n * I + 32 * blk, 32, (int8_t *)e, &db, &sb); /* the same bits */
                const __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), vk, _mm256_loadu_si256((const __m256i *)e));
                __m128i h = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
                h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
                const int32_t cb = -_mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1)));
                if (type == FTC_GGML_Q4_1) memcpy(e + 32, &sb, 4); /* its start is 0: the slot holds s_x */
                else memcpy(e + 32, &cb, 4);
                memcpy(e + 36, &db, 4);
            }
        }
        return;
    }
    const size_t P = padded(I), rows = (size_t)N * P;
    memset(b, 0, 4 * rows); /* the padding: q 0, start 0, scales 0 */
    for (int n = 0; n < N; n++) {
        int8_t *q = (int8_t *)(b + (size_t)n * P);
        int32_t *c = (int32_t *)(b + rows + (size_t)n * P);
        float *d = (float *)(b + 2 * rows + (size_t)n * P), *s = (float *)(b + 3 * rows + (size_t)n * P);
        for (int blk = 0; blk < nb; blk++) {
            float db, sb;
            ftc_q8a_quantize_avx2(X + (size_t)n * I + 32 * blk, 32, q + 32 * blk, &db, &sb); /* the same bits */
            __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), vk, _mm256_load_si256((const __m256i *)(q + 32 * blk)));
            _mm256_store_si256((__m256i *)(c + 8 * blk), _mm256_sub_epi32(_mm256_setzero_si256(), sum));
            _mm256_store_ps(d + 8 * blk, _mm256_set1_ps(db));
            _mm256_store_ps(s + 8 * blk, _mm256_set1_ps(sb));
        }
    }
}

/* A pair of f16 scales (h1 0: the zero block) to [v0 x 8, v1 x 8]; sparse: [v0, 0 x 7, v1, 0 x 7] (Q4_1's m,
 * times s_x in all lanes: m s_x once per block) */
INLINE AVX512_FN __m512 halves(uint16_t h0, uint16_t h1, bool sparse) {
    __m512 f = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16))));
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return sparse ? _mm512_maskz_permutexvar_ps(0x0101, idx, f) : _mm512_permutexvar_ps(idx, f);
}

/* Blocks 2p, 2p+1 (two false: the row's last block alone) of a W row, as unsigned bytes in value order, their
 * d pair and (Q4_1) m pair */
INLINE AVX512_FN void wpair(int type, const uint8_t *w, int p, bool two, __m512i *v, __m512 *vd, __m512 *vm) {
    if (type == FTC_GGML_Q8_0) {
        const ftc_block_q8_0 *b = (const ftc_block_q8_0 *)w + 2 * p;
        __m256i lo = _mm256_loadu_si256((const __m256i *)b[0].qs);
        __m256i hi = two ? _mm256_loadu_si256((const __m256i *)b[1].qs) : _mm256_set1_epi8((char)0x80);
        *v = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), _mm512_set1_epi8((char)0x80));
        *vd = halves(b[0].d, two ? b[1].d : 0, false);
        return;
    }
    /* Q4: [qs0 qs0 qs1 qs1] in 128-bit parts, the odd parts shifted by 4: low nibbles (values 0-15), high (16-31) */
    const uint8_t *q0, *q1;
    uint16_t d0, d1 = 0, m0 = 0, m1 = 0;
    if (type == FTC_GGML_Q4_0) {
        const ftc_block_q4_0 *b = (const ftc_block_q4_0 *)w + 2 * p;
        q0 = b[0].qs, q1 = b[two].qs, d0 = b[0].d;
        if (two) d1 = b[1].d;
    } else {
        const ftc_block_q4_1 *b = (const ftc_block_q4_1 *)w + 2 * p;
        q0 = b[0].qs, q1 = b[two].qs, d0 = b[0].d, m0 = b[0].m;
        if (two) d1 = b[1].d, m1 = b[1].m;
    }
    __m512i z = _mm512_mask_blend_epi64(0xF0, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q0)),
                                        _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q1)));
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xFF00FF00, z, 4); /* the 16-bit words of parts 1 and 3 */
    *v = _mm512_and_si512(z, _mm512_set1_epi8(15)); /* two false: the zero block's bytes are the last block's, its scales 0 */
    *vd = halves(d0, d1, false);
    if (type == FTC_GGML_Q4_1) *vm = halves(m0, m1, true);
}

/* How far ahead in W each tile prefetches: whole rows (at least 4, the next decoding tile), at least this many
 * bytes, the same place in a row as the loads. qmatmul_bench --decode 1, one thread, CPU ms a step (loaded Xeon,
 * median of 9, 3 runs alternated): 4 rows ahead as the AVX2 kernels left Q4_0's 324-byte rows waiting (Q4_0 7.4,
 * Q4_1 8.4, Q8_0 10.6); 16 rows 6.1 / 7.3 / 10.5; 2 KB 6.2 / 7.6 / 10.4; 4 KB 6.0 / 7.2 / 10.2; 8 KB 6.0 / 7.2 / 10.2 */
enum { AHEAD_BYTES = 4096 };

/* Pair p of R rows of W times C prepared rows of X into acc [R x C] (row r, column c at r * C + c) */
INLINE AVX512_FN void pair_step(int type, const int R, const int C, const uint8_t *const *w, size_t ahead_bytes,
                                const prepared *x, int p, bool two, __m512 *acc) {
    const size_t bbytes = type == FTC_GGML_Q8_0   ? sizeof(ftc_block_q8_0)
                          : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0)
                                                  : sizeof(ftc_block_q4_1);
    __m512i v[4];
    __m512 vd[4], vm[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        /* rows down (AHEAD_BYTES), as the AVX2 kernels: the hardware prefetcher alone left them waiting on
         * memory. Q8_0's pair (68 bytes) can span 3 lines: its start and 64 bytes on; the next pair's start
         * takes the third. */
        const char *ahead = (const char *)w[r] + ahead_bytes + 2 * (size_t)p * bbytes;
        _mm_prefetch(ahead, _MM_HINT_T0);
        if (type == FTC_GGML_Q8_0) _mm_prefetch(ahead + 64, _MM_HINT_T0);
        wpair(type, w[r], p, two, &v[r], &vd[r], &vm[r]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        const size_t o = (size_t)c * x->P / 4 + 16 * (size_t)p; /* lanes of row c, pair p */
        const __m512i xv = _mm512_load_si512((const void *)(x->q + (size_t)c * x->P + 64 * (size_t)p));
        const __m512i start = _mm512_load_si512((const void *)(x->c + o));
        const __m512 xd = _mm512_load_ps(x->d + o);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, v[r], xv)); /* exact: sum w x per lane */
            acc[r * C + c] = _mm512_fmadd_ps(_mm512_mul_ps(vd[r], xd), f, acc[r * C + c]);
            if (type == FTC_GGML_Q4_1) acc[r * C + c] = _mm512_fmadd_ps(vm[r], _mm512_load_ps(x->s + o), acc[r * C + c]);
        }
    }
}

/* R rows of W (w; the caller may repeat a row to fill R) times C prepared rows of X into Y: row r, column c at Y[c * ldy + r], for r < Rs (the rows to store) */
INLINE AVX512_FN void tile(int type, const int R, const int C, int Rs, float *Y, int ldy, const uint8_t *const *w,
                           size_t ahead, const prepared *x, int nb, float beta) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < R * C; i++) acc[i] = _mm512_setzero_ps();
    for (int p = 0; p < nb / 2; p++) pair_step(type, R, C, w, ahead, x, p, true, acc);
    if (nb & 1) pair_step(type, R, C, w, ahead, x, nb / 2, false, acc);
    for (int r = 0; r < R && r < Rs; r++)
        for (int c = 0; c < C; c++) {
            float v = _mm512_reduce_add_ps(acc[r * C + c]), *y = Y + (size_t)c * ldy + r;
            *y = beta == 0.0f ? v : v + beta * *y;
        }
}

/* one instance per type and shape, so that the loops above unroll with R, C and the type known */
#define TILE_ARGS                                                                                                      \
    int Rs, float *Y, int ldy, const uint8_t *const *w, size_t ahead, const prepared *x, int nb, float beta
#define TILE_CALL(T, R, C) tile(T, R, C, Rs, Y, ldy, w, ahead, x, nb, beta)
#define TILE_TYPE(N, T)                                                                                                 \
    static AVX512_FN void matvec_##N(TILE_ARGS) { TILE_CALL(T, 4, 1); }                                              \
    static AVX512_FN void rows_##N(int C, TILE_ARGS) {                                                               \
        switch (C) {                                                                                                 \
        case 1: TILE_CALL(T, 2, 1); break;                                                                           \
        case 2: TILE_CALL(T, 2, 2); break;                                                                           \
        case 3: TILE_CALL(T, 2, 3); break;                                                                           \
        case 4: TILE_CALL(T, 2, 4); break;                                                                           \
        case 5: TILE_CALL(T, 2, 5); break;                                                                           \
        case 6: TILE_CALL(T, 2, 6); break;                                                                           \
        case 7: TILE_CALL(T, 2, 7); break;                                                                           \
        default: TILE_CALL(T, 2, 8); break;                                                                          \
        }                                                                                                            \
    }
TILE_TYPE(q8_0, FTC_GGML_Q8_0)
TILE_TYPE(q4_0, FTC_GGML_Q4_0)
TILE_TYPE(q4_1, FTC_GGML_Q4_1)

/* Q8_0, Q4_0 and Q4_1: tiles of 16 rows of W, one row a lane. Per block of 32 inputs, the tile's 16 W blocks are
 * transposed in registers to 8 vectors V_k, lane j = W row j's 4 values of dword k (unsigned: Q8_0 w + 128, Q4_0
 * the nibble; Q4_0's dword k low nibbles are the values 4k.., high 16 + 4k..), so each row of X takes 8 vpdpbusd
 * (its 4 bytes of dword k broadcast, the accumulator started at the block's cb) for the 16 rows' exact integer
 * block dots at once, then one conversion, d_w d_x in one multiply and one FMA: 11 vector ops per (block, 16 rows,
 * X row) against the pairs' 32 (4 per pair and row), where the transpose (about 40 ops per block and tile) is
 * shared by up to 8 rows of X. Each output is the scalar chain y = fma(dot_b, d_w d_x, y) over the blocks b in
 * order from 0 (Q4_1: then y = fma(m_w, s_x, y), its start 0 and the entry's start slot holding s_x), whatever the
 * lane, tile and batch: a row of X gets the same bits alone and in any batch. Tiles past the last row repeat the
 * last row (their lanes are not stored). */
/* The tile's block (16 rows at p + r * stride, r = 0..15): V[8] and the rows' d (lane j row j), Q4_1's m */
INLINE AVX512_FN void wblock16(int type, const uint8_t *p, size_t stride, __m512i goff, __m512i V[8], __m512 *vd,
                               __m512 *vm) {
    /* d: the block's first 2 bytes, Q4_1's m the next 2 (the gather's 4 stay inside the block) */
    const __m512i g = _mm512_i32gather_epi32(goff, (const void *)p, 1);
    *vd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    if (type == FTC_GGML_Q4_1) *vm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
    if (type == FTC_GGML_Q8_0) {
        /* Z_a = [row a | row a+4], Z_{4+a} = [row 8+a | row 12+a] (32 bytes of qs each); a 4 x 4 dword transpose
         * in each 128-bit lane of Z_0..3 (T) and Z_4..7 (U), then 128-bit lanes picked to rows 0-3, 4-7, 8-11, 12-15 */
        __m512i Z[8], T[8];
        for (int a = 0; a < 8; a++) {
            const int r0 = a < 4 ? a : 4 + a, r1 = r0 + 4;
            const uint8_t *q0 = p + (size_t)r0 * stride + 2, *q1 = p + (size_t)r1 * stride + 2;
            Z[a] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q0)),
                                      _mm256_loadu_si256((const __m256i *)q1), 1);
        }
        for (int h = 0; h < 8; h += 4) {
            const __m512i t0 = _mm512_unpacklo_epi32(Z[h], Z[h + 1]), t1 = _mm512_unpackhi_epi32(Z[h], Z[h + 1]);
            const __m512i t2 = _mm512_unpacklo_epi32(Z[h + 2], Z[h + 3]), t3 = _mm512_unpackhi_epi32(Z[h + 2], Z[h + 3]);
            T[h] = _mm512_unpacklo_epi64(t0, t2), T[h + 1] = _mm512_unpackhi_epi64(t0, t2);
            T[h + 2] = _mm512_unpacklo_epi64(t1, t3), T[h + 3] = _mm512_unpackhi_epi64(t1, t3);
        }
        const __m512i k80 = _mm512_set1_epi8((char)0x80);
        for (int k = 0; k < 4; k++) {
            V[k] = _mm512_xor_si512(_mm512_shuffle_i32x4(T[k], T[4 + k], _MM_SHUFFLE(2, 0, 2, 0)), k80);
            V[k + 4] = _mm512_xor_si512(_mm512_shuffle_i32x4(T[k], T[4 + k], _MM_SHUFFLE(3, 1, 3, 1)), k80);
        }
        return;
    }
    /* Q4_0 / Q4_1: Z_a = [row a | row a+4 | row a+8 | row a+12] (16 bytes of qs each, after d or d and m), a 4 x 4
     * dword transpose in each 128-bit lane: T_k lane j = row j's qs dword k */
    const size_t qoff = type == FTC_GGML_Q4_1 ? 4 : 2;
    __m512i Z[4];
    for (int a = 0; a < 4; a++) {
        const uint8_t *q = p + (size_t)a * stride + qoff;
        __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q));
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(q + 4 * stride)), 1);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(q + 8 * stride)), 2);
        Z[a] = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(q + 12 * stride)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(Z[0], Z[1]), t1 = _mm512_unpackhi_epi32(Z[0], Z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(Z[2], Z[3]), t3 = _mm512_unpackhi_epi32(Z[2], Z[3]);
    const __m512i T[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3),
                          _mm512_unpackhi_epi64(t1, t3)};
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int k = 0; k < 4; k++) {
        V[k] = _mm512_and_si512(T[k], m4);
        V[k + 4] = _mm512_and_si512(_mm512_srli_epi32(T[k], 4), m4);
    }
}

/* acc + vpdpbusd(a, 4 bytes at m in every lane): the broadcast embedded in the instruction ({1to16}), which GCC
 * leaves as a separate vpbroadcastd (on Zen 4 a dependent vpdpbusd chain with that broadcast ran at 1.37 cycles an
 * instruction, with the embedded one at 1.0: scratch loop, 12 chains) */
INLINE AVX512_FN __m512i dpbusd_bcast(__m512i acc, __m512i a, const int32_t *m) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*m));
    return acc;
}

/* 16 rows of W (from w, row_bytes apart; Rs < 16: rows past Rs - 1 repeat it, through a staging copy of each
 * block) times the C rows of X whose entries start at xe (the tiles' layout) into Y: row r, column c at
 * Y[c * ldy + r], r < Rs. next: where the next tile starts, prefetched over this tile's blocks (pf lines a block). */
INLINE AVX512_FN void tile16(int type, const int C, int Rs, float *Y, int ldy, const uint8_t *w, size_t row_bytes,
                             const uint8_t *next, size_t pf, const uint8_t *xe, int nb, float beta) {
    const size_t bbytes = type == FTC_GGML_Q8_0   ? sizeof(ftc_block_q8_0)
                          : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0)
                                                  : sizeof(ftc_block_q4_1);
    _Alignas(64) uint8_t stage[TILE * sizeof(ftc_block_q8_0)];
    const bool staged = Rs < TILE;
    const size_t stride = staged ? bbytes : row_bytes;
    const __m512i goff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)stride));
    const char *pfp = (const char *)next, *pfe = pfp + TILE * row_bytes;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
    __m512i V[8], Vn[8];
    __m512 vd, vdn, vm = _mm512_setzero_ps(), vmn = vm;
    /* software-pipelined: block b + 1's weights are read and transposed before block b's products */
    const uint8_t *p = w;
    if (staged) {
        for (int r = 0; r < TILE; r++) memcpy(stage + (size_t)r * bbytes, p + (size_t)(r < Rs ? r : Rs - 1) * row_bytes, bbytes);
        p = stage;
    }
    wblock16(type, p, stride, goff, Vn, &vdn, &vmn);
    for (int b = 0; b < nb; b++, xe += C * XE) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) V[k] = Vn[k];
        vd = vdn, vm = vmn;
        if (b + 1 < nb) {
            p = w + (size_t)(b + 1) * bbytes;
            if (staged) {
                for (int r = 0; r < TILE; r++) memcpy(stage + (size_t)r * bbytes, p + (size_t)(r < Rs ? r : Rs - 1) * row_bytes, bbytes);
                p = stage;
            }
            wblock16(type, p, stride, goff, Vn, &vdn, &vmn);
        }
        for (size_t l = 0; l < pf && pfp < pfe; l++, pfp += 64) _mm_prefetch(pfp, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const int32_t *xq = (const int32_t *)(xe + c * XE);
            __m512i s = type == FTC_GGML_Q4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(xq[8]);
            if (C <= 2) { /* two chains (integer: the same sum in any order) for the latency */
                __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) s = dpbusd_bcast(s, V[k], xq + k), s1 = dpbusd_bcast(s1, V[k + 1], xq + k + 1);
                s = _mm512_add_epi32(s, s1);
            } else {
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) s = dpbusd_bcast(s, V[k], xq + k);
            }
            float dx;
            memcpy(&dx, xe + c * XE + 36, 4);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(vd, _mm512_set1_ps(dx)), acc[c]);
            if (type == FTC_GGML_Q4_1) { /* + m_w s_x */
                float sx;
                memcpy(&sx, xe + c * XE + 32, 4);
                acc[c] = _mm512_fmadd_ps(vm, _mm512_set1_ps(sx), acc[c]);
            }
        }
    }
    const __mmask16 m = (__mmask16)((1u << Rs) - 1);
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        float *y = Y + (size_t)c * ldy;
        __m512 v = acc[c];
        if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, y)));
        _mm512_mask_storeu_ps(y, m, v);
    }
}

#define T16_ARGS int Rs, float *Y, int ldy, const uint8_t *w, size_t row_bytes, const uint8_t *next, size_t pf, const uint8_t *xe, int nb, float beta
#define T16_CALL(T, C) tile16(T, C, Rs, Y, ldy, w, row_bytes, next, pf, xe, nb, beta)
#define T16_TYPE(N, T)                                                                                                 \
    static AVX512_FN void t16_##N(int C, T16_ARGS) {                                                                  \
        switch (C) {                                                                                                 \
        case 1: T16_CALL(T, 1); break;                                                                               \
        case 2: T16_CALL(T, 2); break;                                                                               \
        case 3: T16_CALL(T, 3); break;                                                                               \
        case 4: T16_CALL(T, 4); break;                                                                               \
        case 5: T16_CALL(T, 5); break;                                                                               \
        case 6: T16_CALL(T, 6); break;                                                                               \
        case 7: T16_CALL(T, 7); break;                                                                               \
        default: T16_CALL(T, 8); break;                                                                              \
        }                                                                                                            \
    }
T16_TYPE(q8_0, FTC_GGML_Q8_0)
T16_TYPE(q4_0, FTC_GGML_Q4_0)
T16_TYPE(q4_1, FTC_GGML_Q4_1)

/* Rows [o0, o1) of W times the N prepared rows of X (buf, ftc_q8a_prepare_avx512) into Y [N, O] columns o0..o1
 * (Y = v, or v + beta Y). One row of X: 4 rows of W a tile; more: chunks of at most 8 rows of X (even), each over
 * the range's rows of W two at a time (the chunk's bytes stay in L1 while W streams). */
AVX512_FN void ftc_q8a_matrows_avx512(int type, float *Y, const void *buf, int N, const void *W, size_t row_bytes,
                                      int I, int O, int o0, int o1, float beta) {
    const prepared x = rows_of(buf, N, I);
    const int nb = I / 32;
    if (ftc_q8a_avx512_tiles(type, I)) {
        const int per = tile_chunk(N);
        const size_t pf = (TILE * row_bytes / 64 + nb) / nb; /* lines of the next tile a block: all of it by the last */
        for (int n = 0; n < N; n += per) {
            const int C = N - n < per ? N - n : per;
            const uint8_t *xe = (const uint8_t *)buf + (size_t)n * nb * XE;
            for (int o = o0; o < o1; o += TILE) {
                const int Rs = o1 - o < TILE ? o1 - o : TILE;
                const uint8_t *w = (const uint8_t *)W + (size_t)o * row_bytes;
                const uint8_t *next = w + TILE * row_bytes; /* past the range or W too: a prefetch does not fault */
                float *Yn = Y + (size_t)n * O + o;
                if (type == FTC_GGML_Q8_0) t16_q8_0(C, Rs, Yn, O, w, row_bytes, next, pf, xe, nb, beta);
                else if (type == FTC_GGML_Q4_0) t16_q4_0(C, Rs, Yn, O, w, row_bytes, next, pf, xe, nb, beta);
                else t16_q4_1(C, Rs, Yn, O, w, row_bytes, next, pf, xe, nb, beta);
            }
        }
        return;
    }
    const int R = N == 1 ? 4 : 2;
    const size_t rows_ahead = (AHEAD_BYTES + row_bytes - 1) / row_bytes;
    const size_t ahead = (rows_ahead > 4 ? rows_ahead : 4) * row_bytes;
    const int chunks = (N + 7) / 8, per = (N + chunks - 1) / chunks;
    for (int n = 0; n < N; n += per) {
        const int C = N - n < per ? N - n : per;
        const prepared xn = {x.q + (size_t)n * x.P, x.c + (size_t)n * x.P / 4, x.d + (size_t)n * x.P / 4,
                             x.s + (size_t)n * x.P / 4, x.P};
        for (int o = o0; o < o1; o += R) {
            const int Rs = o1 - o < R ? o1 - o : R;
            const uint8_t *w[4];
            for (int r = 0; r < R; r++) w[r] = (const uint8_t *)W + (size_t)(o + (r < Rs ? r : 0)) * row_bytes;
            float *Yn = Y + (size_t)n * O + o;
            if (N == 1) {
                if (type == FTC_GGML_Q8_0) matvec_q8_0(Rs, Yn, O, w, ahead, &xn, nb, beta);
                else if (type == FTC_GGML_Q4_0) matvec_q4_0(Rs, Yn, O, w, ahead, &xn, nb, beta);
                else matvec_q4_1(Rs, Yn, O, w, ahead, &xn, nb, beta);
            } else if (type == FTC_GGML_Q8_0) rows_q8_0(C, Rs, Yn, O, w, ahead, &xn, nb, beta);
            else if (type == FTC_GGML_Q4_0) rows_q4_0(C, Rs, Yn, O, w, ahead, &xn, nb, beta);
            else rows_q4_1(C, Rs, Yn, O, w, ahead, &xn, nb, beta);
        }
    }
}

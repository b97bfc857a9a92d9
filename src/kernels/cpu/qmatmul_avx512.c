/* Generation's products on Q8_0 / Q4_0 / Q4_1 weights with 8-bit activations in AVX-512 VNNI (issue 24): the
 * integer arithmetic of the portable twin (qmatmul_q8act.c: per (W block, X block) pair the exact integer dot
 * product, scaled once by d_w d_x in f32, Q4_1 plus m_w s_x), with vpdpbusd (64 byte products an instruction,
 * against AVX2's vpmaddubsw + vpmaddwd on 32).
 *
 * vpdpbusd multiplies unsigned by signed bytes. The activations stay signed (the quantizer's bytes, broadcast from
 * memory); the weight is made unsigned and the difference taken back exactly through the accumulator's start:
 *   Q8_0  w + 128 (xor 0x80)   start -128 sum x      Q4_0  the nibble n    start -8 sum x     Q4_1  n   start 0
 * (sum x over the block: each row of X is prepared once per product, ftc_q8a_prepare_avx512). Tiles of 16 rows of
 * W, one row a lane (below): the f32 sums run in another order than the portable twin's, so the results agree
 * within f32 rounding (test_quant), not to the bit; every (W row, X row) takes the same operations in the same
 * order in every tile, so a sequence gets the same bits alone and in a batch (test_quant, test_decode_batch).
 * Compiled with target attributes; qmatmul_q8act.c calls in when ftc_vm_isa() == 2, the CPU has AVX-512 VNNI, BW
 * and VL (ftc_q8a_avx512_ok) and the rows fit the tiles' 32-bit gather offsets (ftc_q8a_avx512_tiles; else the
 * AVX2 kernels). Until 2026-12-04 two-block "pair" kernels did this (4 vector ops per pair, W row and X row; see
 * docs/kernels.md and the git history). */
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

/* The prepared rows (one buffer): the rows in the chunks the tiles take them (tile_chunk), chunk n0 of C rows at
 * byte n0 * I / 32 * 40, there for each block b and row c (C - 1 at most 7) 40 bytes at (b * C + c) * 40: the
 * block's 32 bytes of q, its whole start (int32: -128 or -8 times its sum of q; Q4_1: s_x, f32) and d_x (f32), so
 * that a tile reaches all of a block's activations from one pointer. */
enum { TILE = 16, XE = 40 /* bytes of a (block, row of X) entry of the tiles' layout */ };

/* How far ahead a tile prefetches W, in bytes (rounded up to whole tiles), and into L2 (T1), not L1: on Zen 4 one
 * thread streamed a decoding step's Q8_0 weights (SmolLM2, one row, 143 MB) at 10.2 GB/s prefetching the next tile
 * into L1 and at 26 GB/s prefetching 24 KB ahead into L2 (Q4_0 14 -> 21 GB/s; a plain sequential read of 150 MB
 * on one core: 30 GB/s). Into L1 the next tile (26 KB at 1536 inputs) evicted the one being read (L1 32 KB), and
 * one tile ahead (5 to 10 KB at 576 inputs) did not cover the memory's latency. 12 to 48 KB ahead: the same. */
enum { PF_AHEAD_BYTES = 24576 };

bool ftc_q8a_avx512_tiles(int type, int I) {
    return (type == FTC_GGML_Q8_0 || type == FTC_GGML_Q4_0 || type == FTC_GGML_Q4_1) &&
           ftc_quant_row_bytes(type, I) <= (size_t)INT32_MAX / TILE; /* Q8_0's d gather: 32-bit offsets */
}

size_t ftc_q8a_prepared_bytes(int type, int N, int I) {
    (void)type; /* N I / 32 entries of 40 bytes: 8 rows of SmolLM2's 1536 inputs are 15 KB, on the caller's stack */
    return (size_t)N * (size_t)(I / 32) * XE;
}

/* the tiles take the rows of X in chunks of at most 8, as even as can be: per rows a chunk (the last fewer) */
static int tile_chunk(int N) {
    const int chunks = (N + 7) / 8;
    return (N + chunks - 1) / chunks;
}

/* max |x| of 16 blocks of 32 floats (x, 32 apart; blocks past cnt read as 0) into lane j = block j: the 16 blocks'
 * 16-lane maxima reduced together (halves by vshuff32x4, then 4 x 4 in-lane unpacks), about 3 vector ops a block
 * where one block's own reduction took 8. max is exact: the same amax as any order for finite x. */
INLINE AVX512_FN __m512 amax16(const float *x, int cnt) {
    __m512 m[16];
    const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
        m[j] = j < cnt ? _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * j)), _mm512_abs_ps(_mm512_loadu_ps(x + 32 * j + 16)))
                       : z;
    __m512 u[8], v[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* 128-bit lanes: block i's two halves' maxima, block i + 8's */
        u[i] = _mm512_max_ps(_mm512_shuffle_f32x4(m[i], m[i + 8], 0x44), _mm512_shuffle_f32x4(m[i], m[i + 8], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* 128-bit lanes: blocks i, i + 8, i + 4, i + 12, 4 values each */
        v[i] = _mm512_max_ps(_mm512_shuffle_f32x4(u[i], u[i + 4], 0x88), _mm512_shuffle_f32x4(u[i], u[i + 4], 0xDD));
    const __m512 w0 = _mm512_max_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
    const __m512 w1 = _mm512_max_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
    const __m512 r = _mm512_max_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(w0), _mm512_castps_pd(w1))),
                                   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(w0), _mm512_castps_pd(w1))));
    return _mm512_shuffle_f32x4(r, r, 0xD8); /* lanes (0-3, 8-11, 4-7, 12-15) -> in order */
}

AVX512_FN void ftc_q8a_prepare_avx512(int type, const float *X, int N, int I, void *buf) {
    const int nb = I / 32;
    /* the weight's unsigned offset: w + 128 for Q8_0, the nibble n = (n - 8) + 8 for Q4_0 */
    const int k = type == FTC_GGML_Q8_0 ? 128 : type == FTC_GGML_Q4_0 ? 8 : 0;
    uint8_t *b = buf;
    const int per = tile_chunk(N);
    for (int n = 0; n < N; n++) {
        const int n0 = n / per * per, C = N - n0 < per ? N - n0 : per;
        uint8_t *e = b + (size_t)n0 * nb * XE + (size_t)(n - n0) * XE;
        for (int g = 0; g < nb; g += 16) {
            /* ftc_q8a_quantize_avx2's arithmetic (the same bits), 16 blocks at a time: d = max|x| / 127 and 1 / d
             * (0 for d = 0) per lane, then per block q = round-to-nearest-even(x (1 / d)) saturated to int8
             * (vpmovsdb: int32 -> int8 in one step, as the int16 then int8 saturating packs), s = d sum q. A call
             * to the AVX2 quantizer per block took 35 cycles a block, about 5% of an 8-row decode step. */
            const int cnt = nb - g < 16 ? nb - g : 16;
            const float *xg = X + (size_t)n * I + 32 * g;
            const __m512 vdb = _mm512_div_ps(amax16(xg, cnt), _mm512_set1_ps(127.0f));
            const __m512 vid = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(vdb, _mm512_setzero_ps(), _CMP_NEQ_UQ),
                                                   _mm512_set1_ps(1.0f), vdb);
            float dbs[16], ids[16];
            _mm512_storeu_ps(dbs, vdb), _mm512_storeu_ps(ids, vid);
            for (int j = 0; j < cnt; j++, e += (size_t)C * XE) {
                const float *xb = xg + 32 * j, db = dbs[j];
                const __m512 id = _mm512_set1_ps(ids[j]);
                const __m256i q = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb), id)))),
                    _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16), id))), 1);
                _mm256_storeu_si256((__m256i *)e, q);
                /* sum q (exact int32), then the start: Q8_0 -128 sum q, Q4_0 -8 sum q; Q4_1 s = d sum q */
                const __m256i s8 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), q);
                __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
                h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
                const int32_t sum = _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1))), cb = -k * sum;
                const float sb = db * (float)sum;
                if (type == FTC_GGML_Q4_1) memcpy(e + 32, &sb, 4); /* its start is 0: the slot holds s_x */
                else memcpy(e + 32, &cb, 4);
                memcpy(e + 36, &db, 4);
            }
        }
    }
}

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
/* the 16 rows' 2-byte words at p + r * stride (r = 0..15), word r = row r: packed 4 to a general register by shifts
 * and ors, the 4 registers then moved to one ymm (5 vector ops; 16 vector inserts and their merging, as GCC makes
 * of 16 loads into a vector, took FP2/FP3 slots that the 8-row tile's vpdpbusd then lost on Zen 4). The empty asm
 * keeps GCC from turning the merges back into vector inserts. */
INLINE AVX512_FN __m256i words16(const uint8_t *p, size_t stride) {
    uint64_t a[4];
    const size_t s3 = 3 * stride;
    for (int i = 0; i < 4; i++) {
        const uint8_t *r = p + (size_t)(4 * i) * stride; /* rows 4i..4i+3: r, r + s, r + 2s, r + 3s */
        uint16_t h0, h1, h2, h3;
        memcpy(&h0, r, 2), memcpy(&h1, r + stride, 2), memcpy(&h2, r + 2 * stride, 2), memcpy(&h3, r + s3, 2);
        uint64_t v = h0 | (uint64_t)h1 << 16 | (uint64_t)h2 << 32 | (uint64_t)h3 << 48;
        __asm__("" : "+r"(v));
        a[i] = v;
    }
    return _mm256_setr_epi64x((long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3]);
}

/* The tile's block (16 rows at p + r * stride, r = 0..15): V[8] and the rows' d (lane j row j), Q4_1's m */
INLINE AVX512_FN void wblock16(int type, int C, const uint8_t *p, size_t stride, __m512i goff, __m512i V[8], __m512 *vd,
                               __m512 *vm) {
    /* d: the block's first 2 bytes, Q4_1's m the next 2. Q4_0 / Q4_1: read by scalar loads merged in general
     * registers (Q4_0 words16; Q4_1 d and m 4 bytes a row, 2 rows a register; the integer pipes are idle there,
     * and a 16-lane vpgatherdd took about 12% of Q4_1's 8-row tile on Zen 4); Q8_0 words16 for 2+ rows of X, the
     * gather for one (its one-row stream from memory ran 56-62 cycles a block-tile with the gather, 79-97 with
     * words16, for a reason not found: the tile is the same otherwise). The same values either way. */
    if (type == FTC_GGML_Q8_0 && C > 1) *vd = _mm512_cvtph_ps(words16(p, stride)); /* 8 rows: 107-111 -> 95-103 cycles */
    else if (type == FTC_GGML_Q8_0) *vd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(goff, (const void *)p, 1)));
    else {
        (void)goff;
        if (type == FTC_GGML_Q4_0) *vd = _mm512_cvtph_ps(words16(p, stride));
        else {
            uint64_t a[8];
            for (int i = 0; i < 8; i++) {
                uint32_t lo, hi;
                memcpy(&lo, p + (size_t)(2 * i) * stride, 4);
                memcpy(&hi, p + (size_t)(2 * i + 1) * stride, 4);
                a[i] = lo | (uint64_t)hi << 32;
                __asm__("" : "+r"(a[i])); /* merged in a general register (as words16) */
            }
            const __m512i g = _mm512_setr_epi64((long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
                                                (long long)a[4], (long long)a[5], (long long)a[6], (long long)a[7]);
            *vd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
            *vm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
        }
    }
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
    for (int a = 0; a < 4; a++) { /* two ymm inserts and one zmm insert (three zmm inserts cost the 8-row tile 3%) */
        const uint8_t *q = p + (size_t)a * stride + qoff;
        const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                                                   _mm_loadu_si128((const __m128i *)(q + 4 * stride)), 1);
        const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(q + 8 * stride))),
                                                   _mm_loadu_si128((const __m128i *)(q + 12 * stride)), 1);
        Z[a] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(Z[0], Z[1]), t1 = _mm512_unpackhi_epi32(Z[0], Z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(Z[2], Z[3]), t3 = _mm512_unpackhi_epi32(Z[2], Z[3]);
    /* V[0..3] = T_k, the packed bytes; the tile takes the nibbles out (nibbles) when the block's products begin,
     * so that the next block waits in 4 registers, not 8 (at 8 rows of X the 8 cost zmm spills every block) */
    V[0] = _mm512_unpacklo_epi64(t0, t2), V[1] = _mm512_unpackhi_epi64(t0, t2);
    V[2] = _mm512_unpacklo_epi64(t1, t3), V[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Q4_0 / Q4_1: V[0..3] = T_k (wblock16) -> the unsigned values: V[k] the low nibbles of T_k (values 4k..4k+3 of
 * each row), V[k + 4] the high ones (values 16 + 4k..) */
INLINE AVX512_FN void nibbles(const __m512i T[4], __m512i V[8]) {
    const __m512i m4 = _mm512_set1_epi8(15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) V[k + 4] = _mm512_and_si512(_mm512_srli_epi32(T[k], 4), m4), V[k] = _mm512_and_si512(T[k], m4);
}

/* acc + vpdpbusd(a, 4 bytes at m in every lane): the broadcast embedded in the instruction ({1to16}), which GCC
 * leaves as a separate vpbroadcastd (on Zen 4 a dependent vpdpbusd chain with that broadcast ran at 1.37 cycles an
 * instruction, with the embedded one at 1.0: scratch loop, 12 chains) */
INLINE AVX512_FN __m512i dpbusd_bcast(__m512i acc, __m512i a, const int32_t *m) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*m));
    return acc;
}

/* acc[c] += the block's products of the 16 rows (V, vd, Q4_1's vm) with rows c < C of X (entries at xe), the rows'
 * vpdpbusd chains interleaved GRP at a time */
INLINE AVX512_FN void rows_grouped(int type, const int C, const int GRP, const __m512i V[8], __m512 vd, __m512 vm,
                                   const uint8_t *xe, __m512 acc[8]) {
#pragma GCC unroll 8
    for (int c0 = 0; c0 < C; c0 += GRP) {
        __m512i S[8];
#pragma GCC unroll 8
        for (int j = 0; j < GRP; j++) {
            const int32_t *xq = (const int32_t *)(xe + (c0 + j < C ? c0 + j : c0) * XE);
            S[j] = type == FTC_GGML_Q4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(xq[8]);
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
#pragma GCC unroll 8
            for (int j = 0; j < GRP; j++)
                if (c0 + j < C) S[j] = dpbusd_bcast(S[j], V[k], (const int32_t *)(xe + (c0 + j) * XE) + k);
#pragma GCC unroll 8
        for (int j = 0; j < GRP; j++) {
            const int c = c0 + j;
            if (c >= C) break;
            float dx;
            memcpy(&dx, xe + c * XE + 36, 4);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[j]), _mm512_mul_ps(vd, _mm512_set1_ps(dx)), acc[c]);
            if (type == FTC_GGML_Q4_1) { /* + m_w s_x */
                float sx;
                memcpy(&sx, xe + c * XE + 32, 4);
                acc[c] = _mm512_fmadd_ps(vm, _mm512_set1_ps(sx), acc[c]);
            }
        }
    }
}

/* 16 rows of W (from w, row_bytes apart; Rs < 16: rows past Rs - 1 repeat it, through a staging copy of each
 * block) times the C rows of X whose entries start at xe (the tiles' layout) into Y: row r, column c at
 * Y[c * ldy + r], r < Rs. next: the tile PF_AHEAD_BYTES on, prefetched into L2 over this tile's blocks (pf lines a
 * block). */
INLINE AVX512_FN void tile16(int type, const int C, int Rs, float *Y, int ldy, const uint8_t *w, size_t row_bytes,
                             const uint8_t *next, size_t pf, const uint8_t *xe, int nb, float beta) {
    const size_t bbytes = type == FTC_GGML_Q8_0   ? sizeof(ftc_block_q8_0)
                          : type == FTC_GGML_Q4_0 ? sizeof(ftc_block_q4_0)
                                                  : sizeof(ftc_block_q4_1);
    _Alignas(64) uint8_t stage[TILE * sizeof(ftc_block_q8_0)];
    const bool staged = Rs < TILE;
    const size_t stride = staged ? bbytes : row_bytes;
    const __m512i goff = type == FTC_GGML_Q8_0 ? _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                                       11, 12, 13, 14, 15),
                                                                     _mm512_set1_epi32((int)stride))
                                               : _mm512_setzero_si512();
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
    wblock16(type, C, p, stride, goff, Vn, &vdn, &vmn);
    for (int b = 0; b < nb; b++, xe += C * XE) {
        if (type == FTC_GGML_Q8_0) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) V[k] = Vn[k];
        } else
            nibbles(Vn, V);
        vd = vdn, vm = vmn;
        if (b + 1 < nb) {
            p = w + (size_t)(b + 1) * bbytes;
            if (staged) {
                for (int r = 0; r < TILE; r++) memcpy(stage + (size_t)r * bbytes, p + (size_t)(r < Rs ? r : Rs - 1) * row_bytes, bbytes);
                p = stage;
            }
            wblock16(type, C, p, stride, goff, Vn, &vdn, &vmn);
        }
        for (size_t l = 0; l < pf && pfp < pfe; l++, pfp += 64) _mm_prefetch(pfp, _MM_HINT_T1);
        if (C <= 2) {
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const int32_t *xq = (const int32_t *)(xe + c * XE);
            __m512i s = type == FTC_GGML_Q4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(xq[8]);
            __m512i s1 = _mm512_setzero_si512(); /* two chains (integer: the same sum in any order) for the latency */
#pragma GCC unroll 8
            for (int k = 0; k < 8; k += 2) s = dpbusd_bcast(s, V[k], xq + k), s1 = dpbusd_bcast(s1, V[k + 1], xq + k + 1);
            s = _mm512_add_epi32(s, s1);
            float dx;
            memcpy(&dx, xe + c * XE + 36, 4);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(vd, _mm512_set1_ps(dx)), acc[c]);
            if (type == FTC_GGML_Q4_1) { /* + m_w s_x */
                float sx;
                memcpy(&sx, xe + c * XE + 32, 4);
                acc[c] = _mm512_fmadd_ps(vm, _mm512_set1_ps(sx), acc[c]);
            }
        }
        } else {
        /* C > 2: the rows' chains interleaved, k outer (integer sums: the same bits), in groups of 8 rows, Q8_0 4
         * (its transpose holds more registers); 8-row tiles 4-9% faster than one row's chain after another's */
            if (type == FTC_GGML_Q8_0) rows_grouped(type, C, 4, V, vd, vm, xe, acc);
            else rows_grouped(type, C, 8, V, vd, vm, xe, acc);
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
 * (Y = v, or v + beta Y): chunks of at most 8 rows of X (tile_chunk), each over the range's rows of W 16 at a time
 * (the chunk's activations stay in L1 while W streams). */
AVX512_FN void ftc_q8a_matrows_avx512(int type, float *Y, const void *buf, int N, const void *W, size_t row_bytes,
                                      int I, int O, int o0, int o1, float beta) {
    const int nb = I / 32, per = tile_chunk(N);
    const size_t pf = (TILE * row_bytes / 64 + nb) / nb; /* lines of a tile a block: all of it by the last */
    const size_t tb = TILE * row_bytes, ahead = PF_AHEAD_BYTES <= tb ? 1 : (PF_AHEAD_BYTES + tb - 1) / tb;
    /* a range's first tiles, all at once: the tile before them may have been another thread's (its prefetch of
     * this range's start then went to that thread's L2), and tile t prefetches tile t + ahead */
    const char *r0 = (const char *)W + (size_t)o0 * row_bytes, *r1 = (const char *)W + (size_t)o1 * row_bytes;
    const char *re = (size_t)(r1 - r0) < ahead * tb ? r1 : r0 + ahead * tb;
    for (const char *q = r0 + tb; q < re; q += 64) _mm_prefetch(q, _MM_HINT_T1);
    for (int n = 0; n < N; n += per) {
        const int C = N - n < per ? N - n : per;
        const uint8_t *xe = (const uint8_t *)buf + (size_t)n * nb * XE;
        for (int o = o0; o < o1; o += TILE) {
            const int Rs = o1 - o < TILE ? o1 - o : TILE;
            const uint8_t *w = (const uint8_t *)W + (size_t)o * row_bytes;
            const uint8_t *next = w + ahead * tb; /* past the range or W too: a prefetch does not fault; past the
                                                      * range it is the next chunk's start, often this thread's */
            float *Yn = Y + (size_t)n * O + o;
            if (type == FTC_GGML_Q8_0) t16_q8_0(C, Rs, Yn, O, w, row_bytes, next, pf, xe, nb, beta);
            else if (type == FTC_GGML_Q4_0) t16_q4_0(C, Rs, Yn, O, w, row_bytes, next, pf, xe, nb, beta);
            else t16_q4_1(C, Rs, Yn, O, w, row_bytes, next, pf, xe, nb, beta);
        }
    }
}

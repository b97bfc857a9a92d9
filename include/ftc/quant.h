/* Block-quantized weights (ggml's Q8_0, Q4_0, Q4_1 and Q4_K layouts): the block structs, quantizers from f32,
 * dequantizers to f32, and the fused matmuls a frozen quantized base trains through (docs/quant.md).
 *
 * The one place the block layouts live: the GGUF reader (src/io/gguf.c) dequantizes these types through
 * the same structs and functions. A row of n values (n a multiple of the block size) is n / block blocks,
 * stored one after another; a weight [O, I] is O such rows. Scales are IEEE f16 bits, little-endian (the
 * structs are read in place: little-endian hosts only, checked at compile time where the compiler says).
 *
 * Quantizers are bit-identical to the references (tools/gen_quant_fixtures.py, tests/test_quant.c):
 *   Q8_0, Q4_0, Q4_1   gguf.quants.quantize of the PyPI gguf package (numpy, f32 arithmetic)
 *   Q4_K               ggml's quantize_row_q4_K_ref (gguf has no Q4_K quantizer), compiled without FMA
 *   NF4, NF4DQ         bitsandbytes 0.50.2's quantize_4bit (nf4, blocksize 64; NF4DQ with compress_statistics);
 *                      dequantization bit-identical to its CPU library (tools/gen_nf4_fixtures.py)
 * for finite inputs (NaN/inf inputs give unspecified blocks). */
#ifndef FTC_QUANT_H
#define FTC_QUANT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ftc/gguf.h" /* ftc_ggml_type */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ftc's quantized blocks are read in place: little-endian hosts only"
#endif

typedef struct { uint16_t d; int8_t qs[32]; } ftc_block_q8_0;           /* x = d * q */
typedef struct { uint16_t d; uint8_t qs[16]; } ftc_block_q4_0;          /* x = d * (q - 8); qs[i] = q[i] | q[i+16] << 4 */
typedef struct { uint16_t d, m; uint8_t qs[16]; } ftc_block_q4_1;       /* x = d * q + m; nibbles as Q4_0 */
/* Super-block of 256 = 8 groups of 32: x = d * sc[g] * q - dmin * mn[g], 6-bit sc/mn packed in scales[12]
 * (ftc_q4k_scale_min); qs[32 * (g / 2) + l] holds group g's value l in its low (g even) or high nibble. */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } ftc_block_q4_k;
/* NF4 (QLoRA's 4-bit NormalFloat, bitsandbytes' layout of the values): 64 values, x = absmax * NF4[q], q the
 * index into the 16 normal-quantile levels; byte j holds value 2j in its high nibble, 2j+1 in its low one. Not a
 * ggml type: FTC_QUANT_NF4 is outside ggml's numbers. No double quantization of absmax (f32 per block). */
#define FTC_QUANT_NF4 1000
typedef struct { float absmax; uint8_t qs[32]; } ftc_block_nf4;
_Static_assert(sizeof(ftc_block_nf4) == 36, "NF4 block is 36 bytes");
/* NF4 with double quantization (bitsandbytes' quantize_4bit(..., compress_statistics=True), as QLoRA stores its
 * base): the nibbles as NF4, but the f32 absmax of each block (the tensor's blocks in row-major order, k = 0..nb-1)
 * kept as absmax[k] = DYN[qabsmax[k]] * scale2[k / 256] + offset, with offset the mean of all nb absmax values,
 * scale2 the f32 absmax of (absmax - offset) over each group of 256 blocks (the last group may be shorter) and
 * DYN bitsandbytes' 8-bit dynamic map (ftc_nf4dq_code). Its rows are not independent: a weight [O, I] is O rows
 * of I / 64 blocks (33 bytes each), then at ftc_nf4dq_tail(O, I) (64-aligned) the f32 offset and the f32
 * scale2[ceil(nb / 256)]: ftc_quant_tensor_bytes in all, 4.127 bits a value (NF4: 4.5). Quantize and dequantize
 * it whole (ftc_quantize_tensor, ftc_dequantize_tensor); the row functions leave it alone. */
#define FTC_QUANT_NF4DQ 1001
typedef struct { uint8_t qabsmax; uint8_t qs[32]; } ftc_block_nf4dq;
_Static_assert(sizeof(ftc_block_nf4dq) == 33, "NF4DQ block is 33 bytes");
enum { FTC_NF4DQ_GROUP = 256 };
static inline size_t ftc_nf4dq_tail(int64_t O, int64_t I) {
    return ((size_t)O * (size_t)(I / 64) * sizeof(ftc_block_nf4dq) + 63) & ~(size_t)63;
}
/* bitsandbytes' create_dynamic_map() (signed, 7 exponent bits, 256 entries sorted) as torch computes it, f32 */
const float *ftc_nf4dq_code(void);
/* The mean of the n / 64 block absmax values of x as torch's absmax.mean() computes it on the CPU: its f32 cascade
 * sum in the order of one thread with 8-lane vectors (AVX2), divided by the count in f32 (docs/quant.md) */
float ftc_nf4dq_offset(const float *x, int64_t n);
/* The same mean from the nb block absmax values already computed (ftc_nf4_absmax_blocks: a weight read in pieces) */
float ftc_nf4dq_offset_absmax(const float *absmax, int64_t nb);
/* The f32 absmax of each of the nb blocks of 64 values in x, as NF4 and NF4DQ compute it */
void ftc_nf4_absmax_blocks(const float *x, int64_t nb, float *absmax);
/* Quantizes the blocks of groups [g0, g1) of a weight [O, I] into W, writing their scale2 entries, and (g0 == 0) the
 * offset: groups are independent once the offset is known (the loaders split them). x holds the values from group
 * g0's first block on (the weight's value g0 * 256 * 64): the whole weight, or a piece of it. */
void ftc_nf4dq_quantize_groups(const float *x, void *W, int64_t O, int64_t I, float offset, int64_t g0, int64_t g1);
_Static_assert(sizeof(ftc_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(ftc_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(ftc_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(ftc_block_q4_k) == 144, "Q4_K block is 144 bytes");

/* The 6-bit scale and min of group g (0..7) of a K-quant super-block's 12 scale bytes (Q4_K, Q5_K). */
static inline void ftc_q4k_scale_min(const uint8_t *s, int g, int *sc, int *m) {
    if (g < 4) {
        *sc = s[g] & 63;
        *m = s[4 + g] & 63;
    } else {
        *sc = (s[8 + g - 4] & 15) | ((s[g - 4] >> 2) & 0x30);
        *m = (s[8 + g - 4] >> 4) | ((s[4 + g - 4] >> 2) & 0x30);
    }
}

/* Whether type is one of the six above. */
bool ftc_quant_supported(int type);
/* Values per block (32, 64 or 256) and bytes per block; 0 for an unsupported type. */
int ftc_quant_block(int type);
int ftc_quant_block_bytes(int type);
/* Bytes of a row of n values (n a multiple of the block), 0 if unsupported or not a multiple. */
size_t ftc_quant_row_bytes(int type, int64_t n);
/* "q8_0", "q4_0", "q4_1", "q4_k", "nf4", "nf4dq" <-> type; -1 for any other name. */
int ftc_quant_from_name(const char *name);
const char *ftc_quant_name(int type);

/* The type a row of n values is stored in for a requested type: itself when n is a multiple of its block;
 * for Q4_K (256) otherwise Q4_1 (same 4 bits with a min, block 32) when that fits; else -1 (keep f32). */
int ftc_quant_type_for_row(int type, int64_t n);
/* The type the LM head (tied to the token embedding or not) of a base quantized to `type` is stored in, rows of n
 * values: Q8_0 for every supported type when 32 divides n, else -1 (keep f32). llama.cpp's llama-quantize gives
 * its output tensor (and a tied token_embd, which is the same tensor) Q8_0 in a Q8_0 file and Q6_K in a Q4_0 /
 * Q4_1 / Q4_K file, Q6_K falling back to Q8_0 where 256 does not divide the row (SmolLM2's 576: Q8_0 in both);
 * ftc has no Q6_K, so Q8_0 (8.5 bits a value, against Q6_K's 6.56) is its rule for every base type. */
int ftc_quant_type_for_output(int type, int64_t n);
/* Bytes of a weight [O, I] in type (O rows of ftc_quant_row_bytes, plus NF4DQ's tail); 0 if unsupported. */
size_t ftc_quant_tensor_bytes(int type, int64_t O, int64_t I);
/* A whole weight [O, I]: every type (NF4DQ only this way), rows as ftc_quantize_row / ftc_dequantize_row do. */
void ftc_quantize_tensor(int type, const float *x, void *out, int64_t O, int64_t I);
void ftc_dequantize_tensor(int type, const void *in, float *y, int64_t O, int64_t I);
/* Quantizes n values (a multiple of the block) into n / block blocks (not NF4DQ: nothing is written). */
void ftc_quantize_row(int type, const float *x, void *out, int64_t n);
/* Dequantizes n values (bit-identical to gguf.quants.dequantize; the GGUF reader uses these). */
void ftc_dequantize_row(int type, const void *in, float *y, int64_t n);

/* Fused matmuls on a packed weight W [O, I] (O rows of I values, I a multiple of the block). Never
 * dequantize the whole weight: each thread decodes a panel of at most 64 rows x 512 columns into a
 * scratch it owns and multiplies it with f32 activations (ftc_matmul, single-threaded inside), so the
 * result equals ftc_dequantize_row + ftc_matmul up to f32 summation order.
 *   forward:         Y[N,O] = beta * Y + X[N,I] @ W^T     (beta 0: Y is not read)
 *   input gradient:  dX[N,I] += dY[N,O] @ W
 * bf16: the panel's products take bf16 operands with f32 accumulation (ftc_matmul_bf16: decoded weights and
 * activations rounded to nearest even), as a bf16 base at --precision bf16; the result then equals
 * dequantize + bf16 rounding + ftc_matmul_bf16 up to summation order.
 * No weight gradient: a quantized weight is frozen. Decode paths: AVX-512 when ftc_matmul's backend is
 * not "generic" and the CPU has it, else portable C; both decode to the same bits. */
void ftc_qmatmul_forward(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta, bool bf16);
void ftc_qmatmul_backward_input(float *dX, const float *dY, const void *W, int type, int N, int I, int O, bool bf16);
/* Generation's forward (decode, batched decode, prefill; never training): Y[N,O] = beta * Y + X @ W^T with each
 * row of X quantized to 8-bit blocks of 32 (one f32 scale each) and integer dot products per block pair, as
 * llama.cpp does: faster, and off the f32 product by the activations' rounding (at most half a step, max|x| / 254,
 * per value; docs/quant.md). Q8_0, Q4_0, Q4_1 with I a multiple of 32 (ftc_qmatmul_q8act_supported); any other
 * weight takes ftc_qmatmul_forward (f32 products). Each row's values do not depend on the other rows, N or the
 * threads. AVX2 kernels where the CPU has AVX2 + F16C and the matmul backend is not "generic", else portable C
 * (the same quantized activations; results equal up to f32 summation order). */
void ftc_qmatmul_forward_q8act(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta);
bool ftc_qmatmul_q8act_supported(int type, int I);
/* Prefill's forward (a prompt chunk of more than 16 rows; generation only): the same 8-bit activations and integer
 * block dots through an int8 GEMM tile (AVX-512 VNNI, AVX2 or portable C), each output the bits of the portable
 * twin of ftc_qmatmul_forward_q8act (the integer dot of each block pair scaled and summed in block order in f32),
 * so it does not depend on the other rows, N, the threads or the CPU. Same types and fallback as above. */
void ftc_qgemm_q8act_forward(float *Y, const float *X, const void *W, int type, int N, int I, int O, float beta);
#endif

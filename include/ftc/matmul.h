/* The one matmul interface every op uses (row-major, like cblas_sgemm):
 *   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
 * op(X) = X if trans_X is false, X^T otherwise. lda/ldb/ldc are row strides in elements.
 * Forward of a Linear (y = x W^T): ftc_matmul(false, true, ...); input gradient: (false,false);
 * weight gradient: (true,false). With beta == 0, C is not read (it may hold NaN); with alpha == 0,
 * A and B are not read.
 * The implementation behind it is chosen at run time (src/kernels/cpu/matmul*.c, docs/kernels.md):
 * "avx512" (own kernels, when the CPU has AVX-512F), else "openblas"; FTC_MATMUL=generic|openblas|avx512
 * forces one. Threads: the library's pool (threads.h: ftc_threads_set), one thread when called from inside a
 * pool job. OpenBLAS, when it is the backend, is pinned to one thread of its own (openblas_set_num_threads(1),
 * process-wide, on the first OpenBLAS matmul) and the pool splits the product: its threads would otherwise spin
 * beside the pool's. */
#ifndef FTC_MATMUL_H
#define FTC_MATMUL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ftc/threads.h"

void ftc_matmul(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
/* Name of the implementation in use ("openblas", "generic", "avx512"), for logs and benchmarks. */
const char *ftc_matmul_backend(void);
/* Frees the packing buffers ftc_matmul keeps between calls for speed, of the calling thread. A thread of the
 * caller's own that ran matmuls calls it before it exits (ftc serve's engine thread), or its buffers leak; the
 * pool's workers free theirs when they stop (ftc_threads_shutdown). */
void ftc_matmul_thread_release(void);
/* Selects the implementation: "avx512", "openblas", "generic", or "auto" (what the CPU and FTC_MATMUL
 * pick). Returns false, leaving the choice unchanged, for an unknown name or one this CPU cannot run.
 * Not thread-safe: call it before matmuls run (tests and benchmarks use it to cover every backend). */
bool ftc_matmul_set_backend(const char *name);

/* BF16 matmul: same contract as ftc_matmul, but each of A and B is either f32 or bf16 (uint16_t bit
 * patterns, the upper half of an IEEE f32) and products are taken in bf16: f32 operands are rounded to
 * bf16 (nearest even) as they are read, accumulation is f32. The mixed form lets activations stay f32
 * while weights are stored in bf16. Uses AVX512-BF16 (vdpbf16ps) when the CPU has it and the backend is
 * not "generic"; otherwise a portable loop with the same rounding. */
typedef enum { FTC_MM_F32 = 0, FTC_MM_BF16 = 1 } ftc_mm_type;
void ftc_matmul_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void *A, ftc_mm_type a_type,
                     int lda, const void *B, ftc_mm_type b_type, int ldb, float beta, float *C, int ldc);
/* "avx512bf16", "avx2" or "generic". */
const char *ftc_matmul_bf16_backend(void);
/* On the avx512bf16 path, decoding's bf16 products (at most 16 rows of A against bf16 weights read along K) run on
 * vdpbf16ps ("dpbf16") or on f32 FMAs with the weights widened in registers ("fma"): by default dpbf16 on AMD CPUs
 * (vdpbf16ps at the FMA's instruction rate), fma on others (vdpbf16ps slower there); FTC_BF16_DOT=dpbf16|fma
 * forces one. ftc_matmul_set_bf16_dot: "dpbf16", "fma" or "auto"; false, unchanged, for an unknown name or dpbf16
 * on a CPU without AVX512-BF16. Not thread-safe (tests and benchmarks). ftc_matmul_bf16_dot: the one in use now,
 * "fma" on the avx2 and generic paths (f32 multiply-adds there). */
bool ftc_matmul_set_bf16_dot(const char *name);
const char *ftc_matmul_bf16_dot(void);

/* On the avx512 paths, how skinny products (decoding: at most 16 rows of A against a weight read along K) stream the
 * weight: "tiles" (4 rows of the weight at a time, the next 4 prefetched into L1), "zen4" (1-2 rows of A: one row
 * of the weight at a time; more: the tiles, prefetching 32 KB ahead into L2) or "rows" (one row of the weight at a
 * time always). The bits are the same whichever. By default zen4 on AMD CPUs, tiles elsewhere; FTC_SKINNY=name
 * forces one. ftc_matmul_set_skinny: a name or "auto"; false, unchanged, for an unknown name. Not thread-safe
 * (tests and benchmarks). ftc_matmul_skinny: the one in use now. */
bool ftc_matmul_set_skinny(const char *name);
const char *ftc_matmul_skinny(void);

/* ftc_parallel_for (small parallel loops between matmuls, e.g. decode attention) is declared in threads.h. */

/* Array conversions, f32 -> bf16 rounding to nearest even (NaN stays NaN, no flush of subnormals); bf16 ->
 * f32 is exact. Bit-identical to ftc_f32_to_bf16/ftc_bf16_to_f32 (safetensors.h), vectorised when possible. */
void ftc_f32_to_bf16_n(const float *in, uint16_t *out, size_t n);
void ftc_bf16_to_f32_n(const uint16_t *in, float *out, size_t n);

#endif

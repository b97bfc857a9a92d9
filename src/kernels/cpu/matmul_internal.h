/* Between the matmul dispatcher (matmul.c, portable) and the CPU-specific kernels (matmul_avx512.c,
 * compiled with target attributes so the binary stays portable; call only after a CPU-feature check). */
#ifndef FTC_MATMUL_INTERNAL_H
#define FTC_MATMUL_INTERNAL_H
#include "ftc/matmul.h"

/* Scalar bf16 rounding used by every path, so that all backends round alike. */
static inline uint16_t ftc_mm_round_bf16(uint32_t x) {
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* Single-threaded blocked GEMM on the whole (sub-)problem; the dispatcher splits work between threads.
 * c_trans: the product is C^T, stored at C[j*ldc + i] (used for narrow C, see matmul.c).
 * b_key: nonzero when several calls on this thread may share the same whole op(B) (row chunks of one job):
 * the packed op(B) is then kept per thread under that key (when it fits) and a later call with the same key
 * skips packing it. Keys are never reused for other data (one per job, see matmul.c).
 * a_key: the same for the whole op(A) (column chunks of one job).
 * Return false only when the packing buffers cannot be allocated, before C is touched. */
bool ftc_sgemm_avx512(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc, bool c_trans, uint64_t b_key, uint64_t a_key);
bool ftc_gemm_bf16_avx512(bool ta, bool tb, int M, int N, int K, float alpha, const void *A, ftc_mm_type at,
                          int lda, const void *B, ftc_mm_type bt, int ldb, float beta, float *C, int ldc, bool c_trans,
                          uint64_t b_key, uint64_t a_key);
/* Pieces of ftc_gemm_bf16_avx512 for a caller that packs op(B) itself (qmatmul_bf16.c; layouts in
 * matmul_avx512.c): the calling thread's buffer for a whole packed op(A), the packing of an f32 A's K slice, and
 * one K slice's product from packed operands (C = acc + beta * C, the GEMM's micro-kernel and bits). */
uint32_t *ftc_gemm_bf16_avx512_abuf(size_t words);
void ftc_gemm_bf16_avx512_pack_a(const float *A, int lda, int M, int k0, int kc, uint32_t *dst);
void ftc_gemm_bf16_avx512_packed(int M, int N, int kp_n, const uint32_t *apack, const uint32_t *bpack, float beta,
                                 float *C, int ldc);
/* Narrow C (N small) with A read along K: C = alpha * A Bt^T + beta * C, Bt is N x K. */
void ftc_sgemm_avx512_small_n(int M, int N, int K, float alpha, const float *A, int lda, const float *Bt, int ldbt,
                              float beta, float *C, int ldc);
/* Same for bf16 products (operands f32, rounded to bf16, or bf16); f32 accumulation. */
void ftc_gemm_bf16_avx512_small_n(int M, int N, int K, float alpha, const void *A, ftc_mm_type at, int lda,
                                  const void *Bt, ftc_mm_type bt, int ldbt, float beta, float *C, int ldc);
void ftc_f32_to_bf16_avx512(const float *in, uint16_t *out, size_t n);
/* Skinny products (matmul_skinny.c): C[M, n0..n1) = alpha * A[M, K] W[n0..n1, K]^T + beta * C, W rows read along
 * K; C and the rows of W are indexed from 0 (columns n0..n1 of C, rows n0..n1 of W). bf16: A given as f32 values
 * already rounded to bf16 (W widened to f32 in registers: exact products, f32 accumulation). `how` (matmul.c chooses
 * it by CPU; a row of C has the same bits whatever it says): at most how.rows rows of A stream W one row at a time,
 * more take 4-row tiles of W, which prefetch the next tile into L1 or, how.far, 32 KB ahead into L2 (not past the
 * rows n0..n1). */
typedef struct {
    int rows;
    bool far;
} ftc_mm_skinny_how;
void ftc_mm_skinny_f32_avx512(int M, int n0, int n1, int K, float alpha, const float *A, int lda, const float *W,
                              int ldw, float beta, float *C, int ldc, ftc_mm_skinny_how how);
void ftc_mm_skinny_bf16_avx512(int M, int n0, int n1, int K, float alpha, const float *A, int lda,
                               const uint16_t *W, int ldw, float beta, float *C, int ldc, ftc_mm_skinny_how how);
/* The same bf16 product on vdpbf16ps (AVX512-BF16; call only after a CPU-feature check): A given as bf16 bits (f32
 * activations rounded by the caller), stride lda. */
void ftc_mm_skinny_bf16dp_avx512(int M, int n0, int n1, int K, float alpha, const uint16_t *A, int lda,
                                 const uint16_t *W, int ldw, float beta, float *C, int ldc, ftc_mm_skinny_how how);
/* AVX2 + FMA (matmul_avx2.c), for CPUs without AVX-512; call only after a CPU-feature check. Skinny products as
 * above; bf16: A given as f32 values already rounded to bf16 (exact products, f32 accumulation). */
/* The CPU has AVX2 and FMA, which every *_avx2.c kernel (matmul, vmath, quant) is compiled for: one probe for all. */
bool ftc_mm_cpu_has_avx2_fma(void);
/* The CPU has F16C (vcvtph2ps: the quantized kernels' f16 scales, an f16 KV cache's rows); asked once. */
bool ftc_mm_cpu_has_f16c(void);
void ftc_mm_skinny_f32_avx2(int M, int n0, int n1, int K, float alpha, const float *A, int lda, const float *W, int ldw,
                            float beta, float *C, int ldc);
void ftc_mm_skinny_bf16_avx2(int M, int n0, int n1, int K, float alpha, const float *A, int lda, const uint16_t *W,
                             int ldw, float beta, float *C, int ldc);
void ftc_f32_to_bf16_avx2(const float *in, uint16_t *out, size_t n);
/* out[i] = in[i] rounded to bf16 and kept as f32 (in f32; as ftc_mm_round_bf16), or widened (in bf16) */
void ftc_bf16_round_f32_avx2(const void *in, ftc_mm_type t, float *out, size_t n);

/* The library's pool (pool.c), for the dispatcher's own splitting: threads a job may use from here (1 inside a
 * job), and a job of `chunks` chunks run by the caller and the workers. Returns false, having run nothing,
 * when the pool is held by another thread's job, the caller is inside a job, or there is no worker. */
int ftc_mm_pool_threads(void);
bool ftc_mm_pool_run(int chunks, void (*fn)(void *arg, int chunk, int nchunks), void *arg);
/* Frees the calling thread's packing buffers (matmul_avx512.c); pool workers call it when they stop. */
void ftc_mm_release_own(void);

/* Micro-tile sizes, so the dispatcher splits work on tile boundaries. */
#define FTC_MM_MR 12
#define FTC_MM_NR 32
#endif

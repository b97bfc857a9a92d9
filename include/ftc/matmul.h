/* The one matmul interface every op uses (row-major, like cblas_sgemm):
 *   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
 * op(X) = X if trans_X is false, X^T otherwise. lda/ldb/ldc are row strides in elements.
 * Forward of a Linear (y = x W^T): ftc_matmul(false, true, ...); input gradient: (false,false);
 * weight gradient: (true,false). The implementation behind it is chosen at run time
 * (src/kernels/cpu/matmul*.c); FTC_MATMUL=generic forces the portable C path. */
#ifndef FTC_MATMUL_H
#define FTC_MATMUL_H
#include <stdbool.h>

void ftc_matmul(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
/* Name of the implementation in use ("openblas", "generic", ...), for logs and benchmarks. */
const char *ftc_matmul_backend(void);

#endif

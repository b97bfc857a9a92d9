/* Dispatch for the vectorised exp (vmath.h): AVX-512 when the CPU has it, else the portable loop compiled for
 * AVX2 (8 lanes, same bits) when the CPU has that, else the portable loop. */
#include "vmath.h"
#include <string.h>
#include "ftc/matmul.h"
#include "matmul_internal.h" /* ftc_mm_cpu_has_avx2_fma */

static bool cpu_has_avx512(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int has = -1; /* asked once; a benign race, every thread writes the same value */
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    }
    return has;
#else
    return false;
#endif
}

bool ftc_vm_use_avx512(void) {
    /* The matmul backend name is a pointer to a constant; "generic" forces every CPU-specific kernel off,
     * "avx2" the AVX-512 ones */
    const char *b = ftc_matmul_backend();
    return cpu_has_avx512() && b[0] != 'g' && strcmp(b, "avx2") != 0;
}

bool ftc_vm_use_avx2(void) { return ftc_mm_cpu_has_avx2_fma() && ftc_matmul_backend()[0] != 'g'; }

int ftc_vm_isa(void) { return ftc_vm_use_avx512() ? 2 : ftc_vm_use_avx2() ? 1 : 0; }

VM_FORCE_INLINE void exp_loop_body(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = vm_exp1(x[i]);
}
VM_FORCE_INLINE double exp_sum_body(float *y, const float *x, float shift, int n) {
    /* 8 partial sums, like the 8 double lanes of the AVX-512 path: acc[j] takes i = j mod 8, in order.
     * Blocks of 8 with the store decided outside keep the loop vectorisable. */
    double acc[8] = {0};
    float e[8];
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) e[j] = vm_exp1(x[i + j] - shift);
        if (y)
            for (int j = 0; j < 8; j++) y[i + j] = e[j];
        for (int j = 0; j < 8; j++) acc[j] += e[j];
    }
    for (int j = 0; i + j < n; j++) {
        float t = vm_exp1(x[i + j] - shift);
        if (y) y[i + j] = t;
        acc[j] += t;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}
static void exp_loop_generic(float *y, const float *x, int n) { exp_loop_body(y, x, n); }
VM_AVX2_TARGET static void exp_loop_avx2(float *y, const float *x, int n) { exp_loop_body(y, x, n); }
static double exp_sum_generic(float *y, const float *x, float shift, int n) { return exp_sum_body(y, x, shift, n); }
VM_AVX2_TARGET static double exp_sum_avx2(float *y, const float *x, float shift, int n) {
    return exp_sum_body(y, x, shift, n);
}

void ftc_vm_exp(float *y, const float *x, int n) {
    if (ftc_vm_use_avx512()) ftc_vm_exp_avx512(y, x, n);
    else if (ftc_vm_use_avx2()) exp_loop_avx2(y, x, n);
    else exp_loop_generic(y, x, n);
}

double ftc_vm_exp_sum(float *y, const float *x, float shift, int n) {
    if (ftc_vm_use_avx512()) return ftc_vm_exp_sum_avx512(y, x, shift, n);
    return ftc_vm_use_avx2() ? exp_sum_avx2(y, x, shift, n) : exp_sum_generic(y, x, shift, n);
}

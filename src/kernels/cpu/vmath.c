/* Dispatch for the vectorised exp (vmath.h): AVX-512 when the CPU has it, else the portable loop. */
#include "vmath.h"
#include "ftc/matmul.h"

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
    /* The matmul backend name is a pointer to a constant; "generic" forces every CPU-specific kernel off */
    const char *b = ftc_matmul_backend();
    return cpu_has_avx512() && !(b[0] == 'g');
}

void ftc_vm_exp(float *y, const float *x, int n) {
    if (ftc_vm_use_avx512()) {
        ftc_vm_exp_avx512(y, x, n);
        return;
    }
    for (int i = 0; i < n; i++) y[i] = vm_exp1(x[i]);
}

double ftc_vm_exp_sum(float *y, const float *x, float shift, int n) {
    if (ftc_vm_use_avx512()) return ftc_vm_exp_sum_avx512(y, x, shift, n);
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

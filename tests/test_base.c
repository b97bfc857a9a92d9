/* Base utilities: errors, atomic writes, RNG determinism, matmul backends agree. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ftc/base.h"
#include "ftc/matmul.h"

static void test_errf_and_prefix(void **state) {
    (void)state;
    ftc_err e;
    assert_int_equal(ftc_errf(&e, FTC_E_INPUT, "tensor %s missing", "wte"), FTC_E_INPUT);
    ftc_err_prefix(&e, "%s", "model.safetensors");
    assert_string_equal(e.msg, "model.safetensors: tensor wte missing");
    assert_int_equal(ftc_exit_code(FTC_E_INPUT), 2);
    assert_int_equal(ftc_exit_code(FTC_E_USAGE), 1);
    assert_int_equal(ftc_exit_code(FTC_E_INTERNAL), 3);
    assert_int_equal(ftc_exit_code(FTC_OK), 0);
}

static void test_atomic_write_replaces_whole_file(void **state) {
    (void)state;
    char dir[] = "/tmp/ftc_test_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/out.bin", dir);
    ftc_err e;
    assert_int_equal(ftc_write_file_atomic(path, "first", 5, &e), FTC_OK);
    assert_int_equal(ftc_write_file_atomic(path, "second!", 7, &e), FTC_OK);
    char *buf; size_t n;
    assert_int_equal(ftc_read_file(path, &buf, &n, &e), FTC_OK);
    assert_int_equal(n, 7);
    assert_string_equal(buf, "second!");
    free(buf);
    /* an aborted write leaves the old content and no temp file */
    ftc_atomic_file af;
    assert_int_equal(ftc_atomic_open(&af, path, &e), FTC_OK);
    fputs("partial", af.f);
    ftc_atomic_abort(&af);
    assert_false(ftc_file_exists(af.tmp));
    assert_int_equal(ftc_read_file(path, &buf, &n, &e), FTC_OK);
    assert_string_equal(buf, "second!");
    free(buf);
    unlink(path);
    rmdir(dir);
    /* a missing file is an I/O error naming the path */
    assert_int_equal(ftc_read_file("/nonexistent/x", &buf, &n, &e), FTC_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/x"));
}

static void test_rng_deterministic_and_uniform(void **state) {
    (void)state;
    ftc_rng a, b;
    ftc_rng_seed(&a, 42);
    ftc_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) assert_int_equal(ftc_rng_u64(&a), ftc_rng_u64(&b));
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) { float x = ftc_rng_normal(&a); sum += x; sq += x * x; }
    assert_true(sum / 100000 > -0.02 && sum / 100000 < 0.02);
    assert_true(sq / 100000 > 0.97 && sq / 100000 < 1.03);
    int counts[5] = {0};
    for (int i = 0; i < 50000; i++) counts[ftc_rng_below(&a, 5)]++;
    for (int i = 0; i < 5; i++) assert_true(counts[i] > 9500 && counts[i] < 10500);
}

static void test_matmul_layouts_match_naive(void **state) {
    (void)state;
    enum { M = 7, N = 5, K = 9 };
    float A[M * K], At[K * M], B[K * N], Bt[N * K], ref[M * N], C[M * N];
    ftc_rng r;
    ftc_rng_seed(&r, 1);
    for (int i = 0; i < M * K; i++) A[i] = ftc_rng_normal(&r);
    for (int i = 0; i < K * N; i++) B[i] = ftc_rng_normal(&r);
    for (int i = 0; i < M; i++) for (int k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
    for (int k = 0; k < K; k++) for (int j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[i * K + k] * B[k * N + j];
            ref[i * N + j] = (float)s;
        }
    for (int layout = 0; layout < 4; layout++) {
        bool ta = layout & 1, tb = layout & 2;
        for (int i = 0; i < M * N; i++) C[i] = 1.0f;
        ftc_matmul(ta, tb, M, N, K, 2.0f, ta ? At : A, ta ? M : K, tb ? Bt : B, tb ? K : N, 0.5f, C, N);
        for (int i = 0; i < M * N; i++) assert_float_equal(C[i], 2.0f * ref[i] + 0.5f, 1e-4);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errf_and_prefix),
        cmocka_unit_test(test_atomic_write_replaces_whole_file),
        cmocka_unit_test(test_rng_deterministic_and_uniform),
        cmocka_unit_test(test_matmul_layouts_match_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

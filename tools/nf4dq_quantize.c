/* ftc's NF4DQ encoding of a raw f32 weight, for tools/check_nf4dq_torch.py (not part of ftc's build: that script
 * compiles it against build/libftc.a).
 *   nf4dq_quantize IN.f32 O I OUT.bin
 * Reads O * I little-endian f32 values (a weight [O, I], row-major) and writes its ftc_quantize_tensor bytes
 * (include/ftc/quant.h: blocks, padding, offset, scale2). Exit 2 on a short or unreadable file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "ftc/quant.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: nf4dq_quantize IN.f32 O I OUT.bin\n");
        return 1;
    }
    long O = atol(argv[2]), I = atol(argv[3]);
    size_t n = ftc_quant_tensor_bytes(FTC_QUANT_NF4DQ, O, I);
    float *x = malloc(sizeof(float) * (size_t)O * (size_t)I);
    uint8_t *q = malloc(n ? n : 1);
    FILE *f = fopen(argv[1], "rb");
    if (!n || !x || !q || !f || fread(x, sizeof(float), (size_t)O * I, f) != (size_t)O * I) {
        fprintf(stderr, "nf4dq_quantize: cannot read %ld x %ld f32 values from %s\n", O, I, argv[1]);
        return 2;
    }
    fclose(f);
    ftc_quantize_tensor(FTC_QUANT_NF4DQ, x, q, O, I);
    f = fopen(argv[4], "wb");
    if (!f || fwrite(q, 1, n, f) != n || fclose(f)) return 2;
    free(x), free(q);
    return 0;
}

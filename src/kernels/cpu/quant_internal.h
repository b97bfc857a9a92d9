/* Block decoders shared by quant.c and qmatmul.c. */
#ifndef FTC_QUANT_INTERNAL_H
#define FTC_QUANT_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

/* Decodes nb consecutive blocks into nb * block floats. */
typedef void (*ftc_quant_decode_fn)(const void *in, float *y, int64_t nb);
/* The decoder of a type (NULL if unsupported): isa 2 the AVX-512 copy, 1 the AVX2 one, 0 the portable one (same
 * bits; ftc_vm_isa() says which runs). */
ftc_quant_decode_fn ftc_quant_decoder(int type, int isa);
#endif

/* Block decoders shared by quant.c and qmatmul.c. */
#ifndef FTC_QUANT_INTERNAL_H
#define FTC_QUANT_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

/* Decodes nb consecutive blocks into nb * block floats. */
typedef void (*ftc_quant_decode_fn)(const void *in, float *y, int64_t nb);
/* The decoder of a type (NULL if unsupported): the AVX-512 copy or the portable one (same bits). */
ftc_quant_decode_fn ftc_quant_decoder(int type, bool avx512);
#endif

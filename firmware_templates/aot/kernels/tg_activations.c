/* LOGISTIC and TANH, int8 in and out: each input code has one output code,
 * computed at build time with TFLM's reference arithmetic
 * (tinygen/plan/fixedpoint.py) and looked up here.  Element-wise: safe in
 * place. */
#include "tg_elementwise.h"

void tg_lut_s8(const tg_lut_s8_params *p, const int8_t *in, int8_t *out) {
  const int8_t *table = p->table + 128; /* indexed by the signed code */
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    out[i] = table[in[i]];
  }
}

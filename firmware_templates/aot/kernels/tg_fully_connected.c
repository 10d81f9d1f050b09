/* Fully connected layer, int8 (TFLite FULLY_CONNECTED).
 *
 * out[b][o] = clamp(requantize(sum_d (w[o][d] + filter_offset) *
 *                              (x[b][d] + input_offset) + bias[o]) + output_offset)
 */
#include "tg_fully_connected.h"

void tg_fully_connected_s8(const tg_fully_connected_params *p, const int8_t *input,
                           int8_t *output) {
  const int32_t depth = p->accum_depth;
  int32_t b, o, d;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * depth;
    for (o = 0; o < p->out_depth; ++o) {
      const int8_t *w = p->filter + o * depth;
      const int32_t q = p->per_channel ? o : 0;
      int32_t acc = 0;
      for (d = 0; d < depth; ++d) {
        acc += ((int32_t)w[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
      }
      if (p->bias != NULL) {
        acc += p->bias[o];
      }
      acc = tg_requantize(acc, p->multiplier[q], p->shift[q]);
      acc += p->output_offset;
      output[b * p->out_depth + o] = (int8_t)tg_clamp_i32(acc, p->act_min, p->act_max);
    }
  }
}

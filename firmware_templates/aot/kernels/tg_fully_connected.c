/* Fully connected layer, int8 (TFLite FULLY_CONNECTED).
 *
 * out[b][o] = clamp(requantize(sum_d (w[o][d] + filter_offset) *
 *                              (x[b][d] + input_offset) + bias[o]) + output_offset)
 *
 * With symmetric weights (filter_offset 0, what the converter writes) this is
 * sum_d w[o][d] * x[b][d] + kbias[o], kbias = bias + input_offset * sum_d w[o][d]
 * folded at build time: a plain int8 dot product, two output rows at a time.
 */
#include "tg_fully_connected.h"

static int8_t tg_fc_out(const tg_fully_connected_params *p, int32_t o, int32_t acc) {
  const int32_t q = p->per_channel ? o : 0;
  acc = tg_requantize(acc, p->multiplier[q], p->shift[q]) + p->output_offset;
  return (int8_t)tg_clamp_i32(acc, p->act_min, p->act_max);
}

void tg_fully_connected_s8(const tg_fully_connected_params *p, const int8_t *input,
                           int8_t *output) {
  const int32_t depth = p->accum_depth, units = p->out_depth;
  int32_t b, o, d;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * depth;
    int8_t *y = output + b * units;
    if (p->filter_offset == 0) {
      for (o = 0; o + 1 < units; o += 2) {
        const int8_t *w = p->filter + o * depth;
        int32_t acc0 = p->kbias[o], acc1 = p->kbias[o + 1];
        tg_dot2_s8(x, w, w + depth, depth, &acc0, &acc1);
        y[o] = tg_fc_out(p, o, acc0);
        y[o + 1] = tg_fc_out(p, o + 1, acc1);
      }
      for (; o < units; ++o) {
        y[o] = tg_fc_out(p, o, p->kbias[o] + tg_dot_s8(x, p->filter + o * depth, depth));
      }
    } else {
      /* asymmetric per-tensor weights (legacy models) */
      for (o = 0; o < units; ++o) {
        const int8_t *w = p->filter + o * depth;
        int32_t acc = 0;
        for (d = 0; d < depth; ++d) {
          acc += ((int32_t)w[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
        }
        if (p->bias != NULL) {
          acc += p->bias[o];
        }
        y[o] = tg_fc_out(p, o, acc);
      }
    }
  }
}

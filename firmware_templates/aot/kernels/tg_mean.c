/* MEAN and SUM of int8 over any set of axes (TFLM QuantizedMeanOrSum, which
 * the TFLM interpreter runs for int8 even when input and output quantization
 * are equal).  For each output element the reduced dimensions are summed in
 * int32, the input zero point is taken out, and the sum is requantized; for
 * MEAN the lowering has folded 1/count into the multiplier exactly as TFLM
 * does at run time. */
#include "tg_elementwise.h"

static int32_t tg_reduce_prod(const int32_t *dims, int32_t n) {
  int32_t r = 1, i;
  for (i = 0; i < n; ++i) {
    r *= dims[i];
  }
  return r;
}

/* Sum of the input elements reached from `base` along the reduced dims. */
static int32_t tg_reduce_sum_at(const tg_reduce_s8_params *p, const int8_t *in, int32_t base) {
  const int32_t rn = p->red_ndim;
  const int32_t inner = p->red_dims[rn - 1];
  const int32_t istride = p->red_stride[rn - 1];
  const int32_t rows = tg_reduce_prod(p->red_dims, rn - 1);
  int32_t idx[TG_EW_MAX_DIMS] = {0};
  int32_t off = base, sum = 0, r, j, d;
  for (r = 0; r < rows; ++r) {
    const int8_t *src = in + off;
    for (j = 0; j < inner; ++j) {
      sum += src[j * istride];
    }
    for (d = rn - 2; d >= 0; --d) {
      off += p->red_stride[d];
      if (++idx[d] < p->red_dims[d]) {
        break;
      }
      off -= p->red_stride[d] * p->red_dims[d];
      idx[d] = 0;
    }
  }
  return sum;
}

void tg_reduce_sum_s8(const tg_reduce_s8_params *p, const int8_t *in, int8_t *out) {
  const int32_t on = p->out_ndim;
  const int32_t total = tg_reduce_prod(p->out_dims, on);
  int32_t idx[TG_EW_MAX_DIMS] = {0};
  int32_t base = 0, k, d;
  for (k = 0; k < total; ++k) {
    const int32_t sum = tg_reduce_sum_at(p, in, base);
    const int32_t shifted = sum - p->input_zero_point * p->count;
    out[k] = tg_sat_i8(tg_requantize(shifted, p->multiplier, p->shift) + p->output_zero_point);
    for (d = on - 1; d >= 0; --d) {
      base += p->out_stride[d];
      if (++idx[d] < p->out_dims[d]) {
        break;
      }
      base -= p->out_stride[d] * p->out_dims[d];
      idx[d] = 0;
    }
  }
}

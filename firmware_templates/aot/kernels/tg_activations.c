/* LOGISTIC and TANH, int8 in and out, as TFLM's reference_integer_ops
 * compute them: the input minus its zero point is rescaled to Q4.27, the
 * function is evaluated in gemmlowp fixed point and the Q0.31 result is
 * rounded to 8 bits.  Inputs beyond +-input_range_radius saturate.
 * Element-wise: safe in place. */
#include "tg_elementwise.h"
#include "tg_ew_fixedpoint.h"

void tg_logistic_s8(const tg_sigmoid_s8_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)in[i] - p->input_zero_point;
    if (x <= -p->input_range_radius) {
      out[i] = INT8_MIN;
    } else if (x >= p->input_range_radius) {
      out[i] = INT8_MAX;
    } else {
      const int32_t x_q4 = tg_requantize(x, p->input_multiplier, p->input_left_shift);
      const int32_t y_q0 = tg_fx_logistic_q4(x_q4);
      /* Q0.31 -> 1/256 steps with zero point -128 */
      out[i] = tg_sat_i8(tg_rounding_divide_by_pot(y_q0, 23) - 128);
    }
  }
}

void tg_tanh_s8(const tg_sigmoid_s8_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)in[i] - p->input_zero_point;
    if (x <= -p->input_range_radius) {
      out[i] = INT8_MIN;
    } else if (x >= p->input_range_radius) {
      out[i] = INT8_MAX;
    } else {
      const int32_t x_q4 = tg_requantize(x, p->input_multiplier, p->input_left_shift);
      const int32_t y_q0 = tg_fx_tanh_q4(x_q4);
      /* Q0.31 -> 1/128 steps with zero point 0 */
      out[i] = tg_sat_i8(tg_rounding_divide_by_pot(y_q0, 24));
    }
  }
}

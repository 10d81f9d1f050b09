/* RELU, RELU6, LEAKY_RELU and HARD_SWISH on int8, as TFLM's reference
 * kernels compute them.  Element-wise: safe in place. */
#include "tg_elementwise.h"

void tg_relu_s8(const tg_relu_s8_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t v = p->output_zero_point +
                      tg_requantize((int32_t)in[i] - p->input_zero_point, p->multiplier, p->shift);
    out[i] = (int8_t)tg_clamp_i32(v, p->act_min, p->act_max);
  }
}

void tg_clamp_s8(const tg_clamp_s8_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t v = in[i];
    out[i] = (int8_t)(v > p->hi ? p->hi : (v < p->lo ? p->lo : v));
  }
}

void tg_leaky_relu_s8(const tg_leaky_relu_s8_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)in[i] - p->input_zero_point;
    int32_t y;
    if (x >= 0) {
      y = tg_requantize(x, p->multiplier_identity, p->shift_identity);
    } else {
      y = tg_requantize(x, p->multiplier_alpha, p->shift_alpha);
      y = p->alpha_negative ? -y : y;
    }
    out[i] = tg_sat_i8(p->output_zero_point + y);
  }
}

/* ---- 16-bit fixed point as gemmlowp does it for int16 ------------------- */

/* gemmlowp SaturatingRoundingDoublingHighMul on int16. */
static int16_t tg_srdhm_i16(int16_t a, int16_t b) {
  int32_t ab, nudge;
  if (a == b && a == INT16_MIN) {
    return INT16_MAX;
  }
  ab = (int32_t)a * (int32_t)b;
  nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  return (int16_t)((ab + nudge) / (1 << 15));
}

/* Doubling high multiply rounding toward zero (Arm SQDMULH). */
static int16_t tg_sdhm_i16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) {
    return INT16_MAX;
  }
  return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* gemmlowp RoundingDivideByPOT instantiated for int16 (its mask is an int16
 * too, which matters for exponents of 16 and more). */
static int16_t tg_rdbp_i16(int16_t x, int exponent) {
  int16_t mask, remainder, threshold;
  if (exponent > 31) {
    exponent = 31;
  }
  mask = (int16_t)(uint16_t)(((uint64_t)1 << exponent) - 1u);
  remainder = (int16_t)(x & mask);
  threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
  return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

static int16_t tg_sat_shl_i16(int16_t v, int amount) {
  const int64_t r = (int64_t)v * ((int64_t)1 << amount);
  return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

void tg_hard_swish_s8(const tg_hard_swish_s8_params *p, const int8_t *in, int8_t *out) {
  const int16_t out_mult = (int16_t)p->output_multiplier_fixedpoint_int16;
  const int16_t relu_mult = (int16_t)p->reluish_multiplier_fixedpoint_int16;
  const int relu_exp = (int)p->reluish_multiplier_exponent;
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int16_t x = (int16_t)((int32_t)in[i] - p->input_zero_point);
    const int16_t x_hires = (int16_t)(x * (1 << 7));
    const int16_t x_preshift_out = tg_srdhm_i16(x_hires, out_mult);
    int16_t reluish = x_hires;
    int16_t preshift_out;
    int32_t o;
    if (relu_exp > 0) {
      reluish = tg_sat_shl_i16(reluish, relu_exp - 1);
    }
    reluish = tg_srdhm_i16(reluish, relu_mult);
    if (relu_exp > 0) {
      reluish = tg_sat_shl_i16(reluish, 1);
    }
    if (relu_exp < 0) {
      reluish = tg_rdbp_i16(reluish, -relu_exp);
    }
    /* [-1, 1] -> [0, 1] */
    reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
    preshift_out = tg_sdhm_i16(reluish, x_preshift_out);
    o = (int16_t)(tg_rdbp_i16(preshift_out, (int)-p->output_multiplier_exponent) +
                  p->output_zero_point);
    out[i] = tg_sat_i8(o);
  }
}

/* QUANTIZE (float32 -> int8/int16, and int8/int16 requantization) and
 * DEQUANTIZE (int8/int16 -> float32), as TFLM's reference kernels compute
 * them: AffineQuantize rounds x / scale half away from zero in single
 * precision; Requantize scales (q - zp_in) by a Q31 multiplier; Dequantize
 * is scale * (q - zp) in single precision.  No libm needed. */
#include "tg_elementwise.h"

/* round(x) half away from zero, saturated to +-2^20 (enough for any int16
 * result; TFLite's cast of an out-of-range value is undefined behaviour, on
 * Arm it saturates like this).  NaN gives the lowest value, as x86 does. */
static int32_t tg_round_half_away_sat(float x) {
  const float lim = 1048576.0f;
  int32_t i;
  float frac;
  if (x != x) {
    return -(int32_t)1048576;
  }
  if (x >= lim) {
    return (int32_t)1048576;
  }
  if (x <= -lim) {
    return -(int32_t)1048576;
  }
  i = (int32_t)x;      /* truncates toward zero */
  frac = x - (float)i; /* exact: the fraction of a float is a float */
  if (frac >= 0.5f) {
    ++i;
  } else if (frac <= -0.5f) {
    --i;
  }
  return i;
}

TG_INLINE int32_t tg_quantize_one(const tg_quantize_f32_params *p, float v) {
  const int32_t q = tg_round_half_away_sat(v / p->scale) + p->zero_point;
  return tg_clamp_i32(q, p->qmin, p->qmax);
}

void tg_quantize_f32_s8(const tg_quantize_f32_params *p, const float *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    out[i] = (int8_t)tg_quantize_one(p, in[i]);
  }
}

void tg_quantize_f32_s16(const tg_quantize_f32_params *p, const float *in, int16_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    out[i] = (int16_t)tg_quantize_one(p, in[i]);
  }
}

TG_INLINE int32_t tg_requantize_one(const tg_requantize_params *p, int32_t v) {
  return tg_requantize(v - p->input_zero_point, p->multiplier, p->shift) + p->output_zero_point;
}

/* Multiplier 2^30 with shift 1 is exactly 1.0: the doubling high multiply of
 * 2v by 2^30 rounds v + 1/2 down to v, so only the zero points move (a
 * pipeline's int8 <-> int16 round trip of its features, same scale). */
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
#include <arm_acle.h>
#define TG_SAT_INT8(x) __ssat((x), 8)
#define TG_SAT_INT16(x) __ssat((x), 16)
#else
#define TG_SAT_INT8(x) tg_clamp_i32((x), INT8_MIN, INT8_MAX)
#define TG_SAT_INT16(x) tg_clamp_i32((x), INT16_MIN, INT16_MAX)
#endif

TG_INLINE int tg_requantize_is_offset(const tg_requantize_params *p) {
  return p->multiplier == ((int32_t)1 << 30) && p->shift == 1;
}

void tg_requantize_s8_s8(const tg_requantize_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  if (tg_requantize_is_offset(p)) {
    const int32_t offset = p->output_zero_point - p->input_zero_point;
    for (i = 0; i < p->size; ++i) out[i] = (int8_t)TG_SAT_INT8(in[i] + offset);
    return;
  }
  for (i = 0; i < p->size; ++i) {
    out[i] = (int8_t)tg_clamp_i32(tg_requantize_one(p, in[i]), INT8_MIN, INT8_MAX);
  }
}

void tg_requantize_s8_s16(const tg_requantize_params *p, const int8_t *in, int16_t *out) {
  int32_t i;
  if (tg_requantize_is_offset(p)) {
    const int32_t offset = p->output_zero_point - p->input_zero_point;
    for (i = 0; i < p->size; ++i)
      out[i] = (int16_t)tg_clamp_i32(in[i] + offset, INT16_MIN, INT16_MAX);
    return;
  }
  for (i = 0; i < p->size; ++i) {
    out[i] = (int16_t)tg_clamp_i32(tg_requantize_one(p, in[i]), INT16_MIN, INT16_MAX);
  }
}

void tg_requantize_s16_s8(const tg_requantize_params *p, const int16_t *in, int8_t *out) {
  int32_t i;
  if (tg_requantize_is_offset(p)) {
    const int32_t offset = p->output_zero_point - p->input_zero_point;
    for (i = 0; i < p->size; ++i) out[i] = (int8_t)TG_SAT_INT8(in[i] + offset);
    return;
  }
  for (i = 0; i < p->size; ++i) {
    out[i] = (int8_t)tg_clamp_i32(tg_requantize_one(p, in[i]), INT8_MIN, INT8_MAX);
  }
}

void tg_requantize_s16_s16(const tg_requantize_params *p, const int16_t *in, int16_t *out) {
  int32_t i;
  if (tg_requantize_is_offset(p)) {
    const int32_t offset = p->output_zero_point - p->input_zero_point;
    for (i = 0; i < p->size; ++i)
      out[i] = (int16_t)tg_clamp_i32(in[i] + offset, INT16_MIN, INT16_MAX);
    return;
  }
  for (i = 0; i < p->size; ++i) {
    out[i] = (int16_t)tg_clamp_i32(tg_requantize_one(p, in[i]), INT16_MIN, INT16_MAX);
  }
}

void tg_requantize_u8_s8(const tg_requantize_params *p, const uint8_t *in, int8_t *out) {
  int32_t i;
  if (tg_requantize_is_offset(p)) {
    const int32_t offset = p->output_zero_point - p->input_zero_point;
    for (i = 0; i < p->size; ++i) out[i] = (int8_t)TG_SAT_INT8((int32_t)in[i] + offset);
    return;
  }
  for (i = 0; i < p->size; ++i) {
    out[i] = (int8_t)tg_clamp_i32(tg_requantize_one(p, in[i]), INT8_MIN, INT8_MAX);
  }
}

/* TFLM clamps the int32 result to the int32 range: nothing to do. */
void tg_requantize_s8_s32(const tg_requantize_params *p, const int8_t *in, int32_t *out) {
  int32_t i;
  if (tg_requantize_is_offset(p)) {
    const int32_t offset = p->output_zero_point - p->input_zero_point;
    for (i = 0; i < p->size; ++i) out[i] = (int32_t)in[i] + offset;
    return;
  }
  for (i = 0; i < p->size; ++i) {
    out[i] = tg_requantize_one(p, in[i]);
  }
}

void tg_dequantize_s8_f32(const tg_dequantize_params *p, const int8_t *in, float *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    out[i] = p->scale * (float)((int32_t)in[i] - p->zero_point);
  }
}

void tg_dequantize_s16_f32(const tg_dequantize_params *p, const int16_t *in, float *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    out[i] = p->scale * (float)((int32_t)in[i] - p->zero_point);
  }
}

/* ADD, SUB and MUL of two int8 tensors with broadcasting and a fused activation
 * clamp, as TFLM's reference_integer_ops compute them (AddFunc/SubFunc with
 * the left_shift scheme, MulElementwise).  The iteration space comes from the
 * lowering (tg_bcast); with equal shapes it is one flat loop, and the output
 * may then share the first input's buffer. */
#include "tg_elementwise.h"

TG_INLINE int8_t tg_add_one(const tg_add_s8_params *p, int32_t a, int32_t b) {
  const int32_t x1 = tg_shift_left_wrap(p->input1_offset + a, (int)p->left_shift);
  const int32_t x2 = tg_shift_left_wrap(p->input2_offset + b, (int)p->left_shift);
  const int32_t s1 = tg_requantize_smaller_than_one(x1, p->input1_multiplier, p->input1_shift);
  const int32_t s2 = tg_requantize_smaller_than_one(x2, p->input2_multiplier, p->input2_shift);
  const int32_t sum = p->subtract ? (int32_t)((uint32_t)s1 - (uint32_t)s2)
                                  : (int32_t)((uint32_t)s1 + (uint32_t)s2);
  const int32_t raw = tg_requantize_smaller_than_one(sum, p->output_multiplier, p->output_shift) +
                      p->output_offset;
  return (int8_t)tg_clamp_i32(raw, p->act_min, p->act_max);
}

TG_INLINE int8_t tg_mul_one(const tg_mul_s8_params *p, int32_t a, int32_t b) {
  const int32_t prod = (p->input1_offset + a) * (p->input2_offset + b);
  const int32_t raw = p->output_offset + tg_requantize(prod, p->output_multiplier, p->output_shift);
  return (int8_t)tg_clamp_i32(raw, p->act_min, p->act_max);
}

/* Walk the output in row-major order; the innermost dimension is a plain
 * strided loop, the outer ones an odometer that keeps both input offsets. */
#define TG_BCAST_LOOP(BC, IN1, IN2, OUT, ELEM)                                        \
  do {                                                                                \
    const tg_bcast *bc_ = (BC);                                                       \
    const int32_t nd_ = bc_->ndim;                                                    \
    const int32_t inner_ = bc_->dims[nd_ - 1];                                        \
    const int32_t is1_ = bc_->stride1[nd_ - 1];                                       \
    const int32_t is2_ = bc_->stride2[nd_ - 1];                                       \
    int32_t idx_[TG_EW_MAX_DIMS] = {0};                                               \
    int32_t rows_ = 1, r_, j_, d_, oa_ = 0, ob_ = 0;                                  \
    int8_t *o_ = (OUT);                                                               \
    for (d_ = 0; d_ < nd_ - 1; ++d_) {                                                \
      rows_ *= bc_->dims[d_];                                                         \
    }                                                                                 \
    for (r_ = 0; r_ < rows_; ++r_) {                                                  \
      const int8_t *pa_ = (IN1) + oa_;                                                \
      const int8_t *pb_ = (IN2) + ob_;                                                \
      for (j_ = 0; j_ < inner_; ++j_) {                                               \
        *o_++ = ELEM((int32_t)pa_[j_ * is1_], (int32_t)pb_[j_ * is2_]);               \
      }                                                                               \
      for (d_ = nd_ - 2; d_ >= 0; --d_) {                                             \
        oa_ += bc_->stride1[d_];                                                      \
        ob_ += bc_->stride2[d_];                                                      \
        if (++idx_[d_] < bc_->dims[d_]) {                                             \
          break;                                                                      \
        }                                                                             \
        oa_ -= bc_->stride1[d_] * bc_->dims[d_];                                      \
        ob_ -= bc_->stride2[d_] * bc_->dims[d_];                                      \
        idx_[d_] = 0;                                                                 \
      }                                                                               \
    }                                                                                 \
  } while (0)

void tg_add_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
#define TG_ADD_ELEM(x, y) tg_add_one(p, (x), (y))
  TG_BCAST_LOOP(&p->bc, in1, in2, out, TG_ADD_ELEM);
#undef TG_ADD_ELEM
}

void tg_mul_s8(const tg_mul_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
#define TG_MUL_ELEM(x, y) tg_mul_one(p, (x), (y))
  TG_BCAST_LOOP(&p->bc, in1, in2, out, TG_MUL_ELEM);
#undef TG_MUL_ELEM
}


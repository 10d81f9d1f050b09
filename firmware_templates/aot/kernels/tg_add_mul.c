/* ADD, SUB and MUL of two int8 tensors with broadcasting and a fused activation
 * clamp, bit-exact with TFLM's reference_integer_ops (AddFunc/SubFunc with
 * the left_shift scheme, MulElementwise).  The iteration space comes from the
 * lowering (tg_bcast); with equal shapes it is one flat loop, and the output
 * may then share the first input's buffer. */
#include "tg_elementwise.h"

/* Rescaling one int8 operand of ADD/SUB.  TFLM computes
 *   RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(v << 20, m), -shift)
 * with v = x - zero_point in [-255, 255].  The high multiply of v * 2^20 by
 * m is floor((v * m + 2^10) / 2^11) (tg_sat_rounding_doubling_high_mul's
 * identity with the 2^20 factored out; it cannot saturate), and splitting
 * m = hi * 2^11 + lo with 0 <= lo < 2^11 gives v * hi + floor((v * lo + 2^10)
 * / 2^11): the same integer from two 32-bit multiplies instead of a 64-bit
 * one.  |v * hi| < 2^28 and |v * lo| < 2^19, so nothing overflows. */
typedef struct {
  int32_t offset, hi, lo;
  tg_pot_divisor divide;
} tg_add_operand;

static tg_add_operand tg_add_operand_of(int32_t offset, int32_t multiplier, int32_t shift) {
  tg_add_operand o;
  o.offset = offset;
  o.hi = multiplier >> 11;
  o.lo = multiplier & 0x7FF;
  o.divide = tg_pot_divisor_of((int)-shift);
  return o;
}

TG_INLINE int32_t tg_add_rescale(const tg_add_operand *o, int32_t x) {
  const int32_t v = x + o->offset;
  return tg_divide_by_pot(v * o->hi + ((v * o->lo + (1 << 10)) >> 11), &o->divide);
}

/* The output side, copied out of the params so that stores through the
 * int8_t output pointer (which may alias anything) do not force reloads. */
typedef struct {
  int32_t multiplier, offset, act_min, act_max, sign2;
  tg_pot_divisor divide;
} tg_add_output;

TG_INLINE int8_t tg_add_one(const tg_add_operand *o1, const tg_add_operand *o2,
                            const tg_add_output *o, int32_t a, int32_t b) {
  /* |rescaled| < 2^28: the sum or difference cannot overflow, and the high
   * multiply cannot meet its one saturating case (INT32_MIN * INT32_MIN) */
  const int32_t sum = tg_add_rescale(o1, a) + o->sign2 * tg_add_rescale(o2, b);
  const int32_t high = (int32_t)(((int64_t)sum * o->multiplier + ((int64_t)1 << 30)) >> 31);
  return (int8_t)tg_clamp_i32(tg_divide_by_pot(high, &o->divide) + o->offset, o->act_min,
                              o->act_max);
}

TG_INLINE int8_t tg_mul_one(const tg_mul_s8_params *p, int32_t a, int32_t b) {
  const int32_t prod = (p->input1_offset + a) * (p->input2_offset + b);
  const int32_t raw = p->output_offset + tg_requantize(prod, p->output_multiplier, p->output_shift);
  return (int8_t)tg_clamp_i32(raw, p->act_min, p->act_max);
}

/* Walk the output in row-major order; the innermost dimension is a plain
 * strided loop, the outer ones an odometer that keeps both input offsets. */
#define TG_BCAST_LOOP(BC, IN1, IN2, OUT, ELEM)                          \
  do {                                                                  \
    const tg_bcast *bc_ = (BC);                                         \
    const int32_t nd_ = bc_->ndim;                                      \
    const int32_t inner_ = bc_->dims[nd_ - 1];                          \
    const int32_t is1_ = bc_->stride1[nd_ - 1];                         \
    const int32_t is2_ = bc_->stride2[nd_ - 1];                         \
    int32_t idx_[TG_EW_MAX_DIMS] = {0};                                 \
    int32_t rows_ = 1, r_, j_, d_, oa_ = 0, ob_ = 0;                    \
    int8_t *o_ = (OUT);                                                 \
    for (d_ = 0; d_ < nd_ - 1; ++d_) {                                  \
      rows_ *= bc_->dims[d_];                                           \
    }                                                                   \
    for (r_ = 0; r_ < rows_; ++r_) {                                    \
      const int8_t *pa_ = (IN1) + oa_;                                  \
      const int8_t *pb_ = (IN2) + ob_;                                  \
      for (j_ = 0; j_ < inner_; ++j_) {                                 \
        *o_++ = ELEM((int32_t)pa_[j_ * is1_], (int32_t)pb_[j_ * is2_]); \
      }                                                                 \
      for (d_ = nd_ - 2; d_ >= 0; --d_) {                               \
        oa_ += bc_->stride1[d_];                                        \
        ob_ += bc_->stride2[d_];                                        \
        if (++idx_[d_] < bc_->dims[d_]) {                               \
          break;                                                        \
        }                                                               \
        oa_ -= bc_->stride1[d_] * bc_->dims[d_];                        \
        ob_ -= bc_->stride2[d_] * bc_->dims[d_];                        \
        idx_[d_] = 0;                                                   \
      }                                                                 \
    }                                                                   \
  } while (0)

void tg_add_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const tg_add_operand o1 =
      tg_add_operand_of(p->input1_offset, p->input1_multiplier, p->input1_shift);
  const tg_add_operand o2 =
      tg_add_operand_of(p->input2_offset, p->input2_multiplier, p->input2_shift);
  tg_add_output o;
  o.multiplier = p->output_multiplier;
  o.offset = p->output_offset;
  o.act_min = p->act_min;
  o.act_max = p->act_max;
  o.sign2 = p->subtract ? -1 : 1;
  o.divide = tg_pot_divisor_of((int)-p->output_shift);
#define TG_ADD_ELEM(x, y) tg_add_one(&o1, &o2, &o, (x), (y))
  TG_BCAST_LOOP(&p->bc, in1, in2, out, TG_ADD_ELEM);
#undef TG_ADD_ELEM
}

/* one output element from the tables r1, r2 (the output side in locals) */
#define TG_ADD_TABLE_ELEM(a, b)                                                              \
  ((int8_t)tg_clamp_i32(                                                                     \
      tg_divide_by_pot(                                                                      \
          (int32_t)(((int64_t)(r1[(a)] + r2[(b)]) * multiplier + ((int64_t)1 << 30)) >> 31), \
          &divide) +                                                                         \
          offset,                                                                            \
      act_min, act_max))

/* ADD/SUB through two tables of the rescaled operands (every int8 value of
 * each input, computed with tg_add_rescale), built in the scratch memory at
 * each call: per element two loads instead of two rescalings.  Scratch:
 * TG_ADD_TABLE_BYTES, 4-byte aligned. */
void tg_add_table_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                     void *scratch) {
  int32_t *const t1 = (int32_t *)scratch;
  int32_t *const t2 = t1 + 256;
  const int32_t *const r1 = t1 + 128; /* r1[x] for x in [-128, 127] */
  const int32_t *const r2 = t2 + 128;
  const tg_add_operand o1 =
      tg_add_operand_of(p->input1_offset, p->input1_multiplier, p->input1_shift);
  const tg_add_operand o2 =
      tg_add_operand_of(p->input2_offset, p->input2_multiplier, p->input2_shift);
  const int32_t sign2 = p->subtract ? -1 : 1;
  const int32_t multiplier = p->output_multiplier, offset = p->output_offset;
  const int32_t act_min = p->act_min, act_max = p->act_max;
  const tg_pot_divisor divide = tg_pot_divisor_of((int)-p->output_shift);
  int32_t x;
  for (x = -128; x < 128; ++x) {
    t1[x + 128] = tg_add_rescale(&o1, x);
    t2[x + 128] = sign2 * tg_add_rescale(&o2, x);
  }
  TG_BCAST_LOOP(&p->bc, in1, in2, out, TG_ADD_TABLE_ELEM);
}

/* The two steps of tg_add_table_s8 apart, for a caller that adds several
 * parts of one tensor pair: the tables once, then each part through them. */
void tg_add_tables_s8(const tg_add_s8_params *p, void *tables) {
  int32_t *const t1 = (int32_t *)tables;
  const tg_add_operand o1 =
      tg_add_operand_of(p->input1_offset, p->input1_multiplier, p->input1_shift);
  const tg_add_operand o2 =
      tg_add_operand_of(p->input2_offset, p->input2_multiplier, p->input2_shift);
  const int32_t sign2 = p->subtract ? -1 : 1;
  int32_t x;
  for (x = -128; x < 128; ++x) {
    t1[x + 128] = tg_add_rescale(&o1, x);
    t1[x + 384] = sign2 * tg_add_rescale(&o2, x);
  }
}

void tg_add_with_tables_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2,
                           int8_t *out, const void *tables) {
  const int32_t *const r1 = (const int32_t *)tables + 128;
  const int32_t *const r2 = r1 + 256;
  const int32_t multiplier = p->output_multiplier, offset = p->output_offset;
  const int32_t act_min = p->act_min, act_max = p->act_max;
  const tg_pot_divisor divide = tg_pot_divisor_of((int)-p->output_shift);
  TG_BCAST_LOOP(&p->bc, in1, in2, out, TG_ADD_TABLE_ELEM);
}
#undef TG_ADD_TABLE_ELEM

void tg_mul_s8(const tg_mul_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
#define TG_MUL_ELEM(x, y) tg_mul_one(p, (x), (y))
  TG_BCAST_LOOP(&p->bc, in1, in2, out, TG_MUL_ELEM);
#undef TG_MUL_ELEM
}

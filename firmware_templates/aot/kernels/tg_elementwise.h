/* Element-wise, activation, reduction and data-movement kernels of tinygen's
 * aot runtime (int8 unless a name says otherwise).
 *
 * Every constant is resolved at build time by the lowerings in
 * tinygen/codegen/aot_ops/elementwise.py and arrives in a params struct; the
 * kernels only loop.  The integer arithmetic reproduces, result for result,
 * what the TFLM interpreter computes with its reference kernels for the same
 * operator (gemmlowp fixed point, TFLite's double-rounding requantization).
 *
 * Sources: tg_add_mul.c, tg_softmax.c, tg_activations.c, tg_relu.c,
 * tg_mean.c, tg_concat_pad.c, tg_quantize.c (each can be linked on its own).
 */
#ifndef TG_ELEMENTWISE_H
#define TG_ELEMENTWISE_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest rank the broadcasting/reduction/padding kernels iterate over
 * (after the lowering has merged dimensions that can be merged). */
#define TG_EW_MAX_DIMS 6
/* Largest number of inputs of a CONCATENATION (TFLM's own limit). */
#define TG_CONCAT_MAX_INPUTS 10

/* A broadcast iteration space: the output is walked in row-major order over
 * dims[0..ndim-1]; stride1/stride2 are the element strides of the two inputs
 * along each dimension (0 along a broadcast dimension).  A plain element-wise
 * operation is ndim = 1, dims = {size}, strides = {1}. */
typedef struct {
  int32_t ndim;
  int32_t dims[TG_EW_MAX_DIMS];
  int32_t stride1[TG_EW_MAX_DIMS];
  int32_t stride2[TG_EW_MAX_DIMS];
} tg_bcast;

/* ---- ADD / SUB (TFLM AddFunc / SubFunc, int8: left_shift = 20) --------- */
/* Offsets, shifts and clamps in the narrowest types their int8 ranges need
 * (tinygen/plan/narrow.py: ADD_S8; one struct per layer in flash). */
typedef struct {
  tg_bcast bc;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int16_t input1_offset, input2_offset, output_offset; /* -zp1, -zp2, zp_out */
  int8_t input1_shift, input2_shift, output_shift;
  int8_t act_min, act_max;
  uint8_t subtract; /* 1 for SUB: in1 - in2 */
} tg_add_s8_params;

void tg_add_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* The same result through per-call tables of the rescaled operands. */
#define TG_ADD_TABLE_BYTES (2 * 256 * 4)
void tg_add_table_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                     void *scratch);
/* The same in two steps, for a caller that adds several parts of one tensor
 * pair with the same parameters (tg_stream_res_s8): the tables once, then
 * each part through them (p->bc describes the part). */
void tg_add_tables_s8(const tg_add_s8_params *p, void *tables);
void tg_add_with_tables_s8(const tg_add_s8_params *p, const int8_t *in1, const int8_t *in2,
                           int8_t *out, const void *tables);
/* SUB is tg_add_s8 with subtract = 1 (same rescaling, difference of the
 * rescaled inputs). */

/* ---- MUL (TFLM reference_integer_ops::MulElementwise) ------------------ */
typedef struct {
  tg_bcast bc;
  int32_t output_multiplier;
  int16_t input1_offset, input2_offset, output_offset;
  int8_t output_shift;
  int8_t act_min, act_max; /* (narrow.py: MUL_S8) */
} tg_mul_s8_params;

void tg_mul_s8(const tg_mul_s8_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* ---- SOFTMAX over the innermost dimension (gemmlowp exp, Q5.26 input) --- */
typedef struct {
  int32_t outer;            /* number of rows */
  int32_t depth;            /* row length (innermost dimension) */
  int32_t input_multiplier; /* beta * input_scale, Q31, from PreprocessSoftmaxScaling */
  int32_t input_left_shift;
  int32_t diff_min; /* differences below this give exp() == 0 */
} tg_softmax_s8_params;

void tg_softmax_s8(const tg_softmax_s8_params *p, const int8_t *in, int8_t *out);
/* int8 input, int16 output (zero point -32768, scale 1/65536). */
void tg_softmax_s8_s16(const tg_softmax_s8_params *p, const int8_t *in, int16_t *out);

/* ---- LOGISTIC / TANH: a table of the 256 output codes ------------------ */
typedef struct {
  int32_t size;
  const int8_t *table; /* [256]: the output code of input code i - 128 */
} tg_lut_s8_params;

void tg_lut_s8(const tg_lut_s8_params *p, const int8_t *in, int8_t *out);

/* ---- RELU / RELU6 / LEAKY_RELU / HARD_SWISH (tg_relu.c) ----------------- */
typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift; /* input scale / output scale */
  int32_t act_min, act_max;
} tg_relu_s8_params;

/* RELU: requantize, clamp at the output zero point (TFLM ReluQuantized). */
void tg_relu_s8(const tg_relu_s8_params *p, const int8_t *in, int8_t *out);

typedef struct {
  int32_t size;
  int32_t lo, hi;
} tg_clamp_s8_params;

/* RELU6: clamp in the input's quantization (TFLM Relu6Quantized does not
 * requantize). */
void tg_clamp_s8(const tg_clamp_s8_params *p, const int8_t *in, int8_t *out);

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier_identity, shift_identity; /* x >= 0 */
  /* x < 0: |alpha| requantized, then negated when alpha < 0.  TFLM rounds a
   * negative alpha's products like the negated products of |alpha| (measured
   * against the interpreter at exact ties), not as gemmlowp would round a
   * negative Q31 multiplier, so the sign is kept apart. */
  int32_t multiplier_alpha, shift_alpha;
  int32_t alpha_negative;
} tg_leaky_relu_s8_params;

void tg_leaky_relu_s8(const tg_leaky_relu_s8_params *p, const int8_t *in, int8_t *out);

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t output_multiplier_fixedpoint_int16, output_multiplier_exponent;
  int32_t reluish_multiplier_fixedpoint_int16, reluish_multiplier_exponent;
} tg_hard_swish_s8_params;

/* HARD_SWISH in 16-bit fixed point (TFLM reference_ops::HardSwish). */
void tg_hard_swish_s8(const tg_hard_swish_s8_params *p, const int8_t *in, int8_t *out);

/* ---- MEAN / SUM over any set of axes ------------------------------------ */
/* out = clamp(requantize(sum(q) - zp_in * count, multiplier, shift) + zp_out);
 * for MEAN the 1/count factor is already folded into the multiplier. */
typedef struct {
  int32_t out_ndim; /* kept dimensions (output order) */
  int32_t out_dims[TG_EW_MAX_DIMS];
  int32_t out_stride[TG_EW_MAX_DIMS]; /* input element stride of each kept dim */
  int32_t red_ndim;                   /* reduced dimensions */
  int32_t red_dims[TG_EW_MAX_DIMS];
  int32_t red_stride[TG_EW_MAX_DIMS];
  int32_t count; /* elements summed per output */
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
} tg_reduce_s8_params;

void tg_reduce_sum_s8(const tg_reduce_s8_params *p, const int8_t *in, int8_t *out);

/* ---- CONCATENATION (a byte copy; TFLM requires int8 inputs to share the
 *      output quantization, the lowering checks it) -------------------- */
typedef struct {
  int32_t num_inputs;
  int32_t outer;            /* product of dims before the axis */
  const int32_t *copy_size; /* [num_inputs]: bytes per outer step, per input */
} tg_concat_params;

/* Arguments after p: num_inputs input pointers, then the output pointer. */
void tg_concatenation(const tg_concat_params *p, ...);

/* ---- PAD / PADV2 with a constant value ---------------------------------- */
typedef struct {
  int32_t ndim;
  int32_t in_dims[TG_EW_MAX_DIMS];
  int32_t out_dims[TG_EW_MAX_DIMS];
  int32_t before[TG_EW_MAX_DIMS]; /* leading padding of each dimension */
  int32_t pad_value;
} tg_pad_s8_params;

void tg_pad_s8(const tg_pad_s8_params *p, const int8_t *in, int8_t *out);

/* ---- QUANTIZE / DEQUANTIZE / requantize --------------------------------- */
typedef struct {
  int32_t size;
  float scale;        /* output scale */
  int32_t zero_point; /* output zero point */
  int32_t qmin, qmax; /* -128..127 for int8, -32768..32767 for int16 */
} tg_quantize_f32_params;

/* float32 -> int8 / int16 (TFLM AffineQuantize) */
void tg_quantize_f32_s8(const tg_quantize_f32_params *p, const float *in, int8_t *out);
void tg_quantize_f32_s16(const tg_quantize_f32_params *p, const float *in, int16_t *out);

typedef struct {
  int32_t size;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
} tg_requantize_params;

/* int8/int16 -> int8/int16 (TFLM Requantize) */
void tg_requantize_s8_s8(const tg_requantize_params *p, const int8_t *in, int8_t *out);
void tg_requantize_s8_s16(const tg_requantize_params *p, const int8_t *in, int16_t *out);
void tg_requantize_s16_s8(const tg_requantize_params *p, const int16_t *in, int8_t *out);
void tg_requantize_s16_s16(const tg_requantize_params *p, const int16_t *in, int16_t *out);
/* a camera frame's uint8 pixels -> int8, and int8 -> int32 (a front end's table indices) */
void tg_requantize_u8_s8(const tg_requantize_params *p, const uint8_t *in, int8_t *out);
void tg_requantize_s8_s32(const tg_requantize_params *p, const int8_t *in, int32_t *out);

typedef struct {
  int32_t size;
  float scale;        /* input scale */
  int32_t zero_point; /* input zero point */
} tg_dequantize_params;

/* int8 / int16 -> float32 (TFLM Dequantize) */
void tg_dequantize_s8_f32(const tg_dequantize_params *p, const int8_t *in, float *out);
void tg_dequantize_s16_f32(const tg_dequantize_params *p, const int16_t *in, float *out);

#ifdef __cplusplus
}
#endif

#endif /* TG_ELEMENTWISE_H */

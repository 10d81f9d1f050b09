/* The model interface of tinygen's generated code, for both runtimes.
 *
 * Two layers live here:
 *
 *  - the types and helpers of the prefixed C API (docs/api.md): a model built
 *    with `--name kws` is used through kws.h (kws_init, kws_invoke,
 *    kws_input, ...), which includes this header.  Several models with
 *    different names link into one image.
 *
 *  - tg_model_info and the tg_model_* functions: the one model the serial
 *    protocol (tg_protocol.c) serves.  The generated model's translation unit
 *    defines them, forwarding to its prefixed API, only in protocol firmware
 *    (what `tinygen verify` builds), so the protocol code serves every
 *    runtime and board unchanged.
 */
#ifndef TG_MODEL_API_H
#define TG_MODEL_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the prefixed API described here (a header compiled against
 * another major version must not be mixed with this one). */
#define TG_API_VERSION_MAJOR 1
#define TG_API_VERSION_MINOR 1

#define TG_MAX_DIMS 6

/* Element types, numbered as in the TFLite schema's TensorType. */
#define TG_DTYPE_FLOAT32 0u
#define TG_DTYPE_INT32 2u
#define TG_DTYPE_UINT8 3u
#define TG_DTYPE_INT16 7u
#define TG_DTYPE_INT8 9u
#define TG_DTYPE_UINT64 12u /* a front end's filter bank */
#define TG_DTYPE_UINT32 15u /* a front end's energies */

typedef struct {
  uint8_t dtype; /* TG_DTYPE_* */
  uint8_t rank;
  int32_t dims[TG_MAX_DIMS];
  uint32_t bytes; /* element count * element size */
  float scale;    /* per-tensor quantization (0 when none) */
  int32_t zero_point;
} tg_tensor_info;

typedef struct {
  const char *runtime;   /* "aot" or "tflm" */
  const char *board;     /* board id as in boards/ */
  uint8_t signature[32]; /* SHA-256 of the .tflite the code came from */
  uint32_t arena_bytes;  /* activation RAM the runtime reserved */
  uint8_t num_inputs;
  uint8_t num_outputs;
  const tg_tensor_info *inputs;
  const tg_tensor_info *outputs;
} tg_model_info_t;

/* Results of the prefixed API; the values are stable (they reach the host as
 * the protocol's model status). */
typedef enum {
  TG_OK = 0,
  TG_ERR_SCHEMA = -1,          /* tflm: the model's schema is not this TFLM's */
  TG_ERR_OP_RESOLVER = -2,     /* tflm: registering an operator failed */
  TG_ERR_ARENA = -3,           /* tflm: the arena is too small (see last_error) */
  TG_ERR_INVOKE = -4,          /* an operator failed (see last_error) */
  TG_ERR_NOT_INITIALIZED = -5, /* <name>_init() has not succeeded yet */
  TG_ERR_INDEX = -6,           /* no input/output with that index */
  TG_ERR_DTYPE = -7            /* the tensor is not a quantized int8/uint8/int16 one */
} tg_status;

/* One input or output of a model: its buffer and what its bytes mean.
 * real value = scale * (q - zero_point). */
typedef struct {
  void *data;     /* NULL until <name>_init() succeeded */
  uint32_t bytes; /* element count * element size */
  uint8_t dtype;  /* TG_DTYPE_* */
  uint8_t rank;
  int32_t dims[TG_MAX_DIMS]; /* dims[0..rank-1], batch first */
  float scale;               /* 0 when the tensor is not quantized */
  int32_t zero_point;
} tg_tensor;

static inline uint32_t tg_tensor_count(const tg_tensor *t) {
  uint32_t n = 1u;
  uint8_t i;
  for (i = 0; i < t->rank; ++i) n *= (uint32_t)t->dims[i];
  return n;
}

/* float -> the tensor's integers as TFLite's QUANTIZE computes them
 * (round(x / scale) half away from zero, plus zero_point, saturated), so the
 * device quantizes exactly as the converter's reference does. */
static inline tg_status tg_quantize(const tg_tensor *t, const float *values) {
  int32_t lo, hi;
  uint32_t i, n;
  if (!t || !t->data) return TG_ERR_NOT_INITIALIZED;
  switch (t->dtype) {
    case TG_DTYPE_INT8:
      lo = -128;
      hi = 127;
      break;
    case TG_DTYPE_UINT8:
      lo = 0;
      hi = 255;
      break;
    case TG_DTYPE_INT16:
      lo = -32768;
      hi = 32767;
      break;
    default:
      return TG_ERR_DTYPE;
  }
  if (!(t->scale > 0.0f)) return TG_ERR_DTYPE;
  n = tg_tensor_count(t);
  for (i = 0; i < n; ++i) {
    float r = values[i] / t->scale;
    int32_t q;
    if (r != r) {
      q = 0; /* NaN: no meaningful value; the zero point is the least surprise */
    } else if (r >= 65536.0f) {
      q = 65536; /* beyond every range: saturates below, avoids int overflow */
    } else if (r <= -65536.0f) {
      q = -65536;
    } else {
      float whole = (float)(int32_t)r; /* truncates toward zero, exact here */
      float frac = r - whole;
      q = (int32_t)whole;
      if (frac >= 0.5f)
        q += 1;
      else if (frac <= -0.5f)
        q -= 1;
    }
    q += t->zero_point;
    if (q < lo) q = lo;
    if (q > hi) q = hi;
    switch (t->dtype) {
      case TG_DTYPE_INT8:
        ((int8_t *)t->data)[i] = (int8_t)q;
        break;
      case TG_DTYPE_UINT8:
        ((uint8_t *)t->data)[i] = (uint8_t)q;
        break;
      default:
        ((int16_t *)t->data)[i] = (int16_t)q;
        break;
    }
  }
  return TG_OK;
}

/* The tensor's integers -> float, scale * (q - zero_point), as TFLite's
 * DEQUANTIZE: the float product of two exact operands equals its double
 * product rounded to float. */
static inline tg_status tg_dequantize(const tg_tensor *t, float *values) {
  uint32_t i, n;
  if (!t || !t->data) return TG_ERR_NOT_INITIALIZED;
  if (!(t->scale > 0.0f)) return TG_ERR_DTYPE;
  n = tg_tensor_count(t);
  for (i = 0; i < n; ++i) {
    int32_t q;
    switch (t->dtype) {
      case TG_DTYPE_INT8:
        q = ((const int8_t *)t->data)[i];
        break;
      case TG_DTYPE_UINT8:
        q = ((const uint8_t *)t->data)[i];
        break;
      case TG_DTYPE_INT16:
        q = ((const int16_t *)t->data)[i];
        break;
      default:
        return TG_ERR_DTYPE;
    }
    values[i] = t->scale * (float)(q - t->zero_point);
  }
  return TG_OK;
}

/* ---- the protocol's model (protocol firmware only) --------------------- */

extern const tg_model_info_t tg_model_info;

/* Prepare the model; 0 on success, a negative tg_status else. */
int tg_model_init(void);

/* Buffers of tg_model_info.inputs[i].bytes / outputs[i].bytes bytes. */
uint8_t *tg_model_input(int index);
const uint8_t *tg_model_output(int index);

/* Run one inference on the current input buffers; 0 on success. */
int tg_model_run(void);

/* Stateful models (LSTM): put the state back to what init left. */
void tg_model_reset(void);

/* Activation RAM the runtime actually uses, in bytes: for tflm what TFLM's
 * allocator has taken from the arena so far (final after init and the first
 * inference), for aot its static plan.  The host compares it with
 * tg_model_info.arena_bytes, the size reserved. */
uint32_t tg_model_arena_used(void);

/* Why tg_model_init or tg_model_run last failed, as one line of text ("" when
 * there is nothing to say).  The protocol sends it to the host in INFO. */
const char *tg_model_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* TG_MODEL_API_H */

/* The model interface both runtimes (aot and tflm) implement.
 *
 * The serial protocol (tg_protocol.c) talks to a model only through this
 * header, so the same device code serves every runtime and board.  A runtime
 * backend generates one translation unit defining tg_model_info and the four
 * functions below.
 */
#ifndef TG_MODEL_API_H
#define TG_MODEL_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_MAX_DIMS 6

/* Element types, numbered as in the TFLite schema's TensorType. */
#define TG_DTYPE_FLOAT32 0u
#define TG_DTYPE_INT32 2u
#define TG_DTYPE_UINT8 3u
#define TG_DTYPE_INT16 7u
#define TG_DTYPE_INT8 9u

typedef struct {
  uint8_t dtype;                 /* TG_DTYPE_* */
  uint8_t rank;
  int32_t dims[TG_MAX_DIMS];
  uint32_t bytes;                /* element count * element size */
  float scale;                   /* per-tensor quantization (0 when none) */
  int32_t zero_point;
} tg_tensor_info;

typedef struct {
  const char *runtime;           /* "aot" or "tflm" */
  const char *board;             /* board id as in boards/ */
  uint8_t signature[32];         /* SHA-256 of the .tflite the code came from */
  uint32_t arena_bytes;          /* activation RAM the runtime reserved */
  uint8_t num_inputs;
  uint8_t num_outputs;
  const tg_tensor_info *inputs;
  const tg_tensor_info *outputs;
} tg_model_info_t;

extern const tg_model_info_t tg_model_info;

/* Prepare the model; 0 on success, a negative runtime-specific code else. */
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

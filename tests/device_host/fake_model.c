/* A hand-written stand-in for a generated model (tests only).
 *
 * Documented semantics (tests/test_protocol.py computes the expected outputs
 * from this description, independently of this code):
 *   input 0:  int8    [1, FAKE_H, FAKE_W, FAKE_C] (default 96x96x3),
 *             scale 0.0078125, zero point -1
 *   input 1:  float32 [1, 10]
 *   output 0: int8, shape and quantization of input 0: input 0's bytes reversed
 *   output 1: int32 [1, 4]: { sum of input 0's values, inferences since init
 *             or tg_model_reset (this one included), inferences since boot,
 *             0x12345678 }
 *   output 2: float32 [1, 10]: input 1 * 2 + 1
 *   The counter advances by 1000 + (bytes of input 0) per inference.
 *   After a run the model overwrites input 0 with 0x5A bytes (as a runtime
 *   reusing input memory may), so stale input is visible.
 *   If input 1[0] == -1234.5 tg_model_run returns -7; if it is 4242.0 the
 *   device reboots (tg_host_reboot) in the middle of the inference.
 *   TG_FAKE_INIT_STATUS=<n> in the environment makes tg_model_init return n.
 * Board "host", runtime "fake", arena 12345 bytes, signature bytes
 * 0xA0, 0xA1, ..., 0xBF.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "tg_hal_host.h"
#include "tg_model_api.h"

#ifndef FAKE_H
#define FAKE_H 96
#endif
#ifndef FAKE_W
#define FAKE_W 96
#endif
#ifndef FAKE_C
#define FAKE_C 3
#endif
#define IN0_BYTES (FAKE_H * FAKE_W * FAKE_C)

static int8_t in0[IN0_BYTES];
static float in1[10];
static int8_t out0[IN0_BYTES];
static int32_t out1[4];
static float out2[10];
static int32_t runs_since_reset, runs_since_boot;

static const tg_tensor_info inputs[2] = {
    {TG_DTYPE_INT8, 4, {1, FAKE_H, FAKE_W, FAKE_C, 0, 0}, IN0_BYTES, 0.0078125f, -1},
    {TG_DTYPE_FLOAT32, 2, {1, 10, 0, 0, 0, 0}, 40, 0.0f, 0},
};

static const tg_tensor_info outputs[3] = {
    {TG_DTYPE_INT8, 4, {1, FAKE_H, FAKE_W, FAKE_C, 0, 0}, IN0_BYTES, 0.0078125f, -1},
    {TG_DTYPE_INT32, 2, {1, 4, 0, 0, 0, 0}, 16, 0.0f, 0},
    {TG_DTYPE_FLOAT32, 2, {1, 10, 0, 0, 0, 0}, 40, 0.0f, 0},
};

const tg_model_info_t tg_model_info = {
    "fake",
    "host",
    {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA,
     0xAB, 0xAC, 0xAD, 0xAE, 0xAF, 0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5,
     0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF},
    12345,
    2,
    3,
    inputs,
    outputs,
};

int tg_model_init(void) {
  const char *status = getenv("TG_FAKE_INIT_STATUS");
  runs_since_reset = 0;
  return status ? atoi(status) : 0;
}

uint8_t *tg_model_input(int index) {
  if (index == 0) return (uint8_t *)in0;
  if (index == 1) return (uint8_t *)in1;
  return NULL;
}

const uint8_t *tg_model_output(int index) {
  if (index == 0) return (const uint8_t *)out0;
  if (index == 1) return (const uint8_t *)out1;
  if (index == 2) return (const uint8_t *)out2;
  return NULL;
}

int tg_model_run(void) {
  int32_t sum = 0;
  int k;
  if (in1[0] == -1234.5f) return -7;
  if (in1[0] == 4242.0f) tg_host_reboot();
  tg_host_counter_advance(1000u + IN0_BYTES);
  for (k = 0; k < IN0_BYTES; k++) {
    out0[k] = in0[IN0_BYTES - 1 - k];
    sum += in0[k];
  }
  runs_since_reset++;
  runs_since_boot++;
  out1[0] = sum;
  out1[1] = runs_since_reset;
  out1[2] = runs_since_boot;
  out1[3] = 0x12345678;
  for (k = 0; k < 10; k++) out2[k] = in1[k] * 2.0f + 1.0f;
  memset(in0, 0x5A, sizeof in0);
  return 0;
}

void tg_model_reset(void) { runs_since_reset = 0; }

uint32_t tg_model_arena_used(void) { return tg_model_info.arena_bytes; }

const char *tg_model_last_error(void) { return ""; }

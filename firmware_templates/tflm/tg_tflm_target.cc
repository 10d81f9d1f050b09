// tinygen's target support for TensorFlow Lite Micro, in place of TFLM's
// micro_time.cc, system_setup.cc and debug_log.cc (the build leaves those out).
//
// Why not TFLM's own: cortex_m_generic/micro_time.cc reads the DWT cycle counter
// through CMSIS device headers that a create_tflm_tree.py tree does not carry,
// and the generic one returns 0 ticks.  tinygen's HAL already has a counter per
// board (DWT cycles on real Cortex-M, SysTick-derived guest instructions under
// QEMU), so TFLM's profiler and tinygen's protocol count the same thing.
//
// DebugLog keeps what TFLM printed (MicroPrintf) since the last clear, first
// message first: a failed AllocateTensors prints its cause ("Failed to resize
// buffer. Requested: ..., missing: ...") before the summary ("Node CONV_2D
// (number 2) failed to prepare"), and the cause is what the host must see.
// It reaches the host through tg_model_last_error() instead of being lost on
// a board with no console.
#include <cstdarg>
#include <cstdint>
#include <cstdio>

#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"

#include "tg_hal.h"
#include "tg_tflm_target.h"

namespace {
char g_log[TG_TFLM_LOG_BYTES];
int g_log_len = 0;
}  // namespace

namespace tflite {

void InitializeTarget() {}

uint32_t ticks_per_second() {
#ifdef F_CPU
  return static_cast<uint32_t>(F_CPU);
#else
  return 0;  // unknown: TFLM's TicksToMs then reports ticks, not milliseconds
#endif
}

uint32_t GetCurrentTimeTicks() { return static_cast<uint32_t>(tg_hal_counter()); }

}  // namespace tflite

extern "C" void DebugLog(const char *format, va_list args) {
  // Keep the most recent non-empty line: TFLM prints messages in pieces
  // ending with "\r\n", so a bare newline must not erase the message.
  char line[TG_TFLM_LOG_BYTES];
  int n = vsnprintf(line, sizeof line, format, args);
  if (n >= static_cast<int>(sizeof line)) n = static_cast<int>(sizeof line) - 1;
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
  if (n <= 0) return;
  // Append "; line" while it fits; a message that does not fit is dropped whole.
  const int sep = g_log_len > 0 ? 2 : 0;
  if (g_log_len + sep + n >= TG_TFLM_LOG_BYTES) return;
  if (sep) {
    g_log[g_log_len++] = ';';
    g_log[g_log_len++] = ' ';
  }
  for (int i = 0; i < n; ++i) g_log[g_log_len++] = line[i];
  g_log[g_log_len] = '\0';
}

extern "C" int DebugVsnprintf(char *buffer, size_t buf_size, const char *format, va_list vlist) {
  return vsnprintf(buffer, buf_size, format, vlist);
}

extern "C" const char *tg_tflm_last_log(void) { return g_log; }

extern "C" void tg_tflm_clear_log(void) {
  g_log_len = 0;
  g_log[0] = '\0';
}

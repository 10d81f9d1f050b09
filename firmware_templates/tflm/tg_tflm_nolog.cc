// tinygen's TFLM log hooks where the TFLM library brings its own target files
// (ESP-IDF's esp-tflite-micro, Arduino TFLM libraries, a TFLM built by its own
// Makefile): DebugLog is theirs, so nothing is kept and <name>_last_error()
// says only which step failed; TFLM's messages go to that library's console.
#include "tg_tflm_target.h"

extern "C" const char *tg_tflm_last_log(void) { return ""; }

extern "C" void tg_tflm_clear_log(void) {}

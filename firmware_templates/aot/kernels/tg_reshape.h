/* RESHAPE, SQUEEZE, EXPAND_DIMS: the bytes do not change.  The memory planner
 * normally gives the output the input's buffer and no call is emitted; the
 * copy below is used when it cannot (e.g. the input is a constant). */
#ifndef TG_RESHAPE_H
#define TG_RESHAPE_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint32_t bytes;
} tg_reshape_params;

void tg_reshape(const tg_reshape_params *p, const void *input, void *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_RESHAPE_H */

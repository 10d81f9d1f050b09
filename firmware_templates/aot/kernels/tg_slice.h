/* Data-movement kernels of the aot runtime that pick elements of one tensor:
 * STRIDED_SLICE, SLICE-like selections, REVERSE_V2 and BROADCAST_TO (one
 * strided gather), UNPACK, SPLIT and SPLIT_V (a split into several outputs)
 * and PACK (several inputs interleaved into one output).
 *
 * They copy bytes and never requantize (TFLM's kernels do not either), so
 * they serve every element type; the lowerings in
 * tinygen/codegen/aot_ops/slicing.py reduce each operator to the loops below.
 */
#ifndef TG_SLICE_H
#define TG_SLICE_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loop dimensions of a gather after the lowering merged what it could. */
#define TG_GATHER_MAX_DIMS 6

/* The output is written front to back: for every position of the loop nest
 * (outermost first, count[d] iterations of dimension d, the input pointer
 * moving step[d] bytes per iteration, possibly backwards or not at all)
 * `run` contiguous input bytes are copied.  start is the input byte offset
 * of the first run; run == 0 means an empty output. */
typedef struct {
  int32_t ndim;
  int32_t count[TG_GATHER_MAX_DIMS];
  int32_t step[TG_GATHER_MAX_DIMS];
  int32_t start;
  int32_t run;
} tg_gather_params;

void tg_gather(const tg_gather_params *p, const void *input, void *output);

/* The input seen as [outer][row_bytes]; output k receives part_bytes[k]
 * bytes of every row, the parts following each other along the row. */
typedef struct {
  int32_t num_outputs;
  int32_t outer;
  int32_t row_bytes;
  const int32_t *part_bytes;
} tg_split_params;

/* Arguments after the input: num_outputs output pointers. */
void tg_split(const tg_split_params *p, const void *input, ...);

/* PACK: num_inputs inputs of [outer][part_bytes] each; the output is
 * [outer][num_inputs][part_bytes]. */
typedef struct {
  int32_t num_inputs;
  int32_t outer;
  int32_t part_bytes;
} tg_pack_params;

/* Arguments after p: num_inputs input pointers, then the output pointer. */
void tg_pack(const tg_pack_params *p, ...);

#ifdef __cplusplus
}
#endif

#endif /* TG_SLICE_H */

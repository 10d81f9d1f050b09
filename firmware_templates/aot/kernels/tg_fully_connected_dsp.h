/* Fully connected layer, int8, symmetric weights, for cores with the DSP
 * extension (TFLite FULLY_CONNECTED): four output rows per pass. */
#ifndef TG_FULLY_CONNECTED_DSP_H
#define TG_FULLY_CONNECTED_DSP_H

#include "tg_dsp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t batches; /* input rows [batches][depth] */
  int32_t depth;
  int32_t units; /* output [batches][units] */
  int32_t fast;  /* rq holds fast records (see tg_dsp.h) */
  int32_t act_full, act_min, act_max;
  const int32_t *filter; /* [ceil(units/4)][ceil(depth/4)][4 rows]: a word of four
                            int8 weights per row (zero-padded) */
  const int32_t *rq;     /* [ceil(units/4)][4 fields][4 rows]; the bias field holds
                            bias + input_offset * sum(row) */
} tg_fully_connected_dsp_params;

void tg_fully_connected_dsp_s8(const tg_fully_connected_dsp_params *p, const int8_t *input,
                               int8_t *output);
/* filter as 16-bit lanes: [ceil(units/4)][ceil(depth/4)][4 rows][2 words],
 * each row's (w0, w2) and (w1, w3) */
void tg_fully_connected_dsp_w16_s8(const tg_fully_connected_dsp_params *p, const int8_t *input,
                                   int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_FULLY_CONNECTED_DSP_H */

/* UNIDIRECTIONAL_SEQUENCE_LSTM, int8 activations and weights, int16 cell
 * state, int32 biases: the integer LSTM of the TFLM interpreter, result for
 * result.  docs/aot-lstm.md explains the arithmetic; the constants are
 * computed by tinygen/codegen/aot_ops/lstm.py.
 *
 * The hidden state (int8) and the cell state (int16) are variable tensors:
 * they keep their values from one tg_model_run() to the next and
 * tg_model_reset() puts them back to the hidden zero point / 0.
 */
#ifndef TG_LSTM_H
#define TG_LSTM_H

#include "tg_dsp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Gate order everywhere: input, forget, cell, output (TFLite's tensor order). */
#define TG_LSTM_GATES 4

typedef struct {
  int32_t batches;
  int32_t time_steps;
  int32_t input_size;
  int32_t units;
  int32_t time_major; /* 1: input [time][batch][in]; 0: [batch][time][in] */
  /* Weights of the four gates back to back: w_in [4][units][input_size],
   * w_rec [4][units][units] (symmetric int8, zero point 0). */
  const int8_t *w_in;
  const int8_t *w_rec;
  /* Folded accumulator starts, [4][units] each:
   *   kbias_in  = bias - input_zero_point  * sum_d w_in[g][u][d]
   *   kbias_rec =      - hidden_zero_point * sum_d w_rec[g][u][d] */
  const int32_t *kbias_in;
  const int32_t *kbias_rec;
  /* Gate pre-activations are int16 with scale 2^-12. */
  int32_t in_mult[TG_LSTM_GATES], in_shift[TG_LSTM_GATES];
  int32_t rec_mult[TG_LSTM_GATES], rec_shift[TG_LSTM_GATES];
  /* forget gate (2^-15) x cell (s_c) -> cell */
  int32_t forget_mult, forget_shift;
  /* input gate (2^-15) x cell gate (2^-15) -> cell */
  int32_t input_mult, input_shift;
  /* tanh(cell) (2^-15) x output gate (2^-15) -> hidden (int8, hidden_zp) */
  int32_t hidden_mult, hidden_shift, hidden_zp;
  /* tanh of the cell state: t = (c * tanh_mult + round) >> tanh_shift */
  int32_t tanh_mult, tanh_shift;
  int32_t use_cell_clip; /* cell_clip > 0 in the model */
  int32_t cell_clip;     /* quantized clip value (int16 range) */
  /* DSP cores (NULL elsewhere): the same weights with the four gates of a
   * unit interleaved for tg_dot4_s8, per unit [ceil(n/4) groups][4 gates]
   * words, and per unit the folded starts {kbias_in[0..3], kbias_rec[0..3]}. */
  const int32_t *w4_in;
  const int32_t *w4_rec;
  const int32_t *kb4;
  /* 1: every requantization above was proved to fit tg_rq_fast (see tg_dsp.h);
   * 2: the same, except gate matmuls with e = 0 (SMMULR alone):
   * the *_shift fields then hold e = -shift and the *_rnd fields its rounding
   * constant (hidden_rnd with hidden_zp folded in). */
  int32_t fast;
  int32_t in_rnd[TG_LSTM_GATES], rec_rnd[TG_LSTM_GATES];
  int32_t forget_rnd, input_rnd, hidden_rnd;
  /* tg_lstm_dsp_s8 / _e0 (fast requantization proved): per unit, the
   * doubled starts {kbias_in[0..3]}, the input weights sign-extended to
   * 16-bit lanes and doubled (so that the accumulators are the 2 * acc that
   * SMMULR takes; per group of four inputs, per gate the words (w0, w2) and
   * (w1, w3), the lanes of a column word, see tg_expand_s8), then the same
   * for the recurrent side: one stream read front to back once per step. */
  const int32_t *w16;
  /* the gate matmuls' requantization records, the four input-side gates
   * then the four recurrent ones: {mult, rnd, e} (fast = 1) or
   * {mult, rnd, e, mask} (fast = 2: mask -1, or e = rnd = mask = 0 for
   * SMMULR alone) */
  int32_t gate_rq[2 * TG_LSTM_GATES * 4];
} tg_lstm_params;

/* input: the sequence; hidden [batches][units] and cell [batches][units] are
 * read and updated in place; output [.. as input ..][units] receives the
 * hidden state of every step. */
void tg_lstm_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                int8_t *output);

/* The same on DSP cores when every requantization fits tg_rq_fast:
 * scratch holds x and h of the current step as 16-bit lanes,
 * 8 * (ceil(input_size / 4) + ceil(units / 4)) bytes. */
void tg_lstm_dsp_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                    int8_t *output, void *scratch);
/* The same where some gate matmul requantizes without a right shift (fast = 2). */
void tg_lstm_dsp_e0_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                       int8_t *output, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TG_LSTM_H */

/* Audio front-end kernels: the arithmetic of TFLM's signal library ops
 * (SignalWindow, SignalFftAutoScale, SignalRfft, SignalEnergy, SignalFilterBank,
 * SignalFilterBankSquareRoot, SignalFilterBankSpectralSubtraction, SignalPCAN,
 * SignalFilterBankLog, SignalFramer, SignalStacker, SignalDelay, SignalOverlapAdd),
 * integer for integer, so that a front end run by the aot
 * runtime gives the tflite_micro interpreter's features to the last bit.
 *
 * What differs from TFLM is where the work is done: every table (FFT twiddles,
 * the FFT's input order, the log curve) is computed at build time in Python
 * and baked into flash, the FFT runs its stages in place over one scratch
 * buffer, and kernel state (the noise estimate) lives in a static array the
 * model's reset clears. */
#ifndef TG_SIGNAL_H
#define TG_SIGNAL_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Radix-4 and radix-2 stages of a power-of-two complex FFT (kissfft's split). */
#define TG_RFFT_MAX_STAGES 16

typedef struct {
  int32_t size;        /* samples in the input */
  int32_t window_size; /* weights; size is a multiple of it */
  int32_t shift;
} tg_window_params;

typedef struct {
  int32_t size;
} tg_fft_auto_scale_params;

typedef struct {
  int32_t fft_length;   /* real points; the complex FFT has half as many */
  int32_t input_length; /* samples per frame, zero-padded up to fft_length */
  int32_t frames;
  int32_t output_stride; /* complex values per output frame */
  int32_t num_stages;
  int32_t radix[TG_RFFT_MAX_STAGES]; /* innermost stage first */
  const int16_t *twiddles;           /* fft_length / 2 complex values (re, im) */
  const int16_t *super_twiddles;     /* fft_length / 4 complex values */
  const uint16_t *order;             /* complex input index of each FFT slot */
} tg_rfft_params;

typedef struct {
  int32_t fft_length;   /* real output samples per frame; the complex FFT has half */
  int32_t input_stride; /* complex values per input frame (at least fft_length / 2 + 1) */
  int32_t frames;
  int32_t num_stages;
  int32_t radix[TG_RFFT_MAX_STAGES]; /* innermost stage first */
  const int16_t *twiddles;           /* the inverse's: conjugates, rounded on their own */
  const int16_t *super_twiddles;
  const uint16_t *order;
} tg_irfft_params;

typedef struct {
  int32_t size; /* complex values in */
  int32_t start_index;
  int32_t end_index;
} tg_energy_params;

typedef struct {
  int32_t num_channels; /* outputs; the bank has one more (channel 0 is discarded) */
} tg_filter_bank_params;

typedef struct {
  int32_t num_channels;
} tg_filter_bank_sqrt_params;

typedef struct {
  int32_t num_channels;
  uint32_t smoothing;
  uint32_t one_minus_smoothing;
  uint32_t alternate_smoothing;
  uint32_t alternate_one_minus_smoothing;
  uint32_t min_signal_remaining;
  uint32_t smoothing_bits;
  uint32_t spectral_subtraction_bits;
  int32_t clamping;
} tg_spectral_subtraction_params;

typedef struct {
  int32_t num_channels;
  int32_t snr_shift;
} tg_pcan_params;

typedef struct {
  int32_t num_channels;
  uint32_t correction_bits;
  uint32_t output_scale;
  const uint16_t *log_lut; /* 130 entries: log2(1 + x) - x on 128 segments, Q16 */
} tg_filter_bank_log_params;

typedef struct {
  int32_t outer_dims; /* independent streams */
  int32_t n_frames;   /* frames per invoke and stream */
  int32_t frame_size;
  int32_t frame_step;
  int32_t initial;  /* samples held after reset: the zeros of prefill */
  int32_t capacity; /* samples a stream's state holds */
} tg_framer_params;

typedef struct {
  int32_t num_channels;
  int32_t left_context; /* frames kept before the newest one */
} tg_stacker_params;

typedef struct {
  int32_t outer_dims; /* independent streams */
  int32_t frame_size; /* samples per stream and invoke (the innermost axis) */
  int32_t delay;      /* delay_length: samples each stream is held back */
} tg_delay_params;

typedef struct {
  int32_t outer_dims; /* independent streams */
  int32_t n_frames;   /* frames per invoke and stream */
  int32_t frame_size;
  int32_t frame_step; /* output samples per frame; at most frame_size */
} tg_overlap_add_params;

/* state: outer_dims int32 counts, then outer_dims x capacity int16 samples. */
void tg_framer_s16(const tg_framer_params *p, const int16_t *in, int16_t *out, uint8_t *valid,
                   void *state);
/* state: an int32 flag, then (left_context + 1) x num_channels int16 values. */
void tg_stacker_s16(const tg_stacker_params *p, const int16_t *in, int16_t *out, uint8_t *valid,
                    void *state);
/* state: outer_dims x delay int16 samples, the newest last (zeros after reset,
 * as TFLM's circular buffer starts with delay_length zeros). */
void tg_delay_s16(const tg_delay_params *p, const int16_t *in, int16_t *out, void *state);
/* state: outer_dims x frame_size samples of the running sum, zero after reset. */
void tg_overlap_add_s16(const tg_overlap_add_params *p, const int16_t *in, int16_t *out,
                        void *state);
void tg_overlap_add_f32(const tg_overlap_add_params *p, const float *in, float *out, void *state);
void tg_window_s16(const tg_window_params *p, const int16_t *in, const int16_t *weights,
                   int16_t *out);
void tg_fft_auto_scale_s16(const tg_fft_auto_scale_params *p, const int16_t *in, int16_t *out,
                           int32_t *scale_bits);
/* scratch: fft_length int16 values (the complex FFT's working buffer). */
void tg_rfft_s16(const tg_rfft_params *p, const int16_t *in, int16_t *out, void *scratch);
/* scratch: fft_length int16 values (the packed spectrum before the complex FFT). */
void tg_irfft_s16(const tg_irfft_params *p, const int16_t *in, int16_t *out, void *scratch);
void tg_energy_s16(const tg_energy_params *p, const int16_t *spectrum, uint32_t *out);
void tg_filter_bank(const tg_filter_bank_params *p, const uint32_t *in, const int16_t *weights,
                    const int16_t *unweights, const int16_t *frequency_starts,
                    const int16_t *weight_starts, const int16_t *widths, uint64_t *out);
void tg_filter_bank_sqrt(const tg_filter_bank_sqrt_params *p, const uint64_t *in,
                         const int32_t *scale_bits, uint32_t *out);
/* state: num_channels uint32 noise estimates, zero after reset. */
void tg_spectral_subtraction(const tg_spectral_subtraction_params *p, const uint32_t *in,
                             uint32_t *out, uint32_t *noise_out, void *state);
void tg_pcan(const tg_pcan_params *p, const uint32_t *in, const uint32_t *noise,
             const int16_t *gain_lut, uint32_t *out);
void tg_filter_bank_log(const tg_filter_bank_log_params *p, const uint32_t *in, int16_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TG_SIGNAL_H */

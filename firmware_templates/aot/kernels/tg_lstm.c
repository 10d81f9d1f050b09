/* UNIDIRECTIONAL_SEQUENCE_LSTM, int8 x int8 -> int16 cell (see tg_lstm.h and
 * docs/aot-lstm.md).
 *
 * One time step of one sequence ("row"), for every unit u:
 *   pre_g   = sat16(fc16(x . W_in[g][u]) + fc16(h . W_rec[g][u]))     Q3.12
 *   i, f, o = sigmoid16(pre_i/f/o), g = tanh16(pre_g)                 Q0.15
 *   c[u]    = sat16(mul16(f, c[u]) + mul16(i, g)), clipped if asked   cell scale
 *   y[u]    = sat8(zp_h + requant(tanh16(c[u]) * o))                  hidden scale
 * and only when every unit is done does the new hidden state replace the old
 * one (all units' gates read the previous h).  Rows of different batches are
 * independent, so batch-major and time-major inputs only differ in where a
 * row lives.
 *
 * sigmoid16/tanh16 interpolate a 256-entry table of the logistic function at
 * steps of 1/24 (values in 1/65536), the table that TFLM's int16 LOGISTIC and
 * TANH (and therefore its LSTM) use.  Its values are measured, not copied:
 * tools/derive_sigmoid_lut.py reads them back from the TFLM interpreter's
 * int16 TANH outputs at inputs on the table's grid and generates
 * tg_lstm_sigmoid_lut.h; the tests check both functions on every int16 input
 * against the TFLM interpreter.
 */
#include "tg_lstm.h"

#include "tg_lstm_sigmoid_lut.h"

static const uint16_t tg_lstm_sigmoid_lut[256] = {TG_LSTM_SIGMOID_LUT_VALUES};

/* logistic(v / 4096) in 1/32768 steps, v a Q3.12 int16.  3v puts 24 table
 * steps in one unit of v/4096 at 9 fractional bits; the low 9 bits
 * interpolate linearly; negative inputs use 1 - logistic(|v|).  For an int16
 * v the index is at most 3 * 32768 >> 9 = 192, so TFLM's saturation at index
 * 255 is never reached; the sign is applied without a branch:
 * 2^25 - r - 1 = ~r + 2^25 (mod 2^32). */
TG_INLINE int16_t tg_lstm_sigmoid(int32_t v) {
  const int32_t x = v * 3;
  const uint32_t s = (uint32_t)(x >> 31);
  const uint32_t ax = ((uint32_t)x ^ s) - s;
  const uint32_t k = ax >> 9;
  const uint32_t lo = tg_lstm_sigmoid_lut[k], hi = tg_lstm_sigmoid_lut[k + 1u];
  uint32_t r = (lo << 9) + (ax & 0x1FFu) * (hi - lo);
  r = (r ^ s) + (s & (1u << 25)) + (1u << 9);
  return (int16_t)(r >> 10);
}

/* tanh in 1/32768 steps, as 2 * logistic(2 * .) - 1 from the same table:
 * x = (v * mult + round) >> shift carries 24 table steps per unit of the
 * argument at 8 fractional bits (the lowering picks mult/shift from the
 * input's power-of-two scale: 3/0 for a Q3.12 gate). */
TG_INLINE int16_t tg_lstm_tanh(int32_t v, int32_t mult, int32_t shift) {
  const int32_t round = shift > 0 ? ((int32_t)1 << (shift - 1)) : 0;
  const int32_t x = (v * mult + round) >> shift;
  const uint32_t ax = (uint32_t)(x < 0 ? -x : x);
  const uint32_t k = ax >> 8;
  int32_t r;
  if (k >= 255u) {
    r = (int32_t)(0xFFFFu << 8);
  } else {
    const uint32_t lo = tg_lstm_sigmoid_lut[k], hi = tg_lstm_sigmoid_lut[k + 1u];
    r = (int32_t)((lo << 8) + (ax & 0xFFu) * (hi - lo));
  }
  /* x >= 0: r - 2^23 + 2^7; x < 0: 2^23 - r + 2^7 - 1 = ~r + 2^23 + 2^7 */
  {
    const int32_t s = x >> 31;
    r = (r ^ s) + ((int32_t)1 << 7) - ((int32_t)1 << 23) + (s & ((int32_t)1 << 24));
  }
  return (int16_t)(r >> 8);
}

/* tg_lstm_dsp_s8's forms: the table mirrored and offset (M[j] = L[j] - 2^15,
 * M[-j] = 2^15 - L[j], tools/derive_sigmoid_lut.py), indexed by the signed
 * j = x >> b with the fraction g = x & (2^b - 1).  For x >= 0 that is the
 * usual interpolation minus 2^(15+b); for x < 0, x = -(k * 2^b + f), j is
 * -k-1 and g = 2^b - f (or -k and 0 when f = 0), which interpolates
 * 2^(15+b) - r(|x|): TFLM's 1 - logistic(|x|) before its final -1.  So no
 * absolute value and no sign step, only the -1 for x < 0.  Past the last
 * entry the table holds TFLM's saturation (tanh's k >= 255). */
static const int16_t tg_lstm_mirror[2 * TG_LSTM_SIGMOID_MIRROR_HALF + 1] = {
    TG_LSTM_SIGMOID_MIRROR_VALUES};

/* mid: the table's entry 0, held in a register by the caller (GCC added
 * the offset to every index otherwise) */
TG_INLINE int32_t tg_lstm_mirror_pair(const int16_t *mid, int32_t j) {
  int32_t w;
  memcpy(&w, mid + j, 4);
  return w;
}

/* logistic from x = 3v (|x| < 2^17: j in [-192, 191]) */
TG_INLINE int16_t tg_lstm_sigmoid_m(const int16_t *mid, int32_t x) {
  const int32_t g = x & 0x1FF;
  const int32_t r = tg_smuad(tg_lstm_mirror_pair(mid, x >> 9), (g << 16) + (512 - g));
  return (int16_t)((r + ((1 << 24) + (1 << 9)) - (int32_t)((uint32_t)x >> 31)) >> 10);
}

/* tanh from its table argument x, |x| <= 3 * 2^15 (j in [-384, 383]) */
TG_INLINE int16_t tg_lstm_tanh_m(const int16_t *mid, int32_t x) {
  const int32_t g = x & 0xFF;
  const int32_t r = tg_smuad(tg_lstm_mirror_pair(mid, x >> 8), (g << 16) + (256 - g));
  return (int16_t)((r + (1 << 7) - (int32_t)((uint32_t)x >> 31)) >> 8);
}

/* tanh of the cell state: its argument clamped to 17 bits, which stays in
 * TFLM's saturation (|x| >= 255 * 2^8) wherever it clamps */
#ifdef TG_HAVE_DSP
#define tg_lstm_ssat17(v) __ssat((v), 17)
#else
#define tg_lstm_ssat17(v) tg_clamp_i32((v), -65536, 65535)
#endif

TG_INLINE int16_t tg_lstm_tanh_cell_m(const int16_t *mid, int32_t v, int32_t mult, int32_t round,
                                      int32_t shift) {
  return tg_lstm_tanh_m(mid, tg_lstm_ssat17((v * mult + round) >> shift));
}

/* 3 * the low / high int16 lane of w in one multiply (the gates' table
 * argument, from the packed pre-activations) */
#ifdef TG_HAVE_DSP
TG_INLINE int32_t tg_lstm_x3_lo(int32_t w) {
  int32_t r;
  __asm__("smulbb %0, %1, %2" : "=r"(r) : "r"(w), "r"(3));
  return r;
}
TG_INLINE int32_t tg_lstm_x3_hi(int32_t w) {
  int32_t r;
  __asm__("smultb %0, %1, %2" : "=r"(r) : "r"(w), "r"(3));
  return r;
}
#else
#define tg_lstm_x3_lo(w) (tg_lo16(w) * 3)
#define tg_lstm_x3_hi(w) (tg_hi16(w) * 3)
#endif

TG_INLINE int32_t tg_lstm_sat16(int32_t v) { return tg_clamp_i32(v, INT16_MIN, INT16_MAX); }

/* requantize and saturate to int16 (kept out of line: called 11 times per
 * unit, inlining it everywhere only makes the code bigger) */
static int32_t tg_lstm_rq16(int32_t acc, int32_t mult, int32_t shift) {
  return tg_lstm_sat16(tg_requantize(acc, mult, shift));
}

/* The same step as tg_lstm_row with the gate matmuls as one tg_dot4_s8 per
 * unit and operand (the four gates share each load of x and h): DSP cores
 * where the fast requantization is not proved (tg_lstm_dsp_s8 otherwise). */
static void tg_lstm_row_dsp(const tg_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c,
                            int8_t *y) {
  const int32_t n_in = p->input_size, units = p->units;
  const int32_t w_in_unit = 4 * ((n_in + 3) >> 2), w_rec_unit = 4 * ((units + 3) >> 2);
  const int32_t *w_in = p->w4_in, *w_rec = p->w4_rec, *kb = p->kb4;
  int32_t u;
  for (u = 0; u < units; ++u, w_in += w_in_unit, w_rec += w_rec_unit, kb += 8) {
    int32_t ai[TG_LSTM_GATES], ar[TG_LSTM_GATES], act[TG_LSTM_GATES];
    int32_t c_new, t;
    int g;
    tg_dot4_s8(x, w_in, n_in >> 2, n_in & 3, kb, ai);
    tg_dot4_s8(h, w_rec, units >> 2, units & 3, kb + 4, ar);
    for (g = 0; g < TG_LSTM_GATES; ++g) {
      const int32_t pre = tg_lstm_sat16(tg_lstm_rq16(ai[g], p->in_mult[g], p->in_shift[g]) +
                                        tg_lstm_rq16(ar[g], p->rec_mult[g], p->rec_shift[g]));
      act[g] = g == 2 ? tg_lstm_tanh(pre, 3, 0) : tg_lstm_sigmoid(pre);
    }
    c_new = tg_lstm_sat16(tg_lstm_rq16(act[1] * (int32_t)c[u], p->forget_mult, p->forget_shift) +
                          tg_lstm_rq16(act[0] * act[2], p->input_mult, p->input_shift));
    if (p->use_cell_clip) {
      c_new = tg_clamp_i32(c_new, -p->cell_clip, p->cell_clip);
    }
    c[u] = (int16_t)c_new;
    t = tg_lstm_tanh(c_new, p->tanh_mult, p->tanh_shift);
    y[u] = tg_sat_i8(p->hidden_zp + tg_requantize(t * act[3], p->hidden_mult, p->hidden_shift));
  }
  tg_copy_bytes(h, y, (size_t)units);
}

#ifdef TG_HAVE_DSP
#define tg_lstm_ssat16(v) __ssat((v), 16)
#else
#define tg_lstm_ssat16(v) tg_lstm_sat16(v)
#endif

/* Four gates of one unit against one expanded vector (16-bit lanes), the
 * weights 16-bit too: per four inputs one LDRD of the vector, four of the
 * weights and eight SMLAD, no unpacking. */
#define TG_LSTM_DOT16_GROUP()  \
  do {                         \
    int32_t xe, xo;            \
    TG_LDRD(xe, xo, v);        \
    TG_SMLAD_4ROWS(xe, xo, w); \
  } while (0)

TG_INLINE const int32_t *tg_lstm_dot16x4(const int32_t *v, const int32_t *w, int32_t groups,
                                         const int32_t *start, int32_t *acc) {
  int32_t a0 = start[0], a1 = start[1], a2 = start[2], a3 = start[3];
  const int32_t *end = v + 2 * groups;
  if (groups & 1) {
    TG_LSTM_DOT16_GROUP();
  }
  while (v < end) {
    TG_LSTM_DOT16_GROUP();
    TG_LSTM_DOT16_GROUP();
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

/* One row's work for the unit routines (field order and offsets are the
 * assembly's: 0, 4, ..., 100 on the 32-bit cores that run it).  w walks
 * tg_lstm_params.w16 unit by unit; c and y move on by one unit each. */
typedef struct {
  const int32_t *w, *xs;
  int32_t gx;
  const int32_t *hs;
  int32_t gh;
  const int32_t *q; /* tg_lstm_params.gate_rq */
  int16_t *c;
  int8_t *y;
  int32_t hoff; /* h - y: the hidden state takes each output too */
  const int8_t *yend;
  const int16_t *mid; /* the mirrored table's entry 0 */
  int32_t k;          /* 2^24 + 2^9: the sigmoid's offset and rounding */
  /* {mult, rnd, e} of f * c and of i * g */
  int32_t f_m, f_rnd, f_e, i_m, i_rnd, i_e;
  int32_t clip_on, clip;
  int32_t t_mult, t_rnd, t_shift; /* tanh of the cell: its argument */
  int32_t h_m, h_rnd, h_e;        /* tanh(c) * o -> hidden */
} tg_lstm_mm;

#ifdef TG_HAVE_DSP
/* clang-format off */
/* One group of four inputs: one LDRD of the vector and, per two gates, one
 * LDM of their four weight words (LDRD brings one gate's two), into the
 * accumulators r4-r7.  LDM wants fixed ascending registers, which is why a
 * unit's matmuls are assembly routines rather than C with intrinsics:
 * inlined, the six fixed registers left GCC too few for the gate arithmetic
 * around them (it spilled the parameter pointer and reloaded it per field). */
#define TG_LSTM_ASM_GROUP                \
  "ldrd r8, r9, [r2], #8\n\t"            \
  "ldmia r1!, {r10, r11, r12, lr}\n\t"   \
  "smlad r4, r8, r10, r4\n\t"            \
  "smlad r4, r9, r11, r4\n\t"            \
  "smlad r5, r8, r12, r5\n\t"            \
  "smlad r5, r9, lr, r5\n\t"             \
  "ldmia r1!, {r10, r11, r12, lr}\n\t"   \
  "smlad r6, r8, r10, r6\n\t"            \
  "smlad r6, r9, r11, r6\n\t"            \
  "smlad r7, r8, r12, r7\n\t"            \
  "smlad r7, r9, lr, r7\n\t"

/* the unit's four starts at r1 into r4-r7, then r3 groups (>= 1) from r2
 * (vector) and r1 (weights): an odd one first, then pairs; LSRS leaves the
 * odd bit in C and "no pairs" in Z, which the group does not touch */
#define TG_LSTM_ASM_DOT(odd, loop, done)                                  \
  "ldm r1!, {r4-r7}\n\t"                                                  \
  "lsrs r3, r3, #1\n\t"                                                   \
  "bcc " odd "f\n\t"                                                      \
  TG_LSTM_ASM_GROUP                                                       \
  odd ":\n\t"                                                             \
  "beq " done "f\n"                                                       \
  loop ":\n\t"                                                            \
  TG_LSTM_ASM_GROUP                                                       \
  TG_LSTM_ASM_GROUP                                                       \
  "subs r3, r3, #1\n\t"                                                   \
  "bne " loop "b\n"                                                       \
  done ":\n\t"

/* Accumulators (2 * acc) requantized to saturated Q3.12 in place with the
 * records at r0, tg_rq_fast2a: (SMMLAR(acc, mult, rnd) + sign(acc)) >> e.
 * Every gate shifting right (tg_lstm_dsp_s8), two gates per LDM of their
 * records {mult, rnd, e}: */
#define TG_LSTM_ASM_RQ2(a, b)                    \
  "ldm r0!, {r2, r3, r8, r9, r10, r12}\n\t"      \
  "smmlar r11, " a ", r2, r3\n\t"                \
  "add r11, r11, " a ", asr #31\n\t"             \
  "asr r11, r11, r8\n\t"                         \
  "ssat " a ", #16, r11\n\t"                     \
  "smmlar r11, " b ", r9, r10\n\t"               \
  "add r11, r11, " b ", asr #31\n\t"             \
  "asr r11, r11, r12\n\t"                        \
  "ssat " b ", #16, r11\n\t"
#define TG_LSTM_ASM_RQ_ALL TG_LSTM_ASM_RQ2("r4", "r5") TG_LSTM_ASM_RQ2("r6", "r7")
/* tg_lstm_dsp_e0_s8, records {mult, rnd, e, mask}: mask -1, or a gate
 * without a right shift with e = rnd = mask = 0, which leaves SMMULR alone */
#define TG_LSTM_ASM_RQ0(a)                       \
  "ldm r0!, {r2, r3, r8, r9}\n\t"                \
  "smmlar r11, " a ", r2, r3\n\t"                \
  "and r12, r9, " a ", asr #31\n\t"              \
  "add r11, r11, r12\n\t"                        \
  "asr r11, r11, r8\n\t"                         \
  "ssat " a ", #16, r11\n\t"
#define TG_LSTM_ASM_RQ0_ALL \
  TG_LSTM_ASM_RQ0("r4") TG_LSTM_ASM_RQ0("r5") TG_LSTM_ASM_RQ0("r6") TG_LSTM_ASM_RQ0("r7")

#define TG_LSTM_ARG __attribute__((unused)) /* read by the assembly, in r0 */

/* the assembly's offsets of the last fields */
typedef char tg_lstm_mm_layout[(offsetof(tg_lstm_mm, k) == 44 && offsetof(tg_lstm_mm, h_e) == 100)
                                   ? 1
                                   : -1];

/* logistic of 3 * one int16 lane of src (mul: SMULBB or SMULTB against the
 * 3 in r11) from the mirrored table at lr, as tg_lstm_sigmoid_m; SMLAD adds
 * the offset and rounding held in r10 */
#define TG_LSTM_ASM_SIG(mul, src, out)           \
  mul " r2, " src ", r11\n\t"                    \
  "asr r3, r2, #9\n\t"                           \
  "ldr r3, [lr, r3, lsl #1]\n\t"                 \
  "ubfx r8, r2, #0, #9\n\t"                      \
  "rsb r9, r8, #512\n\t"                         \
  "add r8, r9, r8, lsl #16\n\t"                  \
  "smlad r3, r3, r8, r10\n\t"                    \
  "add r3, r3, r2, asr #31\n\t"                  \
  "asr " out ", r3, #10\n\t"

/* clang-format off */
/* x in reg: out = tanh from the table at lr, as tg_lstm_tanh_m (ta, tb:
 * scratch) */
#define TG_LSTM_ASM_TANH(x, out, ta, tb)         \
  "asr " out ", " x ", #8\n\t"                   \
  "ldr " out ", [lr, " out ", lsl #1]\n\t"       \
  "uxtb " ta ", " x "\n\t"                       \
  "rsb " tb ", " ta ", #256\n\t"                 \
  "add " ta ", " tb ", " ta ", lsl #16\n\t"      \
  "smuad " out ", " out ", " ta "\n\t"           \
  "add " out ", " out ", #128\n\t"               \
  "add " out ", " out ", " x ", asr #31\n\t"     \
  "asr " out ", " out ", #8\n\t"
/* clang-format on */

/* A whole row, unit after unit: the four gate pre-activations (both sides
 * requantized and added with QADD16, the saturating sum of two saturated
 * int16, two gates at a time: (i, f) in r0, (g, o) in r1), the gates, the
 * cell update and the hidden output, as tg_lstm_row_w16's C.  r0 holds the
 * gate records during the matmuls (the h side's follow the x side's), r12
 * the row (m) after them. */
#define TG_LSTM_ROW(name, RQ_ALL)                                                            \
  __attribute__((naked, noinline)) static void name(TG_LSTM_ARG tg_lstm_mm *m) {             \
    __asm__(                                                                                 \
        "push {r4-r11, lr}\n\t"                                                              \
        "push {r0}\n"                                                                        \
        "7:\n\t"                                                                             \
        "ldm r0, {r1-r3}\n\t"                                                                \
        "ldr r0, [r0, #20]\n\t" TG_LSTM_ASM_DOT("1", "2", "3") RQ_ALL                        \
        "pkhbt r4, r4, r5, lsl #16\n\t"                                                      \
        "pkhbt r5, r6, r7, lsl #16\n\t"                                                      \
        "push {r4, r5}\n\t"                                                                  \
        "ldr r12, [sp, #8]\n\t"                                                              \
        "ldrd r2, r3, [r12, #12]\n\t" TG_LSTM_ASM_DOT("4", "5", "6") RQ_ALL                  \
        "pkhbt r4, r4, r5, lsl #16\n\t"                                                      \
        "pkhbt r5, r6, r7, lsl #16\n\t"                                                      \
        "ldr r12, [sp, #8]\n\t"                                                              \
        "str r1, [r12]\n\t"                                                                  \
        "pop {r0, r1}\n\t"                                                                   \
        "qadd16 r0, r0, r4\n\t"                                                              \
        "qadd16 r1, r1, r5\n\t"                                                              \
        "ldrd lr, r10, [r12, #40]\n\t"                                                       \
        "mov r11, #3\n\t" TG_LSTM_ASM_SIG("smulbb", "r0", "r4")                              \
            TG_LSTM_ASM_SIG("smultb", "r0", "r5") "smulbb r2, r1, r11\n\t" TG_LSTM_ASM_TANH( \
                "r2", "r6", "r8", "r9")                                                      \
                TG_LSTM_ASM_SIG("smultb", "r1",                                              \
                                "r7") /* c = sat16(sat16(rq(2 f c)) + sat16(rq(2 i g))) */   \
        "ldr r0, [r12, #24]\n\t"                                                             \
        "ldrsh r1, [r0]\n\t"                                                                 \
        "smulbb r1, r5, r1\n\t"                                                              \
        "smulbb r2, r4, r6\n\t"                                                              \
        "lsl r1, r1, #1\n\t"                                                                 \
        "lsl r2, r2, #1\n\t"                                                                 \
        "add r10, r12, #48\n\t"                                                              \
        "ldm r10!, {r3, r4, r5, r6, r8, r9}\n\t"                                             \
        "smmlar r11, r1, r3, r4\n\t"                                                         \
        "add r11, r11, r1, asr #31\n\t"                                                      \
        "asr r11, r11, r5\n\t"                                                               \
        "ssat r11, #16, r11\n\t"                                                             \
        "smmlar r3, r2, r6, r8\n\t"                                                          \
        "add r3, r3, r2, asr #31\n\t"                                                        \
        "asr r3, r3, r9\n\t"                                                                 \
        "ssat r3, #16, r3\n\t"                                                               \
        "add r11, r11, r3\n\t"                                                               \
        "ssat r11, #16, r11\n\t"                                                             \
        "ldm r10, {r1, r2, r3, r4, r5, r6, r8, r9}\n\t"                                      \
        "cbz r1, 9f\n\t"                                                                     \
        "rsb r1, r2, #0\n\t"                                                                 \
        "cmp r11, r1\n\t"                                                                    \
        "it lt\n\t"                                                                          \
        "movlt r11, r1\n\t"                                                                  \
        "cmp r11, r2\n\t"                                                                    \
        "it gt\n\t"                                                                          \
        "movgt r11, r2\n"                                                                    \
        "9:\n\t"                                                                             \
        "strh r11, [r0], #2\n\t"                                                             \
        "str r0, [r12, #24]\n\t" /* t = tanh(ssat17((c * t_mult + t_rnd) >> t_shift)) */     \
        "mla r11, r11, r3, r4\n\t"                                                           \
        "asr r11, r11, r5\n\t"                                                               \
        "ssat r11, #17, r11\n\t" TG_LSTM_ASM_TANH(                                           \
            "r11", "r3", "r1",                                                               \
            "r2") /* y = ssat8(rq(2 t o)), into the output and the hidden state */           \
        "smulbb r3, r3, r7\n\t"                                                              \
        "lsl r3, r3, #1\n\t"                                                                 \
        "smmlar r4, r3, r6, r8\n\t"                                                          \
        "add r4, r4, r3, asr #31\n\t"                                                        \
        "asr r4, r4, r9\n\t"                                                                 \
        "ssat r4, #8, r4\n\t"                                                                \
        "ldrd r0, r1, [r12, #28]\n\t"                                                        \
        "strb r4, [r0, r1]\n\t"                                                              \
        "strb r4, [r0], #1\n\t"                                                              \
        "str r0, [r12, #28]\n\t"                                                             \
        "ldr r1, [r12, #36]\n\t"                                                             \
        "cmp r0, r1\n\t"                                                                     \
        "mov r0, r12\n\t"                                                                    \
        "bne 7b\n\t"                                                                         \
        "add sp, #4\n\t"                                                                     \
        "pop {r4-r11, pc}");                                                                 \
  }
/* clang-format on */
TG_LSTM_ROW(tg_lstm_row_asm, TG_LSTM_ASM_RQ_ALL)
TG_LSTM_ROW(tg_lstm_row_asm_e0, TG_LSTM_ASM_RQ0_ALL)
#else
/* the same in C (records of 4 words with the mask for e0, else 3) */
TG_INLINE uint64_t tg_lstm_pre_c(tg_lstm_mm *m, const int e0) {
  int32_t acc[2 * TG_LSTM_GATES], pre[TG_LSTM_GATES];
  const int32_t *q = m->q;
  int g;
  m->w = tg_lstm_dot16x4(m->xs, m->w + 4, m->gx, m->w, acc);
  m->w = tg_lstm_dot16x4(m->hs, m->w + 4, m->gh, m->w, acc + 4);
  for (g = 0; g < 2 * TG_LSTM_GATES; ++g, q += e0 ? 4 : 3) {
    const int32_t sign = e0 ? ((acc[g] >> 31) & q[3]) : (acc[g] >> 31);
    acc[g] = tg_lstm_sat16((tg_smmlar(acc[g], q[0], q[1]) + sign) >> q[2]);
  }
  for (g = 0; g < TG_LSTM_GATES; ++g) {
    pre[g] = tg_lstm_sat16(acc[g] + acc[TG_LSTM_GATES + g]);
  }
  return (uint64_t)(uint32_t)tg_lanes(pre[0], pre[1]) |
         ((uint64_t)(uint32_t)tg_lanes(pre[2], pre[3]) << 32);
}
static uint64_t tg_lstm_pre_unit(tg_lstm_mm *m) { return tg_lstm_pre_c(m, 0); }
static uint64_t tg_lstm_pre_unit_e0(tg_lstm_mm *m) { return tg_lstm_pre_c(m, 1); }
#endif

/* a product of two int16 activations (|prod| < 2^30, proved by the
 * lowering) requantized with SMMLAR, which wants it doubled */
TG_INLINE int32_t tg_lstm_rq_prod(int32_t prod, int32_t mult, int32_t rnd, int32_t e) {
  return tg_rq_fast2a(2 * prod, mult, rnd, e);
}

/* One row with 16-bit weights against x and h expanded once per row (xs, hs). */
TG_INLINE void tg_lstm_row_w16(const tg_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c,
                               int8_t *y, int32_t *xs, int32_t *hs, const int e0) {
  const int32_t units = p->units;
  const int32_t gx = (p->input_size + 3) >> 2, gh = (units + 3) >> 2;
  const int32_t trnd = p->tanh_shift > 0 ? ((int32_t)1 << (p->tanh_shift - 1)) : 0;
  const int16_t *mid = tg_lstm_mirror + TG_LSTM_SIGMOID_MIRROR_HALF;
  tg_lstm_mm m;
  m.w = p->w16;
  m.xs = xs;
  m.gx = gx;
  m.hs = hs;
  m.gh = gh;
  m.q = p->gate_rq;
  m.mid = mid;
  m.k = (1 << 24) + (1 << 9);
  m.f_m = p->forget_mult;
  m.f_rnd = p->forget_rnd;
  m.f_e = p->forget_shift;
  m.i_m = p->input_mult;
  m.i_rnd = p->input_rnd;
  m.i_e = p->input_shift;
  m.clip_on = p->use_cell_clip;
  m.clip = p->cell_clip;
  m.t_mult = p->tanh_mult;
  m.t_rnd = trnd;
  m.t_shift = p->tanh_shift;
  m.h_m = p->hidden_mult;
  m.h_rnd = p->hidden_rnd;
  m.h_e = p->hidden_shift;
  tg_expand_s8(x, p->input_size, 0, xs, 2);
  tg_expand_s8(h, units, 0, hs, 2);
#ifdef TG_HAVE_DSP
  m.c = c;
  m.y = y;
  m.hoff = (int32_t)(h - y);
  m.yend = y + units;
  if (e0) {
    tg_lstm_row_asm_e0(&m);
  } else {
    tg_lstm_row_asm(&m);
  }
#else
  for (int32_t u = 0; u < units; ++u) {
    int32_t ig, fg, gg, og, c_new, t, out;
    {
      const uint64_t pre = e0 ? tg_lstm_pre_unit_e0(&m) : tg_lstm_pre_unit(&m);
      const int32_t pif = (int32_t)(uint32_t)pre, pgo = (int32_t)(uint32_t)(pre >> 32);
      ig = tg_lstm_sigmoid_m(mid, tg_lstm_x3_lo(pif));
      fg = tg_lstm_sigmoid_m(mid, tg_lstm_x3_hi(pif));
      gg = tg_lstm_tanh_m(mid, tg_lstm_x3_lo(pgo));
      og = tg_lstm_sigmoid_m(mid, tg_lstm_x3_hi(pgo));
    }
    c_new = tg_lstm_ssat16(
        tg_lstm_ssat16(
            tg_lstm_rq_prod(fg * (int32_t)c[u], p->forget_mult, p->forget_rnd, p->forget_shift)) +
        tg_lstm_ssat16(tg_lstm_rq_prod(ig * gg, p->input_mult, p->input_rnd, p->input_shift)));
    if (p->use_cell_clip) {
      c_new = tg_clamp_i32(c_new, -p->cell_clip, p->cell_clip);
    }
    c[u] = (int16_t)c_new;
    t = tg_lstm_tanh_cell_m(mid, c_new, p->tanh_mult, trnd, p->tanh_shift);
    out = tg_ssat8(tg_lstm_rq_prod(t * og, p->hidden_mult, p->hidden_rnd, p->hidden_shift));
    /* h is not read again this row: its expansion hs is */
    y[u] = (int8_t)out;
    h[u] = (int8_t)out;
  }
#endif
}

static void tg_lstm_row(const tg_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c,
                        int8_t *y) {
  const int32_t n_in = p->input_size, units = p->units;
  const int32_t gate_in = units * n_in, gate_rec = units * units;
  int32_t u;
  for (u = 0; u < units; ++u) {
    int32_t acc_in[TG_LSTM_GATES], acc_rec[TG_LSTM_GATES], act[TG_LSTM_GATES];
    int32_t c_new, t;
    int g;
    for (g = 0; g < TG_LSTM_GATES; g += 2) {
      const int8_t *wi = p->w_in + g * gate_in + u * n_in;
      const int8_t *wr = p->w_rec + g * gate_rec + u * units;
      acc_in[g] = p->kbias_in[g * units + u];
      acc_in[g + 1] = p->kbias_in[(g + 1) * units + u];
      acc_rec[g] = p->kbias_rec[g * units + u];
      acc_rec[g + 1] = p->kbias_rec[(g + 1) * units + u];
      tg_dot2_s8(x, wi, wi + gate_in, n_in, &acc_in[g], &acc_in[g + 1]);
      tg_dot2_s8(h, wr, wr + gate_rec, units, &acc_rec[g], &acc_rec[g + 1]);
    }
    /* pre-activation: both matmuls requantized to Q3.12 and clamped on their
     * own, then added with saturation; i, f, o take the sigmoid, g the tanh */
    for (g = 0; g < TG_LSTM_GATES; ++g) {
      const int32_t pre = tg_lstm_sat16(tg_lstm_rq16(acc_in[g], p->in_mult[g], p->in_shift[g]) +
                                        tg_lstm_rq16(acc_rec[g], p->rec_mult[g], p->rec_shift[g]));
      act[g] = g == 2 ? tg_lstm_tanh(pre, 3, 0) : tg_lstm_sigmoid(pre);
    }

    c_new = tg_lstm_sat16(tg_lstm_rq16(act[1] * (int32_t)c[u], p->forget_mult, p->forget_shift) +
                          tg_lstm_rq16(act[0] * act[2], p->input_mult, p->input_shift));
    if (p->use_cell_clip) {
      c_new = tg_clamp_i32(c_new, -p->cell_clip, p->cell_clip);
    }
    c[u] = (int16_t)c_new;

    t = tg_lstm_tanh(c_new, p->tanh_mult, p->tanh_shift);
    y[u] = tg_sat_i8(p->hidden_zp + tg_requantize(t * act[3], p->hidden_mult, p->hidden_shift));
  }
  tg_copy_bytes(h, y, (size_t)units);
}

void tg_lstm_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                int8_t *output) {
  const int32_t batches = p->batches, steps = p->time_steps;
  int32_t t, b;
  for (t = 0; t < steps; ++t) {
    for (b = 0; b < batches; ++b) {
      const int32_t row = p->time_major ? t * batches + b : b * steps + t;
      if (p->w4_in != NULL) {
        tg_lstm_row_dsp(p, input + row * p->input_size, hidden + b * p->units, cell + b * p->units,
                        output + row * p->units);
      } else {
        tg_lstm_row(p, input + row * p->input_size, hidden + b * p->units, cell + b * p->units,
                    output + row * p->units);
      }
    }
  }
}

TG_INLINE void tg_lstm_run_w16(const tg_lstm_params *p, const int8_t *input, int8_t *hidden,
                               int16_t *cell, int8_t *output, void *scratch, const int e0) {
  const int32_t batches = p->batches, steps = p->time_steps;
  int32_t *xs = (int32_t *)scratch;
  int32_t *hs = xs + 2 * ((p->input_size + 3) >> 2);
  int32_t t, b;
  for (t = 0; t < steps; ++t) {
    for (b = 0; b < batches; ++b) {
      const int32_t row = p->time_major ? t * batches + b : b * steps + t;
      tg_lstm_row_w16(p, input + row * p->input_size, hidden + b * p->units, cell + b * p->units,
                      output + row * p->units, xs, hs, e0);
    }
  }
}

void tg_lstm_dsp_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                    int8_t *output, void *scratch) {
  tg_lstm_run_w16(p, input, hidden, cell, output, scratch, 0);
}

void tg_lstm_dsp_e0_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                       int8_t *output, void *scratch) {
  tg_lstm_run_w16(p, input, hidden, cell, output, scratch, 1);
}

/* libFuzzer harness for the device side of the serial protocol
 * (firmware_templates/common/tg_protocol.c), driven through its step API:
 * tg_proto_init / tg_proto_start / tg_proto_feed / tg_proto_rx_timeout.
 *
 * Build (tests/test_fuzz.py does this; see docs/fuzzing.md):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -I firmware_templates/common tests/fuzz/fuzz_protocol.c \
 *     firmware_templates/common/tg_protocol.c -o fuzz_protocol
 *
 * Input format (tests/fuzz/make_corpus.py writes seeds in it):
 *   byte 0   mode: bit 7 clear = RAW, set = OPS; bits 0-6 = n: bytes are fed
 *            to tg_proto_feed in pieces of 1 + 7 * n bytes (always also cut
 *            right after each zero byte, see the oracles)
 *   byte 1   boot configuration (see boot()): model init status, a NULL
 *            tensor buffer, an unusable model description
 *   RAW:     the rest is the byte stream from the host
 *   OPS:     a list of operations, one byte each plus arguments (see
 *            run_ops(); bits 0-5 of the byte modulo 10 pick the operation,
 *            bits 6 and 7 are flags): raw bytes, frames the harness encodes with a correct
 *            CRC (so mutations reach the command handlers, not just the CRC
 *            check), damaged frames, receive timeouts, reboots, and shorthand
 *            commands of a session (INFO, INPUT_CHUNK, INVOKE, READ_OUTPUT,
 *            RESET_STATE) with the session token.
 *
 * The fake model (2 inputs, 3 outputs, 340 input bytes: frames of more than
 * one 254-byte COBS block both ways) is defined here, not
 * linked from tests/device_host, because that one re-executes the program
 * to simulate a reboot.
 *
 * Oracles besides ASan/UBSan (each aborts with a message):
 *   1. Every byte the device sends is part of a well-formed frame: COBS
 *      valid, length field consistent, CRC-32 correct, version 1, a known
 *      reply type; ERROR and INPUT_CHUNK replies have 8-byte payloads.
 *   2. Exactly one reply per received run of bytes that decodes to at least
 *      12 bytes (a header), none for shorter runs (docs/protocol.md 5.1); the
 *      reply carries the request's seq, an ERROR reply the request's type.
 *   3. The device acknowledges an INPUT_CHUNK only for a run that an
 *      independent decoder (here) finds to be a valid INPUT_CHUNK frame
 *      with a correct CRC, inside the tensor.
 *   4. tg_model_run sees exactly the input bytes that acknowledged
 *      INPUT_CHUNK frames delivered: a shadow copy of each input is
 *      updated only from acknowledged frames, and the model compares.  After
 *      a run the model overwrites its inputs (as an arena may) and the shadow
 *      is poisoned with a different value, so a run on stale or damaged
 *      input is caught.
 *   5. At most once: the model runs only for an INVOKE, once per frame, and
 *      never again for an INVOKE that repeats the seq of the one that last
 *      ran it with no other command dispatched in between (4.3); that
 *      retransmission gets the first reply again, byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_hal.h"
#include "tg_model_api.h"
#include "tg_protocol.h"

#define FAIL(...)                     \
  do {                                \
    fprintf(stderr, "ORACLE: ");      \
    fprintf(stderr, __VA_ARGS__);     \
    fprintf(stderr, "\n");            \
    abort();                          \
  } while (0)

#define TOKEN 0x5EC00001u
#define IN0_BYTES 300u /* more than a COBS block: replies of several blocks */
#define IN1_BYTES 40u
#define RUN_ERROR_STATUS (-7)
#define STALE_IN 0x5Au   /* what a run leaves in the inputs */
#define STALE_SHADOW 0xA5u /* what the shadow says after a run */

/* ------------------------------------------------------------------ */
/* HAL: only the counter is used by the step API; the rest is linked
 * because tg_protocol_run references it, and must never be called. */

static uint64_t counter;
static int trace = -1; /* TG_FUZZ_TRACE set: print every frame the device sends */
static int ran;         /* tg_model_run calls during the current feed call */
void tg_hal_init(void) {}
void tg_hal_uart_write(const uint8_t *data, size_t len) {
  (void)data;
  (void)len;
  FAIL("tg_hal_uart_write called from the step API");
}
int tg_hal_uart_read(uint32_t timeout_ms) {
  (void)timeout_ms;
  FAIL("tg_hal_uart_read called from the step API");
}
uint32_t tg_hal_millis(void) { return 0; }
uint64_t tg_hal_counter(void) { return counter; }
uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_INSTRUCTIONS; }

/* ------------------------------------------------------------------ */
/* the fake model */

static int8_t in0[IN0_BYTES];
static uint8_t in1[IN1_BYTES];
static int8_t out0[IN0_BYTES];
static int32_t out1[4];
static float out2[10];
static uint8_t shadow0[IN0_BYTES], shadow1[IN1_BYTES];
static int init_status, null_input, null_output;
static int32_t runs_since_reset, runs_total;

static tg_tensor_info inputs_tab[2] = {
    {TG_DTYPE_INT8, 4, {1, 10, 10, 3, 0, 0}, IN0_BYTES, 0.0078125f, -1},
    {TG_DTYPE_FLOAT32, 2, {1, 10, 0, 0, 0, 0}, IN1_BYTES, 0.0f, 0},
};
static tg_tensor_info outputs_tab[3] = {
    {TG_DTYPE_INT8, 4, {1, 10, 10, 3, 0, 0}, IN0_BYTES, 0.0078125f, -1},
    {TG_DTYPE_INT32, 2, {1, 4, 0, 0, 0, 0}, 16, 0.0f, 0},
    {TG_DTYPE_FLOAT32, 2, {1, 10, 0, 0, 0, 0}, 40, 0.0f, 0},
};

const tg_model_info_t tg_model_info = {
    "fake", "fuzz",
    {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA,
     0xAB, 0xAC, 0xAD, 0xAE, 0xAF, 0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5,
     0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF},
    4096, 2, 3, inputs_tab, outputs_tab,
};

int tg_model_init(void) {
  runs_since_reset = 0;
  return init_status;
}

uint8_t *tg_model_input(int index) {
  if (index == 0) return (uint8_t *)in0;
  if (index == 1) return null_input ? NULL : in1;
  return NULL;
}

const uint8_t *tg_model_output(int index) {
  if (index == 0) return (const uint8_t *)out0;
  if (index == 1) return null_output ? NULL : (const uint8_t *)out1;
  if (index == 2) return (const uint8_t *)out2;
  return NULL;
}

int tg_model_run(void) {
  unsigned k;
  int32_t sum = 0;
  int status = 0;
  /* Oracle 4: the run sees exactly what acknowledged frames delivered. */
  if (memcmp(in0, shadow0, IN0_BYTES) != 0)
    FAIL("INVOKE ran on input 0 bytes that no acknowledged INPUT_CHUNK delivered");
  if (memcmp(in1, shadow1, IN1_BYTES) != 0)
    FAIL("INVOKE ran on input 1 bytes that no acknowledged INPUT_CHUNK delivered");
  counter += 1000u + IN0_BYTES;
  if (memcmp(in1, "FAIL", 4) == 0) { /* a run that fails: ERROR MODEL */
    status = RUN_ERROR_STATUS;
    goto done;
  }
  for (k = 0; k < IN0_BYTES; k++) {
    out0[k] = in0[IN0_BYTES - 1u - k];
    sum += in0[k];
  }
  if (trace) fprintf(stderr, "model run\n");
  ran++;
  runs_since_reset++;
  runs_total++;
  out1[0] = sum;
  out1[1] = runs_since_reset;
  out1[2] = runs_total;
  out1[3] = 0x12345678;
  for (k = 0; k < 10; k++) {
    float f;
    memcpy(&f, in1 + 4u * k, sizeof f);
    out2[k] = f * 2.0f + 1.0f; /* any float, NaN and inf included: no UB */
  }
done:
  memset(in0, STALE_IN, sizeof in0);
  memset(in1, STALE_IN, sizeof in1);
  memset(shadow0, STALE_SHADOW, sizeof shadow0);
  memset(shadow1, STALE_SHADOW, sizeof shadow1);
  return status;
}

void tg_model_reset(void) { runs_since_reset = 0; }

uint32_t tg_model_arena_used(void) { return tg_model_info.arena_bytes; }

const char *tg_model_last_error(void) { return ""; }

/* ------------------------------------------------------------------ */
/* helpers */

static uint32_t get32(const uint8_t *s) {
  return (uint32_t)s[0] | ((uint32_t)s[1] << 8) | ((uint32_t)s[2] << 16) | ((uint32_t)s[3] << 24);
}
static uint16_t get16(const uint8_t *s) { return (uint16_t)(s[0] | (s[1] << 8)); }
static void put32(uint8_t *d, uint32_t v) {
  d[0] = (uint8_t)v;
  d[1] = (uint8_t)(v >> 8);
  d[2] = (uint8_t)(v >> 16);
  d[3] = (uint8_t)(v >> 24);
}
static void put16(uint8_t *d, uint16_t v) {
  d[0] = (uint8_t)v;
  d[1] = (uint8_t)(v >> 8);
}

/* Bytewise COBS decoding as docs/protocol.md describes it (also for
 * malformed runs: *ok is cleared, the bytes decoded so far are counted). */
static size_t cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, int *ok) {
  size_t i, len = 0;
  unsigned left = 0;
  int zero_pending = 0;
  *ok = 1;
  for (i = 0; i < n; i++) {
    uint8_t x = in[i];
    if (x == 0) {
      *ok = 0;
      break;
    }
    if (left == 0) {
      if (zero_pending) {
        if (len < cap) out[len] = 0;
        len++;
      }
      left = x - 1u;
      zero_pending = x != 0xFFu;
    } else {
      if (len < cap) out[len] = x;
      len++;
      left--;
    }
  }
  if (left != 0) *ok = 0;
  return len;
}

/* ------------------------------------------------------------------ */
/* what the device sends (oracle 1) */

#define OUT_CAP (1u << 17)
static uint8_t out_run[OUT_CAP], out_dec[OUT_CAP];
static size_t out_len;
static int out_overflow;
static unsigned replies;        /* frames completed in the current feed call */
static uint8_t reply_type[4];
static uint16_t reply_seq[4];
static uint8_t reply_req_type[4]; /* ERROR: the request type it names */
static uint8_t reply_code[4];     /* ERROR: its code */
static int have_last_run, intervening;
static uint16_t last_run_seq;
static uint8_t reply_frame[1024], run_reply[1024]; /* decoded: the last reply, the last run's */
static size_t reply_frame_len, run_reply_len;
static uint8_t run_request[32]; /* the INVOKE that last ran the model (decoded, 20 bytes) */

static void check_reply(void) {
  int ok;
  size_t n;
  uint32_t len;
  uint8_t type;
  if (out_overflow) FAIL("device frame longer than %u bytes", OUT_CAP);
  n = cobs_decode(out_run, out_len, out_dec, OUT_CAP, &ok);
  if (!ok) FAIL("device sent malformed COBS (%zu bytes)", out_len);
  if (n < 16) FAIL("device sent a %zu-byte frame", n);
  len = get32(out_dec + 8);
  if ((uint64_t)len + 16u != n) FAIL("device frame length field %u, frame %zu bytes", len, n);
  if (tg_proto_crc32(0, out_dec, n - 4u) != get32(out_dec + n - 4u)) FAIL("device frame with a bad CRC");
  if (out_dec[0] != 1) FAIL("device frame of version %u", out_dec[0]);
  type = out_dec[1];
  if (!(type == 0xF0 || type == 0xFF || (type >= 0x81 && type <= 0x85)))
    FAIL("device frame of unknown type 0x%02x", type);
  if ((type == 0xFF || type == 0x82) && len != 8) FAIL("device reply 0x%02x with %u payload bytes", type, len);
  if (trace) fprintf(stderr, "reply 0x%02x seq %u len %u%s\n", type, get16(out_dec + 2), len,
                     type == 0xFF ? " (error)" : "");
  if (type == 0xF0) return; /* BOOT: sent by tg_proto_start, not a reply */
  if (replies < 4) {
    reply_type[replies] = type;
    reply_seq[replies] = get16(out_dec + 2);
    reply_req_type[replies] = type == 0xFF ? out_dec[13] : (uint8_t)(type & 0x7Fu);
    reply_code[replies] = type == 0xFF ? out_dec[12] : 0;
    reply_frame_len = n <= sizeof reply_frame ? n : 0;
    if (reply_frame_len) memcpy(reply_frame, out_dec, n);
  }
  replies++;
}

static void on_write(void *user, const uint8_t *data, size_t len) {
  size_t i;
  (void)user;
  for (i = 0; i < len; i++) {
    if (data[i] == 0) {
      if (out_len) check_reply();
      out_len = 0;
      out_overflow = 0;
    } else if (out_len < OUT_CAP) {
      out_run[out_len++] = data[i];
    } else {
      out_overflow = 1;
    }
  }
}

/* ------------------------------------------------------------------ */
/* feeding the device, and oracles 2 and 3 */

#define IN_CAP (1u << 17)
static tg_proto_t proto;
static uint8_t in_run[IN_CAP], in_dec[IN_CAP];
static size_t in_len;
static int in_overflow;
static size_t piece;

static void run_ended(void) {
  int ok;
  size_t n;
  unsigned k;
  if (in_len == 0) {
    if (replies) FAIL("device replied to an empty run");
    return;
  }
  if (in_overflow) return; /* not decodable here; the device must still not crash */
  n = cobs_decode(in_run, in_len, in_dec, IN_CAP, &ok);
  if (n < 12) {
    if (replies) FAIL("device replied to a %zu-byte run (no header)", n);
    return;
  }
  if (replies != 1) FAIL("device sent %u replies to one frame", replies);
  if (reply_seq[0] != get16(in_dec + 2)) FAIL("reply seq %u, request seq %u", reply_seq[0], get16(in_dec + 2));
  if (reply_type[0] == 0xFF && reply_req_type[0] != in_dec[1])
    FAIL("ERROR names request type 0x%02x, the request was 0x%02x", reply_req_type[0], in_dec[1]);
  if (reply_type[0] != 0xFF && reply_type[0] != (0x80u | in_dec[1]))
    FAIL("reply type 0x%02x to request type 0x%02x", reply_type[0], in_dec[1]);
  /* Oracle 5: an INVOKE retransmitted with the seq of the INVOKE that last
   * ran the model, no other command in between, is answered, not run. */
  if (ran) {
    if (ran != 1 || in_dec[1] != 3) FAIL("model ran %d times for a request of type 0x%02x", ran, in_dec[1]);
    if (have_last_run && !intervening && last_run_seq == get16(in_dec + 2))
      FAIL("INVOKE seq %u retransmitted and the model ran again", last_run_seq);
    if (in_dec[1] == 3 && get32(in_dec + 4) != proto.session) FAIL("model ran for an INVOKE of another session");
    have_last_run = 1;
    intervening = 0;
    last_run_seq = get16(in_dec + 2);
    run_reply_len = reply_frame_len;
    memcpy(run_reply, reply_frame, reply_frame_len);
    memcpy(run_request, in_dec, n < sizeof run_request ? n : sizeof run_request);
  } else if (have_last_run && !intervening && ok && n == 20 && memcmp(in_dec, run_request, 20) == 0) {
    /* a retransmission (byte for byte) of that INVOKE: the same reply again */
    if (run_reply_len && (reply_frame_len != run_reply_len || memcmp(reply_frame, run_reply, run_reply_len)))
      FAIL("INVOKE seq %u retransmitted: the reply differs from the first one", last_run_seq);
  } else if (reply_req_type[0] != 3 &&
             !(reply_type[0] == 0xFF && (reply_code[0] == 3 || reply_code[0] == 4 || reply_code[0] == 5))) {
    intervening = 1; /* a command other than INVOKE was dispatched */
  }
  if (reply_type[0] == 0x82) {
    /* Oracle 3: an acknowledged chunk is a valid INPUT_CHUNK frame. */
    uint32_t len = get32(in_dec + 8), off, cnt;
    unsigned idx;
    uint8_t *shadow;
    size_t bytes;
    if (!ok || (uint64_t)len + 16u != n || tg_proto_crc32(0, in_dec, n - 4u) != get32(in_dec + n - 4u))
      FAIL("device acknowledged an INPUT_CHUNK frame that is damaged");
    if (in_dec[0] != 1 || in_dec[1] != 2 || len < 8 || get32(in_dec + 4) != proto.session)
      FAIL("device acknowledged a frame that is not an INPUT_CHUNK of its session");
    idx = in_dec[12];
    off = get32(in_dec + 16);
    cnt = len - 8u;
    if (idx > 1) FAIL("device acknowledged a chunk for input %u", idx);
    shadow = idx ? shadow1 : shadow0;
    bytes = idx ? IN1_BYTES : IN0_BYTES;
    if (cnt > bytes || off > bytes - cnt) FAIL("device acknowledged a chunk outside input %u", idx);
    for (k = 0; k < cnt; k++) shadow[off + k] = in_dec[20 + k];
  }
}

/* Feed bytes in pieces, always ending a piece right after a zero byte so
 * that the replies of each frame can be attributed to it. */
static void feed(const uint8_t *d, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t m = 0, k;
    int ends = 0;
    while (i + m < n && m < piece) {
      if (d[i + m++] == 0) {
        ends = 1;
        break;
      }
    }
    replies = 0;
    ran = 0;
    tg_proto_feed(&proto, d + i, m);
    for (k = 0; k < m; k++) {
      uint8_t x = d[i + k];
      if (x == 0) {
        run_ended();
        in_len = 0;
        in_overflow = 0;
      } else if (in_len < IN_CAP) {
        in_run[in_len++] = x;
      } else {
        in_overflow = 1;
      }
    }
    if (!ends && (replies || ran)) FAIL("device replied or ran before a frame's final delimiter");
    i += m;
  }
}

static void rx_timeout(void) {
  replies = 0;
  tg_proto_rx_timeout(&proto);
  if (replies) FAIL("device replied to a receive timeout");
  in_len = 0;
  in_overflow = 0;
}

static void boot(uint8_t config) {
  /* config: bits 0-1 init status (0, 0, -3, 1000), bit 2 NULL output 1,
   * bit 3 NULL input 1, bit 4 input 0 of rank 7, bit 5 output 2 of rank 7. */
  static const int statuses[4] = {0, 0, -3, 1000};
  init_status = statuses[config & 3u];
  null_output = (config >> 2) & 1;
  null_input = (config >> 3) & 1;
  inputs_tab[0].rank = (config & 0x10u) ? 7 : 4;
  outputs_tab[2].rank = (config & 0x20u) ? 7 : 2;
  replies = 0;
  have_last_run = 0;
  tg_proto_init(&proto, on_write, NULL);
  tg_proto_start(&proto);
  if (replies) FAIL("BOOT counted as a reply");
  in_len = 0;
  in_overflow = 0;
}

/* ------------------------------------------------------------------ */
/* frames made here */

static uint8_t frame_raw[1u << 17];
static uint8_t frame_wire[(1u << 17) + (1u << 17) / 254u + 8u];

static size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
  size_t i, o = 1, code_at = 0;
  uint8_t code = 1;
  for (i = 0; i < n; i++) {
    if (in[i] == 0) {
      out[code_at] = code;
      code_at = o++;
      code = 1;
    } else {
      out[o++] = in[i];
      code++;
      if (code == 0xFF) {
        out[code_at] = code;
        code_at = o++;
        code = 1;
        if (i + 1 == n) return o - 1; /* canonical: no empty block at the end */
      }
    }
  }
  out[code_at] = code;
  return o;
}

/* wire = 00 COBS(header payload crc) 00; returns its length. */
static size_t make_frame(uint8_t version, uint8_t type, uint16_t seq, uint32_t session,
                         const uint8_t *payload, size_t n) {
  size_t w;
  frame_raw[0] = version;
  frame_raw[1] = type;
  put16(frame_raw + 2, seq);
  put32(frame_raw + 4, session);
  put32(frame_raw + 8, (uint32_t)n);
  if (n) memcpy(frame_raw + 12, payload, n);
  put32(frame_raw + 12 + n, tg_proto_crc32(0, frame_raw, 12 + n));
  frame_wire[0] = 0;
  w = 1 + cobs_encode(frame_raw, 16 + n, frame_wire + 1);
  frame_wire[w++] = 0;
  return w;
}

static void send_frame(uint8_t version, uint8_t type, uint16_t seq, uint32_t session,
                       const uint8_t *payload, size_t n) {
  feed(frame_wire, make_frame(version, type, seq, session, payload, n));
}

/* ------------------------------------------------------------------ */
/* input parsing */

typedef struct {
  const uint8_t *d;
  size_t n, i;
} cursor_t;

static uint8_t next8(cursor_t *c) { return c->i < c->n ? c->d[c->i++] : 0; }
static uint16_t next16(cursor_t *c) {
  uint16_t lo = next8(c);
  return (uint16_t)(lo | (next8(c) << 8));
}
static uint32_t next32(cursor_t *c) {
  uint32_t lo = next16(c);
  return lo | ((uint32_t)next16(c) << 16);
}
/* up to want bytes of the input, fewer at its end */
static const uint8_t *take(cursor_t *c, size_t want, size_t *got) {
  const uint8_t *p = c->d + c->i;
  *got = want < c->n - c->i ? want : c->n - c->i;
  c->i += *got;
  return p;
}

static uint32_t session_for(cursor_t *c, uint8_t mode) {
  switch (mode & 3u) {
    case 0: return TOKEN;
    case 1: return 0;
    case 2: return next32(c);
    default: return TOKEN ^ (1u << (mode >> 2 & 31u));
  }
}

static void run_ops(cursor_t *c) {
  uint16_t seq = 1, last_invoke = 0;
  while (c->i < c->n) {
    uint8_t op = next8(c), kind = (uint8_t)((op & 0x3Fu) % 10u); /* bits 6, 7: flags */
    size_t n, w;
    const uint8_t *p;
    uint8_t args[12];
    switch (kind) {
      case 0: /* raw bytes */
        p = take(c, next8(c), &n);
        feed(p, n);
        break;
      case 1:   /* any frame, correct CRC */
      case 2: { /* any frame, then damaged on the wire */
        uint8_t version = (op & 0x80u) ? next8(c) : 1u, type = next8(c), smode;
        uint16_t fseq = next16(c);
        uint32_t session;
        size_t want;
        smode = next8(c);
        session = session_for(c, smode);
        want = (op & 0x40u) ? next16(c) : next8(c);
        p = take(c, want, &n);
        w = make_frame(version, type, fseq, session, p, n);
        if (kind == 2) {
          uint16_t where = next16(c);
          uint8_t how = next8(c), val = next8(c);
          size_t at = w ? where % w : 0;
          switch (how & 3u) {
            case 0: frame_wire[at] ^= val ? val : 1u; break;  /* flip bits */
            case 1: w = at; break;                            /* cut short */
            case 2: memmove(frame_wire + at, frame_wire + at + 1, w - at - 1); w--; break; /* drop */
            default: frame_wire[at] = val; break;             /* overwrite */
          }
        }
        feed(frame_wire, w);
        break;
      }
      case 3:
        rx_timeout();
        break;
      case 4:
        boot(next8(c));
        break;
      case 5: { /* INPUT_CHUNK of the session */
        uint8_t idx = next8(c) & 3u, off = next8(c);
        memset(args, 0, sizeof args);
        args[0] = idx;
        put32(args + 4, off);
        p = take(c, next8(c), &n);
        {
          static uint8_t payload[8 + 256];
          memcpy(payload, args, 8);
          if (n) memcpy(payload + 8, p, n);
          send_frame(1, 2, seq++, TOKEN, payload, 8 + n);
        }
        break;
      }
      case 6: { /* INVOKE, a new seq or the last INVOKE's again */
        uint8_t how = next8(c);
        uint32_t limit = (how & 3u) == 0 ? 0xFFFFFFFFu : (how & 3u) == 1 ? 0u : (uint32_t)how * 7u;
        uint16_t s = (how & 4u) && last_invoke ? last_invoke : seq++;
        put32(args, limit);
        send_frame(1, 3, s, TOKEN, args, 4);
        last_invoke = s;
        break;
      }
      case 7: /* INFO: a new session with the token */
        send_frame(1, 1, seq++, TOKEN, NULL, 0);
        break;
      case 8: { /* READ_OUTPUT; a length byte of 255 means: a 32-bit length follows */
        uint8_t len8;
        memset(args, 0, sizeof args);
        args[0] = next8(c) & 3u;
        put32(args + 4, next8(c));
        len8 = next8(c);
        put32(args + 8, len8 == 0xFFu ? next32(c) : len8);
        send_frame(1, 5, seq++, TOKEN, args, 12);
        break;
      }
      default: /* RESET_STATE */
        send_frame(1, 4, seq++, TOKEN, NULL, 0);
        break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cursor_t c = {data, size, 0};
  uint8_t mode, config;
  if (size < 2) return 0;
  if (trace < 0) trace = getenv("TG_FUZZ_TRACE") != NULL;
  mode = next8(&c);
  config = next8(&c);
  piece = 1u + 7u * (mode & 0x7Fu);
  counter = 0;
  runs_since_reset = runs_total = 0;
  memset(in0, 0xEE, sizeof in0);
  memset(in1, 0xEE, sizeof in1);
  memset(shadow0, 0x11, sizeof shadow0);
  memset(shadow1, 0x11, sizeof shadow1);
  memset(out0, 0, sizeof out0);
  memset(out1, 0, sizeof out1);
  memset(out2, 0, sizeof out2);
  out_len = 0;
  out_overflow = 0;
  boot(config);
  if (mode & 0x80u) {
    run_ops(&c);
  } else {
    feed(data + 2, size - 2);
  }
  rx_timeout();
  return 0;
}

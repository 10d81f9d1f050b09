/* tinygen serial protocol, device side.  Specification: docs/protocol.md.
 *
 * Wire format: every frame is 0x00, COBS(header | payload | CRC-32), 0x00.
 * The decoder runs byte by byte; INPUT_CHUNK data goes from the decoder
 * straight into tg_model_input(i), checked against the tensor bounds before
 * the first byte is written.  Because that happens before the CRC is known,
 * a frame that turns out bad lowers the input's "filled" mark to the offset
 * it wrote at, so INVOKE can never run on bytes no good frame delivered.
 *
 * Memory safety on any input: every store goes through hdr/args/crc_in with
 * an index checked against their size, through tx_block with tx_n <= 254, or
 * through wr_ptr with wr_left counting down from a length checked against the
 * tensor's size.
 */
/* Size over speed: the protocol runs between inferences, never inside the
 * counted region, and is a large part of the firmware's code flash. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("Os")
#endif

#include "tg_protocol.h"

#include <string.h>

#include "tg_hal.h"
#include "tg_model_api.h"
#ifdef TG_UPDATE
#include "tg_update.h"
#endif

#define ARGS_BYTES 8u   /* INPUT_CHUNK: index, 3 reserved, offset */
#define READ_BYTES 12u  /* READ_OUTPUT: index, 3 reserved, offset, length */
#define INVOKE_BYTES 4u /* INVOKE: inline limit */
#define ERROR_BYTES 8u
#define BOOT_BYTES 8u
#define ACK_BYTES 8u
#define INFO_FIXED_BYTES 52u
#define TENSOR_FIXED_BYTES 16u
#define RESULT_FIXED_BYTES 12u
#define POLL_MS 50u

#define FLAG_MODEL_READY 0x01u
#define FLAG_BIG_ENDIAN 0x02u
#define FLAG_PROFILE 0x04u
#define FLAG_UPDATABLE 0x08u
#define RESULT_INLINE 0x01u

/* ------------------------------------------------------------------ */
/* little-endian helpers */

static void put16(uint8_t *d, uint16_t v) {
  d[0] = (uint8_t)v;
  d[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *d, uint32_t v) {
  d[0] = (uint8_t)v;
  d[1] = (uint8_t)(v >> 8);
  d[2] = (uint8_t)(v >> 16);
  d[3] = (uint8_t)(v >> 24);
}

static uint16_t get16(const uint8_t *s) { return (uint16_t)(s[0] | (s[1] << 8)); }

static uint32_t get32(const uint8_t *s) {
  return (uint32_t)s[0] | ((uint32_t)s[1] << 8) | ((uint32_t)s[2] << 16) | ((uint32_t)s[3] << 24);
}

/* ------------------------------------------------------------------ */
/* CRC-32/ISO-HDLC (reflected 0xEDB88320), a 16-entry table: 64 bytes of
 * flash, two lookups per byte.  The state is kept inverted while running. */

static const uint32_t crc_nibble[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
                                        0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
                                        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

static uint32_t crc_step(uint32_t c, uint8_t b) {
  c ^= b;
  c = (c >> 4) ^ crc_nibble[c & 15u];
  c = (c >> 4) ^ crc_nibble[c & 15u];
  return c;
}

uint32_t tg_proto_crc32(uint32_t crc, const uint8_t *data, size_t len) {
  size_t i;
  crc = ~crc;
  for (i = 0; i < len; i++) crc = crc_step(crc, data[i]);
  return ~crc;
}

/* ------------------------------------------------------------------ */
/* optional per-operator profile (TG_PROFILE_OPS, aot runtime) */

#ifdef TG_PROFILE_OPS
#ifndef TG_PROFILE_MAX_OPS
#define TG_PROFILE_MAX_OPS 256u
#endif
#define PROFILE_ARGS_BYTES 8u /* READ_PROFILE: first, count */
/* Counter delta of every operator in the last inference, by operator index
 * (0 for operators that run no code).  The aot model.c calls tg_profile_op
 * before (phase 0) and after (phase 1) each operator. */
static uint32_t tg_profile_counts[TG_PROFILE_MAX_OPS];
static uint64_t tg_profile_t0;
void tg_profile_op(int op_index, int phase);
void tg_profile_op(int op_index, int phase) {
  uint64_t now = tg_hal_counter(), d;
  if (phase == 0) {
    tg_profile_t0 = now;
  } else if (op_index >= 0 && (unsigned)op_index < TG_PROFILE_MAX_OPS) {
    d = now - tg_profile_t0;
    tg_profile_counts[op_index] = d > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)d;
  }
}
#endif

/* ------------------------------------------------------------------ */
/* model description checks */

static int model_info_ok(void) {
  const tg_model_info_t *m = &tg_model_info;
  unsigned i;
  if (m->num_inputs > TG_PROTO_MAX_INPUTS) return 0;
  if ((m->num_inputs && !m->inputs) || (m->num_outputs && !m->outputs)) return 0;
  for (i = 0; i < m->num_inputs; i++)
    if (m->inputs[i].rank > TG_MAX_DIMS) return 0;
  for (i = 0; i < m->num_outputs; i++)
    if (m->outputs[i].rank > TG_MAX_DIMS) return 0;
  return 1;
}

/* Number of tensors INFO describes: none unless tg_proto_start found the
 * description usable.  Everything else that touches the model needs
 * model_status == 0. */
static int info_checked(const tg_proto_t *p) {
  return p->model_status != TG_PROTO_STATUS_BAD_MODEL_INFO &&
         p->model_status != TG_PROTO_STATUS_NOT_STARTED;
}

static unsigned info_inputs(const tg_proto_t *p) {
  return info_checked(p) ? tg_model_info.num_inputs : 0u;
}

static unsigned info_outputs(const tg_proto_t *p) {
  return info_checked(p) ? tg_model_info.num_outputs : 0u;
}

static uint8_t bounded_strlen(const char *s) {
  unsigned n = 0;
  if (!s) return 0;
  while (n < 255u && s[n]) n++;
  return (uint8_t)n;
}

static uint8_t device_flags(const tg_proto_t *p) {
  const uint16_t one = 1;
  uint8_t flags = 0;
  if (p->model_status == 0) flags |= FLAG_MODEL_READY;
  if (*(const uint8_t *)&one == 0) flags |= FLAG_BIG_ENDIAN;
#ifdef TG_PROFILE_OPS
  flags |= FLAG_PROFILE;
#endif
#ifdef TG_UPDATE
  flags |= FLAG_UPDATABLE;
#endif
  return flags;
}

/* ------------------------------------------------------------------ */
/* transmit: streaming COBS encoder with CRC, one 255-byte block buffer */

static void tx_raw(tg_proto_t *p, const uint8_t *d, size_t n) {
  if (p->write) p->write(p->write_user, d, n);
}

static void tx_flush(tg_proto_t *p, uint8_t code) {
  /* A block is its code byte plus code-1 data bytes (254 for 0xFF). */
  p->tx_block[0] = code;
  tx_raw(p, p->tx_block, code);
  p->tx_n = 0;
  p->tx_ff = code == 0xFFu;
}

static void tx_encode(tg_proto_t *p, uint8_t b) {
  if (b == 0) {
    tx_flush(p, (uint8_t)(p->tx_n + 1u));
    return;
  }
  p->tx_n++;
  p->tx_block[p->tx_n] = b;
  if (p->tx_n == 254u) tx_flush(p, 0xFFu);
}

static void tx_bytes(tg_proto_t *p, const uint8_t *d, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    p->tx_crc = crc_step(p->tx_crc, d[i]);
    tx_encode(p, d[i]);
  }
}

static void tx_begin(tg_proto_t *p, uint8_t type, uint16_t seq, uint32_t len) {
  static const uint8_t delim = 0;
  uint8_t h[TG_PROTO_HEADER_BYTES];
  h[0] = (uint8_t)TG_PROTO_VERSION_MAJOR;
  h[1] = type;
  put16(h + 2, seq);
  put32(h + 4, p->session);
  put32(h + 8, len);
  tx_raw(p, &delim, 1);
  p->tx_n = 0;
  p->tx_ff = 0;
  p->tx_crc = 0xFFFFFFFFu;
  tx_bytes(p, h, sizeof h);
}

static void tx_end(tg_proto_t *p) {
  static const uint8_t delim = 0;
  uint8_t c[TG_PROTO_CRC_BYTES];
  unsigned i;
  put32(c, ~p->tx_crc);
  for (i = 0; i < sizeof c; i++) tx_encode(p, c[i]);
  /* Canonical COBS: a frame ending with a full block needs no empty one. */
  if (p->tx_n != 0 || !p->tx_ff) tx_flush(p, (uint8_t)(p->tx_n + 1u));
  tx_raw(p, &delim, 1);
}

static void send_small(tg_proto_t *p, uint8_t type, uint16_t seq, const uint8_t *d, uint32_t n) {
  tx_begin(p, type, seq, n);
  tx_bytes(p, d, n);
  tx_end(p);
}

static void send_error(tg_proto_t *p, uint16_t seq, uint8_t code, uint8_t request,
                       uint32_t detail) {
  uint8_t e[ERROR_BYTES];
  e[0] = code;
  e[1] = request;
  e[2] = 0;
  e[3] = 0;
  put32(e + 4, detail);
  send_small(p, TG_MSG_ERROR, seq, e, sizeof e);
}

static void send_boot(tg_proto_t *p) {
  uint8_t b[BOOT_BYTES];
  b[0] = (uint8_t)TG_PROTO_VERSION_MAJOR;
  b[1] = (uint8_t)TG_PROTO_VERSION_MINOR;
  b[2] = device_flags(p);
  b[3] = 0;
  put32(b + 4, (uint32_t)p->model_status);
  send_small(p, TG_MSG_BOOT, 0, b, sizeof b);
}

static void send_tensor(tg_proto_t *p, const tg_tensor_info *t) {
  uint8_t r[TENSOR_FIXED_BYTES + 4u * TG_MAX_DIMS];
  uint32_t scale_bits;
  unsigned d;
  r[0] = t->dtype;
  r[1] = t->rank;
  r[2] = 0;
  r[3] = 0;
  put32(r + 4, t->bytes);
  memcpy(&scale_bits, &t->scale, sizeof scale_bits);
  put32(r + 8, scale_bits);
  put32(r + 12, (uint32_t)t->zero_point);
  for (d = 0; d < t->rank; d++) put32(r + TENSOR_FIXED_BYTES + 4u * d, (uint32_t)t->dims[d]);
  tx_bytes(p, r, TENSOR_FIXED_BYTES + 4u * t->rank);
}

static void send_info(tg_proto_t *p, uint16_t seq) {
  const tg_model_info_t *m = &tg_model_info;
  unsigned ni = info_inputs(p), no = info_outputs(p), i;
  uint8_t blen = bounded_strlen(m->board), rlen = bounded_strlen(m->runtime);
  uint8_t f[INFO_FIXED_BYTES];
  /* Minor version 1 appends: arena bytes used (u32), error text length (u8), text. */
  const char *why = p->model_status == TG_PROTO_STATUS_NOT_STARTED ||
                            p->model_status == TG_PROTO_STATUS_BAD_MODEL_INFO
                        ? ""
                        : tg_model_last_error();
  uint8_t elen = bounded_strlen(why);
  uint8_t tail[5];
  uint32_t len = INFO_FIXED_BYTES + blen + rlen + (uint32_t)sizeof tail + elen;
  for (i = 0; i < ni; i++) len += TENSOR_FIXED_BYTES + 4u * m->inputs[i].rank;
  for (i = 0; i < no; i++) len += TENSOR_FIXED_BYTES + 4u * m->outputs[i].rank;

  f[0] = (uint8_t)TG_PROTO_VERSION_MAJOR;
  f[1] = (uint8_t)TG_PROTO_VERSION_MINOR;
  f[2] = device_flags(p);
  f[3] = (uint8_t)tg_hal_counter_unit();
  put32(f + 4, (uint32_t)p->model_status);
  put32(f + 8, m->arena_bytes);
  put32(f + 12, TG_PROTO_MAX_CHUNK);
#ifdef TG_UPDATE
  /* the model of the active slot, not the one the firmware was built with */
  memcpy(f + 16, tg_update_model_signature(), 32);
#else
  memcpy(f + 16, m->signature, 32);
#endif
  f[48] = (uint8_t)ni;
  f[49] = (uint8_t)no;
  f[50] = blen;
  f[51] = rlen;

  tx_begin(p, TG_REPLY_FLAG | TG_CMD_INFO, seq, len);
  tx_bytes(p, f, sizeof f);
  tx_bytes(p, (const uint8_t *)m->board, blen);
  tx_bytes(p, (const uint8_t *)m->runtime, rlen);
  for (i = 0; i < ni; i++) send_tensor(p, &m->inputs[i]);
  for (i = 0; i < no; i++) send_tensor(p, &m->outputs[i]);
  put32(tail, p->model_status == 0 ? tg_model_arena_used() : 0u);
  tail[4] = elen;
  tx_bytes(p, tail, sizeof tail);
  tx_bytes(p, (const uint8_t *)why, elen);
  tx_end(p);
}

/* The result of the last inference: counter, output sizes, and the output
 * data itself, read straight from the model, when it totals no more than the
 * limit the request gave (else the host fetches it with READ_OUTPUT). */
static void send_result(tg_proto_t *p, uint16_t seq) {
  const tg_model_info_t *m = &tg_model_info;
  uint8_t f[RESULT_FIXED_BYTES], b[4];
  uint32_t total = 0, len;
  unsigned i, with_data;
  for (i = 0; i < m->num_outputs; i++) {
    if (!tg_model_output((int)i)) {
      send_error(p, seq, TG_ERR_MODEL, TG_CMD_INVOKE, (uint32_t)TG_PROTO_STATUS_NULL_BUFFER);
      return;
    }
    total += m->outputs[i].bytes;
  }
  with_data = total <= get32(p->args);
  len = RESULT_FIXED_BYTES + 4u * m->num_outputs + (with_data ? total : 0u);
  put32(f, (uint32_t)p->last_invoke_counter);
  put32(f + 4, (uint32_t)(p->last_invoke_counter >> 32));
  f[8] = (uint8_t)tg_hal_counter_unit();
  f[9] = m->num_outputs;
  f[10] = with_data ? RESULT_INLINE : 0u;
  f[11] = 0;
  tx_begin(p, TG_REPLY_FLAG | TG_CMD_INVOKE, seq, len);
  tx_bytes(p, f, sizeof f);
  for (i = 0; i < m->num_outputs; i++) {
    put32(b, m->outputs[i].bytes);
    tx_bytes(p, b, sizeof b);
    if (with_data) tx_bytes(p, tg_model_output((int)i), m->outputs[i].bytes);
  }
  tx_end(p);
}

static void send_output(tg_proto_t *p, uint16_t seq) {
  const tg_model_info_t *m = &tg_model_info;
  unsigned index = p->args[0];
  uint32_t offset = get32(p->args + 4), n = get32(p->args + 8), bytes;
  const uint8_t *buf;
  uint8_t h[ACK_BYTES];
  if (!p->outputs_valid) {
    send_error(p, seq, TG_ERR_NO_OUTPUT, TG_CMD_READ_OUTPUT, 0);
    return;
  }
  if (index >= m->num_outputs) {
    send_error(p, seq, TG_ERR_OUTPUT_INDEX, TG_CMD_READ_OUTPUT, m->num_outputs);
    return;
  }
  if (n > TG_PROTO_MAX_CHUNK) {
    send_error(p, seq, TG_ERR_BAD_LENGTH, TG_CMD_READ_OUTPUT, TG_PROTO_MAX_CHUNK);
    return;
  }
  bytes = m->outputs[index].bytes;
  if (n > bytes || offset > bytes - n) {
    send_error(p, seq, TG_ERR_OUTPUT_RANGE, TG_CMD_READ_OUTPUT, bytes);
    return;
  }
  buf = tg_model_output((int)index);
  if (!buf) {
    send_error(p, seq, TG_ERR_MODEL, TG_CMD_READ_OUTPUT, (uint32_t)TG_PROTO_STATUS_NULL_BUFFER);
    return;
  }
  h[0] = (uint8_t)index;
  h[1] = 0;
  h[2] = 0;
  h[3] = 0;
  put32(h + 4, offset);
  tx_begin(p, TG_REPLY_FLAG | TG_CMD_READ_OUTPUT, seq, ACK_BYTES + n);
  tx_bytes(p, h, sizeof h);
  tx_bytes(p, buf + offset, n);
  tx_end(p);
}

#ifdef TG_PROFILE_OPS
/* READ_PROFILE reply: slots u32, first u32, then up to count u32 values. */
static void send_profile(tg_proto_t *p, uint16_t seq) {
  uint32_t first = get32(p->args), n = get32(p->args + 4), i;
  uint8_t h[ACK_BYTES], v[4];
  if (!p->outputs_valid) {
    send_error(p, seq, TG_ERR_NO_OUTPUT, TG_CMD_READ_PROFILE, 0);
    return;
  }
  if (first > TG_PROFILE_MAX_OPS) first = TG_PROFILE_MAX_OPS;
  if (n > TG_PROFILE_MAX_OPS - first) n = TG_PROFILE_MAX_OPS - first;
  if (n > TG_PROTO_MAX_CHUNK / 4u) n = TG_PROTO_MAX_CHUNK / 4u;
  put32(h, TG_PROFILE_MAX_OPS);
  put32(h + 4, first);
  tx_begin(p, TG_REPLY_FLAG | TG_CMD_READ_PROFILE, seq, ACK_BYTES + 4u * n);
  tx_bytes(p, h, sizeof h);
  for (i = 0; i < n; i++) {
    put32(v, tg_profile_counts[first + i]);
    tx_bytes(p, v, sizeof v);
  }
  tx_end(p);
}
#endif

/* ------------------------------------------------------------------ */
/* request handling */

static uint16_t rx_seq(const tg_proto_t *p) { return get16(p->hdr + 2); }

static int session_ok(const tg_proto_t *p) {
  return p->session != 0 && get32(p->hdr + 4) == p->session;
}

static void clear_inputs(tg_proto_t *p) { memset(p->filled, 0, sizeof p->filled); }

/* Validates an INPUT_CHUNK whose header and arguments are in; returns 0 and
 * sets *dst when its data may be written, else an error code and *detail. */
static uint8_t chunk_check(const tg_proto_t *p, uint8_t **dst, uint32_t *detail) {
  const tg_model_info_t *m = &tg_model_info;
  unsigned index = p->args[0];
  uint32_t offset = get32(p->args + 4), n, bytes;
  uint8_t *buf;
  if (!session_ok(p)) {
    *detail = p->session;
    return TG_ERR_SESSION;
  }
  if (p->rx_len < ARGS_BYTES || p->rx_len - ARGS_BYTES > TG_PROTO_MAX_CHUNK) {
    *detail = TG_PROTO_MAX_CHUNK;
    return TG_ERR_BAD_LENGTH;
  }
  if (p->model_status != 0) {
    *detail = (uint32_t)p->model_status;
    return TG_ERR_MODEL;
  }
  if (index >= m->num_inputs) {
    *detail = m->num_inputs;
    return TG_ERR_INPUT_INDEX;
  }
  n = p->rx_len - ARGS_BYTES;
  bytes = m->inputs[index].bytes;
  if (n > bytes || offset > bytes - n) {
    *detail = bytes;
    return TG_ERR_INPUT_SIZE;
  }
  if (offset > p->filled[index]) {
    *detail = p->filled[index];
    return TG_ERR_INPUT_OFFSET;
  }
  buf = tg_model_input((int)index);
  if (!buf) {
    *detail = (uint32_t)TG_PROTO_STATUS_NULL_BUFFER;
    return TG_ERR_MODEL;
  }
  *dst = buf + offset;
  return 0;
}

/* Called when the 8 argument bytes of a frame are in. */
static void chunk_begin(tg_proto_t *p) {
  uint8_t *dst = 0;
  uint32_t detail = 0;
  if (p->hdr[0] != TG_PROTO_VERSION_MAJOR || p->hdr[1] != TG_CMD_INPUT_CHUNK) return;
  if (chunk_check(p, &dst, &detail) != 0) return;
  p->wr_active = 1;
  p->wr_index = p->args[0];
  p->wr_offset = get32(p->args + 4);
  p->wr_ptr = dst;
  p->wr_left = p->rx_len - ARGS_BYTES;
}

/* A frame that may have written input bytes failed: what it wrote from
 * wr_offset on can no longer be trusted. */
static void chunk_fail(tg_proto_t *p) {
  if (p->wr_active && p->filled[p->wr_index] > p->wr_offset) p->filled[p->wr_index] = p->wr_offset;
  p->wr_active = 0;
}

static void handle_chunk(tg_proto_t *p, uint16_t seq) {
  uint8_t a[ACK_BYTES], *dst = 0;
  uint32_t detail = 0, end, *filled;
  uint8_t err;
  if (!p->wr_active) {
    err = chunk_check(p, &dst, &detail);
    /* wr_active is clear exactly when chunk_check failed at chunk_begin and
     * nothing it looks at has changed since; be safe all the same. */
    if (err == 0) {
      err = TG_ERR_FRAME;
      detail = p->rx_count;
    }
    send_error(p, seq, err, TG_CMD_INPUT_CHUNK, detail);
    return;
  }
  filled = &p->filled[p->wr_index];
  end = p->wr_offset + (p->rx_len - ARGS_BYTES);
  if (p->wr_offset == 0 || end > *filled) *filled = end; /* offset 0 starts over */
  p->wr_active = 0;
  a[0] = p->wr_index;
  a[1] = 0;
  a[2] = 0;
  a[3] = 0;
  put32(a + 4, *filled);
  send_small(p, TG_REPLY_FLAG | TG_CMD_INPUT_CHUNK, seq, a, sizeof a);
}

static void handle_invoke(tg_proto_t *p, uint16_t seq) {
  const tg_model_info_t *m = &tg_model_info;
  uint64_t c0, c1;
  unsigned i;
  if (p->last_invoke_valid && seq == p->last_invoke_seq) {
    /* A retransmission: answer again, do not run (state, inputs) again. */
    if (p->last_invoke_status != 0)
      send_error(p, seq, TG_ERR_MODEL, TG_CMD_INVOKE, (uint32_t)p->last_invoke_status);
    else
      send_result(p, seq);
    return;
  }
  if (p->model_status != 0) {
    send_error(p, seq, TG_ERR_MODEL, TG_CMD_INVOKE, (uint32_t)p->model_status);
    return;
  }
  for (i = 0; i < m->num_inputs; i++) {
    if (p->filled[i] != m->inputs[i].bytes) {
      send_error(p, seq, TG_ERR_INPUT_INCOMPLETE, TG_CMD_INVOKE, i);
      return;
    }
  }
  p->outputs_valid = 0;
#ifdef TG_PROFILE_OPS
  memset(tg_profile_counts, 0, sizeof tg_profile_counts);
#endif
  c0 = tg_hal_counter();
  p->last_invoke_status = tg_model_run();
  c1 = tg_hal_counter();
  /* The run may reuse input memory: every inference needs fresh input. */
  clear_inputs(p);
  p->outputs_valid = p->last_invoke_status == 0;
  p->last_invoke_valid = 1;
  p->last_invoke_seq = seq;
  p->last_invoke_counter = c1 - c0;
  if (p->last_invoke_status != 0)
    send_error(p, seq, TG_ERR_MODEL, TG_CMD_INVOKE, (uint32_t)p->last_invoke_status);
  else
    send_result(p, seq);
}

#ifdef TG_UPDATE
/* Model update commands (tg_update.c); a command that re-bound the model
 * leaves no input or result behind. */
static void handle_update(tg_proto_t *p, uint8_t type, uint16_t seq) {
  static uint8_t reply[TG_UPDATE_REPLY_BYTES];
  int changed = 0;
  int32_t n;
  if (!session_ok(p)) {
    send_error(p, seq, TG_ERR_SESSION, type, p->session);
    return;
  }
  n = tg_update_handle(type, p->rx_len, reply, &changed);
  if (changed) {
    clear_inputs(p);
    p->outputs_valid = 0;
    p->model_status = (int32_t)tg_model_init();
  }
  if (n < 0)
    send_error(p, seq, TG_ERR_UPDATE, type, (uint32_t)-n);
  else
    send_small(p, TG_REPLY_FLAG | type, seq, reply, (uint32_t)n);
}
#endif

/* A complete frame with a good CRC. */
static void dispatch(tg_proto_t *p) {
  uint8_t type = p->hdr[1];
  uint16_t seq = rx_seq(p);
  if (p->hdr[0] != TG_PROTO_VERSION_MAJOR) {
    send_error(p, seq, TG_ERR_VERSION, type, TG_PROTO_VERSION_MAJOR);
    return;
  }
  if (type != TG_CMD_INVOKE) p->last_invoke_valid = 0;
  switch (type) {
    case TG_CMD_INFO:
      if (p->rx_len != 0) {
        send_error(p, seq, TG_ERR_BAD_LENGTH, type, 0);
        return;
      }
      p->session = get32(p->hdr + 4);
      clear_inputs(p);
      p->outputs_valid = 0;
      send_info(p, seq);
      return;
    case TG_CMD_INPUT_CHUNK:
      handle_chunk(p, seq);
      return;
    case TG_CMD_INVOKE:
    case TG_CMD_RESET_STATE:
    case TG_CMD_READ_OUTPUT: {
      uint32_t want = type == TG_CMD_INVOKE        ? INVOKE_BYTES
                      : type == TG_CMD_READ_OUTPUT ? READ_BYTES
                                                   : 0u;
      if (!session_ok(p)) {
        send_error(p, seq, TG_ERR_SESSION, type, p->session);
      } else if (p->rx_len != want) {
        send_error(p, seq, TG_ERR_BAD_LENGTH, type, want);
      } else if (type == TG_CMD_INVOKE) {
        handle_invoke(p, seq);
      } else if (type == TG_CMD_READ_OUTPUT) {
        send_output(p, seq);
      } else if (p->model_status != 0) {
        send_error(p, seq, TG_ERR_MODEL, type, (uint32_t)p->model_status);
      } else {
        p->outputs_valid = 0;
        tg_model_reset();
        send_small(p, TG_REPLY_FLAG | TG_CMD_RESET_STATE, seq, 0, 0);
      }
      return;
    }
#ifdef TG_UPDATE
    case TG_CMD_SLOTS:
    case TG_CMD_UPDATE_BEGIN:
    case TG_CMD_UPDATE_CHUNK:
    case TG_CMD_UPDATE_FINISH:
    case TG_CMD_ACTIVATE:
    case TG_CMD_FAULT_ARM:
      handle_update(p, type, seq);
      return;
#endif
#ifdef TG_PROFILE_OPS
    case TG_CMD_READ_PROFILE:
      if (!session_ok(p)) {
        send_error(p, seq, TG_ERR_SESSION, type, p->session);
      } else if (p->rx_len != PROFILE_ARGS_BYTES) {
        send_error(p, seq, TG_ERR_BAD_LENGTH, type, PROFILE_ARGS_BYTES);
      } else {
        send_profile(p, seq);
      }
      return;
#endif
    default:
      send_error(p, seq, TG_ERR_UNKNOWN_COMMAND, type, type);
      return;
  }
}

/* ------------------------------------------------------------------ */
/* receive */

static void rx_reset(tg_proto_t *p) {
  p->rx_started = 0;
  p->cobs_left = 0;
  p->zero_pending = 0;
  p->cobs_bad = 0;
  p->rx_count = 0;
  p->rx_crc = 0xFFFFFFFFu;
  p->rx_len = 0;
  p->wr_active = 0;
  p->wr_left = 0;
  p->wr_ptr = 0;
}

/* One decoded byte of the current frame. */
static void rx_byte(tg_proto_t *p, uint8_t b) {
  uint32_t pos = p->rx_count, k;
  if (pos == 0xFFFFFFFFu) {
    p->cobs_bad = 1;
    return;
  }
  p->rx_count = pos + 1u;
  if (pos < TG_PROTO_HEADER_BYTES) {
    p->hdr[pos] = b;
    p->rx_crc = crc_step(p->rx_crc, b);
    if (pos == TG_PROTO_HEADER_BYTES - 1u) p->rx_len = get32(p->hdr + 8);
    return;
  }
  k = pos - TG_PROTO_HEADER_BYTES;
  if (k < p->rx_len) {
    p->rx_crc = crc_step(p->rx_crc, b);
    if (k < sizeof p->args) p->args[k] = b;
#ifdef TG_UPDATE
    if (TG_UPDATE_IS_CMD(p->hdr[1])) tg_update_rx(k, b);
#endif
    if (k == ARGS_BYTES - 1u) {
      chunk_begin(p);
    } else if (k >= ARGS_BYTES && p->wr_left) {
      *p->wr_ptr++ = b;
      p->wr_left--;
    }
    return;
  }
  k -= p->rx_len;
  if (k < TG_PROTO_CRC_BYTES) p->crc_in[k] = b;
  /* anything further makes the frame too long: caught in rx_end */
}

/* A delimiter: the frame is complete. */
static void rx_end(tg_proto_t *p) {
  uint8_t type = p->hdr[1];
  uint16_t seq = rx_seq(p);
  if (!p->rx_started) return;
  if (p->rx_count < TG_PROTO_HEADER_BYTES) {
    /* noise too short to carry a sequence number: ignore it */
    rx_reset(p);
    return;
  }
  if (p->cobs_left != 0 || p->cobs_bad ||
      (uint64_t)p->rx_count != (uint64_t)p->rx_len + TG_PROTO_HEADER_BYTES + TG_PROTO_CRC_BYTES) {
    chunk_fail(p);
    send_error(p, seq, TG_ERR_FRAME, type, p->rx_count);
  } else if (get32(p->crc_in) != ~p->rx_crc) {
    chunk_fail(p);
    send_error(p, seq, TG_ERR_BAD_CRC, type, 0);
  } else {
    dispatch(p);
  }
  rx_reset(p);
}

void tg_proto_feed(tg_proto_t *p, const uint8_t *data, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    uint8_t x = data[i];
    if (x == 0) {
      rx_end(p);
    } else if (p->cobs_left == 0) {
      /* a COBS code byte: the previous block ended, maybe with a zero */
      if (p->zero_pending) rx_byte(p, 0);
      p->rx_started = 1;
      p->cobs_left = (uint8_t)(x - 1u);
      p->zero_pending = x != 0xFFu;
    } else {
      rx_byte(p, x);
      p->cobs_left--;
    }
  }
}

void tg_proto_rx_timeout(tg_proto_t *p) {
  if (!p->rx_started) return;
  chunk_fail(p);
  rx_reset(p);
}

int tg_proto_in_frame(const tg_proto_t *p) { return p->rx_started; }

void tg_proto_init(tg_proto_t *p, tg_proto_write_fn write, void *user) {
  memset(p, 0, sizeof *p);
  p->write = write;
  p->write_user = user;
  p->model_status = TG_PROTO_STATUS_NOT_STARTED;
  rx_reset(p);
}

void tg_proto_start(tg_proto_t *p) {
  if (!model_info_ok()) {
    p->model_status = TG_PROTO_STATUS_BAD_MODEL_INFO;
  } else {
#ifdef TG_UPDATE
    tg_update_boot();
#endif
    p->model_status = (int32_t)tg_model_init();
  }
  send_boot(p);
}

/* ------------------------------------------------------------------ */
/* firmware main loop */

static void hal_write(void *user, const uint8_t *data, size_t len) {
  (void)user;
  tg_hal_uart_write(data, len);
}

void tg_protocol_run(void) {
  static tg_proto_t proto;
  uint32_t quiet = 0; /* consecutive empty polls while inside a frame */
  tg_proto_init(&proto, hal_write, 0);
  tg_proto_start(&proto);
  for (;;) {
    /* No clock reads per byte: on emulated boards each costs an exit. */
    int c = tg_hal_uart_read(POLL_MS);
    if (c >= 0) {
      uint8_t b = (uint8_t)c;
      tg_proto_feed(&proto, &b, 1);
      quiet = 0;
    } else if (tg_proto_in_frame(&proto) && ++quiet * POLL_MS >= TG_PROTO_RX_TIMEOUT_MS) {
      tg_proto_rx_timeout(&proto);
      quiet = 0;
    }
  }
}

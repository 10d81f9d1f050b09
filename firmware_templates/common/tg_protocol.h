/* tinygen serial protocol, device side (specification: docs/protocol.md).
 *
 * Portable C99: no malloc, no stdio, no floating-point arithmetic.  The state
 * lives in one tg_proto_t (about 400 bytes) that the caller allocates
 * statically; the input tensors are written in place, straight from the
 * decoder, so an input of any size needs no second copy.
 *
 * Two ways to use it:
 *   - tg_protocol_run(): the firmware main loop (never returns).  Replies go
 *     out through tg_hal_uart_write, bytes come in through tg_hal_uart_read.
 *   - the step API (tg_proto_init / tg_proto_start / tg_proto_feed /
 *     tg_proto_rx_timeout): no I/O of its own, replies go to a callback.
 *     This is what tg_protocol_run is built on, and what a fuzzer drives.
 * Both call the model only through tg_model_api.h, and the step API calls
 * tg_hal_counter()/tg_hal_counter_unit() around an inference.
 */
#ifndef TG_PROTOCOL_H
#define TG_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_PROTO_VERSION_MAJOR 1u
#define TG_PROTO_VERSION_MINOR 1u

/* Largest INPUT_CHUNK data / READ_OUTPUT length (bytes) per frame; it is
 * announced in INFO.  Costs no RAM: data is written and read in place. */
#ifndef TG_PROTO_MAX_CHUNK
#define TG_PROTO_MAX_CHUNK 16384u
#endif

/* Most input tensors a model may have (4 bytes of state each). */
#ifndef TG_PROTO_MAX_INPUTS
#define TG_PROTO_MAX_INPUTS 16u
#endif

/* tg_protocol_run: a frame that stalls this long is dropped. */
#ifndef TG_PROTO_RX_TIMEOUT_MS
#define TG_PROTO_RX_TIMEOUT_MS 500u
#endif

/* Frame types (byte 1 of a frame).  Requests from the host: */
#define TG_CMD_INFO 0x01u
#define TG_CMD_INPUT_CHUNK 0x02u
#define TG_CMD_INVOKE 0x03u
#define TG_CMD_RESET_STATE 0x04u
#define TG_CMD_READ_OUTPUT 0x05u
/* Optional: only firmware built with TG_PROFILE_OPS (tinygen build --profile,
 * aot runtime) knows it; INFO flags bit 2 says so.  Others answer
 * UNKNOWN_COMMAND. */
#define TG_CMD_READ_PROFILE 0x06u
/* Replies from the device: success = 0x80 | request type, plus: */
#define TG_REPLY_FLAG 0x80u
#define TG_MSG_BOOT 0xF0u /* unsolicited, sent once after every boot */
#define TG_MSG_ERROR 0xFFu

/* Error codes (first byte of an ERROR payload). */
#define TG_ERR_UNKNOWN_COMMAND 1u   /* detail: the request type */
#define TG_ERR_BAD_LENGTH 2u        /* detail: the payload length expected / max */
#define TG_ERR_BAD_CRC 3u           /* detail: 0 */
#define TG_ERR_FRAME 4u             /* detail: decoded frame length */
#define TG_ERR_VERSION 5u           /* detail: device protocol major version */
#define TG_ERR_SESSION 6u           /* detail: device session (0 after a boot) */
#define TG_ERR_MODEL 7u             /* detail: model status code */
#define TG_ERR_INPUT_INDEX 8u       /* detail: number of inputs */
#define TG_ERR_INPUT_SIZE 9u        /* detail: bytes of that input tensor */
#define TG_ERR_INPUT_OFFSET 10u     /* detail: bytes filled so far */
#define TG_ERR_INPUT_INCOMPLETE 11u /* detail: index of first incomplete input */
#define TG_ERR_OUTPUT_INDEX 12u     /* detail: number of outputs */
#define TG_ERR_OUTPUT_RANGE 13u     /* detail: bytes of that output tensor */
#define TG_ERR_NO_OUTPUT 14u        /* detail: 0 (no inference result to read) */

/* Model status codes of the protocol itself (the model's own are > -1000). */
#define TG_PROTO_STATUS_BAD_MODEL_INFO (-1001) /* too many inputs, rank > 6 */
#define TG_PROTO_STATUS_NULL_BUFFER (-1002)    /* tg_model_input/output NULL */
#define TG_PROTO_STATUS_NOT_STARTED (-1003)    /* tg_proto_start not called */

/* Bytes of a frame before COBS: header, payload, CRC-32. */
#define TG_PROTO_HEADER_BYTES 12u
#define TG_PROTO_CRC_BYTES 4u

typedef void (*tg_proto_write_fn)(void *user, const uint8_t *data, size_t len);

/* All protocol state.  Treat as opaque; it is public only so that it can be
 * allocated statically. */
typedef struct {
  tg_proto_write_fn write;
  void *write_user;

  /* model */
  int32_t model_status;                 /* 0 when tg_model_init succeeded */
  uint32_t session;                     /* token set by INFO; 0 after boot */
  uint32_t filled[TG_PROTO_MAX_INPUTS]; /* valid prefix of each input */

  /* last INVOKE, replayed when the same request is retransmitted */
  uint8_t outputs_valid; /* the last inference succeeded: outputs readable */
  uint8_t last_invoke_valid;
  uint16_t last_invoke_seq;
  int32_t last_invoke_status;
  uint64_t last_invoke_counter;

  /* COBS decoder */
  uint8_t rx_started;   /* a frame has begun (non-zero bytes seen) */
  uint8_t cobs_left;    /* data bytes left in the current COBS block */
  uint8_t zero_pending; /* a zero follows if the frame goes on */
  uint8_t cobs_bad;     /* malformed COBS or frame too long */

  /* frame being received */
  uint32_t rx_count; /* decoded bytes so far */
  uint32_t rx_crc;
  uint32_t rx_len; /* payload length from the header */
  uint8_t hdr[TG_PROTO_HEADER_BYTES];
  uint8_t args[12]; /* first payload bytes */
  uint8_t crc_in[TG_PROTO_CRC_BYTES];

  /* in-place write of INPUT_CHUNK data */
  uint8_t wr_active; /* this frame may have written input bytes */
  uint8_t wr_index;
  uint32_t wr_offset;
  uint32_t wr_left;
  uint8_t *wr_ptr;

  /* COBS encoder: tx_block[0] is the code byte */
  uint8_t tx_n;
  uint8_t tx_ff; /* the last block flushed was a full 0xFF block */
  uint32_t tx_crc;
  uint8_t tx_block[255];
} tg_proto_t;

/* Firmware entry point: tg_model_init, BOOT frame, then serve commands
 * forever.  Call after tg_hal_init(). */
void tg_protocol_run(void);

/* Step API. */
void tg_proto_init(tg_proto_t *p, tg_proto_write_fn write, void *user);
/* Initialise the model (tg_model_init) and send the BOOT frame. */
void tg_proto_start(tg_proto_t *p);
/* Feed received bytes; complete requests are executed and answered at once. */
void tg_proto_feed(tg_proto_t *p, const uint8_t *data, size_t len);
/* The line has been quiet for a while: drop a partly received frame. */
void tg_proto_rx_timeout(tg_proto_t *p);
/* Nonzero while a frame is partly received. */
int tg_proto_in_frame(const tg_proto_t *p);

/* CRC-32 (IEEE 802.3, as zlib.crc32): crc = tg_proto_crc32(crc, data, n),
 * starting from 0. */
uint32_t tg_proto_crc32(uint32_t crc, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TG_PROTOCOL_H */

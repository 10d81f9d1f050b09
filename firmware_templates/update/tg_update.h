/* Model updates without reflashing (docs/model-update.md).
 *
 * The model's constants live in a slot: slot 0 is the image the firmware was
 * built with (in program flash, read-only), slots 1..TG_UPDATE_SLOTS are in
 * the model partition (tg_flash.h).  Every slot holds a signed image in
 * MCUboot's layout; a ping-pong state record names the active slot.  At boot
 * the active slot is verified (SHA-512 + Ed25519) before the model is bound
 * to it; if that fails the newest other verified slot runs instead.
 *
 * The serial protocol (tg_protocol.c) forwards the update commands here. */
#ifndef TG_UPDATE_H
#define TG_UPDATE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Request types (host -> device); replies are 0x80 | type. */
#define TG_CMD_SLOTS 0x10u
#define TG_CMD_UPDATE_BEGIN 0x11u
#define TG_CMD_UPDATE_CHUNK 0x12u
#define TG_CMD_UPDATE_FINISH 0x13u
#define TG_CMD_ACTIVATE 0x14u
#define TG_CMD_FAULT_ARM 0x15u
#define TG_UPDATE_IS_CMD(t) ((t) >= TG_CMD_SLOTS && (t) <= TG_CMD_FAULT_ARM)

/* ERROR code of a refused update command; the detail is a reason below. */
#define TG_ERR_UPDATE 15u

/* Reasons (stable: the host prints them). */
#define TG_UPD_OK 0u
#define TG_UPD_BAD_MAGIC 1u  /* not an image */
#define TG_UPD_TRUNCATED 2u  /* lengths or TLVs run past the image */
#define TG_UPD_FORMAT 3u     /* unknown format version or layout */
#define TG_UPD_NO_HASH 4u    /* no SHA-512 TLV */
#define TG_UPD_HASH 5u       /* content does not match its hash: corrupted */
#define TG_UPD_UNSIGNED 6u   /* no Ed25519 TLV */
#define TG_UPD_SIGNATURE 7u  /* signature does not verify with this device's key */
#define TG_UPD_WRONG_ARCH 8u /* built for another model architecture/runtime */
#define TG_UPD_TOO_LARGE 9u  /* image larger than a slot, or arena larger than this firmware's */
#define TG_UPD_ROLLBACK 10u  /* version not newer than the active one */
#define TG_UPD_SECURITY_COUNTER 11u /* security counter below the device's floor */
#define TG_UPD_SELFTEST 12u         /* the model's self-test vectors gave other outputs */
#define TG_UPD_NO_SLOT 13u          /* no such slot */
#define TG_UPD_EMPTY 14u            /* the slot holds no committed image */
#define TG_UPD_INCOMPLETE 15u       /* chunks are missing */
#define TG_UPD_NOT_STARTED 16u      /* UPDATE_CHUNK/FINISH without UPDATE_BEGIN since boot */
#define TG_UPD_CHUNK 17u            /* chunk offset/length not what BEGIN announced */
#define TG_UPD_FLASH 18u            /* flash read-back differs from the chunk (CRC) */
#define TG_UPD_SAME 19u             /* this exact image is already the active one */
#define TG_UPD_BAD_REQUEST 20u      /* malformed request payload */
#define TG_UPD_BASE 21u             /* the delta was made from another image than the running one */
#define TG_UPD_DELTA 22u            /* the delta does not apply (corrupted or not a delta) */

/* Largest request payload the update commands take (UPDATE_CHUNK: 8 bytes
 * of arguments + one chunk). */
#define TG_UPDATE_CHUNK_BYTES 1024u
#define TG_UPDATE_RX_BYTES (TG_UPDATE_CHUNK_BYTES + 8u)

/* Pick and verify the slot to run, and bind the model to it.  Called once
 * before tg_model_init(). */
void tg_update_boot(void);

/* SHA-256 of the .tflite of the model that runs (INFO's model signature). */
const uint8_t *tg_update_model_signature(void);

/* Receive side: payload byte k of an update request (stored if it fits). */
void tg_update_rx(uint32_t k, uint8_t b);

/* Execute a complete update request of `len` payload bytes.  Writes the
 * reply payload to out (at most TG_UPDATE_REPLY_BYTES) and returns its
 * length, or -(reason) when refused.  *model_changed is set when the model
 * was re-bound (its inputs and outputs are then undefined). */
#define TG_UPDATE_REPLY_BYTES 256u
int32_t tg_update_handle(uint8_t type, uint32_t len, uint8_t *out, int *model_changed);

/* Provided by the generated model: point its constants at a payload. */
void tg_model_bind(const uint8_t *payload);

#ifdef __cplusplus
}
#endif

#endif /* TG_UPDATE_H */

/* Model slots, signed images and the update state machine.  Format, state
 * machine and threat model: docs/model-update.md.
 *
 * Power-loss safety rests on three rules:
 *  - the active slot is named by a state record written in two sectors in
 *    turn (ping-pong, each with a CRC); a torn write leaves the other, older
 *    record in force, so the switch to a new model is one atomic step;
 *  - a slot is erased only after the state record has stopped listing it as
 *    committed, and never while it is active;
 *  - nothing runs from a slot that did not pass SHA-512 and Ed25519 at this
 *    boot (or, for the slot being installed, just before the commit).
 * Resume: a chunk's mark in the slot's status sector is programmed only
 * after the chunk's bytes were read back with the right CRC.
 *
 * Delta transfers (HDiffPatch's compressed-diff format, made by detools)
 * land in the slot's delta area; UPDATE_FINISH rebuilds the image from the
 * running one into the image area, then verifies it like any other: the
 * delta itself needs no signature, its result has one. */
#include "tg_update.h"

#include <string.h>

#include "monocypher-ed25519.h"
#include "patch.h"
#include "tg_flash.h"
#include "tg_hal.h"
#include "tg_model_api.h"
#include "tg_protocol.h"
#include "tg_update_config.h"

/* MCUboot image layout (bootutil/image.h): header, body, protected TLVs,
 * TLVs.  tinygen's own TLVs use the vendor range 0xA0.. */
#define IMG_MAGIC 0x96f3b83du
#define IMG_HEADER_BYTES 32u
#define TLV_INFO_MAGIC 0x6907u
#define TLV_PROT_INFO_MAGIC 0x6908u
#define TLV_SHA512 0x12u
#define TLV_ED25519 0x24u
#define TLV_SEC_CNT 0x50u
#define TLV_TG_META 0xA0u
#define TLV_TG_SELFTEST 0xA1u
#define META_BYTES 72u
#define META_FORMAT 1u

#define STATE_MAGIC 0x31534754u /* "TGS1" */
#define STATE_BYTES 20u
#define RX_MAGIC 0x31524754u /* "TGR1" */
/* receive record: magic, image length, chunk size, image SHA-512 (12),
 * delta length (76, 0: full image), base image SHA-512 (80), CRC (144) */
#define RX_RECORD_BYTES 148u
#define RX_CRC_AT 144u
#define RX_BITMAP_OFFSET 256u

#define BEGIN_BYTES 180u
#define BEGIN_DELTA_BYTES 248u /* + delta length u32, base image SHA-512 */
#define HPATCH_CACHE_BYTES 4096u
#define SLOT_RECORD_BYTES 56u
#define SLOTS_HEADER_BYTES 20u

#define SLOT_EMPTY 0u
#define SLOT_VALID 1u
#define SLOT_RECEIVING 2u
#define SLOT_INVALID 3u

#if TG_UPDATE_SLOTS < 1 || TG_UPDATE_SLOTS > 3
#error "TG_UPDATE_SLOTS must be 1..3"
#endif

typedef struct {
  const uint8_t *img;
  uint32_t total;
  uint32_t hdr_size, body_len, signed_len;
  uint8_t ver[8]; /* major, minor, revision (u16), build (u32), as in the header */
  uint32_t sec_cnt;
  const uint8_t *meta;
  const uint8_t *selftest;
  uint32_t selftest_len;
  const uint8_t *hash;
  const uint8_t *sig;
} tg_image;

typedef struct {
  uint32_t seq;
  uint8_t active;
  uint8_t valid; /* bit k: slot k holds a committed image */
  uint32_t floor;
  int sector; /* where it was read from, -1 when none was valid */
} tg_state;

static tg_state state;
static uint8_t bound_slot;
static uint8_t boot_failed_slot = 0xFFu;
static uint8_t boot_reason;
static uint32_t boot_ticks;
static const uint8_t *bound_meta;

/* transfer in progress (RAM only: a reset ends it, BEGIN resumes it) */
static uint8_t upd_on;
static uint8_t upd_slot;
static uint32_t upd_len;   /* image bytes */
static uint32_t upd_xfer;  /* bytes transferred: the image, or the delta */
static uint32_t upd_delta; /* delta bytes, 0 for a full image */

static uint8_t rx_buf[TG_UPDATE_RX_BYTES];

static uint16_t get16(const uint8_t *s) { return (uint16_t)(s[0] | (s[1] << 8)); }

static uint32_t get32(const uint8_t *s) {
  return (uint32_t)s[0] | ((uint32_t)s[1] << 8) | ((uint32_t)s[2] << 16) | ((uint32_t)s[3] << 24);
}

static void put32(uint8_t *d, uint32_t v) {
  d[0] = (uint8_t)v;
  d[1] = (uint8_t)(v >> 8);
  d[2] = (uint8_t)(v >> 16);
  d[3] = (uint8_t)(v >> 24);
}

/* ---- layout ------------------------------------------------------------- */

static uint32_t sector(void) { return tg_flash_sector(); }

static uint32_t slot_base(uint8_t k) {
  return 2u * sector() + (uint32_t)(k - 1u) * TG_UPDATE_SLOT_BYTES;
}

/* The image area of a slot; the delta area of the same size follows it. */
static uint32_t slot_capacity(void) { return TG_UPDATE_AREA_BYTES; }

static uint32_t delta_offset(void) { return sector() + TG_UPDATE_AREA_BYTES; }

static const uint8_t *slot_image(uint8_t k) {
  if (k == 0u) return tg_factory_image;
  return tg_flash_base() + slot_base(k) + sector();
}

static int rx_record_ok(uint8_t k);
static const uint8_t *rx_record(uint8_t k);

/* Bytes an image in slot k may span: what was received into it (bytes
 * beyond are left over from an older image), else the whole slot. */
static uint32_t slot_avail(uint8_t k) {
  if (k == 0u) return tg_factory_image_len;
  if (rx_record_ok(k)) return get32(rx_record(k) + 4);
  return slot_capacity();
}

static uint32_t round_up(uint32_t len) { return (len + sector() - 1u) / sector() * sector(); }

static uint32_t chunks_of(uint32_t len) {
  return (len + TG_UPDATE_CHUNK_BYTES - 1u) / TG_UPDATE_CHUNK_BYTES;
}

/* ---- images ------------------------------------------------------------- */

/* Walk one TLV area at off; records what it finds.  Returns its size or 0. */
static uint32_t walk_tlvs(tg_image *im, uint32_t off, uint32_t avail, uint16_t magic) {
  uint32_t tot, p;
  if (off > avail || avail - off < 4u) return 0;
  if (get16(im->img + off) != magic) return 0;
  tot = get16(im->img + off + 2u);
  if (tot < 4u || tot > avail - off) return 0;
  for (p = 4u; p < tot;) {
    uint16_t type, len;
    const uint8_t *v;
    if (tot - p < 4u) return 0;
    type = get16(im->img + off + p);
    len = get16(im->img + off + p + 2u);
    if (len > tot - p - 4u) return 0;
    v = im->img + off + p + 4u;
    if (magic == TLV_PROT_INFO_MAGIC) {
      if (type == TLV_TG_META && len == META_BYTES) im->meta = v;
      if (type == TLV_SEC_CNT && len == 4u) im->sec_cnt = get32(v);
      if (type == TLV_TG_SELFTEST) {
        im->selftest = v;
        im->selftest_len = len;
      }
    } else {
      if (type == TLV_SHA512 && len == 64u) im->hash = v;
      if (type == TLV_ED25519 && len == 64u) im->sig = v;
    }
    p += 4u + len;
  }
  return tot;
}

static uint8_t image_parse(const uint8_t *img, uint32_t avail, tg_image *im) {
  uint32_t prot, off, tot;
  memset(im, 0, sizeof *im);
  im->img = img;
  if (avail < IMG_HEADER_BYTES) return TG_UPD_TRUNCATED;
  if (get32(img) != IMG_MAGIC) return TG_UPD_BAD_MAGIC;
  im->hdr_size = get16(img + 8);
  prot = get16(img + 10);
  im->body_len = get32(img + 12);
  memcpy(im->ver, img + 20, 8);
  if (im->hdr_size < IMG_HEADER_BYTES || im->hdr_size % 16u) return TG_UPD_FORMAT;
  if (im->hdr_size > avail || im->body_len > avail - im->hdr_size) return TG_UPD_TRUNCATED;
  off = im->hdr_size + im->body_len;
  if (prot != 0u) {
    if (walk_tlvs(im, off, avail, TLV_PROT_INFO_MAGIC) != prot) return TG_UPD_TRUNCATED;
  }
  im->signed_len = off + prot;
  tot = walk_tlvs(im, im->signed_len, avail, TLV_INFO_MAGIC);
  if (tot == 0u) return TG_UPD_TRUNCATED;
  im->total = im->signed_len + tot;
  if (!im->meta || get16(im->meta) != META_FORMAT) return TG_UPD_FORMAT;
  return TG_UPD_OK;
}

static int version_cmp(const uint8_t *a, const uint8_t *b) {
  /* major, minor, revision, build: compared as numbers, in that order */
  uint32_t x[4], y[4];
  int i;
  x[0] = a[0];
  x[1] = a[1];
  x[2] = get16(a + 2);
  x[3] = get32(a + 4);
  y[0] = b[0];
  y[1] = b[1];
  y[2] = get16(b + 2);
  y[3] = get32(b + 4);
  for (i = 0; i < 4; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

/* What the firmware was built for: meta = format u16, runtime u8, reserved
 * u8, arena u32, fingerprint[32], model SHA-256[32]. */
static uint8_t meta_fits(const uint8_t *meta) {
  if (get16(meta) != META_FORMAT) return TG_UPD_FORMAT;
  if (meta[2] != TG_UPDATE_RUNTIME || memcmp(meta + 8, tg_update_fingerprint, 32) != 0)
    return TG_UPD_WRONG_ARCH;
  if (get32(meta + 4) > TG_UPDATE_ARENA_BYTES) return TG_UPD_TOO_LARGE;
  return TG_UPD_OK;
}

static uint8_t hash_ok(const tg_image *im) {
  crypto_sha512_ctx ctx;
  uint8_t digest[64];
  uint32_t off;
  if (!im->hash) return TG_UPD_NO_HASH;
  crypto_sha512_init(&ctx);
  /* in pieces, so that the campaign can cut power during verification */
  for (off = 0; off < im->signed_len; off += 4096u) {
    uint32_t n = im->signed_len - off < 4096u ? im->signed_len - off : 4096u;
    crypto_sha512_update(&ctx, im->img + off, n);
    tg_fault_point();
  }
  crypto_sha512_final(&ctx, digest);
  return memcmp(digest, im->hash, 64) == 0 ? TG_UPD_OK : TG_UPD_HASH;
}

/* Structure, hash, signature and fit of the image in slot k. */
static uint8_t slot_verify(uint8_t k, tg_image *im) {
  uint8_t r = image_parse(slot_image(k), slot_avail(k), im);
  if (r != TG_UPD_OK) return r;
  r = hash_ok(im);
  if (r != TG_UPD_OK) return r;
  if (!im->sig) return TG_UPD_UNSIGNED;
  /* MCUboot's convention: the signature covers the image digest */
  if (crypto_ed25519_check(im->sig, tg_update_pubkey, im->hash, 64) != 0) return TG_UPD_SIGNATURE;
  tg_fault_point();
  return meta_fits(im->meta);
}

static void bind(uint8_t k, const tg_image *im) {
  tg_model_bind(im->img + im->hdr_size);
  bound_slot = k;
  bound_meta = im->meta;
}

/* Run the image's self-test vectors (TLV: n_in u8, n_out u8, 2 reserved,
 * then per tensor a u32 length and its bytes) on the model bound to it. */
static uint8_t selftest(uint8_t k, const tg_image *im) {
  const tg_model_info_t *m = &tg_model_info;
  const uint8_t *p = im->selftest, *end;
  uint8_t result = TG_UPD_OK;
  unsigned i;
  if (!p || im->selftest_len < 4u) return TG_UPD_SELFTEST;
  end = p + im->selftest_len;
  if (p[0] != m->num_inputs || p[1] != m->num_outputs) return TG_UPD_WRONG_ARCH;
  bind(k, im);
  if (tg_model_init() != 0) result = TG_UPD_SELFTEST;
  p += 4;
  for (i = 0; result == TG_UPD_OK && i < m->num_inputs; i++) {
    uint32_t n;
    uint8_t *dst = tg_model_input((int)i);
    if (end - p < 4) {
      result = TG_UPD_TRUNCATED;
      break;
    }
    n = get32(p);
    p += 4;
    if (n != m->inputs[i].bytes || (uint32_t)(end - p) < n || !dst) {
      result = TG_UPD_WRONG_ARCH;
      break;
    }
    memcpy(dst, p, n);
    p += n;
  }
  tg_fault_point();
  if (result == TG_UPD_OK && tg_model_run() != 0) result = TG_UPD_SELFTEST;
  for (i = 0; result == TG_UPD_OK && i < m->num_outputs; i++) {
    uint32_t n;
    const uint8_t *out = tg_model_output((int)i);
    if (end - p < 4) {
      result = TG_UPD_TRUNCATED;
      break;
    }
    n = get32(p);
    p += 4;
    if (n != m->outputs[i].bytes || (uint32_t)(end - p) < n || !out) {
      result = TG_UPD_WRONG_ARCH;
      break;
    }
    if (memcmp(out, p, n) != 0) result = TG_UPD_SELFTEST;
    p += n;
  }
  return result;
}

/* ---- state record ------------------------------------------------------- */

static int state_read_one(int s, tg_state *out) {
  const uint8_t *r = tg_flash_base() + (uint32_t)s * sector();
  if (get32(r) != STATE_MAGIC) return 0;
  if (get32(r + 16) != tg_proto_crc32(0, r, 16)) return 0;
  out->seq = get32(r + 4);
  out->active = r[8];
  out->valid = r[9];
  out->floor = get32(r + 12);
  out->sector = s;
  return out->active <= TG_UPDATE_SLOTS;
}

static void state_load(void) {
  tg_state a, b;
  int ha = state_read_one(0, &a), hb = state_read_one(1, &b);
  if (ha && (!hb || a.seq >= b.seq)) {
    state = a;
  } else if (hb) {
    state = b;
  } else {
    memset(&state, 0, sizeof state);
    state.sector = -1;
  }
}

/* Write next as the new record, in the sector that does not hold the
 * current one.  Returns 0 on success (the record then reads back). */
static int state_write(tg_state next) {
  uint8_t r[STATE_BYTES];
  int s = state.sector == 0 ? 1 : 0;
  next.seq = state.seq + 1u;
  put32(r, STATE_MAGIC);
  put32(r + 4, next.seq);
  r[8] = next.active;
  r[9] = next.valid;
  r[10] = 0;
  r[11] = 0;
  put32(r + 12, next.floor);
  put32(r + 16, tg_proto_crc32(0, r, 16));
  if (tg_flash_erase((uint32_t)s * sector(), sector()) != 0) return -1;
  if (tg_flash_program((uint32_t)s * sector(), r, STATE_BYTES) != 0) return -1;
  if (!state_read_one(s, &next)) return -1;
  state = next;
  return 0;
}

/* ---- boot --------------------------------------------------------------- */

static uint8_t slot_committed(uint8_t k) {
  return k == 0u || (k <= TG_UPDATE_SLOTS && (state.valid >> k) & 1u);
}

void tg_update_boot(void) {
  tg_image im, best_im;
  uint64_t t0 = tg_hal_counter();
  uint8_t k, r, best = 0xFFu;
  state_load();
  r = slot_committed(state.active) ? slot_verify(state.active, &im) : TG_UPD_EMPTY;
  if (r == TG_UPD_OK) {
    best = state.active;
    best_im = im;
  } else {
    boot_failed_slot = state.active;
    boot_reason = r;
    /* the newest other committed slot that verifies, the built-in one last */
    for (k = TG_UPDATE_SLOTS; k >= 1u; k--) {
      if (k == state.active || !slot_committed(k)) continue;
      if (slot_verify(k, &im) != TG_UPD_OK) continue;
      if (best == 0xFFu || version_cmp(im.ver, best_im.ver) > 0) {
        best = k;
        best_im = im;
      }
    }
    if (best == 0xFFu && slot_verify(0, &im) == TG_UPD_OK) {
      best = 0;
      best_im = im;
    }
  }
  if (best != 0xFFu) bind(best, &best_im);
  boot_ticks = (uint32_t)(tg_hal_counter() - t0);
}

/* SHA-512 of the image that runs (what a delta must have been made from). */
static const uint8_t *tg_update_running_image_id(void) {
  static const uint8_t none[64] = {0};
  tg_image im;
  if (image_parse(slot_image(bound_slot), slot_avail(bound_slot), &im) != TG_UPD_OK || !im.hash)
    return none;
  return im.hash;
}

const uint8_t *tg_update_model_signature(void) {
  static const uint8_t none[32] = {0};
  return bound_meta ? bound_meta + 40 : none;
}

/* ---- commands ----------------------------------------------------------- */

void tg_update_rx(uint32_t k, uint8_t b) {
  if (k < sizeof rx_buf) rx_buf[k] = b;
}

static const uint8_t *rx_record(uint8_t k) { return tg_flash_base() + slot_base(k); }

static int rx_record_ok(uint8_t k) {
  const uint8_t *r = rx_record(k);
  return get32(r) == RX_MAGIC && get32(r + RX_CRC_AT) == tg_proto_crc32(0, r, RX_CRC_AT) &&
         get32(r + 4) <= slot_capacity() && get32(r + 8) == TG_UPDATE_CHUNK_BYTES &&
         get32(r + 76) <= slot_capacity();
}

/* Bytes the transfer into slot k carries: its delta, or the image. */
static uint32_t rx_xfer(uint8_t k) {
  const uint8_t *r = rx_record(k);
  return get32(r + 76) ? get32(r + 76) : get32(r + 4);
}

/* Bytes of the transfer into slot k known good: up to the first chunk
 * without its mark. */
static uint32_t rx_done(uint8_t k) {
  const uint8_t *r = rx_record(k);
  uint32_t len = rx_xfer(k), n = chunks_of(len), i;
  for (i = 0; i < n; i++) {
    if (r[RX_BITMAP_OFFSET + i] != 0x00u) return i * TG_UPDATE_CHUNK_BYTES;
  }
  return len;
}

static void slot_record(uint8_t k, uint8_t *d) {
  tg_image im;
  uint8_t st = SLOT_EMPTY, reason = 0;
  memset(d, 0, SLOT_RECORD_BYTES);
  if (slot_committed(k)) {
    reason = image_parse(slot_image(k), slot_avail(k), &im);
    if (reason == TG_UPD_OK) reason = hash_ok(&im);
    st = reason == TG_UPD_OK ? SLOT_VALID : SLOT_INVALID;
    if (k == boot_failed_slot && boot_reason != TG_UPD_OK) {
      st = SLOT_INVALID;
      reason = boot_reason;
    }
    if (im.meta) {
      memcpy(d + 4, im.ver, 8);
      put32(d + 12, im.sec_cnt);
      put32(d + 16, im.total);
      memcpy(d + 24, im.meta + 40, 32);
    }
  } else if (rx_record_ok(k)) {
    st = SLOT_RECEIVING;
    put32(d + 16, rx_xfer(k));
    put32(d + 20, rx_done(k));
  }
  d[0] = st;
  d[1] = k == 0u ? 0u : 1u;
  d[2] = reason;
}

static int32_t cmd_slots(uint8_t *out) {
  uint8_t k;
  out[0] = TG_UPDATE_SLOTS + 1u;
  out[1] = bound_slot;
  out[2] = boot_failed_slot;
  out[3] = boot_reason;
  put32(out + 4, state.floor);
  put32(out + 8, slot_capacity());
  put32(out + 12, TG_UPDATE_CHUNK_BYTES);
  put32(out + 16, boot_ticks);
  for (k = 0; k <= TG_UPDATE_SLOTS; k++)
    slot_record(k, out + SLOTS_HEADER_BYTES + (uint32_t)k * SLOT_RECORD_BYTES);
  return (int32_t)(SLOTS_HEADER_BYTES + (TG_UPDATE_SLOTS + 1u) * SLOT_RECORD_BYTES);
}

/* The running image (for version and identity comparisons). */
static uint8_t active_image(tg_image *im) {
  return image_parse(slot_image(bound_slot), slot_avail(bound_slot), im);
}

static int32_t cmd_begin(uint32_t len, uint8_t *out) {
  const uint8_t *id = rx_buf + 8, *hdr = rx_buf + 72, *meta = rx_buf + 108;
  uint32_t image_len = get32(rx_buf), chunk = get32(rx_buf + 4), sec = get32(rx_buf + 104);
  uint32_t delta = len == BEGIN_DELTA_BYTES ? get32(rx_buf + 180) : 0u;
  const uint8_t *base_id = rx_buf + 184;
  tg_image cur;
  uint8_t k, target = 0, r, resume = 0;
  if ((len != BEGIN_BYTES && len != BEGIN_DELTA_BYTES) || chunk != TG_UPDATE_CHUNK_BYTES)
    return -(int32_t)TG_UPD_BAD_REQUEST;
  if (len == BEGIN_DELTA_BYTES && (delta == 0u || delta > slot_capacity()))
    return -(int32_t)TG_UPD_TOO_LARGE;
  if (get32(hdr) != IMG_MAGIC) return -(int32_t)TG_UPD_BAD_MAGIC;
  if (image_len > slot_capacity()) return -(int32_t)TG_UPD_TOO_LARGE;
  r = meta_fits(meta);
  if (r != TG_UPD_OK) return -(int32_t)r;
  if (active_image(&cur) == TG_UPD_OK) {
    if (cur.hash && memcmp(cur.hash, id, 64) == 0) return -(int32_t)TG_UPD_SAME;
    if (version_cmp(hdr + 20, cur.ver) <= 0) return -(int32_t)TG_UPD_ROLLBACK;
  }
  if (delta && (!cur.hash || memcmp(cur.hash, base_id, 64) != 0)) return -(int32_t)TG_UPD_BASE;
  if (sec < state.floor) return -(int32_t)TG_UPD_SECURITY_COUNTER;
  /* a transfer of this image to resume, else an empty slot, else the oldest */
  for (k = 1; k <= TG_UPDATE_SLOTS && !target; k++) {
    if (k == bound_slot || k == state.active || slot_committed(k)) continue;
    if (rx_record_ok(k) && memcmp(rx_record(k) + 12, id, 64) == 0 &&
        get32(rx_record(k) + 4) == image_len && get32(rx_record(k) + 76) == delta &&
        (!delta || memcmp(rx_record(k) + 80, base_id, 64) == 0)) {
      target = k;
      resume = 1;
    }
  }
  for (k = 1; k <= TG_UPDATE_SLOTS && !target; k++) {
    if (k != bound_slot && k != state.active && !slot_committed(k)) target = k;
  }
  if (!target) {
    tg_image a, b;
    for (k = 1; k <= TG_UPDATE_SLOTS; k++) {
      if (k == bound_slot || k == state.active) continue;
      if (!target || image_parse(slot_image(k), slot_avail(k), &a) != TG_UPD_OK ||
          (image_parse(slot_image(target), slot_avail(target), &b) == TG_UPD_OK &&
           version_cmp(a.ver, b.ver) < 0))
        target = k;
    }
  }
  if (!target) return -(int32_t)TG_UPD_NO_SLOT;
  if (!resume) {
    uint8_t rec[RX_RECORD_BYTES];
    if (slot_committed(target)) {
      tg_state next = state;
      next.valid = (uint8_t)(next.valid & ~(1u << target));
      if (state_write(next) != 0) return -(int32_t)TG_UPD_FLASH;
    }
    /* the image area is erased again before a delta is applied */
    if (tg_flash_erase(slot_base(target), sector() + round_up(image_len)) != 0)
      return -(int32_t)TG_UPD_FLASH;
    if (delta && tg_flash_erase(slot_base(target) + delta_offset(), round_up(delta)) != 0)
      return -(int32_t)TG_UPD_FLASH;
    memset(rec, 0, sizeof rec);
    put32(rec, RX_MAGIC);
    put32(rec + 4, image_len);
    put32(rec + 8, TG_UPDATE_CHUNK_BYTES);
    memcpy(rec + 12, id, 64);
    put32(rec + 76, delta);
    if (delta) memcpy(rec + 80, base_id, 64);
    put32(rec + RX_CRC_AT, tg_proto_crc32(0, rec, RX_CRC_AT));
    if (tg_flash_program(slot_base(target), rec, RX_RECORD_BYTES) != 0 || !rx_record_ok(target))
      return -(int32_t)TG_UPD_FLASH;
  }
  upd_on = 1;
  upd_slot = target;
  upd_len = image_len;
  upd_delta = delta;
  upd_xfer = delta ? delta : image_len;
  out[0] = target;
  out[1] = resume;
  out[2] = 0;
  out[3] = 0;
  put32(out + 4, rx_done(target));
  put32(out + 8, TG_UPDATE_CHUNK_BYTES);
  return 12;
}

static int32_t cmd_chunk(uint32_t len, uint8_t *out) {
  uint32_t off = get32(rx_buf), crc = get32(rx_buf + 4), n, idx, base, at;
  const uint8_t *data = rx_buf + 8;
  const uint8_t *mark;
  static const uint8_t done = 0x00u;
  if (!upd_on) return -(int32_t)TG_UPD_NOT_STARTED;
  if (len < 8u || len - 8u > TG_UPDATE_CHUNK_BYTES) return -(int32_t)TG_UPD_BAD_REQUEST;
  n = len - 8u;
  if (off % TG_UPDATE_CHUNK_BYTES || off >= upd_xfer) return -(int32_t)TG_UPD_CHUNK;
  if (n != (upd_xfer - off < TG_UPDATE_CHUNK_BYTES ? upd_xfer - off : TG_UPDATE_CHUNK_BYTES))
    return -(int32_t)TG_UPD_CHUNK;
  if (tg_proto_crc32(0, data, n) != crc) return -(int32_t)TG_UPD_BAD_REQUEST;
  idx = off / TG_UPDATE_CHUNK_BYTES;
  base = slot_base(upd_slot);
  at = base + (upd_delta ? delta_offset() : sector()) + off;
  mark = rx_record(upd_slot) + RX_BITMAP_OFFSET + idx;
  if (*mark != 0x00u) {
    /* programming the same bytes again is harmless (bits only clear), and
     * completes a page a power loss tore */
    if (tg_flash_program(at, data, n) != 0) return -(int32_t)TG_UPD_FLASH;
    if (tg_proto_crc32(0, tg_flash_base() + at, n) != crc) return -(int32_t)TG_UPD_FLASH;
    if (tg_flash_program(base + RX_BITMAP_OFFSET + idx, &done, 1) != 0)
      return -(int32_t)TG_UPD_FLASH;
  } else if (tg_proto_crc32(0, tg_flash_base() + at, n) != crc) {
    return -(int32_t)TG_UPD_FLASH;
  }
  put32(out, rx_done(upd_slot));
  return 4;
}

/* Verify, self-test and commit slot k; rebinds to whichever model runs
 * after.  t receives the counter ticks of verification and self-test. */
static int32_t commit(uint8_t k, int rollback_check, uint32_t *t) {
  tg_image im, cur;
  uint64_t t0 = tg_hal_counter(), t1, t2;
  uint8_t r = slot_verify(k, &im), old = bound_slot;
  tg_state next;
  t1 = tg_hal_counter();
  if (r != TG_UPD_OK) return -(int32_t)r;
  if (rollback_check && active_image(&cur) == TG_UPD_OK && version_cmp(im.ver, cur.ver) <= 0)
    return -(int32_t)TG_UPD_ROLLBACK;
  if (im.sec_cnt < state.floor) return -(int32_t)TG_UPD_SECURITY_COUNTER;
  r = selftest(k, &im);
  t2 = tg_hal_counter();
  t[0] = (uint32_t)(t1 - t0);
  t[1] = (uint32_t)(t2 - t1);
  if (r != TG_UPD_OK) {
    /* back to the model that was running: it passed verification at boot */
    if (image_parse(slot_image(old), slot_avail(old), &cur) == TG_UPD_OK) bind(old, &cur);
    return -(int32_t)r;
  }
  next = state;
  next.active = k;
  if (k != 0u) next.valid = (uint8_t)(next.valid | (1u << k));
  if (im.sec_cnt > next.floor) next.floor = im.sec_cnt;
  tg_fault_point();
  if (state_write(next) != 0) {
    if (image_parse(slot_image(old), slot_avail(old), &cur) == TG_UPD_OK) bind(old, &cur);
    return -(int32_t)TG_UPD_FLASH;
  }
  tg_fault_point();
  bind(k, &im);
  boot_failed_slot = 0xFFu;
  boot_reason = 0;
  return 0;
}

/* ---- deltas: HDiffPatch streams over the flash ---------------------------- */

static hpatch_BOOL mem_read(const hpatch_TStreamInput *st, hpatch_StreamPos_t pos,
                            unsigned char *out, unsigned char *out_end) {
  if (pos > st->streamSize || (hpatch_StreamPos_t)(out_end - out) > st->streamSize - pos)
    return hpatch_FALSE;
  memcpy(out, (const uint8_t *)st->streamImport + pos, (size_t)(out_end - out));
  return hpatch_TRUE;
}

static hpatch_BOOL out_write(const hpatch_TStreamOutput *st, hpatch_StreamPos_t pos,
                             const unsigned char *data, const unsigned char *data_end) {
  uint32_t at = *(const uint32_t *)st->streamImport;
  if (pos > st->streamSize || (hpatch_StreamPos_t)(data_end - data) > st->streamSize - pos)
    return hpatch_FALSE;
  return tg_flash_program(at + (uint32_t)pos, data, (uint32_t)(data_end - data)) == 0;
}

static hpatch_BOOL out_read(const hpatch_TStreamOutput *st, hpatch_StreamPos_t pos,
                            unsigned char *out, unsigned char *out_end) {
  uint32_t at = *(const uint32_t *)st->streamImport;
  if (pos > st->streamSize || (hpatch_StreamPos_t)(out_end - out) > st->streamSize - pos)
    return hpatch_FALSE;
  memcpy(out, tg_flash_base() + at + (uint32_t)pos, (size_t)(out_end - out));
  return hpatch_TRUE;
}

/* Rebuild the image in slot k from the running image and the received
 * delta (again from the start after a power cut: the area is erased). */
static uint8_t apply_delta(uint8_t k) {
  static unsigned char cache[HPATCH_CACHE_BYTES];
  static uint32_t image_at;
  tg_image old;
  hpatch_TStreamInput old_in, diff_in;
  hpatch_TStreamOutput out;
  if (memcmp(rx_record(k) + 80, tg_update_running_image_id(), 64) != 0) return TG_UPD_BASE;
  if (image_parse(slot_image(bound_slot), slot_avail(bound_slot), &old) != TG_UPD_OK)
    return TG_UPD_BASE;
  image_at = slot_base(k) + sector();
  if (tg_flash_erase(image_at, round_up(upd_len)) != 0) return TG_UPD_FLASH;
  memset(&old_in, 0, sizeof old_in);
  memset(&diff_in, 0, sizeof diff_in);
  memset(&out, 0, sizeof out);
  old_in.streamImport = (void *)(uintptr_t)old.img;
  old_in.streamSize = old.total;
  old_in.read = mem_read;
  diff_in.streamImport = (void *)(uintptr_t)(tg_flash_base() + slot_base(k) + delta_offset());
  diff_in.streamSize = upd_delta;
  diff_in.read = mem_read;
  out.streamImport = &image_at;
  out.streamSize = upd_len;
  out.write = out_write;
  out.read_writed = out_read;
  if (!patch_decompress_with_cache(&out, &old_in, &diff_in, 0, cache, cache + sizeof cache))
    return TG_UPD_DELTA;
  tg_fault_point();
  return TG_UPD_OK;
}

static int32_t cmd_finish(uint8_t *out) {
  uint32_t t[2] = {0, 0};
  int32_t r;
  if (!upd_on) return -(int32_t)TG_UPD_NOT_STARTED;
  if (rx_done(upd_slot) != upd_xfer) return -(int32_t)TG_UPD_INCOMPLETE;
  if (upd_delta) {
    uint8_t d = apply_delta(upd_slot);
    if (d != TG_UPD_OK) {
      upd_on = 0;
      if (d != TG_UPD_FLASH) {
        static const uint8_t dead[4] = {0, 0, 0, 0};
        (void)tg_flash_program(slot_base(upd_slot), dead, sizeof dead);
      }
      return -(int32_t)d;
    }
  }
  r = commit(upd_slot, 1, t);
  upd_on = 0;
  if (r != 0) {
    /* what was received is no use: the next UPDATE_BEGIN starts over
     * instead of resuming into the same refusal (clearing bits needs no
     * erase) */
    static const uint8_t dead[4] = {0, 0, 0, 0};
    (void)tg_flash_program(slot_base(upd_slot), dead, sizeof dead);
    return r;
  }
  out[0] = upd_slot;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  put32(out + 4, t[0]);
  put32(out + 8, t[1]);
  return 12;
}

static int32_t cmd_activate(uint32_t len, uint8_t *out) {
  uint32_t t[2] = {0, 0};
  uint8_t k = rx_buf[0];
  int32_t r;
  if (len != 4u) return -(int32_t)TG_UPD_BAD_REQUEST;
  if (k > TG_UPDATE_SLOTS) return -(int32_t)TG_UPD_NO_SLOT;
  if (!slot_committed(k)) return -(int32_t)TG_UPD_EMPTY;
  if (k == bound_slot && k == state.active) return -(int32_t)TG_UPD_SAME;
  if (upd_on && upd_slot == k) upd_on = 0;
  r = commit(k, 0, t);
  if (r != 0) return r;
  out[0] = k;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  put32(out + 4, t[0]);
  put32(out + 8, t[1]);
  return 12;
}

int32_t tg_update_handle(uint8_t type, uint32_t len, uint8_t *out, int *model_changed) {
  int32_t r;
  *model_changed = 0;
  if (len > sizeof rx_buf) return -(int32_t)TG_UPD_BAD_REQUEST;
  switch (type) {
    case TG_CMD_SLOTS:
      return len == 0u ? cmd_slots(out) : -(int32_t)TG_UPD_BAD_REQUEST;
    case TG_CMD_UPDATE_BEGIN:
      return cmd_begin(len, out);
    case TG_CMD_UPDATE_CHUNK:
      return cmd_chunk(len, out);
    case TG_CMD_UPDATE_FINISH:
      if (len != 0u) return -(int32_t)TG_UPD_BAD_REQUEST;
      *model_changed = 1; /* the self-test ran the model, whatever the outcome */
      r = cmd_finish(out);
      return r;
    case TG_CMD_ACTIVATE:
      *model_changed = 1;
      return cmd_activate(len, out);
    case TG_CMD_FAULT_ARM:
      if (len != 4u) return -(int32_t)TG_UPD_BAD_REQUEST;
      put32(out, tg_fault_arm(get32(rx_buf)));
      return 4;
    default:
      return -(int32_t)TG_UPD_BAD_REQUEST;
  }
}

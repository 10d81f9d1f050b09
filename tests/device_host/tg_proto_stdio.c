/* Drives the protocol's step API from a byte stream (tests only; the shape
 * of a fuzzing harness): start (BOOT frame), feed all of stdin in pieces of
 * argv[1] bytes (default 1), then a receive timeout; every reply byte goes
 * to stdout.  Linked with the fake model and tg_hal_host.c, whose transport
 * is never opened here. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tg_protocol.h"

static void write_out(void *user, const uint8_t *data, size_t len) {
  (void)user;
  if (fwrite(data, 1, len, stdout) != len) exit(3);
}

int main(int argc, char **argv) {
  static tg_proto_t proto;
  static uint8_t buf[1 << 16];
  size_t piece = argc > 1 ? (size_t)atol(argv[1]) : 1u, have = 0, i;
  ssize_t n;
  if (piece == 0) piece = 1;
  tg_proto_init(&proto, write_out, NULL);
  tg_proto_start(&proto);
  for (;;) {
    n = read(0, buf + have, sizeof buf - have);
    if (n < 0) return 2;
    have += (size_t)n;
    if (n == 0 || have == sizeof buf) {
      for (i = 0; i < have; i += piece)
        tg_proto_feed(&proto, buf + i, have - i < piece ? have - i : piece);
      have = 0;
    }
    if (n == 0) break;
  }
  tg_proto_rx_timeout(&proto);
  fflush(stdout);
  return 0;
}

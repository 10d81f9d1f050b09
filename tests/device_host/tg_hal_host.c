/* tg_hal.h for a host build of the device, used by tests/test_protocol.py.
 *
 * Transport, chosen by environment variables:
 *   TG_HOST_TRANSPORT=listen (default): listen on 127.0.0.1, an ephemeral
 *     port unless TG_HOST_PORT is set; print "TG_HOST_PORT <n>" on stdout;
 *     serve the first connection (pyserial: socket://127.0.0.1:<n>).
 *   TG_HOST_TRANSPORT=stdio: the protocol runs over stdin/stdout.
 *   TG_HOST_FD=<fd>: use this already connected descriptor (set by
 *     tg_host_reboot across the exec).
 * The process exits with status 0 when the other end closes the link.
 */
#define _POSIX_C_SOURCE 200809L

#include "tg_hal.h"
#include "tg_hal_host.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int rx_fd = -1, tx_fd = -1;
static uint8_t rx_buf[4096];
static size_t rx_len, rx_pos;
static uint64_t counter;
static struct timespec t0;

static void die(const char *what) {
  perror(what);
  exit(2);
}

static int listen_and_accept(void) {
  struct sockaddr_in addr;
  socklen_t alen = sizeof addr;
  const char *port_env = getenv("TG_HOST_PORT");
  int one = 1, fd, conn;
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons((uint16_t)(port_env ? atoi(port_env) : 0));
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(fd, 1) < 0) die("listen");
  if (getsockname(fd, (struct sockaddr *)&addr, &alen) < 0) die("getsockname");
  printf("TG_HOST_PORT %u\n", (unsigned)ntohs(addr.sin_port));
  fflush(stdout);
  do {
    conn = accept(fd, NULL, NULL);
  } while (conn < 0 && errno == EINTR);
  if (conn < 0) die("accept");
  close(fd);
  setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return conn;
}

void tg_hal_init(void) {
  const char *fd_env = getenv("TG_HOST_FD");
  const char *transport = getenv("TG_HOST_TRANSPORT");
  signal(SIGPIPE, SIG_IGN);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (fd_env) {
    rx_fd = tx_fd = atoi(fd_env);
  } else if (transport && strcmp(transport, "stdio") == 0) {
    rx_fd = 0;
    tx_fd = 1;
  } else {
    rx_fd = tx_fd = listen_and_accept();
  }
}

void tg_hal_uart_write(const uint8_t *data, size_t len) {
  while (len) {
    ssize_t n = write(tx_fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) exit(0); /* the host went away */
    data += n;
    len -= (size_t)n;
  }
}

int tg_hal_uart_read(uint32_t timeout_ms) {
  if (rx_pos == rx_len) {
    struct pollfd pfd;
    ssize_t n;
    int r;
    pfd.fd = rx_fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    r = poll(&pfd, 1, (int)timeout_ms);
    if (r < 0 && errno == EINTR) return -1;
    if (r < 0) die("poll");
    if (r == 0) return -1;
    n = read(rx_fd, rx_buf, sizeof rx_buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return -1;
    if (n <= 0) exit(0); /* end of the link */
    rx_len = (size_t)n;
    rx_pos = 0;
  }
  return rx_buf[rx_pos++];
}

uint32_t tg_hal_millis(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint32_t)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
}

uint64_t tg_hal_counter(void) { return counter; }

uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_INSTRUCTIONS; }

void tg_host_counter_advance(uint64_t n) { counter += n; }

void tg_host_reboot(void) {
  char fd_text[16];
  char *argv[2];
  snprintf(fd_text, sizeof fd_text, "%d", rx_fd);
  if (rx_fd != tx_fd) {
    /* stdio: descriptors 0 and 1 survive the exec as they are */
    unsetenv("TG_HOST_FD");
  } else {
    setenv("TG_HOST_FD", fd_text, 1);
  }
  argv[0] = (char *)"tg_device_host";
  argv[1] = NULL;
  execv("/proc/self/exe", argv);
  die("execv");
}

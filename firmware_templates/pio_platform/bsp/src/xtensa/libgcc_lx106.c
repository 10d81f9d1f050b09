/* Integer helpers that Debian's libgcc for xtensa-lx106-elf lacks (the
 * LX106 has no divide instruction, and that libgcc ships neither __divsi3,
 * __udivsi3, __umodsi3 nor their 64-bit forms, nor the 64-bit multiply
 * __muldi3).  Plain restoring shift-subtract division, C semantics
 * (truncation toward zero).  Weak, so a complete libgcc would win.
 *
 * That libgcc lacks the soft-float routines too (__addsf3, __mulsf3,
 * __adddf3, __muldf3, __divdf3, ...): floating point does not link on
 * qemu-esp8266.  The aot runtime is integer-only; see
 * docs/espressif-cores.md. */
#include <stdint.h>

int32_t __divsi3(int32_t a, int32_t b) __attribute__((weak));
uint32_t __udivsi3(uint32_t a, uint32_t b) __attribute__((weak));
uint32_t __umodsi3(uint32_t a, uint32_t b) __attribute__((weak));
uint64_t __udivdi3(uint64_t a, uint64_t b) __attribute__((weak));
uint64_t __umoddi3(uint64_t a, uint64_t b) __attribute__((weak));
int64_t __divdi3(int64_t a, int64_t b) __attribute__((weak));
uint64_t __muldi3(uint64_t a, uint64_t b) __attribute__((weak));

uint64_t __muldi3(uint64_t a, uint64_t b) {
  /* 32x32->64 from the core's MUL16/MULL: split in 16-bit halves. */
  const uint32_t al = (uint32_t)a, ah = (uint32_t)(a >> 32);
  const uint32_t bl = (uint32_t)b, bh = (uint32_t)(b >> 32);
  const uint32_t a0 = al & 0xFFFFu, a1 = al >> 16, b0 = bl & 0xFFFFu, b1 = bl >> 16;
  const uint32_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const uint32_t mid = (p00 >> 16) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
  const uint32_t lo = (p00 & 0xFFFFu) | (mid << 16);
  const uint32_t hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16) + al * bh + ah * bl;
  return ((uint64_t)hi << 32) | lo;
}

static uint32_t udivmod32(uint32_t n, uint32_t d, uint32_t *rem) {
  uint32_t q = 0u, r = 0u;
  if (d == 0u) { /* as the hardware dividers do not: defined, not trapping */
    *rem = n;
    return 0xFFFFFFFFu;
  }
  for (int i = 31; i >= 0; --i) {
    r = (r << 1) | ((n >> i) & 1u);
    if (r >= d) {
      r -= d;
      q |= 1u << i;
    }
  }
  *rem = r;
  return q;
}

static uint64_t udivmod64(uint64_t n, uint64_t d, uint64_t *rem) {
  uint64_t q = 0u, r = 0u;
  if (d == 0u) {
    *rem = n;
    return ~(uint64_t)0;
  }
  if ((n >> 32) == 0u && (d >> 32) == 0u) {
    uint32_t r32;
    q = udivmod32((uint32_t)n, (uint32_t)d, &r32);
    *rem = r32;
    return q;
  }
  for (int i = 63; i >= 0; --i) {
    r = (r << 1) | ((n >> i) & 1u);
    if (r >= d) {
      r -= d;
      q |= (uint64_t)1 << i;
    }
  }
  *rem = r;
  return q;
}

uint32_t __udivsi3(uint32_t a, uint32_t b) {
  uint32_t r;
  return udivmod32(a, b, &r);
}

uint32_t __umodsi3(uint32_t a, uint32_t b) {
  uint32_t r;
  (void)udivmod32(a, b, &r);
  return r;
}

int32_t __divsi3(int32_t a, int32_t b) {
  const uint32_t ua = a < 0 ? 0u - (uint32_t)a : (uint32_t)a;
  const uint32_t ub = b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
  uint32_t r;
  const uint32_t q = udivmod32(ua, ub, &r);
  return (int32_t)((a < 0) != (b < 0) ? 0u - q : q);
}

uint64_t __udivdi3(uint64_t a, uint64_t b) {
  uint64_t r;
  return udivmod64(a, b, &r);
}

uint64_t __umoddi3(uint64_t a, uint64_t b) {
  uint64_t r;
  (void)udivmod64(a, b, &r);
  return r;
}

int64_t __divdi3(int64_t a, int64_t b) {
  const uint64_t ua = a < 0 ? 0u - (uint64_t)a : (uint64_t)a;
  const uint64_t ub = b < 0 ? 0u - (uint64_t)b : (uint64_t)b;
  uint64_t r;
  const uint64_t q = udivmod64(ua, ub, &r);
  return (int64_t)((a < 0) != (b < 0) ? 0u - q : q);
}

/* Test firmware for the emulated boards (tests/test_emulated_boards.py).
 *
 * Uses only tg_hal.h (plus tg_qemu.h for the stack check).  Every received
 * byte b is answered with b + 1, except these commands, which answer with
 * one ASCII line:
 *   't'  "T <delta> <unit>\n"   tg_hal_counter() delta over a loop of
 *                                exactly 2 * LOOP_ROUNDS instructions
 *   'x' k "X <delta>\n"          the same over 2 * (k + 1) instructions,
 *                                k being the byte after the 'x'
 *   'm'  "M <millis>\n"          tg_hal_millis()
 *   'w'  "W <byte> <ms>\n"       tg_hal_uart_read(100) on an idle line
 *   'f'  "F <value>\n"           a float and a double computation (FPU on)
 *   'k'  "K <used> <size>\n"     stack high-water mark and stack size
 *   'c'  "C <value>\n"           42 from a C++ global constructed at startup
 *   'z'  executes an undefined instruction: the board support reports
 *        the fault ("*** tinygen fault: ...") and halts
 */
#include <math.h>
#include <stdint.h>

#include "tg_hal.h"
#ifdef TG_QEMU_BOARD
#include "tg_qemu.h"
#endif

#define LOOP_ROUNDS 10000u

uint32_t cxx_check_value(void); /* cxx_check.cpp */

static void put_text(const char *text)
{
    while (*text != '\0') {
        const uint8_t byte = (uint8_t)*text++;
        tg_hal_uart_write(&byte, 1);
    }
}

static void put_number(int64_t value)
{
    char digits[24];
    int n = 0;
    uint64_t magnitude = value < 0 ? (uint64_t)(-value) : (uint64_t)value;
    do {
        digits[n++] = (char)('0' + (int)(magnitude % 10u));
        magnitude /= 10u;
    } while (magnitude != 0u);
    if (value < 0) {
        digits[n++] = '-';
    }
    while (n > 0) {
        const uint8_t byte = (uint8_t)digits[--n];
        tg_hal_uart_write(&byte, 1);
    }
}

/* Exactly 2 * rounds instructions in the loop (subs + bne per round). */
static __attribute__((noinline)) void known_loop(uint32_t rounds)
{
#if defined(__riscv) || defined(__XTENSA__)
    __asm volatile("1: addi %0, %0, -1\n\tbnez %0, 1b" : "+r"(rounds));
#else
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(rounds)::"cc");
#endif
}

static volatile float g_float_seed = 2.0f;
static volatile double g_double_seed = 3.0;

int main(void)
{
    tg_hal_init();
    for (;;) {
        const int c = tg_hal_uart_read(1000);
        if (c < 0) {
            continue;
        }
        if (c == 't') {
            const uint64_t start = tg_hal_counter();
            known_loop(LOOP_ROUNDS);
            const uint64_t end = tg_hal_counter();
            put_text("T ");
            put_number((int64_t)(end - start));
            put_text(" ");
            put_number((int64_t)tg_hal_counter_unit());
            put_text("\n");
        } else if (c == 'x') {
            const int k = tg_hal_uart_read(1000);
            const uint32_t rounds = (uint32_t)(k < 0 ? 0 : k) + 1u;
            const uint64_t start = tg_hal_counter();
            known_loop(rounds);
            const uint64_t end = tg_hal_counter();
            put_text("X ");
            put_number((int64_t)(end - start));
            put_text("\n");
        } else if (c == 'm') {
            put_text("M ");
            put_number((int64_t)tg_hal_millis());
            put_text("\n");
        } else if (c == 'w') {
            const uint32_t start = tg_hal_millis();
            const int got = tg_hal_uart_read(100);
            const uint32_t waited = tg_hal_millis() - start;
            put_text("W ");
            put_number(got);
            put_text(" ");
            put_number((int64_t)waited);
            put_text("\n");
        } else if (c == 'f') {
#ifdef __XTENSA__
            /* Debian's libgcc for the LX106 has no soft-float routines. */
            put_text("F -1\n");
            continue;
#endif
            const float f = sqrtf(g_float_seed) * 1000.0f;   /* 1414.2 */
            const double d = sqrt(g_double_seed) * 1000.0;   /* 1732.05 */
            put_text("F ");
            put_number((int64_t)f + (int64_t)d);
            put_text("\n");
        } else if (c == 'k') {
#ifdef TG_QEMU_BOARD
            put_text("K ");
            put_number((int64_t)tg_qemu_stack_used());
            put_text(" ");
            put_number((int64_t)tg_qemu_stack_size());
            put_text("\n");
#else
            put_text("K -1 -1\n");
#endif
        } else if (c == 'c') {
            put_text("C ");
            put_number((int64_t)cxx_check_value());
            put_text("\n");
        } else if (c == 'z') {
            __builtin_trap();
        } else {
            const uint8_t reply = (uint8_t)(c + 1);
            tg_hal_uart_write(&reply, 1);
        }
    }
}

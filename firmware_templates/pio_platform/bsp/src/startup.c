/* Reset, vector table, fault reporting and the few C library hooks of the
 * tinygen QEMU boards.  Memory layout symbols come from tg_sections.ld.
 *
 * Interrupts stay masked (PRIMASK = 1) from reset on and no interrupt
 * handler ever runs: timing uses free-running timers (see the board files)
 * and interrupts serve only to end a WFI, so that an inference measured
 * under QEMU -icount is never perturbed by handlers.  Any exception that
 * does get taken is a fault: it is reported on the protocol UART as one
 * text line starting with "*** tinygen" and the core then sleeps forever.
 */
#include <stddef.h>
#include <stdint.h>

#include "tg_board.h"
#include "tg_qemu.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_VTOR REG32(0xE000ED08u)
#define SCB_CFSR REG32(0xE000ED28u)
#define SCB_HFSR REG32(0xE000ED2Cu)
#define SCB_MMFAR REG32(0xE000ED34u)
#define SCB_BFAR REG32(0xE000ED38u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define SYST_CSR REG32(0xE000E010u)
#define NVIC_ICER(n) REG32(0xE000E180u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))

/* Enough external interrupt slots for both machines (STM32F405: 82,
 * MPS2: 32 + 16). */
#define TG_NUM_IRQS 96

extern uint32_t __tg_data_load[];
extern uint32_t __tg_data_start[];
extern uint32_t __tg_data_end[];
extern uint32_t __tg_bss_start[];
extern uint32_t __tg_bss_end[];
extern uint8_t __tg_heap_start[];
extern uint8_t __tg_heap_end[];
extern uint32_t __tg_stack_bottom[];
extern uint32_t __tg_stack_top[];

extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void);
void tg_fault_report(const uint32_t *frame, uint32_t exc_return) __attribute__((noreturn, used));
void _exit(int status) __attribute__((noreturn));

/* Every exception defaults to the fault reporter; all names are weak so a
 * program may install its own handler. */
#define TG_WEAK_HANDLER(name) void name(void) __attribute__((weak, alias("Default_Handler")))
TG_WEAK_HANDLER(NMI_Handler);
TG_WEAK_HANDLER(HardFault_Handler);
TG_WEAK_HANDLER(MemManage_Handler);
TG_WEAK_HANDLER(BusFault_Handler);
TG_WEAK_HANDLER(UsageFault_Handler);
TG_WEAK_HANDLER(SVC_Handler);
TG_WEAK_HANDLER(DebugMon_Handler);
TG_WEAK_HANDLER(PendSV_Handler);
TG_WEAK_HANDLER(SysTick_Handler);

typedef void (*tg_vector_t)(void);

typedef struct {
  const void *initial_sp;
  tg_vector_t handlers[15 + TG_NUM_IRQS];
} tg_vector_table_t;

__attribute__((section(".isr_vector"), used)) const tg_vector_table_t tg_vector_table = {
    .initial_sp = __tg_stack_top,
    .handlers =
        {
            Reset_Handler,
            NMI_Handler,
            HardFault_Handler,
            MemManage_Handler,
            BusFault_Handler,
            UsageFault_Handler,
            0,
            0,
            0,
            0,
            SVC_Handler,
            DebugMon_Handler,
            0,
            PendSV_Handler,
            SysTick_Handler,
            [15 ... 15 + TG_NUM_IRQS - 1] = Default_Handler,
        },
};

static void tg_halt(void) __attribute__((noreturn));
static void tg_halt(void) {
  __asm volatile("cpsid i" ::: "memory");
  /* Silence every wake-up source so that QEMU idles instead of spinning. */
  SYST_CSR = 0u;
  SCB_ICSR = SCB_ICSR_PENDSTCLR;
  for (uint32_t n = 0; n < (TG_NUM_IRQS + 31u) / 32u; ++n) {
    NVIC_ICER(n) = 0xFFFFFFFFu;
    NVIC_ICPR(n) = 0xFFFFFFFFu;
  }
  for (;;) {
    __asm volatile("dsb\n\twfi" ::: "memory");
  }
}

void Reset_Handler(void) {
  __asm volatile("cpsid i" ::: "memory"); /* see the top of this file */
  /* The UART before anything else: QEMU's STM32 USART throws away bytes
   * that arrive while it is disabled, and the host may send as soon as it
   * has connected. */
  tg_board_uart_init();
  /* The FPU next: compiled code below may already use VFP registers. */
  SCB_CPACR |= 0xFu << 20;
  __asm volatile("dsb\n\tisb" ::: "memory");
  SCB_VTOR = (uint32_t)(uintptr_t)&tg_vector_table;

  const uint32_t *src = __tg_data_load;
  for (uint32_t *dst = __tg_data_start; dst < __tg_data_end; ++dst) {
    *dst = *src++;
  }
  for (uint32_t *dst = __tg_bss_start; dst < __tg_bss_end; ++dst) {
    *dst = 0u;
  }

  /* Paint the unused stack (everything below this frame, minus a margin)
   * so tg_qemu_stack_used() can find the high-water mark. */
  uint32_t *sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  for (volatile uint32_t *p = __tg_stack_bottom; p < sp - 16; ++p) {
    *p = TG_QEMU_STACK_PAINT;
  }

  __libc_init_array(); /* C++ constructors, __attribute__((constructor)) */
  _exit(main());
}

/* Entered for every unexpected exception: find the stacked frame and hand
 * it to the reporter. */
__attribute__((naked)) void Default_Handler(void) {
  __asm volatile(
      "tst   lr, #4           \n\t"
      "ite   eq               \n\t"
      "mrseq r0, msp          \n\t"
      "mrsne r0, psp          \n\t"
      "mov   r1, lr           \n\t"
      "b     tg_fault_report  \n\t");
}

/* tg_put_text and tg_put_hex: tg_fault_text.c (the same on every core). */

void tg_fault_report(const uint32_t *frame, uint32_t exc_return) {
  uint32_t ipsr;
  __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
  tg_board_uart_init();
  tg_put_text("\r\n*** tinygen fault:");
  tg_put_hex(" exception=", ipsr & 0x1FFu);
  tg_put_hex(" pc=", frame[6]);
  tg_put_hex(" lr=", frame[5]);
  tg_put_hex(" exc_return=", exc_return);
  tg_put_hex(" cfsr=", SCB_CFSR);
  tg_put_hex(" hfsr=", SCB_HFSR);
  tg_put_hex(" mmfar=", SCB_MMFAR);
  tg_put_hex(" bfar=", SCB_BFAR);
  tg_put_text(" ***\r\n");
  tg_halt();
}

void _exit(int status) {
  tg_board_uart_init();
  tg_put_hex("\r\n*** tinygen exit: status=", (uint32_t)status);
  tg_put_text(" ***\r\n");
  tg_halt();
}

/* _sbrk and the stack/heap figures: tg_memory.c (the same on every core). */

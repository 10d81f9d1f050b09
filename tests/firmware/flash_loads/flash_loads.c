/* A QEMU TCG plugin that makes the emulated ESP8266 read its flash the way
 * the chip does: every guest load whose address lies in the flash window
 * [lo, hi) must be an aligned 32-bit load.  The first one that is not is
 * reported on stderr with its pc, address and size and QEMU exits with
 * status 3 (the real chip takes a LoadStoreError exception); at exit the
 * plugin prints how
 * many loads it saw in the window and in [wlo, whi) (the weights).
 *
 *   qemu-system-xtensa ... -plugin ./libflash_loads.so,lo=0x40200000,hi=0x40300000
 *
 * Only the few declarations of QEMU's plugin API (docs/devel/tcg-plugins,
 * API version 1, QEMU 7.2) that this file uses are declared here: Debian
 * ships no qemu-plugin.h. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t lo = 0x40200000u, hi = 0x40300000u, wlo, whi;
static uint64_t loads, weight_loads;

static void on_load(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *pc) {
  unsigned int bytes = 1u << qemu_plugin_mem_size_shift(info);
  (void)vcpu;
  if (qemu_plugin_mem_is_store(info) || vaddr < lo || vaddr >= hi) return;
  if (bytes != 4 || (vaddr & 3u)) {
    char line[160];
    snprintf(line, sizeof line,
             "flash_loads: VIOLATION pc=0x%08llx addr=0x%08llx size=%u: the ESP8266 reads its "
             "flash only with aligned 32-bit loads\n",
             (unsigned long long)(uintptr_t)pc, (unsigned long long)vaddr, bytes);
    fputs(line, stderr);
    fflush(stderr);
    _Exit(3);
  }
  ++loads;
  if (vaddr >= wlo && vaddr < whi) ++weight_loads;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  size_t i, n = qemu_plugin_tb_n_insns(tb);
  (void)id;
  /* every access, stores filtered in on_load: registered for reads alone,
   * QEMU 7.2 here called back on stores only */
  for (i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    qemu_plugin_register_vcpu_mem_cb(insn, on_load, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
                                     (void *)(uintptr_t)qemu_plugin_insn_vaddr(insn));
  }
}

static void on_exit_(qemu_plugin_id_t id, void *unused) {
  char line[128];
  (void)id;
  (void)unused;
  snprintf(line, sizeof line, "flash_loads: %llu aligned 32-bit loads from flash, %llu of them weights\n",
           (unsigned long long)loads, (unsigned long long)weight_loads);
  /* at exit QEMU's log may be closed already */
  fputs(line, stderr);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const struct qemu_info_t *info,
                                                               int argc, char **argv) {
  int i;
  (void)info;
  for (i = 0; i < argc; ++i) {
    const char *eq = strchr(argv[i], '=');
    uint64_t v;
    if (eq == NULL) return -1;
    v = strtoull(eq + 1, NULL, 0);
    if (!strncmp(argv[i], "lo=", 3)) lo = v;
    else if (!strncmp(argv[i], "hi=", 3)) hi = v;
    else if (!strncmp(argv[i], "wlo=", 4)) wlo = v;
    else if (!strncmp(argv[i], "whi=", 4)) whi = v;
    else return -1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
  return 0;
}

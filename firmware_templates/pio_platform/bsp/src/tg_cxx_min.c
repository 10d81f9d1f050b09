/* The few C++ runtime entry points that compiled C++ code calls even with
 * -fno-exceptions -fno-rtti, for the cores where Debian has no C++ standard
 * library (RISC-V and Xtensa bare metal: no libstdc++, so g++ compiles but
 * nothing provides operator new/delete).  Weak, so a real library wins.
 * Mangled names for a 32-bit size_t (unsigned int). */
#include <stdlib.h>

void *_Znwj(unsigned int size) __attribute__((weak));           /* operator new(size_t) */
void *_Znaj(unsigned int size) __attribute__((weak));           /* operator new[](size_t) */
void _ZdlPv(void *p) __attribute__((weak));                     /* operator delete(void*) */
void _ZdaPv(void *p) __attribute__((weak));                     /* operator delete[](void*) */
void _ZdlPvj(void *p, unsigned int size) __attribute__((weak)); /* sized delete */
void _ZdaPvj(void *p, unsigned int size) __attribute__((weak));
void __cxa_pure_virtual(void) __attribute__((weak, noreturn));

void *_Znwj(unsigned int size) {
  void *p = malloc(size ? size : 1u);
  if (p == NULL) {
    abort();
  }
  return p;
}

void *_Znaj(unsigned int size) { return _Znwj(size); }

void _ZdlPv(void *p) { free(p); }

void _ZdaPv(void *p) { free(p); }

void _ZdlPvj(void *p, unsigned int size) {
  (void)size;
  free(p);
}

void _ZdaPvj(void *p, unsigned int size) {
  (void)size;
  free(p);
}

void __cxa_pure_virtual(void) { abort(); }

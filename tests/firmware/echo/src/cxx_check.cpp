// C++ in a tinygen QEMU firmware: a global whose constructor must run at
// startup (__libc_init_array) and a virtual call (vtables without RTTI).
#include <stdint.h>

namespace {

volatile uint32_t g_seed = 41u;

struct Base {
    virtual ~Base() = default;
    virtual uint32_t value() const = 0;
};

struct Derived final : Base {
    Derived() : stored_(g_seed + 1u) {}  // not constant-initialisable
    uint32_t value() const override { return stored_; }
    uint32_t stored_;
};

Derived g_object;

}  // namespace

extern "C" uint32_t cxx_check_value(void)
{
    const Base &base = g_object;
    return base.value();
}

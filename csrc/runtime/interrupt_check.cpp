#include "runtime/interrupt_check.h"

#include <atomic>

namespace nd {
namespace {

std::atomic<InterruptCheck> installed{nullptr};

}  // namespace

void set_interrupt_check(InterruptCheck check) { installed.store(check); }

void check_for_interrupt() {
  if (const InterruptCheck check = installed.load()) check();
}

}  // namespace nd

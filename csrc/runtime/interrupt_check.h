// A request to stop from outside the engine (Ctrl-C in the Python process) reaches the denoising
// loop through one check it makes at every step. The engine knows nothing of who installs it: the
// bindings install one that looks at Python's pending signals and throws to stop the call.
#pragma once

namespace nd {

// Called once per denoising step; it stops the call by throwing. nullptr: no check.
using InterruptCheck = void (*)();

void set_interrupt_check(InterruptCheck check);
void check_for_interrupt();

}  // namespace nd

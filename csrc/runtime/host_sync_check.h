// A debug switch for the engine's promise that a denoising step never waits for the GPU: the CPU
// queues step after step (a CUDA graph replay, the scheduler's few kernels) while the GPU works, so
// one hidden synchronisation per step (reading a timestep's value from device memory, a blocking
// host-to-device copy) leaves the GPU idle while the next step is launched. While the switch is on,
// every step after the first (which may capture a graph) runs under torch's sync debug mode
// "error", so such an operation throws instead of stalling quietly. GPU tests turn it on.
#pragma once

#include <cstdint>

namespace nd {

void set_host_sync_check_enabled(bool enabled);
bool host_sync_check_enabled();

// Held for the body of denoising step `step`.
class StepSyncCheck {
 public:
  explicit StepSyncCheck(int64_t step);
  ~StepSyncCheck();
  StepSyncCheck(const StepSyncCheck&) = delete;
  StepSyncCheck& operator=(const StepSyncCheck&) = delete;

 private:
  bool active_ = false;
  int previous_mode_ = 0;
};

// Held around the user's step callback inside a step: what a callback does is not the engine's.
class HostSyncCheckPause {
 public:
  HostSyncCheckPause();
  ~HostSyncCheckPause();
  HostSyncCheckPause(const HostSyncCheckPause&) = delete;
  HostSyncCheckPause& operator=(const HostSyncCheckPause&) = delete;

 private:
  int previous_mode_ = 0;
};

}  // namespace nd

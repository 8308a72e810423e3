#include "runtime/host_sync_check.h"

#include <atomic>

#ifdef ND_WITH_TORCH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace nd {
namespace {

std::atomic<bool> check_enabled{false};

#ifdef ND_WITH_TORCH_CUDA
// Sets torch's sync debug mode and returns the one it replaces.
int exchange_sync_debug_mode(c10::cuda::SyncDebugMode mode) {
  auto& state = c10::cuda::warning_state();
  const int previous = static_cast<int>(state.get_sync_debug_mode());
  state.set_sync_debug_mode(mode);
  return previous;
}
#endif

}  // namespace

void set_host_sync_check_enabled(bool enabled) { check_enabled.store(enabled); }
bool host_sync_check_enabled() { return check_enabled.load(); }

StepSyncCheck::StepSyncCheck(int64_t step) {
#ifdef ND_WITH_TORCH_CUDA
  if (step == 0 || !check_enabled.load()) return;
  previous_mode_ = exchange_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  active_ = true;
#else
  (void)step;
#endif
}

StepSyncCheck::~StepSyncCheck() {
#ifdef ND_WITH_TORCH_CUDA
  if (active_) exchange_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(previous_mode_));
#endif
}

HostSyncCheckPause::HostSyncCheckPause() {
#ifdef ND_WITH_TORCH_CUDA
  previous_mode_ = exchange_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
#endif
}

HostSyncCheckPause::~HostSyncCheckPause() {
#ifdef ND_WITH_TORCH_CUDA
  exchange_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(previous_mode_));
#endif
}

}  // namespace nd

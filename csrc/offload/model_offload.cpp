#include "offload/model_offload.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

namespace nd {

ModelCpuOffload::ModelCpuOffload(std::vector<Component> components, c10::Device execution_device)
    : device_(execution_device) {
  // Pinned memory needs a CUDA context; with an execution device that is not CUDA plain host
  // memory serves (and the moves are synchronous copies).
  const bool pin = execution_device.is_cuda() && at::hasCUDA();
  for (Component& component : components) {
    Slot slot{std::move(component), {}, false};
    slot.component.apply([&](const at::Tensor& t) {
      at::Tensor host = t.device().is_cpu() ? t : t.to(at::kCPU);
      if (pin && !host.is_pinned()) host = host.pin_memory();
      slot.host.push_back(host);
      return host;
    });
    slots_.push_back(std::move(slot));
  }
}

void ModelCpuOffload::send_home(Slot& slot) {
  std::size_t i = 0;
  slot.component.apply([&](const at::Tensor&) { return slot.host.at(i++); });
  slot.resident = false;
}

void ModelCpuOffload::activate(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_) {
    if (slot.component.name != name && slot.resident) send_home(slot);
  }
  for (Slot& slot : slots_) {
    if (slot.component.name != name || slot.resident) continue;
    std::size_t i = 0;
    // From pinned memory the copy is queued on the current stream and the CPU goes on.
    slot.component.apply([&](const at::Tensor&) { return slot.host.at(i++).to(device_, /*non_blocking=*/true); });
    slot.resident = true;
  }
}

void ModelCpuOffload::offload_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_) {
    if (slot.resident) send_home(slot);
  }
}

std::vector<std::string> ModelCpuOffload::resident() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> names;
  for (const Slot& slot : slots_) {
    if (slot.resident) names.push_back(slot.component.name);
  }
  return names;
}

}  // namespace nd

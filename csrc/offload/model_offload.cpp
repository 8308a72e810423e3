#include "offload/model_offload.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

namespace nd {

HostWeights::HostWeights(const ApplyFn& apply, bool pin) {
  apply([&](const at::Tensor& t) {
    at::Tensor host = t.device().is_cpu() ? t : t.to(at::kCPU);
    if (pin && !host.is_pinned()) host = host.pin_memory();
    host_.push_back(host);
    return host;
  });
}

void HostWeights::to_device(const ApplyFn& apply, c10::Device device, const std::vector<bool>* mask) const {
  std::size_t i = 0;
  apply([&](const at::Tensor& current) {
    const std::size_t index = i++;
    if (mask && !(*mask)[index]) return current;
    // From pinned memory the copy is queued on the current stream and the CPU goes on.
    return host_.at(index).to(device, /*non_blocking=*/true);
  });
}

void HostWeights::to_host(const ApplyFn& apply, const std::vector<bool>* mask) const {
  std::size_t i = 0;
  apply([&](const at::Tensor& current) {
    const std::size_t index = i++;
    return mask && !(*mask)[index] ? current : host_.at(index);
  });
}

ModelCpuOffload::ModelCpuOffload(std::vector<Component> components, c10::Device execution_device)
    : device_(execution_device) {
  // Pinned memory needs a CUDA context; with an execution device that is not CUDA plain host
  // memory serves (and the moves are synchronous copies).
  const bool pin = execution_device.is_cuda() && at::hasCUDA();
  for (Component& component : components) {
    HostWeights host(component.apply, pin);
    slots_.push_back(Slot{std::move(component), std::move(host), false});
  }
}

void ModelCpuOffload::activate(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_) {
    if (slot.component.name != name && slot.resident) {
      slot.host.to_host(slot.component.apply);
      slot.resident = false;
    }
  }
  for (Slot& slot : slots_) {
    if (slot.component.name != name || slot.resident) continue;
    slot.host.to_device(slot.component.apply, device_);
    slot.resident = true;
  }
}

void ModelCpuOffload::offload_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_) {
    if (!slot.resident) continue;
    slot.host.to_host(slot.component.apply);
    slot.resident = false;
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

#include "offload/model_offload.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include "core/memory_format.h"

#ifdef ND_WITH_TORCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/cuda_streams.h"
#endif

namespace nd {

#ifdef ND_WITH_TORCH_CUDA
struct CopyFence::Event {
  at::cuda::CUDAEvent event;
};
#else
struct CopyFence::Event {};
#endif

CopyFence::CopyFence() = default;
CopyFence::~CopyFence() = default;
CopyFence::CopyFence(CopyFence&&) noexcept = default;
CopyFence& CopyFence::operator=(CopyFence&&) noexcept = default;

void CopyFence::wait(c10::Device device) {
#ifdef ND_WITH_TORCH_CUDA
  if (event_) event_->event.block(c10::cuda::getCurrentCUDAStream(device.index()));
#else
  (void)device;
#endif
  event_.reset();
}

HostWeights::HostWeights(const ApplyFn& apply, c10::Device target) {
  // Pinned memory needs a CUDA context; for another target plain host memory serves (and the moves
  // are synchronous copies).
  const bool pin = target.is_cuda() && at::hasCUDA();
  apply([&](const at::Tensor& t) {
    at::Tensor host = t.device().is_cpu() ? t : t.to(at::kCPU);
    if (host.dim() == 4) {
      host = host.contiguous(channels_last_on(target) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    }
    if (pin && !host.is_pinned()) host = host.pin_memory();  // keeps the strides
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

CopyFence HostWeights::to_device_async(const ApplyFn& apply, c10::Device device, const std::vector<bool>* mask) const {
  CopyFence fence;
#ifdef ND_WITH_TORCH_CUDA
  if (device.is_cuda()) {
    const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(device.index());
    const c10::cuda::CUDAStream copy = side_stream(SideStream::kWeightCopy, device.index());
    // The device copies are allocated for the compute stream, so that their memory goes back to the
    // pool the compute stream allocates activations from. A block handed out there may have been
    // freed by work the compute stream has queued, so the copy stream first waits for that work: the
    // pipeline prefetches right after activating a component and before queuing its compute, so the
    // copy still overlaps it.
    at::cuda::CUDAEvent queued;
    queued.record(compute);
    queued.block(copy);
    std::size_t i = 0;
    apply([&](const at::Tensor& current) {
      const std::size_t index = i++;
      if (mask && !(*mask)[index]) return current;
      const at::Tensor& host = host_.at(index);
      at::Tensor t = at::empty_like(host, host.options().device(device));  // keeps the host's layout
      {
        const c10::cuda::CUDAStreamGuard on_copy_stream(copy);
        t.copy_(host, /*non_blocking=*/true);
      }
      // Dropped before its activation (a prefetch that did not come true), the block must not be
      // handed out again while the copy stream still writes it.
      t.record_stream(copy.unwrap());
      return t;
    });
    fence.event_ = std::make_unique<CopyFence::Event>();
    fence.event_->event.record(copy);
    return fence;
  }
#endif
  to_device(apply, device, mask);  // no second stream: a plain copy
  return fence;
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
  for (Component& component : components) {
    HostWeights host(component.apply, execution_device);
    slots_.push_back(Slot{std::move(component), std::move(host), State::kHost, {}});
  }
}

void ModelCpuOffload::send_home(Slot& slot) {
  if (slot.state == State::kHost) return;
  slot.host.to_host(slot.component.apply);
  slot.copied = CopyFence();
  slot.state = State::kHost;
}

void ModelCpuOffload::activate(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Slot& slot : slots_) {
    if (slot.component.name == name && slot.state == State::kActive) return;
  }
  for (Slot& slot : slots_) {
    if (slot.component.name != name) send_home(slot);
  }
  for (Slot& slot : slots_) {
    if (slot.component.name != name) continue;
    if (slot.state == State::kPrefetched) {
      slot.copied.wait(device_);
    } else {
      slot.host.to_device(slot.component.apply, device_);
    }
    slot.state = State::kActive;
  }
}

void ModelCpuOffload::prefetch(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_) {
    if (slot.component.name != name || slot.state != State::kHost) continue;
    slot.copied = slot.host.to_device_async(slot.component.apply, device_);
    slot.state = State::kPrefetched;
  }
}

void ModelCpuOffload::offload_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_) send_home(slot);
}

std::vector<std::string> ModelCpuOffload::resident() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> names;
  for (const Slot& slot : slots_) {
    if (slot.state != State::kHost) names.push_back(slot.component.name);
  }
  return names;
}

}  // namespace nd

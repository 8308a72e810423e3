#include "offload/model_offload.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <cstdint>

#include "core/errors.h"
#include "runtime/memory_format.h"

#ifdef ND_WITH_TORCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "runtime/cuda_streams.h"
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

namespace {

// Device copies keep the host strides, and every offset in a block is a multiple of this, so any
// parameter view is aligned for vectorised kernels.
constexpr int64_t kBlockAlignment = 256;

int64_t aligned(int64_t bytes) { return (bytes + kBlockAlignment - 1) / kBlockAlignment * kBlockAlignment; }

// A parameter's shape and strides as its target keeps it on the host (dense; channels-last where
// the target's layout says so), as a meta tensor: nothing is allocated or copied to find out.
at::Tensor host_layout_of(const at::Tensor& t, c10::Device target) {
  const auto meta = t.options().device(at::kMeta);
  if (t.dim() == 4) {
    return at::empty(t.sizes(), meta.memory_format(channels_last_on(target) ? at::MemoryFormat::ChannelsLast
                                                                            : at::MemoryFormat::Contiguous));
  }
  if (t.is_non_overlapping_and_dense()) return at::empty_strided(t.sizes(), t.strides(), meta);
  return at::empty(t.sizes(), meta);
}

// Whether `t` already is a host tensor laid out as `layout` says.
bool laid_out_as(const at::Tensor& t, const at::Tensor& layout, bool pin) {
  return t.device().is_cpu() && (!pin || t.is_pinned()) && t.strides() == layout.strides();
}

// A tensor shaped and strided like `like`, over `block`'s memory from `byte_offset` on.
at::Tensor view_in(const at::Tensor& block, int64_t byte_offset, const at::Tensor& like) {
  const int64_t item = static_cast<int64_t>(like.element_size());
  return at::empty({0}, like.options().device(block.device()).pinned_memory(false))
      .set_(block.storage(), (block.storage_offset() + byte_offset) / item, like.sizes(), like.strides());
}

// `bytes` of host memory for a block, pinned if `pin`. Pinned blocks come straight from CUDA at
// their exact size: torch's pinned allocator rounds every request up to a power of two and keeps
// freed blocks, which for a 5 GB UNet would pin 8 GB for good.
at::Tensor host_block(int64_t bytes, bool pin) {
  const auto options = at::TensorOptions().dtype(at::kByte);
#ifdef ND_WITH_TORCH_CUDA
  if (pin) {
    void* memory = nullptr;
    C10_CUDA_CHECK(cudaHostAlloc(&memory, static_cast<std::size_t>(std::max<int64_t>(bytes, 1)), cudaHostAllocDefault));
    // cudaFreeHost waits for copies still reading the block.
    return at::from_blob(memory, {bytes}, [](void* p) { cudaFreeHost(p); }, options);
  }
#else
  (void)pin;
#endif
  return at::empty({bytes}, options);
}

// Bytes a dense tensor spans in its storage, from its first element.
int64_t span_bytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

}  // namespace

HostWeights::HostWeights(const ApplyFn& apply, c10::Device target) {
  // Pinned memory needs a CUDA context; for another target plain host memory serves (and the moves
  // are synchronous copies).
  const bool pin = target.is_cuda() && at::hasCUDA();
  std::vector<at::Tensor> originals, layouts;
  apply([&](const at::Tensor& t) {
    originals.push_back(t);
    layouts.push_back(host_layout_of(t, target));
    return t;
  });

  // Already one block, in order (sequential offload's blocks within their component's block)?
  bool packed = !originals.empty();
  int64_t begin = INT64_MAX, end = 0, previous_end = 0;
  for (std::size_t i = 0; i < originals.size() && packed; ++i) {
    const at::Tensor& t = originals[i];
    const int64_t offset = t.storage_offset() * static_cast<int64_t>(t.element_size());
    packed = laid_out_as(t, layouts[i], pin) && t.storage().is_alias_of(originals.front().storage()) &&
             offset >= previous_end && offset % kBlockAlignment == 0;
    previous_end = offset + span_bytes(t);
    begin = std::min(begin, offset);
    end = std::max(end, previous_end);
  }
  if (packed) {
    block_ = at::empty({0}, at::TensorOptions().dtype(at::kByte)).set_(originals.front().storage(), begin, {end - begin});
    for (const at::Tensor& t : originals) {
      offsets_.push_back(t.storage_offset() * static_cast<int64_t>(t.element_size()) - begin);
      host_.push_back(t);
    }
  } else {
    int64_t total = 0;
    for (const at::Tensor& t : originals) {
      offsets_.push_back(total);
      total += aligned(std::max<int64_t>(span_bytes(t), 1));  // an empty tensor gets an address of its own
    }
    block_ = host_block(total, pin);
    // One parameter at a time straight into the block (from the device too): no second host copy.
    for (std::size_t i = 0; i < originals.size(); ++i) {
      at::Tensor view = view_in(block_, offsets_[i], layouts[i]);
      view.copy_(originals[i]);
      host_.push_back(std::move(view));
    }
  }
  to_host(apply);
}

void HostWeights::point_at(const ApplyFn& apply, const at::Tensor& block) const {
  std::size_t i = 0;
  apply([&](const at::Tensor&) {
    const std::size_t index = i++;
    return view_in(block, offsets_.at(index), host_.at(index));
  });
}

void HostWeights::check_same_parameters(const ApplyFn& apply) const {
  std::size_t i = 0;
  bool same = true;
  apply([&](const at::Tensor& current) {
    same = same && i < host_.size() && current.sizes() == host_[i].sizes();
    ++i;
    return current;
  });
  if (!same || i != host_.size()) {
    throw ValueError("a model's parameters changed while it was offloaded (" + std::to_string(i) + " now, " +
                     std::to_string(host_.size()) +
                     " offloaded): change it through the pipeline (e.g. pipeline.fuse_qkv_projections()), which "
                     "offloads it again");
  }
}

void HostWeights::to_device(const ApplyFn& apply, c10::Device device, const std::vector<bool>* mask) const {
  check_same_parameters(apply);
  if (device.is_cpu()) return to_host(apply, mask);
  if (!mask) {
    // From pinned memory the copy is queued on the current stream and the CPU goes on.
    point_at(apply, block_.to(device, /*non_blocking=*/true));
    return;
  }
  // A subset (sequential offload's parameters outside every block) is scattered through the block.
  std::size_t i = 0;
  apply([&](const at::Tensor& current) {
    const std::size_t index = i++;
    if (!(*mask)[index]) return current;
    return host_.at(index).to(device, /*non_blocking=*/true);
  });
}

CopyFence HostWeights::to_device_async(const ApplyFn& apply, c10::Device device, const std::vector<bool>* mask) const {
  check_same_parameters(apply);
  CopyFence fence;
#ifdef ND_WITH_TORCH_CUDA
  if (device.is_cuda() && !mask) {
    const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(device.index());
    const c10::cuda::CUDAStream copy = side_stream(SideStream::kWeightCopy, device.index());
    // The device block is allocated for the compute stream, so that its memory goes back to the
    // pool the compute stream allocates activations from. Memory handed out there may have been
    // freed by work the compute stream has queued, so the copy stream first waits for that work:
    // the pipeline prefetches right after activating a component and before queuing its compute,
    // so the copy still overlaps that compute.
    at::Tensor block = at::empty({block_.numel()}, block_.options().device(device).pinned_memory(false));
    at::cuda::CUDAEvent queued;
    queued.record(compute);
    queued.block(copy);
    {
      const c10::cuda::CUDAStreamGuard on_copy_stream(copy);
      block.copy_(block_, /*non_blocking=*/true);
    }
    // Dropped before its activation (a prefetch that did not come true), the block must not be
    // handed out again while the copy stream still writes it.
    block.record_stream(copy.unwrap());
    point_at(apply, block);
    fence.event_ = std::make_unique<CopyFence::Event>();
    fence.event_->event.record(copy);
    return fence;
  }
#endif
  to_device(apply, device, mask);  // no second stream (or a scattered subset): a plain copy
  return fence;
}

void HostWeights::to_host(const ApplyFn& apply, const std::vector<bool>* mask) const {
  check_same_parameters(apply);
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

#include "offload/sequential_offload.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <atomic>
#include <cstdint>
#include <unordered_set>

namespace nd {
namespace {

// The offload streaming on this thread. A weak reference: a pipeline destroyed mid-call (an
// exception between activate and offload_all) must not leave a dangling pointer behind.
thread_local std::weak_ptr<SequentialCpuOffload> tls_streaming;
thread_local bool tls_counted = false;
// Threads with a streaming offload installed: the blocks' fast path reads only this.
std::atomic<int> streaming_threads{0};

void install(const std::shared_ptr<SequentialCpuOffload>& offload) {
  if (!tls_counted) streaming_threads.fetch_add(1);
  tls_counted = true;
  tls_streaming = offload;
}

// Clears this thread's slot unless another (live) offload holds it.
void uninstall(const SequentialCpuOffload* offload) {
  const std::shared_ptr<SequentialCpuOffload> current = tls_streaming.lock();
  if (current && current.get() != offload) return;
  tls_streaming.reset();
  if (tls_counted) streaming_threads.fetch_sub(1);
  tls_counted = false;
}

}  // namespace

struct SequentialCpuOffload::Unit {
  ApplyFn apply;
  HostWeights host;
  std::size_t slot = 0;
  bool resident = false;
  CopyFence copied;  // pending while a prefetch may still be in flight
};

SequentialCpuOffload::SequentialCpuOffload(std::vector<OffloadComponent> components, c10::Device execution_device)
    : device_(execution_device) {
  for (OffloadComponent& component : components) {
    Slot slot{std::move(component), {}, {}, false};
    slot.host = HostWeights(slot.component.apply, execution_device);
    // Parameters a block owns move with the block; the rest move with the component.
    std::unordered_set<const void*> in_blocks;
    if (slot.component.units) {
      slot.component.units([&](const void* address, ApplyFn apply) {
        auto unit = std::make_unique<Unit>();
        unit->apply = std::move(apply);
        unit->host = HostWeights(unit->apply, execution_device);  // the component's host tensors as they are
        unit->slot = slots_.size();
        for (const at::Tensor& t : unit->host.tensors()) in_blocks.insert(t.data_ptr());
        unit_index_[address] = units_.size();
        units_.push_back(std::move(unit));
      });
    }
    for (const at::Tensor& t : slot.host.tensors()) slot.own.push_back(!in_blocks.count(t.data_ptr()));
    slots_.push_back(std::move(slot));
  }
}

SequentialCpuOffload::~SequentialCpuOffload() { uninstall(this); }

void SequentialCpuOffload::evict_unit(Unit& unit) {
  unit.host.to_host(unit.apply);
  unit.resident = false;
  unit.copied = CopyFence();
}

void SequentialCpuOffload::deactivate(std::size_t slot) {
  for (auto& unit : units_) {
    if (unit->slot == slot && unit->resident) evict_unit(*unit);
  }
  slots_[slot].host.to_host(slots_[slot].component.apply, &slots_[slot].own);
  slots_[slot].active = false;
}

void SequentialCpuOffload::activate(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].active && slots_[i].component.name != name) deactivate(i);
  }
  last_entered_ = SIZE_MAX;
  for (Slot& slot : slots_) {
    if (slot.component.name != name || slot.active) continue;
    slot.host.to_device(slot.component.apply, device_, &slot.own);
    slot.active = true;
  }
  install(shared_from_this());
}

void SequentialCpuOffload::offload_all() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].active) deactivate(i);
  }
  last_entered_ = SIZE_MAX;
  uninstall(this);
}

std::vector<std::string> SequentialCpuOffload::resident() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<std::string> names;
  for (const Slot& slot : slots_) {
    if (slot.active) names.push_back(slot.component.name);
  }
  return names;
}

std::size_t SequentialCpuOffload::resident_units() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::size_t count = 0;
  for (const auto& unit : units_) count += unit->resident ? 1 : 0;
  return count;
}

void SequentialCpuOffload::load_unit(Unit& unit) {
  if (unit.resident) {
    // Prefetched on the side stream: the compute stream waits for that copy, not the CPU.
    unit.copied.wait(device_);
    return;
  }
  unit.host.to_device(unit.apply, device_);
  unit.resident = true;
}

void SequentialCpuOffload::prefetch_unit(Unit& unit) {
  if (unit.resident) return;
  unit.copied = unit.host.to_device_async(unit.apply, device_);
  unit.resident = true;
}

void SequentialCpuOffload::enter(const void* address) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  const auto found = unit_index_.find(address);
  if (found == unit_index_.end()) return;
  const std::size_t index = found->second;
  Unit& unit = *units_[index];
  if (!slots_[unit.slot].active) return;  // its component is not running: leave it alone
  if (last_entered_ != SIZE_MAX) next_[last_entered_] = index;
  last_entered_ = index;

  load_unit(unit);
  const auto next = next_.find(index);
  const std::size_t next_index = next == next_.end() ? SIZE_MAX : next->second;
  for (std::size_t i = 0; i < units_.size(); ++i) {
    if (i != index && i != next_index && units_[i]->resident) evict_unit(*units_[i]);
  }
  if (next_index != SIZE_MAX && next_index != index && slots_[units_[next_index]->slot].active) {
    prefetch_unit(*units_[next_index]);
  }
}

void stream_in(const void* unit) {
  if (streaming_threads.load(std::memory_order_relaxed) == 0) return;
  if (const std::shared_ptr<SequentialCpuOffload> offload = tls_streaming.lock()) offload->enter(unit);
}

bool streaming_active() {
  return streaming_threads.load(std::memory_order_relaxed) > 0 && !tls_streaming.expired();
}

}  // namespace nd

// Mirrors diffusers DiffusionPipeline.enable_sequential_cpu_offload (accelerate's cpu_offload on
// every leaf module), streaming whole blocks instead of leaves and overlapping the copies with
// compute. Every component lives in pinned host memory. While the pipeline runs a component, the
// component's own small parameters (embeddings, in/out convolutions, norms around its blocks) sit
// on the device, and its blocks (ResNet blocks, transformer blocks, attention layers, samplers)
// come in as its forward reaches them: the block that followed the current one last time copies on
// a side stream while the current one computes, and the rest go home. The GPU holds one component's
// small parameters, two blocks and the activations.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "offload/model_offload.h"
#include "offload/streaming.h"

namespace nd {

class SequentialCpuOffload : public PipelineOffload, public std::enable_shared_from_this<SequentialCpuOffload> {
 public:
  // Build with std::make_shared: activate() hands this thread's blocks a weak reference.
  SequentialCpuOffload(std::vector<OffloadComponent> components, c10::Device execution_device);
  ~SequentialCpuOffload() override;

  c10::Device execution_device() const override { return device_; }
  void activate(const std::string& name) override;
  void offload_all() override;
  std::vector<std::string> resident() const override;

  // A block's forward calls this on entry (through stream_in): its weights come to the device
  // (waiting for their prefetch if one is in flight) and the block that came next last time starts
  // copying. Blocks this offload does not own are ignored.
  void enter(const void* unit);
  // Blocks on the device now (tests).
  std::size_t resident_units() const;

 private:
  struct Unit;
  struct Slot {
    OffloadComponent component;
    HostWeights host;
    std::vector<bool> own;  // visit order: parameters outside every block (they move with the component)
    bool active = false;
  };

  void deactivate(std::size_t slot);
  void load_unit(Unit& unit);
  void prefetch_unit(Unit& unit);
  void evict_unit(Unit& unit);

  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Unit>> units_;
  std::unordered_map<const void*, std::size_t> unit_index_;
  // Which block followed which during the last forward: the order to prefetch in.
  std::unordered_map<std::size_t, std::size_t> next_;
  std::size_t last_entered_ = SIZE_MAX;
  c10::Device device_;
  mutable std::recursive_mutex mutex_;
};

}  // namespace nd

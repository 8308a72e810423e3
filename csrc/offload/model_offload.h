// Mirrors diffusers DiffusionPipeline.enable_model_cpu_offload (pipelines/pipeline_utils.py, with
// accelerate's cpu_offload_with_hook), without Python hooks: the pipeline names the component it is
// about to run and only that one sits on the execution device, and it may name the one it runs
// next, whose copy then starts on a side stream and overlaps the current one's compute. Each component keeps one host copy
// of its weights, pinned so that host-to-device copies are asynchronous DMA that never stalls the
// CPU. Sending a component back costs nothing: weights never change during inference, so its device
// copies are dropped and it points at the host copy again (diffusers copies them back every time).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "models/layers.h"

namespace nd {

struct OffloadComponent {
  std::string name;                                // diffusers' component name ("unet", "vae", ...)
  ApplyFn apply;                                   // every parameter of the model
  std::function<void(const UnitVisitor&)> units;  // null: the model moves as a whole
};

// What pipelines call, whichever offload is installed.
class PipelineOffload {
 public:
  virtual ~PipelineOffload() = default;
  virtual c10::Device execution_device() const = 0;
  // The pipeline is about to run component `name`; unknown names (an absent optional component,
  // such as the refiner's first text encoder) send everything home.
  virtual void activate(const std::string& name) = 0;
  // Every component on the host (diffusers' maybe_free_model_hooks, at the end of a call).
  virtual void offload_all() = 0;
  // Component `name` is the next one activate() will be called with: its weights may start copying
  // now, overlapping the compute of the current one. A hint; an offload may ignore it.
  virtual void prefetch(const std::string& /*name*/) {}
  // Components with weights on the execution device now, in sequence order.
  virtual std::vector<std::string> resident() const = 0;
};

// The end of a weight copy queued on the engine's weight-copy stream: the compute stream waits for
// it before the weights are read. Empty when the copy ran synchronously (no CUDA device).
class CopyFence {
 public:
  CopyFence();
  ~CopyFence();
  CopyFence(CopyFence&&) noexcept;
  CopyFence& operator=(CopyFence&&) noexcept;

  bool pending() const { return event_ != nullptr; }
  // Makes the current stream of `device` wait for the copy (the CPU does not wait); then empty.
  void wait(c10::Device device);

 private:
  friend class HostWeights;
  struct Event;
  std::unique_ptr<Event> event_;
};

// One host copy of every parameter of a component, in visit order, and its move to and from a
// device. The copies lie in one block of host memory (pinned for a CUDA target), each in the layout
// the target keeps (channels-last convolution weights), at the offsets they will have in one device
// block: moving the whole component is one allocation and one DMA instead of one per parameter.
class HostWeights {
 public:
  HostWeights() = default;
  // Moves the component's parameters into the block and points the component at them. Parameters
  // that already lie in one suitable block, in order (a block's share of its component's weights,
  // for sequential offload), are kept where they are: a range of that block, no copy.
  HostWeights(const ApplyFn& apply, c10::Device target);
  // Points the component (or the subset `mask` selects, in visit order) at device copies.
  void to_device(const ApplyFn& apply, c10::Device device, const std::vector<bool>* mask = nullptr) const;
  // Like to_device, but queued on the weight-copy side stream so that it overlaps compute on the
  // current stream; wait on the fence before the weights are used. Without CUDA it copies now.
  CopyFence to_device_async(const ApplyFn& apply, c10::Device device, const std::vector<bool>* mask = nullptr) const;
  // Points the component (or the masked subset) back at the host copies; the device copies are dropped.
  void to_host(const ApplyFn& apply, const std::vector<bool>* mask = nullptr) const;
  const std::vector<at::Tensor>& tensors() const { return host_; }
  // The host block (uint8) the tensors lie in.
  const at::Tensor& block() const { return block_; }

 private:
  // Device copies of the whole block, viewed as the parameters (`block` already on the device).
  void point_at(const ApplyFn& apply, const at::Tensor& block) const;
  // Throws ValueError unless the component still has the parameters this copy was made of (a
  // model changed under the offload, e.g. its projections fused, would be pointed at wrong views).
  void check_same_parameters(const ApplyFn& apply) const;

  std::vector<at::Tensor> host_;      // views into block_
  std::vector<int64_t> offsets_;      // each tensor's byte offset in block_
  at::Tensor block_;
};

class ModelCpuOffload : public PipelineOffload {
 public:
  using Component = OffloadComponent;
  // `components` in diffusers' model_cpu_offload_seq order; each moves to host memory now.
  ModelCpuOffload(std::vector<Component> components, c10::Device execution_device);

  c10::Device execution_device() const override { return device_; }
  // Sends every other component home (a prefetched one too: a hint that did not come true) unless
  // `name` is already active.
  void activate(const std::string& name) override;
  void offload_all() override;
  void prefetch(const std::string& name) override;
  std::vector<std::string> resident() const override;

 private:
  enum class State { kHost, kPrefetched, kActive };
  struct Slot {
    Component component;
    HostWeights host;
    State state = State::kHost;
    CopyFence copied;  // pending while a prefetch may still be in flight
  };

  void send_home(Slot& slot);

  std::vector<Slot> slots_;
  c10::Device device_;
  mutable std::mutex mutex_;
};

// A component for a model with apply(); an absent (null) optional component yields none.
template <typename Model>
void add_offload_component(std::vector<OffloadComponent>& out, std::string name, const std::shared_ptr<Model>& model) {
  if (!model) return;
  out.push_back({std::move(name), [model](const ParameterFn& fn) { model->apply(fn); }, nullptr});
}

// The same for a model whose blocks can stream one at a time (it has for_each_unit).
template <typename Model>
void add_streamed_component(std::vector<OffloadComponent>& out, std::string name,
                            const std::shared_ptr<Model>& model) {
  if (!model) return;
  out.push_back({std::move(name), [model](const ParameterFn& fn) { model->apply(fn); },
                 [model](const UnitVisitor& visit) { model->for_each_unit(visit); }});
}

// What a pipeline with offloading shares: the offload (or none) and the calls its steps make.
class ModelOffloadSupport {
 public:
  void set_offload(std::shared_ptr<PipelineOffload> offload) { offload_ = std::move(offload); }
  const std::shared_ptr<PipelineOffload>& offload() const { return offload_; }

 protected:
  // The pipeline runs `name` now, and `next` (if given) right after it: `next` may start copying
  // while `name` computes.
  void use_component(const std::string& name, const std::string& next = {}) const {
    if (!offload_) return;
    offload_->activate(name);
    if (!next.empty()) offload_->prefetch(next);
  }
  void free_components() const {
    if (offload_) offload_->offload_all();
  }

  std::shared_ptr<PipelineOffload> offload_;
};

}  // namespace nd

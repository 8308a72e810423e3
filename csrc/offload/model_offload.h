// Mirrors diffusers DiffusionPipeline.enable_model_cpu_offload (pipelines/pipeline_utils.py, with
// accelerate's cpu_offload_with_hook), without Python hooks: the pipeline names the component it is
// about to run and only that one sits on the execution device. Each component keeps one host copy
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

class ModelCpuOffload {
 public:
  struct Component {
    std::string name;                              // diffusers' component name ("unet", "vae", ...)
    std::function<void(const ParameterFn&)> apply;  // the model's parameter visitor
  };

  // `components` in diffusers' model_cpu_offload_seq order; each moves to host memory now.
  ModelCpuOffload(std::vector<Component> components, c10::Device execution_device);

  c10::Device execution_device() const { return device_; }

  // Brings `name` to the execution device and sends every other component back to the host.
  // Unknown names are ignored: a pipeline may lack an optional component (the refiner's first
  // text encoder).
  void activate(const std::string& name);
  // Every component on the host (diffusers' maybe_free_model_hooks, at the end of a call).
  void offload_all();
  // Components now on the execution device, in sequence order.
  std::vector<std::string> resident() const;

 private:
  struct Slot {
    Component component;
    std::vector<at::Tensor> host;  // apply() visit order
    bool resident = false;
  };
  void send_home(Slot& slot);

  std::vector<Slot> slots_;
  c10::Device device_;
  mutable std::mutex mutex_;
};

// The Component for a model with apply(); an absent (null) optional component yields none.
template <typename Model>
void add_offload_component(std::vector<ModelCpuOffload::Component>& out, std::string name,
                           const std::shared_ptr<Model>& model) {
  if (!model) return;
  out.push_back({std::move(name), [model](const ParameterFn& fn) { model->apply(fn); }});
}

// What a pipeline with model offloading shares: the offload (or none) and the calls its steps make.
class ModelOffloadSupport {
 public:
  void set_model_cpu_offload(std::shared_ptr<ModelCpuOffload> offload) { offload_ = std::move(offload); }
  const std::shared_ptr<ModelCpuOffload>& model_cpu_offload() const { return offload_; }

 protected:
  void use_component(const std::string& name) const {
    if (offload_) offload_->activate(name);
  }
  void free_components() const {
    if (offload_) offload_->offload_all();
  }

  std::shared_ptr<ModelCpuOffload> offload_;
};

}  // namespace nd

// The engine's models as torch.library ops, so torch.compile(..., fullgraph=True) sees one opaque
// call instead of failing on a pybind11 function (the guide compiles pipeline.unet). One op per
// model entry point; a model is named by a handle from its registry. Schemas:
//   unet_forward: UNet2DConditionModel.forward (sample, timestep, encoder_hidden_states (None for
//                 Kandinsky 2.2), SDXL's text_embeds/time_ids, Kandinsky 2.2's image_embeds, a
//                 ControlNet's down/mid residuals, class labels) -> noise prediction.
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/errors.h"
#include "models/unets/unet_2d_condition.h"

namespace py = pybind11;

namespace nd::bindings {
namespace {

// Weak references: the Python model owns its engine; a handle outliving it is a clear error.
class UNetRegistry {
 public:
  int64_t add(const std::shared_ptr<UNet2DConditionModel>& unet) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t handle = next_++;
    entries_[handle] = unet;
    return handle;
  }
  std::shared_ptr<UNet2DConditionModel> get(int64_t handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(handle);
    std::shared_ptr<UNet2DConditionModel> unet = it == entries_.end() ? nullptr : it->second.lock();
    if (!unet) throw ValueError("native_diffusers::unet_forward: no live UNet with handle " + std::to_string(handle));
    return unet;
  }
  void remove(int64_t handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.erase(handle);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<int64_t, std::weak_ptr<UNet2DConditionModel>> entries_;
  int64_t next_ = 1;
};

UNetRegistry& unet_registry() {
  static UNetRegistry registry;
  return registry;
}

at::Tensor unet_forward(int64_t handle, const at::Tensor& sample, const at::Tensor& timestep,
                        const std::optional<at::Tensor>& encoder_hidden_states,
                        const std::optional<at::Tensor>& text_embeds, const std::optional<at::Tensor>& time_ids,
                        const std::optional<at::Tensor>& image_embeds,
                        const std::optional<std::vector<at::Tensor>>& down_block_additional_residuals,
                        const std::optional<at::Tensor>& mid_block_additional_residual,
                        const std::optional<at::Tensor>& class_labels) {
  UNetAddedConditions added;
  if (class_labels) added.class_labels = *class_labels;
  if (text_embeds) added.text_embeds = *text_embeds;
  if (time_ids) added.time_ids = *time_ids;
  if (image_embeds) added.image_embeds = *image_embeds;
  if (down_block_additional_residuals.has_value() != mid_block_additional_residual.has_value()) {
    throw ValueError("down_block_additional_residuals and mid_block_additional_residual (a ControlNet's outputs) "
                     "must be passed together");
  }
  UNetControlResiduals control;
  if (mid_block_additional_residual) control = {*down_block_additional_residuals, *mid_block_additional_residual};
  return unet_registry().get(handle)->forward(sample, timestep,
                                              encoder_hidden_states ? *encoder_hidden_states : at::Tensor(), added,
                                              nullptr, mid_block_additional_residual ? &control : nullptr);
}

}  // namespace

void bind_torch_ops(py::module_& m) {
  m.def("register_unet", [](const std::shared_ptr<UNet2DConditionModel>& unet) { return unet_registry().add(unet); });
  m.def("unregister_unet", [](int64_t handle) { unet_registry().remove(handle); });
}

}  // namespace nd::bindings

TORCH_LIBRARY(native_diffusers, m) {
  m.def(
      "unet_forward(int handle, Tensor sample, Tensor timestep, Tensor? encoder_hidden_states, "
      "Tensor? text_embeds=None, Tensor? time_ids=None, Tensor? image_embeds=None, "
      "Tensor[]? down_block_additional_residuals=None, Tensor? mid_block_additional_residual=None, "
      "Tensor? class_labels=None) -> Tensor");
}

// One implementation for every device: the engine dispatches on the tensors' device itself.
TORCH_LIBRARY_IMPL(native_diffusers, CompositeExplicitAutograd, m) {
  m.impl("unet_forward", &nd::bindings::unet_forward);
}

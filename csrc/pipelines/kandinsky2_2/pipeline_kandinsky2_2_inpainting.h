// Mirrors diffusers KandinskyV22InpaintPipeline
// (pipelines/kandinsky2_2/pipeline_kandinsky2_2_inpainting.py): the MoVQ encode of the image, the
// keep-mask at latent size with diffusers' asymmetric erosion (prepare_mask), the masked image's
// latents, the denoising loop over a 9-channel UNet input [latents, masked_image, mask_image] with
// the original latents blended back outside the mask after every step, the final blend and the
// MoVQ decode, all in the engine. Python checks arguments and converts the image and the mask
// (prepare_mask_and_masked_image: binarised, inverted to a keep-mask); nothing here calls back into
// Python unless the caller installs a step callback.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>
#include <vector>

#include "models/autoencoders/vq_model.h"
#include "models/unets/unet_2d_condition.h"
#include "offload/model_offload.h"
#include "pipelines/denoising_loop.h"
#include "pipelines/pipeline_utils.h"
#include "schedulers/scheduling_utils.h"

namespace nd {

// callback_on_step_end tensors: latents, image_embeds, negative_image_embeds, masked_image,
// mask_image.
struct KandinskyV22InpaintRequest : LoopOptions {
  at::Tensor image_embeds;           // [B, D]
  at::Tensor negative_image_embeds;  // [B, D]
  at::Tensor image;                  // [B, 3, H, W] in [-1, 1], already resized
  at::Tensor mask_image;             // [B, 1, H, W] keep-mask: 1 keeps the image, 0 is repainted
  at::Tensor latents;                // optional initial noise [B * num_images_per_prompt, C, h, w]
  int64_t height = 512;              // the output size the latents are made for
  int64_t width = 512;
  int64_t num_inference_steps = 100;
  double guidance_scale = 4.0;
  int64_t num_images_per_prompt = 1;
  bool output_latents = false;
};

class KandinskyV22InpaintPipeline : public ModelOffloadSupport {
 public:
  KandinskyV22InpaintPipeline(std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<Scheduler> scheduler,
                              std::shared_ptr<VQModel> movq);

  // Returns latents (output_latents) or the decoded images in [-1, 1] ([B, 3, H, W]).
  PipelineResult run(const KandinskyV22InpaintRequest& request);

  void set_scheduler(std::shared_ptr<Scheduler> scheduler) { scheduler_ = std::move(scheduler); }
  const std::shared_ptr<Scheduler>& scheduler() const { return scheduler_; }
  // Ref: diffusers model_cpu_offload_seq = "unet->movq".
  std::vector<ModelCpuOffload::Component> offload_components() const;

 private:
  // Whether the scheduler reads a learned variance from the model output's second half.
  bool scheduler_learns_variance() const;
  c10::Device execution_device() const { return offload_ ? offload_->execution_device() : unet_->device(); }

  std::shared_ptr<UNet2DConditionModel> unet_;
  std::shared_ptr<Scheduler> scheduler_;
  std::shared_ptr<VQModel> movq_;
};

// Ref: diffusers prepare_mask (pipeline_kandinsky2_2_inpainting.py): every pixel of the keep-mask
// ([N, C, h, w]) whose first channel is not 1 zeroes its neighbours above, left, above-left, below,
// right and below-right (not above-right nor below-left), all channels; an asymmetric erosion.
at::Tensor prepare_kandinsky_inpaint_mask(const at::Tensor& mask);

}  // namespace nd

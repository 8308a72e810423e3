// Mirrors diffusers KandinskyV22Img2ImgPipeline
// (pipelines/kandinsky2_2/pipeline_kandinsky2_2_img2img.py): the MoVQ encode of the init image,
// the strength cut of the schedule, noising, the denoising loop with classifier-free guidance on
// the image embeddings and the learned-variance split, and the MoVQ decode, all in the engine.
// Python checks arguments and converts images; nothing here calls back into Python unless the
// caller installs a step callback.
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

// callback_on_step_end tensors: latents, image_embeds, negative_image_embeds.
struct KandinskyV22Img2ImgRequest : LoopOptions {
  at::Tensor image_embeds;           // [B, D]
  at::Tensor negative_image_embeds;  // [B, D]
  at::Tensor image;                  // [B_img, 3, H, W] in [-1, 1], already resized
  int64_t num_inference_steps = 100;
  double guidance_scale = 4.0;
  double strength = 0.3;
  int64_t num_images_per_prompt = 1;
  bool output_latents = false;
};

class KandinskyV22Img2ImgPipeline : public ModelOffloadSupport {
 public:
  KandinskyV22Img2ImgPipeline(std::shared_ptr<UNet2DConditionModel> unet, std::shared_ptr<Scheduler> scheduler,
                              std::shared_ptr<VQModel> movq);

  // Returns latents (output_latents) or the decoded images in [-1, 1] ([B, 3, H, W]).
  PipelineResult run(const KandinskyV22Img2ImgRequest& request);

  // Ref: diffusers get_timesteps: the schedule from int(num_inference_steps * strength) steps
  // before its end, and that number of steps.
  TimestepWindow get_timesteps(int64_t num_inference_steps, double strength) const;

  void set_scheduler(std::shared_ptr<Scheduler> scheduler) { scheduler_ = std::move(scheduler); }
  const std::shared_ptr<Scheduler>& scheduler() const { return scheduler_; }
  // Ref: diffusers model_cpu_offload_seq = "unet->movq".
  std::vector<ModelCpuOffload::Component> offload_components() const;

 private:
  at::Tensor prepare_latents(const at::Tensor& image_latents, const at::Tensor& timestep, at::ScalarType dtype,
                             const std::vector<at::Generator>& generators) const;
  // Whether the scheduler reads a learned variance from the model output's second half.
  bool scheduler_learns_variance() const;
  c10::Device execution_device() const { return offload_ ? offload_->execution_device() : unet_->device(); }

  std::shared_ptr<UNet2DConditionModel> unet_;
  std::shared_ptr<Scheduler> scheduler_;
  std::shared_ptr<VQModel> movq_;
};

}  // namespace nd

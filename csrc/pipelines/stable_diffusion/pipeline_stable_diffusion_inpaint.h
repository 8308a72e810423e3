// Mirrors diffusers StableDiffusionInpaintPipeline
// (pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py): the image-to-image steps with a
// mask. A 9-channel inpainting UNet reads the mask and the masked image's latents as channels
// concatenated to its input; an ordinary 4-channel UNet gets the original latents blended back
// outside the mask after every step. Python checks arguments and converts images and masks.
#pragma once

#include "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.h"

namespace nd {

// callback_on_step_end tensors: latents, prompt_embeds, negative_prompt_embeds, mask,
// masked_image_latents.
struct StableDiffusionInpaintRequest : StableDiffusionImg2ImgRequest {
  StableDiffusionInpaintRequest() { strength = 1.0; }
  // [B, 1, H, W], the mask processor's binarised output (1: repaint); H and W are the request's
  // height and width, as is the image's size.
  at::Tensor mask_image;
  // Optional: [B, latent_channels, h, w] latents or [B, 3, H, W] pixels of the masked image;
  // otherwise the image with its masked pixels set to 0.
  at::Tensor masked_image_latents;
};

class StableDiffusionInpaintPipeline : public StableDiffusionPipeline {
 public:
  using StableDiffusionPipeline::StableDiffusionPipeline;

  // Returns latents (output_latents) or the decoded images in [-1, 1] ([B, 3, H, W]).
  PipelineResult run(const StableDiffusionInpaintRequest& request);

 protected:
  struct InpaintLatents {
    at::Tensor latents;        // the loop's start
    at::Tensor noise;          // the initial noise (the 4-channel blend re-noises with it)
    at::Tensor image_latents;  // the clean image latents; only for a 4-channel UNet or strength < 1
  };
  struct PreparedInpainting {
    PreparedCall call;  // its tensors hold "mask" and "masked_image_latents" besides the prompt's
    InpaintLatents latents;
  };

  // Steps 3.-8.: the prompt, the schedule cut by strength, the latents and the mask latents.
  // `counts_steps`: the strength cut is refused by its step count (diffusers' SD inpainting) rather
  // than only when no timestep is left.
  PreparedInpainting prepare_inpainting(const StableDiffusionInpaintRequest& r, bool counts_steps);
  // The denoising loop with `inputs` and the mask (the 9-channel UNet's channels after them, or the
  // 4-channel blend), then the decode.
  PipelineResult denoise_inpainting(const StableDiffusionInpaintRequest& r, PreparedInpainting prepared,
                                    std::vector<const LoopInput*> inputs = {});

 private:
  // The image's encode and the mask's run between the prompt and the UNet.
  std::string component_after_prompt() const override { return "vae"; }
  InpaintLatents prepare_latents(const StableDiffusionInpaintRequest& r, const at::Tensor& timestep,
                                 int64_t batch_size, at::ScalarType dtype, bool is_strength_max,
                                 bool return_image_latents);
};

}  // namespace nd

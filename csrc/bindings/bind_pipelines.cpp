// Bindings for the pipelines: the engine runs the whole call; Python passes checked arguments.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "offload/sequential_offload.h"
#include "pipelines/controlnet/pipeline_controlnet.h"
#include "pipelines/controlnet/pipeline_controlnet_img2img.h"
#include "pipelines/controlnet/pipeline_controlnet_inpaint.h"
#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_img2img.h"
#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_inpainting.h"
#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_prior.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion_upscale.h"
#include "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_inpaint.h"

namespace py = pybind11;

namespace nd::bindings {
namespace {

// diffusers' enable_model_cpu_offload / enable_sequential_cpu_offload / remove_all_hooks on a
// pipeline class with offload_components(); `offloaded_components` lists the components whose
// weights are on the execution device now.
template <typename Class>
Class& def_model_cpu_offload(Class& cls) {
  using Pipeline = typename Class::type;
  const auto replace_offload = [](Pipeline& p, std::shared_ptr<PipelineOffload> offload) {
    if (p.offload()) p.offload()->offload_all();
    p.set_offload(std::move(offload));
  };
  cls.def(
         "enable_model_cpu_offload",
         [replace_offload](Pipeline& p, const c10::Device& device) {
           replace_offload(p, nullptr);  // back home first, so the new offload finds host weights
           replace_offload(p, std::make_shared<ModelCpuOffload>(p.offload_components(), device));
         },
         py::arg("device"), py::call_guard<py::gil_scoped_release>())
      .def(
          "enable_sequential_cpu_offload",
          [replace_offload](Pipeline& p, const c10::Device& device) {
            replace_offload(p, nullptr);
            replace_offload(p, std::make_shared<SequentialCpuOffload>(p.offload_components(), device));
          },
          py::arg("device"), py::call_guard<py::gil_scoped_release>())
      .def("remove_model_cpu_offload", [replace_offload](Pipeline& p) { replace_offload(p, nullptr); },
           py::call_guard<py::gil_scoped_release>())
      .def("offloaded_components", [](const Pipeline& p) {
        return p.offload() ? p.offload()->resident() : std::vector<std::string>{};
      });
  return cls;
}

// The request fields SD 1.x and SDXL requests share, bound under diffusers' argument names.
template <typename Class>
Class& def_common_request_fields(Class& cls) {
  using R = typename Class::type;
  cls.def(py::init<>())
      .def_readwrite("prompt", &R::prompt)
      .def_readwrite("negative_prompt", &R::negative_prompt)
      .def_readwrite("prompt_embeds", &R::prompt_embeds)
      .def_readwrite("negative_prompt_embeds", &R::negative_prompt_embeds)
      .def_readwrite("clip_skip", &R::clip_skip)
      .def_readwrite("latents", &R::latents)
      .def_readwrite("height", &R::height)
      .def_readwrite("width", &R::width)
      .def_readwrite("num_inference_steps", &R::num_inference_steps)
      .def_readwrite("timesteps", &R::timesteps)
      .def_readwrite("sigmas", &R::sigmas)
      .def_readwrite("guidance_scale", &R::guidance_scale)
      .def_readwrite("guidance_rescale", &R::guidance_rescale)
      .def_readwrite("num_images_per_prompt", &R::num_images_per_prompt)
      .def_readwrite("output_latents", &R::output_latents);
  return cls;
}

// What every pipeline call and step callback hand across the boundary; every request derives from
// LoopOptions.
void bind_loop_types(py::module_& m) {
  py::class_<LoopOptions>(m, "LoopOptions")
      .def(py::init<>())
      .def_readwrite("generators", &LoopOptions::generators)
      .def_readwrite("eta", &LoopOptions::eta)
      .def_readwrite("progress_bar", &LoopOptions::progress_bar)
      .def_readwrite("callback_on_step_end", &LoopOptions::callback_on_step_end)
      .def_readwrite("callback", &LoopOptions::callback)
      .def_readwrite("callback_steps", &LoopOptions::callback_steps);
  py::class_<ProgressBarOptions>(m, "ProgressBarOptions")
      .def(py::init<>())
      .def_readwrite("disable", &ProgressBarOptions::disable)
      .def_readwrite("desc", &ProgressBarOptions::desc)
      .def_readwrite("leave", &ProgressBarOptions::leave)
      .def_readwrite("position", &ProgressBarOptions::position);
  py::class_<PipelineResult>(m, "PipelineResult")
      .def_readonly("output", &PipelineResult::output)
      .def_readonly("num_timesteps", &PipelineResult::num_timesteps);
  py::class_<StepCallbackOutput>(m, "StepCallbackOutput")
      .def(py::init<StepTensors, bool>(), py::arg("tensors"), py::arg("interrupt"));
}

void bind_stable_diffusion_xl(py::module_& m) {
  using R = StableDiffusionXLRequest;
  py::class_<R, LoopOptions> request(m, "StableDiffusionXLRequest");
  def_common_request_fields(request)
      .def_readwrite("prompt_2", &R::prompt_2)
      .def_readwrite("negative_prompt_2", &R::negative_prompt_2)
      .def_readwrite("pooled_prompt_embeds", &R::pooled_prompt_embeds)
      .def_readwrite("negative_pooled_prompt_embeds", &R::negative_pooled_prompt_embeds)
      .def_readwrite("image", &R::image)
      .def_readwrite("strength", &R::strength)
      .def_readwrite("denoising_start", &R::denoising_start)
      .def_readwrite("denoising_end", &R::denoising_end)
      .def_readwrite("add_noise", &R::add_noise)
      .def_readwrite("original_size", &R::original_size)
      .def_readwrite("crops_coords_top_left", &R::crops_coords_top_left)
      .def_readwrite("target_size", &R::target_size)
      .def_readwrite("negative_original_size", &R::negative_original_size)
      .def_readwrite("negative_crops_coords_top_left", &R::negative_crops_coords_top_left)
      .def_readwrite("negative_target_size", &R::negative_target_size)
      .def_readwrite("aesthetic_score", &R::aesthetic_score)
      .def_readwrite("negative_aesthetic_score", &R::negative_aesthetic_score);

  py::class_<StableDiffusionXLPipeline, std::shared_ptr<StableDiffusionXLPipeline>> sdxl(m, "StableDiffusionXLPipeline");
  def_model_cpu_offload(sdxl)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>, std::shared_ptr<CLIPTokenizer>,
                    std::shared_ptr<CLIPTextModel>, std::shared_ptr<UNet2DConditionModel>,
                    std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>, bool>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("tokenizer_2"), py::arg("text_encoder_2"),
           py::arg("unet"), py::arg("vae"), py::arg("scheduler"), py::arg("force_zeros_for_empty_prompt"))
      .def("run", &StableDiffusionXLPipeline::run, py::arg("request"), py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline,
             std::shared_ptr<StableDiffusionXLImg2ImgPipeline>>(m, "StableDiffusionXLImg2ImgPipeline")
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>, std::shared_ptr<CLIPTokenizer>,
                    std::shared_ptr<CLIPTextModel>, std::shared_ptr<UNet2DConditionModel>,
                    std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>, bool, bool>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("tokenizer_2"), py::arg("text_encoder_2"),
           py::arg("unet"), py::arg("vae"), py::arg("scheduler"), py::arg("force_zeros_for_empty_prompt"),
           py::arg("requires_aesthetics_score"))
      .def("run", &StableDiffusionXLImg2ImgPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionXLInpaintRequest, StableDiffusionXLRequest> inpaint_request(
      m, "StableDiffusionXLInpaintRequest");
  inpaint_request.def(py::init<>())
      .def_readwrite("mask_image", &StableDiffusionXLInpaintRequest::mask_image)
      .def_readwrite("masked_image_latents", &StableDiffusionXLInpaintRequest::masked_image_latents);
  py::class_<StableDiffusionXLInpaintPipeline, StableDiffusionXLImg2ImgPipeline,
             std::shared_ptr<StableDiffusionXLInpaintPipeline>>(m, "StableDiffusionXLInpaintPipeline")
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>, std::shared_ptr<CLIPTokenizer>,
                    std::shared_ptr<CLIPTextModel>, std::shared_ptr<UNet2DConditionModel>,
                    std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>, bool, bool>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("tokenizer_2"), py::arg("text_encoder_2"),
           py::arg("unet"), py::arg("vae"), py::arg("scheduler"), py::arg("force_zeros_for_empty_prompt"),
           py::arg("requires_aesthetics_score"))
      .def("run", &StableDiffusionXLInpaintPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());
}

void bind_kandinsky(py::module_& m) {
  using R = KandinskyV22Img2ImgRequest;
  py::class_<R, LoopOptions>(m, "KandinskyV22Img2ImgRequest")
      .def(py::init<>())
      .def_readwrite("image_embeds", &R::image_embeds)
      .def_readwrite("negative_image_embeds", &R::negative_image_embeds)
      .def_readwrite("image", &R::image)
      .def_readwrite("num_inference_steps", &R::num_inference_steps)
      .def_readwrite("guidance_scale", &R::guidance_scale)
      .def_readwrite("strength", &R::strength)
      .def_readwrite("num_images_per_prompt", &R::num_images_per_prompt)
      .def_readwrite("output_latents", &R::output_latents);

  py::class_<KandinskyV22Img2ImgPipeline, std::shared_ptr<KandinskyV22Img2ImgPipeline>> decoder(
      m, "KandinskyV22Img2ImgPipeline");
  def_model_cpu_offload(decoder)
      .def(py::init<std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<Scheduler>, std::shared_ptr<VQModel>>(),
           py::arg("unet"), py::arg("scheduler"), py::arg("movq"))
      .def("run", &KandinskyV22Img2ImgPipeline::run, py::arg("request"), py::call_guard<py::gil_scoped_release>());

  using IR = KandinskyV22InpaintRequest;
  py::class_<IR, LoopOptions>(m, "KandinskyV22InpaintRequest")
      .def(py::init<>())
      .def_readwrite("image_embeds", &IR::image_embeds)
      .def_readwrite("negative_image_embeds", &IR::negative_image_embeds)
      .def_readwrite("image", &IR::image)
      .def_readwrite("mask_image", &IR::mask_image)
      .def_readwrite("latents", &IR::latents)
      .def_readwrite("height", &IR::height)
      .def_readwrite("width", &IR::width)
      .def_readwrite("num_inference_steps", &IR::num_inference_steps)
      .def_readwrite("guidance_scale", &IR::guidance_scale)
      .def_readwrite("num_images_per_prompt", &IR::num_images_per_prompt)
      .def_readwrite("output_latents", &IR::output_latents);

  py::class_<KandinskyV22InpaintPipeline, std::shared_ptr<KandinskyV22InpaintPipeline>> inpaint(
      m, "KandinskyV22InpaintPipeline");
  def_model_cpu_offload(inpaint)
      .def(py::init<std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<Scheduler>, std::shared_ptr<VQModel>>(),
           py::arg("unet"), py::arg("scheduler"), py::arg("movq"))
      .def("run", &KandinskyV22InpaintPipeline::run, py::arg("request"), py::call_guard<py::gil_scoped_release>());
}

void bind_kandinsky_prior(py::module_& m) {
  using R = KandinskyV22PriorRequest;
  py::class_<R, LoopOptions>(m, "KandinskyV22PriorRequest")
      .def(py::init<>())
      .def_readwrite("prompt", &R::prompt)
      .def_readwrite("negative_prompt", &R::negative_prompt)
      .def_readwrite("num_images_per_prompt", &R::num_images_per_prompt)
      .def_readwrite("num_inference_steps", &R::num_inference_steps)
      .def_readwrite("latents", &R::latents)
      .def_readwrite("guidance_scale", &R::guidance_scale);
  py::class_<KandinskyPriorOutput>(m, "KandinskyPriorOutput")
      .def_readonly("image_embeds", &KandinskyPriorOutput::image_embeds)
      .def_readonly("negative_image_embeds", &KandinskyPriorOutput::negative_image_embeds)
      .def_readonly("num_timesteps", &KandinskyPriorOutput::num_timesteps);

  py::class_<KandinskyV22PriorPipeline, std::shared_ptr<KandinskyV22PriorPipeline>> prior(
      m, "KandinskyV22PriorPipeline");
  def_model_cpu_offload(prior)
      .def(py::init<std::shared_ptr<PriorTransformer>, std::shared_ptr<CLIPVisionModelWithProjection>,
                    std::shared_ptr<CLIPTextModel>, std::shared_ptr<CLIPTokenizer>, std::shared_ptr<Scheduler>>(),
           py::arg("prior"), py::arg("image_encoder"), py::arg("text_encoder"), py::arg("tokenizer"),
           py::arg("scheduler"))
      .def("get_zero_embed", &KandinskyV22PriorPipeline::get_zero_embed, py::arg("batch_size") = 1,
           py::call_guard<py::gil_scoped_release>())
      .def("run", &KandinskyV22PriorPipeline::run, py::arg("request"), py::call_guard<py::gil_scoped_release>());
}

void bind_stable_diffusion(py::module_& m) {
  py::class_<StableDiffusionRequest, LoopOptions> request(m, "StableDiffusionRequest");
  def_common_request_fields(request);
  py::class_<StableDiffusionImg2ImgRequest, StableDiffusionRequest> img2img_request(m, "StableDiffusionImg2ImgRequest");
  img2img_request.def(py::init<>())
      .def_readwrite("image", &StableDiffusionImg2ImgRequest::image)
      .def_readwrite("strength", &StableDiffusionImg2ImgRequest::strength);
  py::class_<StableDiffusionInpaintRequest, StableDiffusionImg2ImgRequest> inpaint_request(
      m, "StableDiffusionInpaintRequest");
  inpaint_request.def(py::init<>())
      .def_readwrite("mask_image", &StableDiffusionInpaintRequest::mask_image)
      .def_readwrite("masked_image_latents", &StableDiffusionInpaintRequest::masked_image_latents);

  py::class_<StableDiffusionPipeline, std::shared_ptr<StableDiffusionPipeline>> sd(m, "StableDiffusionPipeline");
  def_model_cpu_offload(sd)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<AutoencoderKL>,
                    std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("vae"), py::arg("scheduler"))
      .def("run", &StableDiffusionPipeline::run, py::arg("request"), py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionImg2ImgPipeline, std::shared_ptr<StableDiffusionImg2ImgPipeline>> sd_img2img(
      m, "StableDiffusionImg2ImgPipeline");
  def_model_cpu_offload(sd_img2img)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<AutoencoderKL>,
                    std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("vae"), py::arg("scheduler"))
      .def("run", &StableDiffusionImg2ImgPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionInpaintPipeline, std::shared_ptr<StableDiffusionInpaintPipeline>> sd_inpaint(
      m, "StableDiffusionInpaintPipeline");
  def_model_cpu_offload(sd_inpaint)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<AutoencoderKL>,
                    std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("vae"), py::arg("scheduler"))
      .def("run", &StableDiffusionInpaintPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionUpscaleRequest, StableDiffusionRequest> upscale_request(m, "StableDiffusionUpscaleRequest");
  upscale_request.def(py::init<>())
      .def_readwrite("image", &StableDiffusionUpscaleRequest::image)
      .def_readwrite("noise_level", &StableDiffusionUpscaleRequest::noise_level);
  py::class_<StableDiffusionUpscalePipeline, std::shared_ptr<StableDiffusionUpscalePipeline>> upscale(
      m, "StableDiffusionUpscalePipeline");
  def_model_cpu_offload(upscale)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>,
                    std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("vae"), py::arg("low_res_scheduler"),
           py::arg("scheduler"))
      .def("run", &StableDiffusionUpscalePipeline::run, py::arg("request"), py::call_guard<py::gil_scoped_release>());
}

// The ControlNet arguments of diffusers' ControlNet pipelines.
template <typename Class>
Class& def_controlnet_request_fields(Class& cls) {
  using R = typename Class::type;
  cls.def(py::init<>())
      .def_readwrite("control_image", &R::control_image)
      .def_readwrite("controlnet_conditioning_scale", &R::controlnet_conditioning_scale)
      .def_readwrite("guess_mode", &R::guess_mode)
      .def_readwrite("control_guidance_start", &R::control_guidance_start)
      .def_readwrite("control_guidance_end", &R::control_guidance_end);
  return cls;
}

void bind_controlnet(py::module_& m) {
  py::class_<StableDiffusionControlNetRequest, StableDiffusionRequest> request(m, "StableDiffusionControlNetRequest");
  def_controlnet_request_fields(request);
  py::class_<StableDiffusionControlNetImg2ImgRequest, StableDiffusionImg2ImgRequest> img2img_request(
      m, "StableDiffusionControlNetImg2ImgRequest");
  def_controlnet_request_fields(img2img_request);
  py::class_<StableDiffusionControlNetInpaintRequest, StableDiffusionInpaintRequest> inpaint_request(
      m, "StableDiffusionControlNetInpaintRequest");
  def_controlnet_request_fields(inpaint_request);

  py::class_<StableDiffusionControlNetPipeline, std::shared_ptr<StableDiffusionControlNetPipeline>> text2img(
      m, "StableDiffusionControlNetPipeline");
  def_model_cpu_offload(text2img)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<ControlNetModel>,
                    std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("controlnet"), py::arg("vae"),
           py::arg("scheduler"))
      .def("run", &StableDiffusionControlNetPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionControlNetImg2ImgPipeline, std::shared_ptr<StableDiffusionControlNetImg2ImgPipeline>>
      img2img(m, "StableDiffusionControlNetImg2ImgPipeline");
  def_model_cpu_offload(img2img)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<ControlNetModel>,
                    std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("controlnet"), py::arg("vae"),
           py::arg("scheduler"))
      .def("run", &StableDiffusionControlNetImg2ImgPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());

  py::class_<StableDiffusionControlNetInpaintPipeline, std::shared_ptr<StableDiffusionControlNetInpaintPipeline>>
      inpaint(m, "StableDiffusionControlNetInpaintPipeline");
  def_model_cpu_offload(inpaint)
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<ControlNetModel>,
                    std::shared_ptr<AutoencoderKL>, std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("controlnet"), py::arg("vae"),
           py::arg("scheduler"))
      .def("run", &StableDiffusionControlNetInpaintPipeline::run, py::arg("request"),
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace

void bind_pipelines(py::module_& m) {
  bind_loop_types(m);
  bind_kandinsky(m);
  bind_kandinsky_prior(m);
  bind_stable_diffusion_xl(m);
  bind_stable_diffusion(m);
  bind_controlnet(m);
}

}  // namespace nd::bindings

// Bindings for the pipelines: the engine runs the whole call; Python passes checked arguments.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_img2img.h"
#include "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.h"

namespace py = pybind11;

namespace nd::bindings {
namespace {

// Wraps a Python callback_on_step_end; it runs only when the caller supplied one.
StepCallback wrap_step_callback(const std::optional<py::function>& callback) {
  if (!callback) return nullptr;
  py::function fn = *callback;
  return [fn](int64_t step, const at::Tensor& timestep, StepTensors& tensors) {
    py::gil_scoped_acquire gil;
    py::dict current;
    current["latents"] = tensors.latents;
    current["prompt_embeds"] = tensors.prompt_embeds;
    if (tensors.negative_prompt_embeds.defined()) current["negative_prompt_embeds"] = tensors.negative_prompt_embeds;
    py::object result = fn(step, timestep, current);
    if (result.is_none()) return;
    py::dict updates = result.cast<py::dict>();
    if (updates.contains("latents")) tensors.latents = updates["latents"].cast<at::Tensor>();
    if (updates.contains("prompt_embeds")) tensors.prompt_embeds = updates["prompt_embeds"].cast<at::Tensor>();
    if (updates.contains("negative_prompt_embeds")) {
      tensors.negative_prompt_embeds = updates["negative_prompt_embeds"].cast<at::Tensor>();
    }
  };
}

KandinskyV22StepCallback wrap_kandinsky_step_callback(const std::optional<py::function>& callback) {
  if (!callback) return nullptr;
  py::function fn = *callback;
  return [fn](int64_t step, const at::Tensor& timestep, KandinskyV22StepTensors& tensors) {
    py::gil_scoped_acquire gil;
    py::dict current;
    current["latents"] = tensors.latents;
    current["image_embeds"] = tensors.image_embeds;
    if (tensors.negative_image_embeds.defined()) current["negative_image_embeds"] = tensors.negative_image_embeds;
    py::object result = fn(step, timestep, current);
    if (result.is_none()) return;
    py::dict updates = result.cast<py::dict>();
    if (updates.contains("latents")) tensors.latents = updates["latents"].cast<at::Tensor>();
    if (updates.contains("image_embeds")) tensors.image_embeds = updates["image_embeds"].cast<at::Tensor>();
    if (updates.contains("negative_image_embeds")) {
      tensors.negative_image_embeds = updates["negative_image_embeds"].cast<at::Tensor>();
    }
  };
}

void bind_kandinsky(py::module_& m) {
  py::class_<KandinskyV22Img2ImgPipeline, std::shared_ptr<KandinskyV22Img2ImgPipeline>>(m, "KandinskyV22Img2ImgPipeline")
      .def(py::init<std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<Scheduler>, std::shared_ptr<VQModel>>(),
           py::arg("unet"), py::arg("scheduler"), py::arg("movq"))
      .def(
          "run",
          [](KandinskyV22Img2ImgPipeline& self, const at::Tensor& image_embeds,
             std::optional<at::Tensor> negative_image_embeds, const at::Tensor& image, int64_t num_inference_steps,
             double guidance_scale, double strength, int64_t num_images_per_prompt,
             std::vector<at::Generator> generators, bool output_latents, bool progress_bar,
             std::optional<py::function> callback_on_step_end) {
            KandinskyV22Img2ImgRequest r;
            r.image_embeds = image_embeds;
            if (negative_image_embeds) r.negative_image_embeds = *negative_image_embeds;
            r.image = image;
            r.num_inference_steps = num_inference_steps;
            r.guidance_scale = guidance_scale;
            r.strength = strength;
            r.num_images_per_prompt = num_images_per_prompt;
            r.generators = std::move(generators);
            r.output_latents = output_latents;
            r.progress_bar = progress_bar;
            r.callback_on_step_end = wrap_kandinsky_step_callback(callback_on_step_end);
            py::gil_scoped_release release;
            return self.run(r);
          },
          py::kw_only(), py::arg("image_embeds"), py::arg("negative_image_embeds"), py::arg("image"),
          py::arg("num_inference_steps"), py::arg("guidance_scale"), py::arg("strength"),
          py::arg("num_images_per_prompt"), py::arg("generators"), py::arg("output_latents"),
          py::arg("progress_bar"), py::arg("callback_on_step_end"));
}

}  // namespace

void bind_pipelines(py::module_& m) {
  bind_kandinsky(m);
  py::class_<StableDiffusionImg2ImgPipeline, std::shared_ptr<StableDiffusionImg2ImgPipeline>>(
      m, "StableDiffusionImg2ImgPipeline")
      .def(py::init<std::shared_ptr<CLIPTokenizer>, std::shared_ptr<CLIPTextModel>,
                    std::shared_ptr<UNet2DConditionModel>, std::shared_ptr<AutoencoderKL>,
                    std::shared_ptr<Scheduler>>(),
           py::arg("tokenizer"), py::arg("text_encoder"), py::arg("unet"), py::arg("vae"), py::arg("scheduler"))
      .def(
          "run",
          [](StableDiffusionImg2ImgPipeline& self, std::vector<std::string> prompt,
             std::vector<std::string> negative_prompt, std::optional<at::Tensor> prompt_embeds,
             std::optional<at::Tensor> negative_prompt_embeds, const at::Tensor& image, double strength,
             int64_t num_inference_steps, std::vector<double> timesteps, std::vector<double> sigmas,
             double guidance_scale, int64_t num_images_per_prompt, double eta,
             std::vector<at::Generator> generators, std::optional<int64_t> clip_skip, bool output_latents,
             bool progress_bar, std::optional<py::function> callback_on_step_end) {
            StableDiffusionImg2ImgRequest r;
            r.prompt = std::move(prompt);
            r.negative_prompt = std::move(negative_prompt);
            if (prompt_embeds) r.prompt_embeds = *prompt_embeds;
            if (negative_prompt_embeds) r.negative_prompt_embeds = *negative_prompt_embeds;
            r.image = image;
            r.strength = strength;
            r.num_inference_steps = num_inference_steps;
            r.timesteps = std::move(timesteps);
            r.sigmas = std::move(sigmas);
            r.guidance_scale = guidance_scale;
            r.num_images_per_prompt = num_images_per_prompt;
            r.eta = eta;
            r.generators = std::move(generators);
            r.clip_skip = clip_skip;
            r.output_latents = output_latents;
            r.progress_bar = progress_bar;
            r.callback_on_step_end = wrap_step_callback(callback_on_step_end);
            py::gil_scoped_release release;
            return self.run(r);
          },
          py::kw_only(), py::arg("prompt"), py::arg("negative_prompt"), py::arg("prompt_embeds"),
          py::arg("negative_prompt_embeds"), py::arg("image"), py::arg("strength"),
          py::arg("num_inference_steps"), py::arg("timesteps"), py::arg("sigmas"), py::arg("guidance_scale"),
          py::arg("num_images_per_prompt"), py::arg("eta"), py::arg("generators"), py::arg("clip_skip"),
          py::arg("output_latents"), py::arg("progress_bar"), py::arg("callback_on_step_end"));
}

}  // namespace nd::bindings

// Bindings for the pipelines: the engine runs the whole call; Python passes checked arguments.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "pipelines/kandinsky2_2/pipeline_kandinsky2_2_prior.h"
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

// The prior's callback_on_step_end: diffusers' four tensor inputs, any of which it may replace.
PriorStepCallback wrap_prior_step_callback(const std::optional<py::function>& callback) {
  if (!callback) return nullptr;
  py::function fn = *callback;
  return [fn](int64_t step, const at::Tensor& timestep, PriorStepTensors& tensors) {
    py::gil_scoped_acquire gil;
    py::dict current;
    current["latents"] = tensors.latents;
    current["prompt_embeds"] = tensors.prompt_embeds;
    current["text_encoder_hidden_states"] = tensors.text_encoder_hidden_states;
    current["text_mask"] = tensors.text_mask;
    py::object result = fn(step, timestep, current);
    if (result.is_none()) return;
    py::dict updates = result.cast<py::dict>();
    for (auto [name, slot] : {std::pair<const char*, at::Tensor*>{"latents", &tensors.latents},
                              {"prompt_embeds", &tensors.prompt_embeds},
                              {"text_encoder_hidden_states", &tensors.text_encoder_hidden_states},
                              {"text_mask", &tensors.text_mask}}) {
      if (updates.contains(name)) *slot = updates[name].cast<at::Tensor>();
    }
  };
}

void bind_kandinsky_prior(py::module_& m) {
  py::class_<KandinskyV22PriorPipeline, std::shared_ptr<KandinskyV22PriorPipeline>>(m, "KandinskyV22PriorPipeline")
      .def(py::init<std::shared_ptr<PriorTransformer>, std::shared_ptr<CLIPVisionModelWithProjection>,
                    std::shared_ptr<CLIPTextModel>, std::shared_ptr<CLIPTokenizer>, std::shared_ptr<Scheduler>>(),
           py::arg("prior"), py::arg("image_encoder"), py::arg("text_encoder"), py::arg("tokenizer"),
           py::arg("scheduler"))
      .def("get_zero_embed", &KandinskyV22PriorPipeline::get_zero_embed, py::arg("batch_size") = 1,
           py::call_guard<py::gil_scoped_release>())
      .def(
          "run",
          [](KandinskyV22PriorPipeline& self, std::vector<std::string> prompt, std::vector<std::string> negative_prompt,
             int64_t num_images_per_prompt, int64_t num_inference_steps, std::vector<at::Generator> generators,
             std::optional<at::Tensor> latents, double guidance_scale, bool progress_bar,
             std::optional<py::function> callback_on_step_end) {
            KandinskyV22PriorRequest r;
            r.prompt = std::move(prompt);
            r.negative_prompt = std::move(negative_prompt);
            r.num_images_per_prompt = num_images_per_prompt;
            r.num_inference_steps = num_inference_steps;
            r.generators = std::move(generators);
            if (latents) r.latents = *latents;
            r.guidance_scale = guidance_scale;
            r.progress_bar = progress_bar;
            r.callback_on_step_end = wrap_prior_step_callback(callback_on_step_end);
            KandinskyPriorOutput out;
            {
              py::gil_scoped_release release;
              out = self.run(r);
            }
            return py::make_tuple(out.image_embeds, out.negative_image_embeds);
          },
          py::kw_only(), py::arg("prompt"), py::arg("negative_prompt"), py::arg("num_images_per_prompt"),
          py::arg("num_inference_steps"), py::arg("generators"), py::arg("latents"), py::arg("guidance_scale"),
          py::arg("progress_bar"), py::arg("callback_on_step_end"));
}

}  // namespace

void bind_pipelines(py::module_& m) {
  bind_kandinsky_prior(m);
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

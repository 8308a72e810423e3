// Bindings for the models: construct from a config file and weights, call forward. Python
// resolves paths and wraps results in diffusers/transformers output classes.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "bindings/model_loaders.h"
#include "core/errors.h"
#include "models/autoencoders/autoencoder_kl.h"
#include "models/autoencoders/vq_model.h"
#include "models/clip/modeling_clip.h"
#include "models/controlnets/controlnet.h"
#include "models/transformers/prior_transformer.h"
#include "models/unets/unet_2d_condition.h"

namespace py = pybind11;

namespace nd::bindings {
namespace {

py::dict clip_output_to_dict(const CLIPTextOutput& out) {
  py::dict d;
  d["last_hidden_state"] = out.last_hidden_state;
  d["pooler_output"] = out.pooler_output;
  if (out.text_embeds) d["text_embeds"] = *out.text_embeds;
  if (!out.hidden_states.empty()) d["hidden_states"] = py::tuple(py::cast(out.hidden_states));
  return d;
}

void bind_clip(py::module_& m) {
  py::class_<CLIPTextModel, std::shared_ptr<CLIPTextModel>> base(m, "CLIPTextModel");
  def_loaders(base, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                       std::optional<at::ScalarType> dtype) {
    return CLIPTextModel::load(CLIPTextConfig::from_json(json), sd, origin, dtype, false);
  });
  base.def(
      "forward",
      [](const CLIPTextModel& self, const at::Tensor& input_ids,
         std::optional<at::Tensor> attention_mask, bool output_hidden_states) {
        CLIPTextOutput out;
        {
          py::gil_scoped_release release;
          out = self.forward(input_ids, attention_mask, output_hidden_states);
        }
        return clip_output_to_dict(out);
      },
      py::arg("input_ids"), py::arg("attention_mask") = py::none(),
      py::arg("output_hidden_states") = false);

  py::class_<CLIPTextModelWithProjection, CLIPTextModel, std::shared_ptr<CLIPTextModelWithProjection>>
      projected(m, "CLIPTextModelWithProjection");
  def_loaders(projected, [](const io::JsonConfig& json, const io::StateDict& sd,
                            const std::string& origin, std::optional<at::ScalarType> dtype) {
    return CLIPTextModelWithProjection(
        CLIPTextModel::load(CLIPTextConfig::from_json(json), sd, origin, dtype, true));
  });
}

void bind_clip_vision(py::module_& m) {
  py::class_<CLIPVisionModelWithProjection, std::shared_ptr<CLIPVisionModelWithProjection>> cls(
      m, "CLIPVisionModelWithProjection");
  def_loaders(cls, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
    return CLIPVisionModelWithProjection::load(CLIPVisionConfig::from_json(json), sd, origin, dtype);
  });
  cls.def(
      "forward",
      [](const CLIPVisionModelWithProjection& self, const at::Tensor& pixel_values, bool output_hidden_states) {
        CLIPVisionOutput out;
        {
          py::gil_scoped_release release;
          out = self.forward(pixel_values, output_hidden_states);
        }
        py::dict d;
        d["image_embeds"] = out.image_embeds;
        d["last_hidden_state"] = out.last_hidden_state;
        d["pooler_output"] = out.pooler_output;
        if (!out.hidden_states.empty()) d["hidden_states"] = py::tuple(py::cast(out.hidden_states));
        return d;
      },
      py::arg("pixel_values"), py::arg("output_hidden_states") = false);
}

void bind_prior_transformer(py::module_& m) {
  py::class_<PriorTransformer, std::shared_ptr<PriorTransformer>> cls(m, "PriorTransformer");
  def_loaders(cls, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
    return PriorTransformer::load(PriorTransformerConfig::from_json(json), sd, origin, dtype);
  });
  cls.def("forward", &PriorTransformer::forward, py::arg("hidden_states"), py::arg("timestep"),
          py::arg("proj_embedding"), py::arg("encoder_hidden_states") = py::none(),
          py::arg("attention_mask") = py::none(), py::call_guard<py::gil_scoped_release>())
      .def("post_process_latents", &PriorTransformer::post_process_latents, py::arg("prior_latents"),
           py::call_guard<py::gil_scoped_release>());
}

UNetAddedConditions added_conditions(const std::optional<at::Tensor>& text_embeds, const std::optional<at::Tensor>& time_ids,
                                     const std::optional<at::Tensor>& image_embeds) {
  UNetAddedConditions added;
  if (text_embeds) added.text_embeds = *text_embeds;
  if (time_ids) added.time_ids = *time_ids;
  if (image_embeds) added.image_embeds = *image_embeds;
  return added;
}

void bind_unet(py::module_& m) {
  // Opaque: made by project_encoder_states, passed back to forward.
  py::class_<EncoderKeyValues>(m, "EncoderKeyValues");
  py::class_<UNet2DConditionModel, std::shared_ptr<UNet2DConditionModel>> cls(m, "UNet2DConditionModel");
  def_loaders(cls, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
    return UNet2DConditionModel::load(UNet2DConditionConfig::from_json(json), sd, origin, dtype);
  });
  cls.def(
      "forward",
      [](const UNet2DConditionModel& self, const at::Tensor& sample, const at::Tensor& timestep,
         std::optional<at::Tensor> encoder_hidden_states, std::optional<at::Tensor> text_embeds,
         std::optional<at::Tensor> time_ids, std::optional<at::Tensor> image_embeds, const EncoderKeyValues* projected,
         std::optional<std::vector<at::Tensor>> down_block_additional_residuals,
         std::optional<at::Tensor> mid_block_additional_residual, std::optional<at::Tensor> class_labels) {
        UNetAddedConditions added = added_conditions(text_embeds, time_ids, image_embeds);
        if (class_labels) added.class_labels = *class_labels;
        const bool controlled = down_block_additional_residuals.has_value();
        if (controlled != mid_block_additional_residual.has_value()) {
          throw ValueError("down_block_additional_residuals and mid_block_additional_residual (a ControlNet's "
                           "outputs) must be passed together");
        }
        UNetControlResiduals control;
        if (controlled) control = {*down_block_additional_residuals, *mid_block_additional_residual};
        py::gil_scoped_release release;
        return self.forward(sample, timestep, encoder_hidden_states ? *encoder_hidden_states : at::Tensor(), added,
                            projected, controlled ? &control : nullptr);
      },
      py::arg("sample"), py::arg("timestep"), py::arg("encoder_hidden_states"),
      py::arg("text_embeds") = py::none(), py::arg("time_ids") = py::none(), py::arg("image_embeds") = py::none(),
      py::arg("projected") = py::none(), py::arg("down_block_additional_residuals") = py::none(),
      py::arg("mid_block_additional_residual") = py::none(), py::arg("class_labels") = py::none());
  cls.def(
      "project_encoder_states",
      [](const UNet2DConditionModel& self, std::optional<at::Tensor> encoder_hidden_states,
         std::optional<at::Tensor> image_embeds) {
        const UNetAddedConditions added = added_conditions(std::nullopt, std::nullopt, image_embeds);
        py::gil_scoped_release release;
        return self.project_encoder_states(encoder_hidden_states ? *encoder_hidden_states : at::Tensor(), added);
      },
      py::arg("encoder_hidden_states"), py::arg("image_embeds") = py::none());
  cls.def("fuse_qkv_projections", &UNet2DConditionModel::fuse_qkv_projections, py::call_guard<py::gil_scoped_release>())
      .def("unfuse_qkv_projections", &UNet2DConditionModel::unfuse_qkv_projections,
           py::call_guard<py::gil_scoped_release>())
      .def(
          "set_freeu",
          [](UNet2DConditionModel& self, double s1, double s2, double b1, double b2) {
            self.set_freeu(FreeU{s1, s2, b1, b2});
          },
          py::arg("s1"), py::arg("s2"), py::arg("b1"), py::arg("b2"), py::call_guard<py::gil_scoped_release>());
}

void bind_controlnet(py::module_& m) {
  py::class_<ControlNetModel, std::shared_ptr<ControlNetModel>> cls(m, "ControlNetModel");
  def_loaders(cls, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
    return ControlNetModel::load(ControlNetConfig::from_json(json), sd, origin, dtype);
  });
  cls.def(
      "forward",
      [](const ControlNetModel& self, const at::Tensor& sample, const at::Tensor& timestep,
         const at::Tensor& encoder_hidden_states, const at::Tensor& controlnet_cond, double conditioning_scale,
         bool guess_mode, std::optional<at::Tensor> text_embeds, std::optional<at::Tensor> time_ids) {
        const UNetAddedConditions added = added_conditions(text_embeds, time_ids, std::nullopt);
        ControlNetOutput out;
        {
          py::gil_scoped_release release;
          out = self.forward(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                             guess_mode, added);
        }
        return py::make_tuple(py::tuple(py::cast(out.down)), out.mid);
      },
      py::arg("sample"), py::arg("timestep"), py::arg("encoder_hidden_states"), py::arg("controlnet_cond"),
      py::arg("conditioning_scale") = 1.0, py::arg("guess_mode") = false, py::arg("text_embeds") = py::none(),
      py::arg("time_ids") = py::none());
}

void bind_autoencoder_kl(py::module_& m) {
  py::class_<AutoencoderKL, std::shared_ptr<AutoencoderKL>> cls(m, "AutoencoderKL");
  def_loaders(cls, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
    return AutoencoderKL::load(AutoencoderKLConfig::from_json(json), sd, origin, dtype);
  });
  cls.def("encode", &AutoencoderKL::encode, py::arg("x"), py::call_guard<py::gil_scoped_release>())
      .def("decode", &AutoencoderKL::decode, py::arg("z"), py::call_guard<py::gil_scoped_release>())
      .def_property("use_slicing", &AutoencoderKL::slicing, &AutoencoderKL::set_slicing)
      .def_property("use_tiling", &AutoencoderKL::tiling, &AutoencoderKL::set_tiling)
      .def_property_readonly("tile_sample_min_size", &AutoencoderKL::tile_sample_min_size)
      .def_property_readonly("tile_latent_min_size", &AutoencoderKL::tile_latent_min_size)
      .def("fuse_qkv_projections", &AutoencoderKL::fuse_qkv_projections, py::call_guard<py::gil_scoped_release>())
      .def("unfuse_qkv_projections", &AutoencoderKL::unfuse_qkv_projections, py::call_guard<py::gil_scoped_release>());
  m.def(
      "sample_diagonal_gaussian",
      [](const at::Tensor& parameters, std::optional<at::Generator> generator) {
        std::vector<at::Generator> generators;
        if (generator) generators.push_back(*generator);
        return sample_diagonal_gaussian(parameters, generators);
      },
      py::arg("parameters"), py::arg("generator") = py::none());
  m.def("diagonal_gaussian_mode", &diagonal_gaussian_mode, py::arg("parameters"));
}

void bind_vq_model(py::module_& m) {
  py::class_<VQModel, std::shared_ptr<VQModel>> cls(m, "VQModel");
  def_loaders(cls, [](const io::JsonConfig& json, const io::StateDict& sd, const std::string& origin,
                      std::optional<at::ScalarType> dtype) {
    return VQModel::load(VQModelConfig::from_json(json), sd, origin, dtype);
  });
  cls.def("encode", &VQModel::encode, py::arg("x"), py::call_guard<py::gil_scoped_release>())
      .def("decode", &VQModel::decode, py::arg("h"), py::arg("force_not_quantize") = false,
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace

void bind_models(py::module_& m) {
  bind_clip(m);
  bind_clip_vision(m);
  bind_prior_transformer(m);
  bind_unet(m);
  bind_controlnet(m);
  bind_autoencoder_kl(m);
  bind_vq_model(m);
}

}  // namespace nd::bindings

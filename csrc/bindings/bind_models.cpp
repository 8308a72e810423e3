// Bindings for the models: construct from a config file and weights, call forward. Python
// resolves paths and wraps results in diffusers/transformers output classes.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/clip/modeling_clip.h"

namespace py = pybind11;

namespace nd::bindings {
namespace {

io::StateDict to_state_dict(const std::map<std::string, at::Tensor>& tensors) {
  return io::StateDict(tensors.begin(), tensors.end());
}

std::shared_ptr<CLIPTextModel> load_clip_text_model(const std::string& config_path,
                                                    const io::StateDict& state_dict,
                                                    const std::string& origin,
                                                    std::optional<at::ScalarType> dtype,
                                                    bool with_projection) {
  const CLIPTextConfig config = CLIPTextConfig::from_json(io::JsonConfig::from_file(config_path));
  return std::make_shared<CLIPTextModel>(
      CLIPTextModel::load(config, state_dict, origin, dtype, with_projection));
}

py::dict clip_output_to_dict(const CLIPTextOutput& out) {
  py::dict d;
  d["last_hidden_state"] = out.last_hidden_state;
  d["pooler_output"] = out.pooler_output;
  if (out.text_embeds) d["text_embeds"] = *out.text_embeds;
  if (!out.hidden_states.empty()) d["hidden_states"] = py::tuple(py::cast(out.hidden_states));
  return d;
}

}  // namespace

void bind_models(py::module_& m) {
  py::class_<CLIPTextModel, std::shared_ptr<CLIPTextModel>>(m, "CLIPTextModel")
      .def_static(
          "from_safetensors",
          [](const std::string& config_path, const std::vector<std::string>& files,
             std::optional<at::ScalarType> dtype, bool with_projection) {
            const io::StateDict sd = io::load_safetensors(files);
            const std::string origin = files.empty() ? config_path : files.front();
            py::gil_scoped_release release;
            return load_clip_text_model(config_path, sd, origin, dtype, with_projection);
          },
          py::arg("config_path"), py::arg("files"), py::arg("dtype") = py::none(),
          py::arg("with_projection") = false)
      .def_static(
          "from_state_dict",
          [](const std::string& config_path, const std::map<std::string, at::Tensor>& tensors,
             const std::string& origin, std::optional<at::ScalarType> dtype, bool with_projection) {
            return load_clip_text_model(config_path, to_state_dict(tensors), origin, dtype,
                                        with_projection);
          },
          py::arg("config_path"), py::arg("state_dict"), py::arg("origin"),
          py::arg("dtype") = py::none(), py::arg("with_projection") = false)
      .def(
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
          py::arg("output_hidden_states") = false)
      .def("to", &CLIPTextModel::to, py::arg("device") = py::none(), py::arg("dtype") = py::none(),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("dtype", &CLIPTextModel::dtype)
      .def_property_readonly("device", &CLIPTextModel::device)
      .def_property_readonly("with_projection", &CLIPTextModel::with_projection)
      .def("num_parameters", &CLIPTextModel::num_parameters);
}

}  // namespace nd::bindings

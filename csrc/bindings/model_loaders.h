// The two ways every engine model loads, shared by the bind_<area>.cpp files: from safetensors
// files (read in C++, zero-copy) or from a state dict that Python read out of .bin files with
// torch.load(weights_only=True).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/json_config.h"
#include "io/state_dict.h"

namespace nd::bindings {

namespace py = pybind11;

using TensorMap = std::map<std::string, at::Tensor>;

// `Build(config_json, state_dict, origin, dtype)` constructs the model.
template <typename Class, typename Build>
void def_loaders(Class& cls, Build build) {
  using Model = typename Class::type;
  cls.def_static(
         "from_safetensors",
         [build](const std::string& config_path, const std::vector<std::string>& files,
                 std::optional<at::ScalarType> dtype) {
           const io::JsonConfig config = io::JsonConfig::from_file(config_path);
           py::gil_scoped_release release;
           const io::StateDict sd = io::load_safetensors(files);
           return std::make_shared<Model>(build(config, sd, files.empty() ? config_path : files.front(), dtype));
         },
         py::arg("config_path"), py::arg("files"), py::arg("dtype") = py::none())
      .def_static(
          "from_state_dict",
          [build](const std::string& config_path, const TensorMap& tensors, const std::string& origin,
                  std::optional<at::ScalarType> dtype) {
            const io::JsonConfig config = io::JsonConfig::from_file(config_path);
            const io::StateDict sd(tensors.begin(), tensors.end());
            return std::make_shared<Model>(build(config, sd, origin, dtype));
          },
          py::arg("config_path"), py::arg("state_dict"), py::arg("origin"), py::arg("dtype") = py::none())
      .def("to", &Model::to, py::arg("device") = py::none(), py::arg("dtype") = py::none(),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("dtype", &Model::dtype)
      .def_property_readonly("device", &Model::device)
      .def("num_parameters", &Model::num_parameters);
}

}  // namespace nd::bindings

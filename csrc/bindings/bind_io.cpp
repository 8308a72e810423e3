// Bindings for checkpoint I/O: finding weight files, model_index.json and the Hugging Face cache.
// Python (utils/hub_utils.py, models/modeling_utils.py) decides what to do with the answers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "io/checkpoint_files.h"
#include "io/hf_cache.h"
#include "io/safetensors.h"
#include "io/state_dict.h"

namespace py = pybind11;

namespace nd::bindings {

void bind_io(py::module_& m) {
  m.def(
      "find_weight_files",
      [](const std::string& component_dir, const std::optional<std::string>& variant,
         std::optional<bool> use_safetensors) {
        const io::WeightFiles found =
            io::find_weight_files(component_dir, variant, use_safetensors);
        const char* format = found.format == io::WeightFiles::Safetensors ? "safetensors" : "bin";
        return py::make_tuple(format, found.files);
      },
      py::arg("component_dir"), py::arg("variant") = py::none(),
      py::arg("use_safetensors") = py::none(),
      "(format, files): format is 'safetensors' or 'bin' (load with "
      "torch.load(weights_only=True)).");

  m.def(
      "read_model_index",
      [](const std::string& checkpoint_dir) {
        const io::ModelIndex index = io::read_model_index(checkpoint_dir);
        // Validated in C++; handed over as the plain dict diffusers' load_config returns.
        return py::module_::import("json").attr("loads")(index.raw.dump());
      },
      py::arg("checkpoint_dir"));

  m.def(
      "find_in_hf_cache",
      [](const std::string& repo_id, const std::string& revision,
         const std::optional<std::string>& cache_dir) {
        const io::CacheLookup found = io::find_in_hf_cache(repo_id, revision, cache_dir);
        return py::make_tuple(found.snapshot_dir, found.looked_in);
      },
      py::arg("repo_id"), py::arg("revision") = "main", py::arg("cache_dir") = py::none(),
      "(snapshot_dir or None, [paths looked in]); ValueError for an impossible repo id.");

  m.def("hf_cache_roots", &io::hf_cache_roots);
  m.def("copy_weights_on_load", &io::copy_weights_on_load);
  m.def("set_copy_weights_on_load", &io::set_copy_weights_on_load, py::arg("enabled"));

  m.def(
      "safetensors_header",
      [](const std::string& path) {
        const auto file = io::SafetensorsFile::open(path);
        py::list out;
        for (const io::TensorInfo& t : file->tensors()) {
          out.append(py::make_tuple(t.name, io::dtype_name(t.dtype), py::tuple(py::cast(t.shape))));
        }
        return out;
      },
      py::arg("path"), "[(name, dtype, shape)] of a validated safetensors file, sorted by name.");
}

}  // namespace nd::bindings

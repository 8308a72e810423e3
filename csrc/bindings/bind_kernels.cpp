// native_diffusers._C.ops: the fused ops as the engine runs them (CUDA kernel where it applies, the
// ATen composition elsewhere), for the kernel parity tests and bench/bench_kernels.py; and the
// process-wide switches for the kernels, CUDA graphs, the activation layout and the per-step
// host-sync check.
#include <pybind11/pybind11.h>
#include <torch/extension.h>

#include "runtime/cpu_half_compute.h"
#include "runtime/cuda_graph.h"
#include "runtime/fused_ops.h"
#include "runtime/host_sync_check.h"
#include "runtime/memory_format.h"
#include "models/layers.h"

namespace py = pybind11;

namespace nd::bindings {

void bind_kernels(py::module_& m) {
  m.def("cuda_graphs_enabled", &cuda_graphs_enabled);
  m.def("set_cuda_graphs_enabled", &set_cuda_graphs_enabled, py::arg("enabled"));
  m.def("host_sync_check_enabled", &host_sync_check_enabled);
  m.def("set_host_sync_check_enabled", &set_host_sync_check_enabled, py::arg("enabled"));
  m.def("channels_last_mode", [] { return to_string(channels_last_mode()); });
  m.def(
      "set_channels_last_mode",
      [](const std::string& mode) { set_channels_last_mode(parse_channels_last_mode(mode)); }, py::arg("mode"));
  m.def("cpu_half_compute_mode", [] { return to_string(cpu_half_compute_mode()); });
  m.def(
      "set_cpu_half_compute_mode",
      [](const std::string& mode) { set_cpu_half_compute_mode(parse_cpu_half_compute_mode(mode)); }, py::arg("mode"));
  m.def("cpu_has_native_arithmetic", &cpu_has_native_arithmetic, py::arg("dtype"));
  m.def("fused_kernels_available", &fused_kernels_available);
  m.def("fused_kernels_enabled", &fused_kernels_enabled);
  m.def("set_fused_kernels_enabled", &set_fused_kernels_enabled, py::arg("enabled"));
  m.def("fused_attention_enabled", &fused_attention_enabled);
  m.def("set_fused_attention_enabled", &set_fused_attention_enabled, py::arg("enabled"));

  py::module_ ops = m.def_submodule("ops", "The engine's fused ops, each on any device and dtype");
  const auto release_gil = py::call_guard<py::gil_scoped_release>();
  ops.def("attention", &attention, py::arg("query"), py::arg("key"), py::arg("value"), release_gil);
  ops.def(
      "group_norm",
      [](const at::Tensor& x, int64_t num_groups, const std::optional<at::Tensor>& weight,
         const std::optional<at::Tensor>& bias, double eps, const std::optional<at::Tensor>& add, bool apply_silu) {
        return group_norm(x, num_groups, weight.value_or(at::Tensor()), bias.value_or(at::Tensor()), eps,
                          add.value_or(at::Tensor()), apply_silu);
      },
      py::arg("input"), py::arg("num_groups"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
      py::arg("eps") = 1e-5, py::arg("add") = py::none(), py::arg("apply_silu") = false, release_gil);
  ops.def(
      "layer_norm",
      [](const at::Tensor& x, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
         double eps) { return layer_norm(x, weight.value_or(at::Tensor()), bias.value_or(at::Tensor()), eps); },
      py::arg("input"), py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("eps") = 1e-5, release_gil);
  ops.def("geglu", &geglu, py::arg("input"), release_gil);
  ops.def("linear", [](const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
    return Linear{weight, bias}.forward(x);
  }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), release_gil);
  ops.def("conv2d", [](const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride, int64_t padding) {
    return Conv2d{weight, bias, stride, padding}.forward(x);
  }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = 1, py::arg("padding") = 0, release_gil);
  ops.def("masked_attention", [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask, bool is_causal) {
    return masked_attention(q, k, v, mask.value_or(at::Tensor()), is_causal);
  }, py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask") = py::none(), py::arg("is_causal") = false, release_gil);
}

}  // namespace nd::bindings

// Bindings for the schedulers: one engine class per diffusers scheduler behind the common
// nd::Scheduler surface. Python keeps diffusers' config handling (from_config, compatibles) and
// argument checks; the schedule and every step are computed here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "io/json_config.h"
#include "schedulers/scheduling_heun_discrete.h"
#include "schedulers/scheduling_lms_discrete.h"
#include "schedulers/scheduling_utils.h"

namespace py = pybind11;

namespace nd::bindings {
namespace {

py::object tensor_or_none(const at::Tensor& t) { return t.defined() ? py::cast(t) : py::none(); }

}  // namespace

void bind_schedulers(py::module_& m) {
  py::class_<Scheduler, std::shared_ptr<Scheduler>>(m, "Scheduler")
      .def_property_readonly("class_name", &Scheduler::class_name)
      .def("config_json", [](const Scheduler& s) { return s.config_json().dump(); })
      .def_property_readonly("order", &Scheduler::order)
      .def(
          "set_timesteps",
          [](Scheduler& s, std::optional<int64_t> num_inference_steps, std::optional<c10::Device> device,
             const std::vector<double>& timesteps, const std::vector<double>& sigmas) {
            s.set_timesteps(num_inference_steps, device, timesteps, sigmas);
          },
          py::arg("num_inference_steps") = py::none(), py::arg("device") = py::none(),
          py::arg("timesteps") = std::vector<double>{}, py::arg("sigmas") = std::vector<double>{})
      .def("scale_model_input", &Scheduler::scale_model_input, py::arg("sample"), py::arg("timestep"))
      .def(
          "step",
          [](Scheduler& s, const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
             double eta, bool use_clipped_model_output, std::vector<at::Generator> generators,
             std::optional<at::Tensor> variance_noise, double s_churn, double s_tmin, double s_tmax, double s_noise,
             int64_t order, std::optional<int64_t> prev_timestep) {
            StepOptions o;
            o.eta = eta;
            o.use_clipped_model_output = use_clipped_model_output;
            o.generators = std::move(generators);
            if (variance_noise) o.variance_noise = *variance_noise;
            o.s_churn = s_churn;
            o.s_tmin = s_tmin;
            o.s_tmax = s_tmax;
            o.s_noise = s_noise;
            o.order = order;
            o.prev_timestep = prev_timestep;
            SchedulerOutput out;
            {
              py::gil_scoped_release release;
              out = s.step(model_output, timestep, sample, o);
            }
            return py::make_tuple(out.prev_sample, tensor_or_none(out.pred_original_sample));
          },
          py::arg("model_output"), py::arg("timestep"), py::arg("sample"), py::kw_only(), py::arg("eta") = 0.0,
          py::arg("use_clipped_model_output") = false, py::arg("generators") = std::vector<at::Generator>{},
          py::arg("variance_noise") = py::none(), py::arg("s_churn") = 0.0, py::arg("s_tmin") = 0.0,
          py::arg("s_tmax") = std::numeric_limits<double>::infinity(), py::arg("s_noise") = 1.0,
          py::arg("order") = 4, py::arg("prev_timestep") = py::none())
      .def("add_noise", &Scheduler::add_noise, py::arg("original_samples"), py::arg("noise"), py::arg("timesteps"))
      .def_property_readonly("timesteps", [](const Scheduler& s) { return tensor_or_none(s.timesteps()); })
      .def_property_readonly("sigmas", [](const Scheduler& s) { return tensor_or_none(s.sigmas()); })
      .def_property_readonly("init_noise_sigma", &Scheduler::init_noise_sigma)
      .def_property_readonly("num_inference_steps",
                             [](const Scheduler& s) -> std::optional<int64_t> {
                               if (!s.timesteps_set()) return std::nullopt;
                               return s.num_inference_steps();
                             })
      .def("set_begin_index", &Scheduler::set_begin_index, py::arg("begin_index") = 0)
      .def_property_readonly("begin_index", &Scheduler::begin_index)
      .def_property_readonly("step_index", &Scheduler::step_index)
      .def_property_readonly("betas", &Scheduler::betas)
      .def_property_readonly("alphas_cumprod", &Scheduler::alphas_cumprod);

  // Class-specific state beyond the common surface; make_scheduler's results are downcast to it.
  py::class_<HeunDiscreteScheduler, Scheduler, std::shared_ptr<HeunDiscreteScheduler>>(m, "HeunDiscreteScheduler")
      .def_property_readonly("state_in_first_order", &HeunDiscreteScheduler::state_in_first_order);
  py::class_<LMSDiscreteScheduler, Scheduler, std::shared_ptr<LMSDiscreteScheduler>>(m, "LMSDiscreteScheduler")
      .def("get_lms_coefficient", &LMSDiscreteScheduler::lms_coefficient, py::arg("order"), py::arg("t"),
           py::arg("current_order"));

  m.def(
      "make_scheduler",
      [](const std::string& class_name, const std::string& config_text, const std::string& origin) {
        return make_scheduler(class_name, io::JsonConfig(io::parse_json_text(config_text, origin), origin));
      },
      py::arg("class_name"), py::arg("config_json"), py::arg("origin"));
  m.def("load_scheduler", &load_scheduler, py::arg("config_path"));
  m.def("scheduler_class_names", &scheduler_class_names);
}

}  // namespace nd::bindings

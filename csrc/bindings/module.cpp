// The Python module native_diffusers._C. Bindings only translate: each bind_<area>.cpp wraps one
// area of the engine; this file wires them together and maps engine errors to Python's.
#include <pybind11/pybind11.h>

#include <cstring>

#include "core/errors.h"
#include "runtime/interrupt_check.h"

namespace py = pybind11;

namespace {

// Engine messages quote bytes from the files they reject (a parse error shows the bytes around the
// fault), which need not be UTF-8; decoded with backslash escapes, the message always reaches Python
// as the exception it names instead of a UnicodeDecodeError.
void set_python_error(PyObject* type, const char* message) {
  PyObject* text = PyUnicode_DecodeUTF8(message, static_cast<Py_ssize_t>(std::strlen(message)), "backslashreplace");
  if (text == nullptr) {
    PyErr_Clear();
    PyErr_SetString(type, "native_diffusers: engine error with an undecodable message");
    return;
  }
  PyErr_SetObject(type, text);
  Py_DECREF(text);
}

}  // namespace

namespace nd::bindings {
void bind_io(py::module_& m);
void bind_tokenizers(py::module_& m);
void bind_models(py::module_& m);
void bind_pipelines(py::module_& m);
void bind_torch_ops(py::module_& m);
void bind_schedulers(py::module_& m);
void bind_kernels(py::module_& m);
}  // namespace nd::bindings

PYBIND11_MODULE(_C, m) {
  m.doc() = "native_diffusers C++ engine";
  // Most specific first: pybind11 tries translators in reverse registration order, but one
  // translator with ordered catches keeps the mapping in a single readable place.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const nd::OSError& e) {
      set_python_error(PyExc_OSError, e.what());
    } catch (const nd::TypeError& e) {
      set_python_error(PyExc_TypeError, e.what());
    } catch (const nd::ValueError& e) {
      set_python_error(PyExc_ValueError, e.what());
    } catch (const nd::Error& e) {
      set_python_error(PyExc_RuntimeError, e.what());
    }
  });
  // Ctrl-C during a call: the loop checks at every step, and Python's KeyboardInterrupt (or what a
  // user's signal handler raised) ends the call there.
  nd::set_interrupt_check([] {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  });
  nd::bindings::bind_io(m);
  nd::bindings::bind_tokenizers(m);
  nd::bindings::bind_models(m);
  nd::bindings::bind_pipelines(m);
  nd::bindings::bind_torch_ops(m);
  nd::bindings::bind_schedulers(m);
  nd::bindings::bind_kernels(m);
#ifdef ND_WITH_KERNELS
  m.attr("has_cuda_kernels") = true;
#else
  m.attr("has_cuda_kernels") = false;
#endif
}

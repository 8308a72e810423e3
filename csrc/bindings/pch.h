// Precompiled header for the bindings, the only files that see torch/extension.h and pybind11.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/extension.h>

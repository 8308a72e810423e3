// Helpers shared by the scheduler GoogleTests: configs from JSON text, tensors to vectors.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/errors.h"
#include "io/json_config.h"
#include "schedulers/scheduling_utils.h"

namespace nd::testing {

inline io::JsonConfig config_of(const std::string& text) {
  return io::JsonConfig(io::parse_json_text(text, "scheduler_config.json"), "scheduler_config.json");
}

template <typename T>
std::vector<T> values_of(const at::Tensor& t) {
  const at::Tensor c = t.cpu().contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

// SD 1.5's scheduler_config.json.
inline const char* kSd15Config =
    R"({"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
        "trained_betas": null, "clip_sample": false})";

// Expects `make_scheduler(cls, config)` to throw ValueError mentioning every fragment.
inline void expect_rejected(const std::string& cls, const std::string& json, const std::vector<std::string>& fragments) {
  try {
    make_scheduler(cls, config_of(json));
    FAIL() << "expected ValueError for " << json;
  } catch (const ValueError& e) {
    for (const std::string& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

}  // namespace nd::testing

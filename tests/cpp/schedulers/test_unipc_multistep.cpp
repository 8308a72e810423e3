#include "schedulers/scheduling_unipc_multistep.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

const char* kSd = R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})";

TEST(UniPCMultistepSchedulerTest, Schedules) {
  auto s = make_scheduler("UniPCMultistepScheduler", config_of(kSd));
  s->set_timesteps(5, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(s->timesteps()), (std::vector<int64_t>{999, 799, 599, 400, 200}));  // diffusers 0.40
  EXPECT_FLOAT_EQ(values_of<float>(s->sigmas())[1], 5.087765216827393f);
  EXPECT_FLOAT_EQ(values_of<float>(s->sigmas()).back(), 0.0f);
  auto karras = make_scheduler(
      "UniPCMultistepScheduler",
      config_of(R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                    "use_karras_sigmas": true})"));
  karras->set_timesteps(5, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(karras->timesteps()), (std::vector<int64_t>{999, 786, 427, 59, 0}));
  EXPECT_FLOAT_EQ(values_of<float>(karras->sigmas())[3], 0.2479517161846161f);
}

TEST(UniPCMultistepSchedulerTest, LoopMatchesDiffusers) {
  auto s = make_scheduler("UniPCMultistepScheduler", config_of(kSd));
  s->set_timesteps(5, std::nullopt, {}, {});
  at::Tensor x = at::ones({1, 1, 1, 1});
  for (int64_t i = 0; i < s->timesteps().size(0); ++i) x = s->step(0.5 * x, s->timesteps()[i], x, {}).prev_sample;
  EXPECT_FLOAT_EQ(x.item<float>(), 2.737887382507324f);  // diffusers 0.40, same loop
}

TEST(UniPCMultistepSchedulerTest, ConfigRoundTrip) {
  auto s = make_scheduler("UniPCMultistepScheduler",
                          config_of(R"({"solver_type": "midpoint", "disable_corrector": [0, 3]})"));
  const io::Json c = s->config_json();
  EXPECT_EQ(c["solver_type"], "bh2");  // diffusers registers DPM-Solver's solver types as bh2
  EXPECT_EQ(c["disable_corrector"], io::Json::array({0, 3}));
  EXPECT_TRUE(c["solver_p"].is_null());
}

TEST(UniPCMultistepSchedulerTest, BadConfigsAndArguments) {
  testing::expect_rejected("UniPCMultistepScheduler", R"({"solver_type": "rk4"})", {"solver_type"});
  testing::expect_rejected("UniPCMultistepScheduler", R"({"use_flow_sigmas": true})", {"use_flow_sigmas"});
  testing::expect_rejected("UniPCMultistepScheduler", R"({"shift_terminal": 0.1})", {"shift_terminal"});
  testing::expect_rejected("UniPCMultistepScheduler", R"({"prediction_type": "flow_prediction"})",
                           {"prediction_type"});
  auto s = make_scheduler("UniPCMultistepScheduler", config_of("{}"));
  EXPECT_THROW(s->step(at::ones({1}), at::scalar_tensor(999, at::kLong), at::ones({1}), {}), ValueError);
  EXPECT_THROW(s->set_timesteps(std::nullopt, std::nullopt, {}, {1.0, 0.5}), ValueError);
}

}  // namespace
}  // namespace nd

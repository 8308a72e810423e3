#include "schedulers/scheduling_unclip.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

const char* kKandinsky = R"({"prediction_type": "sample", "clip_sample_range": 10.0})";

TEST(UnCLIPSchedulerTest, Schedule) {
  auto s = make_scheduler("UnCLIPScheduler", config_of("{}"));
  s->set_timesteps(5, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(s->timesteps()), (std::vector<int64_t>{999, 749, 500, 250, 0}));  // diffusers 0.40
}

TEST(UnCLIPSchedulerTest, PriorLoopMatchesDiffusers) {
  // The Kandinsky prior's loop: prev_timestep is the next entry of the schedule, none at the end.
  auto s = make_scheduler("UnCLIPScheduler", config_of(kKandinsky));
  s->set_timesteps(5, std::nullopt, {}, {});
  const std::vector<int64_t> ts = values_of<int64_t>(s->timesteps());
  at::Tensor x = at::ones({1, 1});
  for (std::size_t i = 0; i < ts.size(); ++i) {
    StepOptions o;
    o.generators = {at::make_generator<at::CPUGeneratorImpl>(0)};
    if (i + 1 < ts.size()) o.prev_timestep = ts[i + 1];
    x = s->step(0.5 * x, s->timesteps()[static_cast<int64_t>(i)], x, o).prev_sample;
  }
  EXPECT_FLOAT_EQ(x.item<float>(), 0.4448677897453308f);  // diffusers 0.40, same loop and seeds
}

TEST(UnCLIPSchedulerTest, ConfigHasOnlyDiffusersKeys) {
  const io::Json c = make_scheduler("UnCLIPScheduler", config_of(kKandinsky))->config_json();
  EXPECT_EQ(c.size(), 6u);
  EXPECT_EQ(c["prediction_type"], "sample");
  EXPECT_EQ(c["beta_schedule"], "squaredcos_cap_v2");
}

TEST(UnCLIPSchedulerTest, BadConfigsAndArguments) {
  testing::expect_rejected("UnCLIPScheduler", R"({"beta_schedule": "linear"})", {"beta_schedule"});
  testing::expect_rejected("UnCLIPScheduler", R"({"variance_type": "fixed_small"})", {"variance_type"});
  testing::expect_rejected("UnCLIPScheduler", R"({"prediction_type": "v_prediction"})", {"prediction_type"});
  auto s = make_scheduler("UnCLIPScheduler", config_of(R"({"variance_type": "learned_range"})"));
  EXPECT_THROW(s->set_timesteps(1, std::nullopt, {}, {}), ValueError);
  EXPECT_THROW(s->set_timesteps(std::nullopt, std::nullopt, {999.0}, {}), ValueError);
  // learned_range without the variance half of the channels
  EXPECT_THROW(s->step(at::ones({1, 2}), at::scalar_tensor(999, at::kLong), at::ones({1, 2}), {}), ValueError);
  EXPECT_THROW(s->step(at::ones({1, 2}), at::scalar_tensor(1000, at::kLong), at::ones({1, 2}), {}), ValueError);
}

}  // namespace
}  // namespace nd

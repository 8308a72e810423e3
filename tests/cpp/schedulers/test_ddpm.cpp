#include "schedulers/scheduling_ddpm.h"

#include <ATen/CPUGeneratorImpl.h>

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

const char* kSd = R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1})";

TEST(DDPMSchedulerTest, LeadingScheduleAndPreviousTimestep) {
  auto s = std::make_shared<DDPMScheduler>(DDPMSchedulerConfig::from_json(config_of(kSd)));
  // Before set_timesteps the step walks the training schedule one timestep at a time.
  EXPECT_EQ(s->timesteps().size(0), 1000);
  EXPECT_EQ(s->previous_timestep(500), 499);
  s->set_timesteps(10, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(s->timesteps()),
            (std::vector<int64_t>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));  // diffusers 0.40
  EXPECT_EQ(s->previous_timestep(901), 801);
  EXPECT_EQ(s->previous_timestep(1), -1);
  EXPECT_FLOAT_EQ(s->init_noise_sigma().item<float>(), 1.0f);
}

TEST(DDPMSchedulerTest, CustomTimestepsKeepNumInferenceSteps) {
  auto s = std::make_shared<DDPMScheduler>(DDPMSchedulerConfig::from_json(config_of(kSd)));
  s->set_timesteps(std::nullopt, std::nullopt, {999, 500, 3}, {});
  EXPECT_EQ(values_of<int64_t>(s->timesteps()), (std::vector<int64_t>{999, 500, 3}));
  EXPECT_FALSE(s->timesteps_set());  // diffusers leaves num_inference_steps as it was
  EXPECT_EQ(s->previous_timestep(500), 3);
  EXPECT_THROW(s->set_timesteps(std::nullopt, std::nullopt, {3, 500}, {}), ValueError);
  EXPECT_THROW(s->set_timesteps(std::nullopt, std::nullopt, {1000, 5}, {}), ValueError);
  EXPECT_THROW(s->set_timesteps(1001, std::nullopt, {}, {}), ValueError);
}

TEST(DDPMSchedulerTest, NoiseComesFromTheGeneratorAndStopsAtZero) {
  auto s = make_scheduler("DDPMScheduler", config_of(kSd));
  s->set_timesteps(10, std::nullopt, {}, {});
  const at::Tensor x = at::ones({1, 2, 2, 2});
  StepOptions o;
  o.generators = {at::make_generator<at::CPUGeneratorImpl>(7)};
  const at::Tensor a = s->step(0.1 * x, s->timesteps()[0], x, o).prev_sample;
  o.generators = {at::make_generator<at::CPUGeneratorImpl>(7)};
  EXPECT_TRUE(at::equal(a, s->step(0.1 * x, s->timesteps()[0], x, o).prev_sample));
  o.generators = {at::make_generator<at::CPUGeneratorImpl>(8)};
  EXPECT_FALSE(at::equal(a, s->step(0.1 * x, s->timesteps()[0], x, o).prev_sample));
  // At t = 0 (here the last timestep, 1, steps to -1; custom 0 adds no noise).
  s->set_timesteps(std::nullopt, std::nullopt, {5, 0}, {});
  o.generators = {at::make_generator<at::CPUGeneratorImpl>(1)};
  const at::Tensor b = s->step(0.1 * x, s->timesteps()[1], x, o).prev_sample;
  o.generators = {at::make_generator<at::CPUGeneratorImpl>(2)};
  EXPECT_TRUE(at::equal(b, s->step(0.1 * x, s->timesteps()[1], x, o).prev_sample));
}

TEST(DDPMSchedulerTest, LearnedVarianceNeedsDoubledChannels) {
  auto s = make_scheduler("DDPMScheduler", config_of(R"({"variance_type": "learned_range"})"));
  s->set_timesteps(5, std::nullopt, {}, {});
  const at::Tensor x = at::zeros({1, 4, 2, 2});
  EXPECT_THROW(s->step(x, s->timesteps()[0], x, {}), ValueError);
  EXPECT_EQ(s->step(at::zeros({1, 8, 2, 2}), s->timesteps()[0], x, {}).prev_sample.sizes(), x.sizes());
}

TEST(DDPMSchedulerTest, BadConfigs) {
  testing::expect_rejected("DDPMScheduler", R"({"variance_type": "fixed_medium"})", {"variance_type"});
  testing::expect_rejected("DDPMScheduler", R"({"timestep_spacing": "cosine"})", {"timestep_spacing"});
}

}  // namespace
}  // namespace nd

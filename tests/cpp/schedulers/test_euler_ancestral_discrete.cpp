#include "schedulers/scheduling_euler_ancestral_discrete.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

TEST(EulerAncestralDiscreteSchedulerTest, LeadingSpacingWithOffset) {
  auto s = make_scheduler("EulerAncestralDiscreteScheduler",
                          config_of(R"({"timestep_spacing": "leading", "steps_offset": 1})"));
  s->set_timesteps(4, std::nullopt, {}, {});
  EXPECT_EQ(values_of<float>(s->timesteps()), (std::vector<float>{751.0f, 501.0f, 251.0f, 1.0f}));
  EXPECT_FLOAT_EQ(values_of<float>(s->sigmas())[0], 17.51139259338379f);  // diffusers 0.40
  // Leading spacing scales the initial noise by sqrt(sigma_max^2 + 1).
  EXPECT_NEAR(s->init_noise_sigma().item<double>(), std::sqrt(17.51139259338379 * 17.51139259338379 + 1), 1e-4);
}

TEST(EulerAncestralDiscreteSchedulerTest, NoiseComesFromTheGenerator) {
  auto run = [](uint64_t seed) {
    auto s = make_scheduler("EulerAncestralDiscreteScheduler", config_of("{}"));
    s->set_timesteps(3, std::nullopt, {}, {});
    StepOptions o;
    o.generators = {at::make_generator<at::CPUGeneratorImpl>(seed)};
    const at::Tensor x = at::ones({1, 4, 2, 2});
    return s->step(at::zeros_like(x), s->timesteps()[0], x, o).prev_sample;
  };
  EXPECT_TRUE(at::equal(run(1), run(1)));
  EXPECT_FALSE(at::equal(run(1), run(2)));
}

TEST(EulerAncestralDiscreteSchedulerTest, BadConfigs) {
  testing::expect_rejected("EulerAncestralDiscreteScheduler", R"({"prediction_type": "sample"})",
                           {"prediction_type"});
}

}  // namespace
}  // namespace nd

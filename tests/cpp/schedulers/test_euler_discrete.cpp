#include "schedulers/scheduling_euler_discrete.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

const char* kSd =
    R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})";

TEST(EulerDiscreteSchedulerTest, LinspaceSigmas) {
  auto s = make_scheduler("EulerDiscreteScheduler", config_of(kSd));
  s->set_timesteps(4, std::nullopt, {}, {});
  EXPECT_EQ(values_of<float>(s->timesteps()), (std::vector<float>{999.0f, 666.0f, 333.0f, 0.0f}));
  const std::vector<float> sigmas = values_of<float>(s->sigmas());
  const std::vector<float> expected = {14.614646911621094f, 2.9183084964752197f, 0.9323583841323853f,
                                       0.02916753478348255f, 0.0f};  // diffusers 0.40
  ASSERT_EQ(sigmas.size(), expected.size());
  for (size_t i = 0; i < sigmas.size(); ++i) EXPECT_FLOAT_EQ(sigmas[i], expected[i]);
  EXPECT_FLOAT_EQ(s->init_noise_sigma().item<float>(), 14.614646911621094f);
}

TEST(EulerDiscreteSchedulerTest, ScaleAndStepFollowTheSchedule) {
  auto s = make_scheduler("EulerDiscreteScheduler", config_of(kSd));
  s->set_timesteps(4, std::nullopt, {}, {});
  const at::Tensor x = at::ones({1, 1, 1, 1});
  const at::Tensor t = s->timesteps()[0];
  const at::Tensor scaled = s->scale_model_input(x, t);
  EXPECT_NEAR(scaled.item<double>(), 1.0 / std::sqrt(14.614646911621094 * 14.614646911621094 + 1), 1e-6);
  s->step(at::zeros_like(x), t, x, {});
  EXPECT_EQ(*s->step_index(), 1);
  EXPECT_THROW(s->step(at::zeros_like(x), at::scalar_tensor(5, at::kLong), x, {}), ValueError);
}

TEST(EulerDiscreteSchedulerTest, BadConfigs) {
  testing::expect_rejected("EulerDiscreteScheduler", R"({"interpolation_type": "cubic"})", {"interpolation_type"});
  testing::expect_rejected("EulerDiscreteScheduler", R"({"use_beta_sigmas": true})", {"use_beta_sigmas"});
  testing::expect_rejected("EulerDiscreteScheduler", R"({"use_karras_sigmas": true, "use_exponential_sigmas": true})",
                           {"Only one of"});
  testing::expect_rejected("EulerDiscreteScheduler", R"({"final_sigmas_type": "one"})", {"final_sigmas_type"});
}

}  // namespace
}  // namespace nd

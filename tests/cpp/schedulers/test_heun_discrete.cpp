#include "schedulers/scheduling_heun_discrete.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

const char* kSd = R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})";

std::shared_ptr<HeunDiscreteScheduler> make_heun(const char* json) {
  return std::make_shared<HeunDiscreteScheduler>(HeunDiscreteSchedulerConfig::from_json(config_of(json)));
}

TEST(HeunDiscreteSchedulerTest, DoubledSchedule) {
  auto s = make_heun(kSd);
  EXPECT_EQ(s->order(), 2);
  s->set_timesteps(3, std::nullopt, {}, {});
  EXPECT_EQ(values_of<float>(s->timesteps()), (std::vector<float>{999.0f, 499.5f, 499.5f, 0.0f, 0.0f}));
  const std::vector<float> expected = {14.614646911621094f,  1.6155834197998047f,  1.6155834197998047f,
                                       0.02916753478348255f, 0.02916753478348255f, 0.0f};  // diffusers 0.40
  const std::vector<float> sigmas = values_of<float>(s->sigmas());
  ASSERT_EQ(sigmas.size(), expected.size());
  for (size_t i = 0; i < sigmas.size(); ++i) EXPECT_FLOAT_EQ(sigmas[i], expected[i]);
}

TEST(HeunDiscreteSchedulerTest, EulerAndCorrectionAlternate) {
  auto s = make_heun(kSd);
  s->set_timesteps(3, std::nullopt, {}, {});
  at::Tensor x = at::ones({1, 1, 1, 1});
  std::vector<bool> states;
  for (int64_t i = 0; i < s->timesteps().size(0); ++i) {
    const at::Tensor t = s->timesteps()[i];
    states.push_back(s->state_in_first_order());
    x = s->step(0.5 * s->scale_model_input(x, t), t, x, {}).prev_sample;
  }
  EXPECT_EQ(states, (std::vector<bool>{true, false, true, false, true}));
  EXPECT_FLOAT_EQ(x.item<float>(), -0.09571446478366852f);  // diffusers 0.40, same loop
}

TEST(HeunDiscreteSchedulerTest, FirstStepSearchTakesSecondOccurrence) {
  auto s = make_heun(kSd);
  s->set_timesteps(10, std::nullopt, {}, {});
  s->scale_model_input(at::ones({1}), s->timesteps()[5]);  // also at index 6
  EXPECT_EQ(*s->step_index(), 6);
}

TEST(HeunDiscreteSchedulerTest, BadConfigsAndArguments) {
  testing::expect_rejected("HeunDiscreteScheduler", R"({"use_karras_sigmas": true, "use_exponential_sigmas": true})",
                           {"Only one of"});
  testing::expect_rejected("HeunDiscreteScheduler", R"({"use_beta_sigmas": true})", {"use_beta_sigmas"});
  auto karras = make_heun(R"({"use_karras_sigmas": true})");
  EXPECT_THROW(karras->set_timesteps(std::nullopt, std::nullopt, {900, 100}, {}), ValueError);
  EXPECT_THROW(karras->set_timesteps(5, std::nullopt, {}, {14.0, 0.0}), ValueError);
}

}  // namespace
}  // namespace nd

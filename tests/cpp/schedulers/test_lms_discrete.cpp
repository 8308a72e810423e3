#include "schedulers/scheduling_lms_discrete.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

#include <cmath>

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

const char* kSd = R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})";

std::shared_ptr<LMSDiscreteScheduler> make_lms(const char* json) {
  return std::make_shared<LMSDiscreteScheduler>(LMSDiscreteSchedulerConfig::from_json(config_of(json)));
}

TEST(LMSDiscreteSchedulerTest, Schedule) {
  auto s = make_lms(kSd);
  s->set_timesteps(4, std::nullopt, {}, {});
  EXPECT_EQ(values_of<float>(s->timesteps()), (std::vector<float>{999.0f, 666.0f, 333.0f, 0.0f}));
  EXPECT_FLOAT_EQ(values_of<float>(s->sigmas())[1], 2.9183084964752197f);
}

TEST(LMSDiscreteSchedulerTest, CoefficientsAreScipyQuads) {
  auto s = make_lms(kSd);
  s->set_timesteps(4, std::nullopt, {}, {});
  // diffusers 0.40 get_lms_coefficient (scipy.integrate.quad) on this schedule, recorded on an AVX2
  // machine. The sigmas come from ATen's float32 kernels, whose vectorised pow/log round differently
  // under AVX2 and AVX-512 dispatch (an ulp), which the basis polynomial's float32 quotients amplify to
  // ~1e-7 relative; bit-exact parity with diffusers on the same machine is the Python scheduler test's.
  const auto expect_coefficient = [](double got, double expected) {
    EXPECT_NEAR(got, expected, 1e-6 * std::abs(expected));
  };
  expect_coefficient(s->lms_coefficient(3, 2, 0), -1.1474210859517178);
  expect_coefficient(s->lms_coefficient(3, 2, 1), 0.250826418356873);
  expect_coefficient(s->lms_coefficient(3, 2, 2), -0.006596258096398325);
  expect_coefficient(s->lms_coefficient(1, 0, 0), -11.696338415145874);
  // The basis polynomials sum to 1, so the coefficients sum to the interval's length.
  const std::vector<float> sig = values_of<float>(s->sigmas());
  const double sum = s->lms_coefficient(3, 2, 0) + s->lms_coefficient(3, 2, 1) + s->lms_coefficient(3, 2, 2);
  EXPECT_NEAR(sum, static_cast<double>(sig[3]) - static_cast<double>(sig[2]), 1e-6);
}

TEST(LMSDiscreteSchedulerTest, LoopMatchesDiffusers) {
  auto s = make_lms(kSd);
  s->set_timesteps(5, std::nullopt, {}, {});
  at::Tensor x = at::ones({1, 1, 1, 1});
  for (int64_t i = 0; i < s->timesteps().size(0); ++i) {
    const at::Tensor t = s->timesteps()[i];
    x = s->step(0.5 * s->scale_model_input(x, t), t, x, {}).prev_sample;
  }
  EXPECT_FLOAT_EQ(x.item<float>(), 0.22866687178611755f);  // diffusers 0.40, same loop
}

TEST(LMSDiscreteSchedulerTest, BadConfigsAndArguments) {
  testing::expect_rejected("LMSDiscreteScheduler", R"({"use_beta_sigmas": true})", {"use_beta_sigmas"});
  auto s = make_lms(kSd);
  EXPECT_THROW(s->set_timesteps(std::nullopt, std::nullopt, {900, 100}, {}), ValueError);
  s->set_timesteps(5, std::nullopt, {}, {});
  StepOptions o;
  o.order = 0;
  EXPECT_THROW(s->step(at::ones({1}), s->timesteps()[0], at::ones({1}), o), ValueError);
}

}  // namespace
}  // namespace nd

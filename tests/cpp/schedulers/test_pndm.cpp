#include "schedulers/scheduling_pndm.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

TEST(PNDMSchedulerTest, Sd15ScheduleRepeatsTheFirstTimestep) {
  auto s = make_scheduler("PNDMScheduler", config_of(testing::kSd15Config));
  s->set_timesteps(50, std::nullopt, {}, {});
  const std::vector<int64_t> ts = values_of<int64_t>(s->timesteps());
  ASSERT_EQ(ts.size(), 51u);  // values checked against diffusers 0.40
  EXPECT_EQ(std::vector<int64_t>(ts.begin(), ts.begin() + 5), (std::vector<int64_t>{981, 961, 961, 941, 921}));
  EXPECT_EQ(ts.back(), 1);
  EXPECT_EQ(s->timesteps().scalar_type(), at::kLong);
  EXPECT_NEAR(s->alphas_cumprod()[0].item<double>(), 0.9991499781608582, 1e-9);
  EXPECT_NEAR(s->alphas_cumprod()[-1].item<double>(), 0.00466009508818388, 1e-9);
  EXPECT_EQ(s->init_noise_sigma().item<double>(), 1.0);
}

TEST(PNDMSchedulerTest, RungeKuttaWarmupSchedule) {
  auto s = make_scheduler("PNDMScheduler", config_of("{}"));
  s->set_timesteps(10, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(s->timesteps()),
            (std::vector<int64_t>{900, 850, 850, 800, 800, 750, 750, 700, 700, 650, 650, 600, 600, 500, 400, 300, 200,
                                  100, 0}));
}

TEST(PNDMSchedulerTest, StepsStayFiniteAndReachTheEnd) {
  auto s = make_scheduler("PNDMScheduler", config_of(testing::kSd15Config));
  s->set_timesteps(7, std::nullopt, {}, {});
  at::Tensor sample = at::ones({1, 4, 2, 2});
  const at::Tensor ts = s->timesteps();
  for (int64_t i = 0; i < ts.size(0); ++i) sample = s->step(0.1 * sample, ts[i], sample, {}).prev_sample;
  EXPECT_TRUE(at::isfinite(sample).all().item<bool>());
}

TEST(PNDMSchedulerTest, BadConfigsNameKeyAndFile) {
  testing::expect_rejected("PNDMScheduler", R"({"beta_schedule": "cosine"})",
                           {"beta_schedule", "cosine", "scheduler_config.json"});
  testing::expect_rejected("PNDMScheduler", R"({"prediction_type": "sample"})", {"prediction_type", "sample"});
  testing::expect_rejected("PNDMScheduler", R"({"timestep_spacing": "uniform"})", {"timestep_spacing"});
  testing::expect_rejected("PNDMScheduler", R"({"steps_offset": "one"})", {"steps_offset"});
  testing::expect_rejected("KarrasVeScheduler", "{}", {"KarrasVeScheduler"});
  auto s = make_scheduler("PNDMScheduler", config_of("{}"));
  EXPECT_THROW(s->set_timesteps(3, std::nullopt, {}, {}), ValueError);  // the RK warm-up needs 4 steps
  EXPECT_THROW(s->set_timesteps(10, std::nullopt, {1.0}, {}), ValueError);
}

}  // namespace
}  // namespace nd

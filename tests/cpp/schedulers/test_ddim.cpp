#include "schedulers/scheduling_ddim.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

TEST(DDIMSchedulerTest, Spacings) {
  auto leading = make_scheduler("DDIMScheduler", config_of(R"({"steps_offset": 1})"));
  leading->set_timesteps(10, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(leading->timesteps()),
            (std::vector<int64_t>{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  auto trailing = make_scheduler("DDIMScheduler", config_of(R"({"timestep_spacing": "trailing"})"));
  trailing->set_timesteps(7, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(trailing->timesteps()), (std::vector<int64_t>{999, 856, 713, 570, 428, 285, 142}));
}

TEST(DDIMSchedulerTest, EtaZeroIsDeterministicAndClipped) {
  auto s = make_scheduler("DDIMScheduler", config_of("{}"));
  s->set_timesteps(5, std::nullopt, {}, {});
  const at::Tensor sample = at::full({1, 1, 2, 2}, 3.0);
  const SchedulerOutput out = s->step(at::zeros_like(sample), s->timesteps()[0], sample, {});
  // clip_sample defaults to true: x0 is clamped to [-1, 1].
  EXPECT_LE(out.pred_original_sample.max().item<double>(), 1.0);
  EXPECT_TRUE(at::equal(out.prev_sample, s->step(at::zeros_like(sample), s->timesteps()[0], sample, {}).prev_sample));
}

TEST(DDIMSchedulerTest, BadConfigs) {
  testing::expect_rejected("DDIMScheduler", R"({"prediction_type": "flow_prediction"})", {"prediction_type"});
  testing::expect_rejected("DDIMScheduler", R"({"trained_betas": [0.1, 0.2], "num_train_timesteps": 3})",
                           {"trained_betas"});
  auto s = make_scheduler("DDIMScheduler", config_of("{}"));
  EXPECT_THROW(s->set_timesteps(1001, std::nullopt, {}, {}), ValueError);
}

}  // namespace
}  // namespace nd

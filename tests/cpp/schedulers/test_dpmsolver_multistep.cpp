#include "schedulers/scheduling_dpmsolver_multistep.h"

#include "core/errors.h"
#include "scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::values_of;

TEST(DPMSolverMultistepSchedulerTest, KarrasSigmas) {
  auto s = make_scheduler("DPMSolverMultistepScheduler",
                          config_of(R"({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                                        "use_karras_sigmas": true})"));
  s->set_timesteps(5, std::nullopt, {}, {});
  EXPECT_EQ(values_of<int64_t>(s->timesteps()), (std::vector<int64_t>{999, 786, 427, 59, 0}));  // diffusers 0.40
  const std::vector<float> expected = {14.614646911621094f, 4.796544075012207f, 1.2741053104400635f,
                                       0.2479517161846161f, 0.02916753478348255f, 0.0f};
  const std::vector<float> sigmas = values_of<float>(s->sigmas());
  ASSERT_EQ(sigmas.size(), expected.size());
  for (size_t i = 0; i < sigmas.size(); ++i) EXPECT_FLOAT_EQ(sigmas[i], expected[i]);
}

TEST(DPMSolverMultistepSchedulerTest, SdeNoiseComesFromTheGenerator) {
  auto run = [](uint64_t seed) {
    auto s = make_scheduler("DPMSolverMultistepScheduler", config_of(R"({"algorithm_type": "sde-dpmsolver++"})"));
    s->set_timesteps(4, std::nullopt, {}, {});
    StepOptions o;
    o.generators = {at::make_generator<at::CPUGeneratorImpl>(seed)};
    at::Tensor x = at::ones({1, 4, 2, 2});
    for (int64_t i = 0; i < 4; ++i) x = s->step(0.1 * x, s->timesteps()[i], x, o).prev_sample;
    return x;
  };
  EXPECT_TRUE(at::equal(run(3), run(3)));
  EXPECT_FALSE(at::equal(run(3), run(4)));
}

TEST(DPMSolverMultistepSchedulerTest, BadConfigs) {
  testing::expect_rejected("DPMSolverMultistepScheduler", R"({"algorithm_type": "dpm"})", {"algorithm_type"});
  testing::expect_rejected("DPMSolverMultistepScheduler", R"({"solver_order": 4})", {"solver_order"});
  testing::expect_rejected("DPMSolverMultistepScheduler", R"({"algorithm_type": "dpmsolver"})",
                           {"final_sigmas_type"});
  testing::expect_rejected("DPMSolverMultistepScheduler", R"({"use_flow_sigmas": true})", {"use_flow_sigmas"});
  testing::expect_rejected("DPMSolverMultistepScheduler", R"({"solver_type": "rk4"})", {"solver_type"});
}

}  // namespace
}  // namespace nd

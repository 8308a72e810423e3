// The denoising loop on its own, with a recording denoiser and real schedulers: the order of its
// seams, its timestep count, interrupt, the progress rule's legacy callback, and get_timesteps.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/errors.h"
#include "pipelines/denoising_loop.h"
#include "pipelines/guiders/classifier_free_guidance.h"
#include "pipelines/guiders/no_guidance.h"
#include "pipelines/pipeline_utils.h"
#include "../schedulers/scheduler_test_utils.h"

namespace nd {
namespace {

using testing::config_of;
using testing::kSd15Config;

std::shared_ptr<Scheduler> scheduler_with_steps(const std::string& cls, int64_t steps) {
  std::shared_ptr<Scheduler> s = make_scheduler(cls, config_of(kSd15Config));
  s->set_timesteps(steps, c10::Device(c10::kCPU), {}, {});
  return s;
}

// Predicts a constant and records the batch and timestep of every call.
class RecordingDenoiser : public Denoiser {
 public:
  at::Tensor operator()(const LoopStep& step) override {
    batches.push_back(step.model_input.size(0));
    timesteps.push_back(step.timestep_host.item<double>());
    saw_prompt.push_back(step.tensors.count("prompt_embeds") ? step.tensors.at("prompt_embeds").item<float>() : -1);
    return at::full_like(step.model_input, 0.1);
  }
  void after_step_callback() override { ++callbacks_seen; }
  std::vector<int64_t> batches;
  std::vector<double> timesteps;
  std::vector<float> saw_prompt;
  int callbacks_seen = 0;
};

class RecordingHook : public AfterStepHook {
 public:
  at::Tensor after_step(const LoopStep& step, const at::Tensor& latents) const override {
    steps.push_back(step.index);
    return latents * 0;
  }
  mutable std::vector<int64_t> steps;
};

DenoisingLoopSpec spec_for(Scheduler& scheduler, Denoiser& denoiser, const Guider& guider) {
  DenoisingLoopSpec spec;
  spec.window = full_schedule(scheduler, 5);
  spec.scheduler = &scheduler;
  spec.denoiser = &denoiser;
  spec.guider = &guider;
  spec.progress_bar.disable = true;
  return spec;
}

StepTensors start() { return {{"latents", at::ones({1, 4, 2, 2})}, {"prompt_embeds", at::full({}, 3.0)}}; }

TEST(DenoisingLoop, RunsEveryTimestepOfTheWindowInOrder) {
  auto scheduler = scheduler_with_steps("EulerDiscreteScheduler", 5);
  RecordingDenoiser denoiser;
  const NoGuidance guider;
  const DenoisingLoopResult result = run_denoising_loop(spec_for(*scheduler, denoiser, guider), start());
  EXPECT_EQ(result.num_timesteps, 5);
  EXPECT_FALSE(result.interrupted);
  ASSERT_EQ(denoiser.timesteps.size(), 5u);
  for (int64_t i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(denoiser.timesteps[i], scheduler->timesteps()[i].item<double>());
  EXPECT_EQ(denoiser.batches, std::vector<int64_t>(5, 1));
  EXPECT_EQ(denoiser.callbacks_seen, 0);  // no callback, nothing to derive again
}

TEST(DenoisingLoop, ClassifierFreeGuidanceDoublesTheBatchAndCombinesIt) {
  auto scheduler = scheduler_with_steps("EulerDiscreteScheduler", 5);
  RecordingDenoiser denoiser;
  const ClassifierFreeGuidance guider(7.5);
  run_denoising_loop(spec_for(*scheduler, denoiser, guider), start());
  EXPECT_EQ(denoiser.batches, std::vector<int64_t>(5, 2));
  // A constant prediction guides to itself: uncond + s * (cond - uncond) = 0.1.
  const at::Tensor p = at::full({2, 1}, 0.1);
  EXPECT_TRUE(at::allclose(guider.combine(p), at::full({1, 1}, 0.1)));
  const at::Tensor split = at::cat({at::full({1, 1}, 1.0), at::full({1, 1}, 3.0)});
  EXPECT_TRUE(at::allclose(guider.combine(split), at::full({1, 1}, 1.0 + 7.5 * 2.0)));
}

TEST(DenoisingLoop, CallbackReplacesTensorsAndInterruptStopsAfterItsStep) {
  auto scheduler = scheduler_with_steps("EulerDiscreteScheduler", 5);
  RecordingDenoiser denoiser;
  const NoGuidance guider;
  DenoisingLoopSpec spec = spec_for(*scheduler, denoiser, guider);
  std::vector<int64_t> called;
  spec.callback_on_step_end = [&](int64_t step, const at::Tensor&, const StepTensors&) {
    called.push_back(step);
    StepCallbackOutput out;
    out.tensors["prompt_embeds"] = at::full({}, 7.0);
    out.tensors["not_a_step_tensor"] = at::full({}, 1.0);  // ignored, as diffusers pops only its own
    out.interrupt = step == 2;
    return out;
  };
  const DenoisingLoopResult result = run_denoising_loop(spec, start());
  EXPECT_TRUE(result.interrupted);
  EXPECT_EQ(called, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(denoiser.timesteps.size(), 3u);
  EXPECT_EQ(denoiser.saw_prompt, (std::vector<float>{3, 7, 7}));
  EXPECT_EQ(denoiser.callbacks_seen, 3);
  EXPECT_EQ(result.num_timesteps, 5);  // diffusers' num_timesteps is the window, set before the loop
}

TEST(DenoisingLoop, AfterStepHooksRunBeforeTheCallbackAndReplaceLatents) {
  auto scheduler = scheduler_with_steps("DDIMScheduler", 5);
  RecordingDenoiser denoiser;
  const NoGuidance guider;
  RecordingHook hook;
  DenoisingLoopSpec spec = spec_for(*scheduler, denoiser, guider);
  spec.after_step = {&hook};
  double seen_sum = -1;
  spec.callback_on_step_end = [&](int64_t, const at::Tensor&, const StepTensors& tensors) {
    seen_sum = tensors.at("latents").abs().sum().item<double>();
    return StepCallbackOutput{};
  };
  const DenoisingLoopResult result = run_denoising_loop(spec, start());
  EXPECT_EQ(hook.steps, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(seen_sum, 0.0);
  EXPECT_EQ(result.latents.abs().sum().item<double>(), 0.0);
}

TEST(DenoisingLoop, LegacyCallbackFollowsTheProgressRuleOfSecondOrderSchedulers) {
  // Heun repeats every timestep but the first: 5 steps are 9 evaluations, the bar (and diffusers'
  // deprecated callback) advancing after each completed step.
  auto scheduler = scheduler_with_steps("HeunDiscreteScheduler", 5);
  RecordingDenoiser denoiser;
  const NoGuidance guider;
  DenoisingLoopSpec spec = spec_for(*scheduler, denoiser, guider);
  spec.window = full_schedule(*scheduler, 5);
  std::vector<int64_t> legacy;
  spec.callback = [&](int64_t step, const at::Tensor&, const at::Tensor&) { legacy.push_back(step); };
  const DenoisingLoopResult result = run_denoising_loop(spec, start());
  EXPECT_EQ(result.num_timesteps, 9);
  EXPECT_EQ(legacy, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  spec.callback_steps = 0;
  EXPECT_THROW(run_denoising_loop(spec, start()), ValueError);
}

TEST(DenoisingLoop, RefusesAnIncompleteSpec) {
  auto scheduler = scheduler_with_steps("EulerDiscreteScheduler", 5);
  RecordingDenoiser denoiser;
  const NoGuidance guider;
  DenoisingLoopSpec spec = spec_for(*scheduler, denoiser, guider);
  spec.guider = nullptr;
  EXPECT_THROW(run_denoising_loop(spec, start()), ValueError);
  EXPECT_THROW(run_denoising_loop(spec_for(*scheduler, denoiser, guider), StepTensors{}), ValueError);
}

TEST(GetTimesteps, CutsByStrengthWithTheSchedulersOrder) {
  // PNDM (skip_prk_steps) repeats its second timestep: 10 steps are 11 timesteps.
  auto pndm = scheduler_with_steps("PNDMScheduler", 10);
  ASSERT_EQ(pndm->timesteps().size(0), 11);
  const TimestepWindow half = get_timesteps(*pndm, 10, 0.5, std::nullopt);
  EXPECT_EQ(half.timesteps.size(0), 6);
  EXPECT_EQ(half.num_inference_steps, 5);
  // int() truncation: 50 * 0.58 -> 28 steps.
  auto euler = scheduler_with_steps("EulerDiscreteScheduler", 50);
  EXPECT_EQ(get_timesteps(*euler, 50, 0.58, std::nullopt).timesteps.size(0), 28);
  auto heun = scheduler_with_steps("HeunDiscreteScheduler", 10);
  const TimestepWindow heun_half = get_timesteps(*heun, 10, 0.5, std::nullopt);
  EXPECT_EQ(heun_half.timesteps.size(0), 9);  // t_start * order = 10 of the 19 skipped
  EXPECT_EQ(heun_half.num_warmup_steps, 0);
}

TEST(GetTimesteps, DenoisingStartKeepsSecondOrderPairsWhole) {
  auto heun = scheduler_with_steps("HeunDiscreteScheduler", 10);
  const TimestepWindow w = get_timesteps(*heun, 10, 0.3, 0.6);
  EXPECT_EQ(w.timesteps.size(0) % 2, 1);  // odd: never between the two evaluations of a step
  const TimestepWindow end = cut_at_denoising_end(full_schedule(*heun, 10), *heun, 0.5);
  EXPECT_LT(end.timesteps.size(0), heun->timesteps().size(0));
  EXPECT_EQ(end.num_warmup_steps, full_schedule(*heun, 10).num_warmup_steps);
}

TEST(GetTimesteps, RefusesAStrengthOutsideTheUnitInterval) {
  auto euler = scheduler_with_steps("EulerDiscreteScheduler", 10);
  EXPECT_THROW(get_timesteps(*euler, 10, std::nan(""), std::nullopt), ValueError);
  EXPECT_THROW(get_timesteps(*euler, 10, 1.5, std::nullopt), ValueError);
  EXPECT_THROW(get_timesteps(*euler, 10, -0.1, std::nullopt), ValueError);
}

}  // namespace
}  // namespace nd

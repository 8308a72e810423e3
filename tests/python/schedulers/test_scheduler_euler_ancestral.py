"""EulerAncestralDiscreteScheduler parity with diffusers: schedules, noisy steps from the same
torch.Generator seed, add_noise and the img2img cut."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              make_pair, run_loop)
from tolerances import STEP_ATOL

NAME = "EulerAncestralDiscreteScheduler"


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25])
def test_denoising_loop(prediction_type, spacing, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, prediction_type=prediction_type, timestep_spacing=spacing, steps_offset=1)
    run_loop(ref, ours, num_inference_steps, seed=num_inference_steps)


def test_generator_list_per_batch_item():
    ref, ours = make_pair(NAME, **SD15)
    ref.set_timesteps(3)
    ours.set_timesteps(3)
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    t = ref.timesteps[0]
    gens = lambda: [torch.Generator().manual_seed(s) for s in (5, 6)]  # noqa: E731
    expected = ref.step(0.1 * x, t, x, generator=gens()).prev_sample
    got = ours.step(0.1 * x, t, x, generator=gens()).prev_sample
    torch.testing.assert_close(got, expected, atol=STEP_ATOL, rtol=0)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut(strength):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing="leading", steps_offset=1)
    run_loop(ref, ours, 50, strength=strength, seed=3)


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15)
    assert_add_noise_equal(ref, ours)

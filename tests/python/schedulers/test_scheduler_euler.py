"""EulerDiscreteScheduler parity with diffusers: schedules (incl. Karras, exponential, log-linear,
custom timesteps/sigmas), steps with and without churn noise, add_noise and the img2img cut."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              make_pair, run_loop)

NAME = "EulerDiscreteScheduler"


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("options", [
    dict(use_karras_sigmas=True), dict(use_exponential_sigmas=True), dict(interpolation_type="log_linear"),
    dict(final_sigmas_type="sigma_min"), dict(use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0),
    dict(rescale_betas_zero_snr=True, timestep_spacing="trailing"),
    dict(timestep_type="continuous", prediction_type="v_prediction"),
    dict(beta_schedule="squaredcos_cap_v2"), dict(beta_schedule="linear"),
])
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps_options(options, num_inference_steps):
    ref, ours = make_pair(NAME, **{**SD15, **options})
    assert_schedule_equal(ref, ours, num_inference_steps)


def test_custom_timesteps_and_sigmas():
    ref, ours = make_pair(NAME, **SD15)
    assert_schedule_equal(ref, ours, None, timesteps=[999, 800, 500.5, 120, 3])
    assert_schedule_equal(ref, ours, None, sigmas=[14.6, 7.0, 2.5, 0.9, 0.1, 0.0])
    with pytest.raises(ValueError, match="Only one of"):
        ours.set_timesteps(timesteps=[1], sigmas=[1.0, 0.0])
    with pytest.raises(ValueError, match="Can only pass one of"):
        ours.set_timesteps(10, timesteps=[1])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize(
    "options", [dict(), dict(use_karras_sigmas=True), dict(timestep_spacing="leading", steps_offset=1)]
)
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25])
def test_denoising_loop(prediction_type, options, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, prediction_type=prediction_type, **options)
    run_loop(ref, ours, num_inference_steps)


def test_churn_noise_uses_the_generator():
    ref, ours = make_pair(NAME, **SD15)
    run_loop(ref, ours, 10, step_kwargs=dict(s_churn=3.0, s_tmin=0.5, s_tmax=10.0), seed=42)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut(strength):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing="leading", steps_offset=1)
    assert run_loop(ref, ours, 50, strength=strength) == min(int(50 * strength), 50)


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15)
    assert_add_noise_equal(ref, ours)


def test_integer_timestep_rejected():
    _, ours = make_pair(NAME, **SD15)
    ours.set_timesteps(5)
    with pytest.raises(ValueError, match="integer indices"):
        ours.step(torch.zeros(1, 4, 2, 2), 3, torch.zeros(1, 4, 2, 2))

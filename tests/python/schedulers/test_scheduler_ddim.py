"""DDIMScheduler parity with diffusers: schedules, eta 0 and eta 1 (noise from the same generator),
clipping and thresholding, add_noise and the img2img cut."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              make_pair, run_loop)

NAME = "DDIMScheduler"
SD15_DDIM = dict(SD15, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25])
def test_denoising_loop(prediction_type, eta, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15_DDIM, prediction_type=prediction_type)
    run_loop(ref, ours, num_inference_steps, step_kwargs=dict(eta=eta), seed=11)


@pytest.mark.parametrize("options", [
    dict(clip_sample=True), dict(thresholding=True, sample_max_value=1.5),
    # zero terminal SNR is meant for v-prediction (epsilon divides by alpha_T = 0)
    dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"),
    dict(set_alpha_to_one=True),
])
def test_denoising_loop_options(options):
    ref, ours = make_pair(NAME, **{**SD15_DDIM, **options})
    run_loop(ref, ours, 10, step_kwargs=dict(eta=0.5, use_clipped_model_output=True), seed=2)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut(strength):
    ref, ours = make_pair(NAME, **SD15_DDIM)
    assert run_loop(ref, ours, 50, strength=strength) == min(int(50 * strength), 50)


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15_DDIM)
    assert_add_noise_equal(ref, ours)


def test_variance_noise_and_generator_conflict():
    _, ours = make_pair(NAME, **SD15_DDIM)
    ours.set_timesteps(5)
    x = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match="Cannot pass both"):
        ours.step(x, ours.timesteps[0], x, eta=1.0, generator=torch.Generator(), variance_noise=x)

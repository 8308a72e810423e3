"""HeunDiscreteScheduler parity with diffusers: the doubled schedule (every timestep but the first
twice, sigmas likewise), Karras/exponential sigmas, custom timesteps, the alternation of Euler and
correction halves (state_in_first_order), add_noise, the img2img cut of t_start * order entries
whose first step lands on a timestep's second occurrence, and the switch from SD 1.5's PNDM config."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              diffusers, make_pair, nd, run_loop)

NAME = "HeunDiscreteScheduler"
SD15_PNDM = dict(SD15, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, _class_name="PNDMScheduler")


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)
    assert len(ours.timesteps) == 2 * num_inference_steps - 1 and len(ours.sigmas) == 2 * num_inference_steps


@pytest.mark.parametrize("options", [
    dict(use_karras_sigmas=True), dict(use_exponential_sigmas=True), dict(beta_schedule="squaredcos_cap_v2"),
    dict(beta_schedule="linear"), dict(use_karras_sigmas=True, timestep_spacing="leading", steps_offset=1),
])
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps_options(options, num_inference_steps):
    ref, ours = make_pair(NAME, **{**SD15, **options})
    assert_schedule_equal(ref, ours, num_inference_steps)


def test_defaults_and_schedule_before_set_timesteps():
    ref, ours = make_pair(NAME)
    assert ours.config.beta_start == ref.config.beta_start == 0.00085
    assert torch.equal(ours.timesteps, ref.timesteps) and torch.equal(ours.sigmas, ref.sigmas)
    assert ours.num_inference_steps == ref.num_inference_steps == 1000


def test_custom_timesteps():
    ref, ours = make_pair(NAME, **SD15)
    assert_schedule_equal(ref, ours, None, timesteps=[999, 800, 500.5, 120, 3])
    run_loop(ref, ours, 6)
    with pytest.raises(ValueError, match="Can only pass one of"):
        ours.set_timesteps(10, timesteps=[1])
    _, karras = make_pair(NAME, **SD15, use_karras_sigmas=True)
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        karras.set_timesteps(timesteps=[900, 100])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("options", [
    dict(), dict(use_karras_sigmas=True), dict(timestep_spacing="leading", steps_offset=1),
    dict(clip_sample=True, clip_sample_range=2.0),
])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25, 50])
def test_denoising_loop(prediction_type, options, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, prediction_type=prediction_type, **options)
    assert run_loop(ref, ours, num_inference_steps) == 2 * num_inference_steps - 1


def test_state_in_first_order_alternates():
    ref, ours = make_pair(NAME, **SD15)
    states = {}
    for name, s in (("ref", ref), ("ours", ours)):
        s.set_timesteps(3)
        x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        states[name] = []
        for t in s.timesteps:
            states[name].append(s.state_in_first_order)
            x = s.step(0.1 * s.scale_model_input(x, t), t, x).prev_sample
        # The last timestep is an Euler step to sigma 0 whose correction never comes.
        states[name].append(s.state_in_first_order)
    assert states["ours"] == states["ref"] == [True, False, True, False, True, False]
    assert ours.step_index == ref.step_index == 5


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("options", [dict(timestep_spacing="leading", steps_offset=1), dict(use_karras_sigmas=True)])
def test_img2img_cut(strength, options):
    ref, ours = make_pair(NAME, **SD15, **options)
    t_start = 50 - min(int(50 * strength), 50)
    # timesteps[t_start * 2:]: the first kept entry is a timestep's second occurrence (or the first timestep).
    assert run_loop(ref, ours, 50, strength=strength) == 2 * 50 - 1 - 2 * t_start


def test_img2img_without_begin_index_uses_second_occurrence():
    """Without set_begin_index, the first step searches the schedule and takes the second match."""
    ref, ours = make_pair(NAME, **SD15)
    for s in (ref, ours):
        s.set_timesteps(10)
    t = ref.timesteps[5]  # occurs at indices 5 and 6
    x = torch.ones(1, 4, 2, 2)
    ref.scale_model_input(x, t)
    ours.scale_model_input(x, t)
    assert ours.step_index == ref.step_index == 6


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15)
    assert_add_noise_equal(ref, ours)


def test_from_pndm_sd15_config():
    ref_pndm = diffusers.PNDMScheduler.from_config(SD15_PNDM)
    our_pndm = nd.PNDMScheduler.from_config(SD15_PNDM)
    ref = diffusers.HeunDiscreteScheduler.from_config(ref_pndm.config)
    ours = nd.HeunDiscreteScheduler.from_config(our_pndm.config)
    for key, value in ref.config.items():
        if key == "_use_default_values":
            assert sorted(ours.config[key]) == sorted(value)
        else:
            assert ours.config[key] == value, key
    assert_schedule_equal(ref, ours, 25)
    run_loop(ref, ours, 25, strength=0.58)


def test_bad_configs():
    with pytest.raises(ValueError, match="Only one of"):
        nd.HeunDiscreteScheduler(use_karras_sigmas=True, use_exponential_sigmas=True)
    with pytest.raises(ValueError, match="use_beta_sigmas"):
        nd.HeunDiscreteScheduler(use_beta_sigmas=True)

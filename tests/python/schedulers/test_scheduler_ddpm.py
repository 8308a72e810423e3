"""DDPMScheduler parity with diffusers: schedules (spacings, custom timesteps), every variance_type
with noise from the same generator, learned variances from a doubled model output, clipping and
thresholding, add_noise, the img2img cut and the switch from SD 1.5's PNDM config."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, STEP_ATOL, assert_add_noise_equal,
                              assert_schedule_equal, diffusers, fake_model, make_pair, nd, run_loop)

NAME = "DDPMScheduler"
SD15_PNDM = dict(SD15, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, _class_name="PNDMScheduler")


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


def test_timesteps_before_set_and_errors():
    ref, ours = make_pair(NAME, **SD15)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert ours.num_inference_steps is None and ours.init_noise_sigma == ref.init_noise_sigma == 1.0
    with pytest.raises(ValueError, match="cannot be larger"):
        ours.set_timesteps(1001)
    with pytest.raises(ValueError, match="descending"):
        ours.set_timesteps(timesteps=[10, 20])
    with pytest.raises(ValueError, match="must start before"):
        ours.set_timesteps(timesteps=[1000, 20])
    with pytest.raises(ValueError, match="Can only pass one of"):
        ours.set_timesteps(10, timesteps=[5])


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_small_log", "fixed_large"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25, 50])
def test_denoising_loop(variance_type, prediction_type, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, variance_type=variance_type, prediction_type=prediction_type)
    run_loop(ref, ours, num_inference_steps, seed=3)


@pytest.mark.parametrize("options", [
    dict(clip_sample=False), dict(thresholding=True, sample_max_value=1.5), dict(timestep_spacing="trailing"),
    dict(rescale_betas_zero_snr=True, timestep_spacing="trailing"), dict(beta_schedule="squaredcos_cap_v2"),
    dict(timestep_spacing="linspace", clip_sample_range=2.0),
])
def test_denoising_loop_options(options):
    ref, ours = make_pair(NAME, **{**SD15, **options})
    run_loop(ref, ours, 25, seed=11)


def test_full_training_schedule_without_set_timesteps():
    # Before set_timesteps diffusers steps over all 1000 training timesteps, prev_t = t - 1.
    ref, ours = make_pair(NAME, **SD15)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 4, generator=g)
    out_ref = ref.step(0.3 * x, 500, x, generator=torch.Generator().manual_seed(1))
    out_ours = ours.step(0.3 * x, 500, x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out_ours.prev_sample, out_ref.prev_sample, atol=STEP_ATOL, rtol=0)


@pytest.mark.parametrize("variance_type", ["learned", "learned_range"])
def test_learned_variance(variance_type):
    ref, ours = make_pair(NAME, **SD15, variance_type=variance_type)
    ref.set_timesteps(10)
    ours.set_timesteps(10)
    g = torch.Generator().manual_seed(4)
    sample = torch.randn(2, 3, 8, 8, generator=g)
    # The second half of the channels is the variance (in [-1, 1] for learned_range, positive for learned).
    for t in ref.timesteps:
        model_output = torch.cat([torch.randn(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)], dim=1)
        out_ref = ref.step(model_output, t, sample, generator=torch.Generator().manual_seed(int(t)))
        out_ours = ours.step(model_output, t, sample, generator=torch.Generator().manual_seed(int(t)))
        torch.testing.assert_close(out_ours.prev_sample, out_ref.prev_sample, atol=STEP_ATOL, rtol=0)
        torch.testing.assert_close(out_ours.pred_original_sample, out_ref.pred_original_sample, atol=STEP_ATOL, rtol=0)
        sample = out_ref.prev_sample


def test_custom_timesteps_loop():
    ref, ours = make_pair(NAME, **SD15)
    custom = [999, 800, 601, 400, 250, 120, 42, 0]
    ref.set_timesteps(timesteps=custom)
    ours.set_timesteps(timesteps=custom)
    assert torch.equal(ours.timesteps, ref.timesteps)
    g = torch.Generator().manual_seed(9)
    fixed, sample = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    gen_ref, gen_ours = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for t in ref.timesteps:
        out_ref = ref.step(fake_model(sample, t, fixed), t, sample, generator=gen_ref)
        out_ours = ours.step(fake_model(sample, t, fixed), t, sample, generator=gen_ours)
        torch.testing.assert_close(out_ours.prev_sample, out_ref.prev_sample, atol=STEP_ATOL, rtol=0)
        sample = out_ref.prev_sample


def test_per_sample_generators():
    ref, ours = make_pair(NAME, **SD15)
    ref.set_timesteps(5)
    ours.set_timesteps(5)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = ref.timesteps[1]
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    torch.testing.assert_close(ours.step(0.5 * x, t, x, generator=gens()).prev_sample,
                               ref.step(0.5 * x, t, x, generator=gens()).prev_sample, atol=STEP_ATOL, rtol=0)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut(strength):
    ref, ours = make_pair(NAME, **SD15, steps_offset=1)
    assert run_loop(ref, ours, 50, strength=strength, seed=2) == min(int(50 * strength), 50)


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15)
    assert_add_noise_equal(ref, ours)


def test_from_pndm_sd15_config():
    ref_pndm = diffusers.PNDMScheduler.from_config(SD15_PNDM)
    our_pndm = nd.PNDMScheduler.from_config(SD15_PNDM)
    ref = diffusers.DDPMScheduler.from_config(ref_pndm.config)
    ours = nd.DDPMScheduler.from_config(our_pndm.config)
    for key, value in ref.config.items():
        if key == "_use_default_values":
            assert sorted(ours.config[key]) == sorted(value)
        else:
            assert ours.config[key] == value, key
    assert_schedule_equal(ref, ours, 25)
    run_loop(ref, ours, 25, strength=0.8)


def test_bad_configs():
    with pytest.raises(ValueError, match="variance_type"):
        nd.DDPMScheduler(variance_type="fixed_medium")
    _, ours = make_pair(NAME, **SD15, variance_type="learned")
    ours.set_timesteps(5)
    with pytest.raises(ValueError, match="twice the sample's channels"):
        ours.step(torch.zeros(1, 4, 2, 2), ours.timesteps[0], torch.zeros(1, 4, 2, 2))

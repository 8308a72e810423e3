"""LMSDiscreteScheduler parity with diffusers: schedules (Karras, exponential), the linear multistep
coefficients diffusers takes from scipy's quad (reproduced in C++), orders 1-4, add_noise, the
img2img cut (whose first steps pair more coefficients than stored derivatives, as diffusers' zip
does) and the switch from SD 1.5's PNDM config."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_ATOL, STEP_COUNTS, STRENGTHS, assert_add_noise_equal,
                              assert_schedule_equal, assert_timesteps_equal, diffusers, fake_model, img2img_timesteps,
                              make_pair, nd, run_loop)

# diffusers' LMSDiscreteScheduler integrates with scipy; without it diffusers has only a stub.
pytest.importorskip("scipy", reason="diffusers' LMSDiscreteScheduler (the oracle) needs scipy")

NAME = "LMSDiscreteScheduler"
SD15_PNDM = dict(SD15, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, _class_name="PNDMScheduler")


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("options", [
    dict(use_karras_sigmas=True), dict(use_exponential_sigmas=True), dict(beta_schedule="squaredcos_cap_v2"),
    dict(beta_schedule="linear"),
])
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps_options(options, num_inference_steps):
    ref, ours = make_pair(NAME, **{**SD15, **options})
    assert_schedule_equal(ref, ours, num_inference_steps)


def test_schedule_before_set_timesteps():
    ref, ours = make_pair(NAME, **SD15)
    assert torch.equal(ours.timesteps, ref.timesteps) and torch.equal(ours.sigmas, ref.sigmas)
    assert ours.num_inference_steps == ref.num_inference_steps == 1000


@pytest.mark.parametrize("options", [dict(), dict(use_karras_sigmas=True)])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_lms_coefficients_match_scipy_quad(order, options):
    # The integrand is evaluated in float32 as diffusers' torch arithmetic does, and integrated with
    # QUADPACK's 21-point Gauss-Kronrod rule as quad does; only the summation order may differ.
    ref, ours = make_pair(NAME, **SD15, **options)
    ref.set_timesteps(25)
    ours.set_timesteps(25)
    for t in range(order - 1, 25):
        for k in range(order):
            expected = ref.get_lms_coefficient(order, t, k)
            assert ours.get_lms_coefficient(order, t, k) == pytest.approx(expected, rel=1e-12, abs=1e-14), (t, k)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("options", [
    dict(), dict(use_karras_sigmas=True), dict(timestep_spacing="leading", steps_offset=1),
    dict(use_exponential_sigmas=True),
])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25, 50])
def test_denoising_loop(prediction_type, options, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, prediction_type=prediction_type, **options)
    run_loop(ref, ours, num_inference_steps)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_step_order_argument(order):
    ref, ours = make_pair(NAME, **SD15)
    run_loop(ref, ours, 20, step_kwargs=dict(order=order))


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut(strength):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing="leading", steps_offset=1)
    assert run_loop(ref, ours, 50, strength=strength) == min(int(50 * strength), 50)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut_karras(strength):
    """run_loop, except that the fake model sees diffusers' timestep on both sides. Karras
    timesteps come from numpy's float32 log, which may differ from ours by one ulp (see
    scheduler_parity.SIGMA_DERIVED_TIMESTEP_ATOL); through a timestep-dependent model that ulp
    moves samples near 40 by one ulp (4e-6), and LMS's last step (x0 recovered at sigma 0.03)
    can turn that into 1e-5. With the same model input the scheduler alone is compared."""
    ref, ours = make_pair(NAME, **SD15, use_karras_sigmas=True)
    shape = (2, 4, 8, 8)
    g = torch.Generator().manual_seed(1234)
    fixed, x0, noise = (torch.randn(shape, generator=g) for _ in range(3))
    runs = []
    for sched in (ref, ours):
        sched.set_timesteps(50)
        timesteps = img2img_timesteps(sched, 50, strength)
        runs.append((timesteps, sched.add_noise(x0, noise, timesteps[:1].repeat(shape[0]))))
    (ref_ts, ref_sample), (our_ts, our_sample) = runs
    assert_timesteps_equal(our_ts, ref_ts, from_sigmas=True)
    assert len(ref_ts) == min(int(50 * strength), 50)
    for i, t in enumerate(ref_ts):
        ref_in, our_in = ref.scale_model_input(ref_sample, t), ours.scale_model_input(our_sample, our_ts[i])
        ref_sample = ref.step(fake_model(ref_in, t, fixed), t, ref_sample).prev_sample
        our_sample = ours.step(fake_model(our_in, t, fixed), our_ts[i], our_sample).prev_sample
        diff = (our_sample - ref_sample).abs().max().item()
        assert diff <= STEP_ATOL, f"step {i} (t={t.item()}): max abs diff {diff}"


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15)
    assert_add_noise_equal(ref, ours)


def test_from_pndm_sd15_config():
    ref_pndm = diffusers.PNDMScheduler.from_config(SD15_PNDM)
    our_pndm = nd.PNDMScheduler.from_config(SD15_PNDM)
    ref = diffusers.LMSDiscreteScheduler.from_config(ref_pndm.config)
    ours = nd.LMSDiscreteScheduler.from_config(our_pndm.config)
    for key, value in ref.config.items():
        if key == "_use_default_values":
            assert sorted(ours.config[key]) == sorted(value)
        else:
            assert ours.config[key] == value, key
    assert_schedule_equal(ref, ours, 25)
    run_loop(ref, ours, 25, strength=0.8)


def test_bad_configs():
    with pytest.raises(ValueError, match="Only one of"):
        nd.LMSDiscreteScheduler(use_karras_sigmas=True, use_exponential_sigmas=True)
    with pytest.raises(ValueError, match="use_beta_sigmas"):
        nd.LMSDiscreteScheduler(use_beta_sigmas=True)

"""UniPCMultistepScheduler parity with diffusers: schedules (spacings, Karras/exponential sigmas,
final_sigmas_type), predictor + corrector for bh1/bh2, predict_x0 or noise prediction, orders
1-3, lower_order_final, disable_corrector, thresholding, add_noise, the img2img cut and the switch
from SD 1.5's PNDM config."""

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              STEP_ATOL, diffusers, fake_model, make_pair, nd, run_loop)

NAME = "UniPCMultistepScheduler"
SD15_PNDM = dict(SD15, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, _class_name="PNDMScheduler")


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("options", [
    dict(use_karras_sigmas=True), dict(use_exponential_sigmas=True), dict(final_sigmas_type="sigma_min"),
    dict(use_karras_sigmas=True, final_sigmas_type="sigma_min"),
    dict(use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0),
    dict(use_exponential_sigmas=True, final_sigmas_type="sigma_min"), dict(rescale_betas_zero_snr=True),
    dict(beta_schedule="squaredcos_cap_v2"), dict(beta_schedule="linear"),
])
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps_options(options, num_inference_steps):
    ref, ours = make_pair(NAME, **{**SD15, **options})
    assert_schedule_equal(ref, ours, num_inference_steps)


# bh1, noise prediction and lower_order_final=False run into the zero final sigma (see
# test_zero_final_sigma_like_diffusers); they are meant for final_sigmas_type="sigma_min".
@pytest.mark.parametrize("options", [
    dict(),  # bh2, order 2, predict_x0
    dict(solver_type="bh1", final_sigmas_type="sigma_min"),
    dict(solver_order=3),
    dict(solver_order=3, solver_type="bh1", final_sigmas_type="sigma_min"),
    dict(solver_order=1),
    dict(predict_x0=False, final_sigmas_type="sigma_min"),
    dict(predict_x0=False, solver_type="bh1", solver_order=3, final_sigmas_type="sigma_min"),
    dict(lower_order_final=False, final_sigmas_type="sigma_min"),
    dict(lower_order_final=False, solver_order=3, final_sigmas_type="sigma_min"),
    dict(use_karras_sigmas=True),
    dict(use_karras_sigmas=True, final_sigmas_type="sigma_min"),
    dict(use_exponential_sigmas=True),
    dict(disable_corrector=[0, 2, 3]),
    dict(thresholding=True, sample_max_value=1.5),
    dict(timestep_spacing="trailing"),
])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25, 50])
def test_denoising_loop(options, prediction_type, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, prediction_type=prediction_type, **options)
    run_loop(ref, ours, num_inference_steps)


@pytest.mark.parametrize("predict_x0", [True, False])
def test_sample_prediction(predict_x0):
    ref, ours = make_pair(NAME, **SD15, prediction_type="sample", solver_order=3, predict_x0=predict_x0,
                          final_sigmas_type="sigma_min")
    run_loop(ref, ours, 12)


def _last_sample(scheduler, num_inference_steps):
    g = torch.Generator().manual_seed(0)
    sample, fixed = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, generator=g)
    scheduler.set_timesteps(num_inference_steps)
    for t in scheduler.timesteps:
        sample = scheduler.step(fake_model(sample, t, fixed), t, sample).prev_sample
    return sample


@pytest.mark.parametrize("options", [dict(solver_type="bh1"), dict(predict_x0=False), dict(lower_order_final=False)])
def test_zero_final_sigma_like_diffusers(options):
    """With the zero final sigma, diffusers' last step meets log(0): bh1's B(h) = -inf times its
    zero first-order residual, noise prediction's 0 * inf, a second-order residual over r = 0.
    It returns NaN or inf there; parity means returning the same."""
    ref, ours = make_pair(NAME, **SD15, **options)
    expected = _last_sample(ref, 7)
    assert not torch.isfinite(expected).all()
    torch.testing.assert_close(_last_sample(ours, 7), expected, equal_nan=True, atol=STEP_ATOL, rtol=0)


def test_third_order_on_zero_final_sigma_fails_like_diffusers():
    ref, ours = make_pair(NAME, **SD15, solver_order=3, lower_order_final=False)
    with pytest.raises(RuntimeError, match="singular"):
        _last_sample(ref, 7)
    with pytest.raises(RuntimeError, match="singular"):
        _last_sample(ours, 7)


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("options", [dict(), dict(use_karras_sigmas=True, solver_order=3)])
def test_img2img_cut(strength, options):
    ref, ours = make_pair(NAME, **SD15, **options)
    assert run_loop(ref, ours, 50, strength=strength) == min(int(50 * strength), 50)


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15, use_karras_sigmas=True)
    assert_add_noise_equal(ref, ours)


def test_config_and_solver_type_aliases():
    ref, ours = make_pair(NAME, **SD15, solver_type="midpoint", disable_corrector=[1])
    assert ours.config.solver_type == ref.config.solver_type == "bh2"
    assert ours.config.disable_corrector == ref.config.disable_corrector == [1]
    assert ours.config.solver_p is None and ours.init_noise_sigma == ref.init_noise_sigma == 1.0
    assert torch.equal(ours.timesteps, ref.timesteps) and torch.equal(ours.sigmas, ref.sigmas)


def test_from_pndm_sd15_config():
    ref_pndm = diffusers.PNDMScheduler.from_config(SD15_PNDM)
    our_pndm = nd.PNDMScheduler.from_config(SD15_PNDM)
    ref = diffusers.UniPCMultistepScheduler.from_config(ref_pndm.config)
    ours = nd.UniPCMultistepScheduler.from_config(our_pndm.config)
    for key, value in ref.config.items():
        if key == "_use_default_values":
            assert sorted(ours.config[key]) == sorted(value)
        else:
            assert ours.config[key] == value, key
    assert_schedule_equal(ref, ours, 25)
    run_loop(ref, ours, 25, strength=0.3)


def test_bad_configs():
    with pytest.raises(ValueError, match="solver_type"):
        nd.UniPCMultistepScheduler(solver_type="rk4")
    with pytest.raises(ValueError, match="use_flow_sigmas"):
        nd.UniPCMultistepScheduler(use_flow_sigmas=True)
    with pytest.raises(ValueError, match="solver_p"):
        nd.UniPCMultistepScheduler(solver_p=nd.DDIMScheduler())
    with pytest.raises(ValueError, match="prediction_type"):
        nd.UniPCMultistepScheduler(prediction_type="flow_prediction")
    ours = nd.UniPCMultistepScheduler(**SD15)
    with pytest.raises(ValueError, match="use_flow_sigmas"):
        ours.set_timesteps(sigmas=[1.0, 0.5])
    with pytest.raises(ValueError, match="set_timesteps"):
        ours.step(torch.zeros(1, 4, 2, 2), 999, torch.zeros(1, 4, 2, 2))

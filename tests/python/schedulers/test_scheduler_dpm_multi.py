"""DPMSolverMultistepScheduler parity with diffusers: DPM++ 2M (Karras), 3M, the SDE variant with
noise from the same generator, lower_order_final / final_sigmas_type, add_noise, img2img cut."""

import pytest

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              make_pair, run_loop)

NAME = "DPMSolverMultistepScheduler"


@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset)
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("options", [
    dict(use_karras_sigmas=True), dict(use_exponential_sigmas=True), dict(use_lu_lambdas=True),
    dict(final_sigmas_type="sigma_min"), dict(lambda_min_clipped=-5.1), dict(beta_schedule="squaredcos_cap_v2"),
    dict(use_karras_sigmas=True, beta_schedule="squaredcos_cap_v2"), dict(rescale_betas_zero_snr=True),
])
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps_options(options, num_inference_steps):
    ref, ours = make_pair(NAME, **{**SD15, **options})
    assert_schedule_equal(ref, ours, num_inference_steps)


def test_custom_timesteps():
    ref, ours = make_pair(NAME, **SD15)
    assert_schedule_equal(ref, ours, None, timesteps=[999, 700, 400.7, 100, 1])


@pytest.mark.parametrize("options", [
    dict(),  # DPM++ 2M
    dict(use_karras_sigmas=True),  # DPM++ 2M Karras
    dict(solver_order=3),
    dict(solver_order=1),
    dict(solver_type="heun"),
    dict(algorithm_type="sde-dpmsolver++"),
    dict(algorithm_type="sde-dpmsolver++", use_karras_sigmas=True, solver_type="heun"),
    dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=3),
    dict(algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"),
    dict(lower_order_final=False, final_sigmas_type="sigma_min"),
    dict(euler_at_final=True),
    dict(thresholding=True, sample_max_value=1.5),
])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("num_inference_steps", [1, 7, 25])
def test_denoising_loop(options, prediction_type, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, prediction_type=prediction_type, **options)
    run_loop(ref, ours, num_inference_steps, seed=5)


def test_sample_prediction():
    ref, ours = make_pair(NAME, **SD15, prediction_type="sample", solver_order=3)
    run_loop(ref, ours, 12)


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("options", [dict(use_karras_sigmas=True), dict(algorithm_type="sde-dpmsolver++")])
def test_img2img_cut(strength, options):
    ref, ours = make_pair(NAME, **SD15, **options)
    assert run_loop(ref, ours, 50, strength=strength, seed=8) == min(int(50 * strength), 50)


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15, use_karras_sigmas=True)
    assert_add_noise_equal(ref, ours)


def test_config_keeps_minus_infinity():
    ref, ours = make_pair(NAME, **SD15)
    assert ours.config.lambda_min_clipped == ref.config.lambda_min_clipped == -float("inf")

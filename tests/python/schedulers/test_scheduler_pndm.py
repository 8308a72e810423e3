"""PNDMScheduler parity with diffusers: schedules, PLMS/PRK steps, add_noise, the img2img cut,
and the config round trip SD 1.5's scheduler_config.json takes."""

import json

import pytest
import torch

from scheduler_parity import (SD15, SPACINGS, STEP_COUNTS, STRENGTHS, assert_add_noise_equal, assert_schedule_equal,
                              diffusers, make_pair, nd, run_loop)

NAME = "PNDMScheduler"
SD15_PNDM = dict(SD15, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)


@pytest.mark.parametrize("skip_prk_steps", [True, False])
@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_inference_steps", STEP_COUNTS)
def test_timesteps(spacing, steps_offset, skip_prk_steps, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, timestep_spacing=spacing, steps_offset=steps_offset,
                          skip_prk_steps=skip_prk_steps)
    if not skip_prk_steps and num_inference_steps < 4:
        with pytest.raises(ValueError):
            ref.set_timesteps(num_inference_steps)
        with pytest.raises(ValueError):
            ours.set_timesteps(num_inference_steps)
        return
    assert_schedule_equal(ref, ours, num_inference_steps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("skip_prk_steps", [True, False])
@pytest.mark.parametrize("num_inference_steps", [7, 25])
def test_denoising_loop(prediction_type, skip_prk_steps, num_inference_steps):
    ref, ours = make_pair(NAME, **SD15, skip_prk_steps=skip_prk_steps, steps_offset=1, prediction_type=prediction_type)
    run_loop(ref, ours, num_inference_steps)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_denoising_loop_spacings(spacing):
    ref, ours = make_pair(NAME, **SD15_PNDM, timestep_spacing=spacing)
    run_loop(ref, ours, 50)


def test_single_step():
    ref, ours = make_pair(NAME, **SD15_PNDM)
    run_loop(ref, ours, 1)


@pytest.mark.parametrize("strength", STRENGTHS)
def test_img2img_cut(strength):
    ref, ours = make_pair(NAME, **SD15_PNDM)
    calls = run_loop(ref, ours, 50, strength=strength)
    if strength == 0.8:
        assert calls == 41  # 40 steps, plus PLMS's repeated warm-up timestep


def test_add_noise():
    ref, ours = make_pair(NAME, **SD15_PNDM)
    assert_add_noise_equal(ref, ours)


def test_half_precision_step():
    ref, ours = make_pair(NAME, **SD15_PNDM)
    run_loop(ref, ours, 7, dtype=torch.float16)


def test_config_round_trip_and_from_pretrained(tmp_path):
    ref = diffusers.PNDMScheduler(**SD15_PNDM)
    ref.save_pretrained(tmp_path / "scheduler")
    ours = nd.PNDMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    ref = diffusers.PNDMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    for key, value in ref.config.items():
        if key == "_use_default_values":
            assert sorted(ours.config[key]) == sorted(value)
        else:
            assert ours.config[key] == value, key
    assert ours.config.skip_prk_steps is True
    ours.save_pretrained(tmp_path / "again")
    with open(tmp_path / "again" / "scheduler_config.json") as f:
        saved = json.load(f)
    assert saved["_class_name"] == "PNDMScheduler" and saved["steps_offset"] == 1
    assert len(ours) == 1000


def test_from_config_switches_class():
    """`pipe.scheduler = X.from_config(pipe.scheduler.config)` as diffusers resolves it: keys the
    PNDM config only defaulted (timestep_spacing) fall back to the new class's own default."""
    ref_pndm = diffusers.PNDMScheduler.from_config({**SD15_PNDM, "_class_name": "PNDMScheduler"})
    our_pndm = nd.PNDMScheduler.from_config({**SD15_PNDM, "_class_name": "PNDMScheduler"})
    # The classes PNDM's config can switch to (UnCLIPScheduler, squaredcos_cap_v2 only, is not one).
    for name in [n for n in nd.schedulers.__all__ if n in nd.PNDMScheduler._compatibles]:
        ref = getattr(diffusers, name).from_config(ref_pndm.config)
        ours = getattr(nd, name).from_config(our_pndm.config)
        for key, value in ref.config.items():
            if key == "_use_default_values":
                assert sorted(ours.config[key]) == sorted(value), name
            else:
                assert ours.config[key] == value, (name, key)
        assert_schedule_equal(ref, ours, 25)
    back = nd.PNDMScheduler.from_config(nd.EulerDiscreteScheduler.from_config(our_pndm.config).config)
    assert back.config.skip_prk_steps is True and back.config.timestep_spacing == "leading"


def test_from_config_overrides_and_errors():
    ours = nd.PNDMScheduler.from_config(dict(SD15_PNDM), timestep_spacing="trailing")
    assert ours.config.timestep_spacing == "trailing"
    with pytest.raises(ValueError, match="beta_schedule"):
        nd.PNDMScheduler(beta_schedule="cosine")
    with pytest.raises(TypeError):
        nd.PNDMScheduler(not_a_key=1)
    with pytest.raises(ValueError):
        nd.PNDMScheduler.from_config(None)
    assert {c.__name__ for c in ours.compatibles} >= {"EulerDiscreteScheduler", "DDIMScheduler"}

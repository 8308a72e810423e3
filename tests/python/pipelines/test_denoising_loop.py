"""What the engine's one denoising loop reports and honours, against diffusers: ``num_timesteps``
for every pipeline over a spread of strengths and schedulers (PNDM's repeated step, Heun's order 2,
DPM-Solver++), and ``pipe._interrupt = True`` set in a step callback (the remaining steps skipped,
the latents decoded), on random-weight checkpoints diffusers saves."""

import os

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import (  # noqa: E402
    make_tiny_controlnet,
    make_tiny_kandinsky22_checkpoints,
    make_tiny_sd_checkpoint,
    make_tiny_sd_x4_upscaler,
    make_tiny_sdxl_checkpoint,
)
from parity import random_image  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

SCHEDULERS = ("PNDMScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler")


def _pair(library_class_name, folder, **kwargs):
    """(diffusers', ours) pipelines of one class loaded from one folder, bars off."""
    pipes = []
    for library in (diffusers, nd):
        extra = dict(kwargs)
        if library is diffusers and "StableDiffusion" in library_class_name and "XL" not in library_class_name:
            extra.setdefault("safety_checker", None)
        if library is nd:
            extra = {k: v for k, v in extra.items() if k != "safety_checker"}
        pipe = getattr(library, library_class_name).from_pretrained(folder, **extra)
        pipe.set_progress_bar_config(disable=True)
        pipes.append(pipe)
    return tuple(pipes)


def _use_scheduler(pipes, name):
    ref, ours = pipes
    ref.scheduler = getattr(diffusers, name).from_config(ref.scheduler.config)
    ours.scheduler = getattr(nd, name).from_config(ours.scheduler.config)


def _num_timesteps_both(pipes, seed=0, **kwargs):
    kwargs.setdefault("output_type", "latent")
    for pipe in pipes:
        pipe(generator=torch.Generator().manual_seed(seed), **kwargs)
    return pipes[1].num_timesteps, pipes[0].num_timesteps


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("loop"))
    sd = make_tiny_sd_checkpoint(os.path.join(root, "sd"))
    return {
        "sd": sd,
        "controlnet": make_tiny_controlnet(os.path.join(root, "cn")),
        "sdxl": make_tiny_sdxl_checkpoint(os.path.join(root, "sdxl")),
        "kandinsky_decoder": make_tiny_kandinsky22_checkpoints(os.path.join(root, "kandinsky")),
        "x4": make_tiny_sd_x4_upscaler(os.path.join(root, "x4")),
    }


def _pair_fixture(class_name, folder_key):
    @pytest.fixture(scope="module")
    def pipes(folders):
        return _pair(class_name, folders[folder_key])

    return pipes


sd_img2img = _pair_fixture("StableDiffusionImg2ImgPipeline", "sd")
sd_text2img = _pair_fixture("StableDiffusionPipeline", "sd")
sdxl_img2img = _pair_fixture("StableDiffusionXLImg2ImgPipeline", "sdxl")
sdxl_text2img = _pair_fixture("StableDiffusionXLPipeline", "sdxl")


@pytest.fixture(scope="module")
def controlnet_img2img(folders):
    pipes = []
    for library in (diffusers, nd):
        controlnet = library.ControlNetModel.from_pretrained(folders["controlnet"])
        extra = dict(safety_checker=None) if library is diffusers else {}
        pipe = library.StableDiffusionControlNetImg2ImgPipeline.from_pretrained(folders["sd"], controlnet=controlnet,
                                                                               **extra)
        pipe.set_progress_bar_config(disable=True)
        pipes.append(pipe)
    return tuple(pipes)


# -- num_timesteps ------------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("strength", [0.3, 0.5, 1.0])
def test_img2img_num_timesteps_matches_diffusers(sd_img2img, scheduler, strength):
    _use_scheduler(sd_img2img, scheduler)
    got, expected = _num_timesteps_both(sd_img2img, prompt="a cat", image=random_image(32), strength=strength,
                                        num_inference_steps=10)
    assert got == expected


def test_img2img_num_timesteps_is_the_window_not_the_schedule(sd_img2img):
    # The case: PNDM, 10 steps, strength 0.5 (diffusers: 6; the whole schedule has 11).
    _use_scheduler(sd_img2img, "PNDMScheduler")
    got, expected = _num_timesteps_both(sd_img2img, prompt="a cat", image=random_image(32), strength=0.5,
                                        num_inference_steps=10)
    assert got == expected == 6
    assert len(sd_img2img[1].scheduler.timesteps) == 11


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_text2img_num_timesteps_matches_diffusers(sd_text2img, scheduler):
    _use_scheduler(sd_text2img, scheduler)
    got, expected = _num_timesteps_both(sd_text2img, prompt="a cat", height=32, width=32, num_inference_steps=7)
    assert got == expected


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "HeunDiscreteScheduler"])
@pytest.mark.parametrize("options", [dict(strength=0.4), dict(denoising_start=0.6), dict(strength=0.9,
                                                                                        denoising_end=0.5)])
def test_sdxl_img2img_num_timesteps_matches_diffusers(sdxl_img2img, scheduler, options):
    _use_scheduler(sdxl_img2img, scheduler)
    got, expected = _num_timesteps_both(sdxl_img2img, prompt="a cat", image=random_image(32), num_inference_steps=8,
                                        **options)
    assert got == expected


@pytest.mark.parametrize("denoising_end", [None, 0.7])
def test_sdxl_text2img_num_timesteps_matches_diffusers(sdxl_text2img, denoising_end):
    _use_scheduler(sdxl_text2img, "HeunDiscreteScheduler")
    got, expected = _num_timesteps_both(sdxl_text2img, prompt="a cat", height=32, width=32, num_inference_steps=6,
                                        denoising_end=denoising_end)
    assert got == expected


@pytest.mark.parametrize("strength", [0.3, 0.75])
def test_controlnet_img2img_num_timesteps_matches_diffusers(controlnet_img2img, strength):
    got, expected = _num_timesteps_both(controlnet_img2img, prompt="a cat", image=random_image(32),
                                        control_image=random_image(32, seed=3), strength=strength,
                                        num_inference_steps=8)
    assert got == expected


@pytest.mark.parametrize("strength", [0.25, 0.6, 1.0])
def test_kandinsky_num_timesteps_match_diffusers(folders, strength):
    prior_folder = os.path.join(os.path.dirname(folders["kandinsky_decoder"]), "tiny-kandinsky-2-2-prior")
    prior = _pair("KandinskyV22PriorPipeline", prior_folder)
    got, expected = _num_timesteps_both(prior, prompt="a cat", num_inference_steps=5, output_type="pt")
    assert got == expected == 5
    embeds = prior[1]("a cat", generator=torch.Generator().manual_seed(0), num_inference_steps=3)
    decoder = _pair("KandinskyV22Img2ImgPipeline", folders["kandinsky_decoder"])
    got, expected = _num_timesteps_both(decoder, image_embeds=embeds.image_embeds,
                                        negative_image_embeds=embeds.negative_image_embeds, image=random_image(64),
                                        height=64, width=64, strength=strength, num_inference_steps=8)
    assert got == expected


def test_upscaler_num_timesteps_is_the_schedule(folders):
    # diffusers' upscaler keeps no num_timesteps; ours reports the loop's length like every pipeline.
    ref, ours = _pair("StableDiffusionUpscalePipeline", folders["x4"])
    ours("a cat", image=random_image(16), num_inference_steps=4, output_type="latent")
    assert ours.num_timesteps == len(ours.scheduler.timesteps) == 4


# -- interrupt ----------------------------------------------------------------------------------

def _interrupting_at(stop_step, seen):
    def callback(pipe, step, timestep, kwargs):
        seen.append(step)
        if step == stop_step:
            pipe._interrupt = True
        return kwargs

    return callback


def _interrupted_both(pipes, stop_step, **kwargs):
    outputs, steps = [], []
    for pipe in pipes:
        seen = []
        out = pipe(generator=torch.Generator().manual_seed(0), output_type="np",
                   callback_on_step_end=_interrupting_at(stop_step, seen), **kwargs)
        outputs.append(np.asarray(out.images))
        steps.append(seen)
    return outputs[1], outputs[0], steps[1], steps[0]


@pytest.mark.parametrize("name", ["sd_img2img", "sd_text2img", "controlnet_img2img", "sdxl_text2img"])
def test_interrupt_in_a_callback_stops_the_loop_as_diffusers(request, name):
    pipes = request.getfixturevalue(name)
    _use_scheduler(pipes, "EulerDiscreteScheduler")
    kwargs = dict(prompt="a cat", num_inference_steps=6)
    if "img2img" in name:
        kwargs.update(image=random_image(32), strength=1.0)
    else:
        kwargs.update(height=32, width=32)
    if name == "controlnet_img2img":
        kwargs.update(control_image=random_image(32, seed=3))
    got, expected, got_steps, expected_steps = _interrupted_both(pipes, 2, **kwargs)
    assert got_steps == expected_steps == [0, 1, 2]
    assert np.abs(got - expected).max() <= FP32_ATOL
    # Not the full run's image: the loop really stopped.
    full = pipes[1](generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images
    assert np.abs(np.asarray(full) - got).max() > 1e-3
    # The next call starts uninterrupted (diffusers resets _interrupt at each call).
    seen = []
    pipes[1](generator=torch.Generator().manual_seed(0), output_type="latent",
             callback_on_step_end=lambda p, i, t, kw: seen.append(i) or kw, **kwargs)
    assert seen == list(range(6))


def test_kandinsky_ignores_interrupt_as_diffusers(folders):
    # diffusers' Kandinsky 2.2 loops have no interrupt check: the flag changes nothing there.
    prior_folder = os.path.join(os.path.dirname(folders["kandinsky_decoder"]), "tiny-kandinsky-2-2-prior")
    prior = _pair("KandinskyV22PriorPipeline", prior_folder)
    seen = []
    prior[1]("a cat", num_inference_steps=4, callback_on_step_end=_interrupting_at(0, seen))
    assert seen == [0, 1, 2, 3]


# -- progress bar -------------------------------------------------------------------------------

def test_progress_bar_honours_tqdm_options(sd_text2img, capfd):
    ours = sd_text2img[1]
    _use_scheduler(sd_text2img, "EulerDiscreteScheduler")
    kwargs = dict(prompt="a cat", height=32, width=32, num_inference_steps=3, output_type="latent")
    try:
        ours.set_progress_bar_config(desc="denoising", leave=True)
        ours(**kwargs)
        drawn = capfd.readouterr().err
        assert "denoising: 100%|" in drawn and "3/3" in drawn and drawn.endswith("\n")
        ours.set_progress_bar_config(desc="erased", leave=False)
        ours(**kwargs)
        drawn = capfd.readouterr().err
        assert "erased: " in drawn and drawn.endswith("\r\x1b[2K")
        ours.set_progress_bar_config(position=2)
        ours(**kwargs)
        drawn = capfd.readouterr().err
        assert drawn.startswith("\n\n\r") and drawn.endswith("\x1b[A\x1b[A")
        ours.set_progress_bar_config(disable=True)
        ours(**kwargs)
        assert capfd.readouterr().err == ""
    finally:
        ours.set_progress_bar_config(disable=True)

"""Image-for-image parity of the native StableDiffusionControlNetImg2ImgPipeline (the guide's
ControlNet section) and StableDiffusionControlNetPipeline with diffusers, on a tiny random-weight
Stable Diffusion checkpoint and ControlNet that diffusers itself saves, same torch.Generator seeds."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_controlnet, make_tiny_sd_checkpoint  # noqa: E402
from parity import random_image, run_both  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = 8


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tiny-sd-controlnet"))
    return make_tiny_sd_checkpoint(folder), make_tiny_controlnet(folder)


def _load(auto_class, checkpoints, ref):
    sd, controlnet_path = checkpoints
    library = diffusers if ref else nd
    controlnet = library.ControlNetModel.from_pretrained(controlnet_path)
    kwargs = dict(safety_checker=None) if ref else {}
    pipe = getattr(library, auto_class).from_pretrained(sd, controlnet=controlnet, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def img2img(checkpoints):
    return _load("AutoPipelineForImage2Image", checkpoints, True), _load("AutoPipelineForImage2Image", checkpoints,
                                                                          False)


@pytest.fixture(scope="module")
def text2img(checkpoints):
    return _load("AutoPipelineForText2Image", checkpoints, True), _load("AutoPipelineForText2Image", checkpoints,
                                                                         False)


def _image(size=32, seed=0):
    return random_image(size, seed)


def _run_both(pipes, **kwargs):
    return run_both(pipes, STEPS, **kwargs)


def test_auto_pipeline_picks_the_controlnet_pipelines(img2img, text2img, checkpoints):
    assert type(img2img[1]) is nd.StableDiffusionControlNetImg2ImgPipeline
    assert type(text2img[1]) is nd.StableDiffusionControlNetPipeline
    assert type(img2img[1].controlnet) is nd.ControlNetModel
    # controlnet=None means the plain pipeline, as in diffusers.
    plain = nd.AutoPipelineForImage2Image.from_pretrained(checkpoints[0], controlnet=None)
    assert type(plain) is nd.StableDiffusionImg2ImgPipeline
    # from_pipe keeps the ControlNet across tasks and drops it on request.
    assert type(nd.AutoPipelineForText2Image.from_pipe(img2img[1])) is nd.StableDiffusionControlNetPipeline
    assert type(nd.AutoPipelineForImage2Image.from_pipe(img2img[1], controlnet=None)) is \
        nd.StableDiffusionImg2ImgPipeline
    assert type(nd.AutoPipelineForImage2Image.from_pipe(plain, controlnet=img2img[1].controlnet)) is \
        nd.StableDiffusionControlNetImg2ImgPipeline


IMG2IMG_CASES = {
    "defaults": dict(),
    "strength_0.5": dict(strength=0.5),
    "guidance_1.0": dict(guidance_scale=1.0),
    "guess_mode": dict(guess_mode=True, guidance_scale=3.0),
    "guess_mode_no_guidance": dict(guess_mode=True, guidance_scale=1.0),
    "conditioning_scale_0.4": dict(controlnet_conditioning_scale=0.4),
    "guidance_window": dict(control_guidance_start=0.2, control_guidance_end=0.7),
    "guidance_window_lists": dict(control_guidance_start=[0.3], control_guidance_end=[0.9]),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2, negative_prompt="blurry"),
    "two_prompts_one_control_image": dict(prompt=["a cat", "a dog"]),
    "two_prompts_two_control_images": dict(prompt=["a cat", "a dog"], control_image=[_image(seed=3), _image(seed=4)],
                                           image=[_image(seed=5), _image(seed=6)]),
    "resized": dict(height=48, width=40),
    "dpm_multistep": dict(scheduler="DPMSolverMultistepScheduler"),
}


def _with_scheduler(pipes, name):
    if name is None:
        return pipes
    ref, ours = pipes
    ref_s = getattr(diffusers, name).from_config(ref.scheduler.config)
    ours_s = getattr(nd, name).from_config(ours.scheduler.config)
    ref_new = diffusers.StableDiffusionControlNetImg2ImgPipeline(**{**ref.components, "scheduler": ref_s})
    ours_new = nd.StableDiffusionControlNetImg2ImgPipeline(**{**ours.components, "scheduler": ours_s})
    for p in (ref_new, ours_new):
        p.set_progress_bar_config(disable=True)
    return ref_new, ours_new


@pytest.mark.parametrize("case", sorted(IMG2IMG_CASES))
def test_controlnet_img2img_matches_diffusers(img2img, case):
    kwargs = dict(prompt="a photo of an astronaut", image=_image(), control_image=_image(seed=1))
    kwargs.update(IMG2IMG_CASES[case])
    pipes = _with_scheduler(img2img, kwargs.pop("scheduler", None))
    got, expected = _run_both(pipes, **kwargs)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_controlnet_changes_the_image(img2img, checkpoints):
    # The ControlNet's residuals reach the UNet: without them the image differs.
    _, ours = img2img
    kwargs = dict(prompt="a cat", image=_image(), control_image=_image(seed=1), num_inference_steps=STEPS,
                  output_type="np")
    guided = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    plain = nd.AutoPipelineForImage2Image.from_pretrained(checkpoints[0])
    plain.set_progress_bar_config(disable=True)
    kwargs.pop("control_image")
    unguided = plain(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(guided - unguided).max() > 1e-3


def test_controlnet_img2img_latents_and_callback(img2img):
    """output_type="latent", and a step callback that replaces the control image (diffusers exposes it
    as "control_image") steers the later steps exactly as in diffusers."""
    def swap_control(pipe, step, timestep, tensors):
        if step == 2:
            return {"control_image": tensors["control_image"].flip(-1)}
        return {}

    kwargs = dict(prompt="a cat", image=_image(), control_image=_image(seed=1), output_type="latent",
                  callback_on_step_end=swap_control, callback_on_step_end_tensor_inputs=["latents", "control_image"])
    got, expected = _run_both(img2img, **kwargs)
    assert np.abs(got - expected).max() <= FP32_ATOL
    kwargs.pop("callback_on_step_end")
    unswapped, _ = _run_both(img2img, **kwargs)
    assert np.abs(unswapped - got).max() > 1e-4


def test_controlnet_img2img_given_latents(img2img):
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(7))
    got, expected = _run_both(img2img, prompt="a cat", image=_image(), control_image=_image(seed=1),
                              latents=latents)
    assert np.abs(got - expected).max() <= FP32_ATOL


TEXT2IMG_CASES = {
    "defaults": dict(),
    "guess_mode": dict(guess_mode=True),
    "guidance_window": dict(control_guidance_start=0.25, control_guidance_end=0.75),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2),
    "control_image_sets_size": dict(image_size=40),
    "latents": dict(latents=torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))),
}


@pytest.mark.parametrize("case", sorted(TEXT2IMG_CASES))
def test_controlnet_text2img_matches_diffusers(text2img, case):
    options = dict(TEXT2IMG_CASES[case])
    kwargs = dict(prompt="a photo of an astronaut", image=_image(size=options.pop("image_size", 32), seed=2))
    kwargs.update(options)
    got, expected = _run_both(text2img, **kwargs)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(controlnet_conditioning_scale=1), TypeError, "must be type `float`"),
    (dict(control_guidance_start=0.6, control_guidance_end=0.5), ValueError, "cannot be larger or equal"),
    (dict(control_guidance_start=-0.1), ValueError, "can't be smaller than 0"),
    (dict(control_guidance_end=1.5), ValueError, "can't be larger than 1.0"),
    (dict(control_guidance_start=[0.1, 0.2], control_guidance_end=[0.5]), ValueError, "same number of elements"),
    (dict(prompt=["a", "b", "c"], control_image=[_image(), _image()]), ValueError, "image batch size must be same"),
    (dict(control_image="not an image"), TypeError, "image must be passed"),
    (dict(strength=1.5), ValueError, "strength should in"),
    (dict(image=None), ValueError, "`image` input cannot be undefined"),
], ids=lambda v: str(v)[:40])
def test_controlnet_img2img_bad_arguments(img2img, kwargs, error, match):
    call = dict(prompt="a cat", image=_image(), control_image=_image(seed=1), num_inference_steps=2,
                output_type="np")
    call.update(kwargs)
    with pytest.raises(error, match=match):
        img2img[1](**call)


def test_several_controlnets_are_refused_clearly(img2img):
    ours = img2img[1]
    with pytest.raises(NotImplementedError, match="MultiControlNetModel"):
        nd.StableDiffusionControlNetImg2ImgPipeline(**{**ours.components, "controlnet": [ours.controlnet] * 2})


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offload_moves_the_controlnet_with_the_unet(checkpoints, mode):
    """The offload engine's bookkeeping on the CPU (see test_offload_engine_on_cpu.py): the ControlNet
    travels with the UNet as one component, and the image equals the plain run's."""
    pipe = _load("AutoPipelineForImage2Image", checkpoints, False)
    kwargs = dict(prompt="a cat", image=_image(), control_image=_image(seed=1), num_inference_steps=3,
                  output_type="np")
    expected = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    engine = pipe._engine_pipeline()
    getattr(engine, f"enable_{mode}_cpu_offload")(torch.device("cpu"))
    got = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert engine.offloaded_components() == []
    assert np.abs(got - expected).max() <= FP32_ATOL
    engine.remove_model_cpu_offload()


def test_public_offload_and_xformers_calls_run_on_cpu(checkpoints):
    # The guide's ControlNet snippet, unchanged, on a machine without a GPU.
    pipe = _load("AutoPipelineForImage2Image", checkpoints, False)
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback; tests/python/gpu covers offloading on a GPU")
    pipe.enable_model_cpu_offload()  # warns once per process that the pipeline stays on the CPU
    pipe.enable_xformers_memory_efficient_attention()
    image = pipe("a cat", image=_image(), control_image=_image(seed=1), num_inference_steps=2).images[0]
    assert isinstance(image, PIL.Image.Image) and image.size == (32, 32)

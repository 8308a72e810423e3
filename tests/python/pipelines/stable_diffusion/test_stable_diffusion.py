"""Image-for-image parity of the native StableDiffusionPipeline (text-to-image, the first half of the
guide's text-to-image-to-image chain) with diffusers, on the tiny random-weight SD 1.5-shaped
checkpoint diffusers saves, same torch.Generator seeds."""

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = 8


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    path = make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("tiny-sd")))
    ref = diffusers.AutoPipelineForText2Image.from_pretrained(path, safety_checker=None)
    ref.set_progress_bar_config(disable=True)
    ours = nd.AutoPipelineForText2Image.from_pretrained(path)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


def _gen(seed, count):
    if count is None:
        return torch.Generator().manual_seed(seed)
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


CASES = {
    "default_size": dict(),
    "negative_prompt": dict(negative_prompt="blurry, dark"),
    "guidance_rescale": dict(guidance_rescale=0.7, guidance_scale=9.0),
    "no_guidance": dict(guidance_scale=1.0),
    "non_square": dict(height=48, width=32),
    "two_images_generator_list": dict(num_images_per_prompt=2, generator_count=2),
    "two_prompts": dict(prompt=["a red fox", "a castle"], negative_prompt=["fog", "rain"]),
    "clip_skip_none_eta": dict(eta=0.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_text2img_matches_diffusers(pipes, name):
    ref, ours = pipes
    kwargs = dict(CASES[name])
    count = kwargs.pop("generator_count", None)
    kwargs.setdefault("prompt", "an astronaut riding a horse")
    kwargs = dict(num_inference_steps=STEPS, output_type="np", **kwargs)
    expected = ref(generator=_gen(0, count), **kwargs).images
    got = ours(generator=_gen(0, count), **kwargs).images
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff <= FP32_ATOL, f"max abs difference {diff}"


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler"])
def test_other_schedulers_and_given_latents(pipes, scheduler):
    ref, ours = pipes
    saved = ref.scheduler, ours.scheduler
    try:
        ref.scheduler = getattr(diffusers, scheduler).from_config(saved[0].config)
        ours.scheduler = getattr(nd, scheduler).from_config(saved[1].config)
        latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
        kwargs = dict(prompt="a lighthouse", num_inference_steps=STEPS, output_type="np", latents=latents)
        expected = ref(**kwargs).images
        got = ours(**kwargs).images
        assert float(np.abs(got - expected).max()) <= FP32_ATOL
    finally:
        ref.scheduler, ours.scheduler = saved


def test_text_to_image_to_image_chain_in_latent_space(pipes, tmp_path):
    """The guide's chaining: text-to-image latents straight into image-to-image (same VAE)."""
    ref, ours = pipes
    ref_i2i = diffusers.AutoPipelineForImage2Image.from_pipe(ref)
    our_i2i = nd.AutoPipelineForImage2Image.from_pipe(ours)
    assert type(our_i2i) is nd.StableDiffusionImg2ImgPipeline

    def chain(t2i, i2i):
        latents = t2i("a cat", num_inference_steps=STEPS, output_type="latent", generator=_gen(1, None)).images
        return i2i("a cat, oil painting", image=latents, num_inference_steps=STEPS, output_type="np",
                   generator=_gen(2, None)).images

    assert float(np.abs(chain(ours, our_i2i) - chain(ref, ref_i2i)).max()) <= FP32_ATOL


def test_bad_inputs_raise_diffusers_errors(pipes):
    _, ours = pipes
    with pytest.raises(ValueError, match="divisible by 8"):
        ours("x", height=36, width=32)
    with pytest.raises(ValueError, match="Provide either `prompt` or `prompt_embeds`"):
        ours(num_inference_steps=2)
    with pytest.raises(TypeError, match="negative_prompt"):
        ours("x", negative_prompt=["y"], num_inference_steps=2)

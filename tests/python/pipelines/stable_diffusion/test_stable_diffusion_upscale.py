"""Image-for-image parity of the native StableDiffusionUpscalePipeline (the x4 upscaler of the guide's
"image-to-upscaler-to-super-resolution" chain) with diffusers, on a tiny random-weight x4-upscaler-shaped
checkpoint that diffusers itself saves, same torch.Generator seeds."""

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sd_x4_upscaler  # noqa: E402
from parity import random_image, run_both  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_sd_x4_upscaler(str(tmp_path_factory.mktemp("tiny-x4")))


@pytest.fixture(scope="module")
def pipes(checkpoint):
    ref = diffusers.StableDiffusionUpscalePipeline.from_pretrained(checkpoint)
    ours = nd.StableDiffusionUpscalePipeline.from_pretrained(checkpoint)
    for p in (ref, ours):
        p.set_progress_bar_config(disable=True)
    return ref, ours


def _image(size=16, seed=0):
    return random_image(size, seed)


def _run_both(pipes, **kwargs):
    return run_both(pipes, STEPS, **kwargs)


CASES = {
    "defaults": dict(),
    "noise_level_100": dict(noise_level=100),
    "noise_level_0": dict(noise_level=0),
    "guidance_1.0": dict(guidance_scale=1.0),
    "negative_prompt": dict(negative_prompt="blurry"),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2),
    "two_prompts_two_images": dict(prompt=["a cat", "a dog"], image=[_image(seed=1), _image(seed=2)]),
    "not_a_multiple_of_the_scale_factor": dict(image=_image(size=17)),
    "latents": dict(latents=torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5)),
                    output_type="latent"),
    "euler": dict(scheduler="EulerDiscreteScheduler"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_upscale_matches_diffusers(pipes, case):
    kwargs = dict(prompt="a white cat", image=_image())
    kwargs.update(CASES[case])
    scheduler = kwargs.pop("scheduler", None)
    if scheduler is not None:
        ref, ours = pipes
        ref_new = diffusers.StableDiffusionUpscalePipeline(
            **{**ref.components, "scheduler": getattr(diffusers, scheduler).from_config(ref.scheduler.config)})
        ours_new = nd.StableDiffusionUpscalePipeline(
            **{**ours.components, "scheduler": getattr(nd, scheduler).from_config(ours.scheduler.config)})
        for p in (ref_new, ours_new):
            p.set_progress_bar_config(disable=True)
        pipes = (ref_new, ours_new)
    got, expected = _run_both(pipes, **kwargs)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_upscale_doubles_the_size_and_the_noise_level_matters(pipes):
    _, ours = pipes
    low, high = (ours("a cat", image=_image(), noise_level=n, num_inference_steps=STEPS, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images for n in (5, 300))
    assert low.shape == (1, 32, 32, 3)  # this tiny VAE upscales x2 (the real one x4)
    assert np.abs(low - high).max() > 1e-3


def test_legacy_callback_sees_every_step(pipes):
    _, ours = pipes
    seen = []
    ours("a cat", image=_image(), num_inference_steps=4, output_type="latent",
         callback=lambda step, t, latents: seen.append((step, int(t), tuple(latents.shape))), callback_steps=2)
    assert [s for s, _, _ in seen] == [0, 2]
    assert all(shape == (1, 4, 16, 16) for _, _, shape in seen)


def test_unet_class_labels_match_diffusers(checkpoint):
    ref = diffusers.UNet2DConditionModel.from_pretrained(checkpoint, subfolder="unet").eval()
    ours = nd.UNet2DConditionModel.from_pretrained(checkpoint, subfolder="unet")
    g = torch.Generator().manual_seed(0)
    sample, context = torch.randn(2, 7, 16, 16, generator=g), torch.randn(2, 77, 32, generator=g)
    labels = torch.tensor([20, 350])
    with torch.no_grad():
        expected = ref(sample, 500, context, class_labels=labels).sample
    torch.testing.assert_close(ours(sample, 500, context, class_labels=labels).sample, expected,
                               atol=FP32_ATOL, rtol=0)
    with pytest.raises(ValueError, match="class_labels should be provided"):
        ours(sample, 500, context)
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 1000\)"):
        ours(sample, 500, context, class_labels=torch.tensor([20, 1000]))
    with pytest.raises(ValueError, match="class_labels must be integers"):
        ours(sample, 500, context, class_labels=torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(noise_level=351), ValueError, "`noise_level` has to be <= 350"),
    (dict(image="not an image"), ValueError, "`image` has to be of type"),
    (dict(prompt=["a", "b"], image=[_image()]), ValueError, "`prompt` has batch size 2 and `image` has batch size 1"),
    (dict(callback_steps=0), ValueError, "`callback_steps` has to be a positive integer"),
    (dict(image=None), ValueError, "`image` has to be of type"),
    # Latents not of the low-resolution image's size once reached the engine's concatenation (a LibTorch error).
    (dict(latents=torch.zeros(1, 4, 2, 2)), ValueError, r"Unexpected latents shape, got .*, expected \(1, 4, 16"),
], ids=lambda v: str(v)[:40])
def test_upscale_bad_arguments(pipes, kwargs, error, match):
    call = dict(prompt="a cat", image=_image(), num_inference_steps=2, output_type="np")
    call.update(kwargs)
    with pytest.raises(error, match=match):
        pipes[1](**call)


def test_a_vae_without_the_upscaler_scaling_factor_is_refused(checkpoint, tmp_path):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    config_path = copy / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["scaling_factor"] = 0.18215
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="scaling_factor=0.18215"):
        nd.StableDiffusionUpscalePipeline.from_pretrained(str(copy))


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_upscale_offload_bookkeeping_keeps_the_image(checkpoint, mode):
    pipe = nd.StableDiffusionUpscalePipeline.from_pretrained(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=3, output_type="np")
    expected = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    engine = pipe._engine_pipeline()
    getattr(engine, f"enable_{mode}_cpu_offload")(torch.device("cpu"))
    got = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert engine.offloaded_components() == []
    assert np.abs(got - expected).max() <= FP32_ATOL

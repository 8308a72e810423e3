"""Image-for-image parity of the native SDXL pipelines (image-to-image for base and refiner,
text-to-image for the base, and the guide's base->refiner latent hand-off) with diffusers, on tiny
random-weight SDXL-shaped checkpoints that diffusers itself saves, same torch.Generator seeds."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sdxl_checkpoint  # noqa: E402
from host_memory import assert_no_host_memory_growth, needs_proc  # noqa: E402
from tolerances import FP16_ATOL, FP32_ATOL  # noqa: E402

STEPS = 8  # few steps keep CPU time low; the schedule logic is what matters


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tiny-sdxl"))
    return {kind: make_tiny_sdxl_checkpoint(folder, kind=kind) for kind in ("base", "refiner")}


def _load(cls_ref, cls_ours, path, **kwargs):
    ref = cls_ref.from_pretrained(path, **kwargs)
    ref.set_progress_bar_config(disable=True)
    ours = cls_ours.from_pretrained(path, **kwargs)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


@pytest.fixture(scope="module")
def base_img2img(checkpoints):
    return _load(diffusers.AutoPipelineForImage2Image, nd.AutoPipelineForImage2Image, checkpoints["base"])


@pytest.fixture(scope="module")
def refiner(checkpoints):
    return _load(diffusers.AutoPipelineForImage2Image, nd.AutoPipelineForImage2Image, checkpoints["refiner"])


@pytest.fixture(scope="module")
def base_text2img(checkpoints):
    return _load(diffusers.AutoPipelineForText2Image, nd.AutoPipelineForText2Image, checkpoints["base"])


def _image(width=32, height=32, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _gen(seed, count):
    if count is None:
        return torch.Generator().manual_seed(seed)
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


def _run_both(pipes, seed=0, generator_count=None, **kwargs):
    ref, ours = pipes
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    expected = ref(generator=_gen(seed, generator_count), **kwargs).images
    got = ours(generator=_gen(seed, generator_count), **kwargs).images
    return np.asarray(got), np.asarray(expected)


def _assert_close(got, expected, atol=FP32_ATOL):
    assert got.shape == expected.shape
    diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
    assert diff <= atol, f"max abs difference {diff}"


IMG2IMG_CASES = {
    "strength_0.3_default": dict(),
    "strength_0.8": dict(strength=0.8),
    "negative_prompt": dict(strength=0.6, negative_prompt="blurry, low quality"),
    "prompt_2": dict(strength=0.6, prompt_2="an oil painting", negative_prompt="blurry",
                     negative_prompt_2="grainy"),
    "micro_conditioning": dict(strength=0.6, original_size=(96, 128), crops_coords_top_left=(8, 16),
                               target_size=(64, 80), negative_original_size=(32, 48),
                               negative_crops_coords_top_left=(4, 4), negative_target_size=(72, 72),
                               aesthetic_score=7.5, negative_aesthetic_score=1.5),
    "guidance_rescale": dict(strength=0.7, guidance_rescale=0.7, guidance_scale=9.0),
    "no_guidance": dict(strength=0.5, guidance_scale=1.0),
    "two_images_per_prompt": dict(strength=0.5, num_images_per_prompt=2, generator_count=2),
    "two_prompts": dict(prompt=["a red fox", "a castle on a hill"], strength=0.5, negative_prompt=["dark", "fog"]),
    "clip_skip": dict(strength=0.5, clip_skip=1),
    "denoising_end": dict(strength=0.9, denoising_end=0.6),
    "output_latent": dict(strength=0.5, output_type="latent"),
}


@pytest.mark.parametrize("name", sorted(IMG2IMG_CASES))
@pytest.mark.parametrize("kind", ["base", "refiner"])
def test_img2img_matches_diffusers(request, kind, name):
    pipes = request.getfixturevalue("base_img2img" if kind == "base" else "refiner")
    kwargs = dict(IMG2IMG_CASES[name])
    kwargs.setdefault("prompt", "a photo of an astronaut riding a horse")
    if kwargs.get("output_type") == "latent":
        ref, ours = pipes
        expected = ref(image=_image(), generator=_gen(0, None), num_inference_steps=STEPS, **kwargs).images
        got = ours(image=_image(), generator=_gen(0, None), num_inference_steps=STEPS, **kwargs).images
        torch.testing.assert_close(got, expected, atol=FP32_ATOL, rtol=0)
        return
    got, expected = _run_both(pipes, image=_image(), **kwargs)
    _assert_close(got, expected)


def test_refiner_has_no_first_encoder_and_scores_aesthetics(refiner):
    _, ours = refiner
    assert isinstance(ours, nd.StableDiffusionXLImg2ImgPipeline)
    assert ours.text_encoder is None and ours.tokenizer is None
    assert ours.config.requires_aesthetics_score is True


def test_base_maps_to_sdxl_pipelines(base_img2img, base_text2img):
    assert type(base_img2img[1]) is nd.StableDiffusionXLImg2ImgPipeline
    assert type(base_text2img[1]) is nd.StableDiffusionXLPipeline


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "HeunDiscreteScheduler",
                                       "DPMSolverMultistepScheduler"])
def test_other_schedulers(base_img2img, scheduler):
    ref, ours = base_img2img
    ref_scheduler, ours_scheduler = ref.scheduler, ours.scheduler
    try:
        ref.scheduler = getattr(diffusers, scheduler).from_config(ref_scheduler.config)
        ours.scheduler = getattr(nd, scheduler).from_config(ours_scheduler.config)
        got, expected = _run_both(base_img2img, prompt="a lighthouse", image=_image(), strength=0.7)
        _assert_close(got, expected)
    finally:
        ref.scheduler, ours.scheduler = ref_scheduler, ours_scheduler


TEXT2IMG_CASES = {
    "default": dict(),
    "negative_prompts": dict(negative_prompt="blurry", negative_prompt_2="grainy", prompt_2="watercolor"),
    "negative_sizes": dict(negative_original_size=(32, 32), negative_target_size=(48, 48),
                           negative_crops_coords_top_left=(2, 2), original_size=(128, 96)),
    "denoising_end": dict(denoising_end=0.7),
    "guidance_rescale": dict(guidance_rescale=0.5),
}


@pytest.mark.parametrize("name", sorted(TEXT2IMG_CASES))
def test_text2img_matches_diffusers(base_text2img, name):
    got, expected = _run_both(base_text2img, prompt="a cat wearing sunglasses", height=32, width=32,
                              **TEXT2IMG_CASES[name])
    _assert_close(got, expected)


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "HeunDiscreteScheduler"])
def test_base_to_refiner_latent_handoff(base_text2img, refiner, scheduler):
    """The guide's chain: base to 80% in latent space, the refiner from there (denoising_start)."""
    def chain(base, ref_or_ours_refiner, module):
        saved = (base.scheduler, ref_or_ours_refiner.scheduler)
        try:
            base.scheduler = getattr(module, scheduler).from_config(saved[0].config)
            ref_or_ours_refiner.scheduler = getattr(module, scheduler).from_config(saved[1].config)
            latents = base(prompt="a majestic lion", height=32, width=32, num_inference_steps=10,
                           denoising_end=0.8, output_type="latent", generator=_gen(3, None)).images
            image = ref_or_ours_refiner(prompt="a majestic lion", image=latents, num_inference_steps=10,
                                        denoising_start=0.8, output_type="np", generator=_gen(4, None)).images
            return latents, np.asarray(image)
        finally:
            base.scheduler, ref_or_ours_refiner.scheduler = saved

    ref_latents, expected = chain(base_text2img[0], refiner[0], diffusers)
    our_latents, got = chain(base_text2img[1], refiner[1], nd)
    torch.testing.assert_close(our_latents, ref_latents, atol=FP32_ATOL, rtol=0)
    _assert_close(got, expected)


def test_force_zeros_for_empty_prompt_off(checkpoints):
    pipes = _load(diffusers.StableDiffusionXLImg2ImgPipeline, nd.StableDiffusionXLImg2ImgPipeline,
                  checkpoints["base"], force_zeros_for_empty_prompt=False)
    assert pipes[1].config.force_zeros_for_empty_prompt is False
    got, expected = _run_both(pipes, prompt="a tree", image=_image(), strength=0.6, negative_prompt_2="ugly")
    _assert_close(got, expected)


def test_prompt_embeds_round_trip(base_img2img):
    ref, ours = base_img2img
    embeds = ref.encode_prompt("a boat", negative_prompt="fog", device="cpu", num_images_per_prompt=1,
                               do_classifier_free_guidance=True)
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    kwargs = dict(zip(names, embeds))
    got, expected = _run_both(base_img2img, image=_image(), strength=0.5, **kwargs)
    _assert_close(got, expected)


def test_freeu_matches_diffusers(checkpoints):
    pipes = _load(diffusers.AutoPipelineForImage2Image, nd.AutoPipelineForImage2Image, checkpoints["base"])
    for pipe in pipes:
        pipe.enable_freeu(s1=0.6, s2=0.4, b1=1.1, b2=1.2)  # diffusers' suggestion for SDXL
    got, expected = _run_both(pipes, prompt="a boat", image=_image(), strength=0.5)
    _assert_close(got, expected)


def test_fuse_qkv_projections_matches_diffusers_fused(checkpoints):
    # Own pipelines: fusing changes the models, and the module-scoped ones are shared.
    pipes = _load(diffusers.AutoPipelineForImage2Image, nd.AutoPipelineForImage2Image, checkpoints["base"])
    for pipe in pipes:
        pipe.fuse_qkv_projections()
    got, expected = _run_both(pipes, prompt="a boat", image=_image(), strength=0.5)
    _assert_close(got, expected)


def test_callback_sees_sdxl_tensors(base_img2img):
    _, ours = base_img2img
    seen = {}

    def on_step(pipe, step, timestep, kwargs):
        seen.update({k: tuple(v.shape) for k, v in kwargs.items()})
        return {"latents": kwargs["latents"]}

    ours(prompt="a bird", image=_image(), strength=0.5, num_inference_steps=4, output_type="np",
         callback_on_step_end=on_step,
         callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"])
    assert seen == {"latents": (1, 4, 16, 16), "prompt_embeds": (2, 77, 64), "add_text_embeds": (2, 32),
                    "add_time_ids": (2, 6)}


def test_bad_inputs_raise_diffusers_errors(base_img2img, refiner):
    _, ours = base_img2img
    with pytest.raises(ValueError, match="strength"):
        ours(prompt="x", image=_image(), strength=1.5)
    with pytest.raises(ValueError, match="pooled_prompt_embeds"):
        ours(prompt_embeds=torch.zeros(1, 77, 64), image=_image())
    with pytest.raises(ValueError, match="Cannot forward both `prompt_2`"):
        ours(prompt_2="x", prompt_embeds=torch.zeros(1, 77, 64), pooled_prompt_embeds=torch.zeros(1, 32),
             image=_image())
    with pytest.raises(ValueError, match="denoising_start"):
        ours(prompt="x", image=_image(), denoising_start=0.8, denoising_end=0.5)
    with pytest.raises(TypeError, match="negative_prompt"):
        ours(prompt="x", image=_image(), negative_prompt=["a"])
    with pytest.raises(ValueError, match="num_inference_steps"):
        ours(prompt="x", image=_image(), num_inference_steps=0)
    # The refiner's UNet expects the aesthetic score; without it the id count is one short.
    _, our_refiner = refiner
    our_refiner.register_to_config(requires_aesthetics_score=False)
    try:
        with pytest.raises(ValueError, match="requires_aesthetics_score"):
            our_refiner(prompt="x", image=_image(), num_inference_steps=4)
    finally:
        our_refiner.register_to_config(requires_aesthetics_score=True)


def test_float16_vae_upcasts_for_encode_and_decode_like_diffusers(checkpoints):
    """The SDXL VAE asks for force_upcast: with torch_dtype=float16 both libraries encode and decode in
    float32 and put the VAE back to float16 afterwards. float16 arithmetic on the CPU differs between
    kernels, so the bound is float16's, not float32's."""
    pipes = _load(diffusers.StableDiffusionXLImg2ImgPipeline, nd.StableDiffusionXLImg2ImgPipeline,
                  checkpoints["refiner"], torch_dtype=torch.float16)
    assert pipes[1].vae.config.force_upcast is True
    got, expected = _run_both(pipes, prompt="a harbor at dawn", image=_image(), strength=0.5, num_inference_steps=4)
    assert pipes[1].vae.dtype == torch.float16
    assert np.isfinite(got).all()
    _assert_close(got, expected, atol=FP16_ATOL)


@needs_proc
def test_repeated_calls_do_not_grow_host_memory(refiner):
    _, ours = refiner
    kwargs = dict(prompt="a cat", image=_image(), strength=0.5, num_inference_steps=4, output_type="np")
    assert_no_host_memory_growth(lambda: ours(**kwargs))

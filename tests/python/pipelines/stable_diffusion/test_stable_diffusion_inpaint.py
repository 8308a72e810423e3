"""Image-for-image parity of the native StableDiffusionInpaintPipeline with diffusers, on tiny
random-weight checkpoints that diffusers itself saves: a 9-channel inpainting UNet and an ordinary
4-channel one (whose latents diffusers blends with the re-noised original after every step), same
torch.Generator seeds."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint  # noqa: E402
from host_memory import assert_no_host_memory_growth, needs_proc  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = 8
SIZE = dict(height=32, width=32)  # the tiny UNet's sample_size (16) x 8 would be 128: keep CPU time low


@pytest.fixture(scope="module", params=[9, 4], ids=["unet9", "unet4"])
def checkpoint(request, tmp_path_factory):
    return make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("tiny-sd-inpaint")), unet_in_channels=request.param)


@pytest.fixture(scope="module")
def pipes(checkpoint):
    ref = diffusers.AutoPipelineForInpainting.from_pretrained(checkpoint, safety_checker=None)
    ref.set_progress_bar_config(disable=True)
    ours = nd.AutoPipelineForInpainting.from_pretrained(checkpoint)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


def _image(width=32, height=32, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _mask(width=32, height=32, box=(4, 8, 20, 24)):
    m = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return PIL.Image.fromarray(m)


def _generators(seed, count):
    if count is None:
        return torch.Generator().manual_seed(seed)
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


def _run_both(pipes, ref_kwargs=None, **kwargs):
    """Both pipelines on the same arguments (``ref_kwargs`` replaces some for diffusers only)."""
    ref, ours = pipes
    seed = kwargs.pop("seed", 0)
    n_gen = kwargs.pop("generator_count", None)
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    for k, v in SIZE.items():
        kwargs.setdefault(k, v)
    expected = ref(generator=_generators(seed, n_gen), **dict(kwargs, **(ref_kwargs or {}))).images
    got = ours(generator=_generators(seed, n_gen), **kwargs).images
    return np.asarray(got), np.asarray(expected)


def _assert_close(got, expected):
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


CASES = {
    "strength_1.0": dict(),
    "strength_0.6": dict(strength=0.6),
    "strength_0.3_of_50": dict(strength=0.3, num_inference_steps=50),
    "guidance_1.0": dict(guidance_scale=1.0),
    "negative_prompt": dict(negative_prompt="blurry"),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2),
    "two_prompts": dict(prompt=["a cat", "a dog"], negative_prompt=["", "ugly"]),
    "generator_list": dict(prompt=["a cat", "a dog"], generator_count=2),
    "generator_list_strength_0.7": dict(prompt=["a cat", "a dog"], generator_count=2, strength=0.7),
    "non_square": dict(height=24, width=40),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inpaint_matches_diffusers(pipes, case):
    kwargs = dict(prompt="a photo of an astronaut", image=_image(), mask_image=_mask())
    kwargs.update(CASES[case])
    _assert_close(*_run_both(pipes, **kwargs))


def test_default_size_comes_from_the_unet(pipes):
    # sample_size 16 x vae_scale_factor 2: 32x32 although the image is 48x40.
    ref, ours = pipes
    kwargs = dict(prompt="a cat", image=_image(48, 40), mask_image=_mask(48, 40), num_inference_steps=2,
                  output_type="np")
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert got.shape == expected.shape == (1, 32, 32, 3)
    _assert_close(got, expected)


def _mask_forms():
    pil = _mask()
    as_np = np.asarray(pil).astype(np.float32) / 255.0
    return {
        "pil_rgb": pil.convert("RGB"),
        "np_hw": as_np,
        "np_hw1": as_np[..., None],
        "np_bhw": np.stack([as_np, as_np[::-1]]),
        "pt_hw": torch.from_numpy(as_np),
        "pt_1hw": torch.from_numpy(as_np)[None],
        "pt_b1hw": torch.from_numpy(np.stack([as_np, as_np[:, ::-1].copy()]))[:, None],
        "pil_list": [pil, _mask(box=(10, 2, 30, 12))],
        "soft_np": np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32),
        "other_size_pil": _mask(48, 40, box=(6, 10, 30, 30)),
    }


@pytest.mark.parametrize("form", sorted(_mask_forms()))
def test_each_mask_type_matches_diffusers(pipes, form):
    mask = _mask_forms()[form]
    batched = form in ("np_bhw", "pt_b1hw", "pil_list")
    prompt = ["a cat", "a dog"] if batched else "a cat"
    _assert_close(*_run_both(pipes, prompt=prompt, image=_image(), mask_image=mask, strength=0.8))


def test_image_batches_and_tensor_images(pipes):
    pil = _image(seed=3)
    as_np = np.asarray(pil).astype(np.float32) / 255.0
    as_pt = torch.from_numpy(as_np).permute(2, 0, 1)
    for image in (as_np, as_pt, [pil, _image(seed=4)]):
        prompt = ["a cat", "a dog"] if isinstance(image, list) else "a cat"
        _assert_close(*_run_both(pipes, prompt=prompt, image=image, mask_image=_mask(), generator_count=None))
    # two images, two generators: each image encoded with its own generator
    _assert_close(*_run_both(pipes, prompt=["a", "b"], image=[pil, _image(seed=4)], mask_image=_mask(),
                             generator_count=2, strength=0.6))


def test_blurred_mask_matches_diffusers(pipes):
    ref, ours = pipes
    blurred_ref = ref.mask_processor.blur(_mask(), blur_factor=3)
    blurred_ours = ours.mask_processor.blur(_mask(), blur_factor=3)
    np.testing.assert_array_equal(np.asarray(blurred_ours), np.asarray(blurred_ref))
    _assert_close(*_run_both(pipes, prompt="a cat", image=_image(), mask_image=blurred_ours,
                             ref_kwargs=dict(mask_image=blurred_ref)))


def test_padding_mask_crop_matches_diffusers(pipes):
    """The crop around the mask is inpainted and pasted back onto the full image with the overlay;
    outputs are PIL (diffusers requires it), compared as [0, 1] arrays."""
    ref, ours = pipes
    image, mask = _image(64, 48, seed=5), _mask(64, 48, box=(30, 12, 44, 28))
    kwargs = dict(prompt="a cat", image=image, mask_image=mask, padding_mask_crop=4, num_inference_steps=STEPS,
                  output_type="pil", **SIZE)
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert [g.size for g in got] == [e.size for e in expected] == [(64, 48)]
    diff = np.abs(np.asarray(got[0], np.int16) - np.asarray(expected[0], np.int16))
    assert diff.max() <= 1  # a float32 difference of 1e-6 can round to the next 8-bit level


def test_masked_image_latents_given(pipes):
    ref, ours = pipes
    image = ref.image_processor.preprocess(_image(seed=6))
    mask = ref.mask_processor.preprocess(_mask())
    with torch.no_grad():
        latents = ref.vae.encode(image * (mask < 0.5)).latent_dist.mode() * ref.vae.config.scaling_factor
    _assert_close(*_run_both(pipes, prompt="a cat", image=_image(seed=6), mask_image=_mask(),
                             masked_image_latents=latents))


def test_latents_in_and_latent_output(pipes):
    ref, ours = pipes
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(9))
    for strength in (1.0, 0.6):
        _assert_close(*_run_both(pipes, prompt="a cat", image=_image(), mask_image=_mask(), latents=noise,
                                 strength=strength))
    got, expected = _run_both(pipes, prompt="a cat", image=_image(), mask_image=_mask(), output_type="latent",
                              strength=0.7)
    assert got.shape == (1, 4, 16, 16)
    _assert_close(got, expected)


def test_prompt_embeds(pipes):
    ref, _ = pipes
    ids = ref.tokenizer(["a red car"], padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
    with torch.no_grad():
        embeds = ref.text_encoder(ids)[0]
    _assert_close(*_run_both(pipes, prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds),
                             image=_image(), mask_image=_mask()))


def test_callbacks_see_and_replace_the_mask_tensors(pipes):
    """diffusers' callback tensors, incl. mask and masked_image_latents; a callback that replaces the
    mask changes later steps (the channels or the blend) as it does in diffusers."""
    ref, ours = pipes
    names = ["latents", "prompt_embeds", "negative_prompt_embeds", "mask", "masked_image_latents"]

    def recorder(seen):
        def callback(pipe, step, timestep, tensors):
            seen.append((step, int(timestep), {k: tuple(v.shape) for k, v in tensors.items()}))
            return {"mask": torch.ones_like(tensors["mask"])} if step == 2 else {}

        return callback

    seen_ref, seen_ours = [], []
    got, expected = _run_both(pipes, prompt="a cat", image=_image(), mask_image=_mask(), strength=0.9,
                              callback_on_step_end_tensor_inputs=names, callback_on_step_end=recorder(seen_ours),
                              ref_kwargs=dict(callback_on_step_end=recorder(seen_ref)))
    assert seen_ours == seen_ref and seen_ours
    _assert_close(got, expected)


def test_legacy_output_types(pipes):
    _, ours = pipes
    kwargs = dict(prompt="a cat", image=_image(), mask_image=_mask(), num_inference_steps=2, **SIZE)
    pil = ours(generator=torch.Generator().manual_seed(0), **kwargs).images[0]
    assert isinstance(pil, PIL.Image.Image) and pil.size == (32, 32)
    images, nsfw = ours(generator=torch.Generator().manual_seed(0), return_dict=False, output_type="pt", **kwargs)
    assert nsfw is None and images.shape == (1, 3, 32, 32)


def test_from_pipe_round_trip_reuses_weights(checkpoint):
    """Image-to-image to inpainting and back, the same components, against diffusers doing the same."""
    ref_i2i = diffusers.AutoPipelineForImage2Image.from_pretrained(checkpoint, safety_checker=None)
    ours_i2i = nd.AutoPipelineForImage2Image.from_pretrained(checkpoint)
    ref_inp = diffusers.AutoPipelineForInpainting.from_pipe(ref_i2i)
    ours_inp = nd.AutoPipelineForInpainting.from_pipe(ours_i2i)
    assert type(ours_inp).__name__ == type(ref_inp).__name__ == "StableDiffusionInpaintPipeline"
    assert ours_inp.unet is ours_i2i.unet and ours_inp.vae is ours_i2i.vae
    for pipe in (ref_inp, ours_inp):
        pipe.set_progress_bar_config(disable=True)
    _assert_close(*_run_both((ref_inp, ours_inp), prompt="a cat", image=_image(), mask_image=_mask(), strength=0.7))
    back = nd.AutoPipelineForImage2Image.from_pipe(ours_inp)
    assert type(back).__name__ == "StableDiffusionImg2ImgPipeline" and back.unet is ours_i2i.unet


def test_auto_pipeline_maps_text_to_image_checkpoints(tmp_path):
    # A plain SD checkpoint (StableDiffusionPipeline in model_index.json) loads for inpainting too.
    ckpt = make_tiny_sd_checkpoint(str(tmp_path))
    pipe = nd.AutoPipelineForInpainting.from_pretrained(ckpt)
    assert isinstance(pipe, nd.StableDiffusionInpaintPipeline)
    assert isinstance(nd.DiffusionPipeline.from_pretrained(ckpt), nd.StableDiffusionPipeline)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(strength=1.5), ValueError, "strength should in"),
        (dict(strength=-0.1), ValueError, "strength should in"),
        (dict(strength=0.01, num_inference_steps=10), ValueError, "After adjusting the num_inference_steps"),
        (dict(mask_image=None), ValueError, "`mask_image` input cannot be undefined"),
        (dict(image=None), ValueError, "`image` input cannot be undefined"),
        (dict(height=30), ValueError, "divisible by 8"),
        (dict(padding_mask_crop=4, image=torch.rand(3, 32, 32)), ValueError, "should be a PIL image"),
        (dict(padding_mask_crop=4, mask_image=np.ones((32, 32), np.float32)), ValueError,
         "mask image should be a PIL image"),
        (dict(padding_mask_crop=4, output_type="np"), ValueError, "output type should be PIL"),
        (dict(callback_on_step_end_tensor_inputs=["noise"]), ValueError, "callback_on_step_end_tensor_inputs"),
        (dict(generator=[torch.Generator(), torch.Generator()]), ValueError, "list of generators of length 2"),
        (dict(prompt=["a", "b", "c"], mask_image=[_mask(), _mask()]), ValueError, "Masks are supposed to be"),
        (dict(image=torch.zeros(1, 4, 16, 16)), ValueError, "cannot be masked by"),
    ],
)
def test_bad_inputs_raise_diffusers_errors(pipes, kwargs, error, match):
    _, ours = pipes
    call = dict(prompt="a cat", image=_image(), mask_image=_mask(), num_inference_steps=2, **SIZE)
    call.update(kwargs)
    with pytest.raises(error, match=match):
        ours(**call)


def test_wrong_mask_channels_for_a_9_channel_unet(pipes):
    ref, ours = pipes
    if ours.unet.config.in_channels != 9:
        pytest.skip("only a 9-channel UNet counts the mask's channels (the 4-channel run is checked above)")
    mask = torch.ones(1, 3, 32, 32)
    for pipe in (ref, ours):
        with pytest.raises(ValueError, match="Incorrect configuration settings"):
            pipe(prompt="a cat", image=_image(), mask_image=mask, num_inference_steps=2, **SIZE)


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler",
                                       "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler"])
def test_schedulers_match_diffusers(pipes, scheduler):
    ref, ours = pipes
    original = (ref.scheduler, ours.scheduler)
    try:
        ref.scheduler = getattr(diffusers, scheduler).from_config(ref.scheduler.config)
        ours.scheduler = getattr(nd, scheduler).from_config(ours.scheduler.config)
        for strength in (1.0, 0.7):
            _assert_close(*_run_both(pipes, prompt="a cat", image=_image(), mask_image=_mask(), strength=strength,
                                     eta=1.0 if scheduler == "DDIMScheduler" else 0.0))
    finally:
        ref.scheduler, ours.scheduler = original


@needs_proc
def test_repeated_calls_do_not_grow_host_memory(pipes):
    _, ours = pipes
    kwargs = dict(prompt="a cat", image=_image(), mask_image=_mask(), num_inference_steps=3, output_type="np", **SIZE)
    assert_no_host_memory_growth(lambda: ours(**kwargs))

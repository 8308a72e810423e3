"""Inpainting parity of the native KandinskyV22InpaintPipeline and KandinskyV22InpaintCombinedPipeline
with diffusers, on tiny random-weight checkpoints diffusers saves in the hub's layout (a 9-channel
decoder UNet whose model card names its prior), same image embeddings and torch.Generator seeds:
PIL, numpy and tensor masks, batches, guidance on and off, the DDPM scheduler the real decoder ships,
DDIM and a learned-range variance, latent and tensor output, step callbacks, AutoPipelineForInpainting
and from_pipe to and from the image-to-image combined pipeline, and diffusers' errors."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting import (  # noqa: E402
    prepare_mask_and_masked_image,
)
from native_diffusers.utils.testing_utils import make_tiny_kandinsky22_checkpoints  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

EMBED_DIM = 32
STEPS = 4
SIZE = dict(height=64, width=64)  # the tiny MoVQ's scale factor is 8: 8 x 8 latents


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory):
    return make_tiny_kandinsky22_checkpoints(str(tmp_path_factory.mktemp("tiny-kandinsky-inpaint")), inpaint=True)


@pytest.fixture(scope="module")
def pipes_for(decoder_path):
    """scheduler name -> (diffusers pipeline, ours) over the components of one folder diffusers saved."""
    ref = diffusers.KandinskyV22InpaintPipeline.from_pretrained(decoder_path)
    ours = nd.KandinskyV22InpaintPipeline.from_pretrained(decoder_path)
    schedulers = {
        "ddpm": lambda lib, config: lib.DDPMScheduler.from_config(config),
        "ddim": lambda lib, config: lib.DDIMScheduler.from_config(config),
        "ddpm_learned_range": lambda lib, config: lib.DDPMScheduler.from_config(config, variance_type="learned_range"),
    }
    cache = {}

    def get(name):
        if name not in cache:
            pair = []
            for lib, pipe in ((diffusers, ref), (nd, ours)):
                made = type(pipe)(unet=pipe.unet, movq=pipe.movq,
                                  scheduler=schedulers[name](lib, pipe.scheduler.config))
                made.set_progress_bar_config(disable=True)
                pair.append(made)
            cache[name] = tuple(pair)
        return cache[name]

    return get


@pytest.fixture
def ddpm_pipes(pipes_for):
    return pipes_for("ddpm")


def _image(width=64, height=64, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _mask_array(width=64, height=64, box=(10, 40, 20, 50)):
    """1 (white: repainted) inside the box rows [box[0], box[1]) and columns [box[2], box[3])."""
    mask = np.zeros((height, width), dtype=np.float32)
    mask[box[0]:box[1], box[2]:box[3]] = 1
    return mask


def _mask(width=64, height=64, box=(10, 40, 20, 50)):
    return PIL.Image.fromarray((_mask_array(width, height, box) * 255).astype(np.uint8))


def _embeds(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, EMBED_DIM, generator=g), torch.randn(batch, EMBED_DIM, generator=g)


def _copy(value):
    # diffusers binarises a tensor mask in place: each pipeline gets its own.
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.copy() if isinstance(value, np.ndarray) else value.clone()
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _run_both(pipes, batch=1, generator_count=None, **kwargs):
    ref, ours = pipes
    image_embeds, negative = _embeds(batch)

    def gen():
        if generator_count is None:
            return torch.Generator().manual_seed(0)
        return [torch.Generator().manual_seed(i) for i in range(generator_count)]

    kwargs = {"image": _image(), "mask_image": _mask(), "num_inference_steps": STEPS, "output_type": "np",
              **SIZE, **kwargs}
    expected = ref(image_embeds=image_embeds, negative_image_embeds=negative, generator=gen(),
                   **{k: _copy(v) for k, v in kwargs.items()}).images
    got = ours(image_embeds=image_embeds, negative_image_embeds=negative, generator=gen(),
               **{k: _copy(v) for k, v in kwargs.items()}).images
    return got, expected


def _assert_close(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff <= FP32_ATOL, f"max abs diff {diff}"


_TENSOR_IMAGE = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
CASES = {
    "pil_mask": dict(),
    "no_guidance": dict(guidance_scale=1.0),
    "guidance_7": dict(guidance_scale=7.0),
    # numpy masks are not resized: one at the image's size, one at another (interpolated to the latents).
    "numpy_mask": dict(mask_image=_mask_array()),
    "numpy_mask_other_size": dict(mask_image=_mask_array(40, 48, box=(5, 30, 10, 25))),
    "numpy_image": dict(image=np.asarray(_image()), mask_image=_mask_array()),
    # A soft tensor mask: binarised at 0.5.
    "tensor_image_and_mask": dict(image=_TENSOR_IMAGE,
                                  mask_image=torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(4))),
    "tensor_2d_mask": dict(image=_TENSOR_IMAGE[0], mask_image=torch.from_numpy(_mask_array())),
    "all_masked": dict(mask_image=_mask(box=(0, 64, 0, 64))),
    "nothing_masked": dict(mask_image=_mask(box=(0, 0, 0, 0))),
    "batch_of_two": dict(batch=2, image=[_image(seed=0), _image(seed=1)],
                         mask_image=[_mask(), _mask(box=(30, 60, 0, 20))]),
    "two_per_prompt_generator_list": dict(num_images_per_prompt=2, generator_count=2),
    "nonsquare_pil_resized": dict(image=_image(48, 40), mask_image=_mask(48, 40), height=64, width=128),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inpaint_matches_diffusers(ddpm_pipes, case):
    got, expected = _run_both(ddpm_pipes, **CASES[case])
    assert got.min() >= 0 and got.max() <= 1
    _assert_close(got, expected)


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm_learned_range"])
def test_inpaint_matches_diffusers_other_schedulers(pipes_for, scheduler):
    got, expected = _run_both(pipes_for(scheduler), num_images_per_prompt=2)
    _assert_close(got, expected)


def test_given_latents_and_tensor_output(ddpm_pipes):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    got, expected = _run_both(ddpm_pipes, latents=latents, output_type="pt")
    # diffusers returns the MoVQ's output as it is for "pt", in [-1, 1], not [0, 1].
    assert isinstance(got, torch.Tensor) and got.shape == (1, 3, 64, 64) and got.min() < 0
    _assert_close(got, expected)


def test_pil_output(ddpm_pipes):
    got, expected = _run_both(ddpm_pipes, output_type="pil", num_inference_steps=2)
    assert isinstance(got[0], PIL.Image.Image) and got[0].size == (64, 64)
    # uint8 after rounding: a difference within FP32_ATOL may still cross a rounding boundary.
    assert np.abs(np.asarray(got[0], dtype=np.int16) - np.asarray(expected[0], dtype=np.int16)).max() <= 1


def test_latent_output_and_callbacks(ddpm_pipes):
    ref, ours = ddpm_pipes
    seen = {"ref": [], "ours": []}
    names = ["latents", "image_embeds", "negative_image_embeds", "masked_image", "mask_image"]

    def callback(key):
        def on_step_end(pipe, step, timestep, kwargs):
            seen[key].append((step, int(timestep), {k: tuple(kwargs[k].shape) for k in names}))
            if step == 1:
                return {"latents": kwargs["latents"] * 0.95, "masked_image": kwargs["masked_image"] * 0.5}
            if step == STEPS - 1:  # the final blend reads the mask the last callback left
                mask = kwargs["mask_image"].clone()
                mask[..., :4, :] = 1
                return {"mask_image": mask}
            return {}

        return on_step_end

    image_embeds, negative = _embeds()
    results = {}
    for key, pipe in (("ref", ref), ("ours", ours)):
        results[key] = pipe(image_embeds=image_embeds, negative_image_embeds=negative, image=_image(),
                            mask_image=_mask(), num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                            output_type="latent", callback_on_step_end=callback(key),
                            callback_on_step_end_tensor_inputs=names, **SIZE).images
    assert seen["ours"] == seen["ref"] and len(seen["ours"]) == STEPS
    assert seen["ours"][0][2]["mask_image"] == (2, 1, 8, 8) and seen["ours"][0][2]["masked_image"] == (2, 4, 8, 8)
    assert results["ours"].shape == results["ref"].shape == (1, 4, 8, 8)
    assert (results["ours"] - results["ref"]).abs().max().item() <= FP32_ATOL
    assert ours.num_timesteps == ref.num_timesteps == STEPS


def test_mask_preprocessing_matches_diffusers():
    from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting import (
        prepare_mask_and_masked_image as reference,
    )

    soft = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    for args in ((image, soft), (_image(), _mask()), (_image(), _mask_array(30, 20)), ([_image()] * 2, [_mask()] * 2)):
        got_mask, got_image = prepare_mask_and_masked_image(*_copy(list(args)), 64, 64)
        want_mask, want_image = reference(*_copy(list(args)), 64, 64)
        assert torch.equal(got_mask, want_mask) and torch.equal(got_image, want_image)


def test_eroded_mask_matches_diffusers(ddpm_pipes):
    """The engine's erosion of the keep-mask at latent size (diffusers' prepare_mask: six of the eight
    neighbours of every pixel that is not kept), seen through the callback tensors."""
    rng = np.random.default_rng(10)
    mask = (rng.random((64, 64)) > 0.97).astype(np.float32)  # scattered holes: the erosion shows
    seen = {}

    def callback(key):
        def on_step_end(pipe, step, timestep, kwargs):
            seen[key] = (kwargs["mask_image"].clone(), kwargs["masked_image"].clone())
            return {}

        return on_step_end

    image_embeds, negative = _embeds()
    for key, pipe in zip(("ref", "ours"), ddpm_pipes):
        pipe(image_embeds, _image(), mask.copy(), negative, num_inference_steps=1, output_type="latent",
             callback_on_step_end=callback(key), callback_on_step_end_tensor_inputs=["mask_image", "masked_image"],
             **SIZE)
    (ref_mask, ref_masked), (our_mask, our_masked) = seen["ref"], seen["ours"]
    assert torch.equal(our_mask, ref_mask)
    assert 0 < float(ref_mask.mean()) < 1
    assert (our_masked - ref_masked).abs().max().item() <= FP32_ATOL


def test_soft_tensor_mask_is_not_changed_in_place(ddpm_pipes):
    _, ours = ddpm_pipes
    image_embeds, negative = _embeds()
    mask = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(9))
    before = mask.clone()
    ours(image_embeds, _TENSOR_IMAGE, mask, negative, num_inference_steps=1, output_type="latent", **SIZE)
    assert torch.equal(mask, before)


def _raises_like_diffusers(pipes, error, match, **kwargs):
    ref, ours = pipes
    image_embeds, negative = _embeds()
    kwargs = {"image_embeds": image_embeds, "negative_image_embeds": negative, "image": _image(),
              "mask_image": _mask(), "num_inference_steps": 1, **SIZE, **kwargs}
    for pipe in (ref, ours):
        with pytest.raises(error, match=match):
            pipe(**{k: _copy(v) for k, v in kwargs.items()})


BAD_INPUTS = {
    "callback_tensor_name": (ValueError, "callback_on_step_end_tensor_inputs",
                             dict(callback_on_step_end_tensor_inputs=["prompt_embeds"])),
    "no_image": (ValueError, "`image` input cannot be undefined", dict(image=None)),
    "no_mask": (ValueError, "`mask_image` input cannot be undefined", dict(mask_image=None)),
    "tensor_image_pil_mask": (TypeError, "is a torch.Tensor but `mask`", dict(image=_TENSOR_IMAGE)),
    "pil_image_tensor_mask": (TypeError, "is a torch.Tensor but `image`",
                              dict(mask_image=torch.ones(1, 1, 64, 64))),
    "image_out_of_range": (ValueError, r"Image should be in \[-1, 1\] range",
                           dict(image=_TENSOR_IMAGE * 3, mask_image=torch.ones(1, 1, 64, 64))),
    "mask_out_of_range": (ValueError, r"Mask should be in \[0, 1\] range",
                          dict(image=_TENSOR_IMAGE, mask_image=torch.ones(1, 1, 64, 64) * 2)),
    "spatial_mismatch": (AssertionError, "same spatial dimensions",
                         dict(image=_TENSOR_IMAGE, mask_image=torch.ones(1, 1, 32, 32))),
    "batch_mismatch": (AssertionError, "same batch size",
                       dict(image=_TENSOR_IMAGE, mask_image=torch.ones(2, 1, 64, 64))),
    "output_type": (ValueError, "Only the output types", dict(output_type="bogus")),
    "latents_shape": (ValueError, "Unexpected latents shape", dict(latents=torch.randn(1, 4, 16, 16))),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_raise_as_in_diffusers(ddpm_pipes, name):
    error, match, kwargs = BAD_INPUTS[name]
    _raises_like_diffusers(ddpm_pipes, error, match, **kwargs)


def test_bad_inputs_diffusers_fails_on_later(ddpm_pipes):
    """Inputs on which diffusers fails deep inside (a torch error, an AttributeError): a clear error here."""
    _, ours = ddpm_pipes
    image_embeds, negative = _embeds()
    with pytest.raises(TypeError, match="`image` has to be"):
        ours(image_embeds, "not an image", _mask(), negative, **SIZE)
    with pytest.raises(ValueError, match="image_embeds"):  # two embeddings for one image
        ours(torch.cat([image_embeds] * 2), _image(), _mask(), torch.cat([negative] * 2), num_inference_steps=1,
             **SIZE)
    # diffusers' randn_tensor indexes past a short generator list (IndexError) and ignores the rest of a
    # long one; here, the message of diffusers' other pipelines for both.
    for count, per_prompt in ((2, 3), (3, 1)):
        with pytest.raises(ValueError, match=f"list of generators of length {count}"):
            ours(image_embeds, _image(), _mask(), negative, num_images_per_prompt=per_prompt, num_inference_steps=1,
                 generator=[torch.Generator().manual_seed(i) for i in range(count)], **SIZE)
    with pytest.raises(ValueError, match="latents of size"):  # a tensor image is not resized to height x width
        ours(image_embeds, _TENSOR_IMAGE, torch.ones(1, 1, 64, 64), negative, height=128, width=128,
             num_inference_steps=1)


def test_loads_through_diffusion_pipeline(decoder_path):
    pipe = nd.DiffusionPipeline.from_pretrained(decoder_path)
    assert type(pipe) is nd.KandinskyV22InpaintPipeline and pipe.movq_scale_factor == 8


# -- the combined pipeline -------------------------------------------------------------------------
COMBINED = dict(num_inference_steps=STEPS, prior_num_inference_steps=3, output_type="np", **SIZE)


@pytest.fixture(scope="module")
def combined(decoder_path):
    ref = diffusers.AutoPipelineForInpainting.from_pretrained(decoder_path)
    ref.set_progress_bar_config(disable=True)
    ours = nd.AutoPipelineForInpainting.from_pretrained(decoder_path)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


def _run_combined(pipes, seed=0, **kwargs):
    ref, ours = pipes
    kwargs = {"prompt": "a hat", "image": _image(48, 40), "mask_image": _mask(48, 40), **COMBINED, **kwargs}
    expected = ref(generator=torch.Generator().manual_seed(seed), **{k: _copy(v) for k, v in kwargs.items()}).images
    got = ours(generator=torch.Generator().manual_seed(seed), **{k: _copy(v) for k, v in kwargs.items()}).images
    return got, expected


def test_auto_pipeline_for_inpainting_finds_the_prior(combined):
    ref, ours = combined
    assert type(ref).__name__ == "KandinskyV22InpaintCombinedPipeline"
    assert type(ours) is nd.KandinskyV22InpaintCombinedPipeline
    assert type(ours.decoder_pipe) is nd.KandinskyV22InpaintPipeline
    assert type(ours.prior_prior).__name__ == "PriorTransformer"


COMBINED_CASES = {
    "default": dict(),
    "negative_prompt_and_guidance": dict(negative_prompt="blurry", guidance_scale=6.0, prior_guidance_scale=2.0),
    "two_prompts_one_image": dict(prompt=["a hat", "a red barn"]),
    "two_images_per_prompt": dict(num_images_per_prompt=2),
    "numpy_mask": dict(mask_image=_mask_array(64, 64)),
}


@pytest.mark.parametrize("name", sorted(COMBINED_CASES))
def test_combined_inpaint_matches_diffusers(combined, name):
    _assert_close(*_run_combined(combined, **COMBINED_CASES[name]))


def test_from_pipe_to_and_from_image_to_image(combined):
    ref, ours = combined
    ref_i2i = diffusers.AutoPipelineForImage2Image.from_pipe(ref)
    ours_i2i = nd.AutoPipelineForImage2Image.from_pipe(ours)
    assert type(ref_i2i).__name__ == type(ours_i2i).__name__ == "KandinskyV22Img2ImgCombinedPipeline"
    assert ours_i2i.unet is ours.unet and ours_i2i.prior_prior is ours.prior_prior
    ref_back = diffusers.AutoPipelineForInpainting.from_pipe(ref_i2i)
    ours_back = nd.AutoPipelineForInpainting.from_pipe(ours_i2i)
    assert type(ours_back) is nd.KandinskyV22InpaintCombinedPipeline and ours_back.movq is ours.movq
    ref_back.set_progress_bar_config(disable=True)
    ours_back.set_progress_bar_config(disable=True)
    _assert_close(*_run_combined((ref_back, ours_back)))


def test_image_to_image_auto_pipeline_on_the_inpaint_decoder(decoder_path, combined):
    ref, _ = combined
    ours_i2i = nd.AutoPipelineForImage2Image.from_pretrained(decoder_path)
    assert type(ours_i2i) is nd.KandinskyV22Img2ImgCombinedPipeline
    ours = nd.AutoPipelineForInpainting.from_pipe(ours_i2i)
    ours.set_progress_bar_config(disable=True)
    _assert_close(*_run_combined((ref, ours), seed=1))

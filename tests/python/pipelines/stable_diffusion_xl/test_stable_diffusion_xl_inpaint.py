"""Image-for-image parity of the native StableDiffusionXLInpaintPipeline with diffusers, on tiny
random-weight SDXL checkpoints that diffusers itself saves: a 9-channel inpainting UNet, the base
(4 channels) and the refiner (4 channels, aesthetic-score conditioning), which AutoPipelineForInpainting
loads as SDXL inpainting in both libraries; same torch.Generator seeds."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sdxl_checkpoint  # noqa: E402
from parity import random_image  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = 6
SIZE = dict(height=64, width=64)


@pytest.fixture(scope="module", params=["inpaint", "base", "refiner"])
def checkpoint(request, tmp_path_factory):
    return make_tiny_sdxl_checkpoint(str(tmp_path_factory.mktemp("tiny-sdxl-inpaint")), kind=request.param)


@pytest.fixture(scope="module")
def pipes(checkpoint):
    ref = diffusers.AutoPipelineForInpainting.from_pretrained(checkpoint)
    ours = nd.AutoPipelineForInpainting.from_pretrained(checkpoint)
    for pipe in (ref, ours):
        pipe.set_progress_bar_config(disable=True)
    return ref, ours


def _mask(size=64, box=(4, 8, 30, 40)):
    m = np.zeros((size, size), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return PIL.Image.fromarray(m)


def _run_both(pipes, n_generators=None, ref_kwargs=None, **kwargs):
    ref, ours = pipes

    def gen():
        if n_generators is None:
            return torch.Generator().manual_seed(0)
        return [torch.Generator().manual_seed(i) for i in range(n_generators)]

    call = dict(prompt="a cat", image=random_image(64), mask_image=_mask(), num_inference_steps=STEPS,
                output_type="np", **SIZE)
    call.update(kwargs)
    expected = ref(generator=gen(), **dict(call, **(ref_kwargs or {}))).images
    got = ours(generator=gen(), **call).images
    return np.asarray(got), np.asarray(expected)


def _assert_close(got, expected):
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_auto_pipeline_loads_every_sdxl_checkpoint_as_inpainting(pipes):
    ref, ours = pipes
    assert type(ours).__name__ == type(ref).__name__ == "StableDiffusionXLInpaintPipeline"


CASES = {
    "default_strength_0.9999": dict(),
    "strength_1.0": dict(strength=1.0),
    "strength_0.6": dict(strength=0.6),
    "guidance_1.0": dict(guidance_scale=1.0),
    "negative_prompt": dict(negative_prompt="blurry"),
    # An early denoising_start on a clean image is ill-conditioned: diffusers itself moves by 2.5e-5
    # between one and two threads at 0.3; 0.7 keeps the comparison meaningful at the 1e-4 bar.
    "denoising_start_0.7": dict(denoising_start=0.7),
    "denoising_end_0.6": dict(denoising_end=0.6),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2),
    "two_prompts_generator_list": dict(prompt=["a cat", "a dog"], n_generators=2),
    "aesthetic_scores": dict(aesthetic_score=7.0, negative_aesthetic_score=2.0, strength=0.8),
    "size_conditioning": dict(original_size=(96, 96), target_size=(64, 64), crops_coords_top_left=(4, 8)),
    "latent_output": dict(output_type="latent", strength=0.7),
    "numpy_mask_and_image": dict(mask_image=np.asarray(_mask()).astype(np.float32) / 255.0,
                                 image=np.asarray(random_image(64, seed=2)).astype(np.float32) / 255.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sdxl_inpaint_matches_diffusers(pipes, case):
    kwargs = dict(CASES[case])
    _assert_close(*_run_both(pipes, n_generators=kwargs.pop("n_generators", None), **kwargs))


def test_base_to_inpainting_refiner_in_latent_space(pipes):
    """The SDXL guide's ensemble of experts with a mask: the first 80% of the schedule ends in latents
    (denoising_end), the rest starts there (denoising_start) and inpaints."""
    ref, ours = pipes
    call = dict(prompt="a cat", mask_image=_mask(), num_inference_steps=10, **SIZE)
    image = random_image(64, seed=4)
    lat_ref = ref(image=image, denoising_end=0.8, output_type="latent",
                  generator=torch.Generator().manual_seed(0), **call).images
    lat_ours = ours(image=image, denoising_end=0.8, output_type="latent",
                    generator=torch.Generator().manual_seed(0), **call).images
    _assert_close(lat_ours.numpy(), lat_ref.numpy())
    if ours.unet.config.in_channels == 9:
        # A latent image cannot be masked, and a 9-channel UNet needs the masked image: diffusers fails
        # reading its shape (AttributeError), ours names the channel count.
        with pytest.raises(ValueError, match="Incorrect configuration settings"):
            ours(image=lat_ref, denoising_start=0.8, **call)
        return
    expected = ref(image=lat_ref, denoising_start=0.8, output_type="np", generator=torch.Generator().manual_seed(1),
                   **call).images
    got = ours(image=lat_ref, denoising_start=0.8, output_type="np", generator=torch.Generator().manual_seed(1),
               **call).images
    _assert_close(got, expected)


def test_padding_mask_crop_matches_diffusers(pipes):
    ref, ours = pipes
    image, mask = random_image(96, seed=5), _mask(96, box=(40, 20, 70, 60))
    kwargs = dict(prompt="a cat", image=image, mask_image=mask, padding_mask_crop=4, num_inference_steps=STEPS,
                  **SIZE)
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert [g.size for g in got] == [e.size for e in expected] == [(96, 96)]
    diff = np.abs(np.asarray(got[0], np.int16) - np.asarray(expected[0], np.int16))
    assert diff.max() <= 1  # a float32 difference of 1e-6 can round to the next 8-bit level


def test_callbacks_see_and_replace_the_mask(pipes):
    names = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids", "mask", "masked_image_latents"]

    def recorder(seen):
        def callback(pipe, step, timestep, tensors):
            seen.append((step, float(timestep), {k: tuple(v.shape) for k, v in tensors.items()}))
            return {"mask": torch.ones_like(tensors["mask"])} if step == 1 else {}

        return callback

    seen_ref, seen_ours = [], []
    got, expected = _run_both(pipes, strength=0.9, callback_on_step_end_tensor_inputs=names,
                              callback_on_step_end=recorder(seen_ours),
                              ref_kwargs=dict(callback_on_step_end=recorder(seen_ref)))
    assert seen_ours == seen_ref and seen_ours
    _assert_close(got, expected)


def test_from_pipe_between_img2img_and_inpainting(checkpoint, pipes):
    ref_inpaint, ours_inpaint = pipes
    i2i = nd.AutoPipelineForImage2Image.from_pipe(ours_inpaint)
    assert type(i2i) is nd.StableDiffusionXLImg2ImgPipeline and i2i.unet is ours_inpaint.unet
    back = nd.AutoPipelineForInpainting.from_pipe(i2i)
    assert type(back) is nd.StableDiffusionXLInpaintPipeline and back.vae is ours_inpaint.vae
    back.set_progress_bar_config(disable=True)
    _assert_close(*_run_both((ref_inpaint, back), strength=0.8))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(strength=1.5), ValueError, "strength should in"),
        (dict(strength=0.05, num_inference_steps=10), ValueError, "After adjusting the num_inference_steps"),
        (dict(mask_image=None), ValueError, "`mask_image` input cannot be undefined"),
        (dict(height=60), ValueError, "divisible by 8"),
        (dict(padding_mask_crop=4, output_type="np"), ValueError, "output type should be PIL"),
        (dict(padding_mask_crop=4, image=torch.rand(3, 64, 64)), ValueError, "should be a PIL image"),
        (dict(denoising_start=0.6, denoising_end=0.4), ValueError, "cannot be larger than or equal"),
        (dict(callback_on_step_end_tensor_inputs=["negative_prompt_embeds"]), ValueError,
         "callback_on_step_end_tensor_inputs"),
        (dict(prompt=["a", "b", "c"], mask_image=[_mask(), _mask()]), ValueError, "Masks are supposed to be"),
    ],
)
def test_bad_inputs_raise_diffusers_errors(pipes, kwargs, error, match):
    _, ours = pipes
    call = dict(prompt="a cat", image=random_image(64), mask_image=_mask(), num_inference_steps=2, **SIZE)
    call.update(kwargs)
    with pytest.raises(error, match=match):
        ours(**call)

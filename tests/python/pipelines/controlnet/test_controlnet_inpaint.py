"""Image-for-image parity of the native StableDiffusionControlNetInpaintPipeline (the tutorial's
"ControlNet inpainting") with diffusers, on tiny random-weight checkpoints that diffusers itself
saves (a 9-channel inpainting UNet and a 4-channel one, and a ControlNet), same torch.Generator
seeds."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_controlnet, make_tiny_sd_checkpoint  # noqa: E402
from parity import random_image  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = 6


@pytest.fixture(scope="module", params=[9, 4], ids=["unet9", "unet4"])
def checkpoints(request, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tiny-sd-controlnet-inpaint"))
    return make_tiny_sd_checkpoint(folder, unet_in_channels=request.param), make_tiny_controlnet(folder)


@pytest.fixture(scope="module")
def pipes(checkpoints):
    sd, controlnet_path = checkpoints
    loaded = []
    for library, kwargs in ((diffusers, dict(safety_checker=None)), (nd, {})):
        controlnet = library.ControlNetModel.from_pretrained(controlnet_path)
        pipe = library.AutoPipelineForInpainting.from_pretrained(sd, controlnet=controlnet, **kwargs)
        pipe.set_progress_bar_config(disable=True)
        loaded.append(pipe)
    return tuple(loaded)


def _mask(size=32, box=(4, 8, 20, 24)):
    m = np.zeros((size, size), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return PIL.Image.fromarray(m)


def make_inpaint_condition(image, image_mask):
    """The tutorial's control image: the image in [0, 1] with the masked pixels at -1."""
    image = np.array(image.convert("RGB")).astype(np.float32) / 255.0
    image_mask = np.array(image_mask.convert("L")).astype(np.float32) / 255.0
    image[image_mask > 0.5] = -1.0
    return torch.from_numpy(np.expand_dims(image, 0).transpose(0, 3, 1, 2))


def _call(**kwargs):
    image, mask = kwargs.pop("image", random_image(32)), kwargs.pop("mask_image", _mask())
    control = make_inpaint_condition(image or random_image(32), mask or _mask())
    call = dict(prompt="a cat", image=image, mask_image=mask, control_image=control, num_inference_steps=STEPS,
                output_type="np")
    call.update(kwargs)
    return call


def _run_both(pipes, n_generators=None, **kwargs):
    ref, ours = pipes

    def gen():
        if n_generators is None:
            return torch.Generator().manual_seed(0)
        return [torch.Generator().manual_seed(i) for i in range(n_generators)]

    expected = ref(generator=gen(), **kwargs).images
    got = ours(generator=gen(), **kwargs).images
    return np.asarray(got), np.asarray(expected)


def _assert_close(got, expected):
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_auto_pipeline_picks_controlnet_inpainting(pipes):
    ref, ours = pipes
    assert type(ours).__name__ == type(ref).__name__ == "StableDiffusionControlNetInpaintPipeline"
    assert isinstance(ours, nd.StableDiffusionControlNetInpaintPipeline)


CASES = {
    "defaults": dict(),
    "strength_0.6": dict(strength=0.6),
    "guidance_1.0": dict(guidance_scale=1.0),
    "conditioning_scale_1.0": dict(controlnet_conditioning_scale=1.0),
    "guess_mode": dict(guess_mode=True, controlnet_conditioning_scale=1.0),
    "guidance_window": dict(control_guidance_start=0.2, control_guidance_end=0.6),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2),
    "two_prompts_two_generators": dict(prompt=["a cat", "a dog"], n_generators=2),
    "non_square_from_the_image": dict(image=random_image(40).resize((40, 24)), mask_image=_mask(40).resize((40, 24))),
    "latent_output": dict(output_type="latent", strength=0.8),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_controlnet_inpaint_matches_diffusers(pipes, case):
    kwargs = dict(CASES[case])
    n_generators = kwargs.pop("n_generators", None)
    _assert_close(*_run_both(pipes, n_generators=n_generators, **_call(**kwargs)))


def test_pil_control_image_and_padding_mask_crop(pipes):
    ref, ours = pipes
    image, mask = random_image(48, seed=3), _mask(48, box=(20, 10, 36, 30))
    kwargs = dict(prompt="a cat", image=image, mask_image=mask, control_image=image, padding_mask_crop=4, height=32,
                  width=32, num_inference_steps=STEPS)
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert [g.size for g in got] == [e.size for e in expected] == [(48, 48)]
    diff = np.abs(np.asarray(got[0], np.int16) - np.asarray(expected[0], np.int16))
    assert diff.max() <= 1  # a float32 difference of 1e-6 can round to the next 8-bit level


def test_callbacks_see_the_control_image_and_mask(pipes):
    names = ["latents", "prompt_embeds", "negative_prompt_embeds", "control_image", "mask", "masked_image_latents"]

    def recorder(seen):
        def callback(pipe, step, timestep, tensors):
            seen.append((step, int(timestep), {k: tuple(v.shape) for k, v in tensors.items()}))
            return {"latents": tensors["latents"] * 0.9}

        return callback

    ref, ours = pipes
    seen_ref, seen_ours = [], []
    kwargs = _call(callback_on_step_end_tensor_inputs=names, strength=0.8)
    expected = ref(generator=torch.Generator().manual_seed(0), callback_on_step_end=recorder(seen_ref), **kwargs)
    got = ours(generator=torch.Generator().manual_seed(0), callback_on_step_end=recorder(seen_ours), **kwargs)
    assert seen_ours == seen_ref and seen_ours
    _assert_close(np.asarray(got.images), np.asarray(expected.images))


def test_from_pipe_between_controlnet_pipelines(checkpoints, pipes):
    ref_inpaint, ours_inpaint = pipes
    ours_i2i = nd.AutoPipelineForImage2Image.from_pipe(ours_inpaint)
    assert type(ours_i2i) is nd.StableDiffusionControlNetImg2ImgPipeline
    assert ours_i2i.controlnet is ours_inpaint.controlnet and ours_i2i.unet is ours_inpaint.unet
    back = nd.AutoPipelineForInpainting.from_pipe(ours_i2i)
    assert type(back) is nd.StableDiffusionControlNetInpaintPipeline
    back.set_progress_bar_config(disable=True)
    _assert_close(*_run_both((ref_inpaint, back), **_call()))
    plain = nd.AutoPipelineForInpainting.from_pipe(ours_i2i, controlnet=None)
    assert type(plain) is nd.StableDiffusionInpaintPipeline


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(mask_image=None), ValueError, "`mask_image` input cannot be undefined"),
        (dict(image=None), ValueError, "`image` input cannot be undefined"),
        (dict(control_image=None), TypeError, "image must be passed"),
        (dict(controlnet_conditioning_scale=[0.5, 0.5]), TypeError, "must be type `float`"),
        (dict(control_guidance_start=0.7, control_guidance_end=0.3), ValueError, "cannot be larger or equal"),
        (dict(padding_mask_crop=4), ValueError, "should be a PIL image"),  # the control image is a tensor
        (dict(callback_on_step_end_tensor_inputs=["noise"]), ValueError, "callback_on_step_end_tensor_inputs"),
        (dict(prompt=["a", "b", "c"], control_image=torch.zeros(2, 3, 32, 32)), ValueError, "image batch size"),
    ],
)
def test_bad_inputs_raise_diffusers_errors(pipes, kwargs, error, match):
    _, ours = pipes
    with pytest.raises(error, match=match):
        ours(**_call(num_inference_steps=2, **kwargs))

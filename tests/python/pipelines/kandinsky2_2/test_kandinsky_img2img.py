"""Image-for-image parity of the native KandinskyV22Img2ImgPipeline with diffusers, on tiny
random-weight components (diffusers' own dummy decoder UNet and MoVQ) that diffusers saves, same
image embeddings and torch.Generator seeds, DDIM (diffusers' test) and DDPM (the real decoder's)."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

EMBED_DIM = 32
# diffusers' dummies (tests/pipelines/kandinsky2_2/test_kandinsky_img2img.py).
UNET = dict(
    in_channels=4, out_channels=8, addition_embed_type="image",
    down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
    up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
    encoder_hid_dim=EMBED_DIM, encoder_hid_dim_type="image_proj", cross_attention_dim=32, attention_head_dim=4,
    resnet_time_scale_shift="scale_shift", class_embed_type=None,
)
MOVQ = dict(
    block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"], in_channels=3,
    latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12,
    out_channels=3, up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], vq_embed_dim=4,
)
DDIM = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
            set_alpha_to_one=False, steps_offset=0, prediction_type="epsilon", thresholding=False)
# kandinsky-2-2-decoder's scheduler is a DDPMScheduler on the same betas.
DDPM = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
            steps_offset=1, prediction_type="epsilon", thresholding=False)
SCHEDULERS = {
    "ddim": lambda: diffusers.DDIMScheduler(**DDIM),
    "ddpm": lambda: diffusers.DDPMScheduler(**DDPM),
    "ddpm_learned_range": lambda: diffusers.DDPMScheduler(**DDPM, variance_type="learned_range"),
}
STEPS = 10


def _checkpoint(path, scheduler):
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**UNET).eval()
    movq = diffusers.VQModel(**MOVQ).eval()
    with torch.no_grad():
        for p in list(unet.parameters()) + list(movq.parameters()):
            p.add_(torch.randn_like(p) * 0.02)
    pipe = diffusers.KandinskyV22Img2ImgPipeline(unet=unet, scheduler=SCHEDULERS[scheduler](), movq=movq)
    pipe.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def pipes_for(tmp_path_factory):
    """scheduler name -> (diffusers pipeline, ours), both loaded from one folder diffusers saved."""
    cache = {}

    def get(scheduler):
        if scheduler not in cache:
            folder = _checkpoint(tmp_path_factory.mktemp(f"kandinsky-{scheduler}"), scheduler)
            ref = diffusers.KandinskyV22Img2ImgPipeline.from_pretrained(folder)
            ref.set_progress_bar_config(disable=True)
            ours = nd.KandinskyV22Img2ImgPipeline.from_pretrained(folder)
            ours.set_progress_bar_config(disable=True)
            cache[scheduler] = (ref, ours)
        return cache[scheduler]

    return get


@pytest.fixture(params=sorted(SCHEDULERS))
def pipes(request, pipes_for):
    return pipes_for(request.param)


@pytest.fixture
def ddim_pipes(pipes_for):
    return pipes_for("ddim")


def _image(size=32, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _embeds(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, EMBED_DIM, generator=g), torch.randn(batch, EMBED_DIM, generator=g)


def _run_both(pipes, batch=1, generator_count=None, **kwargs):
    ref, ours = pipes
    image_embeds, negative = _embeds(batch)

    def gen():
        if generator_count is None:
            return torch.Generator().manual_seed(0)
        return [torch.Generator().manual_seed(i) for i in range(generator_count)]

    kwargs.setdefault("image", _image())
    kwargs.setdefault("height", 32)
    kwargs.setdefault("width", 32)
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    expected = ref(image_embeds=image_embeds, negative_image_embeds=negative, generator=gen(), **kwargs).images
    got = ours(image_embeds=image_embeds, negative_image_embeds=negative, generator=gen(), **kwargs).images
    return np.asarray(got), np.asarray(expected)


CASES = {
    "strength_0.3": dict(strength=0.3),
    "strength_0.8": dict(strength=0.8),
    "no_guidance": dict(strength=0.5, guidance_scale=1.0),
    # A non-square resize (diffusers passes width and height swapped to preprocess: mirrored).
    "two_per_prompt_nonsquare": dict(strength=0.6, num_images_per_prompt=2, generator_count=2, height=32, width=16),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_img2img_matches_diffusers(pipes, case):
    got, expected = _run_both(pipes, **CASES[case])
    assert got.shape == expected.shape
    assert got.min() >= 0 and got.max() <= 1
    diff = np.abs(got - expected).max()
    assert diff <= FP32_ATOL, f"max abs diff {diff}"


def test_latent_output_and_callback(ddim_pipes):
    ref, ours = ddim_pipes
    seen = {"ref": [], "ours": []}

    def callback(key):
        def on_step_end(pipe, step, timestep, kwargs):
            seen[key].append((step, int(timestep), tuple(kwargs["image_embeds"].shape)))
            return {"latents": kwargs["latents"] * 0.95} if step == 1 else {}

        return on_step_end

    inputs = dict(strength=0.5, output_type="latent", callback_on_step_end_tensor_inputs=["latents", "image_embeds"])
    image_embeds, negative = _embeds()
    expected = ref(image_embeds=image_embeds, negative_image_embeds=negative, image=_image(), height=32, width=32,
                   num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                   callback_on_step_end=callback("ref"), **inputs).images
    got = ours(image_embeds=image_embeds, negative_image_embeds=negative, image=_image(), height=32, width=32,
               num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
               callback_on_step_end=callback("ours"), **inputs).images
    assert seen["ours"] == seen["ref"] and len(seen["ours"]) == 5
    assert got.shape == expected.shape == (1, 4, 16, 16)
    assert (got - expected).abs().max().item() <= FP32_ATOL
    assert ours.num_timesteps == ref.num_timesteps == 5


def test_bad_inputs_raise(ddim_pipes):
    _, ours = ddim_pipes
    image_embeds, negative = _embeds()
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        ours(image_embeds, _image(), negative, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    with pytest.raises(ValueError, match="incorrect format"):
        ours(image_embeds, "not an image", negative)
    with pytest.raises(ValueError, match="number of pipeline steps"):
        ours(image_embeds, _image(), negative, height=32, width=32, num_inference_steps=10, strength=0.05)
    with pytest.raises(ValueError, match="image_embeds"):
        # Two embeddings for one image.
        ours(torch.cat([image_embeds] * 2), _image(), torch.cat([negative] * 2), height=32, width=32,
             num_inference_steps=2, strength=1.0)


def test_loads_through_diffusion_pipeline(ddim_pipes, tmp_path):
    ref, _ = ddim_pipes
    ref.save_pretrained(tmp_path)
    pipe = nd.DiffusionPipeline.from_pretrained(tmp_path)
    assert type(pipe).__name__ == "KandinskyV22Img2ImgPipeline"
    assert type(pipe.movq).__name__ == "VQModel" and pipe.movq_scale_factor == 2

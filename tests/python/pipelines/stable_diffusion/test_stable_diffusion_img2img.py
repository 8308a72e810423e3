"""Image-for-image parity of the native StableDiffusionImg2ImgPipeline with diffusers, on a tiny
random-weight Stable Diffusion checkpoint that diffusers itself saves, same torch.Generator seeds."""


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

STEPS = 10  # few steps keep CPU time low; the schedule logic is what matters


@pytest.fixture(scope="module")
def sd_checkpoint(tmp_path_factory):
    """SD 1.5's block structure, narrow (see make_tiny_sd_checkpoint), saved by diffusers."""
    return make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture(scope="module")
def pipes(sd_checkpoint):
    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint, safety_checker=None)
    ref.set_progress_bar_config(disable=True)
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


def _image(width=32, height=32, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _run_both(pipes, **kwargs):
    ref, ours = pipes
    seed = kwargs.pop("seed", 0)
    n_gen = kwargs.pop("generator_count", None)

    def gen():
        if n_gen is None:
            return torch.Generator().manual_seed(seed)
        return [torch.Generator().manual_seed(seed + i) for i in range(n_gen)]

    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    expected = ref(generator=gen(), **kwargs).images
    got = ours(generator=gen(), **kwargs).images
    return np.asarray(got), np.asarray(expected)


CASES = {
    "strength_0.3": dict(strength=0.3),
    "strength_0.8": dict(strength=0.8),
    "strength_1.0": dict(strength=1.0),
    "guidance_1.0": dict(guidance_scale=1.0),
    "negative_prompt": dict(negative_prompt="blurry, low quality"),
    "num_images_per_prompt_2": dict(num_images_per_prompt=2),
    "two_prompts": dict(prompt=["a cat", "a dog on the moon"], negative_prompt=["", "ugly"]),
    "generator_list": dict(prompt=["a cat", "a dog"], generator_count=2),
    "strength_0.58_truncation": dict(strength=0.58, num_inference_steps=50),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_img2img_matches_diffusers(pipes, case):
    kwargs = dict(prompt="a photo of an astronaut", image=_image())
    kwargs.update(CASES[case])
    got, expected = _run_both(pipes, **kwargs)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= FP32_ATOL


@pytest.mark.parametrize("engine_layout", ["on"], indirect=True)
def test_img2img_in_channels_last_matches_diffusers(sd_checkpoint, pipes, engine_layout):
    # The layout CUDA runs in (channels-last weights and activations), checked here on the CPU.
    ref, _ = pipes
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint).to("cpu")
    ours.set_progress_bar_config(disable=True)
    got, expected = _run_both((ref, ours), prompt="a photo of an astronaut", image=_image(), strength=0.8)
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_vae_tiling_and_slicing_match_diffusers(pipes):
    # The tiny VAE's sample_size is 32: a 48x40 image encodes, and its 24x20 latents decode, in tiles.
    ref, ours = pipes
    ref.vae.enable_tiling()
    ref.vae.enable_slicing()
    ours.enable_vae_tiling()
    ours.enable_vae_slicing()
    try:
        got, expected = _run_both(pipes, prompt=["a cat", "a dog"], image=_image(48, 40), strength=0.7)
    finally:
        ref.vae.disable_tiling()
        ref.vae.disable_slicing()
        ours.disable_vae_tiling()
        ours.disable_vae_slicing()
    assert got.shape == expected.shape == (2, 40, 48, 3)
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_clip_skip_matches_diffusers_encode_prompt_math(pipes):
    """diffusers 0.40's clip_skip path reads text_encoder.text_model, which transformers 5's
    CLIPTextModel no longer has, so the reference pipeline cannot run it; feed it the embeddings its
    encode_prompt would compute (hidden_states[-(clip_skip + 1)] through the final LayerNorm)."""
    ref, ours = pipes
    clip_skip = 1
    ids = ref.tokenizer(["a photo of an astronaut"], padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = ref.text_encoder(ids, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
        embeds = ref.text_encoder.final_layer_norm(hidden)
    expected = ref(prompt_embeds=embeds, image=_image(), num_inference_steps=STEPS, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images
    got = ours(prompt="a photo of an astronaut", clip_skip=clip_skip, image=_image(), num_inference_steps=STEPS,
               output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert np.abs(got - expected).max() <= FP32_ATOL


@pytest.mark.parametrize("width,height", [(96, 64), (88, 40)])
def test_non_square_input(pipes, width, height):
    """96x64 as the issue names it; 88x40 gives 44x20 latents that the UNet halves to odd sizes
    (11x5), so its up path must follow the skip connections' sizes."""
    got, expected = _run_both(pipes, prompt="a cat", image=_image(width=width, height=height, seed=3))
    assert got.shape == expected.shape == (1, height, width, 3)
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_ddim_eta_draws_noise_like_diffusers(pipes):
    ref, ours = pipes
    original = (ref.scheduler, ours.scheduler)
    try:
        ref.scheduler = diffusers.DDIMScheduler.from_config(ref.scheduler.config)
        ours.scheduler = nd.DDIMScheduler.from_config(ours.scheduler.config)
        got, expected = _run_both(pipes, prompt=["a cat", "a dog"], image=_image(), eta=1.0, generator_count=2)
    finally:
        ref.scheduler, ours.scheduler = original
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_prompt_embeds_and_latents_in_and_out(pipes):
    ref, ours = pipes
    ids = ref.tokenizer(["a red car"], padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
    with torch.no_grad():
        embeds = ref.text_encoder(ids)[0]
    got, expected = _run_both(pipes, prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds),
                              image=_image())
    assert np.abs(got - expected).max() <= FP32_ATOL

    # latents out of one call feed the next (the guide's chaining)
    latents_ref = ref(prompt="a cat", image=_image(), output_type="latent", num_inference_steps=STEPS,
                      generator=torch.Generator().manual_seed(1)).images
    latents_ours = ours(prompt="a cat", image=_image(), output_type="latent", num_inference_steps=STEPS,
                        generator=torch.Generator().manual_seed(1)).images
    assert (latents_ours - latents_ref).abs().max() <= FP32_ATOL
    got, expected = _run_both(pipes, prompt="a dog", image=latents_ref, strength=0.5)
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_output_types(pipes):
    _, ours = pipes
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=3)
    pil = ours(generator=torch.Generator().manual_seed(0), **kwargs).images[0]
    assert isinstance(pil, PIL.Image.Image) and pil.size == (32, 32)
    pt = ours(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images
    assert isinstance(pt, torch.Tensor) and pt.shape == (1, 3, 32, 32)
    images, nsfw = ours(generator=torch.Generator().manual_seed(0), return_dict=False, **kwargs)
    assert nsfw is None and len(images) == 1


def test_callback_on_step_end_sees_each_step(pipes):
    """Same steps and timesteps as diffusers (PNDM's 11-entry schedule for 10 steps gives 6 calls at
    strength 0.5), and a callback that edits the latents changes the result as in diffusers."""
    ref, ours = pipes

    def recorder(seen):
        def callback(pipe, step, timestep, callback_kwargs):
            seen.append((step, int(timestep)))
            return {"latents": callback_kwargs["latents"] * 0.5}

        return callback

    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=STEPS, strength=0.5, output_type="np")
    seen_ref, seen_ours = [], []
    expected = ref(generator=torch.Generator().manual_seed(0), callback_on_step_end=recorder(seen_ref), **kwargs)
    got = ours(generator=torch.Generator().manual_seed(0), callback_on_step_end=recorder(seen_ours), **kwargs)
    assert seen_ours == seen_ref and len(seen_ours) == 6
    assert np.abs(got.images - expected.images).max() <= FP32_ATOL


@pytest.mark.parametrize("edit", ["returned", "in_place"])
def test_callback_that_edits_prompt_embeds_steers_later_steps(pipes, edit):
    """The loop projects the prompt's cross-attention keys and values once; a callback that replaces
    the prompt embeddings, or scales them in place, must reach the following steps as in diffusers."""
    ref, ours = pipes

    def callback(pipe, step, timestep, callback_kwargs):
        if step != 1:
            return {}
        if edit == "in_place":
            callback_kwargs["prompt_embeds"].mul_(0.25)
            return {}
        return {"prompt_embeds": callback_kwargs["prompt_embeds"] * 0.25}

    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=STEPS, strength=0.5, output_type="np")
    plain = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    kwargs.update(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(got - expected).max() <= FP32_ATOL
    assert np.abs(got - plain).max() > 100 * FP32_ATOL  # the edit mattered


def test_freeu_matches_diffusers(sd_checkpoint):
    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint, safety_checker=None)
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint)
    for pipe in (ref, ours):
        pipe.set_progress_bar_config(disable=True)
        pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=STEPS, strength=0.5, output_type="np")
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(got - expected).max() <= FP32_ATOL
    ours.disable_freeu()
    ref.disable_freeu()
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(ours(generator=torch.Generator().manual_seed(0), **kwargs).images - expected).max() <= FP32_ATOL


def test_fuse_qkv_projections_matches_diffusers_fused(sd_checkpoint):
    """The pipeline-level switch (UNet and VAE) against diffusers' fused pipeline, and back."""
    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint, safety_checker=None)
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint)
    for pipe in (ref, ours):
        pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=STEPS, strength=0.5, output_type="np")
    plain = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    with pytest.warns(UserWarning, match="The UNet was not initially fused"):
        ours.unfuse_qkv_projections(vae=False)
    ref.fuse_qkv_projections()
    ours.fuse_qkv_projections()
    assert ours.fusing_unet and ours.fusing_vae
    expected = ref(generator=torch.Generator().manual_seed(0), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(got - expected).max() <= FP32_ATOL
    ours.unfuse_qkv_projections()
    np.testing.assert_array_equal(ours(generator=torch.Generator().manual_seed(0), **kwargs).images, plain)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(strength=1.5), ValueError, "strength should in"),
        (dict(prompt_embeds=torch.zeros(1, 77, 32)), ValueError, "Cannot forward both `prompt`"),
        (dict(prompt=None), ValueError, "Provide either `prompt` or `prompt_embeds`"),
        (dict(prompt=3), ValueError, "has to be of type `str` or `list`"),
        (dict(negative_prompt=["a", "b"]), TypeError, "should be the same type"),
        (dict(prompt=["a"], negative_prompt=["a", "b"]), ValueError, "has batch size"),
        (dict(generator=[torch.Generator(), torch.Generator()]), ValueError, "list of generators of length 2"),
        (dict(callback_on_step_end_tensor_inputs=["noise"]), ValueError, "callback_on_step_end_tensor_inputs"),
        (dict(image=None), ValueError, "image"),
        (dict(image="not an image"), ValueError, "incorrect format"),
    ],
)
def test_bad_inputs_raise_diffusers_errors(pipes, kwargs, error, match):
    _, ours = pipes
    call = dict(prompt="a cat", image=_image(), num_inference_steps=2)
    call.update(kwargs)
    with pytest.raises(error, match=match):
        ours(**call)


# Scheduler swaps the diffusers way: X.from_config(pipe.scheduler.config, **overrides).
SCHEDULERS = {
    "PNDMScheduler": {},
    "DDIMScheduler": {},
    "EulerDiscreteScheduler": {},
    "EulerAncestralDiscreteScheduler": {},
    "DPMSolverMultistepScheduler": {},
    "DPMSolverMultistepScheduler-karras": {"use_karras_sigmas": True},
    "DPMSolverMultistepScheduler-sde": {"algorithm_type": "sde-dpmsolver++"},
    "LMSDiscreteScheduler": {},
    "HeunDiscreteScheduler": {},
    "DDPMScheduler": {},
    "UniPCMultistepScheduler": {},
}


@pytest.mark.parametrize("guidance_scale", [1.0, 7.5])
@pytest.mark.parametrize("strength", [0.3, 0.8, 1.0])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_matches_diffusers(pipes, scheduler, strength, guidance_scale):
    ref, ours = pipes
    name = scheduler.split("-")[0]
    if not hasattr(nd, name):
        pytest.skip(f"{name} is not implemented in native_diffusers yet")
    overrides = SCHEDULERS[scheduler]
    original = (ref.scheduler, ours.scheduler)
    try:
        ref.scheduler = getattr(diffusers, name).from_config(ref.scheduler.config, **overrides)
        ours.scheduler = getattr(nd, name).from_config(ours.scheduler.config, **overrides)
        got, expected = _run_both(pipes, prompt="a photo of an astronaut", image=_image(), strength=strength,
                                  guidance_scale=guidance_scale, num_inference_steps=8)
    finally:
        ref.scheduler, ours.scheduler = original
    assert np.abs(got - expected).max() <= FP32_ATOL


def test_numpy_tensor_and_list_images(pipes):
    pil = _image(seed=7)
    as_np = np.asarray(pil).astype(np.float32) / 255.0
    as_pt = torch.from_numpy(as_np).permute(2, 0, 1)
    for image in (as_np, as_pt, [pil, _image(seed=8)]):
        prompt = ["a cat", "a dog"] if isinstance(image, list) else "a cat"
        got, expected = _run_both(pipes, prompt=prompt, image=image)
        assert np.abs(got - expected).max() <= FP32_ATOL


def test_custom_timesteps_and_sigmas(pipes):
    ref, ours = pipes
    original = (ref.scheduler, ours.scheduler)
    try:
        ref.scheduler = diffusers.EulerDiscreteScheduler.from_config(ref.scheduler.config)
        ours.scheduler = nd.EulerDiscreteScheduler.from_config(ours.scheduler.config)
        for kwargs in (dict(timesteps=[999, 800, 600, 400, 200, 1]), dict(sigmas=[14.0, 8.0, 3.0, 1.0, 0.3, 0.1])):
            got, expected = _run_both(pipes, prompt="a cat", image=_image(), strength=0.7, **kwargs)
            assert np.abs(got - expected).max() <= FP32_ATOL
        with pytest.raises(ValueError):
            ours(prompt="a cat", image=_image(), timesteps=[999, 500], sigmas=[1.0, 0.5])
    finally:
        ref.scheduler, ours.scheduler = original


def test_custom_schedule_rejected_by_pndm_as_in_diffusers(pipes):
    ref, ours = pipes
    for pipe in (ref, ours):
        with pytest.raises(ValueError, match="does not support custom timestep schedules"):
            pipe(prompt="a cat", image=_image(), timesteps=[999, 500])


@needs_proc
def test_repeated_calls_do_not_grow_host_memory(pipes):
    _, ours = pipes
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=4, output_type="np")
    assert_no_host_memory_growth(lambda: ours(**kwargs))


def test_guide_torch_compile_of_pipeline_unet_keeps_the_image(sd_checkpoint):
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd_checkpoint)
    ours.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=4, output_type="np")
    before = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    ours.unet = torch.compile(ours.unet, mode="reduce-overhead", fullgraph=True)
    after = ours(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.array_equal(before, after)

"""Parity of the native KandinskyV22PriorPipeline with diffusers on a tiny random-weight prior
checkpoint that diffusers itself saves (the components of diffusers' own Kandinsky 2.2 prior
test), same torch.Generator seeds: image_embeds and negative_image_embeds."""


import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_kandinsky22_prior  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402


def _make_checkpoint(folder: str) -> str:
    """diffusers' tests/pipelines/kandinsky2_2/test_kandinsky_prior.py components with the real CLIP
    vocabulary (make_tiny_kandinsky22_prior)."""
    return make_tiny_kandinsky22_prior(folder)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _make_checkpoint(str(tmp_path_factory.mktemp("kandinsky-prior")))


@pytest.fixture(scope="module")
def pipes(checkpoint):
    ref = diffusers.KandinskyV22PriorPipeline.from_pretrained(checkpoint)
    ref.set_progress_bar_config(disable=True)
    ours = nd.KandinskyV22PriorPipeline.from_pretrained(checkpoint)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


def _run_both(pipes, generator_count=None, seed=0, **kwargs):
    def gen():
        if generator_count is None:
            return torch.Generator().manual_seed(seed)
        return [torch.Generator().manual_seed(seed + i) for i in range(generator_count)]

    ref, ours = pipes
    expected = ref(generator=gen(), **kwargs)
    got = ours(generator=gen(), **kwargs)
    diffs = {}
    for key in ("image_embeds", "negative_image_embeds"):
        e, g = expected[key], got[key]
        assert type(g) is type(e) and g.shape == e.shape, (key, type(g), g.shape, e.shape)
        diffs[key] = float(np.abs(np.asarray(g, dtype=np.float64) - np.asarray(e, dtype=np.float64)).max())
    print(kwargs, diffs)
    assert max(diffs.values()) <= FP32_ATOL, diffs
    return expected, got


def test_components_load(pipes):
    _, ours = pipes
    assert isinstance(ours.prior, nd.PriorTransformer)
    assert isinstance(ours.image_encoder, nd.CLIPVisionModelWithProjection)
    assert isinstance(ours.text_encoder, nd.CLIPTextModelWithProjection)
    assert isinstance(ours.scheduler, nd.UnCLIPScheduler)
    assert isinstance(ours.image_processor, nd.CLIPImageProcessor)
    assert ours.image_processor.crop_size == {"height": 224, "width": 224}


def test_prompt_without_negative(pipes):
    # No negative prompt: the negative embedding is the image encoder's zero-image embedding.
    expected, got = _run_both(pipes, prompt="horse")
    assert got.image_embeds.shape == (1, 32)


def test_negative_prompt_batch_and_images_per_prompt(pipes):
    _run_both(pipes, prompt=["a red horse", "a cat in the snow"], negative_prompt=["low quality", "blurry"],
              num_images_per_prompt=2, num_inference_steps=10, seed=3)


def test_string_negative_prompt_np_output(pipes):
    expected, got = _run_both(pipes, prompt="horse", negative_prompt="ugly", output_type="np",
                              num_inference_steps=5)
    assert isinstance(got.image_embeds, np.ndarray)


def test_no_guidance_latents_and_generator_list(pipes):
    latents = torch.randn(2, 32, generator=torch.Generator().manual_seed(9))
    _run_both(pipes, prompt="horse", num_images_per_prompt=2, guidance_scale=1.0, latents=latents,
              num_inference_steps=4)
    _run_both(pipes, prompt=["horse", "dog"], generator_count=2, num_inference_steps=4, seed=11)


def test_callback_on_step_end(pipes):
    def halve(pipe, i, t, kwargs):
        return {"latents": kwargs["latents"] * 0.5} if i == 1 else {}

    _run_both(pipes, prompt="horse", num_inference_steps=4, callback_on_step_end=halve,
              callback_on_step_end_tensor_inputs=["latents", "text_mask"])


def test_zero_embed_is_cached_and_matches(pipes):
    ref, ours = pipes
    first = ours.get_zero_embed(batch_size=2)
    assert torch.equal(first, ours.get_zero_embed(batch_size=2))
    with torch.no_grad():
        expected = ref.get_zero_embed(batch_size=2)
    assert (first - expected).abs().max().item() <= FP32_ATOL
    out_a = ours("horse", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    out_b = ours("horse", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out_a.negative_image_embeds, out_b.negative_image_embeds)
    assert torch.equal(out_a.image_embeds, out_b.image_embeds)


def test_diffusion_pipeline_dispatch_and_errors(checkpoint, pipes):
    pipe = nd.DiffusionPipeline.from_pretrained(checkpoint)
    assert isinstance(pipe, nd.KandinskyV22PriorPipeline) and pipe.image_encoder is not None
    _, ours = pipes
    with pytest.raises(ValueError, match="output types"):
        ours("horse", output_type="pil")
    with pytest.raises(ValueError, match="has to be of type"):
        ours(3)
    with pytest.raises(ValueError, match="batch size"):
        ours(["a", "b"], negative_prompt=["c"])
    with pytest.raises(ValueError, match="Unexpected latents shape"):
        ours("horse", latents=torch.zeros(3, 32), num_inference_steps=2)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        ours("horse", callback_on_step_end_tensor_inputs=["negative_prompt_embeds"])

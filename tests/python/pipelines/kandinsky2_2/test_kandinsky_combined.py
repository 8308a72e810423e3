"""Parity of the guide's Kandinsky 2.2 call, ``AutoPipelineForImage2Image.from_pretrained(decoder)``
then ``pipeline(prompt, image=init_image)``, with diffusers: the combined prior + decoder pipeline on
tiny random-weight checkpoints diffusers saves in the hub's layout (a decoder whose model card names
its prior), same torch.Generator seeds."""

import numpy as np
import PIL.Image
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_kandinsky22_checkpoints  # noqa: E402
from host_memory import assert_no_host_memory_growth, needs_proc  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

STEPS = dict(num_inference_steps=10, prior_num_inference_steps=5, height=64, width=64)


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory):
    return make_tiny_kandinsky22_checkpoints(str(tmp_path_factory.mktemp("tiny-kandinsky")))


@pytest.fixture(scope="module")
def pipes(decoder_path):
    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(decoder_path)
    ref.set_progress_bar_config(disable=True)
    ours = nd.AutoPipelineForImage2Image.from_pretrained(decoder_path)
    ours.set_progress_bar_config(disable=True)
    return ref, ours


def _image(width=48, height=40, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _run_both(pipes, seed=0, **kwargs):
    ref, ours = pipes
    kwargs = {**STEPS, "output_type": "np", **kwargs}
    expected = ref(generator=torch.Generator().manual_seed(seed), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(seed), **kwargs).images
    return np.asarray(got), np.asarray(expected)


def test_auto_pipeline_finds_the_prior_through_the_model_card(pipes):
    ref, ours = pipes
    assert type(ref).__name__ == "KandinskyV22Img2ImgCombinedPipeline"
    assert type(ours) is nd.KandinskyV22Img2ImgCombinedPipeline
    assert type(ours.prior_prior).__name__ == "PriorTransformer"
    assert type(ours.prior_image_encoder).__name__ == "CLIPVisionModelWithProjection"
    assert type(ours.movq).__name__ == "VQModel"


CASES = {
    "strength_0.3": dict(strength=0.3),
    "strength_0.8": dict(strength=0.8),
    "negative_prompt": dict(strength=0.6, negative_prompt="low quality, blurry"),
    "guidance_and_prior_guidance": dict(strength=0.5, guidance_scale=6.0, prior_guidance_scale=2.0),
    "two_images_per_prompt": dict(strength=0.5, num_images_per_prompt=2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_combined_img2img_matches_diffusers(pipes, name):
    got, expected = _run_both(pipes, prompt="A fantasy landscape, cinematic lighting", image=_image(),
                              **CASES[name])
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff <= FP32_ATOL, f"max abs difference {diff}"


def test_output_is_512_unless_told_otherwise(pipes):
    """diffusers' quirk: the combined pipeline resizes to height x width (512 x 512 by default)
    whatever the input size."""
    _, ours = pipes
    out = ours("a cat", image=_image(48, 40), num_inference_steps=2, prior_num_inference_steps=2, strength=0.5,
               output_type="np").images
    assert out.shape == (1, 512, 512, 3)


def test_zero_image_embedding_is_computed_once(pipes):
    _, ours = pipes
    first = ours.prior_pipe.get_zero_embed()
    second = ours.prior_pipe.get_zero_embed()
    assert first.data_ptr() == second.data_ptr() or torch.equal(first, second)


def test_saved_combined_pipeline_loads(pipes, tmp_path):
    ref, _ = pipes
    ref.save_pretrained(tmp_path / "combined")
    ours = nd.AutoPipelineForImage2Image.from_pretrained(tmp_path / "combined")
    ours.set_progress_bar_config(disable=True)
    got, expected = _run_both((ref, ours), prompt="a red barn", image=_image(), strength=0.4)
    assert float(np.abs(got - expected).max()) <= FP32_ATOL


def test_scheduler_swap_reaches_the_decoder(pipes):
    _, ours = pipes
    saved = ours.scheduler
    try:
        ours.scheduler = nd.DDIMScheduler.from_config(saved.config)
        assert ours.decoder_pipe.scheduler is ours.scheduler
    finally:
        ours.scheduler = saved


def test_decoder_without_prior_is_a_clear_error(tmp_path, decoder_path):
    import shutil

    bare = tmp_path / "decoder"
    shutil.copytree(decoder_path, bare)
    (bare / "README.md").unlink()
    with pytest.raises(ValueError, match="prior"):
        nd.AutoPipelineForImage2Image.from_pretrained(bare)


@needs_proc
def test_repeated_calls_do_not_grow_host_memory(pipes):
    _, ours = pipes
    kwargs = dict(prompt="a cat", image=_image(), num_inference_steps=4, prior_num_inference_steps=2, strength=0.5,
                  height=64, width=64, output_type="np")
    assert_no_host_memory_growth(lambda: ours(**kwargs))

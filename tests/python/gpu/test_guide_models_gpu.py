"""The guide's other models on the GPU in float16 against diffusers on the same GPU: the SDXL refiner
(text_time conditions inside the CUDA-graphed UNet) and the Kandinsky 2.2 combined pipeline (prior
and decoder UNet replayed from graphs, added-KV attention, MoVQ), with each model offload mode.
Narrow checkpoints written by diffusers; skipped with a reason where there is no CUDA device."""

import numpy as np
import PIL.Image
import pytest
import torch

import native_diffusers as nd
from native_diffusers.utils.testing_utils import make_tiny_kandinsky22_checkpoints, make_tiny_sdxl_checkpoint
from tolerances import FP16_IMAGE_ATOL, SAME_DEVICE_REPEAT_ATOL

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def image(size=64):
    rng = np.random.default_rng(0)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def run(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe(generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images)


def both(path, placement, **kwargs):
    import diffusers

    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(path, torch_dtype=torch.float16).to("cuda")
    expected = run(ref, **kwargs)
    del ref
    torch.cuda.empty_cache()
    ours = nd.AutoPipelineForImage2Image.from_pretrained(path, torch_dtype=torch.float16)
    if placement == "gpu":
        ours.to("cuda")
    elif placement == "model":
        ours.enable_model_cpu_offload()
    else:
        ours.enable_sequential_cpu_offload()
    first = run(ours, **kwargs)
    second = run(ours, **kwargs)  # replayed graphs / prefetched blocks
    return expected, first, second


@pytest.mark.parametrize("placement", ["gpu", "model", "sequential"])
def test_sdxl_refiner_matches_diffusers_fp16(tmp_path, placement):
    path = make_tiny_sdxl_checkpoint(str(tmp_path), kind="refiner")
    expected, first, second = both(path, placement, prompt="a red boat", image=image(), strength=0.5,
                                   num_inference_steps=20)
    np.testing.assert_allclose(first, expected, rtol=0, atol=FP16_IMAGE_ATOL)
    np.testing.assert_allclose(second, first, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)


@pytest.mark.parametrize("placement", ["gpu", "model", "sequential"])
def test_kandinsky22_combined_matches_diffusers_fp16(tmp_path, placement):
    path = make_tiny_kandinsky22_checkpoints(str(tmp_path))
    expected, first, second = both(path, placement, prompt="a cat wizard", image=image(), strength=0.6,
                                   num_inference_steps=10, prior_num_inference_steps=5, height=64, width=64)
    np.testing.assert_allclose(first, expected, rtol=0, atol=FP16_IMAGE_ATOL)
    np.testing.assert_allclose(second, first, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)

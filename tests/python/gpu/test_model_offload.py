"""enable_model_cpu_offload and enable_sequential_cpu_offload on the GPU (issue 5): the same images as
without offloading (same seed), every model back on the host after a call, lower peaks (model offload
below everything on the GPU, block streaming below model offload), and the guide's call patterns
(twice, then .to("cuda"), remove_all_hooks). Skipped without a CUDA device; the CPU-only behaviour
(warn once, stay on the CPU) is tested in pipelines/test_pipeline_utils.py."""

import warnings

import PIL.Image
import pytest
import torch

import native_diffusers as nd
from tolerances import SAME_DEVICE_REPEAT_ATOL

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

KWARGS = dict(prompt="a watercolor fox", strength=0.6, guidance_scale=7.5, num_inference_steps=10, output_type="pt")


def run(pipe):
    image = PIL.Image.new("RGB", (512, 512), (90, 140, 200))
    pipe.set_progress_bar_config(disable=True)
    torch.cuda.reset_peak_memory_stats()
    out = pipe(image=image, generator=torch.Generator().manual_seed(0), **KWARGS).images
    return out, torch.cuda.max_memory_allocated()


def test_model_offload_matches_no_offload_with_a_lower_peak(sd15_shaped_checkpoint):
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16").to("cuda")
    expected, peak_on_gpu = run(pipe)
    pipe.to("cpu")
    pipe.enable_model_cpu_offload()
    pipe.enable_model_cpu_offload()  # the guide's notebooks call it again: same offload
    assert pipe._execution_device == torch.device("cuda", 0)
    got, peak_offloaded = run(pipe)
    torch.testing.assert_close(got.cpu(), expected.cpu(), rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)
    assert peak_offloaded < peak_on_gpu
    assert pipe._engine.offloaded_components() == []
    assert all(m.device.type == "cpu" for m in (pipe.unet, pipe.vae, pipe.text_encoder))


def test_model_offload_keeps_graphs_only_while_the_weights_return_to_their_addresses(sd15_shaped_checkpoint):
    # The UNet's captured graph outlives the weights' trips home. If they come back elsewhere, a
    # stale graph would read the old addresses: fill those with NaN first.
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16")
    pipe.enable_model_cpu_offload()
    first, _ = run(pipe)
    second, _ = run(pipe)  # the weights came back (to the same block, as a rule)
    # Just under the UNet's block: the caching allocator's best fit is that freed block.
    filler = torch.full((pipe.unet.num_parameters(),), float("nan"), dtype=torch.float16, device="cuda")
    third, _ = run(pipe)  # the UNet's old block is taken: it lands elsewhere, and is captured anew
    del filler
    for out in (second, third):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.cpu(), first.cpu(), rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)


def test_to_cuda_after_offload_warns_and_ends_the_offload(sd15_shaped_checkpoint):
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16")
    pipe.enable_model_cpu_offload()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.to("cuda")
    assert any("model offloading" in str(w.message) for w in caught)
    assert pipe.unet.device.type == "cuda" and pipe._execution_device.type == "cuda"
    run(pipe)
    assert pipe.unet.device.type == "cuda"  # no offload left to send it home


def test_remove_all_hooks_returns_to_plain_execution(sd15_shaped_checkpoint):
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16")
    pipe.enable_model_cpu_offload()
    pipe.remove_all_hooks()
    assert pipe._execution_device.type == "cpu"
    pipe.to("cuda")
    run(pipe)
    assert pipe._engine.offloaded_components() == []
    assert pipe.unet.device.type == "cuda" and pipe.vae.device.type == "cuda"


def test_sequential_offload_matches_no_offload_with_a_lower_peak_than_model_offload(sd15_shaped_checkpoint):
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16").to("cuda")
    expected, _ = run(pipe)
    pipe.to("cpu")
    pipe.enable_model_cpu_offload()
    _, peak_model = run(pipe)
    pipe.enable_sequential_cpu_offload()
    got, peak_sequential = run(pipe)
    got_again, _ = run(pipe)  # the second call prefetches in the order the first one recorded
    torch.testing.assert_close(got.cpu(), expected.cpu(), rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)
    torch.testing.assert_close(got_again.cpu(), expected.cpu(), rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)
    assert peak_sequential < peak_model
    assert pipe._engine.offloaded_components() == []

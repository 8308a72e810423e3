"""The CUDA engine against diffusers on the GPU (issue 4's parity lines): one UNet call in float16
(relative L2 <= 5e-3), a full 512x512 image-to-image run with the same seed (PSNR >= 30 dB), and the
CUDA-graph replay against the eager engine. Skipped with a reason where there is no CUDA device; the
CPU suite runs the same engine code through the same entry points."""

import gc

import numpy as np
import PIL.Image
import pytest
import torch

import native_diffusers as nd
from native_diffusers import _C
from tolerances import (IMAGE_PSNR_DB, MEMORY_LAYOUT_REL_L2, MODEL_REL_L2, SAME_DEVICE_REPEAT_ATOL, psnr,
                        relative_l2)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def unet_inputs(batch=2, dtype=torch.float16):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, 4, 64, 64, generator=g).to("cuda", dtype)
    context = torch.randn(batch, 77, 768, generator=g).to("cuda", dtype)
    return sample, torch.tensor(601, device="cuda"), context


@pytest.mark.parametrize("dtype, bound", [(dtype, MODEL_REL_L2[dtype]) for dtype in (torch.float16, torch.bfloat16)])
def test_unet_matches_diffusers_on_gpu(sd15_shaped_checkpoint, dtype, bound):
    # bfloat16 keeps 8 mantissa bits to float16's 11: the same orders of operations differ ~8x more.
    import diffusers

    ref = diffusers.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet",
                                                         variant="fp16", torch_dtype=dtype).to("cuda")
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16",
                                                   torch_dtype=dtype).to("cuda")
    sample, t, context = unet_inputs(dtype=dtype)
    with torch.no_grad():
        expected = ref(sample, t, context).sample
        got = ours(sample, t, context).sample
        again = ours(sample, t, context).sample  # second call: replayed from the captured graph
    assert got.dtype == dtype and got.device.type == "cuda"
    assert relative_l2(got, expected) <= bound
    torch.testing.assert_close(again, got, rtol=0, atol=0)


def test_fused_qkv_projections_match_diffusers_fused_on_gpu(sd15_shaped_checkpoint):
    """One GEMM per attention layer's projections; the flash kernel reads the query, key and value
    as strided slices of it."""
    import diffusers

    kwargs = dict(subfolder="unet", variant="fp16", torch_dtype=torch.float16)
    ref = diffusers.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, **kwargs).to("cuda")
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, **kwargs).to("cuda")
    ref.fuse_qkv_projections()
    ours.fuse_qkv_projections()
    sample, t, context = unet_inputs()
    with torch.no_grad():
        expected = ref(sample, t, context).sample
    got = ours(sample, t, context).sample
    again = ours(sample, t, context).sample  # replayed from the graph captured with the fused weights
    assert relative_l2(got, expected) <= MODEL_REL_L2[torch.float16]
    torch.testing.assert_close(again, got, rtol=0, atol=0)


def test_freeu_matches_diffusers_on_gpu(sd15_shaped_checkpoint):
    """FreeU's FFT filter inside the captured graph (cuFFT), in fp16 against diffusers'."""
    import diffusers

    kwargs = dict(subfolder="unet", variant="fp16", torch_dtype=torch.float16)
    ref = diffusers.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, **kwargs).to("cuda")
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, **kwargs).to("cuda")
    for unet in (ref, ours):
        unet.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    sample, t, context = unet_inputs()
    with torch.no_grad():
        expected = ref(sample, t, context).sample
    got = ours(sample, t, context).sample
    again = ours(sample, t, context).sample
    assert relative_l2(got, expected) <= MODEL_REL_L2[torch.float16]
    torch.testing.assert_close(again, got, rtol=0, atol=0)


def test_cuda_graph_replay_equals_eager_engine(sd15_shaped_checkpoint):
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16",
                                                   torch_dtype=torch.float16).to("cuda")
    sample, t, context = unet_inputs()
    try:
        _C.set_cuda_graphs_enabled(False)
        eager = ours(sample, t, context).sample
    finally:
        _C.set_cuda_graphs_enabled(True)
    first = ours(sample, t, context).sample
    replayed = ours(sample * 0.5, torch.tensor(301, device="cuda"), context).sample
    _C.set_cuda_graphs_enabled(False)
    try:
        eager_other = ours(sample * 0.5, torch.tensor(301, device="cuda"), context).sample
    finally:
        _C.set_cuda_graphs_enabled(True)
    # Same kernels in the same order: equal up to cuDNN/cuBLAS algorithm choice, not merely close.
    torch.testing.assert_close(first, eager, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)
    torch.testing.assert_close(replayed, eager_other, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)


def test_graph_replay_refreshes_projected_encoder_states_when_the_prompt_changes(sd15_shaped_checkpoint):
    """A replayed graph reads the projected keys and values from its own static copy, refreshed only
    when a new projection arrives: a second prompt must not replay the first prompt's keys."""
    engine = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16",
                                                     torch_dtype=torch.float16).to("cuda")._engine
    sample, t, context = unet_inputs()
    other_context = torch.randn_like(context)
    first, second = engine.project_encoder_states(context), engine.project_encoder_states(other_context)
    got = [engine.forward(sample, t, context, projected=p) for p in (first, first, second, first)]
    _C.set_cuda_graphs_enabled(False)
    try:
        eager = [engine.forward(sample, t, c) for c in (context, other_context)]
    finally:
        _C.set_cuda_graphs_enabled(True)
    for out, expected in zip(got, [eager[0], eager[0], eager[1], eager[0]]):
        torch.testing.assert_close(out, expected, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)
    assert (got[2] - got[0]).abs().max().item() > 1e-2


def test_unet_moved_after_capture_does_not_replay_stale_weights(sd15_shaped_checkpoint):
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16",
                                                   torch_dtype=torch.float16).to("cuda")
    sample, t, context = unet_inputs()
    before = ours(sample, t, context).sample
    ours.to("cpu")
    # NaNs in the blocks the weights just left: a graph still pointing there would return NaN.
    filler = torch.full((ours.num_parameters() + (1 << 24),), float("nan"), dtype=torch.float16, device="cuda")
    ours.to("cuda")
    after = ours(sample, t, context).sample
    del filler
    assert torch.isfinite(after).all()
    torch.testing.assert_close(after, before, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)


def test_img2img_512_matches_diffusers_fp16(sd15_shaped_checkpoint):
    import diffusers

    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    kwargs = dict(prompt="a cat wizard, detailed", image=image, strength=0.8, guidance_scale=7.5,
                  num_inference_steps=25, output_type="np")
    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                               variant="fp16", safety_checker=None).to("cuda")
    ref.set_progress_bar_config(disable=True)
    expected = ref(**kwargs, generator=torch.Generator().manual_seed(0)).images[0]
    del ref
    gc.collect()
    torch.cuda.empty_cache()
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16").to("cuda")
    ours.set_progress_bar_config(disable=True)
    got = ours(**kwargs, generator=torch.Generator().manual_seed(0)).images[0]
    assert got.shape == expected.shape == (512, 512, 3)
    assert psnr(got, expected) >= IMAGE_PSNR_DB


def test_deleting_a_pipeline_returns_its_gpu_memory(sd15_shaped_checkpoint):
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16").to("cuda")
    pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.new("RGB", (256, 256), (120, 80, 40))
    pipe("a prompt", image=image, num_inference_steps=4, strength=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.cuda.memory_allocated() > before + 500 * 2**20  # the weights really were on the GPU
    del pipe
    gc.collect()
    # What may stay is torch's own per-stream cuBLAS workspace for the engine's one capture stream
    # (32 MiB on Hopper), created on first use and kept by torch for the process, not the weights.
    assert torch.cuda.memory_allocated() - before < 64 * 2**20


def test_guide_torch_compile_reduce_overhead_gives_the_same_image(sd15_shaped_checkpoint):
    # The guide: pipeline.unet = torch.compile(pipeline.unet, mode="reduce-overhead", fullgraph=True).
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16").to("cuda")
    pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.new("RGB", (512, 512), (30, 120, 90))
    kwargs = dict(prompt="a lighthouse", image=image, strength=0.6, num_inference_steps=8, output_type="pt")
    expected = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
    got = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(got, expected, rtol=0, atol=SAME_DEVICE_REPEAT_ATOL)


def test_channels_last_and_nchw_agree_on_gpu(sd15_shaped_checkpoint):
    # The default on CUDA is channels-last; ND_CHANNELS_LAST=0's NCHW must give the same UNet output.
    assert _C.channels_last_mode() == "auto"
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16",
                                                   torch_dtype=torch.float16).to("cuda")
    sample, t, context = unet_inputs()
    channels_last = ours(sample, t, context).sample
    try:
        _C.set_channels_last_mode("off")
        ours.to("cuda")  # the convolution weights back to NCHW
        nchw = ours(sample, t, context).sample
    finally:
        _C.set_channels_last_mode("auto")
    assert channels_last.is_contiguous()
    assert relative_l2(channels_last, nchw) <= MEMORY_LAYOUT_REL_L2


def test_xformers_switch_selects_the_fused_or_the_sdpa_attention(sd15_shaped_checkpoint):
    ours = nd.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16",
                                                   torch_dtype=torch.float16).to("cuda")
    sample, t, context = unet_inputs()
    fused = ours(sample, t, context).sample
    try:
        _C.set_fused_attention_enabled(False)
        sdpa = ours(sample, t, context).sample
    finally:
        _C.set_fused_attention_enabled(True)
    assert relative_l2(fused, sdpa) <= MODEL_REL_L2[torch.float16]


@pytest.mark.parametrize("scheduler_class", [
    "PNDMScheduler", "DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler", "LMSDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
])
def test_denoising_steps_never_wait_for_the_gpu(sd15_shaped_checkpoint, scheduler_class):
    # With the check on, every step after the first runs under torch's sync debug mode "error": a
    # timestep read from device memory or a blocking copy inside the loop raises RuntimeError.
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, torch_dtype=torch.float16,
                                                         variant="fp16").to("cuda")
    pipe.scheduler = getattr(nd, scheduler_class).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.new("RGB", (256, 256), (90, 60, 200))
    seen_modes = []

    def callback(pipeline, step, timestep, callback_kwargs):
        seen_modes.append(torch.cuda.get_sync_debug_mode())  # the user's callback may synchronise
        return callback_kwargs

    # "warn" outside the loop: the engine's guards save and restore it. The callback runs with the
    # check paused (mode 0): seeing 0 there proves the engine sets the very switch torch reads.
    torch.cuda.set_sync_debug_mode("warn")
    _C.set_host_sync_check_enabled(True)
    try:
        out = pipe("a prompt", image=image, num_inference_steps=6, strength=1.0, output_type="pt",
                   generator=torch.Generator().manual_seed(0), callback_on_step_end=callback)
    finally:
        _C.set_host_sync_check_enabled(False)
        mode_after = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
    assert mode_after == 1
    assert len(seen_modes) >= 6 and all(mode == 0 for mode in seen_modes)  # Heun and PNDM take more
    assert torch.isfinite(out.images).all()

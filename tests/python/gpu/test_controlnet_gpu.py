"""ControlNet on the GPU against diffusers: the ControlNet's residuals in float16 (relative L2 <= 5e-3,
the UNet's bound), the guide's ControlNet image-to-image at 512x512 with the same seed (PSNR >= 30 dB),
and model offload (the UNet and the ControlNet travel together) giving the no-offload image. Skipped
with a reason where there is no CUDA device; tests/python/pipelines/controlnet runs the same engine
code on the CPU."""

import gc

import numpy as np
import PIL.Image
import pytest
import torch

import native_diffusers as nd
from tolerances import IMAGE_PSNR_DB, MODEL_REL_L2, OFFLOAD_PSNR_DB, psnr, relative_l2

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def controlnet_path(sd15_shaped_checkpoint, tmp_path_factory):
    """diffusers' ControlNetModel.from_unet over the checkpoint's UNet, its zero convolutions given weights."""
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DConditionModel.from_pretrained(sd15_shaped_checkpoint, subfolder="unet", variant="fp16")
    controlnet = diffusers.ControlNetModel.from_unet(unet.float())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            zero_initialised = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            if name.startswith(zero_initialised):
                parameter.normal_(0.0, 0.02)
    path = str(tmp_path_factory.mktemp("controlnet") / "controlnet")
    controlnet.to(torch.float16).save_pretrained(path, variant="fp16")
    return path


def _images():
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    y, x = np.mgrid[0:512, 0:512] / 511
    depth = (np.repeat(np.clip(1 - 1.5 * np.hypot(x - 0.5, y - 0.5), 0, 1)[..., None], 3, -1) * 255).astype(np.uint8)
    return image, PIL.Image.fromarray(depth)


def test_controlnet_residuals_match_diffusers_fp16(controlnet_path):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.ControlNetModel.from_pretrained(controlnet_path, variant="fp16", torch_dtype=torch.float16)
    ref = ref.to("cuda")
    ours = nd.ControlNetModel.from_pretrained(controlnet_path, variant="fp16", torch_dtype=torch.float16).to("cuda")
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 64, 64, generator=g).to("cuda", torch.float16)
    context = torch.randn(2, 77, 768, generator=g).to("cuda", torch.float16)
    cond = torch.rand(2, 3, 512, 512, generator=g).to("cuda", torch.float16)
    with torch.no_grad():
        expected = ref(sample, 601, context, cond, return_dict=False)
    got = ours(sample, 601, context, cond, return_dict=False)
    for g_res, e_res in zip(got[0], expected[0]):
        assert relative_l2(g_res, e_res) <= MODEL_REL_L2[torch.float16]
    assert relative_l2(got[1], expected[1]) <= MODEL_REL_L2[torch.float16]


def test_controlnet_img2img_512_matches_diffusers_fp16(sd15_shaped_checkpoint, controlnet_path):
    diffusers = pytest.importorskip("diffusers")
    image, depth = _images()
    kwargs = dict(prompt="Astronaut in a jungle, cold color palette", image=image, control_image=depth,
                  num_inference_steps=25, output_type="np")
    controlnet = diffusers.ControlNetModel.from_pretrained(controlnet_path, variant="fp16", torch_dtype=torch.float16)
    ref = diffusers.AutoPipelineForImage2Image.from_pretrained(
        sd15_shaped_checkpoint, controlnet=controlnet, torch_dtype=torch.float16, variant="fp16", safety_checker=None,
    ).to("cuda")
    ref.set_progress_bar_config(disable=True)
    expected = ref(**kwargs, generator=torch.Generator().manual_seed(0)).images[0]
    del ref, controlnet
    gc.collect()
    torch.cuda.empty_cache()
    controlnet = nd.ControlNetModel.from_pretrained(controlnet_path, variant="fp16", torch_dtype=torch.float16)
    ours = nd.AutoPipelineForImage2Image.from_pretrained(sd15_shaped_checkpoint, controlnet=controlnet,
                                                         torch_dtype=torch.float16, variant="fp16").to("cuda")
    ours.set_progress_bar_config(disable=True)
    got = ours(**kwargs, generator=torch.Generator().manual_seed(0)).images[0]
    assert got.shape == expected.shape == (512, 512, 3)
    assert psnr(got, expected) >= IMAGE_PSNR_DB

    ours.enable_model_cpu_offload()
    offloaded = ours(**kwargs, generator=torch.Generator().manual_seed(0)).images[0]
    assert psnr(offloaded, got) >= OFFLOAD_PSNR_DB

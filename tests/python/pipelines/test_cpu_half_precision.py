"""Every pipeline loaded as the guide loads it, with torch_dtype=torch.float16, on the CPU: against
diffusers' own float16 CPU output on the tiny parity checkpoints, under both CPU compute paths for
half precision (see csrc/runtime/cpu_half_compute.h): "native" runs PyTorch's float16 kernels as
diffusers does, "float32" computes the heavy ops in float32 and rounds back, as on a CPU without
float16 arithmetic. Both must stay within the float16 tolerance of diffusers' image."""

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")
transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers import _C  # noqa: E402
from native_diffusers.utils import testing_utils  # noqa: E402
from parity import random_image  # noqa: E402
from tolerances import FP16_ATOL  # noqa: E402

HALF = torch.float16


def _sd(folder):
    return testing_utils.make_tiny_sd_checkpoint(folder)


def _controlnet(library, folder):
    return {"controlnet": library.ControlNetModel.from_pretrained(testing_utils.make_tiny_controlnet(folder),
                                                                  torch_dtype=HALF)}


# name: (checkpoint builder, pipeline class name, extra from_pretrained kwargs per library, call kwargs)
PIPELINES = {
    "sd_text2img": (_sd, "AutoPipelineForText2Image", None, dict(prompt="a cat", height=32, width=32)),
    "sd_img2img": (_sd, "AutoPipelineForImage2Image", None, dict(prompt="a cat", image=random_image(32))),
    "sdxl_img2img": (lambda f: testing_utils.make_tiny_sdxl_checkpoint(f, kind="base"), "AutoPipelineForImage2Image",
                     None, dict(prompt="a cat", image=random_image(32))),
    "sdxl_refiner": (lambda f: testing_utils.make_tiny_sdxl_checkpoint(f, kind="refiner"),
                     "AutoPipelineForImage2Image", None, dict(prompt="a cat", image=random_image(32))),
    "controlnet_img2img": (_sd, "AutoPipelineForImage2Image", _controlnet,
                           dict(prompt="a cat", image=random_image(32), control_image=random_image(32, seed=1))),
    "kandinsky22_img2img": (testing_utils.make_tiny_kandinsky22_checkpoints, "AutoPipelineForImage2Image", None,
                            dict(prompt="a cat", image=random_image(48), prior_num_inference_steps=3, height=64,
                                 width=64)),
    "x4_upscaler": (testing_utils.make_tiny_sd_x4_upscaler, "StableDiffusionUpscalePipeline", None,
                    dict(prompt="a cat", image=random_image(16))),
}


def _load(library, name, folder, path):
    _, class_name, extra, _ = PIPELINES[name]
    kwargs = extra(library, folder) if extra else {}
    if library is diffusers and name.startswith(("sd_", "controlnet")):
        kwargs["safety_checker"] = None
    pipe = getattr(library, class_name).from_pretrained(path, torch_dtype=HALF, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module", params=list(PIPELINES))
def pipes(request, tmp_path_factory):
    name = request.param
    folder = str(tmp_path_factory.mktemp(name))
    path = PIPELINES[name][0](folder)
    return name, _load(diffusers, name, folder, path), _load(nd, name, folder, path)


def _image(pipe, name):
    kwargs = dict(PIPELINES[name][3], num_inference_steps=4, output_type="np")
    return np.asarray(pipe(generator=torch.Generator().manual_seed(0), **kwargs).images)


@pytest.mark.parametrize("compute", ["native", "float32"])
def test_float16_pipeline_matches_diffusers_float16_on_the_cpu(pipes, compute):
    name, ref, ours = pipes
    expected = _image(ref, name)
    before = _C.cpu_half_compute_mode()
    _C.set_cpu_half_compute_mode(compute)
    try:
        got = _image(ours, name)
    finally:
        _C.set_cpu_half_compute_mode(before)
    assert ours.dtype == HALF
    assert got.shape == expected.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=FP16_ATOL)

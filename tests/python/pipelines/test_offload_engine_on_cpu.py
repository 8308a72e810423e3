"""The offload engine end to end on the CPU. Installed on the engine with the CPU as its execution
device, model and sequential offloading run the bookkeeping they run on a GPU (each model packed into
one host block, models activated in pipeline order with the next one announced, blocks streamed in
as the forward reaches them); only the copies are no-ops. The images must equal the plain run's,
and every model is home after the call. (The public enable_*_cpu_offload() stay on the CPU without
a GPU, warning once; tests/python/gpu checks the real copies.)"""

import numpy as np
import PIL.Image
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers writes the test checkpoints (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils import testing_utils  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

CHECKPOINTS = {
    "sd": lambda folder: testing_utils.make_tiny_sd_checkpoint(folder),
    "sdxl": lambda folder: testing_utils.make_tiny_sdxl_checkpoint(folder),
    "kandinsky22": lambda folder: testing_utils.make_tiny_kandinsky22_checkpoints(folder),
}
CALLS = {
    "sd": dict(prompt=["a cat", "a dog"], negative_prompt=["", "blurry"], strength=0.7, num_inference_steps=4),
    "sdxl": dict(prompt=["a cat", "a dog"], negative_prompt=["", "blurry"], strength=0.7, num_inference_steps=4),
    "kandinsky22": dict(prompt="a cat", strength=0.5, num_inference_steps=4, prior_num_inference_steps=3,
                        height=64, width=64),
}


def _engines(pipe):
    parts = [pipe.prior_pipe, pipe.decoder_pipe] if hasattr(pipe, "prior_pipe") else [pipe]
    return [part._engine_pipeline() for part in parts]


def _run(pipe, kind):
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return pipe(image=image, output_type="np", generator=torch.Generator().manual_seed(0), **CALLS[kind]).images


@pytest.mark.parametrize("kind", sorted(CHECKPOINTS))
@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offload_bookkeeping_keeps_the_image(tmp_path, kind, mode):
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(CHECKPOINTS[kind](str(tmp_path)))
    pipe.set_progress_bar_config(disable=True)
    expected = _run(pipe, kind)
    engines = _engines(pipe)
    for engine in engines:
        getattr(engine, f"enable_{mode}_cpu_offload")(torch.device("cpu"))
        assert engine.offloaded_components() == []  # installing sends everything home
    got = _run(pipe, kind)
    again = _run(pipe, kind)  # a second call finds the packed host blocks as the first left them
    assert all(engine.offloaded_components() == [] for engine in engines)
    # The packed host blocks realign the weights (the checkpoint's were wherever safetensors put them),
    # and CPU GEMMs may sum in another order for another alignment: equal within float32 parity.
    assert np.abs(got - expected).max() <= FP32_ATOL
    np.testing.assert_array_equal(again, got)
    for engine in engines:
        engine.remove_model_cpu_offload()
    np.testing.assert_array_equal(_run(pipe, kind), got)  # back to plain runs, on the packed weights


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_fusing_projections_under_offload_repacks_the_weights(tmp_path, mode):
    """fuse_qkv_projections() changes a model's parameters: through the pipeline the offload is
    rebuilt over the fused weights; behind its back (on the model) the next move refuses instead of
    pointing the model at views of the old layout."""
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(CHECKPOINTS["sd"](str(tmp_path)))
    pipe.set_progress_bar_config(disable=True)
    pipe.fuse_qkv_projections()
    expected = _run(pipe, "sd")
    pipe.unfuse_qkv_projections()
    # On a GPU enable_*_cpu_offload() records this target; here the engine gets the CPU as its device.
    object.__setattr__(pipe, "_offload_device", torch.device("cpu"))
    object.__setattr__(pipe, "_offload_mode", mode)
    (engine,) = _engines(pipe)
    getattr(engine, f"enable_{mode}_cpu_offload")(torch.device("cpu"))
    pipe.fuse_qkv_projections()
    (rebuilt,) = _engines(pipe)
    assert rebuilt is not engine
    got = _run(pipe, "sd")
    assert np.abs(got - expected).max() <= FP32_ATOL
    assert rebuilt.offloaded_components() == []  # every model home after the call

    pipe.unet.unfuse_qkv_projections()  # not through the pipeline: the offload's copies no longer fit
    with pytest.raises(ValueError, match="parameters changed while it was offloaded"):
        _run(pipe, "sd")

"""Loading whole pipelines: the diffusers folder layout, component overrides, and clear errors for
broken checkpoints (each names the file or component)."""

import json
import os
import shutil

import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers writes the checkpoints (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("sd")), fp16_variant=True)


def _copy(checkpoint, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(checkpoint, target)
    return target


def test_components_dtype_variant_and_overrides(checkpoint):
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(checkpoint, torch_dtype=torch.float16, variant="fp16")
    assert isinstance(pipe, nd.StableDiffusionImg2ImgPipeline)
    assert set(pipe.components) >= {"vae", "text_encoder", "tokenizer", "unet", "scheduler"}
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.float16
    assert isinstance(pipe.scheduler, nd.PNDMScheduler)
    # a component passed by keyword replaces the checkpoint's, as in diffusers
    scheduler = nd.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe2 = nd.StableDiffusionImg2ImgPipeline.from_pretrained(checkpoint, scheduler=scheduler)
    assert pipe2.scheduler is scheduler and pipe2.unet.dtype == torch.float32


def test_missing_component_folder_names_it(checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    shutil.rmtree(broken / "unet")
    with pytest.raises(OSError, match="unet"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)


def test_unknown_class_names_are_clear_errors(checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    index = json.loads((broken / "model_index.json").read_text())
    (broken / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    with pytest.raises(ValueError, match="FluxPipeline"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)
    (broken / "model_index.json").write_text(json.dumps({**index, "unet": ["diffusers", "UNetMagicModel"]}))
    with pytest.raises(ValueError, match="UNetMagicModel"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)
    (broken / "model_index.json").write_text("{broken json")
    with pytest.raises(ValueError, match="model_index.json"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)
    os.remove(broken / "model_index.json")
    with pytest.raises(OSError, match="model_index.json"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)


@pytest.mark.parametrize(
    "entry",
    [
        "UNet2DConditionModel",
        ["UNet2DConditionModel"],
        [1, 2],
        ["diffusers", "UNet2DConditionModel", "extra"],
        {"a": 1},
        None,
        [None, None],
    ],
)
def test_malformed_model_index_entries_name_the_component_and_file(checkpoint, tmp_path, entry):
    # Each of these once reached the engine as a missing component (AttributeError on None).
    broken = _copy(checkpoint, tmp_path)
    index = json.loads((broken / "model_index.json").read_text())
    (broken / "model_index.json").write_text(json.dumps({**index, "unet": entry}))
    with pytest.raises(ValueError, match=r"`unet`.*model_index\.json"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)


def test_a_missing_required_component_entry_names_it(checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    index = json.loads((broken / "model_index.json").read_text())
    del index["vae"]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"`vae`.*model_index\.json has no entry"):
        nd.StableDiffusionImg2ImgPipeline.from_pretrained(broken)
    # diffusers' way around it: the component passed by keyword.
    vae = nd.AutoencoderKL.from_pretrained(os.path.join(checkpoint, "vae"))
    assert nd.StableDiffusionImg2ImgPipeline.from_pretrained(broken, vae=vae).vae is vae


def test_optional_components_may_be_null_or_absent_as_in_diffusers(checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    index = json.loads((broken / "model_index.json").read_text())
    index["safety_checker"] = None  # [null, null] is what save_pretrained writes; null and absent load too
    index["feature_extractor"] = [None, None]
    index.pop("image_encoder", None)
    (broken / "model_index.json").write_text(json.dumps(index))
    pipe = nd.StableDiffusionImg2ImgPipeline.from_pretrained(broken)
    assert pipe.safety_checker is None and pipe.feature_extractor is None and pipe.image_encoder is None


def test_truncated_weights_raise_naming_the_file(checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        nd.AutoPipelineForImage2Image.from_pretrained(broken)
    weights.write_bytes(b"\x01")
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        nd.AutoencoderKL.from_pretrained(broken / "vae")


def test_config_with_wrong_types_names_key_and_file(checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    config = json.loads((broken / "unet" / "config.json").read_text())
    (broken / "unet" / "config.json").write_text(json.dumps({**config, "block_out_channels": "wide"}))
    with pytest.raises(ValueError, match="block_out_channels.*config.json"):
        nd.UNet2DConditionModel.from_pretrained(broken / "unet")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour of the offload calls")
def test_guide_memory_calls_on_a_cpu_only_machine(checkpoint):
    """The guide calls these in every snippet. Without a GPU, offloading warns once and the pipeline
    stays on the CPU (diffusers raises there); xformers never raises, with or without xformers."""
    import warnings

    from native_diffusers.pipelines import pipeline_utils

    pipeline_utils._WARNED.clear()
    pipe = nd.AutoPipelineForImage2Image.from_pretrained(checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.enable_model_cpu_offload()
        pipe.enable_model_cpu_offload()
        pipe.enable_sequential_cpu_offload()
    messages = [str(w.message) for w in caught]
    assert sum("enable_model_cpu_offload" in m for m in messages) == 1
    assert sum("enable_sequential_cpu_offload" in m for m in messages) == 1
    assert pipe.device.type == "cpu"
    pipe.disable_xformers_memory_efficient_attention()
    assert not nd._C.fused_attention_enabled()
    pipe.enable_xformers_memory_efficient_attention()  # also restores the process-wide default
    assert nd._C.fused_attention_enabled() == nd._C.fused_kernels_available()
    pipe.enable_attention_slicing()
    pipe.enable_vae_slicing()
    pipe.enable_vae_tiling()
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    pipe.disable_vae_slicing()
    pipe.disable_vae_tiling()
    assert not (pipe.vae.use_slicing or pipe.vae.use_tiling)
    pipe.remove_all_hooks()
    pipe.maybe_free_model_hooks()

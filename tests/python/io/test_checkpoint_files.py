"""_C.find_weight_files / read_model_index / safetensors_header against folders written by diffusers'
and transformers' own save_pretrained, so the names we look for are the names they write."""

import datetime
import json
import os

import diffusers
import pytest
import torch
import transformers
from safetensors import safe_open

from native_diffusers import _C
from native_diffusers.utils import load_pickle_state_dict

TINY_UNET = dict(
    sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
    norm_num_groups=8, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
)


def _unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(**TINY_UNET).eval()


def _clip():
    torch.manual_seed(0)
    return transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16,
    )).eval()


def _names(files):
    return [os.path.basename(f) for f in files]


def test_variant_and_plain_files_written_by_diffusers(tmp_path):
    model = _unet()
    model.save_pretrained(tmp_path, variant="fp16")
    assert _C.find_weight_files(str(tmp_path), "fp16") == (
        "safetensors", [str(tmp_path / "diffusion_pytorch_model.fp16.safetensors")]
    )
    # diffusers' ModelMixin does not fall back to non-variant files, nor the reverse; neither do we.
    with pytest.raises(OSError, match="Error no file named .*diffusion_pytorch_model.safetensors"):
        _C.find_weight_files(str(tmp_path))
    model.save_pretrained(tmp_path)
    assert _names(_C.find_weight_files(str(tmp_path))[1]) == ["diffusion_pytorch_model.safetensors"]
    with pytest.raises(OSError, match="variant='ema'.*pass variant=None"):
        _C.find_weight_files(str(tmp_path), variant="ema")


@pytest.mark.parametrize("variant", [None, "fp16"])
def test_sharded_checkpoints_written_by_diffusers(tmp_path, variant):
    _unet().save_pretrained(tmp_path, variant=variant, max_shard_size="40KB")
    index_name = "diffusion_pytorch_model.safetensors.index.json"
    if variant:
        index_name = "diffusion_pytorch_model.safetensors.index.fp16.json"
    weight_map = json.loads((tmp_path / index_name).read_text())["weight_map"]
    shards = sorted(set(weight_map.values()))
    assert len(shards) > 1
    fmt, files = _C.find_weight_files(str(tmp_path), variant, True)
    assert fmt == "safetensors"
    assert files == [str(tmp_path / s) for s in shards]


def test_safetensors_header_matches_safetensors_library(tmp_path):
    _unet().half().save_pretrained(tmp_path)
    path = str(tmp_path / "diffusion_pytorch_model.safetensors")
    ours = _C.safetensors_header(path)
    with safe_open(path, framework="pt") as f:
        expected = []
        for key in sorted(f.keys()):
            sl = f.get_slice(key)
            expected.append((key, sl.get_dtype(), tuple(sl.get_shape())))
    assert ours == expected
    (tmp_path / "broken.safetensors").write_bytes(open(path, "rb").read()[:100])
    with pytest.raises(ValueError, match="broken.safetensors"):
        _C.safetensors_header(str(tmp_path / "broken.safetensors"))


def test_bin_only_folder(tmp_path):
    model = _unet()
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(OSError, match="no safetensors weights found in .*use_safetensors=None"):
        _C.find_weight_files(str(tmp_path), None, True)
    fmt, files = _C.find_weight_files(str(tmp_path), None, None)
    assert (fmt, _names(files)) == ("bin", ["diffusion_pytorch_model.bin"])
    assert _C.find_weight_files(str(tmp_path), use_safetensors=False) == (fmt, files)
    state_dict = load_pickle_state_dict(files)
    expected = model.state_dict()
    assert state_dict.keys() == expected.keys()
    assert all(torch.equal(state_dict[k], expected[k]) for k in expected)


def test_sharded_bin_folder_merges_shards(tmp_path):
    model = _unet()
    model.save_pretrained(tmp_path, safe_serialization=False, max_shard_size="40KB")
    fmt, files = _C.find_weight_files(str(tmp_path), None, None)
    assert fmt == "bin" and len(files) > 1
    assert load_pickle_state_dict(files).keys() == model.state_dict().keys()
    with pytest.raises(ValueError, match="more than one shard"):
        load_pickle_state_dict([files[0], files[0]])


def test_pickle_with_code_is_refused(tmp_path):
    # Any global outside torch's allow-list stands in for a malicious payload.
    torch.save({"x": datetime.date(2024, 1, 1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="weights_only=True"):
        load_pickle_state_dict([str(tmp_path / "pytorch_model.bin")])


def test_transformers_names(tmp_path):
    model = _clip()
    model.save_pretrained(tmp_path / "single")
    assert _C.find_weight_files(str(tmp_path / "single")) == (
        "safetensors", [str(tmp_path / "single" / "model.safetensors")]
    )
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert _C.find_weight_files(str(tmp_path / "sharded"))[1] == [str(tmp_path / "sharded" / s) for s in shards]
    # transformers 5 writes only safetensors; a legacy pytorch_model.bin is what torch.save leaves.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(model.state_dict(), legacy / "pytorch_model.bin")
    assert _C.find_weight_files(str(legacy)) == ("bin", [str(legacy / "pytorch_model.bin")])


def test_index_with_escaping_shard_name_is_refused(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "../x.safetensors"}}))
    with pytest.raises(ValueError, match="plain filenames"):
        _C.find_weight_files(str(tmp_path))


def test_nothing_found_names_folder_and_files(tmp_path):
    with pytest.raises(OSError) as info:
        _C.find_weight_files(str(tmp_path))
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "pytorch_model.bin", str(tmp_path)):
        assert name in str(info.value)


def test_read_model_index_of_a_saved_pipeline(tmp_path):
    pipe = diffusers.DDPMPipeline(unet=_unet(), scheduler=diffusers.DDPMScheduler())
    pipe.save_pretrained(tmp_path)
    index = _C.read_model_index(str(tmp_path))
    assert index == json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"]
    bad = dict(index, unet=["diffusers"])
    (tmp_path / "model_index.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="must be \\[library, class\\]"):
        _C.read_model_index(str(tmp_path))
    with pytest.raises(OSError, match="model_index.json"):
        _C.read_model_index(str(tmp_path / "unet"))

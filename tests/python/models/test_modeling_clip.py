"""Parity of the native CLIP text encoders with transformers on random-weight checkpoints that
transformers itself saves."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import BF16_ATOL, FP16_ATOL, FP32_ATOL  # noqa: E402

TINY = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
            projection_dim=16, max_position_embeddings=77, bos_token_id=998, eos_token_id=999, pad_token_id=1)
CONFIGS = {
    "tiny_quick_gelu": TINY,
    "tiny_gelu": {**TINY, "hidden_act": "gelu", "layer_norm_eps": 1e-6},
    # eos_token_id=2 selects transformers' pre-#24773 pooling (argmax of ids), as SD 1.5's config has.
    "tiny_legacy_eos": {**TINY, "eos_token_id": 2, "hidden_size": 40, "num_attention_heads": 5},
    "odd_heads": {
        **TINY,
        "hidden_size": 48,
        "num_attention_heads": 3,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
    },
}
SD15 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            projection_dim=768, max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2,
            pad_token_id=1)


def _ids(config, batch=2, length=77, seed=0):
    g = torch.Generator().manual_seed(seed)
    vocab = config["vocab_size"]
    ids = torch.randint(3, vocab - 2, (batch, length), generator=g)
    ids[:, 0] = config["bos_token_id"] if config["bos_token_id"] < vocab else 0
    eos = config["eos_token_id"] if config["eos_token_id"] not in (2,) else vocab - 1
    for b in range(batch):  # an eos then padding, as the tokenizer produces
        end = 5 + 7 * b
        ids[b, end] = eos
        ids[b, end + 1 :] = eos
    return ids


def _save(cls, config, path, seed=0, **save_kwargs):
    torch.manual_seed(seed)
    model = cls(transformers.CLIPTextConfig(**config)).eval()
    model.save_pretrained(path, **save_kwargs)
    return model


def _max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_clip_text_model_matches_transformers(tmp_path, name):
    config = CONFIGS[name]
    ref = _save(transformers.CLIPTextModel, config, tmp_path)
    ours = nd.CLIPTextModel.from_pretrained(tmp_path)
    ids = _ids(config)
    with torch.no_grad():
        expected = ref(ids, output_hidden_states=True)
    got = ours(ids, output_hidden_states=True)
    assert _max_diff(got.last_hidden_state, expected.last_hidden_state) <= FP32_ATOL
    assert _max_diff(got.pooler_output, expected.pooler_output) <= FP32_ATOL
    assert len(got.hidden_states) == len(expected.hidden_states) == config["num_hidden_layers"] + 1
    for g, e in zip(got.hidden_states, expected.hidden_states):
        assert _max_diff(g, e) <= FP32_ATOL
    # tuple form, as diffusers' encode_prompt indexes it
    assert torch.equal(ours(ids)[0], got.last_hidden_state)


@pytest.mark.parametrize("name", ["tiny_quick_gelu", "tiny_legacy_eos"])
def test_clip_text_model_with_projection_matches_transformers(tmp_path, name):
    config = CONFIGS[name]
    ref = _save(transformers.CLIPTextModelWithProjection, config, tmp_path, seed=1)
    ours = nd.CLIPTextModelWithProjection.from_pretrained(tmp_path)
    ids = _ids(config, batch=3, seed=1)
    with torch.no_grad():
        expected = ref(ids, output_hidden_states=True)
    got = ours(ids, output_hidden_states=True)
    assert got.text_embeds.shape == (3, config["projection_dim"])
    assert _max_diff(got.text_embeds, expected.text_embeds) <= FP32_ATOL
    assert _max_diff(got.last_hidden_state, expected.last_hidden_state) <= FP32_ATOL
    # SDXL uses the penultimate layer
    assert _max_diff(got.hidden_states[-2], expected.hidden_states[-2]) <= FP32_ATOL


def test_attention_mask_matches_transformers(tmp_path):
    config = CONFIGS["tiny_quick_gelu"]
    ref = _save(transformers.CLIPTextModel, config, tmp_path)
    ours = nd.CLIPTextModel.from_pretrained(tmp_path)
    ids = _ids(config, length=16)
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask)
    got = ours(ids, attention_mask=mask)
    assert _max_diff(got.last_hidden_state, expected.last_hidden_state) <= FP32_ATOL


def test_sd15_sized_text_encoder_matches_transformers(tmp_path):
    ref = _save(transformers.CLIPTextModel, SD15, tmp_path, seed=3)
    ours = nd.CLIPTextModel.from_pretrained(tmp_path, torch_dtype=torch.float32)
    ids = _ids(SD15, seed=3)
    with torch.no_grad():
        expected = ref(ids, output_hidden_states=True)
    got = ours(ids, output_hidden_states=True)
    assert _max_diff(got.last_hidden_state, expected.last_hidden_state) <= FP32_ATOL
    assert _max_diff(got.pooler_output, expected.pooler_output) <= FP32_ATOL
    assert _max_diff(got.hidden_states[-2], expected.hidden_states[-2]) <= FP32_ATOL


def test_legacy_prefixed_keys_load(tmp_path):
    """Published checkpoints (SD 1.5's text_encoder) carry transformers v4's "text_model." prefix."""
    config = CONFIGS["tiny_legacy_eos"]
    ref = _save(transformers.CLIPTextModel, config, tmp_path / "v5")
    legacy = tmp_path / "v4"
    legacy.mkdir()
    save_file({f"text_model.{k}": v.contiguous() for k, v in ref.state_dict().items()}, legacy / "model.safetensors")
    (legacy / "config.json").write_text((tmp_path / "v5" / "config.json").read_text())
    ids = _ids(config)
    with torch.no_grad():
        expected = ref(ids).last_hidden_state
    assert _max_diff(nd.CLIPTextModel.from_pretrained(legacy)(ids).last_hidden_state, expected) <= FP32_ATOL


@pytest.mark.parametrize("dtype,atol", [(torch.float16, FP16_ATOL), (torch.bfloat16, BF16_ATOL)])
def test_half_precision_loading(tmp_path, dtype, atol):
    config = CONFIGS["tiny_quick_gelu"]
    ref = _save(transformers.CLIPTextModel, config, tmp_path / "fp32")
    ref.to(dtype).save_pretrained(tmp_path / "half")
    ids = _ids(config)
    with torch.no_grad():
        expected = ref.float()(ids).last_hidden_state
    # dtype="auto" (transformers v5's default) keeps the stored half precision
    ours = nd.CLIPTextModel.from_pretrained(tmp_path / "half")
    assert ours.dtype == dtype
    got = ours(ids).last_hidden_state
    assert got.dtype == dtype
    assert _max_diff(got, expected) <= atol
    # an explicit torch_dtype converts at load; .to() converts after
    assert nd.CLIPTextModel.from_pretrained(tmp_path / "fp32", torch_dtype=dtype).dtype == dtype
    assert nd.CLIPTextModel.from_pretrained(tmp_path / "half", dtype=torch.float32).to(dtype).dtype == dtype


def test_sharded_and_variant_checkpoints(tmp_path):
    config = CONFIGS["tiny_quick_gelu"]
    ref = _save(transformers.CLIPTextModel, config, tmp_path / "sharded", max_shard_size="20KB")
    index = tmp_path / "sharded" / "model.safetensors.index.json"
    assert index.exists() and len(set(json.loads(index.read_text())["weight_map"].values())) > 1
    ids = _ids(config)
    with torch.no_grad():
        expected = ref(ids).last_hidden_state
    assert (
        _max_diff(nd.CLIPTextModel.from_pretrained(tmp_path / "sharded")(ids).last_hidden_state, expected) <= FP32_ATOL
    )

    # An fp16 variant beside the full-precision weights, as the guide's checkpoints ship them.
    folder = tmp_path / "variant"
    ref.save_pretrained(folder)
    ref.half().save_pretrained(tmp_path / "tmp16")
    os.rename(tmp_path / "tmp16" / "model.safetensors", folder / "model.fp16.safetensors")
    assert nd.CLIPTextModel.from_pretrained(folder, variant="fp16").dtype == torch.float16
    assert nd.CLIPTextModel.from_pretrained(folder).dtype == torch.float32


def test_pickle_bin_weights_load_with_weights_only(tmp_path):
    config = CONFIGS["tiny_quick_gelu"]
    ref = _save(transformers.CLIPTextModel, config, tmp_path / "st")
    folder = tmp_path / "bin"
    folder.mkdir()
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    ids = _ids(config)
    with torch.no_grad():
        expected = ref(ids).last_hidden_state
    assert _max_diff(nd.CLIPTextModel.from_pretrained(folder)(ids).last_hidden_state, expected) <= FP32_ATOL
    with pytest.raises(OSError, match="safetensors"):
        nd.CLIPTextModel.from_pretrained(folder, use_safetensors=True)


def test_loads_from_hub_id_through_fake_cache(tmp_path, monkeypatch):
    config = CONFIGS["tiny_quick_gelu"]
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny-sd"
    snapshot = repo / "snapshots" / ("a" * 40)
    ref = _save(transformers.CLIPTextModel, config, snapshot / "text_encoder")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    ours = nd.CLIPTextModel.from_pretrained("org/tiny-sd", subfolder="text_encoder")
    ids = _ids(config)
    with torch.no_grad():
        expected = ref(ids).last_hidden_state
    assert _max_diff(ours(ids).last_hidden_state, expected) <= FP32_ATOL


def test_bad_inputs_raise_clear_errors(tmp_path):
    config = CONFIGS["tiny_quick_gelu"]
    _save(transformers.CLIPTextModel, config, tmp_path)
    ours = nd.CLIPTextModel.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="integer"):
        ours(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="out of range"):
        ours(torch.tensor([[0, 5000]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours(torch.zeros(1, 78, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        ours()

    cfg = json.loads((tmp_path / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes())
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden_size": 64}))
    with pytest.raises(ValueError, match="shape"):
        nd.CLIPTextModel.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden_act": "swiglu_unknown"}))
    with pytest.raises(ValueError, match="hidden_act"):
        nd.CLIPTextModel.from_pretrained(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        nd.CLIPTextModel.from_pretrained(bad)
    with pytest.raises(OSError):
        nd.CLIPTextModel.from_pretrained(tmp_path / "missing_folder")
    with pytest.raises(TypeError):
        nd.CLIPTextModel.from_pretrained(tmp_path, torch_dtype=3)

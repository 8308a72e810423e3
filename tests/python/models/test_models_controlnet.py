"""Parity of the native ControlNetModel with diffusers on random-weight checkpoints that diffusers
itself saves, and of the UNet with a ControlNet's residuals (down_block_additional_residuals,
mid_block_additional_residual)."""

import json
import os

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_controlnet  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

SD15_NARROW_UNET = dict(
    block_out_channels=(32, 64, 64, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32, attention_head_dim=8,
)
VARIANTS = {
    "sd15_narrow": {},
    "global_pool": {"global_pool_conditions": True},
    "bgr": {"controlnet_conditioning_channel_order": "bgr"},
    # SD 2.x style: linear projections, per-block heads, one layer per block, a deeper embedding.
    "linear_proj_heads_list": {"use_linear_projection": True, "attention_head_dim": (2, 4, 8, 8),
                               "layers_per_block": 1, "conditioning_embedding_out_channels": (8, 16, 32)},
    # SDXL ControlNets: the text_time addition embedding, two transformer layers per block.
    "sdxl_text_time": {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
                       "projection_class_embeddings_input_dim": 32 + 6 * 8, "transformer_layers_per_block": 2,
                       "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                       "block_out_channels": (32, 64, 64)},
}


def _inputs(config, batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = 2 ** (len(config.get("conditioning_embedding_out_channels", (16, 32))) - 1)
    sample = torch.randn(batch, 4, size, size, generator=g)
    context = torch.randn(batch, 77, 32, generator=g)
    cond = torch.rand(batch, 3, size * scale, size * scale, generator=g)
    added = None
    if config.get("addition_embed_type") == "text_time":
        added = {"text_embeds": torch.randn(batch, 32, generator=g),
                 "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * batch)}
    return sample, context, cond, added


def _both(tmp_path, name):
    path = make_tiny_controlnet(str(tmp_path), **VARIANTS[name])
    return diffusers.ControlNetModel.from_pretrained(path).eval(), nd.ControlNetModel.from_pretrained(path)


def _assert_outputs_close(got, expected):
    assert len(got.down_block_res_samples) == len(expected.down_block_res_samples)
    for g, e in zip(got.down_block_res_samples, expected.down_block_res_samples):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, atol=FP32_ATOL, rtol=0)
    torch.testing.assert_close(got.mid_block_res_sample, expected.mid_block_res_sample, atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_controlnet_matches_diffusers(tmp_path, name, engine_layout):
    ref, ours = _both(tmp_path, name)
    sample, context, cond, added = _inputs(VARIANTS[name])
    t = torch.tensor([10, 700])
    with torch.no_grad():
        expected = ref(sample, t, context, cond, added_cond_kwargs=added)
    got = ours(sample, t, context, cond, added_cond_kwargs=added)
    _assert_outputs_close(got, expected)
    # The residuals are not zeros (the zero convolutions were given weights), so the check bites.
    assert expected.mid_block_res_sample.abs().max() > 1e-2


@pytest.mark.parametrize("kwargs", [dict(guess_mode=True), dict(conditioning_scale=0.35),
                                    dict(guess_mode=True, conditioning_scale=0.5)], ids=str)
def test_controlnet_scaling_matches_diffusers(tmp_path, kwargs):
    ref, ours = _both(tmp_path, "sd15_narrow")
    sample, context, cond, _ = _inputs({}, batch=1)
    with torch.no_grad():
        expected = ref(sample, 500, context, cond, **kwargs)
    got = ours(sample, 500, context, cond, **kwargs)
    _assert_outputs_close(got, expected)
    # The returned tuple form, as diffusers' return_dict=False.
    down, mid = ours(sample, 500, context, cond, return_dict=False, **kwargs)
    torch.testing.assert_close(mid, got.mid_block_res_sample, atol=0, rtol=0)


@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_unet_with_controlnet_residuals_matches_diffusers(tmp_path, engine_layout):
    torch.manual_seed(0)
    ref_unet = diffusers.UNet2DConditionModel(**SD15_NARROW_UNET).eval()
    ref_unet.save_pretrained(tmp_path / "unet")
    ours_unet = nd.UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    ref_cn, ours_cn = _both(tmp_path, "sd15_narrow")
    sample, context, cond, _ = _inputs({})
    t = torch.tensor(321)
    with torch.no_grad():
        down, mid = ref_cn(sample, t, context, cond, return_dict=False)
        expected = ref_unet(sample, t, context, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid).sample
        plain = ref_unet(sample, t, context).sample
    ours_down, ours_mid = ours_cn(sample, t, context, cond, return_dict=False)
    got = ours_unet(sample, t, context, down_block_additional_residuals=ours_down,
                    mid_block_additional_residual=ours_mid).sample
    torch.testing.assert_close(got, expected, atol=FP32_ATOL, rtol=0)
    assert (expected - plain).abs().max() > 1e-2  # the residuals change the prediction
    # diffusers' own residuals give the same result as ours.
    got_from_ref = ours_unet(sample, t, context, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample
    torch.testing.assert_close(got_from_ref, expected, atol=FP32_ATOL, rtol=0)


def test_unet_accepts_pooled_residuals(tmp_path):
    # A global_pool_conditions ControlNet's residuals are [B, C, 1, 1] and broadcast over the skips.
    torch.manual_seed(0)
    ref_unet = diffusers.UNet2DConditionModel(**SD15_NARROW_UNET).eval()
    ref_unet.save_pretrained(tmp_path / "unet")
    ours_unet = nd.UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    ref_cn, _ = _both(tmp_path, "global_pool")
    sample, context, cond, _ = _inputs({})
    with torch.no_grad():
        down, mid = ref_cn(sample, 5, context, cond, return_dict=False)
        expected = ref_unet(sample, 5, context, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid).sample
    got = ours_unet(sample, 5, context, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    torch.testing.assert_close(got.sample, expected, atol=FP32_ATOL, rtol=0)


def test_unet_rejects_mismatched_residuals(tmp_path):
    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(**SD15_NARROW_UNET).save_pretrained(tmp_path / "unet")
    unet = nd.UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    _, controlnet = _both(tmp_path, "sd15_narrow")
    sample, context, cond, _ = _inputs({})
    down, mid = controlnet(sample, 1, context, cond, return_dict=False)
    with pytest.raises(ValueError, match="skip connections"):
        unet(sample, 1, context, down_block_additional_residuals=down[:-1], mid_block_additional_residual=mid)
    with pytest.raises(ValueError, match=r"down_block_additional_residuals\[3\]"):
        unet(sample, 1, context, down_block_additional_residuals=[*down[:3], down[3][:, :8], *down[4:]],
             mid_block_additional_residual=mid)
    with pytest.raises(ValueError, match="mid_block_additional_residual"):
        unet(sample, 1, context, down_block_additional_residuals=down, mid_block_additional_residual=mid[:1])
    with pytest.raises(NotImplementedError, match="T2I-Adapter"):
        unet(sample, 1, context, down_block_additional_residuals=down)


def test_controlnet_rejects_bad_inputs(tmp_path):
    _, controlnet = _both(tmp_path, "sd15_narrow")
    sample, context, cond, _ = _inputs({})
    with pytest.raises(ValueError, match="controlnet_cond"):
        controlnet(sample, 1, context, cond[:, :, :30, :30])  # embeds to 15x15, not the sample's 16x16
    with pytest.raises(ValueError, match="controlnet_cond"):
        controlnet(sample, 1, context, cond[:1])
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        controlnet(sample, 1, context[..., :16], cond)
    with pytest.raises(TypeError, match="controlnet_cond"):
        controlnet(sample, 1, context, cond.numpy())
    with pytest.raises(NotImplementedError, match="attention_mask"):
        controlnet(sample, 1, context, cond, attention_mask=torch.ones(2, 77))


def test_controlnet_config_errors_name_key_and_file(tmp_path):
    path = make_tiny_controlnet(str(tmp_path))
    config_path = os.path.join(path, "config.json")
    config = json.load(open(config_path))
    config["mid_block_type"] = "UNetMidBlock2D"
    json.dump(config, open(config_path, "w"))
    with pytest.raises(ValueError, match=r"mid_block_type.*config\.json|config\.json.*mid_block_type"):
        nd.ControlNetModel.from_pretrained(path)
    config["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    config["controlnet_conditioning_channel_order"] = "rgba"
    json.dump(config, open(config_path, "w"))
    with pytest.raises(ValueError, match="controlnet_conditioning_channel_order"):
        nd.ControlNetModel.from_pretrained(path)


def test_controlnet_dtype_and_parameter_count(tmp_path):
    ref, ours = _both(tmp_path, "sd15_narrow")
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters())
    ours.to(torch.float16)
    assert ours.dtype == torch.float16
    half = nd.ControlNetModel.from_pretrained(make_tiny_controlnet(str(tmp_path / "h")), torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16

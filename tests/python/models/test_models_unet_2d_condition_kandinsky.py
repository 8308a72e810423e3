"""Parity of the native UNet2DConditionModel with diffusers for the Kandinsky 2.2 decoder flavour:
image_embeds projected to encoder states (encoder_hid_dim_type="image_proj") and added to the time
embedding (addition_embed_type="image"), SimpleCrossAttn blocks with added key/value projections,
resnet up/downsamplers, scale_shift resnets, a learned-variance output (out_channels=8)."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

# diffusers' own tiny decoder UNet (tests/pipelines/kandinsky2_2/test_kandinsky_img2img.py).
TINY = dict(
    in_channels=4, out_channels=8, addition_embed_type="image",
    down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
    up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
    encoder_hid_dim=32, encoder_hid_dim_type="image_proj", cross_attention_dim=32, attention_head_dim=4,
    resnet_time_scale_shift="scale_shift", class_embed_type=None,
)
# kandinsky-2-2-decoder's structure (channels 1:2:3:4, ResnetDownsampleBlock2D then three
# SimpleCrossAttnDownBlock2D, mirrored up, two layers per block), narrower.
DECODER_NARROW = dict(
    TINY, block_out_channels=(32, 64, 96, 128), layers_per_block=2, attention_head_dim=16,
    down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
    cross_attention_dim=48, encoder_hid_dim=40,
)
VARIANTS = {
    "tiny": TINY,
    "decoder_narrow": DECODER_NARROW,
    # Per-block head dims: diffusers' up blocks read attention_head_dim[i] unreversed; only
    # cross-attention keys in the blocks, self keys kept in the mid block.
    "head_dims_only_cross": dict(
        TINY, down_block_types=("SimpleCrossAttnDownBlock2D",) * 2, up_block_types=("SimpleCrossAttnUpBlock2D",) * 2,
        attention_head_dim=(8, 16), only_cross_attention=True, mid_block_only_cross_attention=False,
        norm_num_groups=16, layers_per_block=(1, 2),
    ),
}


def _save_unet(config, path, seed=0):
    torch.manual_seed(seed)
    model = diffusers.UNet2DConditionModel(**config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(path)
    return model


def _inputs(config, batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, config["in_channels"], size, size, generator=g)
    image_embeds = torch.randn(batch, config["encoder_hid_dim"], generator=g)
    return sample, image_embeds


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_kandinsky_unet_matches_diffusers(tmp_path, name, engine_layout):
    config = VARIANTS[name]
    ref = _save_unet(config, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path).to("cpu")  # .to() lays the conv weights out
    sample, image_embeds = _inputs(config)
    added = {"image_embeds": image_embeds}
    for t in (torch.tensor(981), torch.tensor([10, 500]), 999):
        with torch.no_grad():
            expected = ref(sample, t, None, added_cond_kwargs=added).sample
        got = ours(sample, t, None, added_cond_kwargs=added).sample
        assert got.shape == expected.shape == (2, config["out_channels"], 16, 16)
        diff = (got - expected).abs().max().item()
        assert diff <= FP32_ATOL, f"timestep {t}: max abs diff {diff}"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_projected_image_tokens_stand_in_for_the_projection(tmp_path, name):
    """The added key/value projections of the image tokens, made once per call of a pipeline: the
    same step as diffusers and as ours without them, and really read (other projections change it)."""
    config = VARIANTS[name]
    ref = _save_unet(config, tmp_path)
    engine = nd.UNet2DConditionModel.from_pretrained(tmp_path)._engine
    sample, image_embeds = _inputs(config)
    projected = engine.project_encoder_states(None, image_embeds=image_embeds)
    with torch.no_grad():
        expected = ref(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    plain = engine.forward(sample, torch.tensor(500), None, image_embeds=image_embeds)
    got = engine.forward(sample, torch.tensor(500), None, image_embeds=image_embeds, projected=projected)
    assert torch.equal(got, plain)
    assert (got - expected).abs().max().item() <= FP32_ATOL
    other = engine.project_encoder_states(None, image_embeds=torch.randn_like(image_embeds))
    steered = engine.forward(sample, torch.tensor(500), None, image_embeds=image_embeds, projected=other)
    assert not torch.allclose(steered, plain)
    with pytest.raises(ValueError, match="image_embeds"):
        engine.project_encoder_states(None)


def test_fused_qkv_projections_refused_with_added_kv_as_in_diffusers(tmp_path):
    ref = _save_unet(TINY, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    message = "not supported for models having added KV projections"
    with pytest.raises(ValueError, match=message):
        ref.fuse_qkv_projections()
    with pytest.raises(ValueError, match=message):
        ours.fuse_qkv_projections()
    sample, image_embeds = _inputs(TINY)
    with torch.no_grad():
        expected = ref(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    got = ours(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    assert (got - expected).abs().max().item() <= FP32_ATOL  # refused before anything fused


def test_freeu_leaves_the_kandinsky_blocks_alone_as_in_diffusers(tmp_path):
    # diffusers applies FreeU only in CrossAttnUpBlock2D and UpBlock2D; these are SimpleCrossAttn/Resnet ones.
    ref = _save_unet(TINY, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, image_embeds = _inputs(TINY)
    plain = ours(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    ref.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    ours.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    with torch.no_grad():
        expected = ref(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    got = ours(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    assert torch.equal(got, plain)
    assert (got - expected).abs().max().item() <= FP32_ATOL


def test_kandinsky_unet_op_and_errors(tmp_path):
    ref = _save_unet(TINY, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, image_embeds = _inputs(TINY, batch=1)
    with torch.no_grad():
        expected = ref(sample, 500, None, added_cond_kwargs={"image_embeds": image_embeds}).sample
    # The torch.library op (what torch.compile traces) takes encoder_hidden_states=None too.
    got = torch.ops.native_diffusers.unet_forward(ours._handle, sample, torch.tensor([500]), None, None, None,
                                                  image_embeds)
    assert (got - expected).abs().max().item() <= FP32_ATOL
    with pytest.raises(ValueError, match="image_embeds"):
        ours(sample, 500, None)
    with pytest.raises(ValueError, match="image_embeds must have shape"):
        ours(sample, 500, None, added_cond_kwargs={"image_embeds": torch.randn(1, 7)})


def test_unsupported_encoder_hid_dim_type_is_rejected(tmp_path):
    _save_unet(dict(TINY, encoder_hid_dim_type="text_proj", addition_embed_type=None), tmp_path)
    with pytest.raises(ValueError, match="encoder_hid_dim_type"):
        nd.UNet2DConditionModel.from_pretrained(tmp_path)

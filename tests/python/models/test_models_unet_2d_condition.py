"""Parity of the native UNet2DConditionModel with diffusers on random-weight checkpoints that
diffusers itself saves."""

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

TINY = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
)
# SD 1.5's block structure (four blocks, cross-attention in the first three, two layers each),
# only narrower.
SD15_NARROW = dict(
    block_out_channels=(32, 64, 64, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=48, attention_head_dim=8, norm_num_groups=32,
)
VARIANTS = {
    "tiny": TINY,
    "sd15_narrow": SD15_NARROW,
    # SD 2.x style: linear projections, per-block head counts, upcast attention.
    "linear_proj_heads_list": {**SD15_NARROW, "use_linear_projection": True, "attention_head_dim": (2, 4, 8, 8),
                               "upcast_attention": True, "layers_per_block": 1},
    # Inpainting UNets take 9 channels (latents + mask + masked-image latents).
    "inpaint_9ch": {**TINY, "in_channels": 9, "only_cross_attention": True, "norm_num_groups": 16,
                    "transformer_layers_per_block": 2},
}


def _save_unet(config, path, seed=0):
    torch.manual_seed(seed)
    model = diffusers.UNet2DConditionModel(**config).eval()
    # Random weights everywhere: diffusers zero-initialises nothing here, but make biases non-trivial.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(path)
    return model


def _inputs(config, batch=2, height=16, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, config["in_channels"], height, width, generator=g)
    context = torch.randn(batch, 77, config["cross_attention_dim"], generator=g)
    return sample, context


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_unet_matches_diffusers(tmp_path, name, engine_layout):
    config = VARIANTS[name]
    ref = _save_unet(config, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path).to("cpu")  # .to() lays the conv weights out
    sample, context = _inputs(config)
    for t in (torch.tensor(981), torch.tensor([10, 500]), 1.5, 999):
        with torch.no_grad():
            expected = ref(sample, t, context).sample
        got = ours(sample, t, context).sample
        assert got.shape == expected.shape
        assert got.is_contiguous() or engine_layout == "auto"  # channels-last inside, NCHW out
        assert (got - expected).abs().max().item() <= FP32_ATOL, f"timestep {t}"


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_projected_encoder_states_stand_in_for_the_states(tmp_path, name, engine_layout):
    """A denoising loop projects the cross-attention keys and values once per prompt
    (project_encoder_states) instead of at every step, as diffusers does: the step must be the one
    diffusers computes, bit for bit the one we compute without projections, and must read the keys
    and values from the projections alone (NaN states cannot reach the output)."""
    config = VARIANTS[name]
    ref = _save_unet(config, tmp_path)
    engine = nd.UNet2DConditionModel.from_pretrained(tmp_path).to("cpu")._engine
    sample, context = _inputs(config)
    projected = engine.project_encoder_states(context)
    for t in (torch.tensor(981), torch.tensor([10, 500])):
        with torch.no_grad():
            expected = ref(sample, t, context).sample
        plain = engine.forward(sample, t, context)
        got = engine.forward(sample, t, torch.full_like(context, float("nan")), projected=projected)
        assert torch.equal(got, plain)
        assert (got - expected).abs().max().item() <= FP32_ATOL, f"timestep {t}"
    other = engine.project_encoder_states(torch.randn_like(context))
    steered = engine.forward(sample, torch.tensor(10), context, projected=other)
    assert not torch.allclose(steered, engine.forward(sample, torch.tensor(10), context))


def test_projected_encoder_states_are_checked(tmp_path):
    _save_unet(TINY, tmp_path)
    engine = nd.UNet2DConditionModel.from_pretrained(tmp_path)._engine
    other = nd.UNet2DConditionModel.from_pretrained(tmp_path)._engine
    sample, context = _inputs(TINY)
    with pytest.raises(ValueError, match="another UNet2DConditionModel"):
        engine.forward(sample, torch.tensor(10), context, projected=other.project_encoder_states(context))
    with pytest.raises(ValueError, match="batch 1"):
        engine.forward(sample, torch.tensor(10), context, projected=engine.project_encoder_states(context[:1]))
    with pytest.raises(ValueError, match="encoder_hidden_states must have shape"):
        engine.project_encoder_states(context[..., :16])
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        engine.project_encoder_states(None)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fused_qkv_projections_match_diffusers_fused(tmp_path, name):
    """fuse_qkv_projections(): query, key and value of self-attention in one GEMM, key and value of
    cross-attention in another, against diffusers' FusedAttnProcessor2_0; unfusing gives back the
    separate projections bit for bit, and fusing never holds a weight twice (diffusers does)."""
    config = VARIANTS[name]
    ref = _save_unet(config, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, context = _inputs(config)
    unfused = ours(sample, 500, context).sample
    params = ours.num_parameters()
    ref.fuse_qkv_projections()
    ours.fuse_qkv_projections()
    assert ours.num_parameters() == params
    with torch.no_grad():
        expected = ref(sample, 500, context).sample
    fused = ours(sample, 500, context).sample
    assert (fused - expected).abs().max().item() <= FP32_ATOL
    # The denoising loop's projected keys and values come from the fused projection too.
    engine = ours._engine
    projected = engine.project_encoder_states(context)
    assert torch.equal(engine.forward(sample, torch.tensor(500), context, projected=projected), fused)
    ours.unfuse_qkv_projections()
    assert torch.equal(ours(sample, 500, context).sample, unfused)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("size", [(16, 16), (12, 8)], ids=["square", "not_power_of_two"])
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_freeu_matches_diffusers(tmp_path, name, size, engine_layout):
    """enable_freeu(): backbone halves scaled and skip features' low frequencies attenuated in the
    first two up blocks (FFT in float32), as diffusers does; a zero factor turns it off, as there."""
    config = VARIANTS[name]
    ref = _save_unet(config, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path).to("cpu")  # .to() lays the conv weights out
    sample, context = _inputs(config, height=size[0], width=size[1])
    plain = ours(sample, 500, context).sample
    freeu = dict(s1=0.9, s2=0.2, b1=1.5, b2=1.6)  # diffusers' suggestion for SD 1.5
    ref.enable_freeu(**freeu)
    ours.enable_freeu(**freeu)
    with torch.no_grad():
        expected = ref(sample, 500, context).sample
    got = ours(sample, 500, context).sample
    assert (got - expected).abs().max().item() <= FP32_ATOL
    assert (got - plain).abs().max().item() > 100 * FP32_ATOL
    ours.enable_freeu(**{**freeu, "s2": 0})
    assert torch.equal(ours(sample, 500, context).sample, plain)
    ours.enable_freeu(**freeu)
    ours.disable_freeu()
    assert torch.equal(ours(sample, 500, context).sample, plain)


def test_unet_non_square_input_needs_forward_upsample_size(tmp_path):
    """A 96x64 image gives 12x8 latents: 12 -> 6 -> 3 -> 2 on the way down, so the up path must
    upsample to the skips' sizes (diffusers' forward_upsample_size)."""
    ref = _save_unet(SD15_NARROW, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, context = _inputs(SD15_NARROW, height=12, width=8)
    with torch.no_grad():
        expected = ref(sample, 500, context).sample
    got = ours(sample, 500, context).sample
    assert (got - expected).abs().max().item() <= FP32_ATOL


def test_unet_return_dict_false_and_dtype(tmp_path):
    _save_unet(TINY, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    sample, context = _inputs(TINY)
    out = ours(sample.bfloat16(), 10, context.bfloat16(), return_dict=False)
    assert isinstance(out, tuple) and out[0].dtype == torch.bfloat16 and torch.isfinite(out[0]).all()


def test_unet_rejects_unsupported_config_and_bad_inputs(tmp_path):
    _save_unet(TINY, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, context = _inputs(TINY)
    with pytest.raises(ValueError, match="sample"):
        ours(sample[:, :3], 10, context)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        ours(sample, 10, context[..., :16])
    with pytest.raises(TypeError):
        ours(sample.numpy(), 10, context)

    config = json.loads((tmp_path / "config.json").read_text())
    for key, value, needle in [
        ("down_block_types", ["SkipDownBlock2D", "DownBlock2D"], "down_block_types\\[0\\]"),
        ("resnet_time_scale_shift", "ada_group", "resnet_time_scale_shift"),
        ("attention_head_dim", 7, "attention_head_dim"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=needle):
            nd.UNet2DConditionModel.from_pretrained(tmp_path)


# SDXL's UNet: text_time micro-conditioning, blocks without attention first, transformer depth per
# block, linear projections; base-like (6 time ids) and refiner-like (5 time ids) projections.
SDXL_BASE = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
    cross_attention_dim=64, norm_num_groups=1,
)
SDXL_REFINER = {
    **SDXL_BASE,
    "projection_class_embeddings_input_dim": 72,
    "cross_attention_dim": 32,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2,
    "up_block_types": ("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",),
    "attention_head_dim": (2, 4, 4),
    "transformer_layers_per_block": (1, 2, 2),
    "upcast_attention": True,
}


@pytest.mark.parametrize("config,n_time_ids", [(SDXL_BASE, 6), (SDXL_REFINER, 5)], ids=["base", "refiner"])
def test_sdxl_unet_text_time_matches_diffusers(tmp_path, config, n_time_ids):
    ref = _save_unet(config, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, context = _inputs(config)
    g = torch.Generator().manual_seed(5)
    added = {"text_embeds": torch.randn(2, 32, generator=g),
             "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024, 6.0][:n_time_ids]] * 2)}
    with torch.no_grad():
        expected = ref(sample, 700, context, added_cond_kwargs=added).sample
    got = ours(sample, 700, context, added_cond_kwargs=added).sample
    assert (got - expected).abs().max().item() <= FP32_ATOL
    with pytest.raises(ValueError, match="text_embeds"):
        ours(sample, 700, context)


def test_torch_compile_fullgraph_traces_one_opaque_call(tmp_path):
    """The guide's `pipeline.unet = torch.compile(pipeline.unet, mode="reduce-overhead", fullgraph=True)`:
    the forward is a single torch.library op with a fake implementation, so tracing succeeds and the
    compiled module gives the engine's own result."""
    _save_unet(TINY, tmp_path)
    ours = nd.UNet2DConditionModel.from_pretrained(tmp_path)
    sample, context = _inputs(TINY)
    t = torch.tensor(500)
    eager = ours(sample, t, context).sample
    compiled = torch.compile(ours, mode="reduce-overhead", fullgraph=True)
    assert torch.equal(compiled(sample, t, context).sample, eager)
    assert compiled.config.in_channels == 4  # attribute access passes through to the module

"""Parity of the native AutoencoderKL with diffusers on random-weight checkpoints it saves."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

TINY_VAE = dict(
    block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
    down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1,
)
VARIANTS = {
    "tiny": TINY_VAE,
    "three_blocks_two_layers": {**TINY_VAE, "block_out_channels": [16, 32, 32], "norm_num_groups": 8,
                                "down_block_types": ["DownEncoderBlock2D"] * 3,
                                "up_block_types": ["UpDecoderBlock2D"] * 3, "layers_per_block": 2},
    "no_quant_conv": {**TINY_VAE, "use_quant_conv": False, "use_post_quant_conv": False},
}


def _save_vae(config, path, seed=0):
    torch.manual_seed(seed)
    model = diffusers.AutoencoderKL(**config).eval()
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_vae_encode_decode_match_diffusers(tmp_path, name, engine_layout):
    config = VARIANTS[name]
    ref = _save_vae(config, tmp_path)
    ours = nd.AutoencoderKL.from_pretrained(tmp_path).to("cpu")  # .to() lays the conv weights out
    image = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(image).latent_dist
    got = ours.encode(image).latent_dist
    assert (got.mean - expected.mean).abs().max() <= FP32_ATOL
    assert (got.std - expected.std).abs().max() <= FP32_ATOL
    # sampling consumes the generator exactly as diffusers does
    s_ref = expected.sample(generator=torch.Generator().manual_seed(42))
    s_got = got.sample(generator=torch.Generator().manual_seed(42))
    assert (s_got - s_ref).abs().max() <= FP32_ATOL
    assert torch.equal(got.mode(), got.mean)

    with torch.no_grad():
        decoded_ref = ref.decode(s_ref).sample
    decoded = ours.decode(s_ref).sample
    assert decoded.shape == decoded_ref.shape == image.shape
    assert decoded.is_contiguous() or engine_layout == "auto"  # channels-last inside, NCHW out
    assert (decoded - decoded_ref).abs().max() <= FP32_ATOL
    assert ours.decode(s_ref, return_dict=False)[0].shape == image.shape


def test_fused_qkv_projections_match_diffusers_fused(tmp_path):
    ref = _save_vae(TINY_VAE, tmp_path)
    ours = nd.AutoencoderKL.from_pretrained(tmp_path)
    image = torch.rand(1, 3, 32, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    unfused = ours.decode(ours.encode(image).latent_dist.mode()).sample
    ref.fuse_qkv_projections()
    ours.fuse_qkv_projections()
    with torch.no_grad():
        latents = ref.encode(image).latent_dist.mode()
        expected = ref.decode(latents).sample
    assert (ours.encode(image).latent_dist.mode() - latents).abs().max() <= FP32_ATOL
    assert (ours.decode(latents).sample - expected).abs().max() <= FP32_ATOL
    ours.unfuse_qkv_projections()
    assert torch.equal(ours.decode(ours.encode(image).latent_dist.mode()).sample, unfused)


def test_vae_config_and_errors(tmp_path):
    _save_vae(TINY_VAE, tmp_path)
    ours = nd.AutoencoderKL.from_pretrained(tmp_path)
    assert ours.config.scaling_factor == pytest.approx(0.18215)
    assert ours.config.latent_channels == 4
    with pytest.raises(ValueError, match="decode"):
        ours.decode(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="encode"):
        ours.encode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(TypeError):
        ours.encode([1, 2, 3])


@pytest.mark.parametrize("name", ["tiny", "no_quant_conv"])
@pytest.mark.parametrize("size", [(40, 56), (16, 33)])
def test_tiled_encode_decode_match_diffusers(tmp_path, name, size):
    # sample_size 16: tiles of 16 pixels (8 latents for two blocks), every 12 (6), blended over 2 (4).
    ref = _save_vae({**VARIANTS[name], "sample_size": 16}, tmp_path)
    ours = nd.AutoencoderKL.from_pretrained(tmp_path)
    ref.enable_tiling()
    ours.enable_tiling()
    assert ours.use_tiling and (ours.tile_sample_min_size, ours.tile_latent_min_size) == (16, 8)
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(image).latent_dist.mean
    got = ours.encode(image).latent_dist.mean
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= FP32_ATOL
    latents = torch.randn(2, 4, size[0] // 2, size[1] // 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref.decode(latents).sample
    got = ours.decode(latents).sample
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= FP32_ATOL
    # Tiling really changed the result: one pass differs where tiles were blended.
    ours.disable_tiling()
    assert (ours.decode(latents).sample - got).abs().max() > 1e-3


def test_slicing_codes_a_batch_one_image_at_a_time(tmp_path):
    ref = _save_vae(TINY_VAE, tmp_path)
    ours = nd.AutoencoderKL.from_pretrained(tmp_path)
    image = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batched = ours.encode(image).latent_dist.mean
    ours.enable_slicing()
    assert ours.use_slicing
    sliced = ours.encode(image).latent_dist.mean
    with torch.no_grad():
        expected = ref.encode(image).latent_dist.mean
    assert (sliced - expected).abs().max() <= FP32_ATOL
    assert (sliced - batched).abs().max() <= FP32_ATOL
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref.decode(latents).sample
    assert (ours.decode(latents).sample - expected).abs().max() <= FP32_ATOL
    ours.disable_slicing()
    assert not ours.use_slicing


def test_vq_model_has_no_tiling_as_in_diffusers(tmp_path):
    diffusers.VQModel(block_out_channels=[32], norm_num_groups=8, layers_per_block=1, latent_channels=3,
                      num_vq_embeddings=16, vq_embed_dim=3).save_pretrained(tmp_path)
    movq = nd.VQModel.from_pretrained(tmp_path)
    with pytest.raises(NotImplementedError, match="Tiling doesn't seem to be implemented for VQModel."):
        movq.enable_tiling()
    with pytest.raises(NotImplementedError, match="Slicing doesn't seem to be implemented for VQModel."):
        movq.enable_slicing()
    movq.disable_tiling()  # as diffusers: turning off what is not there is fine

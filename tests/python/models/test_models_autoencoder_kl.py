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

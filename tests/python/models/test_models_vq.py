"""Parity of the native VQModel (Kandinsky 2.2's MoVQ) with diffusers on random-weight
checkpoints that diffusers itself saves: encode, decode with and without quantization."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

# diffusers' movq dummy (tests/pipelines/kandinsky2_2/test_kandinsky_img2img.py).
MOVQ = dict(
    block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"], in_channels=3,
    latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12,
    out_channels=3, up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], vq_embed_dim=4,
)
VARIANTS = {
    "movq": MOVQ,
    # Group norms throughout, three blocks, attention in the decoder's last block, vq_embed_dim != latents.
    "group_norm": dict(
        block_out_channels=[32, 32, 64], down_block_types=["AttnDownEncoderBlock2D", "DownEncoderBlock2D",
                                                           "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D"], latent_channels=3,
        vq_embed_dim=5, num_vq_embeddings=16, layers_per_block=2, norm_num_groups=16, scaling_factor=0.5,
    ),
}


def _save(config, path, seed=0):
    torch.manual_seed(seed)
    model = diffusers.VQModel(**config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        # A codebook as spread out as the latents, so quantization picks varied entries.
        model.quantize.embedding.weight.normal_()
    model.save_pretrained(path)
    return model


def _max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("engine_layout", ["auto", "on"], indirect=True)
def test_vq_model_matches_diffusers(tmp_path, name, engine_layout):
    ref = _save(VARIANTS[name], tmp_path)
    ours = nd.VQModel.from_pretrained(tmp_path).to("cpu")  # .to() lays the conv weights out
    assert ours.config["scaling_factor"] == ref.config.scaling_factor
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        h_ref = ref.encode(x).latents
    h = ours.encode(x).latents
    assert h.shape == h_ref.shape
    assert _max_diff(h, h_ref) <= FP32_ATOL
    # Decode the reference's latents so both quantize the very same inputs.
    for force in (True, False):
        with torch.no_grad():
            expected = ref.decode(h_ref, force_not_quantize=force)
        got = ours.decode(h_ref, force_not_quantize=force)
        assert got.sample.shape == expected.sample.shape == (2, 3, 32, 32)
        assert _max_diff(got.sample, expected.sample) <= FP32_ATOL, f"force_not_quantize={force}"
        assert got.commit_loss.shape == expected.commit_loss.shape
        assert _max_diff(got.commit_loss, expected.commit_loss) <= FP32_ATOL
    with torch.no_grad():
        expected = ref(x).sample
    assert _max_diff(ours(x).sample, expected) <= FP32_ATOL
    dec, loss = ours.decode(h_ref, return_dict=False)
    assert dec.shape == (2, 3, 32, 32) and loss.dim() == 0


def test_vq_model_bad_inputs(tmp_path):
    _save(MOVQ, tmp_path)
    ours = nd.VQModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="VQModel.encode expects"):
        ours.encode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="VQModel.decode expects"):
        ours.decode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError):
        ours.decode([1, 2])


def test_vq_model_rejects_lookup_from_codebook(tmp_path):
    _save(dict(MOVQ, lookup_from_codebook=True), tmp_path)
    with pytest.raises(ValueError, match="lookup_from_codebook"):
        nd.VQModel.from_pretrained(tmp_path)

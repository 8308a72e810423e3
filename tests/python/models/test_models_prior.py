"""Parity of the native PriorTransformer with diffusers on random-weight checkpoints that diffusers
itself saves: the Kandinsky-style call (text states + causal/text mask), the optional blocks of the
config, post_process_latents, and bad inputs."""

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

# diffusers' tests/models/transformers/test_models_prior.py and Kandinsky 2.2 prior pipeline test.
DIFFUSERS_TEST = dict(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1)
CONFIGS = {
    "diffusers_test": DIFFUSERS_TEST,
    # Kandinsky 2.2's prior config, narrow: layer norms in and on the projection, gelu time MLP.
    "kandinsky_like": dict(num_attention_heads=3, attention_head_dim=8, embedding_dim=16, num_layers=2,
                           num_embeddings=9, norm_in_type="layer", embedding_proj_norm_type="layer",
                           time_embed_act_fn="gelu", time_embed_dim=40, clip_embed_dim=20, embedding_proj_dim=12),
    "no_prd_no_encoder_proj": dict(num_attention_heads=2, attention_head_dim=8, embedding_dim=16, num_layers=2,
                                   num_embeddings=5, additional_embeddings=3, added_emb_type=None,
                                   encoder_hid_proj_type=None),
}


def _save(config, path, seed=0):
    torch.manual_seed(seed)
    model = diffusers.PriorTransformer(**config).eval()
    with torch.no_grad():
        # Zeros make the output trivially 0 after post-processing; random values test the load.
        model.clip_mean.normal_()
        model.clip_std.uniform_(0.5, 1.5)
        model.positional_embedding.normal_()
        if model.prd_embedding is not None:
            model.prd_embedding.normal_()
    model.save_pretrained(path)
    return model


def _inputs(model, batch=2, seed=1, masked=True):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    inner = c.num_attention_heads * c.attention_head_dim
    embed_dim = c.embedding_dim if c.encoder_hid_proj_type is not None else inner
    inputs = dict(
        hidden_states=torch.randn(batch, c.embedding_dim, generator=g),
        proj_embedding=torch.randn(batch, c.embedding_proj_dim or c.embedding_dim, generator=g),
        encoder_hidden_states=torch.randn(batch, c.num_embeddings, embed_dim, generator=g),
    )
    if masked:
        mask = torch.ones(batch, c.num_embeddings, dtype=torch.bool)
        mask[0, 3:] = False  # a padded prompt
        inputs["attention_mask"] = mask
    return inputs


def _max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("masked", [True, False])
def test_prior_transformer_matches_diffusers(tmp_path, name, masked):
    ref = _save(CONFIGS[name], tmp_path)
    ours = nd.PriorTransformer.from_pretrained(tmp_path)
    inputs = _inputs(ref, masked=masked)
    worst = 0.0
    for timestep in (torch.tensor(999), 500, torch.tensor([3, 700])):
        with torch.no_grad():
            expected = ref(timestep=timestep, **inputs).predicted_image_embedding
        got = ours(timestep=timestep, **inputs).predicted_image_embedding
        assert got.shape == expected.shape
        worst = max(worst, _max_diff(got, expected))
    print(name, masked, worst)
    assert worst <= FP32_ATOL
    latents = torch.randn(3, ref.config.clip_embed_dim or ref.config.embedding_dim)
    with torch.no_grad():
        assert _max_diff(ours.post_process_latents(latents), ref.post_process_latents(latents)) <= FP32_ATOL
    assert ours(timestep=1, return_dict=False, **inputs)[0].shape == expected.shape


def test_prior_transformer_bad_inputs(tmp_path):
    ref = _save(DIFFUSERS_TEST, tmp_path)
    ours = nd.PriorTransformer.from_pretrained(tmp_path)
    inputs = _inputs(ref)
    with pytest.raises(ValueError, match="requires `encoder_hidden_states`"):
        ours(timestep=1, **{**inputs, "encoder_hidden_states": None})
    with pytest.raises(ValueError, match="hidden_states must have shape"):
        ours(timestep=1, **{**inputs, "hidden_states": torch.zeros(2, 7)})
    with pytest.raises(ValueError, match="attention_mask"):
        ours(timestep=1, **{**inputs, "attention_mask": torch.ones(2, 5, dtype=torch.bool)})
    with pytest.raises(TypeError, match="timestep"):
        ours(timestep="1", **inputs)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, norm_in_type="batch")))
    with pytest.raises(ValueError, match="norm_in_type"):
        nd.PriorTransformer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(dict(config, norm_in_type="layer")))
    with pytest.raises(ValueError, match="norm_in"):  # the weights have no norm_in
        nd.PriorTransformer.from_pretrained(tmp_path)

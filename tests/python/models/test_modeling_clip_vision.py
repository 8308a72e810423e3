"""Parity of the native CLIPVisionModelWithProjection and CLIPImageProcessor with transformers, on
random-weight checkpoints and processor configs that transformers itself saves."""

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is the parity oracle (test-only dependency)")
pytest.importorskip("PIL")
import PIL.Image  # noqa: E402

import native_diffusers as nd  # noqa: E402
from tolerances import FP32_ATOL  # noqa: E402

# diffusers' Kandinsky 2.2 prior test (tests/pipelines/kandinsky2_2/test_kandinsky_prior.py) image encoder.
KANDINSKY_TEST = dict(hidden_size=32, image_size=224, projection_dim=32, intermediate_size=37, num_attention_heads=4,
                      num_channels=3, num_hidden_layers=5, patch_size=14)
CONFIGS = {
    "kandinsky_test": KANDINSKY_TEST,
    "small_gelu": dict(KANDINSKY_TEST, image_size=32, patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6,
                       num_hidden_layers=2, projection_dim=24),
    "odd_patches": dict(KANDINSKY_TEST, image_size=30, patch_size=7, hidden_size=48, num_attention_heads=3,
                        num_hidden_layers=1),
}


def _save(config, path, seed=0):
    torch.manual_seed(seed)
    model = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**config)).eval()
    model.save_pretrained(path)
    return model


def _max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_clip_vision_model_with_projection_matches_transformers(tmp_path, name):
    config = CONFIGS[name]
    ref = _save(config, tmp_path)
    ours = nd.CLIPVisionModelWithProjection.from_pretrained(tmp_path)
    size = config["image_size"]
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(pixels, output_hidden_states=True)
    got = ours(pixels, output_hidden_states=True)
    assert got.image_embeds.shape == (2, config["projection_dim"])
    diffs = {
        "image_embeds": _max_diff(got.image_embeds, expected.image_embeds),
        "last_hidden_state": _max_diff(got.last_hidden_state, expected.last_hidden_state),
    }
    print(name, diffs)
    assert max(diffs.values()) <= FP32_ATOL, diffs
    assert len(got.hidden_states) == len(expected.hidden_states) == config["num_hidden_layers"] + 1
    for g, e in zip(got.hidden_states, expected.hidden_states):
        assert _max_diff(g, e) <= FP32_ATOL
    # Kandinsky's get_zero_embed: a zero image of image_size, read from the config.
    zero = torch.zeros(1, 3, ours.config.image_size, ours.config.image_size)
    with torch.no_grad():
        assert _max_diff(ours(zero)["image_embeds"], ref(zero)["image_embeds"]) <= FP32_ATOL
    assert torch.equal(ours(pixels, return_dict=False)[0], got.image_embeds)


def test_nested_vision_config_and_bad_inputs(tmp_path):
    config = CONFIGS["small_gelu"]
    ref = _save(config, tmp_path)
    # A full CLIPConfig nests the vision keys under vision_config.
    flat = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": flat}))
    ours = nd.CLIPVisionModelWithProjection.from_pretrained(tmp_path)
    pixels = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert _max_diff(ours(pixels).image_embeds, ref(pixels).image_embeds) <= FP32_ATOL
    with pytest.raises(ValueError, match="doesn't match model"):
        ours(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        ours(torch.zeros(3, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        ours(torch.zeros(1, 3, 32, 32, dtype=torch.long))
    (tmp_path / "config.json").write_text(json.dumps(dict(flat, patch_size=0)))
    with pytest.raises(ValueError, match="patch_size"):
        nd.CLIPVisionModelWithProjection.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(dict(flat, image_size=64)))
    with pytest.raises(ValueError, match="position_embedding"):
        nd.CLIPVisionModelWithProjection.from_pretrained(tmp_path)


# ---- CLIPImageProcessor -------------------------------------------------------------------------------

def _images():
    rng = np.random.default_rng(0)
    rgb = lambda h, w: PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # noqa: E731
    return [
        rgb(37, 53),
        rgb(301, 199),
        rgb(224, 224),
        rgb(11, 9),
        PIL.Image.fromarray(rng.integers(0, 256, (45, 61), dtype=np.uint8), mode="L"),
        PIL.Image.fromarray(rng.integers(0, 256, (50, 33, 4), dtype=np.uint8), mode="RGBA"),
    ]


PROCESSOR_CONFIGS = {
    "kandinsky": dict(crop_size=224, resample=3, size=224, do_center_crop=True, do_normalize=True, do_resize=True,
                      image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711]),
    "small_crop": dict(crop_size=30, size=30),
    "crop_larger_than_image": dict(crop_size={"height": 40, "width": 36}, size=24, resample=2),
    "no_resize": dict(do_resize=False, crop_size=20),
    "square_size": dict(size={"height": 17, "width": 23}, crop_size=16, do_normalize=False),
}


@pytest.mark.parametrize("name", sorted(PROCESSOR_CONFIGS))
def test_clip_image_processor_matches_transformers(tmp_path, name):
    ref = transformers.CLIPImageProcessor(**PROCESSOR_CONFIGS[name])
    ref.save_pretrained(tmp_path)
    ours = nd.CLIPImageProcessor.from_pretrained(tmp_path)
    images = _images()
    expected = ref(images, return_tensors="pt").pixel_values
    got = ours(images, return_tensors="pt").pixel_values
    assert got.dtype == expected.dtype == torch.float32
    assert got.shape == expected.shape
    diff = _max_diff(got, expected)
    print(name, diff)
    assert diff <= FP32_ATOL
    # One image at a time, as diffusers' interpolate calls it.
    single = ours(images[1], return_tensors="pt").pixel_values
    assert torch.equal(single[0], got[1])


def test_clip_image_processor_array_inputs():
    ref = transformers.CLIPImageProcessor(crop_size=30, size=32)
    ours = nd.CLIPImageProcessor(crop_size=30, size=32)
    rng = np.random.default_rng(1)
    float_hwc = rng.random((41, 35, 3)).astype(np.float32)  # in [0, 1]: scaled for PIL and back
    uint8_chw = rng.integers(0, 256, (3, 29, 47), dtype=np.uint8)
    for image in (float_hwc, uint8_chw, torch.from_numpy(float_hwc.copy())):
        expected = ref(image, return_tensors="pt").pixel_values
        got = ours(image, return_tensors="pt").pixel_values
        assert _max_diff(got, expected) <= FP32_ATOL
    with pytest.raises(ValueError, match="Invalid image type"):
        ours("not an image")
    with pytest.raises(ValueError, match="outside the range"):
        ours(np.full((8, 8, 3), 3.5, dtype=np.float32))

"""VaeImageProcessor parity: native_diffusers against diffusers 0.40 on the same inputs, bit for bit."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor as RefVaeImageProcessor
from native_diffusers.image_processor import VaeImageProcessor, is_valid_image, is_valid_image_imagelist
from reference_comparison import assert_same, outcome

# (width, height): a multiple of 8, and one that is not in either dimension.
SIZES = [(96, 64), (100, 75)]


def _pil(width, height, mode="RGB", seed=0):
    bands = len(mode) if mode != "L" else 1
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, bands), dtype=np.uint8)
    return PIL.Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode=mode)


def _uniform(shape, low=0.0, high=1.0, seed=0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _check(method, *args, config=None, **kwargs):
    """Runs ``method`` on both processors with the same config and arguments; results and warnings must match."""
    config = config or {}
    ours, ours_warnings = outcome(lambda: getattr(VaeImageProcessor(**config), method)(*args, **kwargs))
    ref, ref_warnings = outcome(lambda: getattr(RefVaeImageProcessor(**config), method)(*args, **kwargs))
    assert_same(ours, ref)
    assert ours_warnings == ref_warnings
    return ours


# -- construction ----------------------------------------------------------------------------------------------


def test_config_defaults_match_diffusers():
    ref = {k: v for k, v in RefVaeImageProcessor().config.items() if not k.startswith("_")}
    assert dict(VaeImageProcessor().config) == ref


def test_config_attribute_access_and_frozen():
    processor = VaeImageProcessor(vae_scale_factor=16, do_normalize=False)
    assert processor.config.vae_scale_factor == 16 and processor.config["do_normalize"] is False
    with pytest.raises(Exception, match="__setitem__"):
        processor.config["vae_scale_factor"] = 8


def test_from_config_round_trip_and_override():
    ref = RefVaeImageProcessor(vae_scale_factor=16, resample="bicubic")
    processor = VaeImageProcessor.from_config(ref.config, do_normalize=False)
    assert processor.config.vae_scale_factor == 16 and processor.config.resample == "bicubic"
    assert processor.config.do_normalize is False


def test_rgb_and_grayscale_together_rejected():
    with pytest.raises(ValueError, match="can not both be set to `True`"):
        VaeImageProcessor(do_convert_rgb=True, do_convert_grayscale=True)


# -- preprocess ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("size", SIZES)
def test_preprocess_pil(size, mode):
    out = _check("preprocess", _pil(*size, mode=mode))
    assert out.shape[2:] == (size[1] - size[1] % 8, size[0] - size[0] % 8)


@pytest.mark.parametrize("size", SIZES)
def test_preprocess_pil_list(size):
    images = [_pil(*size, seed=s) for s in range(3)]
    assert _check("preprocess", images).shape[0] == 3


@pytest.mark.parametrize("resample", ["lanczos", "bicubic", "bilinear", "linear", "nearest"])
def test_preprocess_pil_resample(resample):
    _check("preprocess", _pil(100, 75), config={"resample": resample})


def test_preprocess_pil_reducing_gap():
    _check("preprocess", _pil(300, 200), height=64, width=96, config={"reducing_gap": 2})


@pytest.mark.parametrize("resize_mode", ["default", "fill", "crop"])
@pytest.mark.parametrize(("height", "width"), [(64, 96), (96, 64), (80, 80), (61, 99)])
def test_preprocess_pil_resize_modes(resize_mode, height, width):
    _check("preprocess", _pil(100, 75), height=height, width=width, resize_mode=resize_mode)


def test_preprocess_pil_crops_coords():
    _check("preprocess", [_pil(100, 75), _pil(100, 75, seed=1)], crops_coords=(5, 3, 90, 70))


@pytest.mark.parametrize(
    "config",
    [
        {"do_convert_rgb": True},
        {"do_convert_grayscale": True},
        {"do_resize": False},
        {"do_normalize": False},
        {"do_binarize": True, "do_normalize": False},
        {"vae_scale_factor": 16},
    ],
)
@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_preprocess_pil_config(config, mode):
    _check("preprocess", _pil(100, 75, mode=mode), config=config)


@pytest.mark.parametrize(
    "shape",
    [(75, 100, 3), (64, 96, 3), (2, 75, 100, 3), (2, 64, 96, 3), (75, 100), (75, 100, 1)],
    ids=["HWC", "HWC-aligned", "NHWC", "NHWC-aligned", "HW", "HW1"],
)
def test_preprocess_numpy(shape):
    _check("preprocess", _uniform(shape))


def test_preprocess_numpy_list():
    _check("preprocess", [_uniform((75, 100, 3), seed=s) for s in range(3)])


def test_preprocess_numpy_list_of_batches_warns():
    _check("preprocess", [_uniform((2, 75, 100, 3), seed=s) for s in range(2)])


def test_preprocess_numpy_explicit_size_and_no_resize():
    _check("preprocess", _uniform((75, 100, 3)), height=40, width=56)
    _check("preprocess", _uniform((75, 100, 3)), config={"do_resize": False})


@pytest.mark.parametrize("shape", [(75, 100), (2, 75, 100), (75, 100, 1)])
def test_preprocess_numpy_grayscale(shape):
    _check("preprocess", _uniform(shape), config={"do_convert_grayscale": True})


@pytest.mark.parametrize(
    "shape",
    [(3, 75, 100), (3, 64, 96), (2, 3, 75, 100), (2, 3, 64, 96)],
    ids=["CHW", "CHW-aligned", "NCHW", "NCHW-al"],
)
@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)], ids=["0..1", "-1..1"])
def test_preprocess_torch(shape, value_range):
    _check("preprocess", torch.from_numpy(_uniform(shape, *value_range)))


def test_preprocess_torch_negative_range_warns():
    image = torch.from_numpy(_uniform((1, 3, 64, 96), -1.0, 1.0))
    with pytest.warns(FutureWarning, match=r"value range in \[-1,1\] is deprecated"):
        out = VaeImageProcessor().preprocess(image)
    assert torch.equal(out, image)


def test_preprocess_numpy_negative_range_warns():
    _check("preprocess", _uniform((64, 96, 3), -1.0, 1.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_preprocess_torch_dtypes(dtype):
    _check("preprocess", torch.from_numpy(_uniform((1, 3, 75, 100))).to(dtype))


def test_preprocess_torch_lists():
    _check("preprocess", [torch.from_numpy(_uniform((3, 75, 100), seed=s)) for s in range(3)])
    _check("preprocess", [torch.from_numpy(_uniform((2, 3, 75, 100), seed=s)) for s in range(2)])


@pytest.mark.parametrize("shape", [(1, 75, 100), (2, 75, 100)])
def test_preprocess_torch_grayscale(shape):
    _check("preprocess", torch.from_numpy(_uniform(shape)), config={"do_convert_grayscale": True})


@pytest.mark.parametrize("channels", [4, 16])
def test_preprocess_latents_pass_through(channels):
    latents = torch.randn(2, channels, 9, 13, generator=torch.Generator().manual_seed(0))
    out = _check("preprocess", latents, config={"vae_latent_channels": channels})
    assert torch.equal(out, latents)
    _check("preprocess", [latents[0], latents[1]], config={"vae_latent_channels": channels})


@pytest.mark.parametrize(
    "image",
    [
        "image.png",
        None,
        3,
        np.zeros((1, 1, 3, 8, 8), np.float32),
        torch.zeros(8),
        [np.zeros((8, 8, 3), np.float32), "x"],
    ],
    ids=["str", "None", "int", "5d-array", "1d-tensor", "mixed-list"],
)
def test_preprocess_invalid_input(image):
    with pytest.raises(ValueError, match="Input is in incorrect format"):
        VaeImageProcessor().preprocess(image)
    _check("preprocess", image)


@pytest.mark.parametrize(
    "image",
    [
        PIL.Image.new("RGB", (0, 0)),
        PIL.Image.new("RGB", (0, 16)),
        np.zeros((0, 0, 3), np.float32),
        np.zeros((16, 0, 3), np.float32),
        np.zeros((0, 16, 16, 3), np.float32),
        torch.zeros(3, 0, 0),
        torch.zeros(1, 3, 16, 0),
        torch.zeros(1, 4, 0, 8),  # latents too
        [PIL.Image.new("RGB", (16, 16)), PIL.Image.new("RGB", (16, 0))],
        [],
    ],
    ids=[
        "pil-0x0",
        "pil-0x16",
        "np-0x0",
        "np-16x0",
        "np-empty-batch",
        "pt-0x0",
        "pt-16x0",
        "latents-0x8",
        "list-with-empty",
        "empty-list",
    ],
)
def test_preprocess_refuses_an_empty_image_naming_it(image):
    # diffusers fails inside the resize (or on image[0]) with a message that names no argument.
    with pytest.raises(ValueError, match="`image`"):
        VaeImageProcessor().preprocess(image)


@pytest.mark.parametrize(
    "image, height, width",
    [
        (PIL.Image.new("RGB", (4, 4)), None, None),
        (np.zeros((4, 16, 3), np.float32), None, None),
        (torch.zeros(1, 3, 16, 16), -8, 16),
        (PIL.Image.new("RGB", (16, 16)), 0, 16),
    ],
    ids=["pil-smaller-than-the-scale-factor", "np-smaller-than-the-scale-factor", "negative-height", "zero-height"],
)
def test_preprocess_refuses_a_size_that_rounds_to_nothing(image, height, width):
    with pytest.raises(ValueError, match=r"`image` would be resized to"):
        VaeImageProcessor().preprocess(image, height=height, width=width)


def test_clip_image_processor_refuses_an_empty_image_naming_it():
    from native_diffusers import CLIPImageProcessor

    for image in (PIL.Image.new("RGB", (0, 0)), np.zeros((0, 8, 3), np.uint8), torch.zeros(3, 8, 0)):
        with pytest.raises(ValueError, match="`images`"):
            CLIPImageProcessor()(image, return_tensors="pt")


def test_preprocess_fill_needs_pil():
    _check("preprocess", torch.from_numpy(_uniform((1, 3, 75, 100))), resize_mode="fill")
    _check("preprocess", _pil(100, 75), height=64, width=64, resize_mode="stretch")


# -- postprocess -----------------------------------------------------------------------------------------------


def _decoded(shape=(2, 3, 64, 96), seed=0):
    # A VAE's output overshoots [-1, 1] a little; clamping must match too.
    return torch.from_numpy(_uniform(shape, -1.2, 1.2, seed=seed))


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
@pytest.mark.parametrize("channels", [3, 1])
def test_postprocess_output_types(output_type, channels):
    _check("postprocess", _decoded((2, channels, 64, 96)), output_type=output_type)


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
@pytest.mark.parametrize("do_denormalize", [[True, False], [False, True], [False, False], [True, True]])
def test_postprocess_do_denormalize(output_type, do_denormalize):
    image = torch.from_numpy(_uniform((2, 3, 64, 96), 0.0, 1.0)) if not all(do_denormalize) else _decoded()
    _check("postprocess", image, output_type=output_type, do_denormalize=do_denormalize)


@pytest.mark.parametrize("output_type", ["np", "pt"])
def test_postprocess_without_normalize(output_type):
    _check("postprocess", _decoded(), output_type=output_type, config={"do_normalize": False})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_postprocess_half_precision(dtype):
    _check("postprocess", _decoded().to(dtype), output_type="np")
    _check("postprocess", _decoded().to(dtype), output_type="pil")


def test_postprocess_unknown_output_type_falls_back_to_np():
    with pytest.warns(FutureWarning, match="the output_type numpy is outdated"):
        out = VaeImageProcessor().postprocess(_decoded(), output_type="numpy")
    assert isinstance(out, np.ndarray) and out.shape == (2, 64, 96, 3)
    _check("postprocess", _decoded(), output_type="numpy")


def test_postprocess_rejects_non_tensor():
    with pytest.raises(ValueError, match="Input for postprocessing is in incorrect format"):
        VaeImageProcessor().postprocess(np.zeros((1, 3, 8, 8), np.float32))
    _check("postprocess", np.zeros((1, 3, 8, 8), np.float32))


def test_round_trip_pil():
    image = _pil(96, 64)
    processor = VaeImageProcessor()
    (out,) = processor.postprocess(processor.preprocess(image))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


# -- the building blocks pipelines call directly ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("resize_mode", ["default", "fill", "crop"])
def test_resize_pil(size, resize_mode):
    _check("resize", _pil(*size), 48, 72, resize_mode=resize_mode)


def test_resize_torch_and_numpy():
    _check("resize", torch.from_numpy(_uniform((2, 3, 75, 100))), 40, 56)
    _check("resize", _uniform((2, 75, 100, 3)), 40, 56)
    _check("resize", _uniform((2, 75, 100, 3)), 40, 56, resize_mode="crop")


@pytest.mark.parametrize(
    "image",
    [_pil(100, 75), _uniform((2, 75, 100, 3)), _uniform((2, 75, 100)), torch.zeros(2, 3, 75, 100)],
    ids=["pil", "NHWC", "NHW", "NCHW"],
)
@pytest.mark.parametrize(("height", "width"), [(None, None), (70, None), (None, 130), (64, 64)])
def test_get_default_height_width(image, height, width):
    _check("get_default_height_width", image, height, width, config={"vae_scale_factor": 16})


@pytest.mark.parametrize(
    "images", [_uniform((64, 96, 3)), _uniform((2, 64, 96, 3)), _uniform((2, 64, 96, 1)), _uniform((96, 1, 1))]
)
def test_numpy_to_pil(images):
    _check("numpy_to_pil", images)


def test_numpy_to_pil_grayscale_one_row_is_upright():
    # diffusers' squeeze transposes a one-row grayscale image; ours keeps its (width, height).
    (image,) = VaeImageProcessor.numpy_to_pil(_uniform((1, 1, 5, 1)))
    assert image.size == (5, 1) and image.mode == "L"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_pil_to_numpy_to_pt_and_back(mode):
    images = [_pil(100, 75, mode=mode, seed=s) for s in range(2)]
    array = _check("pil_to_numpy", images)
    _check("pil_to_numpy", images[0])
    tensor = _check("numpy_to_pt", array)
    _check("pt_to_numpy", tensor)


def test_normalize_denormalize_binarize_convert():
    tensor, array = torch.from_numpy(_uniform((1, 3, 8, 8))), _uniform((1, 8, 8, 3))
    _check("normalize", tensor)
    _check("normalize", array)
    _check("denormalize", _decoded())
    _check("binarize", tensor.clone())
    _check("convert_to_rgb", _pil(10, 10, mode="RGBA"))
    _check("convert_to_grayscale", _pil(10, 10))


def test_is_valid_image():
    for image in [_pil(8, 8), np.zeros((8, 8)), np.zeros((8, 8, 3)), torch.zeros(3, 8, 8)]:
        assert is_valid_image(image) and is_valid_image_imagelist([image, image])
    assert is_valid_image_imagelist(np.zeros((1, 8, 8, 3))) and not is_valid_image(np.zeros((1, 8, 8, 3)))
    assert not is_valid_image_imagelist("x") and not is_valid_image_imagelist(np.zeros(8))

"""VaeImageProcessor's mask handling (the inpainting pipelines' ``mask_processor``, ``blur``, ``get_crop_region``,
``apply_overlay``): native_diffusers against diffusers 0.40 on the same inputs, bit for bit."""

import inspect

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor as RefVaeImageProcessor
from native_diffusers.image_processor import VaeImageProcessor
from reference_comparison import assert_same, outcome

# The inpainting pipelines' mask_processor. Ref: diffusers pipeline_stable_diffusion_inpaint.py, __init__.
MASK_CONFIG = {"vae_scale_factor": 8, "do_normalize": False, "do_binarize": True, "do_convert_grayscale": True}

# (width, height): square and wide multiples of 8, then sizes that are not multiples of 8 in either dimension.
SIZES = [(64, 64), (96, 64), (100, 75), (37, 53)]

# Sizes a pipeline processes at, as (width, height): square, wide, tall and one that is not a multiple of 8.
PROCESSING_SIZES = [(512, 512), (96, 64), (64, 96), (100, 75), (768, 512)]
PADS = [0, 3, 16, 32, 200]


def _rng(seed):
    return np.random.default_rng(seed)


def _noise_mask(height, width, seed=0):
    """Binary per-pixel noise: every resize lands values on both sides of the 0.5 threshold."""
    return np.where(_rng(seed).random((height, width)) < 0.5, 255, 0).astype(np.uint8)


def _soft_mask(height, width, seed=0):
    """Every gray level, as a hand-painted or blurred mask has."""
    return _rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def _box_mask(height, width, seed=0):
    """One random rectangle, the usual hand-drawn mask."""
    rng = _rng(seed)
    x1, y1 = rng.integers(0, width - 1), rng.integers(0, height - 1)
    x2, y2 = rng.integers(x1 + 1, width + 1), rng.integers(y1 + 1, height + 1)
    mask = np.zeros((height, width), np.uint8)
    mask[y1:y2, x1:x2] = 255
    return mask


MASKS = {"noise": _noise_mask, "soft": _soft_mask, "box": _box_mask}


def _pil_mask(width, height, kind="noise", mode="L", seed=0):
    return PIL.Image.fromarray(MASKS[kind](height, width, seed), mode="L").convert(mode)


def _pil_rgb(width, height, seed=0):
    return PIL.Image.fromarray(_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def _float_mask(shape, kind="noise", seed=0):
    """A mask array in [0, 1] of any shape whose last two axes are (height, width), or (height, width, channels)."""
    return (_rng(seed).random(shape) < 0.5).astype(np.float32) if kind == "noise" else _rng(seed).random(shape)


def _copy(value):
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _check(method, *args, config=MASK_CONFIG, **kwargs):
    """Runs ``method`` on both processors with the same config and (separately copied) arguments; results and
    warnings must match. diffusers binarises in place, so each side gets its own copy of array inputs."""
    ours, ours_warnings = outcome(lambda: getattr(VaeImageProcessor(**config), method)(*_copy(args), **kwargs))
    ref, ref_warnings = outcome(lambda: getattr(RefVaeImageProcessor(**config), method)(*_copy(args), **kwargs))
    assert_same(ours, ref)
    assert ours_warnings == ref_warnings
    return ours


def _assert_binary_mask(out, batch, height, width):
    assert out.shape == (batch, 1, height - height % 8, width - width % 8)
    assert out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}


# -- construction ----------------------------------------------------------------------------------------------


def test_constructor_signature_matches_diffusers():
    ours = inspect.signature(VaeImageProcessor.__init__).parameters
    ref = inspect.signature(RefVaeImageProcessor.__init__).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in ref.values()]


def test_mask_processor_config_matches_diffusers():
    ref = {k: v for k, v in RefVaeImageProcessor(**MASK_CONFIG).config.items() if not k.startswith("_")}
    assert dict(VaeImageProcessor(**MASK_CONFIG).config) == ref


# -- preprocess: PIL masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "1", "RGB", "RGBA", "LA", "P", "F"])
@pytest.mark.parametrize("kind", ["noise", "soft"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_preprocess_pil_mask(size, kind, mode):
    out = _check("preprocess", _pil_mask(*size, kind=kind, mode=mode))
    _assert_binary_mask(out, 1, size[1], size[0])


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_preprocess_pil_mask_list(size):
    masks = [_pil_mask(*size, seed=s) for s in range(3)]
    _assert_binary_mask(_check("preprocess", masks), 3, size[1], size[0])
    # A batch of masks of different sizes is resized to the first one's.
    _check("preprocess", [_pil_mask(100, 75), _pil_mask(64, 96, seed=1)])


@pytest.mark.parametrize(("height", "width"), [(64, 96), (96, 64), (61, 99), (512, 512)])
def test_preprocess_pil_mask_explicit_size(height, width):
    _check("preprocess", _pil_mask(100, 75, kind="soft"), height=height, width=width)


@pytest.mark.parametrize("resample", ["lanczos", "bicubic", "bilinear", "nearest"])
def test_preprocess_pil_mask_resample(resample):
    _check("preprocess", _pil_mask(100, 75), config={**MASK_CONFIG, "resample": resample})


@pytest.mark.parametrize(
    "config",
    [{"do_resize": False}, {"vae_scale_factor": 16}, {"reducing_gap": 2}, {"do_binarize": False}],
    ids=["no-resize", "factor-16", "reducing-gap", "no-binarize"],
)
def test_preprocess_pil_mask_config(config):
    _check("preprocess", _pil_mask(300, 200, kind="soft"), config={**MASK_CONFIG, **config})


@pytest.mark.parametrize("resize_mode", ["default", "fill", "crop"])
@pytest.mark.parametrize("pad", [0, 16])
def test_preprocess_pil_mask_crops_coords_and_resize_mode(resize_mode, pad):
    # As padding_mask_crop does: crop to the mask's region, resized ("fill") to the processing size.
    # Ref: diffusers pipeline_stable_diffusion_inpaint.py, __call__, step 4.
    mask = _pil_mask(100, 75, kind="box", seed=3)
    crops_coords = RefVaeImageProcessor.get_crop_region(mask, 64, 64, pad=pad)
    _check("preprocess", mask, height=64, width=64, crops_coords=crops_coords, resize_mode=resize_mode)
    _check("preprocess", [mask, _pil_mask(100, 75, seed=4)], height=48, width=80, crops_coords=crops_coords)


def test_preprocess_blurred_mask():
    # The tutorial's flow: blur the mask, then the pipeline binarises it again.
    mask = VaeImageProcessor.blur(_pil_mask(100, 75, kind="box"), blur_factor=9)
    _assert_binary_mask(_check("preprocess", mask), 1, 75, 100)


# -- preprocess: numpy and torch masks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(75, 100), (75, 100, 1), (3, 75, 100), (1, 75, 100, 1), (2, 75, 100, 1), (2, 75, 100, 3)],
    ids=["HW", "HW1", "NHW", "1HW1", "NHW1", "NHWC-rgb"],
)
@pytest.mark.parametrize("kind", ["noise", "soft"])
def test_preprocess_numpy_mask(shape, kind):
    _check("preprocess", _float_mask(shape, kind))


def test_preprocess_numpy_rgb_mask_is_refused_naming_it():
    # With do_convert_grayscale diffusers reads a 3-D array not ending in 1 as [N, H, W] and adds a channel: an RGB
    # [H, W, 3] mask becomes H masks 3 pixels wide, which round to 0 wide; diffusers then fails inside
    # F.interpolate (RuntimeError), we before it, naming the argument, as for any image.
    with pytest.raises(RuntimeError):
        RefVaeImageProcessor(**MASK_CONFIG).preprocess(_float_mask((75, 100, 3)))
    with pytest.raises(ValueError, match=r"`image` would be resized to 96 x 0 pixels"):
        VaeImageProcessor(**MASK_CONFIG).preprocess(_float_mask((75, 100, 3)))


@pytest.mark.parametrize(
    "shape",
    [(64, 96), (53, 37), (64, 96, 1), (53, 37, 1)],
    ids=["HW-aligned", "HW", "HW1-aligned", "HW1"],
)
def test_preprocess_numpy_mask_list(shape):
    _check("preprocess", [_float_mask(shape, seed=s) for s in range(3)])


def test_preprocess_numpy_mask_list_of_batches_warns():
    _check("preprocess", [_float_mask((2, 75, 100, 1), seed=s) for s in range(2)])


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.uint8, np.bool_])
def test_preprocess_numpy_mask_dtypes(dtype):
    _check("preprocess", _float_mask((75, 100)).astype(dtype))
    _check("preprocess", (_float_mask((2, 64, 96, 1)) * 255).astype(dtype))


@pytest.mark.parametrize(
    "shape",
    [(75, 100), (1, 75, 100), (3, 75, 100), (1, 1, 75, 100), (2, 1, 75, 100), (2, 3, 75, 100), (2, 1, 64, 96)],
    ids=["HW", "1HW", "NHW", "11HW", "N1HW", "NCHW-rgb", "N1HW-aligned"],
)
@pytest.mark.parametrize("kind", ["noise", "soft"])
def test_preprocess_torch_mask(shape, kind):
    _check("preprocess", torch.from_numpy(_float_mask(shape, kind)).float())


@pytest.mark.parametrize("shape", [(75, 100), (1, 75, 100), (1, 64, 96)], ids=["HW", "1HW", "1HW-aligned"])
def test_preprocess_torch_mask_list(shape):
    _check("preprocess", [torch.from_numpy(_float_mask(shape, seed=s)) for s in range(3)])


def test_preprocess_torch_mask_list_of_batches_warns():
    _check("preprocess", [torch.from_numpy(_float_mask((2, 1, 75, 100), seed=s)) for s in range(2)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.bool])
def test_preprocess_torch_mask_dtypes(dtype):
    _check("preprocess", torch.from_numpy(_float_mask((1, 75, 100))).to(dtype))


def test_preprocess_torch_mask_with_latent_channels_passes_through():
    # A 4-channel tensor is taken for latents, even by the mask processor: neither resized nor binarised.
    latents = torch.from_numpy(_float_mask((2, 4, 75, 100), "soft"))
    assert torch.equal(_check("preprocess", latents), latents)


@pytest.mark.parametrize(("height", "width"), [(40, 56), (61, 99)])
def test_preprocess_array_mask_explicit_size_nearest(height, width):
    # Arrays and tensors are resized by nearest F.interpolate, not by the PIL filter.
    _check("preprocess", _float_mask((75, 100), "soft"), height=height, width=width)
    _check("preprocess", torch.from_numpy(_float_mask((2, 75, 100), "soft")), height=height, width=width)


def test_preprocess_array_mask_ignores_crops_coords():
    _check("preprocess", _float_mask((75, 100)), crops_coords=(5, 3, 90, 70))
    _check("preprocess", torch.from_numpy(_float_mask((1, 75, 100))), crops_coords=(5, 3, 90, 70))


@pytest.mark.parametrize(
    "mask",
    [_float_mask((64, 96)), torch.from_numpy(_float_mask((1, 1, 64, 96)))],
    ids=["numpy", "torch"],
)
def test_preprocess_leaves_the_callers_mask_unchanged(mask):
    # Binarising is in place, but on a stacked copy: the caller's soft mask must survive.
    before = _copy(mask)
    for config in (MASK_CONFIG, {**MASK_CONFIG, "do_resize": False}):
        VaeImageProcessor(**config).preprocess(mask)
        assert (torch.equal if isinstance(mask, torch.Tensor) else np.array_equal)(mask, before)


def test_binarize_threshold_is_half_inclusive():
    levels = torch.arange(256, dtype=torch.float32) / 255.0
    out = VaeImageProcessor(**MASK_CONFIG).binarize(levels.clone())
    assert torch.equal(out, (torch.arange(256) >= 128).float())
    assert torch.equal(VaeImageProcessor(**MASK_CONFIG).binarize(torch.tensor([0.5, 0.4999])), torch.tensor([1.0, 0]))
    _check("binarize", levels)


# -- preprocess: bad masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "kwargs"),
    [
        ("mask.png", {}),
        (None, {}),
        (np.zeros((1, 1, 1, 8, 8), np.float32), {}),
        (torch.zeros(8), {}),
        ([PIL.Image.new("L", (16, 16)), np.zeros((16, 16), np.float32)], {}),
        ([torch.zeros(16, 16), np.zeros((16, 16), np.float32)], {}),
        ([np.zeros((16, 16), np.float32), np.zeros((8, 16), np.float32)], {}),
        ([torch.zeros(16, 16), torch.zeros(8, 16)], {}),
        (PIL.Image.new("L", (16, 16)), {"resize_mode": "stretch"}),
    ],
    ids=[
        "str",
        "None",
        "5d-array",
        "1d-tensor",
        "pil-then-array",
        "tensor-then-array",
        "arrays-of-two-sizes",
        "tensors-of-two-sizes",
        "unknown-resize-mode",
    ],
)
def test_preprocess_bad_mask_raises_as_diffusers(mask, kwargs):
    out = _check("preprocess", mask, **kwargs)
    assert isinstance(out, Exception)


def test_preprocess_what_diffusers_lets_through():
    # No error in diffusers, so none here: np.stack reads a PIL image in a list led by an array, and preprocess
    # resizes arrays and tensors with the default mode whatever resize_mode says.
    mask = _float_mask((16, 16))
    assert not isinstance(_check("preprocess", [mask, PIL.Image.new("L", (16, 16))]), Exception)
    assert not isinstance(_check("preprocess", mask, resize_mode="fill"), Exception)
    assert not isinstance(_check("preprocess", torch.from_numpy(mask)[None], resize_mode="crop"), Exception)


@pytest.mark.parametrize("resize_mode", ["fill", "crop"])
def test_resize_fill_and_crop_need_pil(resize_mode):
    with pytest.raises(ValueError, match=f"Only PIL image input is supported for resize_mode {resize_mode}"):
        VaeImageProcessor(**MASK_CONFIG).resize(_float_mask((1, 16, 16, 1)), 8, 8, resize_mode=resize_mode)
    _check("resize", _float_mask((1, 16, 16, 1)), 8, 8, resize_mode=resize_mode)
    _check("resize", torch.from_numpy(_float_mask((1, 1, 16, 16))), 8, 8, resize_mode=resize_mode)


# -- blur ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blur_factor", [0, 1, 2.5, 4, 33, (2, 7)])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_blur(mode, blur_factor):
    mask = _pil_mask(100, 75, kind="box", mode=mode)
    out = _check("blur", mask, blur_factor)
    assert out.size == mask.size and out.mode == mode
    assert blur_factor == 0 or not np.array_equal(np.asarray(out), np.asarray(mask))


def test_blur_default_factor_and_static():
    mask = _pil_mask(64, 64, kind="box")
    assert_same(VaeImageProcessor.blur(mask), RefVaeImageProcessor.blur(mask))
    assert_same(VaeImageProcessor.blur(mask), VaeImageProcessor.blur(mask, blur_factor=4))


# -- get_crop_region -------------------------------------------------------------------------------------------


def _one_pixel_mask(height, width, seed=0):
    mask = np.zeros((height, width), np.uint8)
    mask[_rng(seed).integers(0, height), _rng(seed + 1).integers(0, width)] = 1  # 1, not 255: any nonzero counts
    return mask


def _edge_mask(height, width, seed=0):
    """A box touching the right and bottom edges, so the grown region must slide back inside."""
    mask = np.zeros((height, width), np.uint8)
    mask[height * 2 // 3 :, width * 3 // 4 :] = 200
    return mask


def _corner_mask(height, width, seed=0):
    mask = np.zeros((height, width), np.uint8)
    mask[: height // 5, : width // 6] = 255
    return mask


CROP_MASKS = {
    "box": _box_mask,
    "box-2": lambda h, w, seed=0: _box_mask(h, w, seed + 7),
    "pixel": _one_pixel_mask,
    "edge": _edge_mask,
    "corner": _corner_mask,
    "full": lambda h, w, seed=0: np.full((h, w), 255, np.uint8),
    "sparse": lambda h, w, seed=0: np.where(_rng(seed).random((h, w)) < 0.002, 255, 0).astype(np.uint8),
}


@pytest.mark.parametrize("kind", list(CROP_MASKS))
@pytest.mark.parametrize("size", SIZES + [(512, 384)], ids=[f"{w}x{h}" for w, h in SIZES + [(512, 384)]])
def test_get_crop_region(size, kind):
    width, height = size
    mask = PIL.Image.fromarray(CROP_MASKS[kind](height, width), mode="L")
    for processing_width, processing_height in PROCESSING_SIZES:
        for pad in PADS:
            args = (mask, processing_width, processing_height, pad)
            ours, ref = VaeImageProcessor.get_crop_region(*args), RefVaeImageProcessor.get_crop_region(*args)
            assert ours == ref, (processing_width, processing_height, pad)
            assert all(type(v) is int for v in ours), (processing_width, processing_height, pad, ours)


def test_get_crop_region_of_a_box_is_the_padded_box():
    # Independent of diffusers: a 20 x 20 box processed square is itself, padded.
    mask = np.zeros((100, 100), np.uint8)
    mask[30:50, 20:40] = 255
    mask = PIL.Image.fromarray(mask)
    assert VaeImageProcessor.get_crop_region(mask, 512, 512) == (20, 30, 40, 50)
    assert VaeImageProcessor.get_crop_region(mask, 512, 512, pad=5) == (15, 25, 45, 55)
    # Processed at 2:1, the 20-pixel-high region widens to 40, about its centre.
    assert VaeImageProcessor.get_crop_region(mask, 1024, 512) == (10, 30, 50, 50)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "1", "F"])
def test_get_crop_region_mask_modes(mode):
    # Read as grayscale: an RGB pixel of (1, 0, 0) rounds to 0 in "L" and does not count.
    pixels = np.zeros((75, 100, 3), np.uint8)
    pixels[10:20, 30:60] = 255
    pixels[60:70, 5:10] = (1, 0, 0)
    mask = PIL.Image.fromarray(pixels, mode="RGB").convert(mode)
    _check("get_crop_region", mask, 64, 64, pad=4)


@pytest.mark.parametrize("pad", [0, 4, 32, 37, 37.5, 50, 100, 200])
@pytest.mark.parametrize(("width", "height"), [(64, 64), (100, 75)])
def test_get_crop_region_of_an_empty_mask(width, height, pad):
    # An all-black 100 x 75 mask gives diffusers' inverted box (x1 > x2), the whole image once the pad covers it,
    # or, where the pad truncates to a zero-height span (37.5 of 75), diffusers' ZeroDivisionError.
    out = _check("get_crop_region", PIL.Image.new("L", (100, 75)), width, height, pad=pad)
    assert isinstance(out, ZeroDivisionError) == (pad == 37.5)
    assert pad < 100 or out == (0, 0, 100, 75)


@pytest.mark.parametrize(
    "args",
    [
        (PIL.Image.new("L", (16, 16), 255), 64, 0),
        (PIL.Image.new("L", (16, 16), 255), None, 64),
        (np.full((16, 16), 255, np.uint8), 64, 64),
    ],
    ids=["zero-height", "no-width", "array-mask"],
)
def test_get_crop_region_bad_arguments_raise_as_diffusers(args):
    assert isinstance(_check("get_crop_region", *args), Exception)


# -- apply_overlay ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["box", "noise", "soft", "blurred"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_apply_overlay_without_crop(size, kind):
    if kind == "blurred":
        mask = RefVaeImageProcessor.blur(_pil_mask(*size, kind="box"), 4)
    else:
        mask = _pil_mask(*size, kind=kind)
    _check("apply_overlay", mask, _pil_rgb(*size), _pil_rgb(*size, seed=1))


@pytest.mark.parametrize("init_mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("mask_mode", ["L", "RGB", "1"])
def test_apply_overlay_modes(init_mode, mask_mode):
    mask = _pil_mask(100, 75, kind="soft", mode=mask_mode)
    init = _pil_rgb(100, 75).convert(init_mode)
    if init_mode == "RGBA":
        init.putalpha(PIL.Image.fromarray(_soft_mask(75, 100, seed=9)))
    _check("apply_overlay", mask, init, _pil_rgb(100, 75, seed=1).convert(init_mode))


@pytest.mark.parametrize("pad", [0, 8, 32])
@pytest.mark.parametrize("processing", [(64, 64), (96, 64), (64, 96)], ids=["64x64", "96x64", "64x96"])
@pytest.mark.parametrize("size", [(100, 75), (256, 192)], ids=["100x75", "256x192"])
@pytest.mark.parametrize("resample", ["lanczos", "nearest"])
def test_apply_overlay_with_crop(resample, size, processing, pad):
    # padding_mask_crop's paste-back: the inpainted crop, at the processing size, goes back into its box.
    # Ref: diffusers pipeline_stable_diffusion_inpaint.py, __call__, the last step.
    mask = RefVaeImageProcessor.blur(_pil_mask(*size, kind="box", seed=5), 3)
    crop_coords = RefVaeImageProcessor.get_crop_region(mask, *processing, pad=pad)
    generated, config = _pil_rgb(*processing, seed=2), {**MASK_CONFIG, "resample": resample}
    _check("apply_overlay", mask, _pil_rgb(*size), generated, crop_coords, config=config)


def test_apply_overlay_keeps_the_image_outside_a_binary_mask():
    # Independent of diffusers: with a 0/255 mask the result is the init image outside it and the generated inside.
    mask = _box_mask(75, 100, seed=1)
    init, generated = _pil_rgb(100, 75), _pil_rgb(100, 75, seed=1)
    out = np.asarray(VaeImageProcessor().apply_overlay(PIL.Image.fromarray(mask), init, generated))
    inside = mask == 255
    assert np.array_equal(out[inside], np.asarray(generated)[inside])
    assert np.array_equal(out[~inside], np.asarray(init)[~inside])


def test_apply_overlay_with_crop_fills_the_box_only():
    mask = np.zeros((75, 100), np.uint8)
    mask[20:40, 30:50] = 255
    out = VaeImageProcessor().apply_overlay(
        PIL.Image.fromarray(mask), _pil_rgb(100, 75), PIL.Image.new("RGB", (64, 64), (10, 200, 30)), (30, 20, 50, 40)
    )
    assert np.all(np.asarray(out)[20:40, 30:50] == (10, 200, 30))
    assert np.array_equal(np.asarray(out)[mask == 0], np.asarray(_pil_rgb(100, 75))[mask == 0])


def test_apply_overlay_mismatched_sizes_as_diffusers():
    # A mask of another size than the init image cannot be pasted through; a generated image of another size is
    # composited where they overlap (Pillow's alpha_composite), with no error in diffusers either.
    small, large = (64, 64), (100, 75)
    assert isinstance(_check("apply_overlay", _pil_mask(*small), _pil_rgb(*large), _pil_rgb(*large)), Exception)
    assert isinstance(_check("apply_overlay", _pil_mask(*large), _pil_rgb(*large), _pil_rgb(*small)), PIL.Image.Image)
    assert isinstance(_check("apply_overlay", _pil_mask(*small), _pil_rgb(*small), _pil_rgb(*large)), PIL.Image.Image)


def test_padding_mask_crop_round_trip():
    # The whole padding_mask_crop flow on one mask: region, cropped and filled mask, then the paste-back.
    mask = VaeImageProcessor.blur(_pil_mask(256, 192, kind="box", seed=11), 4)
    init = _pil_rgb(256, 192)
    crops_coords = VaeImageProcessor.get_crop_region(mask, 64, 64, pad=16)
    assert crops_coords == RefVaeImageProcessor.get_crop_region(mask, 64, 64, pad=16)
    _check("preprocess", mask, height=64, width=64, crops_coords=crops_coords, resize_mode="fill")
    _check("preprocess", init, height=64, width=64, crops_coords=crops_coords, resize_mode="fill", config={})
    _check("apply_overlay", mask, init, _pil_rgb(64, 64, seed=3), crops_coords, config={})

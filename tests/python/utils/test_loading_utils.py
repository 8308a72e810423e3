"""load_image and the PIL helpers against diffusers.utils; URLs only ever point at this machine."""

import functools
import http.server
import threading

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.utils import load_image as ref_load_image
from diffusers.utils import make_image_grid as ref_make_image_grid
from diffusers.utils import pil_utils as ref_pil_utils
from native_diffusers.utils import load_image, make_image_grid, pil_utils

UNREACHABLE_URL = "http://127.0.0.1:9/x.png"  # the discard port: refused at once, nothing leaves the machine


def _pil(width, height, mode="RGB", seed=0):
    bands = 1 if mode == "L" else len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, bands), dtype=np.uint8)
    return PIL.Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode=mode)


def _assert_same_image(ours, ref):
    assert isinstance(ours, PIL.Image.Image)
    assert (ours.mode, ours.size) == (ref.mode, ref.size)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    # urllib honours http_proxy; a proxy must not stand between the tests and their loopback server.
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def image_server(tmp_path):
    """Serves ``tmp_path`` over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- load_image ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "suffix"), [("RGB", ".png"), ("RGBA", ".png"), ("L", ".png"), ("RGB", ".jpg")])
def test_load_image_from_file(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    _pil(100, 75, mode=mode).save(path)
    ours = load_image(str(path))
    assert ours.mode == "RGB"
    _assert_same_image(ours, ref_load_image(str(path)))


def test_load_image_from_pathlib(tmp_path):
    # diffusers takes only str; a Path to the same file must load the same pixels.
    path = tmp_path / "image.png"
    _pil(20, 10).save(path)
    _assert_same_image(load_image(path), ref_load_image(str(path)))


def test_load_image_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.png"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    _pil(40, 20).save(path, exif=exif)
    ours = load_image(str(path))
    assert ours.size == (20, 40)
    _assert_same_image(ours, ref_load_image(str(path)))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_load_image_from_pil(mode):
    image = _pil(33, 17, mode="RGB").convert(mode)
    _assert_same_image(load_image(image), ref_load_image(image))


def test_load_image_convert_method(tmp_path):
    path = tmp_path / "image.png"
    _pil(30, 20, mode="RGBA").save(path)

    def to_grayscale(image):
        return image.convert("L")

    ours = load_image(str(path), convert_method=to_grayscale)
    assert ours.mode == "L"
    _assert_same_image(ours, ref_load_image(str(path), convert_method=to_grayscale))


def test_load_image_from_url(tmp_path, image_server):
    _pil(64, 48, mode="RGBA").save(tmp_path / "served.png")
    ours = load_image(f"{image_server}/served.png")
    _assert_same_image(ours, ref_load_image(str(tmp_path / "served.png")))


def test_load_image_url_not_found_names_url(image_server):
    url = f"{image_server}/missing.png"
    with pytest.raises(OSError, match=f"{url}.*404"):
        load_image(url)


def test_load_image_unreachable_url_names_url():
    with pytest.raises(OSError, match=UNREACHABLE_URL):
        load_image(UNREACHABLE_URL)


def test_load_image_missing_path_matches_diffusers(tmp_path):
    path = str(tmp_path / "nope.png")
    with pytest.raises(ValueError) as ours:
        load_image(path)
    with pytest.raises(ValueError) as ref:
        ref_load_image(path)
    assert str(ours.value) == str(ref.value)
    assert "Incorrect path or URL" in str(ours.value)


@pytest.mark.parametrize("image", [None, 3, np.zeros((8, 8, 3), np.uint8), torch.zeros(3, 8, 8), b"x.png"])
def test_load_image_bad_type_matches_diffusers(image):
    with pytest.raises(ValueError) as ours:
        load_image(image)
    with pytest.raises(ValueError) as ref:
        ref_load_image(image)
    assert str(ours.value) == str(ref.value)


def test_load_image_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(PIL.UnidentifiedImageError):
        load_image(str(path))


# -- pil_utils -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 3), (3, 2)])
@pytest.mark.parametrize("resize", [None, 32])
def test_make_image_grid_matches_diffusers(rows, cols, resize):
    images = [_pil(40, 30, mode=("RGB", "RGBA", "L")[i % 3], seed=i) for i in range(rows * cols)]
    grid = make_image_grid(images, rows, cols, resize=resize)
    _assert_same_image(grid, ref_make_image_grid(images, rows, cols, resize=resize))
    width, height = (resize, resize) if resize else (40, 30)
    assert grid.size == (cols * width, rows * height)


def test_make_image_grid_count_must_match():
    with pytest.raises(AssertionError):
        make_image_grid([_pil(8, 8)] * 3, rows=2, cols=2)


@pytest.mark.parametrize("shape", [(30, 40, 3), (2, 30, 40, 3), (2, 30, 40, 1), (30, 40, 4)])
def test_numpy_to_pil_matches_diffusers(shape):
    images = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    ours, ref = pil_utils.numpy_to_pil(images), ref_pil_utils.numpy_to_pil(images)
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        _assert_same_image(o, r)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pt_to_pil_matches_diffusers(dtype):
    images = torch.empty(2, 3, 16, 24).uniform_(-1.2, 1.2, generator=torch.Generator().manual_seed(0)).to(dtype)
    ours, ref = pil_utils.pt_to_pil(images), ref_pil_utils.pt_to_pil(images)
    for o, r in zip(ours, ref):
        _assert_same_image(o, r)


def test_resample_names_match_diffusers():
    assert pil_utils.PIL_INTERPOLATION == ref_pil_utils.PIL_INTERPOLATION

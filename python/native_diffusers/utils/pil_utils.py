"""PIL helpers as diffusers' ``utils/pil_utils.py`` exposes them: resample names, array <-> PIL, image grids."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

# Ref: diffusers utils/pil_utils.py, PIL_INTERPOLATION (Pillow >= 9.1 spells filters as Image.Resampling).
PIL_INTERPOLATION = {
    "linear": PIL.Image.Resampling.BILINEAR,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "lanczos": PIL.Image.Resampling.LANCZOS,
    "nearest": PIL.Image.Resampling.NEAREST,
}


def numpy_to_pil(images: np.ndarray) -> list[PIL.Image.Image]:
    """Converts an image ``[H, W, C]`` or a batch ``[N, H, W, C]`` in [0, 1] to a list of PIL images."""
    if images.ndim == 3:
        images = images[None, ...]
    images = (images * 255).round().astype("uint8")
    if images.shape[-1] == 1:
        # One channel is grayscale ("L"). diffusers squeezes here, which also drops a height or width of 1 and
        # transposes such an image; indexing the channel keeps every other image identical and those ones right.
        return [PIL.Image.fromarray(image[..., 0]) for image in images]
    return [PIL.Image.fromarray(image) for image in images]


def pt_to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """Converts a batch ``[N, C, H, W]`` in [-1, 1] to a list of PIL images."""
    images = (images / 2 + 0.5).clamp(0, 1)
    images = images.cpu().permute(0, 2, 3, 1).float().numpy()
    return numpy_to_pil(images)


def make_image_grid(images: list[PIL.Image.Image], rows: int, cols: int, resize: int | None = None) -> PIL.Image.Image:
    """Pastes ``rows * cols`` images, row by row, into one RGB grid; ``resize`` makes each a square first."""
    # An assert, not a ValueError, because diffusers' make_image_grid asserts.
    assert len(images) == rows * cols

    if resize is not None:
        images = [img.resize((resize, resize)) for img in images]

    w, h = images[0].size
    grid = PIL.Image.new("RGB", size=(cols * w, rows * h))
    for i, img in enumerate(images):
        grid.paste(img, box=(i % cols * w, i // cols * h))
    return grid

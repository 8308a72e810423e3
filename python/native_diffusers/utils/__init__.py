"""Helpers diffusers exposes from ``diffusers.utils``."""

from .loading_utils import load_image
from .pil_utils import make_image_grid, numpy_to_pil, pt_to_pil

__all__ = ["load_image", "make_image_grid", "numpy_to_pil", "pt_to_pil"]

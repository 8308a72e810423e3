"""Helpers diffusers exposes from ``diffusers.utils``."""

from .hub_utils import load_pickle_state_dict, resolve_model_path
from .loading_utils import load_image
from .pil_utils import make_image_grid, numpy_to_pil, pt_to_pil

__all__ = [
    "load_image",
    "load_pickle_state_dict",
    "make_image_grid",
    "numpy_to_pil",
    "pt_to_pil",
    "resolve_model_path",
]

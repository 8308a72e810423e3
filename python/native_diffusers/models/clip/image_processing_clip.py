"""transformers' ``CLIPImageProcessor`` as diffusers' pipelines get it here: without torchvision,
transformers 5 falls back to its PIL backend (``CLIPImageProcessorPil``), so this mirrors that one
(models/clip/image_processing_pil_clip.py and image_transforms.py): resize the shortest edge with
PIL (bicubic by default), center crop, rescale by 1/255, normalize with the CLIP mean and std, all
in numpy float32 in the same order, so pixel values match it exactly."""

import json
import math
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np
import PIL.Image
import torch

from ...configuration_utils import read_config_file
from ...image_processor import check_image_not_empty

IMAGE_PROCESSOR_NAME = "preprocessor_config.json"
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class BatchFeature(dict):
    """transformers' ``BatchFeature``: a dict of model inputs with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'BatchFeature' object has no attribute '{name}'") from None

    def to(self, *args, **kwargs) -> "BatchFeature":
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                self[key] = value.to(*args, **kwargs)
        return self


def _size_dict(size, default_to_square: bool, name: str) -> Dict[str, int]:
    # Ref: transformers get_size_dict: an int is the shortest edge (or a square), a dict is kept.
    if isinstance(size, int) and not isinstance(size, bool):
        return {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": int(size[0]), "width": int(size[1])}
    if isinstance(size, dict):
        keys = set(size)
        if keys in ({"shortest_edge"}, {"height", "width"}):
            return {k: int(v) for k, v in size.items()}
    raise ValueError(f"`{name}` must be an int or a dict with 'shortest_edge' or 'height' and 'width', got {size!r}")


def _to_channels_first(image: np.ndarray) -> np.ndarray:
    # Ref: transformers infer_channel_dimension_format (channels 1 or 3; first wins when ambiguous).
    if image.ndim == 2:
        return image[None]
    if image.ndim != 3:
        raise ValueError(f"an image must have 2 or 3 dimensions, got shape {tuple(image.shape)}")
    if image.shape[0] in (1, 3):
        return image
    if image.shape[-1] in (1, 3):
        return np.transpose(image, (2, 0, 1))
    raise ValueError(f"Unable to infer channel dimension format of an image of shape {tuple(image.shape)}")


def _needs_rescale_for_pil(image: np.ndarray) -> bool:
    # Ref: transformers image_transforms._rescale_for_pil_conversion.
    if image.dtype == np.uint8:
        return False
    if np.allclose(image, image.astype(int)):
        if np.all(image >= 0) and np.all(image <= 255):
            return False
        raise ValueError(
            "The image to be converted to a PIL image contains values outside the range [0, 255], "
            f"got [{image.min()}, {image.max()}] which cannot be converted to uint8."
        )
    if np.all(image >= 0) and np.all(image <= 1):
        return True
    raise ValueError(
        "The image to be converted to a PIL image contains values outside the range [0, 1], "
        f"got [{image.min()}, {image.max()}] which cannot be converted to uint8."
    )


def _rescale(image: np.ndarray, scale: float) -> np.ndarray:
    # Ref: transformers image_transforms.rescale: upcast to float64, scale, back to float32.
    return (image.astype(np.float64) * scale).astype(np.float32)


class CLIPImageProcessor:
    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: Optional[Union[int, Dict[str, int]]] = None,
        resample: int = PIL.Image.BICUBIC,
        do_center_crop: bool = True,
        crop_size: Optional[Union[int, Dict[str, int]]] = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Optional[Union[float, List[float]]] = None,
        image_std: Optional[Union[float, List[float]]] = None,
        do_convert_rgb: bool = True,
        **kwargs,
    ):
        if kwargs.pop("use_square_size", False):  # Ref: CLIPImageProcessorPil.__init__
            edge = size["shortest_edge"] if isinstance(size, dict) else (size or 224)
            size = {"height": edge, "width": edge}
        self.do_resize = do_resize
        self.size = _size_dict(224 if size is None else size, default_to_square=False, name="size")
        self.resample = int(resample)
        self.do_center_crop = do_center_crop
        self.crop_size = _size_dict(224 if crop_size is None else crop_size, default_to_square=True, name="crop_size")
        self.do_rescale = do_rescale
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = do_normalize
        self.image_mean = list(OPENAI_CLIP_MEAN if image_mean is None else image_mean)
        self.image_std = list(OPENAI_CLIP_STD if image_std is None else image_std)
        self.do_convert_rgb = do_convert_rgb
        # Keys transformers writes that change nothing here (image_processor_type, processor_class, ...).
        self._extra = {k: v for k, v in kwargs.items() if not k.startswith("_")}

    # ---- files ----
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: Optional[str] = None, **kwargs):
        from ...utils.hub_utils import resolve_model_path

        hub_kwargs = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "local_files_only", "token") if k in kwargs}
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isfile(path):
            config_file = path
        else:
            folder = resolve_model_path(path, subfolder=subfolder, **hub_kwargs)
            config_file = os.path.join(folder, IMAGE_PROCESSOR_NAME)
        config = read_config_file(config_file)
        config.update(kwargs)
        return cls(**config)

    def to_dict(self) -> Dict[str, Any]:
        return {
            **self._extra,
            "crop_size": dict(self.crop_size),
            "do_center_crop": self.do_center_crop,
            "do_convert_rgb": self.do_convert_rgb,
            "do_normalize": self.do_normalize,
            "do_rescale": self.do_rescale,
            "do_resize": self.do_resize,
            "image_mean": self.image_mean,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": self.image_std,
            "resample": self.resample,
            "rescale_factor": self.rescale_factor,
            "size": dict(self.size),
        }

    def save_pretrained(self, save_directory, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, IMAGE_PROCESSOR_NAME), "w", encoding="utf-8") as f:
            f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def __repr__(self) -> str:
        return f"CLIPImageProcessor {json.dumps(self.to_dict(), indent=2, sort_keys=True)}"

    # ---- the transforms, in transformers' order ----
    def resize(self, image: np.ndarray, size: Dict[str, int], resample: int) -> np.ndarray:
        """Ref: transformers PilBackend.resize + image_transforms.resize (through PIL)."""
        height, width = image.shape[-2:]
        if "shortest_edge" in size:
            # Ref: get_resize_output_image_size(default_to_square=False).
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
            new_height, new_width = (new_long, new_short) if width <= height else (new_short, new_long)
        else:
            new_height, new_width = size["height"], size["width"]
        rescale = _needs_rescale_for_pil(image)
        hwc = np.transpose(image, (1, 2, 0))
        if hwc.shape[-1] == 1:
            hwc = hwc[..., 0]
        if rescale:
            hwc = _rescale(hwc, 255)
        pil = PIL.Image.fromarray(hwc.astype(np.uint8))
        resized = np.array(pil.resize((new_width, new_height), resample=resample))
        if resized.ndim == 2:
            resized = resized[..., None]
        resized = np.transpose(resized, (2, 0, 1))
        return _rescale(resized, 1 / 255) if rescale else resized

    @staticmethod
    def center_crop(image: np.ndarray, size: Dict[str, int]) -> np.ndarray:
        """Ref: transformers image_transforms.center_crop (zero-pads an image smaller than the crop)."""
        if "height" not in size or "width" not in size:
            raise ValueError(f"The size dictionary must have keys 'height' and 'width'. Got {size.keys()}")
        orig_height, orig_width = image.shape[-2:]
        crop_height, crop_width = int(size["height"]), int(size["width"])
        top = (orig_height - crop_height) // 2
        left = (orig_width - crop_width) // 2
        bottom, right = top + crop_height, left + crop_width
        if top >= 0 and bottom <= orig_height and left >= 0 and right <= orig_width:
            return image[..., top:bottom, left:right]
        new_height, new_width = max(crop_height, orig_height), max(crop_width, orig_width)
        padded = np.zeros_like(image, shape=image.shape[:-2] + (new_height, new_width))
        top_pad = math.ceil((new_height - orig_height) / 2)
        left_pad = math.ceil((new_width - orig_width) / 2)
        padded[..., top_pad : top_pad + orig_height, left_pad : left_pad + orig_width] = image
        top, bottom, left, right = top + top_pad, bottom + top_pad, left + left_pad, right + left_pad
        return padded[..., max(0, top) : min(new_height, bottom), max(0, left) : min(new_width, right)]

    @staticmethod
    def normalize(image: np.ndarray, mean, std) -> np.ndarray:
        """Ref: transformers image_transforms.normalize, channels first, in the image's float dtype."""
        if not np.issubdtype(image.dtype, np.floating):
            image = image.astype(np.float32)
        channels = image.shape[0]
        mean = list(mean) if isinstance(mean, (list, tuple)) else [mean] * channels
        std = list(std) if isinstance(std, (list, tuple)) else [std] * channels
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"image_mean and image_std must have {channels} elements, got {len(mean)} and {len(std)}")
        mean, std = np.array(mean, dtype=image.dtype), np.array(std, dtype=image.dtype)
        return ((image.T - mean) / std).T

    def _to_array(self, image, do_convert_rgb: bool) -> np.ndarray:
        if isinstance(image, PIL.Image.Image):
            if do_convert_rgb and image.mode != "RGB":
                image = image.convert("RGB")
            return _to_channels_first(np.array(image))
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if isinstance(image, np.ndarray):
            return _to_channels_first(image)
        raise ValueError(
            f"Invalid image type {type(image).__name__}. Must be of type PIL.Image.Image, numpy.ndarray or "
            "torch.Tensor."
        )

    def preprocess(
        self,
        images,
        do_resize: Optional[bool] = None,
        size=None,
        resample: Optional[int] = None,
        do_center_crop: Optional[bool] = None,
        crop_size=None,
        do_rescale: Optional[bool] = None,
        rescale_factor: Optional[float] = None,
        do_normalize: Optional[bool] = None,
        image_mean=None,
        image_std=None,
        do_convert_rgb: Optional[bool] = None,
        return_tensors: Optional[str] = None,
        **kwargs,
    ) -> BatchFeature:
        pick = lambda value, default: default if value is None else value  # noqa: E731
        do_resize, do_center_crop = pick(do_resize, self.do_resize), pick(do_center_crop, self.do_center_crop)
        do_rescale, do_normalize = pick(do_rescale, self.do_rescale), pick(do_normalize, self.do_normalize)
        do_convert_rgb = pick(do_convert_rgb, self.do_convert_rgb)
        size = _size_dict(size, False, "size") if size is not None else self.size
        crop_size = _size_dict(crop_size, True, "crop_size") if crop_size is not None else self.crop_size
        resample = int(pick(resample, self.resample))
        rescale_factor = pick(rescale_factor, self.rescale_factor)
        image_mean, image_std = pick(image_mean, self.image_mean), pick(image_std, self.image_std)
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'pt', 'np' or None")

        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            batch = list(images)
        if not batch:
            raise ValueError("No images were given to the CLIPImageProcessor")
        processed = []
        for image in batch:
            check_image_not_empty(image, "images")
            image = self._to_array(image, do_convert_rgb)
            if do_resize:
                image = self.resize(image, size, resample)
            if do_center_crop:
                image = self.center_crop(image, crop_size)
            if do_rescale:
                image = _rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image)
        if return_tensors == "pt":
            return BatchFeature(pixel_values=torch.from_numpy(np.stack(processed)))
        if return_tensors == "np":
            return BatchFeature(pixel_values=np.stack(processed))
        return BatchFeature(pixel_values=processed)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)


__all__ = ["BatchFeature", "CLIPImageProcessor"]

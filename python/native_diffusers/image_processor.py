"""Mirrors diffusers' ``VaeImageProcessor`` (image_processor.py): images in and out of the VAE's [-1, 1] tensors.

Pure Python on PIL, numpy and torch, so that preprocessing and postprocessing give diffusers' exact bits."""

from __future__ import annotations

import inspect
import warnings
from typing import Union

import numpy as np
import PIL.Image
import PIL.ImageFilter
import PIL.ImageOps
import torch
import torch.nn.functional as F

from .configuration_utils import FrozenDict
from .utils import pil_utils
from .utils.pil_utils import PIL_INTERPOLATION

# typing.Union rather than "|": this alias is evaluated at import time and the package supports Python 3.9.
PipelineImageInput = Union[
    PIL.Image.Image, np.ndarray, torch.Tensor, list[PIL.Image.Image], list[np.ndarray], list[torch.Tensor]
]


def is_valid_image(image) -> bool:
    """A PIL image, or a 2D (grayscale) / 3D array or tensor."""
    return isinstance(image, PIL.Image.Image) or isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim in (2, 3)


def is_valid_image_imagelist(images) -> bool:
    """A 4D batch, a single valid image, or a list of valid images."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return True
    if is_valid_image(images):
        return True
    if isinstance(images, list):
        return all(is_valid_image(image) for image in images)
    return False


def check_image_not_empty(image, name: str = "image"):
    """Refuses an image with no pixels (0 x 0, 0 x N, an empty batch or list) before any work, naming the argument:
    it cannot be resized or encoded, and diffusers fails inside the resize with a message that names neither."""
    if isinstance(image, list):
        if not image:
            raise ValueError(f"`{name}` is an empty list; pass at least one image.")
        for item in image:
            check_image_not_empty(item, name)
    elif isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"`{name}` is an empty PIL image of {image.width} x {image.height} (width x height).")
    elif isinstance(image, (np.ndarray, torch.Tensor)) and 0 in tuple(image.shape):
        raise ValueError(f"`{name}` is empty: it has shape {tuple(image.shape)}.")


def _check_resized_size(height: int, width: int, factor: int):
    # An image smaller than the VAE's scale factor rounds down to 0 pixels, as does a height or width of 0 or less;
    # said here rather than as an error from inside the resize.
    if height <= 0 or width <= 0:
        raise ValueError(
            f"`image` would be resized to {height} x {width} pixels (height x width); both must be positive, and an"
            f" image smaller than the VAE's scale factor ({factor}) rounds down to 0."
        )


def _masked_span(has_mask: np.ndarray, pad) -> tuple[int, int]:
    """``[start, end)`` of the rows or columns where ``has_mask`` is set, grown by ``pad`` each way and clipped to
    ``[0, len(has_mask)]``. With nothing set, diffusers counts every line as leading and trailing blank, so the span
    comes out inverted (``start > end``); it is kept as diffusers returns it.
    Ref: diffusers image_processor.py, VaeImageProcessor.get_crop_region, steps 1 and 2."""
    length = has_mask.shape[0]
    hits = np.flatnonzero(has_mask)
    blank_before = int(hits[0]) if hits.size else length
    blank_after = length - 1 - int(hits[-1]) if hits.size else length
    return int(max(blank_before - pad, 0)), int(min(length - blank_after + pad, length))


def _grow_span(start: int, end: int, desired: float, limit: int) -> tuple[int, int]:
    """Grows ``[start, end)`` about its centre to ``desired`` (truncated), slides it back inside ``[0, limit]``
    past either edge, and clips it there only if it is longer than ``limit``.
    Ref: diffusers image_processor.py, VaeImageProcessor.get_crop_region, step 3."""
    grow = int(desired - (end - start))
    start -= grow // 2
    end += grow - grow // 2
    if end >= limit:
        start, end = start - (end - limit), limit
    if start < 0:
        start, end = 0, end - start
    return start, min(end, limit)


class VaeImageProcessor:
    """Resizes images to multiples of ``vae_scale_factor`` and maps them to and from [-1, 1] tensors ``[N, C, H, W]``.

    Arguments and defaults are diffusers'; they are readable as ``processor.config.<name>``.
    """

    config_name = "config.json"

    def __init__(
        self,
        do_resize: bool = True,
        vae_scale_factor: int = 8,
        vae_latent_channels: int = 4,
        resample: str = "lanczos",
        reducing_gap: int | None = None,
        do_normalize: bool = True,
        do_binarize: bool = False,
        do_convert_rgb: bool = False,
        do_convert_grayscale: bool = False,
    ):
        if do_convert_rgb and do_convert_grayscale:
            raise ValueError(
                "`do_convert_rgb` and `do_convert_grayscale` can not both be set to `True`,"
                " if you intended to convert the image into RGB format, please set `do_convert_grayscale = False`."
                " if you intended to convert the image into grayscale format, please set `do_convert_rgb = False`"
            )
        self._internal_dict = FrozenDict(
            do_resize=do_resize,
            vae_scale_factor=vae_scale_factor,
            vae_latent_channels=vae_latent_channels,
            resample=resample,
            reducing_gap=reducing_gap,
            do_normalize=do_normalize,
            do_binarize=do_binarize,
            do_convert_rgb=do_convert_rgb,
            do_convert_grayscale=do_convert_grayscale,
        )

    @property
    def config(self) -> FrozenDict:
        return self._internal_dict

    @classmethod
    def from_config(cls, config, **kwargs) -> VaeImageProcessor:
        """Builds a processor from a config mapping; keyword arguments override it."""
        names = inspect.signature(cls.__init__).parameters
        # Keys such as diffusers' "_use_default_values" or "_class_name" are bookkeeping, not arguments.
        return cls(**{k: v for k, v in {**dict(config), **kwargs}.items() if k in names})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config.items())})"

    # -- conversions between PIL, numpy [N, H, W, C] and torch [N, C, H, W] ---------------------------------------

    @staticmethod
    def numpy_to_pil(images: np.ndarray) -> list[PIL.Image.Image]:
        """An image or batch in [0, 1], channels last, to a list of PIL images."""
        return pil_utils.numpy_to_pil(images)

    @staticmethod
    def pil_to_numpy(images: list[PIL.Image.Image] | PIL.Image.Image) -> np.ndarray:
        """PIL image(s) to a float32 batch in [0, 1], channels last (no channel axis for one-band images)."""
        if not isinstance(images, list):
            images = [images]
        return np.stack([np.array(image).astype(np.float32) / 255.0 for image in images], axis=0)

    @staticmethod
    def numpy_to_pt(images: np.ndarray) -> torch.Tensor:
        """``[N, H, W, C]`` (or ``[N, H, W]``) numpy to a ``[N, C, H, W]`` tensor sharing its memory."""
        if images.ndim == 3:
            images = images[..., None]
        return torch.from_numpy(images.transpose(0, 3, 1, 2))

    @staticmethod
    def pt_to_numpy(images: torch.Tensor) -> np.ndarray:
        """``[N, C, H, W]`` tensor to float32 ``[N, H, W, C]`` numpy on the CPU."""
        return images.cpu().permute(0, 2, 3, 1).float().numpy()

    @staticmethod
    def normalize(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[0, 1] -> [-1, 1]."""
        return 2.0 * images - 1.0

    @staticmethod
    def denormalize(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[-1, 1] -> [0, 1], clamped."""
        return (images * 0.5 + 0.5).clamp(0, 1)

    @staticmethod
    def convert_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
        return image.convert("RGB")

    @staticmethod
    def convert_to_grayscale(image: PIL.Image.Image) -> PIL.Image.Image:
        return image.convert("L")

    @staticmethod
    def blur(image: PIL.Image.Image, blur_factor: int = 4) -> PIL.Image.Image:
        """Gaussian blur of radius ``blur_factor``: softens a mask's edge so the inpainted area blends in. The mask
        processor binarises it again for denoising; ``apply_overlay`` pastes back through the soft one.
        Ref: diffusers image_processor.py, VaeImageProcessor.blur."""
        return image.filter(PIL.ImageFilter.GaussianBlur(blur_factor))

    def binarize(self, image: torch.Tensor) -> torch.Tensor:
        """Sets values below 0.5 to 0 and the rest to 1, in place (a mask; diffusers calls it on the tensor)."""
        image[image < 0.5] = 0
        image[image >= 0.5] = 1
        return image

    # -- masks: the region ``padding_mask_crop`` inpaints, and pasting the result back --------------------------

    @staticmethod
    def get_crop_region(
        mask_image: PIL.Image.Image, width: int, height: int, pad: int = 0
    ) -> tuple[int, int, int, int]:
        """The box ``(x1, y1, x2, y2)`` around every nonzero pixel of ``mask_image`` (as grayscale), padded by ``pad``
        within the image, then grown in one direction to the processing aspect ratio ``width / height`` and moved
        back inside the image where it fits. A 128 x 32 mask region processed at 512 x 512 becomes 128 x 128.
        Ref: diffusers image_processor.py, VaeImageProcessor.get_crop_region."""
        mask = np.array(mask_image.convert("L"))
        mask_height, mask_width = mask.shape
        x1, x2 = _masked_span(mask.any(axis=0), pad)
        y1, y2 = _masked_span(mask.any(axis=1), pad)

        # Ratios computed as diffusers does, so float rounding (and a ZeroDivisionError on a zero-height span or
        # height) is the same.
        ratio_crop_region = (x2 - x1) / (y2 - y1)
        ratio_processing = width / height
        if ratio_crop_region > ratio_processing:
            y1, y2 = _grow_span(y1, y2, (x2 - x1) / ratio_processing, mask_height)
        else:
            x1, x2 = _grow_span(x1, x2, (y2 - y1) * ratio_processing, mask_width)
        return x1, y1, x2, y2

    def apply_overlay(
        self,
        mask: PIL.Image.Image,
        init_image: PIL.Image.Image,
        image: PIL.Image.Image,
        crop_coords: tuple[int, int, int, int] | None = None,
    ) -> PIL.Image.Image:
        """``init_image`` laid over the generated ``image`` outside ``mask``, as RGB. The mask is inverted but not
        binarised, so a blurred mask blends. With ``crop_coords`` (from ``get_crop_region``), ``image`` is the
        inpainted crop: it is resized ("crop" mode) to that box and placed there on a black canvas first.
        Ref: diffusers image_processor.py, VaeImageProcessor.apply_overlay."""
        width, height = init_image.width, init_image.height
        kept = self._outside_mask(init_image, mask)
        if crop_coords is not None:
            image = self._paste_into_canvas(image, crop_coords, width, height)
        image = image.convert("RGBA")
        image.alpha_composite(kept)
        return image.convert("RGB")

    @staticmethod
    def _outside_mask(init_image: PIL.Image.Image, mask: PIL.Image.Image) -> PIL.Image.Image:
        """``init_image`` as RGBA whose alpha is the inverted mask. Pasting through the mask into an empty
        premultiplied ("RGBa") canvas, then converting to RGBA, is diffusers' way, and fixes the rounding.
        Ref: diffusers image_processor.py, VaeImageProcessor.apply_overlay."""
        kept = PIL.Image.new("RGBa", (init_image.width, init_image.height))
        kept.paste(init_image.convert("RGBA").convert("RGBa"), mask=PIL.ImageOps.invert(mask.convert("L")))
        return kept.convert("RGBA")

    def _paste_into_canvas(
        self, image: PIL.Image.Image, crop_coords: tuple[int, int, int, int], width: int, height: int
    ) -> PIL.Image.Image:
        """``image`` resized to the box ``crop_coords`` and pasted there on a black RGB canvas of (width, height).
        Ref: diffusers image_processor.py, VaeImageProcessor.apply_overlay."""
        x1, y1, x2, y2 = crop_coords
        canvas = PIL.Image.new("RGBA", (width, height))
        canvas.paste(self.resize(image, height=y2 - y1, width=x2 - x1, resize_mode="crop"), (x1, y1))
        return canvas.convert("RGB")

    # -- resizing ------------------------------------------------------------------------------------------------

    def get_default_height_width(
        self,
        image: PIL.Image.Image | np.ndarray | torch.Tensor,
        height: int | None = None,
        width: int | None = None,
    ) -> tuple[int, int]:
        """The given or the image's (height, width), each rounded down to a multiple of ``vae_scale_factor``.

        Tensors are read as ``[N, C, H, W]``, arrays as ``[N, H, W(, C)]``.
        """
        if height is None:
            if isinstance(image, PIL.Image.Image):
                height = image.height
            elif isinstance(image, torch.Tensor):
                height = image.shape[2]
            else:
                height = image.shape[1]
        if width is None:
            if isinstance(image, PIL.Image.Image):
                width = image.width
            elif isinstance(image, torch.Tensor):
                width = image.shape[3]
            else:
                width = image.shape[2]

        factor = self.config.vae_scale_factor
        return height - height % factor, width - width % factor

    def _resize_and_fill(self, image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
        """Fits the image inside (width, height) keeping its aspect ratio, centres it, and fills the bands on either
        side by stretching the image's edge rows or columns. Ref: diffusers VaeImageProcessor._resize_and_fill."""
        ratio = width / height
        src_ratio = image.width / image.height
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width

        resized = image.resize((src_w, src_h), resample=PIL_INTERPOLATION[self.config.resample])
        res = PIL.Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))

        if ratio < src_ratio:
            fill_height = height // 2 - src_h // 2
            if fill_height > 0:
                # A zero-height box stretches the first (last) row over the band above (below).
                res.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
                res.paste(
                    resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                    box=(0, fill_height + src_h),
                )
        elif ratio > src_ratio:
            fill_width = width // 2 - src_w // 2
            if fill_width > 0:
                res.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
                res.paste(
                    resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                    box=(fill_width + src_w, 0),
                )
        return res

    def _resize_and_crop(self, image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
        """Covers (width, height) keeping the aspect ratio, centred, cropping the excess.
        Ref: diffusers VaeImageProcessor._resize_and_crop."""
        ratio = width / height
        src_ratio = image.width / image.height
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width

        resized = image.resize((src_w, src_h), resample=PIL_INTERPOLATION[self.config.resample])
        res = PIL.Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return res

    def resize(
        self,
        image: PIL.Image.Image | np.ndarray | torch.Tensor,
        height: int,
        width: int,
        resize_mode: str = "default",
    ) -> PIL.Image.Image | np.ndarray | torch.Tensor:
        """Resizes to (height, width): PIL with the configured filter; tensors ``[N, C, H, W]`` and arrays
        ``[N, H, W, C]`` with ``F.interpolate``'s default nearest mode, as diffusers does. ``resize_mode`` "fill" and
        "crop" keep the aspect ratio and take PIL images only."""
        if resize_mode != "default" and not isinstance(image, PIL.Image.Image):
            raise ValueError(f"Only PIL image input is supported for resize_mode {resize_mode}")
        if isinstance(image, PIL.Image.Image):
            if resize_mode == "default":
                return image.resize(
                    (width, height),
                    resample=PIL_INTERPOLATION[self.config.resample],
                    reducing_gap=self.config.reducing_gap,
                )
            if resize_mode == "fill":
                return self._resize_and_fill(image, width, height)
            if resize_mode == "crop":
                return self._resize_and_crop(image, width, height)
            raise ValueError(f"resize_mode {resize_mode} is not supported")
        if isinstance(image, torch.Tensor):
            return F.interpolate(image, size=(height, width))
        if isinstance(image, np.ndarray):
            return self.pt_to_numpy(F.interpolate(self.numpy_to_pt(image), size=(height, width)))
        return image

    # -- the pipeline entry points -------------------------------------------------------------------------------

    def preprocess(
        self,
        image: PipelineImageInput,
        height: int | None = None,
        width: int | None = None,
        resize_mode: str = "default",
        crops_coords: tuple[int, int, int, int] | None = None,
    ) -> torch.Tensor:
        """PIL images, arrays ``[(N,) H, W, C]`` or tensors ``[(N,) C, H, W]`` in [0, 1] (or lists of them) to a
        ``[N, C, H, W]`` tensor in [-1, 1]. Tensors with ``vae_latent_channels`` channels are latents and pass
        through untouched. Ref: diffusers VaeImageProcessor.preprocess."""
        supported_formats = (PIL.Image.Image, np.ndarray, torch.Tensor)
        check_image_not_empty(image)

        # A 3D grayscale input lacks a channel (or batch) axis; add it where diffusers does.
        if self.config.do_convert_grayscale and isinstance(image, (torch.Tensor, np.ndarray)) and image.ndim == 3:
            if isinstance(image, torch.Tensor):
                # [N, H, W] and [1, H, W] both become [N, 1, H, W].
                image = image.unsqueeze(1)
            elif image.shape[-1] == 1:
                image = np.expand_dims(image, axis=0)  # [H, W, 1] -> [1, H, W, 1]
            else:
                image = np.expand_dims(image, axis=-1)  # [N, H, W] -> [N, H, W, 1]

        if isinstance(image, list) and isinstance(image[0], np.ndarray) and image[0].ndim == 4:
            warnings.warn(
                "Passing `image` as a list of 4d np.ndarray is deprecated."
                "Please concatenate the list along the batch dimension and pass it as a single 4d np.ndarray",
                FutureWarning,
            )
            image = np.concatenate(image, axis=0)
        if isinstance(image, list) and isinstance(image[0], torch.Tensor) and image[0].ndim == 4:
            warnings.warn(
                "Passing `image` as a list of 4d torch.Tensor is deprecated."
                "Please concatenate the list along the batch dimension and pass it as a single 4d torch.Tensor",
                FutureWarning,
            )
            image = torch.cat(image, axis=0)

        if not is_valid_image_imagelist(image):
            raise ValueError(
                "Input is in incorrect format. Currently, we only support "
                + ", ".join(str(x) for x in supported_formats)
            )
        if not isinstance(image, list):
            image = [image]
        factor = self.config.vae_scale_factor

        if isinstance(image[0], PIL.Image.Image):
            if crops_coords is not None:
                image = [i.crop(crops_coords) for i in image]
            if self.config.do_resize:
                height, width = self.get_default_height_width(image[0], height, width)
                _check_resized_size(height, width, factor)
                image = [self.resize(i, height, width, resize_mode=resize_mode) for i in image]
            if self.config.do_convert_rgb:
                image = [self.convert_to_rgb(i) for i in image]
            elif self.config.do_convert_grayscale:
                image = [self.convert_to_grayscale(i) for i in image]
            image = self.numpy_to_pt(self.pil_to_numpy(image))

        elif isinstance(image[0], np.ndarray):
            image = np.concatenate(image, axis=0) if image[0].ndim == 4 else np.stack(image, axis=0)
            image = self.numpy_to_pt(image)
            height, width = self.get_default_height_width(image, height, width)
            if self.config.do_resize:
                _check_resized_size(height, width, factor)
                image = self.resize(image, height, width)

        elif isinstance(image[0], torch.Tensor):
            image = torch.cat(image, axis=0) if image[0].ndim == 4 else torch.stack(image, axis=0)
            if self.config.do_convert_grayscale and image.ndim == 3:
                image = image.unsqueeze(1)
            if image.shape[1] == self.config.vae_latent_channels:
                return image  # latents: nothing to preprocess
            height, width = self.get_default_height_width(image, height, width)
            if self.config.do_resize:
                _check_resized_size(height, width, factor)
                image = self.resize(image, height, width)

        # Expected range is [0, 1]; an input already in [-1, 1] is accepted with diffusers' deprecation warning and
        # is not normalised a second time.
        do_normalize = self.config.do_normalize
        if do_normalize and image.min() < 0:
            warnings.warn(
                "Passing `image` as torch tensor with value range in [-1,1] is deprecated. The expected value range "
                "for image tensor is [0,1] when passing as pytorch tensor or numpy Array. You passed `image` with "
                f"value range [{image.min()},{image.max()}]",
                FutureWarning,
            )
            do_normalize = False
        if do_normalize:
            image = self.normalize(image)

        if self.config.do_binarize:
            image = self.binarize(image)

        return image

    def _denormalize_conditionally(self, images: torch.Tensor, do_denormalize: list[bool] | None = None):
        """Denormalises every image per the config, or image ``i`` only where ``do_denormalize[i]``."""
        if do_denormalize is None:
            return self.denormalize(images) if self.config.do_normalize else images
        return torch.stack(
            [self.denormalize(images[i]) if do_denormalize[i] else images[i] for i in range(images.shape[0])]
        )

    def postprocess(
        self,
        image: torch.Tensor,
        output_type: str = "pil",
        do_denormalize: list[bool] | None = None,
    ) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
        """A ``[N, C, H, W]`` tensor in [-1, 1] to ``output_type``: "pil" (list of images), "np" (``[N, H, W, C]`` in
        [0, 1]), "pt" (``[N, C, H, W]`` in [0, 1]) or "latent" (unchanged).
        Ref: diffusers VaeImageProcessor.postprocess."""
        if not isinstance(image, torch.Tensor):
            raise ValueError(  # noqa: TRY004  (diffusers raises ValueError here; callers catch that)
                f"Input for postprocessing is in incorrect format: {type(image)}. We only support pytorch tensor"
            )
        if output_type not in ["latent", "pt", "np", "pil"]:
            # diffusers deprecates unknown output types (deprecate(..., standard_warn=False)) and falls back to "np".
            warnings.warn(
                f"the output_type {output_type} is outdated and has been set to `np`. Please make sure to set it to"
                " one of these instead: `pil`, `np`, `pt`, `latent`",
                FutureWarning,
                stacklevel=2,
            )
            output_type = "np"

        if output_type == "latent":
            return image

        image = self._denormalize_conditionally(image, do_denormalize)
        if output_type == "pt":
            return image

        image = self.pt_to_numpy(image)
        if output_type == "np":
            return image
        return self.numpy_to_pil(image)

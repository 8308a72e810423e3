"""diffusers' ``KandinskyV22InpaintPipeline`` on the native engine. Python checks the arguments
(with diffusers' messages) and converts the image and the mask (diffusers'
``prepare_mask_and_masked_image``: binarised, inverted to a keep-mask); the MoVQ encode, the mask at
latent size and its erosion, the denoising loop with its blend and the decode run in the C++ engine."""

from typing import Callable, List, Optional, Union

import numpy as np
import PIL.Image
import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from .pipeline_kandinsky2_2_img2img import KandinskyV22Img2ImgPipeline


def prepare_mask_and_masked_image(image, mask, height, width):
    """Ref: diffusers kandinsky prepare_mask_and_masked_image (the same conversions, checks and
    messages): the image as a float32 [B, 3, H, W] tensor in [-1, 1] (PIL images resized to
    width x height, bicubic; numpy and tensor images as they are), the mask binarised at 0.5 (PIL
    masks resized, Lanczos, in luminance; numpy and tensor masks as they are) and inverted, so that
    1 keeps the image. Unlike diffusers, a tensor mask given is not binarised in place."""
    if image is None:
        raise ValueError("`image` input cannot be undefined.")

    if mask is None:
        raise ValueError("`mask_image` input cannot be undefined.")

    if isinstance(image, torch.Tensor):
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"`image` is a torch.Tensor but `mask` (type: {type(mask)} is not")

        # diffusers' asserts, raised whatever python's -O says.
        if image.ndim == 3:
            if image.shape[0] != 3:
                raise AssertionError("Image outside a batch should be of shape (3, H, W)")
            image = image.unsqueeze(0)
        if mask.ndim == 2:
            mask = mask.unsqueeze(0).unsqueeze(0)
        if mask.ndim == 3:
            # A single batched mask without channel, or a single mask with its channel: [1, H, W];
            # else a batch of masks without channel.
            mask = mask.unsqueeze(0) if mask.shape[0] == 1 else mask.unsqueeze(1)
        if not (image.ndim == 4 and mask.ndim == 4):
            raise AssertionError("Image and Mask must have 4 dimensions")
        if image.shape[-2:] != mask.shape[-2:]:
            raise AssertionError("Image and Mask must have the same spatial dimensions")
        if image.shape[0] != mask.shape[0]:
            raise AssertionError("Image and Mask must have the same batch size")

        if image.min() < -1 or image.max() > 1:
            raise ValueError("Image should be in [-1, 1] range")
        if mask.min() < 0 or mask.max() > 1:
            raise ValueError("Mask should be in [0, 1] range")

        mask = mask.clone()
        mask[mask < 0.5] = 0
        mask[mask >= 0.5] = 1
        image = image.to(dtype=torch.float32)
    elif isinstance(mask, torch.Tensor):
        raise TypeError(f"`mask` is a torch.Tensor but `image` (type: {type(image)} is not")
    else:
        if isinstance(image, (PIL.Image.Image, np.ndarray)):
            image = [image]
        if isinstance(image, list) and image and isinstance(image[0], PIL.Image.Image):
            image = [i.resize((width, height), resample=PIL.Image.BICUBIC, reducing_gap=1) for i in image]
            image = [np.array(i.convert("RGB"))[None, :] for i in image]
            image = np.concatenate(image, axis=0)
        elif isinstance(image, list) and image and isinstance(image[0], np.ndarray):
            image = np.concatenate([i[None, :] for i in image], axis=0)
        if not isinstance(image, np.ndarray) or image.ndim != 4:
            # diffusers fails here on image.transpose with an AttributeError or a ValueError.
            raise TypeError(
                "`image` has to be a PIL image, a [H, W, 3] numpy array, a [3, H, W] or [B, 3, H, W] torch.Tensor, "
                f"or a list of PIL images or numpy arrays, but is {type(image).__name__}"
            )
        image = image.transpose(0, 3, 1, 2)
        image = torch.from_numpy(image).to(dtype=torch.float32) / 127.5 - 1.0

        if isinstance(mask, (PIL.Image.Image, np.ndarray)):
            mask = [mask]
        if isinstance(mask, list) and mask and isinstance(mask[0], PIL.Image.Image):
            mask = [i.resize((width, height), resample=PIL.Image.LANCZOS) for i in mask]
            mask = np.concatenate([np.array(m.convert("L"))[None, None, :] for m in mask], axis=0)
            mask = mask.astype(np.float32) / 255.0
        elif isinstance(mask, list) and mask and isinstance(mask[0], np.ndarray):
            mask = np.concatenate([m[None, None, :] for m in mask], axis=0)
        if not isinstance(mask, np.ndarray):
            raise TypeError(
                "`mask_image` has to be a PIL image, a [H, W] numpy array, a torch.Tensor, or a list of PIL images "
                f"or numpy arrays, but is {type(mask).__name__}"
            )
        mask[mask < 0.5] = 0
        mask[mask >= 0.5] = 1
        mask = torch.from_numpy(mask)

    mask = 1 - mask

    return mask, image


class KandinskyV22InpaintPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "unet->movq"
    _callback_tensor_inputs = ["latents", "image_embeds", "negative_image_embeds", "masked_image", "mask_image"]

    def __init__(self, unet, scheduler, movq):
        super().__init__(unet=unet, scheduler=scheduler, movq=movq)
        # Ref: diffusers __init__: the MoVQ's scale factor.
        self.movq_scale_factor = 2 ** (len(movq.config.block_out_channels) - 1) if movq is not None else 8

    _engine_class = _C.KandinskyV22InpaintPipeline
    _engine_component_names = ("unet", "scheduler", "movq")

    def _engine_components(self):
        return self.unet._engine, self.scheduler._engine, self.movq._engine

    _embeds = staticmethod(KandinskyV22Img2ImgPipeline._embeds)

    @staticmethod
    def _downscale_height_and_width(height, width, scale_factor=8):
        # Ref: diffusers downscale_height_and_width.
        new_height = height // scale_factor**2 + (1 if height % scale_factor**2 != 0 else 0)
        new_width = width // scale_factor**2 + (1 if width % scale_factor**2 != 0 else 0)
        return new_height * scale_factor, new_width * scale_factor

    @torch.no_grad()
    def __call__(
        self,
        image_embeds: Union[torch.Tensor, List[torch.Tensor]],
        image: Union[torch.Tensor, PIL.Image.Image],
        mask_image: Union[torch.Tensor, PIL.Image.Image, np.ndarray],
        negative_image_embeds: Union[torch.Tensor, List[torch.Tensor]],
        height: int = 512,
        width: int = 512,
        num_inference_steps: int = 100,
        guidance_scale: float = 4.0,
        num_images_per_prompt: int = 1,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[[int, int], None]] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        if kwargs.pop("callback", None) is not None or kwargs.pop("callback_steps", None) is not None:
            raise NotImplementedError(
                "the deprecated `callback`/`callback_steps` are not supported; use callback_on_step_end"
            )
        if kwargs:
            raise TypeError(f"__call__() got unexpected keyword arguments {sorted(kwargs)}")
        # Ref: diffusers __call__ (same messages where diffusers has them).
        self._check_callback_tensor_inputs(callback_on_step_end_tensor_inputs)
        # diffusers checks the output type after the loop, with this message.
        if output_type not in ("pt", "np", "pil", "latent"):
            raise ValueError(
                f"Only the output types `pt`, `pil`, `np` and `latent` are supported not output_type={output_type}"
            )
        self._check_step_counts(num_inference_steps, num_images_per_prompt)
        self._check_finite(guidance_scale=guidance_scale)
        # PIL images are resized to height x width (any size); the latents are made for it.
        self._check_height_width(height, width, divisible_by_8=False)
        self._guidance_scale = guidance_scale

        image_embeds = self._embeds(image_embeds, "image_embeds")
        if image_embeds is None:
            raise ValueError("`image_embeds` input cannot be undefined.")
        batch_size = image_embeds.shape[0] * num_images_per_prompt
        negative_image_embeds = self._embeds(negative_image_embeds, "negative_image_embeds")
        if self.do_classifier_free_guidance and negative_image_embeds is None:
            raise ValueError("`negative_image_embeds` input cannot be undefined with guidance_scale > 1.")
        generators = self._generators_for_batch(generator, batch_size)
        if latents is not None:
            self._check_latents(latents)
            latent_height, latent_width = self._downscale_height_and_width(
                int(height), int(width), self.movq_scale_factor)
            shape = (batch_size, self.movq.config.latent_channels, latent_height, latent_width)
            if latents.shape != shape:
                raise ValueError(f"Unexpected latents shape, got {latents.shape}, expected {shape}")

        # preprocess image and mask
        mask_image, image = prepare_mask_and_masked_image(image, mask_image, int(height), int(width))

        r = _C.KandinskyV22InpaintRequest()
        r.image_embeds = image_embeds
        if negative_image_embeds is not None:
            r.negative_image_embeds = negative_image_embeds
        r.image = image
        r.mask_image = mask_image
        if latents is not None:
            r.latents = latents
        r.height = int(height)
        r.width = int(width)
        r.num_inference_steps = int(num_inference_steps)
        r.guidance_scale = float(guidance_scale)
        r.num_images_per_prompt = int(num_images_per_prompt)
        r.generators = generators
        r.output_latents = output_type == "latent"
        self._fill_loop_options(r, callback_on_step_end, callback_on_step_end_tensor_inputs)
        image = self._take_result(self._run_engine(r))
        # Ref: diffusers post-processing: "pt" is the MoVQ's output as it is, in [-1, 1].
        if output_type in ("np", "pil"):
            image = (image * 0.5 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        if output_type == "pil":
            image = VaeImageProcessor.numpy_to_pil(image)
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)

"""diffusers' ``StableDiffusionInpaintPipeline`` on the native engine, for 9-channel inpainting UNets
and ordinary 4-channel ones. Python checks the arguments (with diffusers' messages) and converts the
image and the mask; encoding, the denoising loop, the mask blend and the decode run in the C++
engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import PIL.Image
import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline
from .pipeline_stable_diffusion import StableDiffusionBase, StableDiffusionPipelineOutput


class StableDiffusionInpaintPipeline(StableDiffusionBase, DiffusionPipeline):
    _engine_class = _C.StableDiffusionInpaintPipeline
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "mask", "masked_image_latents"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, safety_checker=None, feature_extractor=None,
                 image_encoder=None, requires_safety_checker: bool = True):
        super().__init__(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        # Ref: diffusers: grayscale, binarised at 0.5, not normalised to [-1, 1].
        self.mask_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False,
                                                do_binarize=True, do_convert_grayscale=True)

    def check_inputs(self, prompt, image, mask_image, height, width, strength, callback_steps, output_type,
                     negative_prompt=None, prompt_embeds=None, negative_prompt_embeds=None,
                     callback_on_step_end_tensor_inputs=None, padding_mask_crop=None):
        # Ref: diffusers StableDiffusionInpaintPipeline.check_inputs (same messages, same order).
        self._check_strength(strength)
        self._check_height_width(height, width)
        self._check_prompt_inputs(prompt, callback_steps, negative_prompt, prompt_embeds, negative_prompt_embeds,
                                  callback_on_step_end_tensor_inputs)
        self._check_mask_crop_inputs(image, mask_image, output_type, padding_mask_crop)

    @staticmethod
    def _check_mask_crop_inputs(image, mask_image, output_type, padding_mask_crop):
        # Ref: diffusers check_inputs: the crop is found on, and pasted back onto, PIL images.
        if padding_mask_crop is None:
            return
        if not isinstance(image, PIL.Image.Image):
            raise ValueError(
                f"The image should be a PIL image when inpainting mask crop, but is of type {type(image)}."
            )
        if not isinstance(mask_image, PIL.Image.Image):
            raise ValueError(
                f"The mask image should be a PIL image when inpainting mask crop, but is of type {type(mask_image)}."
            )
        if output_type != "pil":
            raise ValueError(f"The output type should be PIL when inpainting mask crop, but is {output_type}.")

    def _run_inpainting(self, r, image, mask_image, masked_image_latents, height, width, padding_mask_crop,
                        output_type):
        """The image and the mask preprocessed into request ``r``, the engine run, and its images
        postprocessed. With padding_mask_crop both are cut to the mask's region (grown by the padding to
        the output's aspect ratio), resized to fill it, and the result is pasted back with the overlay."""
        crops_coords, resize_mode = None, "default"
        if padding_mask_crop is not None:
            crops_coords = self.mask_processor.get_crop_region(mask_image, width, height, pad=padding_mask_crop)
            resize_mode = "fill"
        r.image = self.image_processor.preprocess(image, height=height, width=width, crops_coords=crops_coords,
                                                  resize_mode=resize_mode).to(dtype=torch.float32)
        r.mask_image = self.mask_processor.preprocess(mask_image, height=height, width=width,
                                                      resize_mode=resize_mode, crops_coords=crops_coords)
        if masked_image_latents is not None:
            r.masked_image_latents = masked_image_latents
        images = self._postprocess(self._run_engine(r), output_type)
        if padding_mask_crop is not None:
            images = [self.image_processor.apply_overlay(mask_image, image, i, crops_coords) for i in images]
        return images

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        image: Any = None,
        mask_image: Any = None,
        masked_image_latents: Optional[torch.Tensor] = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        padding_mask_crop: Optional[int] = None,
        strength: float = 1.0,
        num_inference_steps: int = 50,
        timesteps: List[int] = None,
        sigmas: List[float] = None,
        guidance_scale: float = 7.5,
        negative_prompt: Optional[Union[str, List[str]]] = None,
        num_images_per_prompt: Optional[int] = 1,
        eta: float = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: Optional[List[torch.Tensor]] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: Optional[Dict[str, Any]] = None,
        clip_skip: int = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        self._check_unsupported_call_arguments(ip_adapter_image, ip_adapter_image_embeds, cross_attention_kwargs,
                                               kwargs)
        callback_steps = None

        # 0. Default height and width to unet (not to the image, unlike image-to-image)
        sample_size = self.unet.config.get("sample_size", 64)
        height = height or sample_size * self.vae_scale_factor
        width = width or sample_size * self.vae_scale_factor

        # 1. Check inputs
        self.check_inputs(prompt, image, mask_image, height, width, strength, callback_steps, output_type,
                          negative_prompt, prompt_embeds, negative_prompt_embeds,
                          callback_on_step_end_tensor_inputs, padding_mask_crop)
        if image is None:
            raise ValueError("`image` input cannot be undefined.")
        if mask_image is None:
            raise ValueError("`mask_image` input cannot be undefined.")
        self._guidance_scale = guidance_scale
        self._clip_skip = clip_skip

        # 2. Define call parameters
        r = self._request(
            _C.StableDiffusionInpaintRequest, prompt=prompt, negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip,
            num_inference_steps=num_inference_steps, timesteps=timesteps, sigmas=sigmas, guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, latents=latents,
            output_type=output_type, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        r.strength = float(strength)
        r.height, r.width = int(height), int(width)

        # 5. Preprocess mask and image; 4., 6.-11. timesteps, latents, mask latents, the denoising loop
        # and the decode, in the engine
        images = self._run_inpainting(r, image, mask_image, masked_image_latents, height, width,
                                      padding_mask_crop, output_type)
        if not return_dict:
            return (images, None)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)

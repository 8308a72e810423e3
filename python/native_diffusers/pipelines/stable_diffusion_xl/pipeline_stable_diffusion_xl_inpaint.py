"""diffusers' ``StableDiffusionXLInpaintPipeline`` on the native engine, for 9-channel SDXL inpainting
UNets and ordinary 4-channel ones (the base or the refiner, which AutoPipelineForInpainting loads as
this pipeline). Python checks the arguments (with diffusers' messages) and converts the image and
the mask; encoding, the loop, the mask blend and the decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..stable_diffusion.pipeline_stable_diffusion_inpaint import StableDiffusionInpaintPipeline
from .pipeline_stable_diffusion_xl_img2img import StableDiffusionXLImg2ImgPipeline


class StableDiffusionXLInpaintPipeline(StableDiffusionXLImg2ImgPipeline):
    _engine_class = _C.StableDiffusionXLInpaintPipeline
    _callback_tensor_inputs = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids", "mask",
                               "masked_image_latents"]

    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, scheduler,
                 image_encoder=None, feature_extractor=None, requires_aesthetics_score: bool = False,
                 force_zeros_for_empty_prompt: bool = True, add_watermarker: Optional[bool] = None):
        super().__init__(vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, scheduler, image_encoder,
                         feature_extractor, requires_aesthetics_score, force_zeros_for_empty_prompt, add_watermarker)
        # Ref: diffusers: grayscale, binarised at 0.5, not normalised to [-1, 1].
        self.mask_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False,
                                                do_binarize=True, do_convert_grayscale=True)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        prompt_2: Optional[Union[str, List[str]]] = None,
        image: Any = None,
        mask_image: Any = None,
        masked_image_latents: Optional[torch.Tensor] = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        padding_mask_crop: Optional[int] = None,
        strength: float = 0.9999,
        num_inference_steps: int = 50,
        timesteps: List[int] = None,
        sigmas: List[float] = None,
        denoising_start: Optional[float] = None,
        denoising_end: Optional[float] = None,
        guidance_scale: float = 7.5,
        negative_prompt: Optional[Union[str, List[str]]] = None,
        negative_prompt_2: Optional[Union[str, List[str]]] = None,
        num_images_per_prompt: Optional[int] = 1,
        eta: float = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        pooled_prompt_embeds: Optional[torch.Tensor] = None,
        negative_pooled_prompt_embeds: Optional[torch.Tensor] = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: Optional[List[torch.Tensor]] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: Optional[Dict[str, Any]] = None,
        guidance_rescale: float = 0.0,
        original_size: Tuple[int, int] = None,
        crops_coords_top_left: Tuple[int, int] = (0, 0),
        target_size: Tuple[int, int] = None,
        negative_original_size: Optional[Tuple[int, int]] = None,
        negative_crops_coords_top_left: Tuple[int, int] = (0, 0),
        negative_target_size: Optional[Tuple[int, int]] = None,
        aesthetic_score: float = 6.0,
        negative_aesthetic_score: float = 2.5,
        clip_skip: Optional[int] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        self._check_unsupported_call_arguments(ip_adapter_image, ip_adapter_image_embeds, cross_attention_kwargs,
                                               kwargs)
        # 0. Default height and width to unet
        sample_size = self.unet.config.get("sample_size", 128)
        height = height or sample_size * self.vae_scale_factor
        width = width or sample_size * self.vae_scale_factor

        # 1. Check inputs (Ref: diffusers StableDiffusionXLInpaintPipeline.check_inputs, same order)
        self._check_strength(strength)
        self._check_height_width(height, width)
        self._check_prompts(prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                            negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
                            callback_on_step_end_tensor_inputs)
        StableDiffusionInpaintPipeline._check_mask_crop_inputs(image, mask_image, output_type, padding_mask_crop)
        if image is None:
            raise ValueError("`image` input cannot be undefined.")
        if mask_image is None:
            raise ValueError("`mask_image` input cannot be undefined.")
        if (self._valid_denoising_value(denoising_end) and self._valid_denoising_value(denoising_start)
                and denoising_start >= denoising_end):
            raise ValueError(
                f"`denoising_start`: {denoising_start} cannot be larger than or equal to `denoising_end`: "
                + f" {denoising_end} when using type float."
            )
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._clip_skip = clip_skip
        self._denoising_end = denoising_end
        self._denoising_start = denoising_start

        # 2.-3. Define call parameters and the prompts the engine encodes
        r, batch_size = self._prompt_request(prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                                             negative_prompt_embeds, pooled_prompt_embeds,
                                             negative_pooled_prompt_embeds, clip_skip,
                                             request_class=_C.StableDiffusionXLInpaintRequest)
        self._fill_common(
            r, num_inference_steps=num_inference_steps, timesteps=timesteps, sigmas=sigmas,
            denoising_end=denoising_end, guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, latents=latents,
            original_size=original_size, crops_coords_top_left=crops_coords_top_left, target_size=target_size,
            negative_original_size=negative_original_size,
            negative_crops_coords_top_left=negative_crops_coords_top_left,
            negative_target_size=negative_target_size, output_type=output_type,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, batch_size=batch_size,
        )
        r.height, r.width = int(height), int(width)
        r.strength = float(strength)
        if self._valid_denoising_value(denoising_start):
            r.denoising_start = float(denoising_start)
        # Ref: diffusers adds noise only when denoising_start is None, valid or not.
        r.add_noise = denoising_start is None
        self._check_finite(aesthetic_score=aesthetic_score, negative_aesthetic_score=negative_aesthetic_score)
        r.aesthetic_score = float(aesthetic_score)
        r.negative_aesthetic_score = float(negative_aesthetic_score)

        # 5. Preprocess mask and image; 4., 6.-11. timesteps, latents, mask latents, added conditions,
        # the loop and the decode
        images = StableDiffusionInpaintPipeline._run_inpainting(self, r, image, mask_image, masked_image_latents,
                                                                height, width, padding_mask_crop, output_type)
        return self._finish_images(images, return_dict)

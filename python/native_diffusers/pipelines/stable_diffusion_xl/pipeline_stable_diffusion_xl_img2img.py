"""diffusers' ``StableDiffusionXLImg2ImgPipeline`` on the native engine: SDXL base or refiner from
an image, or from the base's latents with ``denoising_start`` (the guide's base->refiner chain)."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from ... import _C
from ..pipeline_utils import DiffusionPipeline
from .pipeline_stable_diffusion_xl import StableDiffusionXLMixin


class StableDiffusionXLImg2ImgPipeline(StableDiffusionXLMixin, DiffusionPipeline):
    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, scheduler,
                 image_encoder=None, feature_extractor=None, requires_aesthetics_score: bool = False,
                 force_zeros_for_empty_prompt: bool = True, add_watermarker: Optional[bool] = None):
        super().__init__(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                         tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, image_encoder=None,
                         feature_extractor=None)
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self.register_to_config(requires_aesthetics_score=requires_aesthetics_score)
        self._init_sdxl(vae)

    _engine_class = _C.StableDiffusionXLImg2ImgPipeline

    def _engine_components(self):
        return (*super()._engine_components(), bool(self.config.get("requires_aesthetics_score", False)))

    @property
    def denoising_start(self):
        return self._denoising_start

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        prompt_2: Optional[Union[str, List[str]]] = None,
        image: Any = None,
        strength: float = 0.3,
        num_inference_steps: int = 50,
        timesteps: List[int] = None,
        sigmas: List[float] = None,
        denoising_start: Optional[float] = None,
        denoising_end: Optional[float] = None,
        guidance_scale: float = 5.0,
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
        # 1. Check inputs (Ref: diffusers StableDiffusionXLImg2ImgPipeline.check_inputs)
        self._check_strength(strength)
        if num_inference_steps is None:
            raise ValueError("`num_inference_steps` cannot be None.")
        elif not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise ValueError(
                f"`num_inference_steps` has to be a positive integer but is {num_inference_steps} of type"
                f" {type(num_inference_steps)}."
            )
        self._check_prompts(prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                            negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
                            callback_on_step_end_tensor_inputs)
        if image is None:
            raise ValueError("`image` input cannot be undefined.")
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
                                             negative_pooled_prompt_embeds, clip_skip)
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
        # 4. Preprocess image (PIL's Lanczos resize, [-1, 1]; 4-channel latents pass through)
        r.image = self.image_processor.preprocess(image)
        r.strength = float(strength)
        if self._valid_denoising_value(denoising_start):
            r.denoising_start = float(denoising_start)
        # Ref: diffusers adds noise only when denoising_start is None, valid or not.
        r.add_noise = denoising_start is None
        self._check_finite(aesthetic_score=aesthetic_score, negative_aesthetic_score=negative_aesthetic_score)
        r.aesthetic_score = float(aesthetic_score)
        r.negative_aesthetic_score = float(negative_aesthetic_score)

        # 5.-10. timesteps, latents, added conditions, the loop and the decode
        result = self._run_engine(r)
        return self._finish(result, output_type, return_dict)

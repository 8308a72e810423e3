"""diffusers' ``StableDiffusionImg2ImgPipeline`` on the native engine. Python checks the
arguments (with diffusers' messages) and converts images; encoding, the denoising loop and the
decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ... import _C
from ..pipeline_utils import DiffusionPipeline
from .pipeline_stable_diffusion import StableDiffusionBase


class StableDiffusionImg2ImgPipeline(StableDiffusionBase, DiffusionPipeline):
    _engine_class = _C.StableDiffusionImg2ImgPipeline

    def check_inputs(self, prompt, strength, callback_steps, negative_prompt=None, prompt_embeds=None,
                     negative_prompt_embeds=None, callback_on_step_end_tensor_inputs=None):
        # Ref: diffusers StableDiffusionImg2ImgPipeline.check_inputs (same messages).
        self._check_strength(strength)
        self._check_prompt_inputs(prompt, callback_steps, negative_prompt, prompt_embeds, negative_prompt_embeds,
                                  callback_on_step_end_tensor_inputs)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        image: Any = None,
        strength: float = 0.8,
        num_inference_steps: Optional[int] = 50,
        timesteps: List[int] = None,
        sigmas: List[float] = None,
        guidance_scale: Optional[float] = 7.5,
        negative_prompt: Optional[Union[str, List[str]]] = None,
        num_images_per_prompt: Optional[int] = 1,
        eta: Optional[float] = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
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

        # 1. Check inputs
        self.check_inputs(prompt, strength, callback_steps, negative_prompt, prompt_embeds, negative_prompt_embeds,
                          callback_on_step_end_tensor_inputs)
        if image is None:
            raise ValueError("`image` input cannot be undefined.")
        self._guidance_scale = guidance_scale
        self._clip_skip = clip_skip

        # 2. Define call parameters
        r = self._request(
            _C.StableDiffusionImg2ImgRequest, prompt=prompt, negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip,
            num_inference_steps=num_inference_steps, timesteps=timesteps, sigmas=sigmas, guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, output_type=output_type,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )

        # 4. Preprocess image (PIL's Lanczos resize, [-1, 1]) as diffusers' VaeImageProcessor does
        r.image = self.image_processor.preprocess(image)
        r.strength = float(strength)

        # 5.-9. timesteps, latents, the denoising loop and the decode, in the engine
        return self._finish(self._run_engine(r), output_type, return_dict)

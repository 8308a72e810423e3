"""diffusers' ``StableDiffusionControlNetImg2ImgPipeline`` (SD 1.x/2.x image-to-image with one
ControlNet) on the native engine. Python checks the arguments (with diffusers' messages) and
preprocesses both images; encoding, the denoising loop with the ControlNet at every step, and the
decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ... import _C
from ..pipeline_utils import DiffusionPipeline
from .pipeline_controlnet import ControlNetMixin


class StableDiffusionControlNetImg2ImgPipeline(ControlNetMixin, DiffusionPipeline):
    _engine_class = _C.StableDiffusionControlNetImg2ImgPipeline
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "control_image"]

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        image: Any = None,
        control_image: Any = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        strength: float = 0.8,
        num_inference_steps: int = 50,
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
        controlnet_conditioning_scale: Union[float, List[float]] = 0.8,
        guess_mode: bool = False,
        control_guidance_start: Union[float, List[float]] = 0.0,
        control_guidance_end: Union[float, List[float]] = 1.0,
        clip_skip: Optional[int] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        self._check_unsupported_call_arguments(ip_adapter_image, ip_adapter_image_embeds, cross_attention_kwargs,
                                               kwargs)

        # 1.-2. Check inputs, define call parameters
        r = self._controlnet_request(
            _C.StableDiffusionControlNetImg2ImgRequest, control_image=control_image, height=height, width=width,
            controlnet_conditioning_scale=controlnet_conditioning_scale, guess_mode=guess_mode,
            control_guidance_start=control_guidance_start, control_guidance_end=control_guidance_end,
            prompt=prompt, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            clip_skip=clip_skip, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, latents=latents,
            output_type=output_type, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        self._check_strength(strength)
        if image is None:
            raise ValueError("`image` input cannot be undefined.")

        # 4. Prepare image (PIL's Lanczos resize, [-1, 1]); 5. the control image ([0, 1])
        r.image = self.image_processor.preprocess(image, height=height, width=width).to(torch.float32)
        r.strength = float(strength)
        r.control_image = self.control_image_processor.preprocess(control_image, height=height, width=width).to(
            torch.float32
        )

        # 5.-9. timesteps, latents, the denoising loop with the ControlNet, and the decode, in the engine
        return self._finish(self._run_engine(r), output_type, return_dict)

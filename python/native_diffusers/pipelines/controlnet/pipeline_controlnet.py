"""diffusers' ``StableDiffusionControlNetPipeline`` (SD 1.x/2.x text-to-image with one ControlNet) on
the native engine, and what the ControlNet image-to-image pipeline shares with it. Python checks the
arguments (with diffusers' messages) and preprocesses the control image; encoding, the denoising
loop with the ControlNet at every step, and the decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import PIL.Image
import torch

from ... import _C
from ...image_processor import VaeImageProcessor, check_image_not_empty
from ..pipeline_utils import DiffusionPipeline
from ..stable_diffusion.pipeline_stable_diffusion import StableDiffusionBase


class ControlNetMixin(StableDiffusionBase):
    """The components, checks and control-image preparation of diffusers' SD ControlNet pipelines."""

    def __init__(self, vae, text_encoder, tokenizer, unet, controlnet, scheduler, safety_checker=None,
                 feature_extractor=None, image_encoder=None, requires_safety_checker: bool = True):
        if isinstance(controlnet, (list, tuple)):
            raise NotImplementedError("several ControlNets (MultiControlNetModel) are not supported yet by "
                                      "native_diffusers; pass one ControlNetModel")
        if controlnet is None:
            raise ValueError(f"{type(self).__name__} needs a `controlnet` (a ControlNetModel); pass controlnet=...")
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.register_modules(controlnet=controlnet)
        # Ref: diffusers: images keep their RGB conversion; the control image is not normalized to [-1, 1].
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True)
        self.control_image_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )

    @classmethod
    def _expected_components(cls):
        return ["vae", "text_encoder", "tokenizer", "unet", "controlnet", "scheduler", "safety_checker",
                "feature_extractor", "image_encoder"]

    _engine_component_names = ("vae", "text_encoder", "tokenizer", "unet", "controlnet", "scheduler")

    def _engine_components(self):
        tokenizer, text_encoder, unet, vae, scheduler = super()._engine_components()
        return (tokenizer, text_encoder, unet, self.controlnet._engine, vae, scheduler)

    @staticmethod
    def _check_image(image, prompt, prompt_embeds):
        # Ref: diffusers StableDiffusionControlNetPipeline.check_image (same messages).
        image_is_pil = isinstance(image, PIL.Image.Image)
        image_is_list = isinstance(image, list) and len(image) > 0
        if not (
            image_is_pil
            or isinstance(image, (torch.Tensor, np.ndarray))
            or (image_is_list and isinstance(image[0], (PIL.Image.Image, torch.Tensor, np.ndarray)))
        ):
            raise TypeError(
                "image must be passed and be one of PIL image, numpy array, torch tensor, list of PIL images, list of"
                f" numpy arrays or list of torch tensors, but is {type(image)}"
            )
        check_image_not_empty(image)  # before its batch size is read: an empty array has "batch size" 0
        image_batch_size = 1 if image_is_pil else len(image)
        if prompt is not None and isinstance(prompt, str):
            prompt_batch_size = 1
        elif prompt is not None and isinstance(prompt, list):
            prompt_batch_size = len(prompt)
        else:
            prompt_batch_size = prompt_embeds.shape[0]
        if image_batch_size != 1 and image_batch_size != prompt_batch_size:
            raise ValueError(
                "If image batch size is not 1, image batch size must be same as prompt batch size. image batch size:"
                f" {image_batch_size}, prompt batch size: {prompt_batch_size}"
            )

    def _check_controlnet_inputs(self, prompt, image, prompt_embeds, controlnet_conditioning_scale,
                                 control_guidance_start, control_guidance_end):
        """Ref: diffusers check_inputs of the SD ControlNet pipelines, the ControlNet part (same messages)."""
        self._check_image(image, prompt, prompt_embeds)
        if not isinstance(controlnet_conditioning_scale, float):
            raise TypeError("For single controlnet: `controlnet_conditioning_scale` must be type `float`.")
        self._check_finite(controlnet_conditioning_scale=controlnet_conditioning_scale)
        starts = control_guidance_start if isinstance(control_guidance_start, list) else [control_guidance_start]
        ends = control_guidance_end if isinstance(control_guidance_end, list) else [control_guidance_end]
        if isinstance(control_guidance_start, list) != isinstance(control_guidance_end, list):
            # Ref: diffusers "align format for control guidance": a single value matches a list.
            starts, ends = starts * len(ends), ends * len(starts)
        if len(starts) != len(ends):
            raise ValueError(
                f"`control_guidance_start` has {len(starts)} elements, but `control_guidance_end` has {len(ends)}"
                " elements. Make sure to provide the same number of elements to each list."
            )
        if len(starts) != 1:
            raise ValueError(
                f"`control_guidance_start`: {starts} has {len(starts)} elements but there are 1 controlnets available."
                " Make sure to provide 1."
            )
        for start, end in zip(starts, ends):
            # NaN compares false both ways, so it would pass every check below.
            self._check_finite(control_guidance_start=start, control_guidance_end=end)
            if start >= end:
                raise ValueError(
                    f"control guidance start: {start} cannot be larger or equal to control guidance end: {end}."
                )
            if start < 0.0:
                raise ValueError(f"control guidance start: {start} can't be smaller than 0.")
            if end > 1.0:
                raise ValueError(f"control guidance end: {end} can't be larger than 1.0.")
        return float(starts[0]), float(ends[0])

    def _controlnet_request(self, request_class, *, control_image, height, width, controlnet_conditioning_scale,
                            guess_mode, control_guidance_start, control_guidance_end, prompt, negative_prompt,
                            prompt_embeds, negative_prompt_embeds, clip_skip, guidance_scale,
                            callback_on_step_end_tensor_inputs, **run_options):
        """Steps 1 and 2 of both ControlNet pipelines: diffusers' checks (prompts, then the ControlNet's),
        the call's properties, and the engine request with the ControlNet's options. The caller sets
        ``control_image`` once it is preprocessed."""
        # diffusers rounds a given size down to a multiple of the VAE's scale factor instead of refusing it.
        self._check_height_width(height, width, divisible_by_8=False)
        self._check_prompt_inputs(prompt, None, negative_prompt, prompt_embeds, negative_prompt_embeds,
                                  callback_on_step_end_tensor_inputs)
        start, end = self._check_controlnet_inputs(prompt, control_image, prompt_embeds, controlnet_conditioning_scale,
                                                   control_guidance_start, control_guidance_end)
        self._guidance_scale = guidance_scale
        self._clip_skip = clip_skip
        r = self._request(
            request_class, prompt=prompt, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip, guidance_scale=guidance_scale,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, **run_options,
        )
        r.controlnet_conditioning_scale = float(controlnet_conditioning_scale)
        r.guess_mode = bool(guess_mode)
        r.control_guidance_start, r.control_guidance_end = start, end
        return r


class StableDiffusionControlNetPipeline(ControlNetMixin, DiffusionPipeline):
    _engine_class = _C.StableDiffusionControlNetPipeline
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "image"]

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        image: Any = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
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
        controlnet_conditioning_scale: Union[float, List[float]] = 1.0,
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
            _C.StableDiffusionControlNetRequest, control_image=image, height=height, width=width,
            controlnet_conditioning_scale=controlnet_conditioning_scale, guess_mode=guess_mode,
            control_guidance_start=control_guidance_start, control_guidance_end=control_guidance_end,
            prompt=prompt, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            clip_skip=clip_skip, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
            timesteps=timesteps, sigmas=sigmas, num_images_per_prompt=num_images_per_prompt, eta=eta,
            generator=generator, latents=latents, output_type=output_type, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )

        # 4. Prepare image: the latents take the control image's size (diffusers: height, width = image.shape[-2:])
        r.control_image = self.control_image_processor.preprocess(image, height=height, width=width).to(torch.float32)
        r.height, r.width = int(r.control_image.shape[-2]), int(r.control_image.shape[-1])

        # 5.-8. timesteps, latents, the denoising loop with the ControlNet, and the decode, in the engine
        return self._finish(self._run_engine(r), output_type, return_dict)

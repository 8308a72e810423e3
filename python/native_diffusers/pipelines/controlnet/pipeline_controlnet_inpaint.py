"""diffusers' ``StableDiffusionControlNetInpaintPipeline`` (SD 1.x/2.x inpainting with one ControlNet)
on the native engine. Python checks the arguments (with diffusers' messages) and preprocesses the
image, the mask and the control image; encoding, the denoising loop with the ControlNet and the mask
at every step, and the decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline
from ..stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipelineOutput
from ..stable_diffusion.pipeline_stable_diffusion_inpaint import StableDiffusionInpaintPipeline
from .pipeline_controlnet import ControlNetMixin


class StableDiffusionControlNetInpaintPipeline(ControlNetMixin, DiffusionPipeline):
    _engine_class = _C.StableDiffusionControlNetInpaintPipeline
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "control_image", "mask",
                               "masked_image_latents"]

    def __init__(self, vae, text_encoder, tokenizer, unet, controlnet, scheduler, safety_checker=None,
                 feature_extractor=None, image_encoder=None, requires_safety_checker: bool = True):
        super().__init__(vae, text_encoder, tokenizer, unet, controlnet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        # Ref: diffusers: the init image without the RGB conversion of the other ControlNet pipelines.
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.mask_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False,
                                                do_binarize=True, do_convert_grayscale=True)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        image: Any = None,
        mask_image: Any = None,
        control_image: Any = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        padding_mask_crop: Optional[int] = None,
        strength: float = 1.0,
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
        controlnet_conditioning_scale: Union[float, List[float]] = 0.5,
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

        # 1.-2. Check inputs, define call parameters. Ref: diffusers checks the crop's PIL inputs on the
        # control image (check_inputs' `image`) and the mask.
        StableDiffusionInpaintPipeline._check_mask_crop_inputs(control_image, mask_image, output_type,
                                                               padding_mask_crop)
        r = self._controlnet_request(
            _C.StableDiffusionControlNetInpaintRequest, control_image=control_image, height=height, width=width,
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
        if mask_image is None:
            raise ValueError("`mask_image` input cannot be undefined.")

        # 4. The crop region, the control image ([0, 1], not normalised: masked pixels at -1 pass through)
        crops_coords, resize_mode = None, "default"
        if padding_mask_crop is not None:
            height, width = self.image_processor.get_default_height_width(image, height, width)
            crops_coords = self.mask_processor.get_crop_region(mask_image, width, height, pad=padding_mask_crop)
            resize_mode = "fill"
        r.control_image = self.control_image_processor.preprocess(
            control_image, height=height, width=width, crops_coords=crops_coords, resize_mode=resize_mode
        ).to(torch.float32)

        # 5. The image ([-1, 1]) and the mask; the output takes the image's size
        r.image = self.image_processor.preprocess(image, height=height, width=width, crops_coords=crops_coords,
                                                  resize_mode=resize_mode).to(torch.float32)
        r.mask_image = self.mask_processor.preprocess(mask_image, height=height, width=width,
                                                      resize_mode=resize_mode, crops_coords=crops_coords)
        r.height, r.width = int(r.image.shape[-2]), int(r.image.shape[-1])
        r.strength = float(strength)

        # 6.-9. timesteps, latents, mask latents, the loop with the ControlNet, and the decode, in the engine
        images = self._postprocess(self._run_engine(r), output_type)
        if padding_mask_crop is not None:
            images = [self.image_processor.apply_overlay(mask_image, image, i, crops_coords) for i in images]
        if not return_dict:
            return (images, None)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)

"""diffusers' ``StableDiffusionUpscalePipeline`` (the x4 upscaler) on the native engine. Python checks
the arguments (with diffusers' messages) and converts images; encoding, noising the low-resolution
image, the denoising loop and the decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import PIL.Image
import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline
from .pipeline_stable_diffusion import StableDiffusionBase

# Ref: diffusers StableDiffusionUpscalePipeline.__init__: the x4 upscaler's VAE latents are scaled by this.
_UPSCALER_SCALING_FACTOR = 0.08333


class StableDiffusionUpscalePipeline(StableDiffusionBase, DiffusionPipeline):
    _engine_class = _C.StableDiffusionUpscalePipeline
    _optional_components = ["watermarker", "safety_checker", "feature_extractor"]

    def __init__(self, vae, text_encoder, tokenizer, unet, low_res_scheduler, scheduler, safety_checker=None,
                 feature_extractor=None, watermarker=None, max_noise_level: int = 350):
        scaling_factor = vae.config.get("scaling_factor") if vae is not None else None
        if vae is not None and scaling_factor != _UPSCALER_SCALING_FACTOR:
            # diffusers rewrites the VAE's config to 0.08333 (with a deprecation warning); the engine reads
            # its scaling factor from the checkpoint, so such a checkpoint is refused rather than run differently.
            raise ValueError(
                f"The upscaler's vae/config.json has scaling_factor={scaling_factor}; the x4 upscaler needs "
                f"{_UPSCALER_SCALING_FACTOR}. Please update the checkpoint's vae/config.json."
            )
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.register_modules(low_res_scheduler=low_res_scheduler, watermarker=None)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, resample="bicubic")
        self.register_to_config(max_noise_level=max_noise_level)

    @classmethod
    def _expected_components(cls):
        return ["vae", "text_encoder", "tokenizer", "unet", "low_res_scheduler", "scheduler", "safety_checker",
                "feature_extractor", "watermarker"]

    _engine_component_names = ("vae", "text_encoder", "tokenizer", "unet", "low_res_scheduler", "scheduler")

    def _engine_components(self):
        tokenizer, text_encoder, unet, vae, scheduler = super()._engine_components()
        return (tokenizer, text_encoder, unet, vae, self.low_res_scheduler._engine, scheduler)

    def check_inputs(self, prompt, image, noise_level, callback_steps, negative_prompt=None, prompt_embeds=None,
                     negative_prompt_embeds=None):
        # Ref: diffusers StableDiffusionUpscalePipeline.check_inputs (same messages and order).
        self._check_callback_steps(callback_steps, required=True)
        self._check_prompt_pairs(prompt, prompt_embeds, negative_prompt, negative_prompt_embeds)
        if not isinstance(image, (torch.Tensor, PIL.Image.Image, np.ndarray, list)):
            raise ValueError(
                "`image` has to be of type `torch.Tensor`, `np.ndarray`, `PIL.Image.Image` or `list` but is"
                f" {type(image)}"
            )
        if isinstance(image, (list, np.ndarray, torch.Tensor)):
            if prompt is not None and isinstance(prompt, str):
                batch_size = 1
            elif prompt is not None and isinstance(prompt, list):
                batch_size = len(prompt)
            else:
                batch_size = prompt_embeds.shape[0]
            image_batch_size = len(image) if isinstance(image, list) else image.shape[0]
            if batch_size != image_batch_size:
                raise ValueError(
                    f"`prompt` has batch size {batch_size} and `image` has batch size {image_batch_size}."
                    " Please make sure that passed `prompt` matches the batch size of `image`."
                )
        if noise_level > self.config["max_noise_level"]:
            raise ValueError(f"`noise_level` has to be <= {self.config['max_noise_level']} but is {noise_level}")

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        image: Any = None,
        num_inference_steps: int = 75,
        guidance_scale: float = 9.0,
        noise_level: int = 20,
        negative_prompt: Optional[Union[str, List[str]]] = None,
        num_images_per_prompt: Optional[int] = 1,
        eta: float = 0.0,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        callback: Optional[Callable[[int, int, torch.Tensor], None]] = None,
        callback_steps: int = 1,
        cross_attention_kwargs: Optional[Dict[str, Any]] = None,
        clip_skip: int = None,
    ):
        self._check_unsupported_call_arguments(None, None, cross_attention_kwargs, {})

        # 1. Check inputs
        self.check_inputs(prompt, image, noise_level, callback_steps, negative_prompt, prompt_embeds,
                          negative_prompt_embeds)
        if image is None:
            raise ValueError("`image` input cannot be undefined.")
        self._guidance_scale = guidance_scale
        self._clip_skip = clip_skip

        # 2. Define call parameters
        r = self._request(
            _C.StableDiffusionUpscaleRequest, prompt=prompt, negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, latents=latents,
            output_type=output_type,
        )
        if callback is not None:
            # diffusers' deprecated callback: the engine calls it where its progress bar advances.
            r.callback = callback
            r.callback_steps = int(callback_steps)

        # 4. Preprocess image (bicubic resize to a multiple of the VAE's scale factor, [-1, 1])
        r.image = self.image_processor.preprocess(image)
        r.noise_level = int(noise_level)
        if latents is not None:
            # Ref: diffusers prepare_latents (same message): the latents are the low-resolution image's size.
            batch_size = len(r.prompt) if r.prompt else prompt_embeds.shape[0]
            shape = (batch_size * num_images_per_prompt, self.vae.config.latent_channels, *r.image.shape[2:])
            if tuple(latents.shape) != shape:
                raise ValueError(f"Unexpected latents shape, got {latents.shape}, expected {shape}")

        # 5.-10. timesteps, the noised image, latents, the denoising loop and the decode, in the engine
        return self._finish(self._run_engine(r), output_type, return_dict)

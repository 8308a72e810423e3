"""diffusers' ``StableDiffusionImg2ImgPipeline`` on the native engine. Python checks the
arguments (with diffusers' messages) and converts images; encoding, the denoising loop and the
decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ... import _C
from ..pipeline_utils import DiffusionPipeline
from .pipeline_stable_diffusion import StableDiffusionMixin, StableDiffusionPipelineOutput


class StableDiffusionImg2ImgPipeline(StableDiffusionMixin, DiffusionPipeline):
    def _engine_pipeline(self):
        engine = self.__dict__.get("_engine")
        if engine is None:
            engine = _C.StableDiffusionImg2ImgPipeline(
                self.tokenizer._engine if self.tokenizer is not None else None,
                self.text_encoder._engine if self.text_encoder is not None else None,
                self.unet._engine, self.vae._engine, self.scheduler._engine,
            )
            self._adopt_engine(engine)
        return engine

    def check_inputs(self, prompt, strength, callback_steps, negative_prompt=None, prompt_embeds=None,
                     negative_prompt_embeds=None, callback_on_step_end_tensor_inputs=None):
        # Ref: diffusers StableDiffusionImg2ImgPipeline.check_inputs (same messages).
        if strength < 0 or strength > 1:
            raise ValueError(f"The value of strength should in [0.0, 1.0] but is {strength}")
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
        if prompt is not None and isinstance(prompt, str):
            prompts = [prompt]
        elif prompt is not None:
            prompts = list(prompt)
        else:
            prompts = []
        batch_size = len(prompts) if prompts else prompt_embeds.shape[0]
        negatives = self._negative_prompts(prompt, negative_prompt, batch_size)
        generators = self._generators_for_batch(generator, batch_size * num_images_per_prompt)
        self._check_custom_schedule(timesteps, sigmas)
        self._check_output_type(output_type)

        # 4. Preprocess image (PIL's Lanczos resize, [-1, 1]) as diffusers' VaeImageProcessor does
        image = self.image_processor.preprocess(image)

        engine_callback = None
        if callback_on_step_end is not None:
            engine_callback = self._wrap_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)

        result = self._engine_pipeline().run(
            prompt=prompts,
            negative_prompt=negatives,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            image=image,
            strength=float(strength),
            num_inference_steps=int(num_inference_steps),
            timesteps=[float(t) for t in timesteps] if timesteps is not None else [],
            sigmas=[float(s) for s in sigmas] if sigmas is not None else [],
            guidance_scale=float(guidance_scale),
            num_images_per_prompt=int(num_images_per_prompt),
            eta=float(eta),
            generators=generators,
            clip_skip=clip_skip,
            output_latents=output_type == "latent",
            progress_bar=self._progress_bar_enabled(),
            callback_on_step_end=engine_callback,
        )
        self._num_timesteps = len(self.scheduler.timesteps)
        images = (
            result if output_type == "latent" else self.image_processor.postprocess(result, output_type=output_type)
        )
        if not return_dict:
            return (images, None)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)

"""diffusers' ``StableDiffusionImg2ImgPipeline`` on the native engine. Python checks the
arguments (with diffusers' messages) and converts images; encoding, the denoising loop and the
decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline, ImagePipelineOutput

StableDiffusionPipelineOutput = ImagePipelineOutput


class StableDiffusionImg2ImgPipeline(DiffusionPipeline):
    _optional_components = ["safety_checker", "feature_extractor", "image_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, safety_checker=None, feature_extractor=None,
                 image_encoder=None, requires_safety_checker: bool = True):
        super().__init__(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                         safety_checker=None, feature_extractor=None, image_encoder=None)
        # Ref: diffusers: vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1).
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @classmethod
    def _expected_components(cls):
        return ["vae", "text_encoder", "tokenizer", "unet", "scheduler", "safety_checker", "feature_extractor",
                "image_encoder"]

    def __setattr__(self, name, value):
        # Swapping a component (pipe.scheduler = X.from_config(...)) must reach the engine.
        object.__setattr__(self, name, value)
        if name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler") and "_engine" in self.__dict__:
            object.__setattr__(self, "_engine", None)

    def _engine_pipeline(self):
        engine = self.__dict__.get("_engine")
        if engine is None:
            engine = _C.StableDiffusionImg2ImgPipeline(
                self.tokenizer._engine if self.tokenizer is not None else None,
                self.text_encoder._engine if self.text_encoder is not None else None,
                self.unet._engine, self.vae._engine, self.scheduler._engine,
            )
            object.__setattr__(self, "_engine", engine)
        return engine

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def clip_skip(self):
        return self._clip_skip

    @property
    def num_timesteps(self):
        return self._num_timesteps

    def check_inputs(self, prompt, strength, callback_steps, negative_prompt=None, prompt_embeds=None,
                     negative_prompt_embeds=None, callback_on_step_end_tensor_inputs=None):
        # Ref: diffusers StableDiffusionImg2ImgPipeline.check_inputs (same messages).
        if strength < 0 or strength > 1:
            raise ValueError(f"The value of strength should in [0.0, 1.0] but is {strength}")
        if callback_steps is not None and (not isinstance(callback_steps, int) or callback_steps <= 0):
            raise ValueError(
                f"`callback_steps` has to be a positive integer but is {callback_steps} of type"
                f" {type(callback_steps)}."
            )
        self._check_callback_tensor_inputs(callback_on_step_end_tensor_inputs)
        if prompt is not None and prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `prompt`: {prompt} and `prompt_embeds`: {prompt_embeds}. Please make sure to"
                " only forward one of the two."
            )
        elif prompt is None and prompt_embeds is None:
            raise ValueError(
                "Provide either `prompt` or `prompt_embeds`. Cannot leave both `prompt` and `prompt_embeds` undefined."
            )
        elif prompt is not None and (not isinstance(prompt, str) and not isinstance(prompt, list)):
            raise ValueError(f"`prompt` has to be of type `str` or `list` but is {type(prompt)}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `negative_prompt`: {negative_prompt} and `negative_prompt_embeds`:"
                f" {negative_prompt_embeds}. Please make sure to only forward one of the two."
            )
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    "`prompt_embeds` and `negative_prompt_embeds` must have the same shape when passed directly, but"
                    f" got: `prompt_embeds` {prompt_embeds.shape} != `negative_prompt_embeds`"
                    f" {negative_prompt_embeds.shape}."
                )

    @staticmethod
    def _negative_prompts(prompt, negative_prompt, batch_size) -> List[str]:
        # Ref: diffusers encode_prompt: the type and batch checks on negative_prompt.
        if negative_prompt is None:
            return []
        if prompt is not None and type(prompt) is not type(negative_prompt):
            raise TypeError(
                f"`negative_prompt` should be the same type to `prompt`, but got {type(negative_prompt)} !="
                f" {type(prompt)}."
            )
        negatives = [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt)
        if batch_size != len(negatives):
            raise ValueError(
                f"`negative_prompt`: {negative_prompt} has batch size {len(negatives)}, but `prompt`:"
                f" {prompt} has batch size {batch_size}. Please make sure that passed `negative_prompt` matches"
                " the batch size of `prompt`."
            )
        return negatives

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
        if ip_adapter_image is not None or ip_adapter_image_embeds is not None:
            raise NotImplementedError("IP-Adapter inputs are not supported yet by native_diffusers")
        if cross_attention_kwargs:
            raise NotImplementedError("cross_attention_kwargs is not supported yet by native_diffusers")
        callback_steps = kwargs.pop("callback_steps", None)
        if kwargs.pop("callback", None) is not None or callback_steps is not None:
            raise NotImplementedError(
                "the deprecated `callback`/`callback_steps` are not supported; use callback_on_step_end"
            )

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
        generators = self._generators(generator)
        if len(generators) > 1 and len(generators) != batch_size * num_images_per_prompt:
            raise ValueError(
                f"You have passed a list of generators of length {len(generators)}, but requested an effective batch"
                f" size of {batch_size * num_images_per_prompt}. Make sure the batch size matches the length of the"
                " generators."
            )
        self._check_custom_schedule(timesteps, sigmas)
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type={output_type!r} is not supported; use 'pil', 'np', 'pt' or 'latent'.")

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

"""diffusers' ``StableDiffusionPipeline`` (text-to-image, SD 1.x/2.x) on the native engine, and what
it shares with the image-to-image pipeline. Python checks the arguments (with diffusers' messages);
encoding, the denoising loop and the decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline, ImagePipelineOutput, StableDiffusionMixin

StableDiffusionPipelineOutput = ImagePipelineOutput


class StableDiffusionBase(StableDiffusionMixin):
    """What the SD 1.x/2.x pipelines share (diffusers repeats it with "# Copied from"): components,
    properties, the prompt checks with diffusers' messages, and the engine request."""

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

    _engine_component_names = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")

    def _engine_components(self):
        return (self.tokenizer._engine if self.tokenizer is not None else None,
                self.text_encoder._engine if self.text_encoder is not None else None,
                self.unet._engine, self.vae._engine, self.scheduler._engine)

    def _prompt_request(self, request_class, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds,
                        clip_skip):
        """A request with the prompts as the engine encodes them (strings broadcast to the batch,
        diffusers' negative-prompt checks), and the batch size."""
        r = request_class()
        r.prompt = [prompt] if isinstance(prompt, str) else (list(prompt) if prompt is not None else [])
        batch_size = len(r.prompt) if r.prompt else prompt_embeds.shape[0]
        r.negative_prompt = self._negative_prompts(prompt, negative_prompt, batch_size)
        if prompt_embeds is not None:
            r.prompt_embeds = prompt_embeds
        if negative_prompt_embeds is not None:
            r.negative_prompt_embeds = negative_prompt_embeds
        r.clip_skip = clip_skip
        return r, batch_size

    def _request(self, request_class, *, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, clip_skip,
                 **run_options):
        """The engine request of one call: the prompts (``_prompt_request``) and the options every
        SD-family call sets the same way (``_fill_run_options``, diffusers' argument names)."""
        r, batch_size = self._prompt_request(request_class, prompt, negative_prompt, prompt_embeds,
                                             negative_prompt_embeds, clip_skip)
        self._fill_run_options(r, batch_size=batch_size, **run_options)
        return r

    def _finish(self, result, output_type, return_dict):
        images = self._postprocess(result, output_type)
        if not return_dict:
            return (images, None)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)

    @property
    def clip_skip(self):
        return self._clip_skip

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

    def _check_prompt_inputs(self, prompt, callback_steps, negative_prompt=None, prompt_embeds=None,
                             negative_prompt_embeds=None, callback_on_step_end_tensor_inputs=None):
        # Ref: diffusers StableDiffusion(Img2Img)Pipeline.check_inputs (same messages).
        self._check_callback_steps(callback_steps)
        self._check_callback_tensor_inputs(callback_on_step_end_tensor_inputs)
        self._check_prompt_pairs(prompt, prompt_embeds, negative_prompt, negative_prompt_embeds)


class StableDiffusionPipeline(StableDiffusionBase, DiffusionPipeline):
    _engine_class = _C.StableDiffusionPipeline

    @property
    def guidance_rescale(self):
        return self._guidance_rescale

    def check_inputs(self, prompt, height, width, callback_steps, negative_prompt=None, prompt_embeds=None,
                     negative_prompt_embeds=None, callback_on_step_end_tensor_inputs=None):
        # Ref: diffusers StableDiffusionPipeline.check_inputs (same messages).
        self._check_height_width(height, width)
        self._check_prompt_inputs(prompt, callback_steps, negative_prompt, prompt_embeds, negative_prompt_embeds,
                                  callback_on_step_end_tensor_inputs)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
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
        guidance_rescale: float = 0.0,
        clip_skip: Optional[int] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        self._check_unsupported_call_arguments(ip_adapter_image, ip_adapter_image_embeds, cross_attention_kwargs,
                                               kwargs)
        callback_steps = None

        # 0. Default height and width to unet
        sample_size = self.unet.config.get("sample_size", 64)
        height = height or sample_size * self.vae_scale_factor
        width = width or sample_size * self.vae_scale_factor

        # 1. Check inputs
        self.check_inputs(prompt, height, width, callback_steps, negative_prompt, prompt_embeds,
                          negative_prompt_embeds, callback_on_step_end_tensor_inputs)
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._clip_skip = clip_skip

        # 2. Define call parameters
        r = self._request(
            _C.StableDiffusionRequest, prompt=prompt, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, clip_skip=clip_skip,
            num_inference_steps=num_inference_steps, timesteps=timesteps, sigmas=sigmas, guidance_scale=guidance_scale,
            guidance_rescale=guidance_rescale, num_images_per_prompt=num_images_per_prompt, eta=eta,
            generator=generator, latents=latents, output_type=output_type, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        r.height, r.width = int(height), int(width)
        # 3.-7. Encode the prompt, timesteps, latents, the denoising loop and the decode, in the engine
        return self._finish(self._run_engine(r), output_type, return_dict)

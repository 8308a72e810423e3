"""diffusers' ``StableDiffusionXLPipeline`` (text-to-image) on the native engine, and what it
shares with the image-to-image pipeline: argument checks with diffusers' messages and the
normalisation of the prompts. Encoding, the loop and the decode run in the C++ engine."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from ... import _C
from ...image_processor import VaeImageProcessor
from ..pipeline_utils import DiffusionPipeline, StableDiffusionMixin
from .pipeline_output import StableDiffusionXLPipelineOutput

_COMPONENTS = ["vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler",
               "image_encoder", "feature_extractor"]


def _as_list(value, batch_size: int) -> Optional[List[str]]:
    if value is None:
        return None
    return batch_size * [value] if isinstance(value, str) else list(value)


class StableDiffusionXLMixin(StableDiffusionMixin):
    """The part of diffusers' two SDXL pipelines that is the same in both."""

    _optional_components = ["tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "image_encoder",
                            "feature_extractor"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"]

    def _init_sdxl(self, vae):
        # Ref: diffusers: vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1).
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        # diffusers adds an invisible watermark only when the `invisible-watermark` package is
        # installed; the engine never does, so images equal diffusers' `add_watermarker=False`.
        self.watermark = None

    @classmethod
    def _expected_components(cls):
        return list(_COMPONENTS)

    _engine_component_names = tuple(_COMPONENTS)

    @staticmethod
    def _engine_of(component):
        return component._engine if component is not None else None

    def _engine_components(self):
        return (self._engine_of(self.tokenizer), self._engine_of(self.text_encoder),
                self._engine_of(self.tokenizer_2), self._engine_of(self.text_encoder_2), self.unet._engine,
                self.vae._engine, self.scheduler._engine, bool(self.config.get("force_zeros_for_empty_prompt", True)))

    # -- properties diffusers exposes -----------------------------------------------------------
    @property
    def guidance_rescale(self):
        return self._guidance_rescale

    @property
    def clip_skip(self):
        return self._clip_skip

    @property
    def do_classifier_free_guidance(self):
        # Ref: diffusers: guidance needs guidance_scale > 1 and a UNet without time_cond_proj_dim.
        return self._guidance_scale > 1 and self.unet.config.get("time_cond_proj_dim") is None

    @property
    def denoising_end(self):
        return self._denoising_end

    # -- checks ---------------------------------------------------------------------------------
    def _check_prompts(self, prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                       negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
                       callback_on_step_end_tensor_inputs):
        # Ref: diffusers StableDiffusionXL(Img2Img)Pipeline.check_inputs (same messages).
        self._check_callback_tensor_inputs(callback_on_step_end_tensor_inputs)
        self._check_prompt_pairs(prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, prompt_2,
                                 negative_prompt_2)
        if prompt_embeds is not None and pooled_prompt_embeds is None:
            raise ValueError(
                "If `prompt_embeds` are provided, `pooled_prompt_embeds` also have to be passed. Make sure to generate"
                " `pooled_prompt_embeds` from the same text encoder that was used to generate `prompt_embeds`."
            )
        if negative_prompt_embeds is not None and negative_pooled_prompt_embeds is None:
            raise ValueError(
                "If `negative_prompt_embeds` are provided, `negative_pooled_prompt_embeds` also have to be passed."
                " Make sure to generate `negative_pooled_prompt_embeds` from the same text encoder that was used to"
                " generate `negative_prompt_embeds`."
            )

    # -- the request the engine runs ------------------------------------------------------------
    def _prompt_request(self, prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                        negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds, clip_skip,
                        request_class=None):
        """Ref: diffusers encode_prompt's normalisation: ``prompt_2 or prompt``, ``negative_prompt or ""``
        and ``negative_prompt_2 or negative_prompt`` (the empty string counts as absent), strings
        broadcast to the batch, and the type and batch checks on negative prompts."""
        r = (request_class or _C.StableDiffusionXLRequest)()
        prompts = [prompt] if isinstance(prompt, str) else (list(prompt) if prompt is not None else [])
        batch_size = len(prompts) if prompt is not None else prompt_embeds.shape[0]
        if prompt_embeds is None:
            prompts_2 = prompt_2 or prompt
            prompts_2 = [prompts_2] if isinstance(prompts_2, str) else list(prompts_2)
            if len(prompts_2) != batch_size:
                raise ValueError(f"`prompt_2` has batch size {len(prompts_2)}, but `prompt` has batch size "
                                 f"{batch_size}.")
            r.prompt, r.prompt_2 = prompts, prompts_2
        else:
            r.prompt_embeds = prompt_embeds
        if pooled_prompt_embeds is not None:
            r.pooled_prompt_embeds = pooled_prompt_embeds
        if negative_prompt_embeds is not None:
            r.negative_prompt_embeds = negative_prompt_embeds
            r.negative_pooled_prompt_embeds = negative_pooled_prompt_embeds
        elif negative_prompt is not None:
            negatives = negative_prompt or ""
            negatives_2 = negative_prompt_2 or negatives
            negatives = _as_list(negatives, batch_size)
            negatives_2 = _as_list(negatives_2, batch_size)
            if prompt is not None and type(prompt) is not type(negative_prompt):
                raise TypeError(
                    f"`negative_prompt` should be the same type to `prompt`, but got {type(negative_prompt)} !="
                    f" {type(prompt)}."
                )
            elif batch_size != len(negatives):
                raise ValueError(
                    f"`negative_prompt`: {negative_prompt} has batch size {len(negatives)}, but `prompt`:"
                    f" {prompt} has batch size {batch_size}. Please make sure that passed `negative_prompt` matches"
                    " the batch size of `prompt`."
                )
            if len(negatives_2) != batch_size:
                raise ValueError(f"`negative_prompt_2` has batch size {len(negatives_2)}, but `prompt` has batch "
                                 f"size {batch_size}.")
            r.negative_prompt, r.negative_prompt_2 = negatives, negatives_2
        elif negative_prompt_2:
            # Ref: with no negative_prompt but force_zeros_for_empty_prompt off, diffusers encodes
            # "" for the first encoder and negative_prompt_2 for the second.
            r.negative_prompt_2 = _as_list(negative_prompt_2, batch_size)
        r.clip_skip = clip_skip
        return r, batch_size

    @staticmethod
    def _size(value) -> Optional[Tuple[float, float]]:
        if value is None:
            return None
        if len(value) != 2:
            raise ValueError(f"sizes and crop coordinates are (height, width) pairs, got {value!r}")
        return (float(value[0]), float(value[1]))

    def _fill_common(self, r, *, num_inference_steps, timesteps, sigmas, denoising_end, guidance_scale,
                     guidance_rescale, num_images_per_prompt, eta, generator, latents, original_size,
                     crops_coords_top_left, target_size, negative_original_size, negative_crops_coords_top_left,
                     negative_target_size, output_type, callback_on_step_end, callback_on_step_end_tensor_inputs,
                     batch_size):
        self._fill_run_options(
            r, batch_size=batch_size, num_inference_steps=num_inference_steps, timesteps=timesteps, sigmas=sigmas,
            guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, latents=latents,
            output_type=output_type, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        if self._valid_denoising_value(denoising_end):
            r.denoising_end = float(denoising_end)
        r.original_size = self._size(original_size)
        r.crops_coords_top_left = self._size(crops_coords_top_left)
        r.target_size = self._size(target_size)
        r.negative_original_size = self._size(negative_original_size)
        r.negative_crops_coords_top_left = self._size(negative_crops_coords_top_left)
        r.negative_target_size = self._size(negative_target_size)

    @staticmethod
    def _valid_denoising_value(value) -> bool:
        # Ref: diffusers denoising_value_valid: only a float strictly between 0 and 1 counts.
        return isinstance(value, float) and 0 < value < 1

    def _finish(self, result, output_type, return_dict):
        return self._finish_images(self._postprocess(result, output_type), return_dict)

    @staticmethod
    def _finish_images(images, return_dict):
        if not return_dict:
            return (images,)
        return StableDiffusionXLPipelineOutput(images=images)


class StableDiffusionXLPipeline(StableDiffusionXLMixin, DiffusionPipeline):
    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, scheduler,
                 image_encoder=None, feature_extractor=None, force_zeros_for_empty_prompt: bool = True,
                 add_watermarker: Optional[bool] = None):
        super().__init__(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                         tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, image_encoder=None,
                         feature_extractor=None)
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self._init_sdxl(vae)
        self.default_sample_size = unet.config.get("sample_size", 128) if unet is not None else 128

    _engine_class = _C.StableDiffusionXLPipeline

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        prompt_2: Optional[Union[str, List[str]]] = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        num_inference_steps: int = 50,
        timesteps: List[int] = None,
        sigmas: List[float] = None,
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
        original_size: Optional[Tuple[int, int]] = None,
        crops_coords_top_left: Tuple[int, int] = (0, 0),
        target_size: Optional[Tuple[int, int]] = None,
        negative_original_size: Optional[Tuple[int, int]] = None,
        negative_crops_coords_top_left: Tuple[int, int] = (0, 0),
        negative_target_size: Optional[Tuple[int, int]] = None,
        clip_skip: Optional[int] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        self._check_unsupported_call_arguments(ip_adapter_image, ip_adapter_image_embeds, cross_attention_kwargs,
                                               kwargs)
        # 0. Default height and width to unet
        height = height or self.default_sample_size * self.vae_scale_factor
        width = width or self.default_sample_size * self.vae_scale_factor
        original_size = original_size or (height, width)
        target_size = target_size or (height, width)

        # 1. Check inputs
        self._check_height_width(height, width)
        self._check_prompts(prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                            negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
                            callback_on_step_end_tensor_inputs)
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._clip_skip = clip_skip
        self._denoising_end = denoising_end

        # 2.-3. Define call parameters and the prompts the engine encodes
        r, batch_size = self._prompt_request(prompt, prompt_2, negative_prompt, negative_prompt_2, prompt_embeds,
                                             negative_prompt_embeds, pooled_prompt_embeds,
                                             negative_pooled_prompt_embeds, clip_skip)
        r.height, r.width = int(height), int(width)
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
        # 4.-9. timesteps, latents, added conditions, the loop and the decode
        result = self._run_engine(r)
        return self._finish(result, output_type, return_dict)

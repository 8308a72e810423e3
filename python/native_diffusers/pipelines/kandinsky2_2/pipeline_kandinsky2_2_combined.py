"""diffusers' ``KandinskyV22Img2ImgCombinedPipeline`` and ``KandinskyV22InpaintCombinedPipeline``: the
prior (text -> CLIP image embedding) then the decoder (image-to-image or inpainting on those
embeddings), each running its whole loop in the C++ engine. ``AutoPipelineForImage2Image`` and
``AutoPipelineForInpainting`` return them for a Kandinsky 2.2 decoder checkpoint, loading the prior
that the decoder's model card names, as diffusers does."""

import os
import re
from typing import Callable, List, Optional, Union

import PIL.Image
import torch

from ...configuration_utils import read_config_file
from ...utils.hub_utils import resolve_model_path
from ..pipeline_utils import DiffusionPipeline
from .pipeline_kandinsky2_2_img2img import KandinskyV22Img2ImgPipeline
from .pipeline_kandinsky2_2_inpainting import KandinskyV22InpaintPipeline
from .pipeline_kandinsky2_2_prior import KandinskyV22PriorPipeline

_DECODER_COMPONENTS = ("unet", "scheduler", "movq")
_PRIOR_COMPONENTS = ("prior", "image_encoder", "text_encoder", "tokenizer", "scheduler", "image_processor")
# Ref: diffusers pipeline_loading_utils.CONNECTED_PIPES_KEYS.
_CONNECTED_PIPES_KEYS = ("prior",)


def _connected_pipes(folder: str) -> dict:
    """The model card's connected pipelines (``prior: [repo]`` in README.md's YAML header), which is
    where diffusers finds the prior of kandinsky-community/kandinsky-2-2-decoder."""
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    header = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, flags=re.S)
    if header is None:
        return {}
    found, lines = {}, header.group(1).splitlines()
    for i, line in enumerate(lines):
        key = line.split(":", 1)[0].strip()
        if key not in _CONNECTED_PIPES_KEYS or ":" not in line:
            continue
        inline = line.split(":", 1)[1].strip()
        if inline:  # prior: repo   or   prior: [repo, ...]
            values = [v.strip().strip("'\"") for v in inline.strip("[]").split(",") if v.strip()]
        else:  # a block list on the following lines
            values = []
            for item in lines[i + 1:]:
                if not item.lstrip().startswith("- "):
                    break
                values.append(item.strip()[2:].strip().strip("'\""))
        if values:
            found[key] = values[0]
    return found


class _KandinskyV22CombinedPipeline(DiffusionPipeline):
    """What diffusers' combined Kandinsky 2.2 pipelines share: a prior pipeline and a decoder
    pipeline (``_decoder_class``) over the same components, loaded from a decoder checkpoint and the
    prior its model card names."""

    model_cpu_offload_seq = "prior_text_encoder->prior_image_encoder->unet->movq"
    _load_connected_pipes = True
    _used_components = ("prior_image_encoder",)
    _decoder_class = None

    def __init__(self, unet, scheduler, movq, prior_prior, prior_image_encoder, prior_text_encoder, prior_tokenizer,
                 prior_scheduler, prior_image_processor):
        super().__init__(unet=unet, scheduler=scheduler, movq=movq, prior_prior=prior_prior,
                         prior_image_encoder=prior_image_encoder, prior_text_encoder=prior_text_encoder,
                         prior_tokenizer=prior_tokenizer, prior_scheduler=prior_scheduler,
                         prior_image_processor=prior_image_processor)
        object.__setattr__(self, "prior_pipe", KandinskyV22PriorPipeline(
            prior=prior_prior, image_encoder=prior_image_encoder, text_encoder=prior_text_encoder,
            tokenizer=prior_tokenizer, scheduler=prior_scheduler, image_processor=prior_image_processor,
        ))
        object.__setattr__(self, "decoder_pipe", self._decoder_class(unet=unet, scheduler=scheduler, movq=movq))

    def __setattr__(self, name, value):
        # pipe.scheduler = ... / pipe.prior_scheduler = ... reach the pipeline that runs it.
        object.__setattr__(self, name, value)
        if name in _DECODER_COMPONENTS and "decoder_pipe" in self.__dict__:
            setattr(self.decoder_pipe, name, value)
        elif name.startswith("prior_") and name[6:] in _PRIOR_COMPONENTS and "prior_pipe" in self.__dict__:
            setattr(self.prior_pipe, name[6:], value)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """A folder holding every component (a combined pipeline's ``save_pretrained``), or a decoder
        checkpoint whose README.md names its prior (the hub's kandinsky-2-2-decoder)."""
        hub_keys = ("cache_dir", "revision", "local_files_only", "token")
        folder = resolve_model_path(pretrained_model_name_or_path, **{k: kwargs.get(k) for k in hub_keys})
        index = read_config_file(os.path.join(folder, cls.config_name))
        if all(f"prior_{name}" in index for name in ("prior", "text_encoder", "tokenizer", "scheduler")):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls._from_decoder_and_prior(pretrained_model_name_or_path, folder, kwargs)

    @classmethod
    def _from_decoder_and_prior(cls, decoder_path, folder, kwargs):
        connected = _connected_pipes(folder)
        if "prior" not in connected:
            raise ValueError(
                f"{decoder_path} is a Kandinsky 2.2 decoder without a prior: its README.md names none (diffusers "
                "reads `prior:` from the model card) and its model_index.json has no prior_* components."
            )
        # Ref: diffusers _update_init_kwargs_with_connected_pipeline: the prior loads with the same
        # options except scheduler ones; prior_<name> arguments go to it without the prefix.
        prior_kwargs = {k: v for k, v in kwargs.items() if "scheduler" not in k and not k.startswith("prior_")
                        and k not in _DECODER_COMPONENTS}
        prior_kwargs.update({k[len("prior_"):]: v for k, v in kwargs.items() if k.startswith("prior_")})
        decoder_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("prior_")}
        prior = KandinskyV22PriorPipeline.from_pretrained(connected["prior"], **prior_kwargs)
        decoder = cls._decoder_class.from_pretrained(decoder_path, **decoder_kwargs)
        pipeline = cls(unet=decoder.unet, scheduler=decoder.scheduler, movq=decoder.movq, prior_prior=prior.prior,
                       prior_image_encoder=prior.image_encoder, prior_text_encoder=prior.text_encoder,
                       prior_tokenizer=prior.tokenizer, prior_scheduler=prior.scheduler,
                       prior_image_processor=prior.image_processor)
        pipeline.name_or_path = str(decoder_path)
        return pipeline

    def enable_model_cpu_offload(self, gpu_id: Optional[int] = None, device: Union[torch.device, str] = "cuda"):
        """Ref: diffusers' combined pipeline offloads both inner pipelines; each sends its models back
        to the host at the end of its part of the call."""
        if not torch.cuda.is_available():
            return super().enable_model_cpu_offload(gpu_id, device)  # warns once, stays on the CPU
        self.prior_pipe.enable_model_cpu_offload(gpu_id=gpu_id, device=device)
        self.decoder_pipe.enable_model_cpu_offload(gpu_id=gpu_id, device=device)
        object.__setattr__(self, "_offload_device", self._offload_target(gpu_id, device))
        object.__setattr__(self, "_offload_mode", "model")

    def enable_sequential_cpu_offload(self, gpu_id: Optional[int] = None, device: Union[torch.device, str] = "cuda"):
        if not torch.cuda.is_available():
            return super().enable_sequential_cpu_offload(gpu_id, device)  # warns once, stays on the CPU
        self.prior_pipe.enable_sequential_cpu_offload(gpu_id=gpu_id, device=device)
        self.decoder_pipe.enable_sequential_cpu_offload(gpu_id=gpu_id, device=device)
        object.__setattr__(self, "_offload_device", self._offload_target(gpu_id, device))
        object.__setattr__(self, "_offload_mode", "sequential")

    def remove_all_hooks(self):
        self.prior_pipe.remove_all_hooks()
        self.decoder_pipe.remove_all_hooks()
        object.__setattr__(self, "_offload_device", None)

    def set_progress_bar_config(self, **kwargs):
        super().set_progress_bar_config(**kwargs)
        self.prior_pipe.set_progress_bar_config(**kwargs)
        self.decoder_pipe.set_progress_bar_config(**kwargs)


class KandinskyV22Img2ImgCombinedPipeline(_KandinskyV22CombinedPipeline):
    _decoder_class = KandinskyV22Img2ImgPipeline

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]],
        image: Union[torch.Tensor, PIL.Image.Image, List[torch.Tensor], List[PIL.Image.Image]],
        negative_prompt: Optional[Union[str, List[str]]] = None,
        num_inference_steps: int = 100,
        guidance_scale: float = 4.0,
        strength: float = 0.3,
        num_images_per_prompt: int = 1,
        height: int = 512,
        width: int = 512,
        prior_guidance_scale: float = 4.0,
        prior_num_inference_steps: int = 25,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: Optional[str] = "pil",
        callback: Optional[Callable] = None,
        callback_steps: int = 1,
        return_dict: bool = True,
        prior_callback_on_step_end: Optional[Callable] = None,
        prior_callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
    ):
        if callback is not None:
            raise NotImplementedError("the deprecated `callback`/`callback_steps` are not supported; use "
                                      "callback_on_step_end")
        # The two parts run under this pipeline's lock too (each inner pipeline also holds its own), so that
        # concurrent calls do not interleave one's prior with another's decoder.
        with self._engine_lock:
            # 1. The prior: negative_prompt reaches only it (diffusers' combined pipeline passes it nowhere
            # else), and `latents` are the prior's.
            image_embeds, negative_image_embeds = self.prior_pipe(
                prompt=prompt, negative_prompt=negative_prompt, num_images_per_prompt=num_images_per_prompt,
                num_inference_steps=prior_num_inference_steps, generator=generator, latents=latents,
                guidance_scale=prior_guidance_scale, output_type="pt", return_dict=False,
                callback_on_step_end=prior_callback_on_step_end,
                callback_on_step_end_tensor_inputs=prior_callback_on_step_end_tensor_inputs,
            )
            # 2. Ref: diffusers repeats a shorter prompt or image list to the embeddings' batch.
            image = [image] if isinstance(image, PIL.Image.Image) else image
            if isinstance(image, (list, tuple)) and len(image) < image_embeds.shape[0] \
                    and image_embeds.shape[0] % len(image) == 0:
                image = (image_embeds.shape[0] // len(image)) * list(image)
            # 3. The decoder, at height x width (512 x 512 by default, whatever the input size).
            return self.decoder_pipe(
                image=image, image_embeds=image_embeds, negative_image_embeds=negative_image_embeds, width=width,
                height=height, strength=strength, num_inference_steps=num_inference_steps, generator=generator,
                guidance_scale=guidance_scale, output_type=output_type, return_dict=return_dict,
                callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            )


class KandinskyV22InpaintCombinedPipeline(_KandinskyV22CombinedPipeline):
    _decoder_class = KandinskyV22InpaintPipeline

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]],
        image: Union[torch.Tensor, PIL.Image.Image, List[torch.Tensor], List[PIL.Image.Image]],
        mask_image: Union[torch.Tensor, PIL.Image.Image, List[torch.Tensor], List[PIL.Image.Image]],
        negative_prompt: Optional[Union[str, List[str]]] = None,
        num_inference_steps: int = 100,
        guidance_scale: float = 4.0,
        num_images_per_prompt: int = 1,
        height: int = 512,
        width: int = 512,
        prior_guidance_scale: float = 4.0,
        prior_num_inference_steps: int = 25,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        prior_callback_on_step_end: Optional[Callable] = None,
        prior_callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        if any(kwargs.get(k) is not None for k in ("prior_callback", "prior_callback_steps", "callback",
                                                   "callback_steps")):
            raise NotImplementedError("the deprecated `callback`/`callback_steps` (and prior_ ones) are not "
                                      "supported; use callback_on_step_end")
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in ("prior_callback", "prior_callback_steps", "callback", "callback_steps")}
        if kwargs:
            raise TypeError(f"__call__() got unexpected keyword arguments {sorted(kwargs)}")
        # The two parts run under this pipeline's lock too (each inner pipeline also holds its own), so that
        # concurrent calls do not interleave one's prior with another's decoder.
        with self._engine_lock:
            # 1. The prior: negative_prompt reaches only it, and `latents` are the prior's (as diffusers').
            image_embeds, negative_image_embeds = self.prior_pipe(
                prompt=prompt, negative_prompt=negative_prompt, num_images_per_prompt=num_images_per_prompt,
                num_inference_steps=prior_num_inference_steps, generator=generator, latents=latents,
                guidance_scale=prior_guidance_scale, output_type="pt", return_dict=False,
                callback_on_step_end=prior_callback_on_step_end,
                callback_on_step_end_tensor_inputs=prior_callback_on_step_end_tensor_inputs,
            )
            # 2. Ref: diffusers repeats a shorter image or mask list to the embeddings' batch.
            image = [image] if isinstance(image, PIL.Image.Image) else image
            mask_image = [mask_image] if isinstance(mask_image, PIL.Image.Image) else mask_image
            if isinstance(image, (list, tuple)) and len(image) < image_embeds.shape[0] \
                    and image_embeds.shape[0] % len(image) == 0:
                image = (image_embeds.shape[0] // len(image)) * list(image)
            if isinstance(mask_image, (list, tuple)) and len(mask_image) < image_embeds.shape[0] \
                    and image_embeds.shape[0] % len(mask_image) == 0:
                mask_image = (image_embeds.shape[0] // len(mask_image)) * list(mask_image)
            # 3. The decoder, at height x width (512 x 512 by default, whatever the input size).
            return self.decoder_pipe(
                image=image, mask_image=mask_image, image_embeds=image_embeds,
                negative_image_embeds=negative_image_embeds, width=width, height=height,
                num_inference_steps=num_inference_steps, generator=generator, guidance_scale=guidance_scale,
                output_type=output_type, return_dict=return_dict, callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            )

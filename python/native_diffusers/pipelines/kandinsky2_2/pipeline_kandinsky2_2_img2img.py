"""diffusers' ``KandinskyV22Img2ImgPipeline`` on the native engine. Python checks the arguments
(with diffusers' messages) and converts images; the MoVQ encode, the denoising loop and the decode
run in the C++ engine."""

from typing import Callable, List, Optional, Union

import PIL.Image
import torch

from ... import _C
from ...image_processor import VaeImageProcessor, check_image_not_empty
from ..pipeline_utils import DiffusionPipeline, ImagePipelineOutput


class KandinskyV22Img2ImgPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "unet->movq"
    _callback_tensor_inputs = ["latents", "image_embeds", "negative_image_embeds"]

    def __init__(self, unet, scheduler, movq):
        super().__init__(unet=unet, scheduler=scheduler, movq=movq)
        # Ref: diffusers __init__: the MoVQ's scale factor and latent channels, bicubic resizing
        # with reducing_gap=1.
        movq_scale_factor = 2 ** (len(movq.config.block_out_channels) - 1) if movq is not None else 8
        movq_latent_channels = movq.config.latent_channels if movq is not None else 4
        self.movq_scale_factor = movq_scale_factor
        self.image_processor = VaeImageProcessor(
            vae_scale_factor=movq_scale_factor,
            vae_latent_channels=movq_latent_channels,
            resample="bicubic",
            reducing_gap=1,
        )

    _engine_class = _C.KandinskyV22Img2ImgPipeline
    _engine_component_names = ("unet", "scheduler", "movq")

    def _engine_components(self):
        return self.unet._engine, self.scheduler._engine, self.movq._engine

    @staticmethod
    def _embeds(value, name: str) -> Optional[torch.Tensor]:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, torch.Tensor) for v in value):
                raise TypeError(f"`{name}` must be a torch.Tensor or a list of them")
            value = torch.cat(list(value), dim=0)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor or a list of them, got {type(value).__name__}")
        return value

    @torch.no_grad()
    def __call__(
        self,
        image_embeds: Union[torch.Tensor, List[torch.Tensor]],
        image: Union[torch.Tensor, PIL.Image.Image, List[torch.Tensor], List[PIL.Image.Image]],
        negative_image_embeds: Union[torch.Tensor, List[torch.Tensor]],
        height: int = 512,
        width: int = 512,
        num_inference_steps: int = 100,
        guidance_scale: float = 4.0,
        strength: float = 0.3,
        num_images_per_prompt: int = 1,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[[int, int], None]] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        **kwargs,
    ):
        if kwargs.pop("callback", None) is not None or kwargs.pop("callback_steps", None) is not None:
            raise NotImplementedError(
                "the deprecated `callback`/`callback_steps` are not supported; use callback_on_step_end"
            )
        if kwargs:
            raise TypeError(f"__call__() got unexpected keyword arguments {sorted(kwargs)}")
        # Ref: diffusers __call__ (same messages where diffusers has them).
        self._check_callback_tensor_inputs(callback_on_step_end_tensor_inputs)
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type={output_type!r} is not supported; use 'pil', 'np', 'pt' or 'latent'.")
        self._check_step_counts(num_inference_steps, num_images_per_prompt)
        self._check_finite(guidance_scale=guidance_scale, strength=strength)
        # diffusers resizes the input image to height x width (any size, not only multiples of 8).
        self._check_height_width(height, width, divisible_by_8=False)
        self._guidance_scale = guidance_scale

        image_embeds = self._embeds(image_embeds, "image_embeds")
        if image_embeds is None:
            raise ValueError("`image_embeds` input cannot be undefined.")
        self._check_batch_size(image_embeds.shape[0] * num_images_per_prompt)
        negative_image_embeds = self._embeds(negative_image_embeds, "negative_image_embeds")
        if self.do_classifier_free_guidance and negative_image_embeds is None:
            raise ValueError("`negative_image_embeds` input cannot be undefined with guidance_scale > 1.")
        generators = self._generators(generator)

        if image is None:
            raise ValueError("`image` input cannot be undefined.")
        if not isinstance(image, list):
            image = [image]
        if not all(isinstance(i, (PIL.Image.Image, torch.Tensor)) for i in image):
            raise ValueError(
                f"Input is in incorrect format: {[type(i) for i in image]}. Currently, we only support  PIL image and"
                " pytorch tensor"
            )
        check_image_not_empty(image)  # an empty list would reach torch.cat below
        # Ref: diffusers passes (width, height) to preprocess(image, height, width): the swap is theirs.
        image = torch.cat([self.image_processor.preprocess(i, width, height) for i in image], dim=0)

        r = _C.KandinskyV22Img2ImgRequest()
        r.image_embeds = image_embeds
        if negative_image_embeds is not None:
            r.negative_image_embeds = negative_image_embeds
        r.image = image
        r.num_inference_steps = int(num_inference_steps)
        r.guidance_scale = float(guidance_scale)
        r.strength = float(strength)
        r.num_images_per_prompt = int(num_images_per_prompt)
        r.generators = generators
        r.output_latents = output_type == "latent"
        self._fill_loop_options(r, callback_on_step_end, callback_on_step_end_tensor_inputs)
        result = self._run_engine(r)
        result = self._take_result(result)
        image = result if output_type == "latent" else self.image_processor.postprocess(result, output_type)
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)

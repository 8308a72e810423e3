"""diffusers' ``KandinskyV22PriorPipeline`` on the native engine: text -> CLIP image embedding for
the Kandinsky 2.2 decoder. Python checks the arguments (with diffusers' messages); prompt encoding,
the UnCLIP denoising loop and the negative image embedding run in the C++ engine."""

from typing import Any, Callable, List, Optional, Union

import torch

from ... import _C
from ...utils.outputs import BaseOutput
from ..pipeline_utils import DiffusionPipeline


class KandinskyPriorPipelineOutput(BaseOutput):
    image_embeds: Any
    negative_image_embeds: Any


class KandinskyV22PriorPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->image_encoder->prior"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "text_encoder_hidden_states", "text_mask"]
    _engine_class = _C.KandinskyV22PriorPipeline
    _engine_component_names = ("prior", "image_encoder", "text_encoder", "tokenizer", "scheduler")
    # pipeline_utils skips image_encoder for SD; this pipeline needs it (get_zero_embed).
    _used_components = ("image_encoder",)

    def __init__(self, prior, image_encoder, text_encoder, tokenizer, scheduler, image_processor):
        super().__init__(prior=prior, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                         image_encoder=image_encoder, image_processor=image_processor)

    def _engine_components(self):
        return (self.prior._engine, self.image_encoder._engine if self.image_encoder is not None else None,
                self.text_encoder._engine, self.tokenizer._engine, self.scheduler._engine)

    def get_zero_embed(self, batch_size: int = 1, device=None) -> torch.Tensor:
        """Ref: diffusers get_zero_embed; computed once per pipeline, then reused."""
        zero = self._run_engine(int(batch_size), method="get_zero_embed")
        return zero if device is None else zero.to(device)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, List[str]],
        negative_prompt: Optional[Union[str, List[str]]] = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 25,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        guidance_scale: float = 4.0,
        output_type: Optional[str] = "pt",
        return_dict: bool = True,
        callback_on_step_end: Optional[Callable[[int, int], None]] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
    ):
        # Ref: diffusers KandinskyV22PriorPipeline.__call__ (same checks and messages).
        self._check_callback_tensor_inputs(callback_on_step_end_tensor_inputs)
        if isinstance(prompt, str):
            prompt = [prompt]
        elif not isinstance(prompt, list):
            raise ValueError(f"`prompt` has to be of type `str` or `list` but is {type(prompt)}")
        if not prompt:
            raise ValueError("`prompt` is an empty list; pass at least one prompt.")
        if isinstance(negative_prompt, str):
            negative_prompt = [negative_prompt]
        elif not isinstance(negative_prompt, list) and negative_prompt is not None:
            raise ValueError(f"`negative_prompt` has to be of type `str` or `list` but is {type(negative_prompt)}")
        if output_type not in ["pt", "np"]:
            # diffusers raises this after the loop; raising first spares the wasted run.
            raise ValueError(f"Only the output types `pt` and `np` are supported not output_type={output_type}")
        if negative_prompt is not None and len(negative_prompt) != len(prompt):
            raise ValueError(
                f"`negative_prompt`: {negative_prompt} has batch size {len(negative_prompt)}, but `prompt`:"
                f" {prompt} has batch size {len(prompt)}. Please make sure that passed `negative_prompt` matches"
                " the batch size of `prompt`."
            )
        if latents is not None and not isinstance(latents, torch.Tensor):
            raise TypeError(f"`latents` must be a torch.Tensor, got {type(latents).__name__}")
        self._check_step_counts(num_inference_steps, num_images_per_prompt)
        self._check_finite(guidance_scale=guidance_scale)
        self._check_batch_size(len(prompt) * num_images_per_prompt)
        if negative_prompt is None and self.image_encoder is None:
            raise ValueError("Without a `negative_prompt` the pipeline needs its `image_encoder` (get_zero_embed).")
        self._guidance_scale = guidance_scale

        r = _C.KandinskyV22PriorRequest()
        r.prompt = prompt
        r.negative_prompt = negative_prompt or []
        r.num_images_per_prompt = int(num_images_per_prompt)
        r.num_inference_steps = int(num_inference_steps)
        r.generators = self._generators(generator)
        if latents is not None:
            r.latents = latents
        r.guidance_scale = float(guidance_scale)
        self._fill_loop_options(r, callback_on_step_end, callback_on_step_end_tensor_inputs)
        out = self._run_engine(r)
        self._num_timesteps = out.num_timesteps
        image_embeddings, zero_embeds = out.image_embeds, out.negative_image_embeds
        if output_type == "np":
            image_embeddings = image_embeddings.cpu().numpy()
            zero_embeds = zero_embeds.cpu().numpy()
        if not return_dict:
            return (image_embeddings, zero_embeds)
        return KandinskyPriorPipelineOutput(image_embeds=image_embeddings, negative_image_embeds=zero_embeds)

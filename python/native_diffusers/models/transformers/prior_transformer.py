"""diffusers' ``PriorTransformer`` (the unCLIP / Kandinsky prior) on the native engine."""

from typing import Any, Optional

import torch

from ... import _C
from ...utils.outputs import BaseOutput
from ..modeling_utils import NativeModelMixin


class PriorTransformerOutput(BaseOutput):
    predicted_image_embedding: Any


class PriorTransformer(NativeModelMixin):
    """Text embedding -> CLIP image embedding. ``post_process_latents`` un-normalizes the result
    with the checkpoint's ``clip_mean`` and ``clip_std``."""

    _engine_class = _C.PriorTransformer

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: Any,
        proj_embedding: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ):
        for name, value in (("hidden_states", hidden_states), ("proj_embedding", proj_embedding),
                            ("encoder_hidden_states", encoder_hidden_states), ("attention_mask", attention_mask)):
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
        if not isinstance(timestep, torch.Tensor):
            if hasattr(timestep, "item"):
                timestep = timestep.item()
            if isinstance(timestep, bool) or not isinstance(timestep, (int, float)):
                raise TypeError(f"`timestep` must be a number or a tensor, got {type(timestep).__name__}")
            # Ref: diffusers: torch.tensor([timesteps], dtype=torch.long), truncating a float.
            timestep = torch.tensor([timestep], dtype=torch.long)
        predicted = self._engine.forward(hidden_states, timestep, proj_embedding, encoder_hidden_states,
                                         attention_mask)
        if not return_dict:
            return (predicted,)
        return PriorTransformerOutput(predicted_image_embedding=predicted)

    def post_process_latents(self, prior_latents: torch.Tensor) -> torch.Tensor:
        return self._engine.post_process_latents(prior_latents)

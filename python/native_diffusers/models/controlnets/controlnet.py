"""diffusers' ``ControlNetModel`` on the native engine: the UNet's down half reading a conditioning
image, whose residuals guide a ``UNet2DConditionModel``."""

from typing import Any, Optional

import torch

from ... import _C
from ...utils.outputs import ControlNetOutput
from ..modeling_utils import NativeModelMixin


class ControlNetModel(NativeModelMixin):
    _engine_class = _C.ControlNetModel

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Any,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        class_labels: Optional[torch.Tensor] = None,
        timestep_cond: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        added_cond_kwargs: Optional[dict] = None,
        cross_attention_kwargs: Optional[dict] = None,
        guess_mode: bool = False,
        return_dict: bool = True,
    ):
        unsupported = {"class_labels": class_labels, "timestep_cond": timestep_cond, "attention_mask": attention_mask}
        for name, value in unsupported.items():
            if value is not None:
                raise NotImplementedError(f"`{name}` is not supported yet by the native ControlNetModel")
        if cross_attention_kwargs:
            raise NotImplementedError("cross_attention_kwargs is not supported yet by native_diffusers")
        for name, value in (("sample", sample), ("encoder_hidden_states", encoder_hidden_states),
                            ("controlnet_cond", controlnet_cond)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not torch.is_tensor(timestep):
            # Ref: diffusers ControlNetModel.forward: Python numbers become float32 or int64 tensors.
            dtype = torch.float32 if isinstance(timestep, float) else torch.int64
            timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
        added_cond_kwargs = added_cond_kwargs or {}
        unknown = set(added_cond_kwargs) - {"text_embeds", "time_ids"}
        if unknown:
            raise NotImplementedError(f"added_cond_kwargs {sorted(unknown)} are not supported yet")
        down, mid = self._engine.forward(
            sample, timestep, encoder_hidden_states, controlnet_cond, float(conditioning_scale), bool(guess_mode),
            added_cond_kwargs.get("text_embeds"), added_cond_kwargs.get("time_ids"),
        )
        if not return_dict:
            return (down, mid)
        return ControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid)

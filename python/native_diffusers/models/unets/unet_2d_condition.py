"""diffusers' ``UNet2DConditionModel`` on the native engine (SD 1.x/2.x/XL family and the Kandinsky 2.2 decoder)."""

import weakref
from typing import Any, Optional

import torch

from ... import _C
from ...utils.outputs import UNet2DConditionOutput
from ..modeling_utils import FusedProjectionsMixin, NativeModelMixin


# handle -> the Python model, for the op's fake (shape-only) implementation under torch.compile.
_LIVE_UNETS = weakref.WeakValueDictionary()


@torch.library.register_fake("native_diffusers::unet_forward")
def _unet_forward_fake(handle, sample, timestep, encoder_hidden_states, text_embeds=None, time_ids=None,
                       image_embeds=None, down_block_additional_residuals=None, mid_block_additional_residual=None,
                       class_labels=None):
    unet = _LIVE_UNETS[handle]
    batch, _, height, width = sample.shape
    return sample.new_empty((batch, unet.config.get("out_channels", 4), height, width), dtype=unet.dtype)


class UNet2DConditionModel(NativeModelMixin, FusedProjectionsMixin):
    """Its forward is one torch.library op (``native_diffusers::unet_forward``) with a fake
    implementation, so ``torch.compile(unet, fullgraph=True)`` traces a single opaque call."""

    _engine_class = _C.UNet2DConditionModel

    def __init__(self, engine, config, name_or_path):
        super().__init__(engine, config, name_or_path)
        self._handle = _C.register_unet(engine)
        _LIVE_UNETS[self._handle] = self
        weakref.finalize(self, _C.unregister_unet, self._handle)

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float):
        """FreeU (https://huggingface.co/papers/2309.11497) in the first two up blocks; off again while
        any factor is 0 or None, as in diffusers."""
        self._engine.set_freeu(*(0.0 if v is None else float(v) for v in (s1, s2, b1, b2)))

    def disable_freeu(self):
        self._engine.set_freeu(0.0, 0.0, 0.0, 0.0)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Any,
        encoder_hidden_states: Optional[torch.Tensor],
        class_labels: Optional[torch.Tensor] = None,
        timestep_cond: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        cross_attention_kwargs: Optional[dict] = None,
        added_cond_kwargs: Optional[dict] = None,
        down_block_additional_residuals: Optional[tuple] = None,
        mid_block_additional_residual: Optional[torch.Tensor] = None,
        down_intrablock_additional_residuals: Optional[tuple] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ):
        unsupported = {
            "timestep_cond": timestep_cond,
            "attention_mask": attention_mask,
            "down_intrablock_additional_residuals": down_intrablock_additional_residuals,
            "encoder_attention_mask": encoder_attention_mask,
        }
        for name, value in unsupported.items():
            if value is not None:
                raise NotImplementedError(f"`{name}` is not supported yet by the native UNet2DConditionModel")
        if not isinstance(sample, torch.Tensor):
            raise TypeError(f"sample must be a torch.Tensor, got {type(sample).__name__}")
        if encoder_hidden_states is not None and not isinstance(encoder_hidden_states, torch.Tensor):
            raise TypeError(
                f"encoder_hidden_states must be a torch.Tensor, got {type(encoder_hidden_states).__name__}"
            )
        if not torch.is_tensor(timestep):
            # Ref: diffusers get_time_embed: Python numbers become float32 or int64 tensors.
            dtype = torch.float32 if isinstance(timestep, float) else torch.int64
            timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
        added_cond_kwargs = added_cond_kwargs or {}
        unknown = set(added_cond_kwargs) - {"text_embeds", "time_ids", "image_embeds"}
        if unknown:
            raise NotImplementedError(f"added_cond_kwargs {sorted(unknown)} are not supported yet")
        for name, value in added_cond_kwargs.items():
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(f"added_cond_kwargs[{name!r}] must be a torch.Tensor, got {type(value).__name__}")
        args = (sample, timestep, encoder_hidden_states, added_cond_kwargs.get("text_embeds"),
                added_cond_kwargs.get("time_ids"), added_cond_kwargs.get("image_embeds"))
        if (down_block_additional_residuals is None) != (mid_block_additional_residual is None):
            # diffusers reads down residuals alone as a T2I-Adapter's (is_adapter), a path not built here.
            raise NotImplementedError(
                "down_block_additional_residuals and mid_block_additional_residual (a ControlNet's outputs) must be "
                "passed together; T2I-Adapter residuals are not supported yet by the native UNet2DConditionModel"
            )
        extra = {}
        if class_labels is not None:
            if not isinstance(class_labels, torch.Tensor):
                raise TypeError(f"class_labels must be a torch.Tensor, got {type(class_labels).__name__}")
            extra["class_labels"] = class_labels
        if down_block_additional_residuals is not None:
            extra["down_block_additional_residuals"] = list(down_block_additional_residuals)
            extra["mid_block_additional_residual"] = mid_block_additional_residual
        if torch.compiler.is_compiling():
            # Under torch.compile: the opaque op (errors surface as RuntimeError through the dispatcher).
            out = torch.ops.native_diffusers.unet_forward(self._handle, *args, **extra)
        else:
            # Eager: straight into the engine, so its errors keep their Python types (ValueError...).
            out = self._engine.forward(*args, **extra)
        if not return_dict:
            return (out,)
        return UNet2DConditionOutput(sample=out)

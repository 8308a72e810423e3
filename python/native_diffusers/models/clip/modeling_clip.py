"""transformers' CLIP encoders on the native engine: ``CLIPTextModel`` (SD 1.5),
``CLIPTextModelWithProjection`` (SDXL's second encoder, Kandinsky's prior) and
``CLIPVisionModelWithProjection`` (Kandinsky's prior image encoder)."""

from typing import Optional

import torch

from ... import _C
from ...utils.outputs import BaseModelOutputWithPooling, CLIPTextModelOutput, CLIPVisionModelOutput
from ..modeling_utils import NativeModelMixin


class _CLIPTextModelBase(NativeModelMixin):
    # transformers v5 loads in the checkpoint's own dtype unless told otherwise.
    default_dtype = "auto"
    _engine_class = _C.CLIPTextModel

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ):
        if position_ids is not None:
            raise NotImplementedError(f"position_ids is not supported by the native {type(self).__name__}")
        if input_ids is None:
            raise ValueError("You have to specify input_ids")
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
        result = self._wrap(self._engine.forward(input_ids, attention_mask, bool(output_hidden_states)))
        return result if return_dict is not False else result.to_tuple()


class CLIPTextModel(_CLIPTextModelBase):
    @staticmethod
    def _wrap(out):
        return BaseModelOutputWithPooling(
            last_hidden_state=out["last_hidden_state"],
            pooler_output=out["pooler_output"],
            hidden_states=out.get("hidden_states"),
        )


class CLIPTextModelWithProjection(_CLIPTextModelBase):
    _engine_class = _C.CLIPTextModelWithProjection

    @staticmethod
    def _wrap(out):
        return CLIPTextModelOutput(
            text_embeds=out["text_embeds"],
            last_hidden_state=out["last_hidden_state"],
            hidden_states=out.get("hidden_states"),
        )


class CLIPVisionModelWithProjection(NativeModelMixin):
    """ViT image tower plus ``visual_projection``; ``image_embeds`` is the projected class token."""

    default_dtype = "auto"
    main_input_name = "pixel_values"
    _engine_class = _C.CLIPVisionModelWithProjection

    def forward(
        self,
        pixel_values: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        interpolate_pos_encoding: bool = False,
        return_dict: Optional[bool] = None,
        **kwargs,
    ):
        if interpolate_pos_encoding:
            raise NotImplementedError(
                "interpolate_pos_encoding is not supported by the native CLIPVisionModelWithProjection"
            )
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        out = self._engine.forward(pixel_values, bool(output_hidden_states))
        result = CLIPVisionModelOutput(
            image_embeds=out["image_embeds"],
            last_hidden_state=out["last_hidden_state"],
            hidden_states=out.get("hidden_states"),
        )
        return result if return_dict is not False else result.to_tuple()

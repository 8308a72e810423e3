"""Output containers with diffusers' ``BaseOutput`` / transformers' ``ModelOutput`` behaviour:
attribute access, key access, and tuple-style indexing over the fields that are set."""

from collections import OrderedDict
from typing import Any, Tuple


class BaseOutput(OrderedDict):
    def __init__(self, **fields):
        super().__init__((k, v) for k, v in fields.items() if v is not None)

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in type(self).__annotations__:
            return None
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(self.values())


class BaseModelOutputWithPooling(BaseOutput):
    last_hidden_state: Any
    pooler_output: Any
    hidden_states: Any
    attentions: Any


class CLIPTextModelOutput(BaseOutput):
    text_embeds: Any
    last_hidden_state: Any
    hidden_states: Any
    attentions: Any


class UNet2DConditionOutput(BaseOutput):
    sample: Any


class DecoderOutput(BaseOutput):
    sample: Any
    commit_loss: Any  # VQModel.decode only, as diffusers


class AutoencoderKLOutput(BaseOutput):
    latent_dist: Any


class CLIPVisionModelOutput(BaseOutput):
    image_embeds: Any
    last_hidden_state: Any
    hidden_states: Any
    attentions: Any


class ControlNetOutput(BaseOutput):
    down_block_res_samples: Any
    mid_block_res_sample: Any

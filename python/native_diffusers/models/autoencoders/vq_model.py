"""diffusers' ``VQModel`` (Kandinsky 2.2's MoVQ) on the native engine."""

import torch

from ... import _C
from ...utils.outputs import BaseOutput, DecoderOutput
from ..modeling_utils import NativeModelMixin
from .vae import AutoencoderMixin


class VQEncoderOutput(BaseOutput):
    """diffusers' ``VQEncoderOutput``: ``latents``, the pre-quantization encoder output."""

    latents: torch.Tensor


class VQModel(NativeModelMixin, AutoencoderMixin):
    _engine_class = _C.VQModel

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        h = self._engine.encode(x)
        if not return_dict:
            return (h,)
        return VQEncoderOutput(latents=h)

    def decode(self, h: torch.Tensor, force_not_quantize: bool = False, return_dict: bool = True, shape=None):
        """Ref: diffusers VQModel.decode: quantizes to the nearest codebook vectors unless
        ``force_not_quantize``; ``shape`` only serves ``lookup_from_codebook``, which is unsupported."""
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"h must be a torch.Tensor, got {type(h).__name__}")
        dec, commit_loss = self._engine.decode(h, bool(force_not_quantize))
        if not return_dict:
            return dec, commit_loss
        return DecoderOutput(sample=dec, commit_loss=commit_loss)

    def forward(self, sample: torch.Tensor, return_dict: bool = True):
        h = self.encode(sample).latents
        dec = self.decode(h)
        if not return_dict:
            return dec.sample, dec.commit_loss
        return dec

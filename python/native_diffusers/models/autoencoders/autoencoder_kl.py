"""diffusers' ``AutoencoderKL`` on the native engine."""

from typing import Optional

import torch

from ... import _C
from ...utils.outputs import AutoencoderKLOutput, DecoderOutput
from ..modeling_utils import FusedProjectionsMixin, NativeModelMixin
from .vae import AutoencoderMixin, DiagonalGaussianDistribution


def _engine_switch(name: str) -> property:
    """A bool attribute of the model that lives on its engine."""

    def get(self) -> bool:
        return getattr(self._engine, name)

    def set(self, enabled: bool):
        setattr(self._engine, name, bool(enabled))

    return property(get, set)


class AutoencoderKL(NativeModelMixin, AutoencoderMixin, FusedProjectionsMixin):
    _engine_class = _C.AutoencoderKL
    tile_overlap_factor = 0.25

    # diffusers' flags, kept by the engine, which reads them at every encode and decode.
    use_tiling = _engine_switch("use_tiling")
    use_slicing = _engine_switch("use_slicing")

    @property
    def tile_sample_min_size(self) -> int:
        return self._engine.tile_sample_min_size

    @property
    def tile_latent_min_size(self) -> int:
        return self._engine.tile_latent_min_size

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        posterior = DiagonalGaussianDistribution(self._engine.encode(x))
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator: Optional[torch.Generator] = None):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        decoded = self._engine.decode(z)
        if not return_dict:
            return (decoded,)
        return DecoderOutput(sample=decoded)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True,
                generator: Optional[torch.Generator] = None):
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)

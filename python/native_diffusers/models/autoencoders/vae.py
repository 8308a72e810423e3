"""diffusers' ``DiagonalGaussianDistribution``: the VAE's latent distribution. Sampling runs in the
engine, drawing from the caller's ``torch.Generator`` exactly as diffusers' ``randn_tensor`` does. And
diffusers' ``AutoencoderMixin``: the tiling and slicing switches."""

from typing import Optional

import torch

from ... import _C


class AutoencoderMixin:
    """diffusers' ``AutoencoderMixin``: ``enable_tiling``/``enable_slicing`` and their opposites, for
    the models whose engine tiles and slices (the others raise ``NotImplementedError`` as in diffusers)."""

    def _switch(self, what: str, enabled: bool):
        if not hasattr(self._engine, f"use_{what}"):
            if enabled:
                raise NotImplementedError(f"{what.capitalize()} doesn't seem to be implemented for "
                                          f"{type(self).__name__}.")
            return
        setattr(self._engine, f"use_{what}", enabled)

    def enable_tiling(self):
        """Encode and decode images larger than the config's ``sample_size`` in overlapping tiles,
        blended together: the VAE's memory stays bounded whatever the image size."""
        self._switch("tiling", True)

    def disable_tiling(self):
        self._switch("tiling", False)

    def enable_slicing(self):
        """Encode and decode a batch one image at a time (same results, less memory)."""
        self._switch("slicing", True)

    def disable_slicing(self):
        self._switch("slicing", False)


class DiagonalGaussianDistribution:
    def __init__(self, parameters: torch.Tensor, deterministic: bool = False):
        if deterministic:
            raise NotImplementedError("deterministic=True is not supported")
        self.parameters = parameters
        self.mean, self.logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(self.logvar, -30.0, 20.0)
        self.deterministic = deterministic

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return _C.sample_diagonal_gaussian(self.parameters, generator)

    def mode(self) -> torch.Tensor:
        return self.mean

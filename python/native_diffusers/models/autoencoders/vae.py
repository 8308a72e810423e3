"""diffusers' ``DiagonalGaussianDistribution``: the VAE's latent distribution. Sampling runs in the
engine, drawing from the caller's ``torch.Generator`` exactly as diffusers' ``randn_tensor`` does."""

from typing import Optional

import torch

from ... import _C


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

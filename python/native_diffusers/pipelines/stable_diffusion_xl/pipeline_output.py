"""diffusers' ``StableDiffusionXLPipelineOutput``: ``.images`` (a list of PIL images, an array, a
tensor or latents, by ``output_type``)."""

from dataclasses import dataclass
from typing import Any


@dataclass
class StableDiffusionXLPipelineOutput:
    images: Any

    def __getitem__(self, index):
        return (self.images,)[index]

    def __iter__(self):
        return iter((self.images,))

"""diffusers' ``DDPMScheduler`` on the engine's ``DDPMScheduler``."""

from typing import Any, List, Optional, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_utils import SchedulerMixin


class DDPMSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


class DDPMScheduler(SchedulerMixin):
    """Denoising diffusion probabilistic models: ancestral sampling whose noise comes from
    ``generator``; ``variance_type`` picks the posterior variance, ``learned``/``learned_range`` read
    it from the model output's second half of channels. Ref: diffusers scheduling_ddpm.py."""

    @property
    def variance_type(self) -> str:
        return self.config.variance_type

    def set_timesteps(self, num_inference_steps: int = None, device: Union[str, torch.device] = None,
                      timesteps: Optional[List[int]] = None):
        if num_inference_steps is not None and timesteps is not None:
            raise ValueError("Can only pass one of `num_inference_steps` or `custom_timesteps`.")
        if timesteps is not None:
            timesteps = [int(t) for t in (timesteps.tolist() if hasattr(timesteps, "tolist") else timesteps)]
        self._set_timesteps(num_inference_steps, device, timesteps)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        prev_sample, pred_original_sample = self._step(model_output, timestep, sample, generator=generator)
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDPMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

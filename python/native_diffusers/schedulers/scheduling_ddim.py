"""diffusers' ``DDIMScheduler`` on the engine's ``DDIMScheduler``."""

from typing import Any, Optional, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_utils import SchedulerMixin


class DDIMSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


class DDIMScheduler(SchedulerMixin):
    """Denoising diffusion implicit models; ``eta`` > 0 adds noise drawn from ``generator``.
    Ref: diffusers scheduling_ddim.py."""

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device] = None):
        self._set_timesteps(num_inference_steps, device)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, eta: float = 0.0,
             use_clipped_model_output: bool = False, generator=None, variance_noise: Optional[torch.Tensor] = None,
             return_dict: bool = True):
        prev_sample, pred_original_sample = self._step(
            model_output, timestep, sample, eta=float(eta), use_clipped_model_output=use_clipped_model_output,
            generator=generator, variance_noise=variance_noise,
        )
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

"""diffusers' ``PNDMScheduler`` (SD 1.5's default) on the engine's ``PNDMScheduler``."""

from typing import Union

import torch

from .scheduling_utils import SchedulerMixin, SchedulerOutput


class PNDMScheduler(SchedulerMixin):
    """Pseudo numerical methods (Runge-Kutta warm-up, then linear multistep); with
    ``skip_prk_steps`` the first timestep is evaluated twice. Ref: diffusers scheduling_pndm.py."""

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device] = None):
        self._set_timesteps(num_inference_steps, device)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        prev_sample, _ = self._step(model_output, timestep, sample)
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

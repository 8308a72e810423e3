"""diffusers' ``DPMSolverMultistepScheduler`` on the engine's class of the same name."""

from typing import List, Optional, Union

import torch

from .scheduling_utils import SchedulerOutput, SigmaSchedulerMixin


class DPMSolverMultistepScheduler(SigmaSchedulerMixin):
    """DPM-Solver / DPM-Solver++ multistep (orders 1-3) and their SDE variants; "DPM++ 2M Karras"
    is ``use_karras_sigmas=True``. Ref: diffusers scheduling_dpmsolver_multistep.py."""

    def set_timesteps(self, num_inference_steps: int = None, device: Union[str, torch.device] = None,
                      mu: Optional[float] = None, timesteps: Optional[List[int]] = None):
        if mu is not None:
            raise ValueError("`mu` (dynamic shifting for flow sigmas) is not supported by native_diffusers.")
        if num_inference_steps is None and timesteps is None:
            raise ValueError("Must pass exactly one of `num_inference_steps` or `timesteps`.")
        if num_inference_steps is not None and timesteps is not None:
            raise ValueError("Can only pass one of `num_inference_steps` or `custom_timesteps`.")
        self._set_timesteps(num_inference_steps, device, timesteps)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             variance_noise: Optional[torch.Tensor] = None, return_dict: bool = True):
        prev_sample, _ = self._step(model_output, timestep, sample, generator=generator, variance_noise=variance_noise)
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

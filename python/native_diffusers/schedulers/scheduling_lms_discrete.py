"""diffusers' ``LMSDiscreteScheduler`` on the engine's ``LMSDiscreteScheduler``."""

from typing import Any, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_utils import SigmaSchedulerMixin, _to_timestep_tensor


class LMSDiscreteSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


class LMSDiscreteScheduler(SigmaSchedulerMixin):
    """Linear multistep in sigma space; the coefficients are the integrals diffusers takes with
    scipy's quad, computed in C++ without scipy. Ref: diffusers scheduling_lms_discrete.py."""

    _init_noise_sigma_is_tensor = True

    def get_lms_coefficient(self, order: int, t: int, current_order: int) -> float:
        """The integral over [sigmas[t], sigmas[t + 1]] of the Lagrange basis polynomial of
        ``current_order`` through the last ``order`` sigmas (diffusers' scipy ``quad`` result)."""
        return self._engine.get_lms_coefficient(int(order), int(t), int(current_order))

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device] = None):
        self._set_timesteps(num_inference_steps, device)

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        return self._engine.scale_model_input(sample, _to_timestep_tensor(timestep))

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, order: int = 4,
             return_dict: bool = True):
        prev_sample, pred_original_sample = self._step(model_output, timestep, sample, order=int(order))
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return LMSDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

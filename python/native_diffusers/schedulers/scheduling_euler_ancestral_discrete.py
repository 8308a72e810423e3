"""diffusers' ``EulerAncestralDiscreteScheduler`` on the engine's class of the same name."""

from typing import Any, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_euler_discrete import _reject_integer_timestep
from .scheduling_utils import SigmaSchedulerMixin, _to_timestep_tensor


class EulerAncestralDiscreteSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


class EulerAncestralDiscreteScheduler(SigmaSchedulerMixin):
    """Euler steps down to sigma_down plus fresh noise of size sigma_up from ``generator``.
    Ref: diffusers scheduling_euler_ancestral_discrete.py."""

    _init_noise_sigma_is_tensor = True

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device] = None):
        self._set_timesteps(num_inference_steps, device)

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        return self._engine.scale_model_input(sample, _to_timestep_tensor(timestep))

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        _reject_integer_timestep(timestep, type(self).__name__)
        prev_sample, pred_original_sample = self._step(model_output, timestep, sample, generator=generator)
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return EulerAncestralDiscreteSchedulerOutput(
            prev_sample=prev_sample, pred_original_sample=pred_original_sample
        )

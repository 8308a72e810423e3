"""diffusers' ``EulerDiscreteScheduler`` on the engine's ``EulerDiscreteScheduler``."""

from typing import Any, List, Optional, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_utils import SigmaSchedulerMixin, _to_timestep_tensor


class EulerDiscreteSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


def _reject_integer_timestep(timestep, name: str) -> None:
    # Ref: diffusers: an index from enumerate(timesteps) is a common mistake; refuse it.
    if isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)) and not isinstance(timestep, bool):
        raise ValueError(
            f"Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to `{name}.step()` is not "
            "supported. Make sure to pass one of the `scheduler.timesteps` as a timestep."
        )


class EulerDiscreteScheduler(SigmaSchedulerMixin):
    """Euler steps in sigma space (Karras et al. 2022, Algorithm 2); ``use_karras_sigmas`` and
    friends are config. Ref: diffusers scheduling_euler_discrete.py."""

    _init_noise_sigma_is_tensor = True

    def set_timesteps(self, num_inference_steps: int = None, device: Union[str, torch.device] = None,
                      timesteps: Optional[List[int]] = None, sigmas: Optional[List[float]] = None):
        if timesteps is not None and sigmas is not None:
            raise ValueError("Only one of `timesteps` or `sigmas` should be set.")
        if num_inference_steps is None and timesteps is None and sigmas is None:
            raise ValueError("Must pass exactly one of `num_inference_steps` or `timesteps` or `sigmas.")
        if num_inference_steps is not None and (timesteps is not None or sigmas is not None):
            raise ValueError("Can only pass one of `num_inference_steps` or `timesteps` or `sigmas`.")
        self._set_timesteps(num_inference_steps, device, timesteps, sigmas)

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        return self._engine.scale_model_input(sample, _to_timestep_tensor(timestep))

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, s_churn: float = 0.0,
             s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0, generator=None,
             return_dict: bool = True):
        _reject_integer_timestep(timestep, type(self).__name__)
        prev_sample, pred_original_sample = self._step(
            model_output, timestep, sample, s_churn=float(s_churn), s_tmin=float(s_tmin), s_tmax=float(s_tmax),
            s_noise=float(s_noise), generator=generator,
        )
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return EulerDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

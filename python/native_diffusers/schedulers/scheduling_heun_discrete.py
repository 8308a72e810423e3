"""diffusers' ``HeunDiscreteScheduler`` on the engine's ``HeunDiscreteScheduler``."""

from typing import Any, List, Optional, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_utils import SigmaSchedulerMixin, _to_timestep_tensor


class HeunDiscreteSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


class HeunDiscreteScheduler(SigmaSchedulerMixin):
    """Heun's method (Karras et al. 2022, Algorithm 1): ``order`` 2, every timestep after the
    first appears twice and is called twice. Ref: diffusers scheduling_heun_discrete.py."""

    _init_noise_sigma_is_tensor = True

    @property
    def state_in_first_order(self) -> bool:
        """True when the next ``step`` is the Euler half, False when it is the correction."""
        return self._engine.state_in_first_order

    def set_timesteps(self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device] = None,
                      num_train_timesteps: Optional[int] = None, timesteps: Optional[List[int]] = None):
        if num_inference_steps is None and timesteps is None:
            raise ValueError("Must pass exactly one of `num_inference_steps` or `custom_timesteps`.")
        if num_inference_steps is not None and timesteps is not None:
            raise ValueError("Can only pass one of `num_inference_steps` or `custom_timesteps`.")
        if num_train_timesteps is not None and num_train_timesteps != self.config.num_train_timesteps:
            raise ValueError(
                f"`num_train_timesteps={num_train_timesteps}` differs from the config's "
                f"{self.config.num_train_timesteps}; native_diffusers spaces timesteps over the config's range only."
            )
        self._set_timesteps(num_inference_steps, device, timesteps)

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        return self._engine.scale_model_input(sample, _to_timestep_tensor(timestep))

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        prev_sample, pred_original_sample = self._step(model_output, timestep, sample)
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return HeunDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

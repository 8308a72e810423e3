"""diffusers' ``UnCLIPScheduler`` on the engine's ``UnCLIPScheduler``."""

from typing import Any, Union

import torch

from ..utils.outputs import BaseOutput
from .scheduling_utils import SchedulerMixin


class UnCLIPSchedulerOutput(BaseOutput):
    prev_sample: Any
    pred_original_sample: Any


class UnCLIPScheduler(SchedulerMixin):
    """The Karlo unCLIP DDPM variant used by the Kandinsky prior: squaredcos_cap_v2 betas, timesteps
    round(i * (T - 1) / (n - 1)), and betas recomputed from ``prev_timestep`` when a step skips.
    Ref: diffusers scheduling_unclip.py."""

    # diffusers lists no compatible classes for it.
    _compatibles = []

    @property
    def variance_type(self) -> str:
        return self.config.variance_type

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device] = None):
        self._set_timesteps(num_inference_steps, device)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, prev_timestep=None,
             generator=None, return_dict: bool = True):
        if prev_timestep is not None:
            prev_timestep = int(prev_timestep.item() if hasattr(prev_timestep, "item") else prev_timestep)
        prev_sample, pred_original_sample = self._step(model_output, timestep, sample, generator=generator,
                                                       prev_timestep=prev_timestep)
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return UnCLIPSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

"""diffusers' ``UniPCMultistepScheduler`` on the engine's class of the same name."""

from typing import List, Optional, Union

import torch

from .scheduling_utils import SchedulerOutput, SigmaSchedulerMixin


class UniPCMultistepScheduler(SigmaSchedulerMixin):
    """UniPC: a multistep predictor plus a corrector that reuses the next model output (bh1/bh2,
    ``predict_x0``, ``disable_corrector``); Karras/exponential sigmas are config.
    Ref: diffusers scheduling_unipc_multistep.py."""

    def __init__(self, **kwargs):
        if kwargs.get("solver_p") is not None:
            raise ValueError(
                "`solver_p` (another scheduler as UniPC's predictor) is not supported by native_diffusers."
            )
        super().__init__(**kwargs)

    def set_timesteps(self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device] = None,
                      sigmas: Optional[List[float]] = None, mu: Optional[float] = None):
        if self.config.use_dynamic_shifting and mu is None:
            raise ValueError("`mu` must be passed when `use_dynamic_shifting` is set to be `True`")
        self._set_timesteps(num_inference_steps, device, None, sigmas)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        prev_sample, _ = self._step(model_output, timestep, sample)
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

"""diffusers' ``SchedulerMixin`` + ``ConfigMixin`` surface for the engine schedulers: construction
from keyword arguments, ``from_config`` (including another class's config, with diffusers'
``_use_default_values`` and hidden-key rules), ``from_pretrained``, ``save_pretrained``, and
argument translation. The schedule and every step are computed in C++ (``_C.Scheduler``)."""

import json
import logging
import math
import os
from enum import Enum
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from .. import _C
from ..configuration_utils import FrozenDict, read_config_file
from ..utils.outputs import BaseOutput

logger = logging.getLogger(__name__)

SCHEDULER_CONFIG_NAME = "scheduler_config.json"


class KarrasDiffusionSchedulers(Enum):
    """diffusers' list of schedulers that share SD's noise schedule (``_compatibles``)."""

    DDIMScheduler = 1
    DDPMScheduler = 2
    PNDMScheduler = 3
    LMSDiscreteScheduler = 4
    EulerDiscreteScheduler = 5
    HeunDiscreteScheduler = 6
    EulerAncestralDiscreteScheduler = 7
    DPMSolverMultistepScheduler = 8
    DPMSolverSinglestepScheduler = 9
    KDPM2DiscreteScheduler = 10
    KDPM2AncestralDiscreteScheduler = 11
    DEISMultistepScheduler = 12
    UniPCMultistepScheduler = 13
    DPMSolverSDEScheduler = 14
    EDMEulerScheduler = 15


class SchedulerOutput(BaseOutput):
    prev_sample: Any


def _json_safe(value: Any) -> Any:
    """JSON text the engine can parse: arrays become lists, and non-finite floats (diffusers'
    ``lambda_min_clipped=-inf``) become null, which the engine reads as the default."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@lru_cache(maxsize=None)
def _default_config(class_name: str) -> Tuple[Tuple[str, Any], ...]:
    engine = _C.make_scheduler(class_name, "{}", f"{class_name} defaults")
    return tuple(_decode_config(json.loads(engine.config_json())).items())


def _decode_config(config: Dict[str, Any]) -> Dict[str, Any]:
    # The one non-finite default: JSON has no -inf, the engine writes null.
    if "lambda_min_clipped" in config and config["lambda_min_clipped"] is None:
        config["lambda_min_clipped"] = -float("inf")
    return config


def _to_generators(generator) -> List[torch.Generator]:
    if generator is None:
        return []
    if isinstance(generator, (list, tuple)):
        return list(generator)
    return [generator]


def _to_timestep_tensor(timestep) -> torch.Tensor:
    if isinstance(timestep, torch.Tensor):
        return timestep.reshape(()) if timestep.numel() == 1 else timestep
    if hasattr(timestep, "item"):  # numpy scalar
        timestep = timestep.item()
    if isinstance(timestep, bool) or not isinstance(timestep, (int, float)):
        raise TypeError(f"`timestep` must be a number or a tensor, got {type(timestep).__name__}.")
    return torch.tensor(timestep)  # int -> int64, float -> float32, as torch compares a Python number


class SchedulerMixin:
    """Base of the Python faces of engine schedulers. A subclass's name is the engine class name."""

    config_name = SCHEDULER_CONFIG_NAME
    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    has_compatibles = True
    # diffusers: 1.0 (a float) for DDPM-style schedulers, a 0-d tensor for sigma-space ones.
    _init_noise_sigma_is_tensor = False

    def __init__(self, **kwargs):
        expected = dict(_default_config(type(self).__name__))
        for key in kwargs:
            if key not in expected:
                raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument '{key}'")
        self._build(kwargs, hidden={}, origin=f"{type(self).__name__} arguments")

    # -- config -------------------------------------------------------------------------------
    def _build(self, init_dict: Dict[str, Any], hidden: Dict[str, Any], origin: str) -> None:
        name = type(self).__name__
        self._engine = _C.make_scheduler(name, json.dumps(_json_safe(init_dict)), origin)
        config = _decode_config(json.loads(self._engine.config_json()))
        # Ref: diffusers register_to_config: keys the caller did not pass took their defaults;
        # from_config of another class leaves those out, so each class keeps its own default.
        used_defaults = [k for k in config if k not in init_dict]
        if used_defaults:
            config["_use_default_values"] = used_defaults
        if "_class_name" in hidden:
            hidden = {**hidden, "_class_name": name}
        config.update(hidden)
        self._internal_dict = FrozenDict(config)

    @property
    def config(self) -> FrozenDict:
        return self._internal_dict

    @classmethod
    def _get_compatibles(cls):
        from .. import schedulers

        names = set([cls.__name__] + cls._compatibles)
        return [getattr(schedulers, n) for n in sorted(names) if hasattr(schedulers, n)]

    @property
    def compatibles(self):
        return self._get_compatibles()

    @classmethod
    def extract_init_dict(cls, config_dict: Dict[str, Any], **kwargs):
        """Ref: diffusers ConfigMixin.extract_init_dict. Returns (init_dict, unused_kwargs, hidden)."""
        used_defaults = config_dict.get("_use_default_values", [])
        config_dict = {k: v for k, v in config_dict.items() if k not in used_defaults and k != "_use_default_values"}
        original_dict = dict(config_dict)
        expected_keys = set(dict(_default_config(cls.__name__)))
        # Keys that belong to compatible classes only are kept for them, not passed here.
        compatible_keys = set()
        for c in cls._get_compatibles():
            compatible_keys |= set(dict(_default_config(c.__name__)))
        compatible_keys -= expected_keys
        config_dict = {k: v for k, v in config_dict.items() if k not in compatible_keys}
        orig_cls_name = config_dict.pop("_class_name", cls.__name__)
        if (
            isinstance(orig_cls_name, str)
            and orig_cls_name != cls.__name__
            and orig_cls_name in _C.scheduler_class_names()
        ):
            unexpected = set(dict(_default_config(orig_cls_name))) - expected_keys
            config_dict = {k: v for k, v in config_dict.items() if k not in unexpected}
        elif not isinstance(orig_cls_name, (str, list, tuple)):
            raise ValueError(
                "Make sure that the `_class_name` is of type string or list of string (for custom pipelines)."
            )
        config_dict = {k: v for k, v in config_dict.items() if not k.startswith("_")}
        init_dict = {}
        for key in expected_keys:
            if key in kwargs and key in config_dict:
                config_dict[key] = kwargs.pop(key)
            if key in kwargs:
                init_dict[key] = kwargs.pop(key)
            elif key in config_dict:
                init_dict[key] = config_dict.pop(key)
        if config_dict:
            logger.warning(
                f"The config attributes {config_dict} were passed to {cls.__name__}, but are not expected and will be "
                f"ignored. Please verify your {cls.config_name} configuration file."
            )
        unused_kwargs = {**config_dict, **kwargs}
        hidden = {k: v for k, v in original_dict.items() if k not in init_dict}
        return init_dict, unused_kwargs, hidden

    @classmethod
    def from_config(cls, config: Union[FrozenDict, Dict[str, Any]] = None, return_unused_kwargs=False, **kwargs):
        """Ref: diffusers ConfigMixin.from_config; ``config`` may be another scheduler's ``.config``."""
        origin = kwargs.pop("_origin", f"{cls.__name__}.from_config")
        if "pretrained_model_name_or_path" in kwargs:
            config = kwargs.pop("pretrained_model_name_or_path")
        if config is None:
            raise ValueError("Please make sure to provide a config as the first positional argument.")
        if not isinstance(config, dict):
            # diffusers' deprecated form: a path instead of a config.
            return cls.from_pretrained(config, return_unused_kwargs=return_unused_kwargs, **kwargs)
        init_dict, unused_kwargs, hidden = cls.extract_init_dict(dict(config), **kwargs)
        scheduler = cls.__new__(cls)
        scheduler._build(init_dict, hidden, origin)
        unused_kwargs = {**unused_kwargs, **hidden}
        return (scheduler, unused_kwargs) if return_unused_kwargs else scheduler

    @classmethod
    def load_config(
        cls, pretrained_model_name_or_path, subfolder: Optional[str] = None, **hub_kwargs
    ) -> Dict[str, Any]:
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isfile(path):
            config_file = path
        else:
            folder = _resolve_folder(path, **hub_kwargs)
            if subfolder:
                folder = os.path.join(folder, subfolder)
            config_file = os.path.join(folder, cls.config_name)
        config = read_config_file(config_file)
        config["_origin_file"] = config_file  # dropped as a private key by extract_init_dict
        return config

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: Optional[str] = None,
                        return_unused_kwargs=False, **kwargs):
        """Ref: diffusers SchedulerMixin.from_pretrained: reads ``scheduler_config.json``."""
        hub_kwargs = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "local_files_only", "token") if k in kwargs}
        for k in ("force_download", "proxies", "output_loading_info", "use_auth_token"):
            kwargs.pop(k, None)
        config = cls.load_config(pretrained_model_name_or_path, subfolder=subfolder, **hub_kwargs)
        origin = config.pop("_origin_file")
        return cls.from_config(config, return_unused_kwargs=return_unused_kwargs, _origin=origin, **kwargs)

    def save_config(self, save_directory, push_to_hub: bool = False, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        config = {k: v for k, v in self.config.items() if k != "_use_default_values"}
        config["_class_name"] = type(self).__name__
        config.setdefault("_diffusers_version", "0.40.0")
        with open(os.path.join(save_directory, self.config_name), "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")

    save_pretrained = save_config

    # -- state --------------------------------------------------------------------------------
    @property
    def timesteps(self) -> torch.Tensor:
        return self._engine.timesteps

    @property
    def num_inference_steps(self) -> Optional[int]:
        return self._engine.num_inference_steps

    @property
    def order(self) -> int:
        return self._engine.order

    @property
    def init_noise_sigma(self):
        value = self._engine.init_noise_sigma
        return value if self._init_noise_sigma_is_tensor else float(value)

    @property
    def betas(self) -> torch.Tensor:
        return self._engine.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._engine.alphas_cumprod

    def _set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None) -> None:
        if device is not None and not isinstance(device, torch.device):
            device = torch.device(device)
        if num_inference_steps is not None:
            num_inference_steps = int(num_inference_steps)
        self._engine.set_timesteps(
            num_inference_steps, device, _as_float_list(timesteps), _as_float_list(sigmas),
        )

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.tensor(timesteps)
        return self._engine.add_noise(original_samples, noise, timesteps.reshape(-1))

    def _step(self, model_output, timestep, sample, **options) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        generator = options.pop("generator", None)
        return self._engine.step(model_output, _to_timestep_tensor(timestep), sample,
                                 generators=_to_generators(generator), **options)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def __repr__(self) -> str:
        body = json.dumps({"_class_name": type(self).__name__, **{k: v for k, v in self.config.items()}},
                          indent=2, sort_keys=True, default=str)
        return f"{type(self).__name__} {body}"


class SigmaSchedulerMixin(SchedulerMixin):
    """Schedulers with a step index (diffusers' Euler family, DPM-Solver): sigmas, begin_index."""

    @property
    def sigmas(self) -> torch.Tensor:
        return self._engine.sigmas

    @property
    def step_index(self) -> Optional[int]:
        return self._engine.step_index

    @property
    def begin_index(self) -> Optional[int]:
        return self._engine.begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._engine.set_begin_index(int(begin_index))


def _as_float_list(values) -> List[float]:
    if values is None:
        return []
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [float(v) for v in values]


def _resolve_folder(path: str, **hub_kwargs) -> str:
    try:
        from ..utils.hub_utils import resolve_model_path
    except ImportError:  # the hub resolver is optional for local folders
        resolve_model_path = None
    if resolve_model_path is not None:
        return resolve_model_path(path, **hub_kwargs)
    if not os.path.isdir(path):
        raise OSError(f"{path} is not a local folder and the hub resolver is unavailable.")
    return path

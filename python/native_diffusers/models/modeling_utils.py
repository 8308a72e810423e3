"""What every engine-backed model shares on the Python side: finding its files, reading its config,
choosing its dtype, and ``.to()``. The weights and the compute live in the C++ engine; this class
only translates the diffusers/transformers calling conventions."""

import os
from typing import Any, Dict, Optional, Tuple

import torch

from .. import _C
from ..configuration_utils import FrozenDict, read_config_file
from ..utils.hub_utils import load_pickle_state_dict, resolve_model_path

_DTYPE_NAMES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}


def parse_torch_dtype(torch_dtype: Any = None, dtype: Any = None) -> Any:
    """Accepts ``torch_dtype`` (diffusers, older transformers) or ``dtype`` (newer transformers).
    Returns a torch.dtype, "auto", or None."""
    if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
        raise ValueError(f"`torch_dtype`={torch_dtype} and `dtype`={dtype} disagree; pass only one of them.")
    value = dtype if dtype is not None else torch_dtype
    if value is None or value == "auto" or isinstance(value, torch.dtype):
        if isinstance(value, torch.dtype) and not value.is_floating_point:
            raise ValueError(f"`torch_dtype` must be a floating-point dtype, got {value}.")
        return value
    if isinstance(value, str):
        name = value.replace("torch.", "")
        if name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
        raise ValueError(f"Unknown `torch_dtype` '{value}'; expected one of {sorted(_DTYPE_NAMES)} or 'auto'.")
    raise TypeError(f"`torch_dtype` must be a torch.dtype or a string, got {type(value).__name__}.")


class NativeModelMixin(torch.nn.Module):
    """Base of the Python faces of engine models. Subclasses name their ``_engine_class`` (a class
    of ``native_diffusers._C`` with ``from_safetensors`` and ``from_state_dict``)."""

    _engine_class: Any = None

    config_name = "config.json"
    # transformers models default to the checkpoint's dtype ("auto"); diffusers models to float32.
    default_dtype: Any = torch.float32

    def __init__(self, engine: Any, config: Dict[str, Any], name_or_path: str):
        super().__init__()
        self._engine = engine
        self._internal_dict = FrozenDict(config)
        self.name_or_path = name_or_path

    @property
    def config(self) -> FrozenDict:
        return self._internal_dict

    @property
    def dtype(self) -> torch.dtype:
        return self._engine.dtype

    @property
    def device(self) -> torch.device:
        return self._engine.device

    def num_parameters(self) -> int:
        return self._engine.num_parameters()

    def to(self, *args, **kwargs):
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(
                f"{type(self).__name__}.to() only accepts floating point dtypes, but got desired dtype={dtype}"
            )
        self._engine.to(device, dtype)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(torch.device("cuda", device) if isinstance(device, int) else (device or "cuda"))

    def half(self):
        return self.to(torch.float16)

    def float(self):
        return self.to(torch.float32)

    def bfloat16(self):
        return self.to(torch.bfloat16)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name_or_path={self.name_or_path!r}, dtype={self.dtype}, device={self.device})"

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: "str | os.PathLike",
        subfolder: Optional[str] = None,
        torch_dtype: Any = None,
        dtype: Any = None,
        variant: Optional[str] = None,
        use_safetensors: Optional[bool] = None,
        cache_dir: Optional[str] = None,
        revision: Optional[str] = None,
        local_files_only: Optional[bool] = None,
        token: Optional[str] = None,
        **kwargs,
    ):
        folder = resolve_model_path(
            pretrained_model_name_or_path,
            subfolder=subfolder,
            cache_dir=cache_dir,
            revision=revision,
            local_files_only=local_files_only,
            token=token,
        )
        config_path = os.path.join(folder, cls.config_name)
        config = read_config_file(config_path)
        requested = parse_torch_dtype(torch_dtype, dtype)
        if requested is None:
            requested = cls.default_dtype
        engine_dtype = None if requested == "auto" else requested
        fmt, files = _C.find_weight_files(folder, variant, use_safetensors)
        if fmt == "safetensors":
            engine = cls._load_engine_from_files(config_path, files, engine_dtype)
        else:
            state_dict = load_pickle_state_dict(files)
            engine = cls._load_engine_from_state_dict(config_path, state_dict, files[0], engine_dtype)
        return cls(engine, config, str(pretrained_model_name_or_path))

    @classmethod
    def _load_engine_from_files(cls, config_path: str, files: Tuple[str, ...], dtype):
        return cls._engine_class.from_safetensors(config_path, list(files), dtype)

    @classmethod
    def _load_engine_from_state_dict(cls, config_path: str, state_dict: Dict[str, torch.Tensor], origin: str, dtype):
        return cls._engine_class.from_state_dict(config_path, state_dict, origin, dtype)


class FusedProjectionsMixin:
    """diffusers' ``fuse_qkv_projections``/``unfuse_qkv_projections`` (experimental there too): each
    self-attention layer makes query, key and value with one GEMM, each cross-attention layer key and
    value, as diffusers' ``FusedAttnProcessor2_0`` does. Unlike diffusers, the separate projections
    are not kept beside the fused ones, so fusing adds no memory; unfusing splits them back out."""

    def fuse_qkv_projections(self):
        self._engine.fuse_qkv_projections()

    def unfuse_qkv_projections(self):
        self._engine.unfuse_qkv_projections()

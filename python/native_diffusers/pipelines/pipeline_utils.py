"""diffusers' ``DiffusionPipeline`` surface: loading every component a checkpoint's
``model_index.json`` names, ``components``, ``.to()``, and the progress-bar configuration. The
components are engine-backed; the denoising loop itself runs in the engine."""

import inspect
import math
import numbers
import os
import threading
import warnings
import weakref
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from .. import _C
from ..configuration_utils import FrozenDict, read_config_file
from ..utils.hub_utils import resolve_model_path


def _component_classes() -> Dict[str, Any]:
    # Imported lazily: the pipeline module is imported by the package __init__.
    from .. import models, schedulers

    classes = {name: getattr(models, name) for name in ("CLIPTextModel", "CLIPTextModelWithProjection",
                                                        "CLIPTokenizer", "UNet2DConditionModel", "AutoencoderKL",
                                                        "CLIPVisionModelWithProjection", "CLIPImageProcessor",
                                                        "PriorTransformer", "ControlNetModel")}
    classes["CLIPImageProcessorPil"] = models.CLIPImageProcessor  # transformers 5 without torchvision
    classes["CLIPTokenizerFast"] = models.CLIPTokenizer  # the same tokenizer, as transformers v5 has it
    classes["VQModel"] = models.VQModel
    for name in schedulers.__all__:
        classes[name] = getattr(schedulers, name)
    return classes


# Components that diffusers' checkpoints carry but that do not change the image of a
# generation: they load as None, with a note (the safety checker only blanks flagged images).
# Only for pipelines that do not use them: a class listing one in _used_components loads it.
_SKIPPED_COMPONENTS = {"safety_checker", "feature_extractor", "image_encoder", "watermarker"}


_WARNED = set()


def _warn_once(message: str):
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message)


def _load_model_component(component_class, folder, variant=None, **kwargs):
    """Ref: diffusers _identify_model_variants: a pipeline-level ``variant`` applies to the
    components that have it; the others load their plain weights (with a warning)."""
    try:
        return component_class.from_pretrained(folder, variant=variant, **kwargs)
    except OSError:
        if variant is None:
            raise
        model = component_class.from_pretrained(folder, variant=None, **kwargs)
        warnings.warn(f"{os.path.basename(folder)} has no '{variant}' variant weights; loaded its default weights.")
        return model


def _component_entry(pipeline_class, name: str, index: Dict[str, Any], folder: str):
    """The (library, class) pair that model_index.json gives component `name`, or None for a
    component left out. Ref: diffusers from_pretrained's load_module: an entry whose library is null
    (`[null, null]`, as save_pretrained writes a None component) is skipped; a pipeline without one
    of its non-optional components raises. Any other shape would fail later, far from its cause."""
    index_file = os.path.join(folder, "model_index.json")
    if name not in index or index[name] is None:
        if name in pipeline_class._optional_components or name in _SKIPPED_COMPONENTS:
            return None
        raise ValueError(
            f"{pipeline_class.__name__} expects a component `{name}`, but {index_file} "
            f"{'has no entry for it' if name not in index else 'gives it as null'}; pass `{name}=` to from_pretrained."
        )
    entry = index[name]
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2
            and all(part is None or isinstance(part, str) for part in entry)):
        raise ValueError(
            f"Component `{name}` in {index_file} must be a [library, class] pair of strings (or [null, null]), "
            f"got {entry!r}."
        )
    if entry[0] is None or entry[1] is None:
        if name in pipeline_class._optional_components or name in _SKIPPED_COMPONENTS:
            return None
        raise ValueError(
            f"{pipeline_class.__name__} expects a component `{name}`, but {index_file} gives it as {entry!r}; "
            f"pass `{name}=` to from_pretrained."
        )
    return entry


_ENGINE_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_ENGINE_LOCKS_GUARD = threading.Lock()


def _lock_of(owner) -> threading.RLock:
    # Kept beside the owner rather than on it, so that copying or pickling a scheduler still works.
    with _ENGINE_LOCKS_GUARD:
        lock = _ENGINE_LOCKS.get(owner)
        if lock is None:
            lock = _ENGINE_LOCKS[owner] = threading.RLock()
        return lock


class DiffusionPipeline:
    config_name = "model_index.json"
    _optional_components: list = []

    def __init__(self, **components):
        self.register_modules(**components)

    def register_modules(self, **modules):
        config = dict(getattr(self, "_internal_dict", {}) or {})
        for name, module in modules.items():
            config[name] = (
                (None, None) if module is None else (type(module).__module__.split(".")[0], type(module).__name__)
            )
            object.__setattr__(self, name, module)
        self._internal_dict = FrozenDict(config)

    @property
    def config(self) -> FrozenDict:
        return self._internal_dict

    def register_to_config(self, **kwargs):
        """diffusers' way to change a pipeline's own options (``requires_aesthetics_score``...)."""
        config = dict(self._internal_dict)
        config.update(kwargs)
        self._internal_dict = FrozenDict(config)
        self.__dict__.pop("_engine", None)

    @classmethod
    def _config_parameters(cls):
        """The ``__init__`` arguments that are options, not components (diffusers writes them into
        model_index.json with ``register_to_config``)."""
        params = inspect.signature(cls.__init__).parameters
        components = set(cls._expected_components())
        return [n for n, p in params.items() if n != "self" and n not in components
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @classmethod
    def _expected_components(cls):
        params = inspect.signature(cls.__init__).parameters
        return [n for n, p in params.items() if n != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    @property
    def components(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self._expected_components()}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        hub_kwargs = {k: kwargs.pop(k, None) for k in ("cache_dir", "revision", "local_files_only", "token")}
        torch_dtype = kwargs.pop("torch_dtype", None)
        dtype = kwargs.pop("dtype", None)
        variant = kwargs.pop("variant", None)
        use_safetensors = kwargs.pop("use_safetensors", None)
        folder = resolve_model_path(pretrained_model_name_or_path, **hub_kwargs)
        index = read_config_file(os.path.join(folder, cls.config_name))
        pipeline_class = cls._pipeline_class_for(index, folder)
        classes = _component_classes()
        loaded = {}
        for name in pipeline_class._expected_components():
            if name in kwargs:
                loaded[name] = kwargs.pop(name)
                continue
            entry = _component_entry(pipeline_class, name, index, folder)
            if entry is None:
                loaded[name] = None
                continue
            if name in _SKIPPED_COMPONENTS and name not in getattr(pipeline_class, "_used_components", ()):
                loaded[name] = None
                continue
            class_name = entry[1]
            if class_name not in classes:
                raise ValueError(
                    f"{pretrained_model_name_or_path} has component `{name}` of class {entry[0]}.{class_name}, which "
                    f"native_diffusers does not implement (model_index.json in {folder})."
                )
            component_class = classes[class_name]
            subfolder = os.path.join(folder, name)
            if not os.path.isdir(subfolder):
                raise OSError(f"Error no folder named {name} found in {folder} (listed in model_index.json).")
            if hasattr(component_class, "_engine_class"):
                loaded[name] = _load_model_component(
                    component_class, subfolder, torch_dtype=torch_dtype, dtype=dtype, variant=variant,
                    use_safetensors=use_safetensors,
                )
            else:
                loaded[name] = component_class.from_pretrained(subfolder)
        for name in pipeline_class._config_parameters():
            if name in kwargs:
                loaded[name] = kwargs.pop(name)
            elif name in index and not isinstance(index[name], (list, tuple)):
                loaded[name] = index[name]
        if kwargs:
            warnings.warn(
                f"Keyword arguments {sorted(kwargs)} are not expected by {pipeline_class.__name__} and will be"
                " ignored."
            )
        pipeline = pipeline_class(**loaded)
        pipeline.name_or_path = str(pretrained_model_name_or_path)
        return pipeline

    @classmethod
    def _pipeline_class_for(cls, index: Dict[str, Any], folder: str):
        if cls is not DiffusionPipeline:
            return cls
        from . import PIPELINE_CLASSES

        name = index.get("_class_name")
        if name not in PIPELINE_CLASSES:
            raise ValueError(f"Unknown `_class_name` {name!r} in {os.path.join(folder, cls.config_name)}.")
        return PIPELINE_CLASSES[name]

    # -- call helpers every pipeline shares ----------------------------------------------------
    @staticmethod
    def _check_unsupported_call_arguments(ip_adapter_image, ip_adapter_image_embeds, cross_attention_kwargs, kwargs):
        if ip_adapter_image is not None or ip_adapter_image_embeds is not None:
            raise NotImplementedError("IP-Adapter inputs are not supported yet by native_diffusers")
        if cross_attention_kwargs:
            raise NotImplementedError("cross_attention_kwargs is not supported yet by native_diffusers")
        DiffusionPipeline._check_callback_steps(kwargs.get("callback_steps"))
        if kwargs.pop("callback", None) is not None or kwargs.pop("callback_steps", None) is not None:
            raise NotImplementedError(
                "the deprecated `callback`/`callback_steps` are not supported; use callback_on_step_end"
            )
        if kwargs:
            raise TypeError(f"__call__() got unexpected keyword arguments {sorted(kwargs)}")

    def _check_prompt_pairs(self, prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, prompt_2=None,
                            negative_prompt_2=None):
        """Ref: diffusers check_inputs of the SD and SDXL pipelines, same messages and order (the
        ``*_2`` checks are SDXL's second text encoder), then the texts' and embeddings' own contracts."""
        if prompt is not None and prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `prompt`: {prompt} and `prompt_embeds`: {prompt_embeds}. Please make sure to"
                " only forward one of the two."
            )
        elif prompt_2 is not None and prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `prompt_2`: {prompt_2} and `prompt_embeds`: {prompt_embeds}. Please make sure to"
                " only forward one of the two."
            )
        elif prompt is None and prompt_embeds is None:
            raise ValueError(
                "Provide either `prompt` or `prompt_embeds`. Cannot leave both `prompt` and `prompt_embeds` undefined."
            )
        elif prompt is not None and (not isinstance(prompt, str) and not isinstance(prompt, list)):
            raise ValueError(f"`prompt` has to be of type `str` or `list` but is {type(prompt)}")
        elif isinstance(prompt, list) and not prompt:
            # A batch of no prompts: diffusers fails later, inside the text encoder.
            raise ValueError("`prompt` is an empty list; pass at least one prompt.")
        elif prompt_2 is not None and (not isinstance(prompt_2, str) and not isinstance(prompt_2, list)):
            raise ValueError(f"`prompt_2` has to be of type `str` or `list` but is {type(prompt_2)}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `negative_prompt`: {negative_prompt} and `negative_prompt_embeds`:"
                f" {negative_prompt_embeds}. Please make sure to only forward one of the two."
            )
        elif negative_prompt_2 is not None and negative_prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `negative_prompt_2`: {negative_prompt_2} and `negative_prompt_embeds`:"
                f" {negative_prompt_embeds}. Please make sure to only forward one of the two."
            )
        for name, texts in (("prompt", prompt), ("prompt_2", prompt_2), ("negative_prompt", negative_prompt),
                            ("negative_prompt_2", negative_prompt_2)):
            self._check_texts(name, texts)
        self._check_embeds("prompt_embeds", prompt_embeds)
        self._check_embeds("negative_prompt_embeds", negative_prompt_embeds)
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    "`prompt_embeds` and `negative_prompt_embeds` must have the same shape when passed directly, but"
                    f" got: `prompt_embeds` {prompt_embeds.shape} != `negative_prompt_embeds`"
                    f" {negative_prompt_embeds.shape}."
                )

    # -- argument contracts: each call argument's check written once, for every pipeline ------------
    @staticmethod
    def _number(name: str, value) -> float:
        # What diffusers' comparisons and arithmetic accept (ints, floats, numpy and 0-d torch scalars);
        # a string or None fails there with a TypeError, so it does here.
        if value is None or isinstance(value, (str, bytes)):
            raise TypeError(f"`{name}` has to be a number but is {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: a tensor of several values
            raise TypeError(f"`{name}` has to be a number but is {value!r}") from e

    @staticmethod
    def _check_finite(**values):
        """guidance_scale, eta, guidance_rescale, ...: numbers, and finite. diffusers lets NaN and inf
        through to the denoising loop, which then returns NaN images; a clear error instead."""
        for name, value in values.items():
            if not math.isfinite(DiffusionPipeline._number(name, value)):
                raise ValueError(f"`{name}` has to be a finite number but is {value}")

    @staticmethod
    def _check_texts(name: str, texts):
        # A list's items reach the tokenizer, which takes only strings (diffusers' check_inputs looks at
        # the list, not its items).
        if isinstance(texts, list) and not all(isinstance(text, str) for text in texts):
            kinds = sorted({type(text).__name__ for text in texts if not isinstance(text, str)})
            raise ValueError(f"`{name}` has to be a `str` or a `list` of `str`, but the list holds {', '.join(kinds)}")

    def _check_embeds(self, name: str, embeds):
        """prompt_embeds and negative_prompt_embeds: [batch, sequence, width] tensors whose width is the
        UNet's cross_attention_dim. diffusers lets any tensor through to the concatenation with the
        negative embeddings or to the UNet's attention, which fail there without naming the argument."""
        if embeds is None:
            return
        if not isinstance(embeds, torch.Tensor):
            raise TypeError(f"`{name}` has to be a torch.Tensor but is {type(embeds).__name__}")
        width = self._cross_attention_dim()
        if embeds.ndim != 3 or 0 in embeds.shape[:2] or (width is not None and embeds.shape[2] != width):
            raise ValueError(
                f"`{name}` has to have shape [batch, sequence, {width or 'width'}] (batch and sequence at least 1),"
                f" but has shape {list(embeds.shape)}"
            )

    def _cross_attention_dim(self) -> Optional[int]:
        config = getattr(getattr(self, "unet", None), "config", None) or {}
        dim = config.get("cross_attention_dim")
        return dim if isinstance(dim, int) else None

    @staticmethod
    def _check_latents(latents):
        # diffusers' prepare_latents takes any tensor given; the loop then fails on one that is not 4-d.
        if latents is None:
            return
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"`latents` has to be a torch.Tensor but is {type(latents).__name__}")
        if latents.ndim != 4 or latents.numel() == 0:
            raise ValueError(f"`latents` has to be a non-empty [batch, channels, height, width] tensor but has shape "
                             f"{list(latents.shape)}")

    @staticmethod
    def _check_strength(strength):
        # Ref: diffusers check_inputs; written so that NaN fails too (it compares false both ways).
        value = DiffusionPipeline._number("strength", strength)
        if not 0 <= value <= 1:
            raise ValueError(f"The value of strength should in [0.0, 1.0] but is {strength}")

    @staticmethod
    def _check_step_counts(num_inference_steps, num_images_per_prompt):
        """Integers, as diffusers' schedulers and batching need them (a float fails there with a
        TypeError); diffusers divides by num_images_per_prompt, so 0 is refused here."""
        for name, value in (("num_inference_steps", num_inference_steps),
                            ("num_images_per_prompt", num_images_per_prompt)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"`{name}` has to be an integer but is {value!r} of type {type(value).__name__}")
        if num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` has to be a positive integer but is {num_images_per_prompt}")

    @staticmethod
    def _check_callback_steps(callback_steps, required: bool = False):
        # Ref: diffusers check_inputs (same message); None means "not given" except where diffusers
        # requires it (the upscaler, whose default is 1).
        if (required or callback_steps is not None) and (not isinstance(callback_steps, int) or callback_steps <= 0):
            raise ValueError(
                f"`callback_steps` has to be a positive integer but is {callback_steps} of type"
                f" {type(callback_steps)}."
            )

    # diffusers allocates whatever is asked for, so an absurd size ends in an out-of-memory error (or the
    # OOM killer) minutes later; these bounds are far above any real use (a 16K image, 4096 images).
    _MAX_IMAGE_SIDE = 16384
    _MAX_IMAGES_PER_CALL = 4096

    @staticmethod
    def _check_height_width(height, width, divisible_by_8: bool = True):
        """The output size: whole numbers (diffusers accepts 512.0), positive, within _MAX_IMAGE_SIDE and,
        for the pipelines whose diffusers check_inputs asks it, divisible by 8 (diffusers' message). A
        None (the size taken from the input image) is not checked."""
        given = [(name, value) for name, value in (("height", height), ("width", width)) if value is not None]
        for name, value in given:
            if not DiffusionPipeline._number(name, value).is_integer():
                raise TypeError(f"`{name}` has to be an integer but is {value!r}")
        if divisible_by_8 and (height % 8 != 0 or width % 8 != 0):
            raise ValueError(f"`height` and `width` have to be divisible by 8 but are {height} and {width}.")
        for name, value in given:
            if not 0 < value <= DiffusionPipeline._MAX_IMAGE_SIDE:
                raise ValueError(
                    f"`{name}` has to be between 1 and {DiffusionPipeline._MAX_IMAGE_SIDE} pixels but is {value}"
                )

    @staticmethod
    def _check_batch_size(effective_batch_size: int):
        if effective_batch_size > DiffusionPipeline._MAX_IMAGES_PER_CALL:
            raise ValueError(
                f"This call would make {effective_batch_size} images (prompts x num_images_per_prompt); at most "
                f"{DiffusionPipeline._MAX_IMAGES_PER_CALL} are made in one call."
            )

    def _generators_for_batch(self, generator, effective_batch_size: int) -> List[torch.Generator]:
        self._check_batch_size(effective_batch_size)
        generators = self._generators(generator)
        # An empty list is a list of the wrong length (diffusers' prepare_latents), not "no generator".
        if (len(generators) > 1 or isinstance(generator, (list, tuple))) and len(generators) not in (
                1, effective_batch_size):
            raise ValueError(
                f"You have passed a list of generators of length {len(generators)}, but requested an effective batch"
                f" size of {effective_batch_size}. Make sure the batch size matches the length of the generators."
            )
        return generators

    @staticmethod
    def _check_output_type(output_type):
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type={output_type!r} is not supported; use 'pil', 'np', 'pt' or 'latent'.")

    def _check_callback_tensor_inputs(self, names):
        # Ref: diffusers check_inputs (the same message in every pipeline).
        if names is not None and not all(k in self._callback_tensor_inputs for k in names):
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, but found "
                f"{[k for k in names if k not in self._callback_tensor_inputs]}"
            )

    @staticmethod
    def _generators(generator) -> List[torch.Generator]:
        if generator is None:
            return []
        generators = list(generator) if isinstance(generator, (list, tuple)) else [generator]
        for g in generators:
            if not isinstance(g, torch.Generator):
                raise TypeError(f"`generator` must be a torch.Generator or a list of them, got {type(g).__name__}")
        return generators

    def _check_custom_schedule(self, timesteps, sigmas):
        # Ref: diffusers retrieve_timesteps: only schedulers whose set_timesteps takes them accept them.
        if timesteps is not None and sigmas is not None:
            raise ValueError(
                "Only one of `timesteps` or `sigmas` can be passed. Please choose one to set custom values"
            )
        accepted = set(inspect.signature(self.scheduler.set_timesteps).parameters)
        for name, value in (("timestep", timesteps), ("sigmas", sigmas)):
            if value is not None and (name + ("s" if name == "timestep" else "")) not in accepted:
                raise ValueError(
                    f"The current scheduler class {self.scheduler.__class__}'s `set_timesteps` does not support custom"
                    f" {name} schedules. Please check whether you are using the correct scheduler."
                )

    def _wrap_callback(self, callback, tensor_inputs):
        # The only path on which the engine calls into Python per step: the caller asked for it.
        # Pipelines with diffusers' `interrupt` property stop when the callback sets `_interrupt`.
        honours_interrupt = isinstance(getattr(type(self), "interrupt", None), property)
        if not callable(callback):
            raise TypeError(f"`callback_on_step_end` has to be callable but is {type(callback).__name__}")

        def on_step(step: int, timestep: torch.Tensor, tensors: Dict[str, torch.Tensor]):
            kwargs = {k: tensors.get(k) for k in tensor_inputs}
            outputs = callback(self, step, timestep, kwargs)
            if outputs is None:
                outputs = {}
            elif not isinstance(outputs, dict):
                raise TypeError(f"`callback_on_step_end` has to return a dict of tensors (or None), but returned "
                                f"{type(outputs).__name__}")
            replaced = {k: v for k, v in outputs.items() if k in self._callback_tensor_inputs}
            return _C.StepCallbackOutput(replaced, honours_interrupt and bool(self.__dict__.get("_interrupt")))

        return on_step

    # -- properties every diffusers pipeline here exposes after (or during) a call -------------
    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self):
        return self._num_timesteps

    def _take_result(self, result):
        """The engine's output tensor; its loop's timestep count becomes ``num_timesteps``."""
        self._num_timesteps = result.num_timesteps
        return result.output

    # -- device and dtype -------------------------------------------------------------------
    def _modules(self):
        return {k: v for k, v in self.components.items() if isinstance(v, torch.nn.Module)}

    def to(self, *args, **kwargs):
        offload_device = self.__dict__.get("_offload_device")
        if offload_device is not None:
            device = torch._C._nn._parse_to(*args, **kwargs)[0]
            if device is not None and device.type == "cuda":
                # Ref: diffusers DiffusionPipeline.to warns the same way, then moves the modules.
                warnings.warn(
                    "It seems like you have activated model offloading by calling `enable_model_cpu_offload`, but are "
                    "now manually moving the pipeline to GPU. It is strongly recommended against doing so as memory "
                    "gains from offloading are likely to be lost. Offloading automatically takes care of moving the "
                    "individual components to GPU when needed.",
                    stacklevel=2,
                )
            mode = self.__dict__.get("_offload_mode", "model")
            self.remove_all_hooks()
            for module in self._modules().values():
                module.to(*args, **kwargs)
            if device is None:
                # A dtype change keeps the offload (as diffusers' hooks stay), over the cast weights.
                getattr(self, f"enable_{mode}_cpu_offload")(device=offload_device)
            return self
        for module in self._modules().values():
            module.to(*args, **kwargs)
        return self

    # The _C pipeline class the engine runs, built from _engine_components(); None: this pipeline
    # composes others (Kandinsky's combined pipeline) or builds its engine itself.
    _engine_class = None
    # Components the engine holds: replacing one (pipe.scheduler = X.from_config(...)) drops the
    # engine so that the next call builds it over the new one.
    _engine_component_names = ()

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name in self._engine_component_names and "_engine" in self.__dict__:
            object.__setattr__(self, "_engine", None)

    def _engine_pipeline(self):
        """The engine pipeline over the current components: built on first use, and again after a
        component is replaced (the pipeline's __setattr__ drops it)."""
        if self._engine_class is None:
            return None
        engine = self.__dict__.get("_engine")
        if engine is None:
            engine = self._engine_class(*self._engine_components())
            self._adopt_engine(engine)
        return engine

    @property
    def _engine_lock(self) -> threading.RLock:
        """The lock this pipeline's engine runs under: its scheduler's, as the scheduler holds the state a
        run changes at every step (timesteps, step index, a multistep solver's history), and pipelines
        made from one another's components (``from_pipe``, ``Img2Img(**pipe.components)``) share it."""
        owner = self.__dict__.get("scheduler")
        return _lock_of(owner if owner is not None else self)

    def _run_engine(self, request, method: str = "run"):
        """Runs one request on the engine pipeline holding the pipeline's lock. The engine keeps state
        between and during calls and runs with the GIL released, so two threads calling one pipeline
        mixed their runs (wrong images, at times a SIGSEGV in the scheduler's step): held here, they run
        one after the other and each gets the images it would get alone. Re-entrant, so that a step
        callback may call back into the pipeline."""
        with self._engine_lock:
            # Reset inside the lock: a step callback setting `_interrupt` stops its own run only.
            self._interrupt = False
            return getattr(self._engine_pipeline(), method)(request)

    def _fill_run_options(self, r, *, batch_size, num_inference_steps, guidance_scale, num_images_per_prompt, eta,
                          generator, output_type, timesteps=None, sigmas=None, latents=None,
                          callback_on_step_end=None, callback_on_step_end_tensor_inputs=None, guidance_rescale=0.0):
        """The request fields every SD-family call sets the same way, after diffusers' checks."""
        self._check_output_type(output_type)
        self._check_custom_schedule(timesteps, sigmas)
        self._check_step_counts(num_inference_steps, num_images_per_prompt)
        self._check_finite(guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, eta=eta)
        r.generators = self._generators_for_batch(generator, batch_size * num_images_per_prompt)
        r.num_inference_steps = int(num_inference_steps)
        r.timesteps = [float(t) for t in timesteps] if timesteps is not None else []
        r.sigmas = [float(s) for s in sigmas] if sigmas is not None else []
        r.guidance_scale = float(guidance_scale)
        r.guidance_rescale = float(guidance_rescale)
        r.num_images_per_prompt = int(num_images_per_prompt)
        r.eta = float(eta)
        if latents is not None:
            self._check_latents(latents)
            r.latents = latents
        r.output_latents = output_type == "latent"
        self._fill_loop_options(r, callback_on_step_end, callback_on_step_end_tensor_inputs)

    def _fill_loop_options(self, r, callback_on_step_end, callback_on_step_end_tensor_inputs):
        """The denoising loop's options (the engine's LoopOptions) that every pipeline sets alike."""
        r.progress_bar = self._progress_bar_options()
        if callback_on_step_end is not None:
            r.callback_on_step_end = self._wrap_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)

    def _postprocess(self, result, output_type):
        output = self._take_result(result)
        if output_type == "latent":
            return output
        return self.image_processor.postprocess(output, output_type=output_type)

    def _adopt_engine(self, engine):
        # A rebuilt engine (a component was replaced) keeps the pipeline's offload setting.
        object.__setattr__(self, "_engine", engine)
        offload_device = self.__dict__.get("_offload_device")
        mode = self.__dict__.get("_offload_mode", "model")
        if offload_device is not None and hasattr(engine, f"enable_{mode}_cpu_offload"):
            getattr(engine, f"enable_{mode}_cpu_offload")(offload_device)

    @property
    def _execution_device(self) -> torch.device:
        offload_device = self.__dict__.get("_offload_device")
        return offload_device if offload_device is not None else self.device

    @property
    def device(self) -> torch.device:
        for module in self._modules().values():
            return module.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for module in self._modules().values():
            return module.dtype
        return torch.float32

    # -- memory and attention options the guide calls ---------------------------------------
    @staticmethod
    def _offload_target(gpu_id: Optional[int], device: Union[torch.device, str]) -> torch.device:
        # Ref: diffusers enable_model_cpu_offload: gpu_id, else the device's index, else 0.
        torch_device = torch.device(device)
        index = gpu_id if gpu_id is not None else (torch_device.index if torch_device.index is not None else 0)
        return torch.device(torch_device.type, index)

    def enable_model_cpu_offload(self, gpu_id: Optional[int] = None, device: Union[torch.device, str] = "cuda"):
        """Each model lives in pinned host memory and comes to the GPU only while the engine runs it,
        in the order of ``model_cpu_offload_seq``; the call ends with every model back on the host.
        Without a CUDA device, warns once and leaves the pipeline on the CPU, so the guide's snippets
        run unchanged (diffusers raises there). Calling it again re-installs the same offload."""
        if not torch.cuda.is_available():
            _warn_once("enable_model_cpu_offload(): no CUDA device, so the pipeline stays on the CPU.")
            return
        target = self._offload_target(gpu_id, device)
        engine = self._engine_pipeline()
        if engine is None or not hasattr(engine, "enable_model_cpu_offload"):
            _warn_once(f"enable_model_cpu_offload(): {type(self).__name__} has no per-model offloading yet; the whole "
                       f"pipeline moves to {target} instead.")
            self.to(target)
            return
        object.__setattr__(self, "_offload_device", target)
        object.__setattr__(self, "_offload_mode", "model")
        engine.enable_model_cpu_offload(target)

    def enable_sequential_cpu_offload(self, gpu_id: Optional[int] = None, device: Union[torch.device, str] = "cuda"):
        """Every model lives in pinned host memory; while the engine runs one, its blocks (ResNet and
        transformer blocks, attention layers, samplers) stream to the GPU as the forward reaches them,
        the next block copying on a side stream while the current one computes."""
        if not torch.cuda.is_available():
            _warn_once("enable_sequential_cpu_offload(): no CUDA device, so the pipeline stays on the CPU.")
            return
        target = self._offload_target(gpu_id, device)
        engine = self._engine_pipeline()
        if engine is None or not hasattr(engine, "enable_sequential_cpu_offload"):
            _warn_once(f"enable_sequential_cpu_offload(): {type(self).__name__} has no block streaming yet; model "
                       "offloading (one whole model on the GPU at a time) is used instead.")
            self.enable_model_cpu_offload(gpu_id, device)
            return
        object.__setattr__(self, "_offload_device", target)
        object.__setattr__(self, "_offload_mode", "sequential")
        engine.enable_sequential_cpu_offload(target)

    def remove_all_hooks(self):
        """Ends model offloading: every model stays where it is now (on the host), as diffusers leaves it."""
        engine = self.__dict__.get("_engine")
        if engine is not None and hasattr(engine, "remove_model_cpu_offload"):
            engine.remove_model_cpu_offload()
        object.__setattr__(self, "_offload_device", None)

    def maybe_free_model_hooks(self):
        """Nothing to do: the engine sends every offloaded model back to the host at the end of each call."""

    def reset_device_map(self):
        self.hf_device_map = None

    def enable_xformers_memory_efficient_attention(self, attention_op: Optional[Callable] = None):
        """Never raises, with or without xformers installed: selects the engine's own fused attention
        kernel (flash-style, on CUDA float16/bfloat16; already the default), which is what xformers
        would provide. The choice is process-wide, as the kernel is the engine's."""
        self._memory_efficient_attention = True
        _C.set_fused_attention_enabled(True)

    def disable_xformers_memory_efficient_attention(self):
        """Back to PyTorch's scaled_dot_product_attention inside the engine (same results within
        float16 rounding)."""
        self._memory_efficient_attention = False
        _C.set_fused_attention_enabled(False)

    def enable_attention_slicing(self, slice_size: Optional[Union[str, int]] = "auto"):
        """Accepted for compatibility; SDPA already bounds attention memory, and slicing does not change
        the result."""
        self._attention_slice_size = slice_size

    def disable_attention_slicing(self):
        self._attention_slice_size = None

    def enable_vae_slicing(self):
        """diffusers' older spelling of ``pipeline.vae.enable_slicing()``: the VAE codes a batch one
        image at a time (same pixels, less memory)."""
        self._pipeline_vae().enable_slicing()

    def disable_vae_slicing(self):
        self._pipeline_vae().disable_slicing()

    def enable_vae_tiling(self):
        """diffusers' older spelling of ``pipeline.vae.enable_tiling()``: images larger than the VAE's
        ``sample_size`` are coded in overlapping, blended tiles (diffusers' tiled result)."""
        self._pipeline_vae().enable_tiling()

    def disable_vae_tiling(self):
        self._pipeline_vae().disable_tiling()

    def _pipeline_vae(self):
        vae = getattr(self, "vae", None)
        if vae is None:
            raise AttributeError(f"{type(self).__name__} has no `vae` to tile or slice")
        return vae

    # -- progress bar -----------------------------------------------------------------------
    def set_progress_bar_config(self, **kwargs):
        """tqdm's options for the bar the engine draws: ``disable``, ``desc``, ``leave`` and
        ``position`` change it; tqdm's other options are accepted and have nothing to change."""
        self._progress_bar_config = kwargs

    def _progress_bar_options(self):
        config = getattr(self, "_progress_bar_config", {})
        options = _C.ProgressBarOptions()
        options.disable = bool(config.get("disable", False))
        options.desc = str(config.get("desc") or "")
        options.leave = bool(config.get("leave", True))
        options.position = int(config.get("position") or 0)
        return options

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={type(v).__name__ if v is not None else None}" for k, v in self.components.items())
        return f"{type(self).__name__}({parts})"


class StableDiffusionMixin:
    """What diffusers' ``StableDiffusionMixin`` gives the SD and SDXL pipelines besides the VAE
    switches (every pipeline here has those): FreeU, and fused QKV projections (the engine pipeline
    is rebuilt at the next call, so that an offload set up before re-copies the changed weights);
    and the ``interrupt`` property their loops honour (``pipe._interrupt = True`` in a step
    callback skips the remaining steps)."""

    @property
    def interrupt(self):
        return self.__dict__.get("_interrupt", False)

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float):
        """FreeU (https://huggingface.co/papers/2309.11497): b1/b2 amplify the backbone features, s1/s2
        attenuate the skip features' low frequencies in the first two up blocks."""
        if getattr(self, "unet", None) is None:
            raise ValueError("The pipeline must have `unet` for using FreeU.")
        self.unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)

    def disable_freeu(self):
        self.unet.disable_freeu()

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True):
        self.fusing_unet = False
        self.fusing_vae = False
        if vae and type(self.vae).__name__ != "AutoencoderKL":
            raise ValueError("`fuse_qkv_projections()` is only supported for the VAE of type `AutoencoderKL`.")
        self._release_engine_weights()
        if unet:
            self.fusing_unet = True
            self.unet.fuse_qkv_projections()
        if vae:
            self.fusing_vae = True
            self.vae.fuse_qkv_projections()

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True):
        for name, label, requested in (("unet", "UNet", unet), ("vae", "VAE", vae)):
            if not requested:
                continue
            if not getattr(self, f"fusing_{name}", False):
                warnings.warn(f"The {label} was not initially fused for QKV projections. Doing nothing.")
                continue
            self._release_engine_weights()
            getattr(self, name).unfuse_qkv_projections()
            setattr(self, f"fusing_{name}", False)

    def _release_engine_weights(self):
        # An offload holds host copies laid out for the current parameters: end it (the weights stay
        # on the host) and drop the engine pipeline; the next call rebuilds both over the new weights.
        engine = self.__dict__.get("_engine")
        if engine is not None and hasattr(engine, "remove_model_cpu_offload"):
            engine.remove_model_cpu_offload()
        object.__setattr__(self, "_engine", None)


class ImagePipelineOutput:
    """diffusers' ``StableDiffusionPipelineOutput``: ``.images`` and ``.nsfw_content_detected``."""

    def __init__(self, images, nsfw_content_detected=None):
        self.images = images
        self.nsfw_content_detected = nsfw_content_detected

    def __getitem__(self, index):
        return (self.images, self.nsfw_content_detected)[index]

    def __iter__(self):
        return iter((self.images, self.nsfw_content_detected))

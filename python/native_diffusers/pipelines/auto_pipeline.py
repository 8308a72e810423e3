"""diffusers' ``AutoPipelineForImage2Image``, ``AutoPipelineForText2Image`` and
``AutoPipelineForInpainting``: pick the pipeline of
a checkpoint's model family for the task, from the ``_class_name`` in its ``model_index.json``."""

import os

from ..configuration_utils import read_config_file
from ..utils.hub_utils import resolve_model_path
from .controlnet import (
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
)
from .kandinsky2_2 import KandinskyV22Img2ImgCombinedPipeline, KandinskyV22InpaintCombinedPipeline
from .stable_diffusion import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from .stable_diffusion_xl import (
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

# Ref: diffusers auto_pipeline.py, AUTO_IMAGE2IMAGE_PIPELINES_MAPPING and
# AUTO_TEXT2IMAGE_PIPELINES_MAPPING, keyed here by the pipeline classes a checkpoint's
# model_index.json may name (diffusers maps a family's pipelines to each other the same way).
_IMAGE2IMAGE_BY_CLASS_NAME = {
    "StableDiffusionPipeline": StableDiffusionImg2ImgPipeline,
    "StableDiffusionImg2ImgPipeline": StableDiffusionImg2ImgPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLImg2ImgPipeline,
    "StableDiffusionXLImg2ImgPipeline": StableDiffusionXLImg2ImgPipeline,
    # Ref: diffusers maps every Kandinsky 2.2 decoder pipeline to the combined (prior + decoder) one.
    "KandinskyV22Pipeline": KandinskyV22Img2ImgCombinedPipeline,
    "KandinskyV22CombinedPipeline": KandinskyV22Img2ImgCombinedPipeline,
    "KandinskyV22Img2ImgPipeline": KandinskyV22Img2ImgCombinedPipeline,
    "KandinskyV22Img2ImgCombinedPipeline": KandinskyV22Img2ImgCombinedPipeline,
    "KandinskyV22InpaintPipeline": KandinskyV22Img2ImgCombinedPipeline,
    "KandinskyV22InpaintCombinedPipeline": KandinskyV22Img2ImgCombinedPipeline,
}
_TEXT2IMAGE_BY_CLASS_NAME = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionImg2ImgPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
    "StableDiffusionXLImg2ImgPipeline": StableDiffusionXLPipeline,
}
# Ref: diffusers AUTO_INPAINT_PIPELINES_MAPPING.
_INPAINT_BY_CLASS_NAME = {
    # Ref: diffusers maps every SDXL pipeline, the refiner's image-to-image one included, to SDXL inpainting.
    "StableDiffusionXLPipeline": StableDiffusionXLInpaintPipeline,
    "StableDiffusionXLImg2ImgPipeline": StableDiffusionXLInpaintPipeline,
    "StableDiffusionXLInpaintPipeline": StableDiffusionXLInpaintPipeline,
    "StableDiffusionPipeline": StableDiffusionInpaintPipeline,
    "StableDiffusionImg2ImgPipeline": StableDiffusionInpaintPipeline,
    "StableDiffusionInpaintPipeline": StableDiffusionInpaintPipeline,
    "StableDiffusionControlNetPipeline": StableDiffusionInpaintPipeline,
    "StableDiffusionControlNetImg2ImgPipeline": StableDiffusionInpaintPipeline,
    "StableDiffusionControlNetInpaintPipeline": StableDiffusionInpaintPipeline,
    # Ref: diffusers maps every Kandinsky 2.2 decoder pipeline to the combined (prior + decoder) one.
    "KandinskyV22Pipeline": KandinskyV22InpaintCombinedPipeline,
    "KandinskyV22CombinedPipeline": KandinskyV22InpaintCombinedPipeline,
    "KandinskyV22Img2ImgPipeline": KandinskyV22InpaintCombinedPipeline,
    "KandinskyV22Img2ImgCombinedPipeline": KandinskyV22InpaintCombinedPipeline,
    "KandinskyV22InpaintPipeline": KandinskyV22InpaintCombinedPipeline,
    "KandinskyV22InpaintCombinedPipeline": KandinskyV22InpaintCombinedPipeline,
}
_IMAGE2IMAGE_BY_CLASS_NAME["StableDiffusionXLInpaintPipeline"] = StableDiffusionXLImg2ImgPipeline
_TEXT2IMAGE_BY_CLASS_NAME["StableDiffusionXLInpaintPipeline"] = StableDiffusionXLPipeline
for _name in ("StableDiffusionInpaintPipeline", "StableDiffusionControlNetInpaintPipeline"):
    _IMAGE2IMAGE_BY_CLASS_NAME[_name] = StableDiffusionImg2ImgPipeline
    _TEXT2IMAGE_BY_CLASS_NAME[_name] = StableDiffusionPipeline
# Ref: diffusers AutoPipeline.from_pretrained/from_pipe: a `controlnet` argument (or a ControlNet
# source pipeline) selects the family's "stable-diffusion-controlnet" pipeline for the task.
_CONTROLNET_FAMILIES = {
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionControlNetPipeline",
    "StableDiffusionControlNetImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "StableDiffusionControlNetInpaintPipeline",
}
_IMAGE2IMAGE_BY_CLASS_NAME.update({
    "StableDiffusionControlNetPipeline": StableDiffusionImg2ImgPipeline,
    "StableDiffusionControlNetImg2ImgPipeline": StableDiffusionImg2ImgPipeline,
})
_TEXT2IMAGE_BY_CLASS_NAME.update({
    "StableDiffusionControlNetPipeline": StableDiffusionPipeline,
    "StableDiffusionControlNetImg2ImgPipeline": StableDiffusionPipeline,
})


class _AutoPipeline:
    _mapping: dict = {}
    _controlnet_pipeline = None

    def __init__(self, *args, **kwargs):
        raise EnvironmentError(
            f"{self.__class__.__name__} is designed to be instantiated using the "
            f"`{self.__class__.__name__}.from_pretrained(pretrained_model_name_or_path)` or "
            f"`{self.__class__.__name__}.from_pipe(pipeline)` methods."
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_or_path, **kwargs):
        hub_kwargs = {k: kwargs.get(k) for k in ("cache_dir", "revision", "local_files_only", "token")}
        folder = resolve_model_path(pretrained_model_or_path, **hub_kwargs)
        index = read_config_file(os.path.join(folder, "model_index.json"))
        name = index.get("_class_name")
        if name not in cls._mapping:
            raise ValueError(
                f"AutoPipeline can't find a pipeline linked to {name} for None (model_index.json in {folder}); "
                f"native_diffusers' {cls.__name__} supports {sorted(cls._mapping)}."
            )
        if "controlnet" in kwargs and kwargs["controlnet"] is None:
            kwargs.pop("controlnet")
        target = cls._target(name, "controlnet" in kwargs)
        return target.from_pretrained(pretrained_model_or_path, **kwargs)

    @classmethod
    def _target(cls, name: str, with_controlnet: bool):
        if not with_controlnet:
            return cls._mapping[name]
        if name not in _CONTROLNET_FAMILIES or cls._controlnet_pipeline is None:
            raise ValueError(
                f"AutoPipeline can't find a pipeline linked to {name} with a ControlNet in native_diffusers"
            )
        return cls._controlnet_pipeline

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        """Ref: diffusers AutoPipeline*.from_pipe: the same components in the task's pipeline class,
        without loading anything again."""
        name = type(pipeline).__name__
        if name not in cls._mapping:
            raise ValueError(f"AutoPipeline can't find a pipeline linked to {name} for None")
        with_controlnet = kwargs.get("controlnet", getattr(pipeline, "controlnet", None)) is not None
        if "controlnet" in kwargs and kwargs["controlnet"] is None:
            kwargs.pop("controlnet")
        target = cls._target(name, with_controlnet)
        components = {k: v for k, v in pipeline.components.items() if k in target._expected_components()}
        components.update({k: kwargs.pop(k) for k in list(kwargs) if k in target._expected_components()})
        options = {k: v for k, v in pipeline.config.items()
                   if k in target._config_parameters() and not isinstance(v, (list, tuple))}
        options.update({k: kwargs.pop(k) for k in list(kwargs) if k in target._config_parameters()})
        if kwargs:
            raise ValueError(f"unexpected keyword arguments {sorted(kwargs)} for {target.__name__}.from_pipe")
        new = target(**components, **options)
        new.name_or_path = getattr(pipeline, "name_or_path", None)
        return new


class AutoPipelineForImage2Image(_AutoPipeline):
    _mapping = _IMAGE2IMAGE_BY_CLASS_NAME
    _controlnet_pipeline = StableDiffusionControlNetImg2ImgPipeline


class AutoPipelineForText2Image(_AutoPipeline):
    _mapping = _TEXT2IMAGE_BY_CLASS_NAME
    _controlnet_pipeline = StableDiffusionControlNetPipeline


class AutoPipelineForInpainting(_AutoPipeline):
    _mapping = _INPAINT_BY_CLASS_NAME
    _controlnet_pipeline = StableDiffusionControlNetInpaintPipeline

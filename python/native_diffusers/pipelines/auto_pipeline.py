"""diffusers' ``AutoPipelineForImage2Image``: picks the image-to-image pipeline of a checkpoint's
model family from the ``_class_name`` in its ``model_index.json``."""

import os

from ..configuration_utils import read_config_file
from ..utils.hub_utils import resolve_model_path
from .stable_diffusion import StableDiffusionImg2ImgPipeline

# Ref: diffusers auto_pipeline.py, AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, keyed here by the
# pipeline classes a checkpoint's model_index.json may name.
_IMAGE2IMAGE_BY_CLASS_NAME = {
    "StableDiffusionPipeline": StableDiffusionImg2ImgPipeline,
    "StableDiffusionImg2ImgPipeline": StableDiffusionImg2ImgPipeline,
}


class AutoPipelineForImage2Image:
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
        if name not in _IMAGE2IMAGE_BY_CLASS_NAME:
            raise ValueError(
                f"AutoPipeline can't find a pipeline linked to {name} for None (model_index.json in {folder}); "
                f"native_diffusers supports {sorted(_IMAGE2IMAGE_BY_CLASS_NAME)}."
            )
        return _IMAGE2IMAGE_BY_CLASS_NAME[name].from_pretrained(pretrained_model_or_path, **kwargs)

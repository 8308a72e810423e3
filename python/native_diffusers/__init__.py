"""native_diffusers: diffusers' image-to-image workflows on a native C++/CUDA engine.

Names mirror diffusers and transformers, so that switching is a change of import line."""

__version__ = "0.1.0"

import torch  # noqa: F401  (loads libtorch before the extension that links against it)

from . import _C
from .models import AutoencoderKL, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, UNet2DConditionModel
from .models import VQModel
from .schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from .pipelines import (
    AutoPipelineForImage2Image,
    AutoPipelineForText2Image,
    DiffusionPipeline,
    ImagePipelineOutput,
    KandinskyV22Img2ImgPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from .image_processor import VaeImageProcessor

__all__ = [
    "AutoPipelineForImage2Image",
    "AutoPipelineForText2Image",
    "AutoencoderKL",
    "CLIPTextModel",
    "CLIPTextModelWithProjection",
    "CLIPTokenizer",
    "DDIMScheduler",
    "DDPMScheduler",
    "DiffusionPipeline",
    "DPMSolverMultistepScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "ImagePipelineOutput",
    "KandinskyV22Img2ImgPipeline",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLPipeline",
    "UNet2DConditionModel",
    "UniPCMultistepScheduler",
    "VaeImageProcessor",
    "VQModel",
]

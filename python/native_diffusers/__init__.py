"""native_diffusers: diffusers' image-to-image workflows on a native C++/CUDA engine.

Names mirror diffusers and transformers, so that switching is a change of import line."""

__version__ = "0.1.0"

import torch  # noqa: F401  (loads libtorch before the extension that links against it)

from . import _C
from .models import AutoencoderKL, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, UNet2DConditionModel
from .models import VQModel
from .models import CLIPImageProcessor, CLIPVisionModelWithProjection, PriorTransformer
from .models import ControlNetModel
from .schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UnCLIPScheduler,
    UniPCMultistepScheduler,
)
from .pipelines import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DiffusionPipeline,
    ImagePipelineOutput,
    KandinskyV22Img2ImgCombinedPipeline,
    KandinskyV22Img2ImgPipeline,
    KandinskyV22InpaintCombinedPipeline,
    KandinskyV22InpaintPipeline,
    KandinskyV22PriorPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from .image_processor import VaeImageProcessor

__all__ = [
    "AutoPipelineForImage2Image",
    "AutoPipelineForInpainting",
    "AutoPipelineForText2Image",
    "AutoencoderKL",
    "CLIPImageProcessor",
    "CLIPTextModel",
    "CLIPTextModelWithProjection",
    "CLIPTokenizer",
    "CLIPVisionModelWithProjection",
    "ControlNetModel",
    "DDIMScheduler",
    "DDPMScheduler",
    "DiffusionPipeline",
    "DPMSolverMultistepScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "ImagePipelineOutput",
    "KandinskyV22Img2ImgCombinedPipeline",
    "KandinskyV22Img2ImgPipeline",
    "KandinskyV22InpaintCombinedPipeline",
    "KandinskyV22InpaintPipeline",
    "KandinskyV22PriorPipeline",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "PriorTransformer",
    "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusionControlNetInpaintPipeline",
    "StableDiffusionControlNetPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionPipeline",
    "StableDiffusionUpscalePipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
    "StableDiffusionXLPipeline",
    "UNet2DConditionModel",
    "UnCLIPScheduler",
    "UniPCMultistepScheduler",
    "VaeImageProcessor",
    "VQModel",
]

from .controlnet import (
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
)
from .auto_pipeline import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image
from .kandinsky2_2 import (
    KandinskyPriorPipelineOutput,
    KandinskyV22Img2ImgCombinedPipeline,
    KandinskyV22Img2ImgPipeline,
    KandinskyV22InpaintCombinedPipeline,
    KandinskyV22InpaintPipeline,
    KandinskyV22PriorPipeline,
)
from .pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from .stable_diffusion import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
)
from .stable_diffusion_xl import (
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    StableDiffusionXLPipelineOutput,
)

# Pipelines reachable from DiffusionPipeline.from_pretrained by model_index.json's _class_name.
PIPELINE_CLASSES = {
    "KandinskyV22Img2ImgCombinedPipeline": KandinskyV22Img2ImgCombinedPipeline,
    "KandinskyV22Img2ImgPipeline": KandinskyV22Img2ImgPipeline,
    "KandinskyV22InpaintCombinedPipeline": KandinskyV22InpaintCombinedPipeline,
    "KandinskyV22InpaintPipeline": KandinskyV22InpaintPipeline,
    "StableDiffusionControlNetImg2ImgPipeline": StableDiffusionControlNetImg2ImgPipeline,
    "StableDiffusionControlNetInpaintPipeline": StableDiffusionControlNetInpaintPipeline,
    "StableDiffusionControlNetPipeline": StableDiffusionControlNetPipeline,
    "StableDiffusionImg2ImgPipeline": StableDiffusionImg2ImgPipeline,
    "StableDiffusionInpaintPipeline": StableDiffusionInpaintPipeline,
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionUpscalePipeline": StableDiffusionUpscalePipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
    "StableDiffusionXLImg2ImgPipeline": StableDiffusionXLImg2ImgPipeline,
    "StableDiffusionXLInpaintPipeline": StableDiffusionXLInpaintPipeline,
    "KandinskyV22PriorPipeline": KandinskyV22PriorPipeline,
}

from .auto_pipeline import AutoPipelineForImage2Image
from .kandinsky2_2 import KandinskyPriorPipelineOutput, KandinskyV22PriorPipeline
from .pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from .stable_diffusion import StableDiffusionImg2ImgPipeline

# Pipelines reachable from DiffusionPipeline.from_pretrained by model_index.json's _class_name.
PIPELINE_CLASSES = {
    "KandinskyV22PriorPipeline": KandinskyV22PriorPipeline,
    "StableDiffusionImg2ImgPipeline": StableDiffusionImg2ImgPipeline,
}

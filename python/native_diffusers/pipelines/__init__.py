from .auto_pipeline import AutoPipelineForImage2Image
from .kandinsky2_2 import KandinskyV22Img2ImgPipeline
from .pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from .stable_diffusion import StableDiffusionImg2ImgPipeline

# Pipelines reachable from DiffusionPipeline.from_pretrained by model_index.json's _class_name.
PIPELINE_CLASSES = {"StableDiffusionImg2ImgPipeline": StableDiffusionImg2ImgPipeline}
PIPELINE_CLASSES["KandinskyV22Img2ImgPipeline"] = KandinskyV22Img2ImgPipeline

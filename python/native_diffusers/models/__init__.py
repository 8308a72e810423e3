from .autoencoders import AutoencoderKL, VQModel
from .clip import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)
from .controlnets import ControlNetModel
from .unets import UNet2DConditionModel
from .transformers import PriorTransformer

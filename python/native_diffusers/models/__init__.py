from .autoencoders import AutoencoderKL, VQModel
from .clip import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)
from .unets import UNet2DConditionModel
from .transformers import PriorTransformer

from .autoencoders import AutoencoderKL, VQModel
from .clip import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from .unets import UNet2DConditionModel

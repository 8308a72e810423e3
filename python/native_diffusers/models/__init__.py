from .autoencoders import AutoencoderKL
from .clip import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from .unets import UNet2DConditionModel

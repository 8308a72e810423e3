from .modeling_clip import CLIPTextModel, CLIPTextModelWithProjection
from .tokenization_clip import CLIPTokenizer

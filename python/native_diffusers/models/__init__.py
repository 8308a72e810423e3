from .clip import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .controlnet import ControlNetModel

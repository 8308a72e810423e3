from .autoencoder_kl import AutoencoderKL
from .vae import DiagonalGaussianDistribution
from .vq_model import VQModel

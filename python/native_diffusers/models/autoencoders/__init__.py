from .autoencoder_kl import AutoencoderKL
from .vae import DiagonalGaussianDistribution

"""What the pipeline parity tests share: random test images, and one call of diffusers' pipeline and
ours with the same arguments and the same torch.Generator seed."""

import numpy as np
import PIL.Image
import torch


def random_image(size: int, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def run_both(pipes, steps: int, **kwargs):
    """(ours, diffusers') images as arrays; ``seed`` (default 0) seeds each side's generator."""
    ref, ours = pipes
    seed = kwargs.pop("seed", 0)
    kwargs.setdefault("num_inference_steps", steps)
    kwargs.setdefault("output_type", "np")
    expected = ref(generator=torch.Generator().manual_seed(seed), **kwargs).images
    got = ours(generator=torch.Generator().manual_seed(seed), **kwargs).images
    return np.asarray(got), np.asarray(expected)

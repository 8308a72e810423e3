"""``python -m native_diffusers [CHECKPOINT]``: the main job, the guide's first call.

Loads ``AutoPipelineForImage2Image`` from a diffusers checkpoint (a folder or a hub id found in the
Hugging Face cache), runs image-to-image on an input image, and writes the result and a side-by-side
grid. Without a checkpoint it makes a small random-weight one and says so plainly."""

import argparse
import os
import sys
import tempfile

import numpy as np
import PIL.Image
import torch


def _default_init_image(size: int) -> PIL.Image.Image:
    """A smooth synthetic picture (no network to fetch the guide's cat): gradients and a disc."""
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    disc = ((x - 0.5) ** 2 + (y - 0.55) ** 2 < 0.08).astype(np.float64)
    rgb = np.stack([0.9 * x + 0.1 * disc, 0.6 * y + 0.3 * disc, 0.5 + 0.4 * disc * (1 - y)], axis=-1)
    return PIL.Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def _make_random(kind: str):
    def make(folder: str) -> str:
        from native_diffusers.utils import testing_utils

        if kind == "sd15":
            return testing_utils.make_tiny_sd_checkpoint(folder)
        if kind.startswith("sdxl"):
            return testing_utils.make_tiny_sdxl_checkpoint(folder, kind=kind.split("-")[1])
        return testing_utils.make_tiny_kandinsky22_checkpoints(folder)

    return make


_RANDOM_MODELS = {k: _make_random(k) for k in ("sd15", "sdxl-base", "sdxl-refiner", "kandinsky22")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m native_diffusers", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="diffusers checkpoint folder or hub id")
    parser.add_argument("--image", help="input image path or URL (default: a synthetic picture)")
    parser.add_argument(
        "--prompt", default="cat wizard, gandalf, lord of the rings, detailed, fantasy, cute, adorable"
    )
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=None, help="input size when no --image is given")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="out", help="output folder")
    parser.add_argument("--random-model", choices=sorted(_RANDOM_MODELS), default="sd15",
                        help="without CHECKPOINT: which random-weight checkpoint to make")
    args = parser.parse_args(argv)

    import native_diffusers as nd
    from native_diffusers.utils import load_image, make_image_grid

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = _RANDOM_MODELS[args.random_model](tmp)
            print(f"No checkpoint given: using a small RANDOM-WEIGHT {args.random_model} checkpoint made just now "
                  "(its images are noise-like by design; pass a real checkpoint folder or hub id for real images).")
        dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if args.device == "cuda" else None)
        pipeline = nd.AutoPipelineForImage2Image.from_pretrained(checkpoint, torch_dtype=dtype).to(args.device)
        size = args.size or (64 if args.checkpoint is None else 512)
        init_image = load_image(args.image) if args.image else _default_init_image(size)
        generator = torch.Generator("cpu").manual_seed(args.seed)
        image = pipeline(
            args.prompt, image=init_image, strength=args.strength, guidance_scale=args.guidance_scale,
            negative_prompt=args.negative_prompt, num_inference_steps=args.steps, generator=generator,
        ).images[0]

    os.makedirs(args.out, exist_ok=True)
    out_path = os.path.join(args.out, "image_to_image.png")
    grid_path = os.path.join(args.out, "image_to_image_grid.png")
    image.save(out_path)
    make_image_grid([init_image.resize(image.size), image], rows=1, cols=2).save(grid_path)
    print(f"pipeline: {type(pipeline).__name__} on {pipeline.device}, dtype {pipeline.dtype}")
    print(f"wrote {out_path} ({image.size[0]}x{image.size[1]}) and {grid_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

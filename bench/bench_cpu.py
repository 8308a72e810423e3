"""Ours vs diffusers on the CPU, side by side in one run: SD 1.5's real sizes in float32 and float16.

The guide loads every model with ``torch_dtype=torch.float16``. On a CPU without native half-precision
arithmetic, PyTorch's float16 convolutions take reference loops (30-270x slower than float32); the engine
computes those ops in float32 there and rounds back (``csrc/runtime/cpu_half_compute.h``). This script builds a
random-weight SD 1.5-sized checkpoint (speed does not depend on weight values) and prints, for each library:
the UNet step at batch 2 (classifier-free guidance) on 64x64 latents, in float32 and float16 — ours in float16
under each compute mode (``auto``, forced ``float32``, forced ``native``) — the VAE decode of one 512x512 image,
and one image-to-image call end to end (512x512, ``--steps`` x ``--strength``), with the CPU named.

    python bench/bench_cpu.py                      # the table in bench/RESULTS.md
    python bench/bench_cpu.py --diffusers-fp16 0   # skip diffusers' float16 UNet (minutes per step on AVX2)
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_img2img import build_checkpoint  # noqa: E402


def cpu_name() -> str:
    """The CPU's model name and the half-precision features that decide the compute path."""
    name, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    features = [f for f in ("avx2", "avx512f", "avx512_fp16", "avx512_bf16", "amx_bf16", "amx_fp16") if f in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(features) or 'no AVX2'}, {torch.get_num_threads()} threads"


def interleaved(fns: dict, runs: int) -> dict:
    """Median seconds per call of each function, the functions taking turns run by run (after one
    warm-up each), so that a change in the machine's load falls on all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def with_mode(mode, fn):
    """`fn` run under one CPU half-precision compute mode (native_diffusers only)."""
    from native_diffusers import _C

    def call():
        before = _C.cpu_half_compute_mode()
        _C.set_cpu_half_compute_mode(mode)
        try:
            return fn()
        finally:
            _C.set_cpu_half_compute_mode(before)

    return call


def unet_step(unet, dtype):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 64, 64, generator=g).to(dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g).to(dtype)
    t = torch.tensor(500)
    return lambda: unet(sample, t, context)


def vae_decode(vae, dtype):
    latents = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    return lambda: vae.decode(latents)


def image_to_image(pipe, image, args):
    return lambda: pipe("Astronaut in a jungle", image=image, strength=args.strength, num_inference_steps=args.steps,
                        generator=torch.Generator().manual_seed(0)).images[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--diffusers-fp16", type=int, default=1, help="time diffusers' float16 UNet (0: skip)")
    parser.add_argument("--checkpoint", default=None, help="an SD 1.5-sized folder to reuse (default: build one)")
    args = parser.parse_args()

    import diffusers

    import native_diffusers as nd
    from native_diffusers import _C

    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    f16 = torch.float16
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = args.checkpoint or build_checkpoint(tmp, "sd15", torch.float32)
        pipes = {}
        for label, dtype in (("float32", torch.float32), ("float16", f16)):
            pipes[("diffusers", label)] = diffusers.AutoPipelineForImage2Image.from_pretrained(
                path, torch_dtype=dtype, safety_checker=None)
            pipes[("native_diffusers", label)] = nd.AutoPipelineForImage2Image.from_pretrained(path, torch_dtype=dtype)
        for pipe in pipes.values():
            pipe.set_progress_bar_config(disable=True)
        variants = {
            ("diffusers", "float32"): (pipes[("diffusers", "float32")], torch.float32, None),
            ("native_diffusers", "float32"): (pipes[("native_diffusers", "float32")], torch.float32, None),
            ("native_diffusers", "float16"): (pipes[("native_diffusers", "float16")], f16, "auto"),
            ("native_diffusers (float32)", "float16"): (pipes[("native_diffusers", "float16")], f16, "float32"),
            ("native_diffusers (native)", "float16"): (pipes[("native_diffusers", "float16")], f16, "native"),
        }
        if args.diffusers_fp16:  # minutes per step on a CPU without float16 arithmetic
            variants[("diffusers", "float16")] = (pipes[("diffusers", "float16")], f16, None)

        def run(make, pipe, dtype, mode):
            fn = make(pipe, dtype)
            return with_mode(mode, fn) if mode else fn

        unet = interleaved({k: run(lambda p, d: unet_step(p.unet, d), *v) for k, v in variants.items()}, args.runs)
        decode = interleaved({k: run(lambda p, d: vae_decode(p.vae, d), *v) for k, v in variants.items()}, args.runs)
        e2e_keys = [("diffusers", "float32"), ("native_diffusers", "float32"), ("native_diffusers", "float16")]
        e2e = interleaved({k: run(lambda p, d: image_to_image(p, image, args), *variants[k]) for k in e2e_keys}, 1)
        rows = {k: {"unet_ms": unet[k] * 1e3, "decode_ms": decode[k] * 1e3, "e2e_s": e2e.get(k)} for k in variants}

    print(f"# CPU, SD 1.5 sizes: UNet batch 2 on 64x64 latents, VAE decode 512x512, image-to-image 512x512 "
          f"{args.steps} steps x {args.strength}; {cpu_name()}; torch {torch.__version__}; "
          f"diffusers {diffusers.__version__}; {datetime.date.today()}")
    print(f"# float16 native arithmetic on this CPU: {_C.cpu_has_native_arithmetic(torch.float16)}; "
          f"auto computes float16 in {'float16' if _C.cpu_has_native_arithmetic(torch.float16) else 'float32'}")
    print("\n| impl | dtype | UNet ms/step | VAE decode ms | end-to-end s | UNet vs diffusers float32 |")
    print("|---|---|---|---|---|---|")
    ref = rows[("diffusers", "float32")]["unet_ms"]
    for (name, label), r in rows.items():
        e2e = f"{r['e2e_s']:.2f}" if r.get("e2e_s") else "-"
        print(f"| {name} | {label} | {r['unet_ms']:.0f} | {r['decode_ms']:.0f} | {e2e} | {r['unet_ms'] / ref:.2f}x |")
    ours32 = rows[("native_diffusers", "float32")]
    print(f"\nours float32 vs diffusers float32: UNet {ref / ours32['unet_ms']:.2f}x as fast, decode "
          f"{rows[('diffusers', 'float32')]['decode_ms'] / ours32['decode_ms']:.2f}x, end to end "
          f"{rows[('diffusers', 'float32')]['e2e_s'] / ours32['e2e_s']:.2f}x")
    for mode in ("native_diffusers", "native_diffusers (float32)", "native_diffusers (native)"):
        if (mode, "float16") in rows:
            print(f"{mode} float16 UNet step / our float32 step: "
                  f"{rows[(mode, 'float16')]['unet_ms'] / ours32['unet_ms']:.2f}x")
    if ("diffusers", "float16") in rows:
        print(f"diffusers float16 UNet step / diffusers float32 step: "
              f"{rows[('diffusers', 'float16')]['unet_ms'] / ref:.2f}x")


if __name__ == "__main__":
    main()

"""Ours vs diffusers, side by side in one run on one machine: Stable Diffusion 1.5 image-to-image.

Builds a random-weight checkpoint with diffusers/transformers (``--config sd15`` uses SD 1.5's real sizes:
UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8), the SD VAE, CLIP ViT-L
text encoder; speed does not depend on weight values), loads it with both libraries exactly as the guide does,
and prints UNet ms per step, VAE decode ms, end-to-end seconds, peak GPU memory and ours/diffusers ratios,
with the device, torch version and date. Medians of ``--runs`` after a warm-up, synchronised around each.

    python bench/bench_img2img.py --config sd15 --device cuda --dtype float16   # the GPU table
    python bench/bench_img2img.py --config tiny --device cpu                    # a quick CPU check
"""

import argparse
import datetime
import statistics
import tempfile
import time

import numpy as np
import PIL.Image
import torch


def build_checkpoint(folder: str, config: str, dtype: torch.dtype) -> str:
    import diffusers
    import transformers

    from native_diffusers.utils.clip_vocab import write_clip_vocabulary
    from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint

    if config == "tiny":
        return make_tiny_sd_checkpoint(folder)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=512,
    )
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1,
    ))
    write_clip_vocabulary(folder + "/tok")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder + "/tok")
    scheduler = diffusers.PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    path = folder + "/sd15"
    pipe.to(dtype).save_pretrained(path, variant="fp16" if dtype == torch.float16 else None)
    return path


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name, pipe, device, args, init_image):
    pipe.set_progress_bar_config(disable=True)
    latents_hw = args.height // pipe.vae_scale_factor
    unet, vae = pipe.unet, pipe.vae
    dtype = unet.dtype
    sample = torch.randn(2, 4, latents_hw, latents_hw, device=device, dtype=dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    latents = torch.randn(1, 4, latents_hw, latents_hw, device=device, dtype=vae.dtype)

    def call():
        return pipe(args.prompt, image=init_image, strength=args.strength, guidance_scale=7.5,
                    num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0)).images[0]

    with torch.no_grad():
        unet_s = timed(lambda: unet(sample, t, context), device, args.runs * 3)
        decode_s = timed(lambda: vae.decode(latents), device, args.runs * 3)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        e2e_s = timed(call, device, args.runs)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"name": name, "unet_ms": unet_s * 1e3, "decode_ms": decode_s * 1e3, "e2e_s": e2e_s, "peak_gib": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt", default="Astronaut in a jungle, cold color palette, muted colors, detailed, 8k")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    args.height = args.height or (512 if args.config == "sd15" else 64)

    import diffusers

    import native_diffusers as nd

    rng = np.random.default_rng(0)
    init_image = PIL.Image.fromarray(rng.integers(0, 256, (args.height, args.height, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        path = build_checkpoint(tmp, args.config, dtype)
        variant = "fp16" if (args.config == "sd15" and dtype == torch.float16) else None
        results = []
        ref = diffusers.AutoPipelineForImage2Image.from_pretrained(path, torch_dtype=dtype, variant=variant,
                                                                   safety_checker=None).to(device)
        results.append(measure("diffusers", ref, device, args, init_image))
        del ref
        if device.type == "cuda":
            torch.cuda.empty_cache()
        ours = nd.AutoPipelineForImage2Image.from_pretrained(path, torch_dtype=dtype, variant=variant).to(device)
        results.append(measure("native_diffusers", ours, device, args, init_image))

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# img2img {args.config} {args.height}x{args.height}, {args.steps} steps x {args.strength}, "
          f"guidance 7.5, {dtype}; {device_name}; torch {torch.__version__}; diffusers {diffusers.__version__}; "
          f"{datetime.date.today()}")
    print("| impl | UNet ms/step (batch 2) | UNet it/s | VAE decode ms | end-to-end s | peak GiB |")
    print("|---|---|---|---|---|---|")
    on_gpu = device.type == "cuda"
    for r in results:
        peak = f"{r['peak_gib']:.2f}" if on_gpu else "n/a (CPU)"
        print(f"| {r['name']} | {r['unet_ms']:.2f} | {1e3 / r['unet_ms']:.1f} | {r['decode_ms']:.2f} | "
              f"{r['e2e_s']:.3f} | {peak} |")
    ref_r, our_r = results
    peak_ratio = f"{our_r['peak_gib'] / ref_r['peak_gib']:.2f}x" if on_gpu else "n/a"
    print(f"| ours/diffusers | {our_r['unet_ms'] / ref_r['unet_ms']:.2f}x time | "
          f"{ref_r['unet_ms'] / our_r['unet_ms']:.2f}x rate | {our_r['decode_ms'] / ref_r['decode_ms']:.2f}x | "
          f"{our_r['e2e_s'] / ref_r['e2e_s']:.2f}x | {peak_ratio} |")


if __name__ == "__main__":
    main()

"""Ours vs diffusers, side by side in one run on one machine: Stable Diffusion 1.5 and SDXL image-to-image.

Builds a random-weight checkpoint with diffusers/transformers (speed does not depend on weight values):
``--config sd15`` uses SD 1.5's real sizes (UNet2DConditionModel(sample_size=64, cross_attention_dim=768,
attention_head_dim=8), the SD VAE, CLIP ViT-L text encoder; 512x512, strength 0.8); ``--config sdxl`` SDXL
base's (the 320/640/1280 UNet with 1/2/10 transformer layers, CLIP ViT-L and OpenCLIP bigG text encoders, the
SDXL VAE; 1024x1024, strength 0.3). Both libraries load it exactly as the guide does; the script prints UNet ms
per step (ours also with NCHW activations, to show what channels-last buys), VAE encode and decode ms,
end-to-end seconds, peak GPU memory and ours/diffusers ratios, with the device, torch version and date.
Medians of ``--runs`` after a warm-up, synchronised around each.

    python bench/bench_img2img.py --config sd15 --device cuda --dtype float16   # the GPU table
    python bench/bench_img2img.py --config sd15 --device cuda --offload none,model,sequential  # issue 5's table
    python bench/bench_img2img.py --config sdxl --device cuda --offload none,model,sequential
    python bench/bench_img2img.py --config tiny --device cpu                    # a quick CPU check
"""

import argparse
import datetime
import gc
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
    if config == "sdxl":
        return build_sdxl_base(folder, dtype)
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


def build_sdxl_base(folder: str, dtype: torch.dtype) -> str:
    import diffusers
    import transformers

    from bench_guide_models import _clip_text_config, sdxl_vae
    from native_diffusers.utils.clip_vocab import write_clip_vocabulary

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816)
    vae = sdxl_vae(diffusers)
    text_encoder = transformers.CLIPTextModel(_clip_text_config(transformers, 768, 12, 12, 3072, 768))
    text_encoder_2 = transformers.CLIPTextModelWithProjection(
        _clip_text_config(transformers, 1280, 32, 20, 5120, 1280))
    write_clip_vocabulary(folder + "/tok")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder + "/tok")
    tokenizer_2 = transformers.CLIPTokenizer.from_pretrained(folder + "/tok", pad_token="!")
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1, timestep_spacing="leading")
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False)
    path = folder + "/sdxl"
    pipe.to(dtype).save_pretrained(path, variant="fp16" if dtype == torch.float16 else None)
    return path


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, runs, warmup=True):
    if warmup:
        fn()
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def call_pipe(pipe, args, init_image):
    return pipe(args.prompt, image=init_image, strength=args.strength, guidance_scale=7.5,
                num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0)).images[0]


def measure_parts(pipe, device, args, name):
    """UNet step (batch 2: guidance), VAE encode and decode, each alone, in ms."""
    latents_hw = args.height // pipe.vae_scale_factor
    unet, vae = pipe.unet, pipe.vae
    dtype = unet.dtype
    sample = torch.randn(2, 4, latents_hw, latents_hw, device=device, dtype=dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    added = None
    if unet.config.addition_embed_type == "text_time":  # SDXL: pooled text embeddings and 6 size/crop ids
        pooled_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        added = {"text_embeds": torch.randn(2, pooled_dim, device=device, dtype=dtype),
                 "time_ids": torch.tensor([[args.height, args.height, 0, 0, args.height, args.height]] * 2,
                                          device=device, dtype=dtype)}
    latents = torch.randn(1, 4, latents_hw, latents_hw, device=device, dtype=vae.dtype)
    pixels = torch.rand(1, 3, args.height, args.height, device=device, dtype=vae.dtype) * 2 - 1

    def unet_step():
        return unet(sample, t, context, added_cond_kwargs=added)

    with torch.no_grad():
        parts = {
            "unet_ms": timed(unet_step, device, args.runs * 3) * 1e3,
            "encode_ms": timed(lambda: vae.encode(pixels), device, args.runs * 3) * 1e3,
            "decode_ms": timed(lambda: vae.decode(latents), device, args.runs * 3) * 1e3,
        }
    if name == "native_diffusers":
        # A denoising loop's step: the prompt's cross-attention keys and values projected once, before it.
        engine = unet._engine
        extra = {} if added is None else dict(text_embeds=added["text_embeds"], time_ids=added["time_ids"])
        projected = engine.project_encoder_states(context)
        parts["unet_loop_ms"] = timed(lambda: engine.forward(sample, t, context, projected=projected, **extra),
                                      device, args.runs * 3) * 1e3
        # The same with fuse_qkv_projections() (opt-in, as in diffusers: it changes the rounding).
        engine.fuse_qkv_projections()
        projected = engine.project_encoder_states(context)
        parts["unet_loop_fused_ms"] = timed(
            lambda: engine.forward(sample, t, context, projected=projected, **extra), device, args.runs * 3) * 1e3
        engine.unfuse_qkv_projections()
    if name == "native_diffusers" and device.type == "cuda":
        # The same step with NCHW activations and weights: what the channels-last default buys.
        from native_diffusers import _C

        mode = _C.channels_last_mode()
        _C.set_channels_last_mode("off")
        unet.to(device)  # lays the convolution weights out again
        parts["unet_nchw_ms"] = timed(unet_step, device, args.runs * 3) * 1e3
        _C.set_channels_last_mode(mode)
        unet.to(device)
    return parts


def place(pipe, mode, device):
    if mode == "none":
        return pipe.to(device)
    if mode == "model":
        pipe.enable_model_cpu_offload()
    else:
        pipe.enable_sequential_cpu_offload()
    return pipe


def measure(name, load, device, args, init_image, mode):
    """One implementation under one placement: load-to-first-image, end to end, peak memory."""
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    pipe = place(load(), mode, device)
    pipe.set_progress_bar_config(disable=True)
    call_pipe(pipe, args, init_image)
    sync(device)
    first_image_s = time.perf_counter() - start
    result = {"name": name, "mode": mode, "first_image_s": first_image_s}
    if mode == "none":
        result.update(measure_parts(pipe, device, args, name))
    runs = 1 if mode == "sequential" else args.runs  # diffusers' sequential offload takes ~20 s a run
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    result["e2e_s"] = timed(lambda: call_pipe(pipe, args, init_image), device, runs, warmup=False)
    # Allocated: live tensors at the worst moment. Reserved: what the caching allocator holds from
    # the GPU, which includes memory kept for replaying captured CUDA graphs.
    result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else float("nan")
    result["reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30 if on_gpu else float("nan")
    return result


def ratio(ours, ref, key, invert=False):
    if not (ref.get(key) and ours.get(key)) or ref[key] != ref[key]:
        return "n/a"
    value = ref[key] / ours[key] if invert else ours[key] / ref[key]
    return f"{value:.2f}x"


def _channels_last_label():
    from native_diffusers import _C

    return _C.channels_last_mode()


def print_tables(results, args, dtype, device):
    import diffusers

    on_gpu = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if on_gpu else "CPU"
    print(f"# img2img {args.config} {args.height}x{args.height}, {args.steps} steps x {args.strength}, "
          f"guidance 7.5, {dtype}; {device_name}; torch {torch.__version__}; diffusers {diffusers.__version__}; "
          f"{datetime.date.today()}")
    by = {(r["name"], r["mode"]): r for r in results}
    ref, ours = by.get(("diffusers", "none")), by.get(("native_diffusers", "none"))
    if ref and ours:
        print("\n| impl | UNet ms/step (batch 2) | UNet it/s | VAE encode ms | VAE decode ms | end-to-end s | "
              "peak allocated GiB | peak reserved GiB | from_pretrained to first image s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in (ref, ours):
            peak = f"{r['peak_gib']:.2f} | {r['reserved_gib']:.2f}" if on_gpu else "n/a (CPU) | n/a"
            print(f"| {r['name']} | {r['unet_ms']:.2f} | {1e3 / r['unet_ms']:.1f} | {r['encode_ms']:.2f} | "
                  f"{r['decode_ms']:.2f} | {r['e2e_s']:.3f} | {peak} | {r['first_image_s']:.2f} |")
        print(f"| ours/diffusers | {ratio(ours, ref, 'unet_ms')} time | {ratio(ours, ref, 'unet_ms', True)} rate | "
              f"{ratio(ours, ref, 'encode_ms')} | {ratio(ours, ref, 'decode_ms')} | {ratio(ours, ref, 'e2e_s')} | "
              f"{ratio(ours, ref, 'peak_gib')} | {ratio(ours, ref, 'reserved_gib')} | "
              f"{ratio(ours, ref, 'first_image_s')} |")
        if "unet_loop_ms" in ours:
            print(f"\nOur UNet step as the denoising loop runs it (keys and values of the prompt projected once): "
                  f"{ours['unet_loop_ms']:.2f} ms, {1e3 / ours['unet_loop_ms']:.1f} it/s "
                  f"({ref['unet_ms'] / ours['unet_loop_ms']:.2f}x diffusers' rate); with fuse_qkv_projections(): "
                  f"{ours['unet_loop_fused_ms']:.2f} ms ({ref['unet_ms'] / ours['unet_loop_fused_ms']:.2f}x).")
        if "unet_nchw_ms" in ours:
            print(f"\nOur UNet step with NCHW activations and weights: {ours['unet_nchw_ms']:.2f} ms "
                  f"(channels-last ({_channels_last_label()}) is {ours['unet_nchw_ms'] / ours['unet_ms']:.2f}x "
                  "as fast).")
    modes = [m for m in ("none", "model", "sequential") if ("diffusers", m) in by and ("native_diffusers", m) in by]
    if len(modes) > 1:
        print("\n| placement | diffusers s | ours s | ours/diffusers time | diffusers peak allocated GiB | ours peak "
              "allocated GiB | ours/diffusers peak | ours vs our no-offload time |")
        print("|---|---|---|---|---|---|---|---|")
        base = by[("native_diffusers", "none")]
        for m in modes:
            r, o = by[("diffusers", m)], by[("native_diffusers", m)]
            print(f"| {m} | {r['e2e_s']:.3f} | {o['e2e_s']:.3f} | {ratio(o, r, 'e2e_s')} | {r['peak_gib']:.2f} | "
                  f"{o['peak_gib']:.2f} | {ratio(o, r, 'peak_gib')} | {ratio(o, base, 'e2e_s')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["tiny", "sd15", "sdxl"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--strength", type=float, default=None, help="default: 0.8 (SD 1.5), 0.3 (SDXL)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--offload", default="none", help="comma-separated placements: none, model, sequential")
    parser.add_argument("--prompt", default="Astronaut in a jungle, cold color palette, muted colors, detailed, 8k")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    args.height = args.height or {"sd15": 512, "sdxl": 1024}.get(args.config, 64)
    args.strength = args.strength if args.strength is not None else (0.3 if args.config == "sdxl" else 0.8)
    modes = [m.strip() for m in args.offload.split(",") if m.strip()]
    if "none" not in modes:
        modes.insert(0, "none")
    if device.type != "cuda":
        modes = ["none"]  # offloading is a GPU feature

    import diffusers

    import native_diffusers as nd

    rng = np.random.default_rng(0)
    init_image = PIL.Image.fromarray(rng.integers(0, 256, (args.height, args.height, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        path = build_checkpoint(tmp, args.config, dtype)
        variant = "fp16" if (args.config != "tiny" and dtype == torch.float16) else None
        loaders = {
            "diffusers": lambda: diffusers.AutoPipelineForImage2Image.from_pretrained(
                path, torch_dtype=dtype, variant=variant, safety_checker=None),
            "native_diffusers": lambda: nd.AutoPipelineForImage2Image.from_pretrained(
                path, torch_dtype=dtype, variant=variant),
        }
        results = []
        for mode in modes:
            for name, load in loaders.items():
                results.append(measure(name, load, device, args, init_image, mode))
                gc.collect()
    print_tables(results, args, dtype, device)


if __name__ == "__main__":
    main()

"""Ours vs diffusers, side by side in one run on one machine: the guide's SDXL refiner, Kandinsky 2.2,
ControlNet (SD 1.5 with a depth ControlNet) image-to-image calls, its x4 upscaler and the tutorial's SD 1.5
inpainting call, end to end.

``--size full`` builds random-weight checkpoints with the real models' sizes (speed does not depend on weight
values): the SDXL refiner (UNet 384/768/1536/1536 with 4 transformer layers, OpenCLIP bigG text encoder, SDXL
VAE) and Kandinsky 2.2 (a 20-layer 1280-wide prior with bigG text and image encoders, the 384/768/1152/1536
decoder UNet, MoVQ). ``--size tiny`` uses the test suite's narrow checkpoints, for a quick CPU check. Both
libraries load the same folder exactly as the guide does; the script prints end-to-end seconds and peak GPU
memory, medians of ``--runs`` after a warm-up, with ours/diffusers ratios and the device.

    python bench/bench_guide_models.py --model sdxl_refiner --size full --device cuda   # 1024x1024, strength 0.5
    python bench/bench_guide_models.py --model kandinsky22 --size full --device cuda    # the combined defaults
    python bench/bench_guide_models.py --model controlnet --size full --device cuda     # 512x512, the guide's call
    python bench/bench_guide_models.py --model x4_upscaler --size full --device cuda    # 128x128 -> 512x512, 75 steps
    python bench/bench_guide_models.py --model inpaint --size full --device cuda        # 512x512, 50 steps
    python bench/bench_guide_models.py --model kandinsky22 --size tiny --device cpu

``--size full`` for ControlNet is SD 1.5 (diffusers' default UNet, CLIP ViT-L text encoder, the SD VAE) with a
ControlNet made from its UNet; for the x4 upscaler, stabilityai/stable-diffusion-x4-upscaler's sizes.
"""

import argparse
import datetime
import os
import statistics
import tempfile
import time

import numpy as np
import PIL.Image
import torch


def _clip_text_config(transformers, hidden, layers, heads, intermediate, projection_dim):
    return transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=77, hidden_act="gelu", projection_dim=projection_dim,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)


def sdxl_vae(diffusers):
    """The SDXL VAE's sizes (shared by base and refiner); upcast to float32 around each use."""
    return diffusers.AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=1024,
        scaling_factor=0.13025, force_upcast=True)


def build_sdxl_refiner(folder, dtype):
    import diffusers
    import transformers

    from native_diffusers.utils.clip_vocab import write_clip_vocabulary

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(384, 768, 1536, 1536),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(6, 12, 24, 24), transformer_layers_per_block=4, cross_attention_dim=1280,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2560)
    vae = sdxl_vae(diffusers)
    text_encoder_2 = transformers.CLIPTextModelWithProjection(
        _clip_text_config(transformers, 1280, 32, 20, 5120, 1280))
    write_clip_vocabulary(os.path.join(folder, "tok"))
    tokenizer_2 = transformers.CLIPTokenizer.from_pretrained(os.path.join(folder, "tok"), pad_token="!")
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1, timestep_spacing="leading")
    pipe = diffusers.StableDiffusionXLImg2ImgPipeline(
        vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer_2,
        unet=unet, scheduler=scheduler, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        add_watermarker=False)
    path = os.path.join(folder, "sdxl-refiner")
    pipe.to(dtype).save_pretrained(path)
    return path


def build_kandinsky22(folder, dtype):
    import diffusers
    import transformers

    from native_diffusers.utils.clip_vocab import write_clip_vocabulary

    torch.manual_seed(0)
    text_encoder = transformers.CLIPTextModelWithProjection(
        _clip_text_config(transformers, 1280, 32, 20, 5120, 1280))
    write_clip_vocabulary(os.path.join(folder, "tok"))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(os.path.join(folder, "tok"))
    image_encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=1664, intermediate_size=8192, num_hidden_layers=48, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=1280, hidden_act="gelu"))
    image_processor = transformers.CLIPImageProcessor(
        crop_size=224, size=224, resample=3, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711])
    prior = diffusers.PriorTransformer(num_attention_heads=32, attention_head_dim=64, num_layers=20,
                                       embedding_dim=1280, num_embeddings=77, additional_embeddings=4)
    with torch.no_grad():
        prior.clip_std.fill_(1.0)
    prior_scheduler = diffusers.UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                                num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0)
    prior_path = os.path.join(folder, "kandinsky-2-2-prior")
    diffusers.KandinskyV22PriorPipeline(prior=prior, image_encoder=image_encoder, text_encoder=text_encoder,
                                        tokenizer=tokenizer, scheduler=prior_scheduler,
                                        image_processor=image_processor).to(dtype).save_pretrained(prior_path)
    unet = diffusers.UNet2DConditionModel(
        in_channels=4, out_channels=8, block_out_channels=(384, 768, 1152, 1536), layers_per_block=3,
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", attention_head_dim=64, cross_attention_dim=768,
        encoder_hid_dim=1280, encoder_hid_dim_type="image_proj", addition_embed_type="image",
        resnet_time_scale_shift="scale_shift", class_embed_type=None)
    movq = diffusers.VQModel(
        block_out_channels=[128, 256, 256, 512],
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        layers_per_block=2,
        latent_channels=4,
        vq_embed_dim=4,
        num_vq_embeddings=16384,
        norm_type="spatial",
        in_channels=3,
        out_channels=3,
    )
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085,
                                        beta_end=0.012, clip_sample=False, steps_offset=1)
    decoder_path = os.path.join(folder, "kandinsky-2-2-decoder")
    diffusers.KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq).to(dtype).save_pretrained(decoder_path)
    with open(os.path.join(decoder_path, "README.md"), "w") as f:
        f.write(f"---\nprior:\n- {prior_path}\n---\n")
    return decoder_path


def _clip_l_and_tokenizer(transformers, folder, hidden=768, layers=12, heads=12, intermediate=3072):
    from native_diffusers.utils.clip_vocab import write_clip_vocabulary

    config = _clip_text_config(transformers, hidden, layers, heads, intermediate, 768)
    text_encoder = transformers.CLIPTextModel(config)
    write_clip_vocabulary(os.path.join(folder, "tok"))
    return text_encoder, transformers.CLIPTokenizer.from_pretrained(os.path.join(folder, "tok"))


def build_sd15(folder, dtype, in_channels=4):
    """SD 1.5's sizes (diffusers' default UNet, CLIP ViT-L, the SD VAE); 9 UNet input channels make
    runwayml/stable-diffusion-inpainting's shape. Returns the path and the UNet."""
    import diffusers
    import transformers

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                          in_channels=in_channels)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=512)
    text_encoder, tokenizer = _clip_l_and_tokenizer(transformers, folder)
    scheduler = diffusers.PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    inpainting = in_channels == 9
    pipeline_class = diffusers.StableDiffusionInpaintPipeline if inpainting else diffusers.StableDiffusionPipeline
    path = os.path.join(folder, "sd15")
    pipeline_class(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                   safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False).to(dtype).save_pretrained(path)
    return path, unet


def build_controlnet(folder, dtype):
    """SD 1.5's sizes and a ControlNet made from its UNet (zero convolutions given weights, as trained)."""
    import diffusers

    path, unet = build_sd15(folder, dtype)
    controlnet = diffusers.ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            zero_initialised = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            if name.startswith(zero_initialised):
                parameter.normal_(0.0, 0.02)
    controlnet.to(dtype).save_pretrained(os.path.join(folder, "controlnet"))
    return path


def build_x4_upscaler(folder, dtype):
    import diffusers
    import transformers

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=128, in_channels=7, out_channels=4, layers_per_block=2, block_out_channels=(256, 512, 512, 1024),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8, cross_attention_dim=1024, use_linear_projection=True,
        only_cross_attention=(True, True, True, False), num_class_embeds=1000)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[128, 256, 512], down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=2, latent_channels=4, scaling_factor=0.08333)
    text_encoder, tokenizer = _clip_l_and_tokenizer(transformers, folder, hidden=1024, layers=23, heads=16,
                                                    intermediate=4096)
    low_res_scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02)
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                        prediction_type="v_prediction")
    path = os.path.join(folder, "x4-upscaler")
    diffusers.StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, low_res_scheduler=low_res_scheduler,
        scheduler=scheduler, max_noise_level=350).to(dtype).save_pretrained(path)
    return path


def build(folder, model, size, dtype):
    from native_diffusers.utils import testing_utils

    if size == "full":
        builders = {"sdxl_refiner": build_sdxl_refiner, "kandinsky22": build_kandinsky22,
                    "controlnet": build_controlnet, "x4_upscaler": build_x4_upscaler,
                    "inpaint": lambda f, d: build_sd15(f, d, in_channels=9)[0]}
        return builders[model](folder, dtype)
    if model == "inpaint":
        return testing_utils.make_tiny_sd_checkpoint(folder, unet_in_channels=9)
    if model == "sdxl_refiner":
        return testing_utils.make_tiny_sdxl_checkpoint(folder, kind="refiner")
    if model == "controlnet":
        path = testing_utils.make_tiny_sd_checkpoint(folder)
        os.rename(testing_utils.make_tiny_controlnet(folder), os.path.join(folder, "controlnet"))
        return path
    if model == "x4_upscaler":
        return testing_utils.make_tiny_sd_x4_upscaler(folder)
    return testing_utils.make_tiny_kandinsky22_checkpoints(folder)


def load(library, model, path, dtype):
    """The seeds' way to load each model: AutoPipelineForImage2Image (with controlnet= for ControlNet),
    AutoPipelineForInpainting for inpainting and StableDiffusionUpscalePipeline for the upscaler."""
    if model == "x4_upscaler":
        return library.StableDiffusionUpscalePipeline.from_pretrained(path, torch_dtype=dtype)
    if model == "inpaint":
        return library.AutoPipelineForInpainting.from_pretrained(path, torch_dtype=dtype)
    kwargs = {}
    if model == "controlnet":
        folder = os.path.join(os.path.dirname(path), "controlnet")
        kwargs["controlnet"] = library.ControlNetModel.from_pretrained(folder, torch_dtype=dtype)
    return library.AutoPipelineForImage2Image.from_pretrained(path, torch_dtype=dtype, **kwargs)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name, pipe, device, call, runs):
    pipe.set_progress_bar_config(disable=True)
    call(pipe)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        call(pipe)
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"name": name, "e2e_s": statistics.median(times), "peak_gib": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["sdxl_refiner", "kandinsky22", "controlnet", "x4_upscaler", "inpaint"],
                        required=True)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None,
                        help="default: the guide's (50 SDXL and ControlNet, 100 Kandinsky, 75 x4 upscaler)")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)

    import diffusers

    import native_diffusers as nd

    side = 1024 if (args.model == "sdxl_refiner" and args.size == "full") else (512 if args.size == "full" else 64)
    rng = np.random.default_rng(0)
    init_image = PIL.Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    prompt = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
    if args.model == "sdxl_refiner":
        steps = args.steps or 50
        label = f"SDXL refiner {side}x{side}, {steps} steps x strength 0.5, guidance 5"

        def call(pipe):
            return pipe(prompt, image=init_image, strength=0.5, num_inference_steps=steps,
                        generator=torch.Generator().manual_seed(0)).images[0]
    elif args.model == "controlnet":
        steps = args.steps or 50
        label = f"SD 1.5 + ControlNet image-to-image {side}x{side}, {steps} steps x strength 0.8, guidance 7.5"
        y, x = np.mgrid[0:side, 0:side] / (side - 1)
        depth = np.repeat(np.clip(1 - 1.5 * np.hypot(x - 0.5, y - 0.5), 0, 1)[..., None], 3, -1)
        depth_image = PIL.Image.fromarray((depth * 255).astype(np.uint8))

        def call(pipe):
            return pipe(prompt, image=init_image, control_image=depth_image, num_inference_steps=steps,
                        generator=torch.Generator().manual_seed(0)).images[0]
    elif args.model == "inpaint":
        steps = args.steps or 50
        label = f"SD 1.5 inpainting (9-channel UNet) {side}x{side}, {steps} steps, guidance 7.5"
        mask = np.zeros((side, side), np.uint8)
        mask[side // 4:3 * side // 4, side // 8:side // 2] = 255
        mask_image = PIL.Image.fromarray(mask)

        def call(pipe):
            return pipe(prompt, image=init_image, mask_image=mask_image, height=side, width=side,
                        num_inference_steps=steps, generator=torch.Generator().manual_seed(0)).images[0]
    elif args.model == "x4_upscaler":
        steps = args.steps or 75
        low_res = init_image.resize((side // 4, side // 4))
        label = f"x4 upscaler from {side // 4}x{side // 4}, {steps} steps, noise level 20, guidance 9"

        def call(pipe):
            return pipe(prompt, image=low_res, num_inference_steps=steps,
                        generator=torch.Generator().manual_seed(0)).images[0]
    else:
        steps = args.steps or 100
        label = f"Kandinsky 2.2 combined, 512x512 output, {steps} steps x strength 0.3, prior 25 steps"

        def call(pipe):
            return pipe(prompt, image=init_image, num_inference_steps=steps,
                        generator=torch.Generator().manual_seed(0)).images[0]

    with tempfile.TemporaryDirectory() as tmp:
        path = build(tmp, args.model, args.size, dtype)
        ref = load(diffusers, args.model, path, dtype).to(device)
        results = [measure("diffusers", ref, device, call, args.runs)]
        del ref
        if device.type == "cuda":
            torch.cuda.empty_cache()
        ours = load(nd, args.model, path, dtype).to(device)
        results.append(measure("native_diffusers", ours, device, call, args.runs))

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {label} ({args.size} sizes), {dtype}; {device_name}; torch {torch.__version__}; "
          f"diffusers {diffusers.__version__}; {datetime.date.today()}")
    print("| impl | end-to-end s | peak GiB |")
    print("|---|---|---|")
    on_gpu = device.type == "cuda"
    for r in results:
        print(f"| {r['name']} | {r['e2e_s']:.3f} | {r['peak_gib']:.2f} |" if on_gpu else
              f"| {r['name']} | {r['e2e_s']:.3f} | n/a (CPU) |")
    ref_r, our_r = results
    peak = f"{our_r['peak_gib'] / ref_r['peak_gib']:.2f}x" if on_gpu else "n/a"
    print(f"| ours/diffusers | {our_r['e2e_s'] / ref_r['e2e_s']:.2f}x | {peak} |")


if __name__ == "__main__":
    main()

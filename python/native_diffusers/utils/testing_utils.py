"""Small random-weight checkpoints in the real diffusers folder layout, written by diffusers and
transformers themselves (test-only dependencies, imported here lazily). The main job, the notebook
and the tests use them because no machine here can download real weights."""

import os
from typing import Optional

import torch

from .clip_vocab import write_clip_vocabulary


def _tiny_clip_text_encoder(folder: str, bpe_path: Optional[str]):
    """A 3-layer, 32-wide CLIP text encoder (random weights from torch's current seed) and the real
    CLIP tokenizer."""
    import transformers

    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    tokenizer_src = os.path.join(folder, "_tokenizer_src")
    write_clip_vocabulary(tokenizer_src, bpe_path)
    return text_encoder, transformers.CLIPTokenizer.from_pretrained(tokenizer_src)


def make_tiny_sd_checkpoint(folder: str, seed: int = 0, bpe_path: Optional[str] = None,
                            fp16_variant: bool = False, unet_in_channels: int = 4) -> str:
    """A Stable Diffusion 1.5-shaped checkpoint, only narrow: four UNet blocks with cross-attention
    in the first three and two layers each, a two-block VAE, a 3-layer CLIP text encoder, the real
    CLIP vocabulary, and PNDM configured as SD 1.5 ships it. Saved with ``save_pretrained`` as a
    ``StableDiffusionPipeline`` (model_index.json names it, as the real checkpoint does).
    ``fp16_variant`` adds ``*.fp16.safetensors`` files beside the float32 ones, as the hub has them.
    ``unet_in_channels=9`` makes an inpainting checkpoint (latents, mask and masked-image latents in),
    saved as a ``StableDiffusionInpaintPipeline`` as runwayml's inpainting checkpoint is."""
    try:
        import diffusers
        import transformers  # noqa: F401  (the text encoder needs it: fail here, with the hint)
    except ImportError as e:  # pragma: no cover - scripts/setup.sh installs both
        raise ImportError(
            "making a random-weight checkpoint needs diffusers and transformers (scripts/setup.sh)"
        ) from e

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64, 64, 64), layers_per_block=2, sample_size=16, in_channels=unet_in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32, attention_head_dim=8,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    text_encoder, tokenizer = _tiny_clip_text_encoder(folder, bpe_path)
    scheduler = diffusers.PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
        set_alpha_to_one=False, num_train_timesteps=1000,
    )
    inpainting = unet_in_channels == 9
    pipeline_class = diffusers.StableDiffusionInpaintPipeline if inpainting else diffusers.StableDiffusionPipeline
    pipe = pipeline_class(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    checkpoint = os.path.join(folder, "tiny-sd" if unet_in_channels == 4 else f"tiny-sd-{unet_in_channels}ch")
    pipe.save_pretrained(checkpoint)
    if fp16_variant:
        pipe.to(torch.float16).save_pretrained(checkpoint, variant="fp16")
    return checkpoint


def _tiny_sdxl_components(seed: int, with_first_encoder: bool, requires_aesthetics_score: bool, bpe_path, folder,
                          unet_in_channels: int = 4):
    import diffusers
    import transformers

    torch.manual_seed(seed)
    # SDXL's text conditioning: the penultimate states of both encoders concatenated (32 + 32),
    # and the pooled projection (32) beside 6 micro-conditioning ids (5 with the aesthetic score).
    cross_attention_dim = 64 if with_first_encoder else 32
    num_time_ids = 5 if requires_aesthetics_score else 6
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=unet_in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=num_time_ids * 8 + 32, cross_attention_dim=cross_attention_dim,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=128,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    config = transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=5, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_act="gelu",
        projection_dim=32,
    )
    text_encoder = transformers.CLIPTextModel(config) if with_first_encoder else None
    text_encoder_2 = transformers.CLIPTextModelWithProjection(config)
    tokenizer_src = os.path.join(folder, "_tokenizer_src")
    write_clip_vocabulary(tokenizer_src, bpe_path)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tokenizer_src) if with_first_encoder else None
    # The real SDXL checkpoints pad the second tokenizer with "!".
    tokenizer_2 = transformers.CLIPTokenizer.from_pretrained(tokenizer_src, pad_token="!")
    # EulerDiscreteScheduler as the SDXL checkpoints ship it.
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", num_train_timesteps=1000,
    )
    return dict(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)


def make_tiny_sdxl_checkpoint(folder: str, kind: str = "base", seed: int = 0, bpe_path: Optional[str] = None,
                              fp16_variant: bool = False) -> str:
    """An SDXL-shaped checkpoint, only narrow. ``kind="base"``: both text encoders, saved as a
    ``StableDiffusionXLPipeline`` as stabilityai/stable-diffusion-xl-base-1.0 is; ``"refiner"``: no
    first text encoder and ``requires_aesthetics_score=True``, saved as a
    ``StableDiffusionXLImg2ImgPipeline`` as the refiner is; ``"inpaint"``: the base with a 9-channel
    UNet, saved as a ``StableDiffusionXLInpaintPipeline`` as diffusers/stable-diffusion-xl-1.0-inpainting-0.1
    is."""
    try:
        import diffusers
    except ImportError as e:  # pragma: no cover - scripts/setup.sh installs it
        raise ImportError(
            "making a random-weight checkpoint needs diffusers and transformers (scripts/setup.sh)"
        ) from e
    if kind not in ("base", "refiner", "inpaint"):
        raise ValueError(f"kind must be 'base', 'refiner' or 'inpaint', got {kind!r}")
    refiner = kind == "refiner"
    components = _tiny_sdxl_components(seed, not refiner, refiner, bpe_path, folder,
                                       unet_in_channels=9 if kind == "inpaint" else 4)
    if kind == "inpaint":
        pipe = diffusers.StableDiffusionXLInpaintPipeline(**components, add_watermarker=False)
    elif refiner:
        pipe = diffusers.StableDiffusionXLImg2ImgPipeline(
            **components, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False, add_watermarker=False)
    else:
        pipe = diffusers.StableDiffusionXLPipeline(**components, add_watermarker=False)
    checkpoint = os.path.join(folder, f"tiny-sdxl-{kind}")
    pipe.save_pretrained(checkpoint)
    if fp16_variant:
        pipe.to(torch.float16).save_pretrained(checkpoint, variant="fp16")
    return checkpoint


def make_tiny_kandinsky22_prior(folder: str, seed: int = 0, bpe_path: Optional[str] = None) -> str:
    """A Kandinsky 2.2-shaped prior (``KandinskyV22PriorPipeline``), narrow: diffusers' own test dummies
    with the real CLIP vocabulary, and the prior's clip_mean/clip_std and embeddings randomised so
    its output is not a constant. Returns its path."""
    try:
        import diffusers
        import transformers
    except ImportError as e:  # pragma: no cover - scripts/setup.sh installs both
        raise ImportError(
            "making a random-weight checkpoint needs diffusers and transformers (scripts/setup.sh)"
        ) from e

    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=32, projection_dim=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=49408,
    ))
    tokenizer_src = os.path.join(folder, "_tokenizer_src")
    write_clip_vocabulary(tokenizer_src, bpe_path)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tokenizer_src)
    prior = diffusers.PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1)
    with torch.no_grad():
        # diffusers' test sets clip_std to ones (zeros would make every embedding clip_mean).
        prior.clip_std.uniform_(0.5, 1.5)
        prior.clip_mean.normal_()
        prior.positional_embedding.normal_()
        prior.prd_embedding.normal_()
    image_encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=32, image_size=224, projection_dim=32, intermediate_size=37, num_attention_heads=4,
        num_channels=3, num_hidden_layers=5, patch_size=14,
    ))
    image_processor = transformers.CLIPImageProcessor(
        crop_size=224, do_center_crop=True, do_normalize=True, do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3, size=224,
    )
    prior_scheduler = diffusers.UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                                num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0)
    prior_pipe = diffusers.KandinskyV22PriorPipeline(
        prior=prior, image_encoder=image_encoder, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=prior_scheduler, image_processor=image_processor)
    prior_path = os.path.join(folder, "tiny-kandinsky-2-2-prior")
    prior_pipe.save_pretrained(prior_path)
    return prior_path


def make_tiny_kandinsky22_checkpoints(folder: str, seed: int = 0, bpe_path: Optional[str] = None,
                                      decoder_scheduler: str = "DDPMScheduler", inpaint: bool = False) -> str:
    """Kandinsky 2.2-shaped prior and decoder checkpoints, narrow (diffusers' own test dummies with
    the real CLIP vocabulary), in the hub's two-repository layout: ``tiny-kandinsky-2-2-prior``
    (``KandinskyV22PriorPipeline``) and ``tiny-kandinsky-2-2-decoder`` (``KandinskyV22Pipeline``, with
    the DDPM scheduler the real decoder ships), whose README.md names the prior as the real one
    does (``prior: [kandinsky-community/kandinsky-2-2-prior]``). Returns the decoder's path.
    ``inpaint``: the decoder is kandinsky-2-2-decoder-inpaint's shape instead, a 9-channel UNet
    (latents, masked image, mask) saved as ``KandinskyV22InpaintPipeline`` in
    ``tiny-kandinsky-2-2-decoder-inpaint``."""
    try:
        import diffusers
    except ImportError as e:  # pragma: no cover - scripts/setup.sh installs both
        raise ImportError(
            "making a random-weight checkpoint needs diffusers and transformers (scripts/setup.sh)"
        ) from e

    prior_path = make_tiny_kandinsky22_prior(folder, seed, bpe_path)
    torch.manual_seed(seed + 1)

    unet = diffusers.UNet2DConditionModel(
        in_channels=9 if inpaint else 4, out_channels=8, addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
        encoder_hid_dim=32, encoder_hid_dim_type="image_proj", cross_attention_dim=32, attention_head_dim=4,
        resnet_time_scale_shift="scale_shift", class_embed_type=None,
    )
    # Four blocks as the real MoVQ has, so its scale factor is 8 and the default 512 x 512 output
    # denoises 64 x 64 latents; narrow channels keep it small (SpatialNorm needs multiples of 32).
    movq = diffusers.VQModel(
        block_out_channels=[32, 32, 32, 64], down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        in_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
        num_vq_embeddings=12, out_channels=3, up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        vq_embed_dim=4,
    )
    with torch.no_grad():
        for p in list(unet.parameters()) + list(movq.parameters()):
            p.add_(torch.randn_like(p) * 0.02)
    betas = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                 clip_sample=False, prediction_type="epsilon", thresholding=False)
    if decoder_scheduler == "DDPMScheduler":
        scheduler = diffusers.DDPMScheduler(**betas, steps_offset=1)
    else:
        scheduler = diffusers.DDIMScheduler(**betas, set_alpha_to_one=False, steps_offset=0)
    decoder_class = diffusers.KandinskyV22InpaintPipeline if inpaint else diffusers.KandinskyV22Pipeline
    decoder = decoder_class(unet=unet, scheduler=scheduler, movq=movq)
    decoder_path = os.path.join(folder, "tiny-kandinsky-2-2-decoder" + ("-inpaint" if inpaint else ""))
    decoder.save_pretrained(decoder_path)
    # The hub's decoder names its prior in the model card, which is where diffusers looks for it.
    with open(os.path.join(decoder_path, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"---\nlicense: apache-2.0\nprior:\n- {prior_path}\ntags:\n- text-to-image\n- kandinsky\n---\n\n"
                "A random-weight Kandinsky 2.2 decoder for tests.\n")
    return decoder_path


def make_tiny_controlnet(folder: str, seed: int = 1, zero_convs_random: bool = True, fp16_variant: bool = False,
                         **config) -> str:
    """A ControlNet shaped like ``make_tiny_sd_checkpoint``'s UNet (its down half), saved by diffusers.
    Its conditioning embedding halves the image once, matching that checkpoint's two-block VAE.
    diffusers initialises the output convolutions to zero (so a fresh ControlNet changes nothing);
    ``zero_convs_random`` gives them random weights, as a trained ControlNet has."""
    import diffusers

    torch.manual_seed(seed)
    options = dict(
        block_out_channels=(32, 64, 64, 64), layers_per_block=2, in_channels=4, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), attention_head_dim=8,
        conditioning_embedding_out_channels=(16, 32),
    )
    options.update(config)
    controlnet = diffusers.ControlNetModel(**options)
    if zero_convs_random:
        with torch.no_grad():
            for name, parameter in controlnet.named_parameters():
                if name.startswith(("controlnet_down_blocks", "controlnet_mid_block",
                                    "controlnet_cond_embedding.conv_out")):
                    parameter.normal_(0.0, 0.1)
    path = os.path.join(folder, "tiny-controlnet")
    controlnet.save_pretrained(path)
    if fp16_variant:
        controlnet.to(torch.float16).save_pretrained(path, variant="fp16")
    return path


def make_tiny_sd_x4_upscaler(folder: str, seed: int = 0, bpe_path: Optional[str] = None,
                             fp16_variant: bool = False) -> str:
    """An x4-upscaler-shaped checkpoint (stabilityai/stable-diffusion-x4-upscaler's layout), only narrow:
    a 7-channel UNet (latents + the noised low-resolution image) with the noise level as its class
    label, only-cross-attention blocks with linear projections, a two-block VAE (so this one upscales
    x2) with the upscaler's scaling factor, DDPM as low_res_scheduler and v-prediction DDIM, as the real
    checkpoint ships them. Saved by diffusers' ``StableDiffusionUpscalePipeline.save_pretrained``."""
    import diffusers

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64, 64), layers_per_block=2, sample_size=16, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, use_linear_projection=True, only_cross_attention=(True, True, False),
        num_class_embeds=1000,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, scaling_factor=0.08333,
    )
    text_encoder, tokenizer = _tiny_clip_text_encoder(folder, bpe_path)
    low_res_scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02,
                                                num_train_timesteps=1000)
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1, prediction_type="v_prediction", num_train_timesteps=1000,
    )
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, low_res_scheduler=low_res_scheduler,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=350,
    )
    checkpoint = os.path.join(folder, "tiny-sd-x4-upscaler")
    pipe.save_pretrained(checkpoint)
    if fp16_variant:
        pipe.to(torch.float16).save_pretrained(checkpoint, variant="fp16")
    return checkpoint

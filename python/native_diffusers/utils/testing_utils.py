"""Small random-weight checkpoints in the real diffusers folder layout, written by diffusers and
transformers themselves (test-only dependencies, imported here lazily). The main job, the notebook
and the tests use them because no machine here can download real weights."""

import os
from typing import Optional

import torch

from .clip_vocab import write_clip_vocabulary


def make_tiny_sd_checkpoint(folder: str, seed: int = 0, bpe_path: Optional[str] = None,
                            fp16_variant: bool = False) -> str:
    """A Stable Diffusion 1.5-shaped checkpoint, only narrow: four UNet blocks with cross-attention
    in the first three and two layers each, a two-block VAE, a 3-layer CLIP text encoder, the real
    CLIP vocabulary, and PNDM configured as SD 1.5 ships it. Saved with ``save_pretrained`` as a
    ``StableDiffusionPipeline`` (model_index.json names it, as the real checkpoint does).
    ``fp16_variant`` adds ``*.fp16.safetensors`` files beside the float32 ones, as the hub has them."""
    try:
        import diffusers
        import transformers
    except ImportError as e:  # pragma: no cover - scripts/setup.sh installs both
        raise ImportError("making a random-weight checkpoint needs diffusers and transformers (scripts/setup.sh)") from e

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64, 64, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32, attention_head_dim=8,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    tokenizer_src = os.path.join(folder, "_tokenizer_src")
    write_clip_vocabulary(tokenizer_src, bpe_path)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tokenizer_src)
    scheduler = diffusers.PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
        set_alpha_to_one=False, num_train_timesteps=1000,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    checkpoint = os.path.join(folder, "tiny-sd")
    pipe.save_pretrained(checkpoint)
    if fp16_variant:
        pipe.to(torch.float16).save_pretrained(checkpoint, variant="fp16")
    return checkpoint


def _tiny_sdxl_components(seed: int, with_first_encoder: bool, requires_aesthetics_score: bool, bpe_path, folder):
    import diffusers
    import transformers

    torch.manual_seed(seed)
    # SDXL's text conditioning: the penultimate states of both encoders concatenated (32 + 32),
    # and the pooled projection (32) beside 6 micro-conditioning ids (5 with the aesthetic score).
    cross_attention_dim = 64 if with_first_encoder else 32
    num_time_ids = 5 if requires_aesthetics_score else 6
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
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
    ``StableDiffusionXLImg2ImgPipeline`` as the refiner is."""
    try:
        import diffusers
    except ImportError as e:  # pragma: no cover - scripts/setup.sh installs it
        raise ImportError("making a random-weight checkpoint needs diffusers and transformers (scripts/setup.sh)") from e
    if kind not in ("base", "refiner"):
        raise ValueError(f"kind must be 'base' or 'refiner', got {kind!r}")
    refiner = kind == "refiner"
    components = _tiny_sdxl_components(seed, not refiner, refiner, bpe_path, folder)
    if refiner:
        pipe = diffusers.StableDiffusionXLImg2ImgPipeline(
            **components, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False, add_watermarker=False)
    else:
        pipe = diffusers.StableDiffusionXLPipeline(**components, add_watermarker=False)
    checkpoint = os.path.join(folder, f"tiny-sdxl-{kind}")
    pipe.save_pretrained(checkpoint)
    if fp16_variant:
        pipe.to(torch.float16).save_pretrained(checkpoint, variant="fp16")
    return checkpoint

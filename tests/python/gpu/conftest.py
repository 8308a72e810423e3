"""GPU fixtures: one Stable Diffusion 1.5-shaped checkpoint (the real block widths and head sizes 40,
80, 160 and the VAE's single 512-wide head; fewer layers, so it builds in seconds), written by
diffusers in float16 as the guide's checkpoints are."""

import pytest
import torch



@pytest.fixture(scope="session")
def sd15_shaped_checkpoint(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from native_diffusers.utils.clip_vocab import write_clip_vocabulary

    folder = tmp_path_factory.mktemp("sd15_shaped")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                          layers_per_block=1)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=1, latent_channels=4, sample_size=512,
    )
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=2, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1,
    ))
    write_clip_vocabulary(str(folder / "tok"))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder / "tok"))
    scheduler = diffusers.PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    path = str(folder / "sd15")
    pipe.to(torch.float16).save_pretrained(path, variant="fp16")
    return path

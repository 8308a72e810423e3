"""``python -m native_diffusers [CHECKPOINT] [--prompt ...]``: the main job.

Until the image-to-image pipeline lands, it loads a checkpoint's tokenizer and text encoder,
encodes the prompt on the native engine and prints the embedding's shape and norm. Without a
checkpoint it makes a small random-weight one (and says so)."""

import argparse
import os
import sys
import tempfile

import torch


def _make_demo_checkpoint(folder: str) -> str:
    """A random-weight SD-1.5-shaped text encoder plus the real CLIP vocabulary, written by
    transformers (installed by scripts/setup.sh, never a runtime dependency)."""
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - setup installs it
        raise SystemExit("making a demo checkpoint needs transformers; run scripts/setup.sh first") from e
    from native_diffusers.utils.clip_vocab import write_clip_vocabulary

    write_clip_vocabulary(os.path.join(folder, "tokenizer"))
    torch.manual_seed(0)
    config = transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    transformers.CLIPTextModel(config).save_pretrained(os.path.join(folder, "text_encoder"))
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m native_diffusers", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="diffusers checkpoint folder or hub id")
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    args = parser.parse_args(argv)

    import native_diffusers as nd

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = _make_demo_checkpoint(tmp)
            print("No checkpoint given: using a small RANDOM-WEIGHT checkpoint made just now (real CLIP vocabulary).")
        tokenizer = nd.CLIPTokenizer.from_pretrained(checkpoint, subfolder="tokenizer")
        text_encoder = nd.CLIPTextModel.from_pretrained(checkpoint, subfolder="text_encoder", torch_dtype=torch.float32)
        ids = tokenizer(
            [args.prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids
        embeds = text_encoder(ids)[0]
        print(f"prompt: {args.prompt!r}")
        print(f"input_ids: {ids[0, :12].tolist()}...")
        print(f"prompt_embeds shape: {tuple(embeds.shape)}  norm: {embeds.norm().item():.4f}  dtype: {embeds.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

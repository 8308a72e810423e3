"""Writes a CLIP tokenizer folder (vocab.json, merges.txt, configs) from OpenAI's original BPE
file ``bpe_simple_vocab_16e6.txt.gz``, the way Hugging Face converted it for
openai/clip-vit-large-patch14 (SD 1.5's tokenizer). Used by the demo and the tests, which cannot
download a real checkpoint."""

import gzip
import json
import os
from typing import Dict, List, Optional

_DEFAULT_BPE = os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "..", "..", "..", "tests", "data", "bpe_simple_vocab_16e6.txt.gz"
)


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's BPE is built on."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def find_clip_bpe_file(path: Optional[str] = None) -> str:
    candidates = [path, os.environ.get("ND_CLIP_BPE_PATH"), os.path.normpath(_DEFAULT_BPE)]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    raise OSError(
        "CLIP's bpe_simple_vocab_16e6.txt.gz was not found (looked in: "
        + ", ".join(c for c in candidates if c)
        + "); scripts/setup.sh extracts it from the open_clip_torch wheel."
    )


def clip_vocab_and_merges(bpe_path: Optional[str] = None):
    with gzip.open(find_clip_bpe_file(bpe_path), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    # Ref: openai/CLIP simple_tokenizer.py: 49152 - 256 - 2 merges after the header line.
    merges: List[str] = lines[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    symbols += [s + "</w>" for s in symbols]
    symbols += ["".join(m.split()) for m in merges]
    symbols += ["<|startoftext|>", "<|endoftext|>"]
    return {s: i for i, s in enumerate(symbols)}, merges


def write_clip_vocabulary(folder: str, bpe_path: Optional[str] = None, pad_token: str = "<|endoftext|>") -> str:
    """Writes SD 1.5's tokenizer folder layout; ``pad_token="!"`` gives SDXL's tokenizer_2."""
    vocab, merges = clip_vocab_and_merges(bpe_path)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": pad_token}
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}, f)
    return folder

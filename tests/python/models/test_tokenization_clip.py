"""Parity of native_diffusers.CLIPTokenizer with transformers.CLIPTokenizer (5.x): the real CLIP
vocabulary over a fixed corpus of awkward prompts, small vocabularies saved by transformers itself,
and error cases."""

import gzip
import json
import os
import random
import unicodedata

import pytest
import torch

transformers = pytest.importorskip("transformers")

from native_diffusers import CLIPTokenizer  # noqa: E402
from native_diffusers.utils.clip_vocab import bytes_to_unicode, find_clip_bpe_file  # noqa: E402

MIN_CORPUS = 1000
_BPE_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "data", "bpe_simple_vocab_16e6.txt.gz")


# ---- fixtures ------------------------------------------------------------------------------------


def _added_token(content):
    # SD 1.5's tokenizer_config.json stores its special tokens as serialized AddedTokens.
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def _write_real_clip_folder(folder, pad_token):
    """HF's conversion of openai/clip-vit-large-patch14, the layout of SD 1.5's `tokenizer/`."""
    try:
        bpe = find_clip_bpe_file(os.path.normpath(_BPE_FILE))
    except OSError as e:
        pytest.skip(str(e))
    with gzip.open(bpe, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {
        "bos_token": _added_token("<|startoftext|>"),
        "eos_token": _added_token("<|endoftext|>"),
        "unk_token": _added_token("<|endoftext|>"),
        "pad_token": pad_token,
    }
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f)
    config = {**special, "add_prefix_space": False, "do_lower_case": True, "errors": "replace",
              "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return str(folder)


@pytest.fixture(scope="module")
def real_clip_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_tokenizers")
    sd15 = _write_real_clip_folder(root / "sd15", "<|endoftext|>")
    # SDXL's tokenizer_2 (open_clip ViT-bigG) pads with "!".
    sdxl2 = _write_real_clip_folder(root / "sdxl_tokenizer_2", "!")
    # What transformers 5 writes itself: tokenizer.json + tokenizer_config.json.
    saved = str(root / "saved_by_transformers")
    transformers.CLIPTokenizer.from_pretrained(sd15).save_pretrained(saved)
    return {"sd15": sd15, "sdxl_tokenizer_2": sdxl2, "saved_by_transformers": saved}


# ---- corpus --------------------------------------------------------------------------------------

_SUBJECTS = ["a photo of an astronaut riding a horse on mars", "portrait of a cyberpunk samurai",
             "A Cozy Cabin In The Woods", "the Eiffel Tower at night", "an oil painting of a fox",
             "RAW photo, 1girl, looking at viewer", "a cat wearing sunglasses", "futuristic city skyline"]
_MODIFIERS = ["highly detailed", "8k uhd", "trending on artstation", "by Greg Rutkowski and Alphonse Mucha",
              "(masterpiece:1.2)", "[[best quality]]", "{volumetric lighting}", "f/1.8, 85mm", "1920x1080",
              "dslr, soft lighting, high quality, film grain", "unreal engine 5", "octane render", "4K!!!",
              "sharp focus -- ar 16:9", "v2.1", "3.14159", "100%", "#hashtag @user", "e-mail: a.b@c.de",
              "C++/C#", "$19.99", "~~~", "...", "?!?!", "\"quoted\"", "'single'", "<tag>", "a|b|c"]
_CONTRACTIONS = ["don't", "I'M HERE", "they've", "we'll", "she'd", "it's", "'s", "''s", "'LL", "rock'n'roll",
                 "o'clock", "'re'", "''", "'tis", "y'all'd've", "DON'T", "I'd", "'m"]
_UNICODE = ["café", "naïve", "Ångström", "Straße", "ÉCOLE ÉTÉ", "façade", "Ørsted", "Łódź", "İstanbul", "ıi",
            "ΟΔΟΣ ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "ς", "Σ", "东京の夜景", "漢字テスト", "한국어 문장", "مرحبا بالعالم",
            "שלום עולם", "Привет, МИР", "नमस्ते दुनिया", "สวัสดีครับ", "ﬁ ligature", "Ⅻ Ⅳ", "x² ½ ¾",
            "٣٤٥ ७८", "ＦＵＬＬＷＩＤＴＨ １２３", "∑∫√∞ ≠ ≤", "™ © ®", "ǅ ǈ ǋ", "ẞ", "Ꭰ",
            "👩‍👩‍👧‍👦", "👍🏽 👍🏿", "🏳️‍🌈", "❤️", "🇯🇵🇫🇷", "🧑🏻‍🚀", "😀😃😄", "🐈‍⬛", "e\u0301", "a\u0308\u0304",
            "\u0301leading mark", "z\u0335\u0310a\u0336lgo", "\u0915\u094d\u0937", "\U0001d400\U0001d7d8"]
_NFD_SOURCES = ["café crème brûlée", "Ångström", "Ελληνικά", "한국어", "ﬁancé", "Übermensch"]
_SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2009", "\u1680", "\u200b", "\u180e",
           "\x1c", "\x1f", "\x85", "\ufeff", " \t \n "]
_SPECIALS = ["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|StartOfText|>", "<|endoftext",
             "< |endoftext|>", "<|endoftext|><|endoftext|>", "!", "!!", "a!b"]
_EXPLICIT = ["", " ", "a", "A", "!", "\t\n", "<|endoftext|>", "hello world", "x" * 300, "ab" * 120,
             "1234567890" * 10, "!" * 90, " ".join(["word"] * 100), "İ" * 5, "a\u0301\u0302\u0303",
             "\x00nul\x00", "\x7f\x80\x9f", "\ud7ff\ue000\uffff", "\U0010fffd", "\U0001f600" * 40]


def _corpus():
    rng = random.Random(20240611)
    corpus = list(_EXPLICIT)
    for s in _NFD_SOURCES:
        corpus += [unicodedata.normalize("NFC", s), unicodedata.normalize("NFD", s)]
    pools = [_SUBJECTS, _MODIFIERS, _CONTRACTIONS, _UNICODE, _SPECIALS]
    weights = [4, 5, 2, 4, 1]
    while len(corpus) < 1200:
        n = rng.choice([1, 2, 3, 5, 8, 30])
        parts = []
        for _ in range(n):
            part = rng.choice(rng.choices(pools, weights)[0])
            if rng.random() < 0.3:
                part = part.upper() if rng.random() < 0.5 else part.swapcase()
            if rng.random() < 0.1:
                part = unicodedata.normalize("NFD", part)
            parts.append(part)
            parts.append(rng.choice([", ", " ", "", rng.choice(_SPACES)]))
        if rng.random() < 0.15:  # random code points from blocks both libraries know
            lo, hi = rng.choice([(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
                                 (0x900, 0x97F), (0x2000, 0x206F), (0x2190, 0x22FF), (0x3040, 0x30FF),
                                 (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F300, 0x1F64F)])
            parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))))
        corpus.append("".join(parts))
    return corpus


CORPUS = _corpus()


# ---- (1) the real CLIP vocabulary ------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["sd15", "sdxl_tokenizer_2", "saved_by_transformers"])
@pytest.mark.parametrize("mode", ["max_length_77", "no_padding"])
def test_real_vocabulary_matches_transformers(real_clip_folders, flavor, mode):
    folder = real_clip_folders[flavor]
    ref = transformers.CLIPTokenizer.from_pretrained(folder)
    ours = CLIPTokenizer.from_pretrained(folder)
    kwargs = {"padding": "max_length", "max_length": 77, "truncation": True} if mode == "max_length_77" else {}
    expected = ref(CORPUS, **kwargs)
    actual = ours(CORPUS, **kwargs)
    mismatches = [(s, e, a) for s, e, a in zip(CORPUS, expected.input_ids, actual.input_ids) if e != a]
    assert not mismatches, f"{len(mismatches)}/{len(CORPUS)} differ; first: {mismatches[0]!r}"
    assert actual.attention_mask == expected.attention_mask
    assert len(CORPUS) >= MIN_CORPUS
    print(f"{flavor}/{mode}: {len(CORPUS)} of {len(CORPUS)} strings match")


def test_real_vocabulary_properties(real_clip_folders):
    for flavor, folder in real_clip_folders.items():
        ref = transformers.CLIPTokenizer.from_pretrained(folder)
        ours = CLIPTokenizer.from_pretrained(folder)
        for name in ["model_max_length", "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "pad_token",
                     "bos_token", "eos_token", "vocab_size"]:
            assert getattr(ours, name) == getattr(ref, name), (flavor, name)
        assert len(ours) == len(ref), flavor


def test_real_vocabulary_single_text_and_tensors(real_clip_folders):
    folder = real_clip_folders["sd15"]
    ref = transformers.CLIPTokenizer.from_pretrained(folder)
    ours = CLIPTokenizer.from_pretrained(folder)
    prompt = "a photo of an astronaut riding a horse on mars"
    assert ours(prompt).input_ids == ref(prompt).input_ids  # a flat list for one string
    assert ours.encode(prompt) == ref.encode(prompt)
    kwargs = {"padding": "max_length", "max_length": ours.model_max_length, "truncation": True, "return_tensors": "pt"}
    ids, ref_ids = ours([prompt, "x"], **kwargs), ref([prompt, "x"], **kwargs)
    assert ids.input_ids.dtype == torch.long and ids.input_ids.shape == (2, 77)
    assert torch.equal(ids.input_ids, ref_ids.input_ids)
    assert torch.equal(ids.attention_mask, ref_ids.attention_mask)
    assert ours(prompt, return_tensors="pt").input_ids.shape == ref(prompt, return_tensors="pt").input_ids.shape
    cases = [(True, None, None), ("longest", True, 5), (False, None, 4), (False, True, 1), ("max_length", None, 5),
             ("max_length", True, None), (False, "longest_first", 3)]
    for padding, truncation, max_length in cases:
        texts = [prompt, "x", ""]
        args = {"padding": padding, "truncation": truncation, "max_length": max_length}
        assert ours(texts, **args) == dict(ref(texts, **args)), args
    assert ours(prompt, add_special_tokens=False).input_ids == ref(prompt, add_special_tokens=False).input_ids
    assert "attention_mask" not in ours(prompt, return_attention_mask=False)


@pytest.mark.parametrize("flavor", ["sd15", "sdxl_tokenizer_2"])
def test_real_vocabulary_decode_matches_transformers(real_clip_folders, flavor):
    folder = real_clip_folders[flavor]
    ref = transformers.CLIPTokenizer.from_pretrained(folder)
    ours = CLIPTokenizer.from_pretrained(folder)
    sample = CORPUS[:300]
    ids = ref(sample, padding="max_length", max_length=77, truncation=True).input_ids
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == ref.batch_decode(ids, skip_special_tokens=skip)
    assert ours.decode(torch.tensor(ids[0])) == ref.decode(torch.tensor(ids[0]))
    assert ours.tokenize("A photo, 8k!!") == ref.tokenize("A photo, 8k!!")


# ---- (2) small vocabularies saved by transformers -------------------------------------------------


def _small_vocab():
    # Leaves out some bytes so unknown symbols fall back to the unk token.
    alphabet = [c for b, c in bytes_to_unicode().items() if not (0xC0 <= b <= 0xCF)]
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges = []
    for word in ["the", "photo", "cat", "astronaut", "of", "a", "!!", "'s", "detailed", "high", "quality"]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            merges.append((parts[0], parts[1]))
            if merged not in vocab:
                vocab.append(merged)
            parts = [merged] + parts[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(dict.fromkeys(vocab))}, merges


@pytest.mark.parametrize("pad_token", ["<|endoftext|>", "!"])
def test_small_vocabulary_saved_by_transformers(tmp_path, pad_token):
    vocab, merges = _small_vocab()
    ref = transformers.CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad_token, model_max_length=16)
    ref.save_pretrained(tmp_path)
    ref = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    ours = CLIPTokenizer.from_pretrained(tmp_path)
    assert ours.pad_token == pad_token and ours.pad_token_id == ref.pad_token_id
    for kwargs in [{}, {"padding": "max_length", "truncation": True}, {"padding": True}]:
        expected = ref(CORPUS, **kwargs)
        actual = ours(CORPUS, **kwargs)
        assert actual.input_ids == expected.input_ids, kwargs
        assert actual.attention_mask == expected.attention_mask, kwargs


def test_subfolder_and_model_max_length_override(real_clip_folders, tmp_path):
    root = os.path.dirname(real_clip_folders["sd15"])
    ours = CLIPTokenizer.from_pretrained(root, subfolder="sd15", model_max_length=20)
    assert ours.model_max_length == 20
    assert len(ours("word " * 50, padding="max_length", truncation=True).input_ids) == 20


def test_missing_model_max_length_is_unbounded(tmp_path):
    vocab, merges = _small_vocab()
    transformers.CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("model_max_length", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ref = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    ours = CLIPTokenizer.from_pretrained(tmp_path)
    assert ours.model_max_length == ref.model_max_length == int(1e30)
    text = "the cat " * 40
    assert ours(text, padding="max_length", truncation=True) == dict(ref(text, padding="max_length", truncation=True))


# ---- (3) errors ----------------------------------------------------------------------------------


@pytest.fixture
def small_folder(tmp_path):
    vocab, merges = _small_vocab()
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return tmp_path


def test_missing_folder_or_files_raise_oserror(tmp_path):
    with pytest.raises(OSError):
        CLIPTokenizer.from_pretrained(tmp_path / "does_not_exist")
    with pytest.raises(OSError, match="vocab.json"):
        CLIPTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("merges.txt", "#version: 0.2\nt h e\n", "merges.txt"),
        ("merges.txt", "#version: 0.2\nzzz qqq\n", "not in the vocabulary"),
        ("vocab.json", '{"a": "zero"}', "vocab.json"),
        ("vocab.json", '{"a": 0,', "vocab.json"),
        ("vocab.json", "[1, 2, 3]", "vocab.json"),
        ("tokenizer_config.json", '{"model_max_length": "77"}', "tokenizer_config.json"),
        ("tokenizer_config.json", '{"pad_token": 12}', "tokenizer_config.json"),
        ("tokenizer_config.json", '{"padding_side": "middle"}', "padding_side"),
    ],
)
def test_malformed_files_raise_valueerror(small_folder, name, content, match):
    (small_folder / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        CLIPTokenizer.from_pretrained(small_folder)


def test_invalid_inputs_raise_like_transformers(small_folder):
    ours = CLIPTokenizer.from_pretrained(small_folder)
    for bad in [5, [1, 2], b"abc", None]:
        with pytest.raises(ValueError):
            ours(bad)
    with pytest.raises(TypeError):
        ours(["a", 3])
    with pytest.raises(TypeError):
        ours("lone \ud800 surrogate")
    with pytest.raises(ValueError, match="Unable to create tensor"):
        ours(["a", "a b c"], return_tensors="pt")
    with pytest.raises(ValueError):
        ours("a", padding="sideways")

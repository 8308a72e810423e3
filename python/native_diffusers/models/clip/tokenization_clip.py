"""CLIPTokenizer with transformers' surface, backed by the C++ tokenizer in ``_C``.

Mirrors transformers ``CLIPTokenizer`` (models/clip/tokenization_clip.py): the same ids, the same
padding/truncation rules, the same special tokens read from the checkpoint's files."""

import logging
import os
from typing import Any, List, Optional, Sequence, Union

from ... import _C

logger = logging.getLogger(__name__)

# transformers' VERY_LARGE_INTEGER: the model_max_length of a tokenizer whose config sets none.
VERY_LARGE_INTEGER = int(1e30)

_HUB_KWARGS = ("cache_dir", "revision", "local_files_only", "token")

_TEXT_TYPE_ERROR = (
    "text input must be of type `str` (single example), `list[str]` (batch or single pretokenized example) "
    "or `list[list[str]]` (batch of pretokenized examples)."
)


class BatchEncoding(dict):
    """transformers' ``BatchEncoding``: a dict of model inputs with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'BatchEncoding' object has no attribute '{name}'") from None

    def to(self, device) -> "BatchEncoding":
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def _resolve_folder(pretrained_model_name_or_path, subfolder=None, **hub_kwargs) -> str:
    try:
        from ...utils.hub_utils import resolve_model_path
    except ImportError:
        folder = os.fspath(pretrained_model_name_or_path)
        return os.path.join(folder, subfolder) if subfolder else folder
    return resolve_model_path(pretrained_model_name_or_path, subfolder=subfolder, **hub_kwargs)


def _check_text(text) -> bool:
    """Returns whether ``text`` is a batch; raises like transformers for anything else."""
    if isinstance(text, str):
        batched = False
        items = [text]
    elif isinstance(text, (list, tuple)) and len(text) > 0 and isinstance(text[0], str):
        batched = True
        items = text
    elif isinstance(text, (list, tuple)) and len(text) == 0:
        raise ValueError("text input is an empty list; pass at least one string")
    else:
        raise ValueError(_TEXT_TYPE_ERROR)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"every text in a batch must be a str, got {type(item).__name__}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as e:
            # transformers' backend refuses such strings with a TypeError too.
            raise TypeError(f"text is not valid Unicode (lone surrogate?): {e}") from None
    return batched


def _to_tensors(values, return_tensors: Optional[str], name: str):
    if return_tensors is None:
        return values
    if return_tensors not in ("pt", "np"):
        raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'pt', 'np' or None")
    if len({len(v) for v in values}) > 1:
        raise ValueError(
            "Unable to create tensor, you should probably activate truncation and/or padding with "
            f"'padding=True' 'truncation=True' to have batched tensors with the same length ({name} are ragged)."
        )
    if return_tensors == "pt":
        import torch

        return torch.tensor(values, dtype=torch.long)
    import numpy as np

    return np.asarray(values, dtype=np.int64)


class CLIPTokenizer:
    """transformers' CLIPTokenizer: byte-level BPE with ``</w>`` word ends, bos/eos around every text."""

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, engine: "_C.CLIPTokenizer", name_or_path: str = ""):
        self._engine = engine
        self.name_or_path = name_or_path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: Optional[str] = None, **kwargs):
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        model_max_length = kwargs.pop("model_max_length", None)
        if kwargs:
            logger.warning("CLIPTokenizer.from_pretrained ignores unsupported arguments: %s", sorted(kwargs))
        folder = _resolve_folder(pretrained_model_name_or_path, subfolder=subfolder, **hub_kwargs)
        backend = _C.CLIPTokenizer.from_folder(os.fspath(folder))
        tokenizer = cls(backend, name_or_path=str(pretrained_model_name_or_path))
        if model_max_length is not None:
            tokenizer.model_max_length = model_max_length
        return tokenizer

    # ---- special tokens and sizes ----
    @property
    def model_max_length(self) -> int:
        value = self._engine.model_max_length
        return VERY_LARGE_INTEGER if value is None else value

    @model_max_length.setter
    def model_max_length(self, value: int):
        # transformers treats anything above LARGE_INTEGER (1e20) as "no limit".
        self._engine.model_max_length = None if value is None or value > int(1e20) else int(value)

    bos_token = property(lambda self: self._engine.bos_token)
    eos_token = property(lambda self: self._engine.eos_token)
    unk_token = property(lambda self: self._engine.unk_token)
    pad_token = property(lambda self: self._engine.pad_token)
    bos_token_id = property(lambda self: self._engine.bos_token_id)
    eos_token_id = property(lambda self: self._engine.eos_token_id)
    unk_token_id = property(lambda self: self._engine.unk_token_id)
    pad_token_id = property(lambda self: self._engine.pad_token_id)
    vocab_size = property(lambda self: self._engine.vocab_size)
    padding_side = property(lambda self: self._engine.padding_side)
    truncation_side = property(lambda self: self._engine.truncation_side)

    def __len__(self) -> int:
        return len(self._engine)

    def __repr__(self) -> str:
        return (
            f"CLIPTokenizer(name_or_path='{self.name_or_path}', vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, pad_token='{self.pad_token}')"
        )

    # ---- encoding ----
    def __call__(
        self,
        text: Union[str, Sequence[str]],
        padding: Union[bool, str] = False,
        truncation: Optional[Union[bool, str]] = None,
        max_length: Optional[int] = None,
        return_tensors: Optional[str] = None,
        add_special_tokens: bool = True,
        return_attention_mask: Optional[bool] = None,
    ) -> BatchEncoding:
        if text is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        batched = _check_text(text)
        texts = list(text) if batched else [text]
        input_ids, attention_mask = self._engine(
            texts, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=add_special_tokens
        )
        if not batched and return_tensors is None:
            input_ids, attention_mask = input_ids[0], attention_mask[0]
        encoding = BatchEncoding(input_ids=_to_tensors(input_ids, return_tensors, "input_ids"))
        if return_attention_mask is None or return_attention_mask:
            encoding["attention_mask"] = _to_tensors(attention_mask, return_tensors, "attention_mask")
        return encoding

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        padding: Union[bool, str] = False,
        truncation: Optional[Union[bool, str]] = None,
        max_length: Optional[int] = None,
        return_tensors: Optional[str] = None,
    ):
        return self(
            text,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            add_special_tokens=add_special_tokens,
            return_attention_mask=False,
        )["input_ids"]

    def tokenize(self, text: str) -> List[str]:
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=False))

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self._engine.id_to_token(ids)
        return [self._engine.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self._engine.token_to_id(tokens)
        return [self._engine.token_to_id(t) for t in tokens]

    # ---- decoding ----
    def decode(self, token_ids, skip_special_tokens: bool = False, **kwargs) -> str:
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        return self._engine.decode([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs) -> List[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(seq, skip_special_tokens=skip_special_tokens) for seq in sequences]


__all__ = ["BatchEncoding", "CLIPTokenizer"]

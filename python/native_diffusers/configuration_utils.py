"""Configs as diffusers and transformers expose them: a read-only mapping with attribute access."""

import json
import os
from collections import OrderedDict
from typing import Any, Dict


class FrozenDict(OrderedDict):
    """Mirrors diffusers' ``FrozenDict``: a config is data, read by key (``config["x"]``) or by
    attribute (``config.x``), and never edited in place (``from_config`` builds a new object)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__frozen = True

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'") from None

    def __setitem__(self, key, value):
        if getattr(self, "_FrozenDict__frozen", False):
            raise Exception(f"You cannot use ``__setitem__`` on a {self.__class__.__name__} instance.")
        super().__setitem__(key, value)

    def __delitem__(self, key):
        raise Exception(f"You cannot use ``__delitem__`` on a {self.__class__.__name__} instance.")

    def setdefault(self, *args, **kwargs):
        raise Exception(f"You cannot use ``setdefault`` on a {self.__class__.__name__} instance.")

    def pop(self, *args, **kwargs):
        raise Exception(f"You cannot use ``pop`` on a {self.__class__.__name__} instance.")

    def update(self, *args, **kwargs):
        raise Exception(f"You cannot use ``update`` on a {self.__class__.__name__} instance.")

    def to_dict(self) -> Dict[str, Any]:
        return dict(self)


def read_config_file(path: str) -> Dict[str, Any]:
    """Reads a JSON config with errors that name the file (missing -> OSError, bad -> ValueError)."""
    if not os.path.isfile(path):
        raise OSError(f"Error no file named {os.path.basename(path)} found in directory {os.path.dirname(path)}.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: nested too deep for Python's parser.
        raise ValueError(f"It looks like the config file at '{path}' is not a valid JSON file: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"The config file at '{path}' must contain a JSON object.")
    return data

"""Where a checkpoint lives: a local folder, the Hugging Face cache, or (when allowed) a download.

Mirrors the folder resolution in diffusers' ``DiffusionPipeline.download`` / ``ModelMixin.from_pretrained``
(``utils/hub_utils.py``): a local folder wins, then the cache, then ``huggingface_hub.snapshot_download``.
The cache lookup itself runs in C++ (``_C.find_in_hf_cache``), so loading from the cache needs no network
and no huggingface_hub import."""

import os
import warnings
from typing import Dict, List, Optional, Union

# Ids the Hub no longer serves; their files moved to the new org unchanged.
_RETIRED_REPO_IDS = {
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "runwayml/stable-diffusion-inpainting": "stable-diffusion-v1-5/stable-diffusion-inpainting",
}

# Ref: huggingface_hub constants.py ENV_VARS_TRUE_VALUES / HF_HUB_OFFLINE.
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def _is_offline(local_files_only: Optional[bool]) -> bool:
    if local_files_only:
        return True
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in _TRUE_VALUES


def _with_subfolder(folder: str, subfolder: Optional[str], name: str) -> str:
    if not subfolder:
        return folder
    path = os.path.join(folder, subfolder)
    if not os.path.isdir(path):
        raise OSError(f"Error no folder named {subfolder} found in {folder} (loading {name}).")
    return path


def _download_patterns(subfolder: Optional[str], use_safetensors: Optional[bool]) -> List[str]:
    # Configs and tokenizer files everywhere; weights only inside component folders, so the multi-GB
    # single-file checkpoints some repos keep at the top level (v1-5-pruned.ckpt) are never fetched.
    weights = ["*.bin"] if use_safetensors is False else ["*.safetensors"]
    patterns = ["*.json", "*.txt", "*/*.json", "*/*.txt"] + [f"*/{w}" for w in weights]
    if subfolder:
        patterns = [f"{subfolder}/{p.split('/')[-1]}" for p in patterns]
    return sorted(set(patterns))


def resolve_model_path(
    pretrained_model_name_or_path: Union[str, os.PathLike],
    subfolder: Optional[str] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    revision: Optional[str] = None,
    local_files_only: Optional[bool] = None,
    token: Optional[Union[str, bool]] = None,
    **ignored,
) -> str:
    """Returns the local folder of ``pretrained_model_name_or_path`` (with ``subfolder`` appended).

    Accepts what diffusers' ``from_pretrained`` accepts: a local folder, or a Hub id looked up in the
    Hugging Face cache (``HF_HUB_CACHE`` and friends, or ``cache_dir``) and otherwise downloaded with
    ``huggingface_hub.snapshot_download`` unless offline (``local_files_only`` or ``HF_HUB_OFFLINE=1``).
    Downloads fetch configs plus ``*.safetensors`` (``*.bin`` with ``use_safetensors=False``) inside
    component folders; every variant present is fetched, the variant is chosen at load time.
    Raises OSError naming every place it looked."""
    from .. import _C

    if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"pretrained_model_name_or_path must be a str or os.PathLike, got "
            f"{type(pretrained_model_name_or_path).__name__}"
        )
    name = os.fsdecode(os.fspath(pretrained_model_name_or_path))
    if os.path.isdir(name):
        return _with_subfolder(name, subfolder, name)
    if os.path.isfile(name):
        raise OSError(
            f"{name} is a file; native_diffusers loads diffusers-format folders (from_single_file is not "
            "supported)."
        )

    revision = revision or "main"
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
    places = [f"local folder {os.path.abspath(name)}"]
    repo_ids = [name]
    if name in _RETIRED_REPO_IDS:
        new_id = _RETIRED_REPO_IDS[name]
        warnings.warn(f"{name} was retired from the Hub; loading {new_id} instead.", FutureWarning, stacklevel=2)
        # A copy cached under the old id is still used; anything new comes from the new id.
        repo_ids = [new_id, name]

    valid_ids = []
    for repo_id in repo_ids:
        try:
            snapshot, looked_in = _C.find_in_hf_cache(repo_id, revision, cache_dir)
        except ValueError as e:
            places.append(f"no Hugging Face cache lookup ({e})")
            continue
        valid_ids.append(repo_id)
        places.extend(looked_in)
        if snapshot is not None and (not subfolder or os.path.isdir(os.path.join(snapshot, subfolder))):
            return _with_subfolder(snapshot, subfolder, name)
        if snapshot is not None:
            places.append(f"{os.path.join(snapshot, subfolder)} (cached snapshot without {subfolder}/)")

    if valid_ids:
        hub_place = _download(valid_ids[0], subfolder, cache_dir, revision, local_files_only, token, ignored)
        if os.path.isdir(hub_place):
            return _with_subfolder(hub_place, subfolder, name)
        places.append(hub_place)

    raise OSError(
        f"{name} is not a local folder and is not a valid model identifier listed on "
        f"'https://huggingface.co/models' that could be loaded. If this is a private repository, make sure to pass "
        f"a token having permission to this repo with `token` or log in with `hf auth login`. native_diffusers "
        f"looked in: " + "; ".join(places)
    )


def _download(repo_id, subfolder, cache_dir, revision, local_files_only, token, extra) -> str:
    """The downloaded snapshot folder, or a description of why there is none."""
    if _is_offline(local_files_only):
        why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
        return f"the Hugging Face Hub (not contacted: {why})"
    try:
        import huggingface_hub
    except ImportError:
        return "the Hugging Face Hub (not contacted: huggingface_hub is not installed)"
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            allow_patterns=_download_patterns(subfolder, extra.get("use_safetensors")),
        )
    except Exception as e:  # noqa: BLE001  (every hub failure becomes part of one OSError)
        return f"https://huggingface.co/{repo_id} (download failed: {type(e).__name__}: {e})"
    return folder


def load_pickle_state_dict(files) -> Dict[str, "torch.Tensor"]:  # noqa: F821
    """Merges the state dicts of ``.bin`` files read with ``torch.load(weights_only=True)``, which refuses
    arbitrary pickled code. A key in two shards is an error, as in the safetensors loader."""
    import torch

    if isinstance(files, (str, os.PathLike)):
        files = [files]
    state_dict: Dict[str, torch.Tensor] = {}
    for file in files:
        file = os.fspath(file)
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (UnpicklingError, RuntimeError, EOFError ...)
            raise OSError(f"Unable to load weights from pickle file {file} with weights_only=True: {e}") from e
        if not isinstance(loaded, dict):
            raise ValueError(f"{file} does not hold a state dict (got {type(loaded).__name__}).")
        for key, value in loaded.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise ValueError(f"{file} holds a non-tensor entry {key!r}; expected a state dict of tensors.")
            if key in state_dict:
                raise ValueError(f"tensor '{key}' appears in more than one shard (again in {file})")
            state_dict[key] = value
    return state_dict

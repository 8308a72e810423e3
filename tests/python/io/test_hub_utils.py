"""resolve_model_path against a fake Hugging Face cache laid out as huggingface_hub writes it
(models--org--name/refs/<branch> -> snapshots/<commit>/); nothing here may reach the network."""

import os
import pathlib
import warnings

import huggingface_hub
import pytest

from native_diffusers import _C
from native_diffusers.utils import resolve_model_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "f" * 40


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("snapshot_download must not be called")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    return root


def add_snapshot(root, repo_id, commit=COMMIT, ref="main", folders=("unet",)):
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for folder in folders:
        (snapshot / folder).mkdir(parents=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "model_index.json").write_text("{}")
    if ref:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def test_cache_roots_follow_hf_hub_cache(cache):
    assert _C.hf_cache_roots() == [str(cache)]


def test_local_folder_is_used_as_is(tmp_path, cache):
    (tmp_path / "ckpt" / "vae").mkdir(parents=True)
    assert resolve_model_path(str(tmp_path / "ckpt")) == str(tmp_path / "ckpt")
    assert resolve_model_path(pathlib.Path(tmp_path / "ckpt"), subfolder="vae") == str(tmp_path / "ckpt" / "vae")
    with pytest.raises(OSError, match="Error no folder named unet found in .*ckpt"):
        resolve_model_path(tmp_path / "ckpt", subfolder="unet")
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    with pytest.raises(OSError, match="is a file"):
        resolve_model_path(tmp_path / "weights.ckpt")
    with pytest.raises(TypeError):
        resolve_model_path(3)


def test_hub_id_resolves_through_refs(cache):
    snapshot = add_snapshot(cache, "org/tiny-sd")
    assert resolve_model_path("org/tiny-sd") == str(snapshot)
    assert resolve_model_path("org/tiny-sd", subfolder="unet") == str(snapshot / "unet")
    assert resolve_model_path("org/tiny-sd", revision=COMMIT) == str(snapshot)


def test_revision_branch_and_cache_dir(tmp_path, cache):
    other = tmp_path / "elsewhere"
    snapshot = add_snapshot(other, "org/m", commit=OTHER, ref="v2")
    with pytest.raises(OSError):
        resolve_model_path("org/m", revision="v2")
    assert resolve_model_path("org/m", revision="v2", cache_dir=other) == str(snapshot)


def test_missing_subfolder_in_cached_snapshot_names_it(cache):
    snapshot = add_snapshot(cache, "org/partial", folders=())
    with pytest.raises(OSError) as info:
        resolve_model_path("org/partial", subfolder="unet")
    assert str(snapshot / "unet") in str(info.value)


def test_retired_id_warns_and_loads_the_new_one(cache):
    snapshot = add_snapshot(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5")
    with pytest.warns(FutureWarning, match="retired"):
        assert resolve_model_path("runwayml/stable-diffusion-v1-5") == str(snapshot)


def test_retired_id_still_found_under_its_old_name(cache):
    snapshot = add_snapshot(cache, "runwayml/stable-diffusion-inpainting")
    with pytest.warns(FutureWarning, match="stable-diffusion-v1-5/stable-diffusion-inpainting"):
        assert resolve_model_path("runwayml/stable-diffusion-inpainting") == str(snapshot)


def test_not_found_error_names_every_place(cache):
    with pytest.raises(OSError) as info:
        resolve_model_path("org/absent")
    message = str(info.value)
    assert "org/absent is not a local folder and is not a valid model identifier" in message
    assert "https://huggingface.co/models" in message
    assert os.path.abspath("org/absent") in message
    assert str(cache / "models--org--absent" / "refs" / "main") in message
    assert "HF_HUB_OFFLINE" in message


def test_invalid_repo_id_is_an_os_error(cache):
    with pytest.raises(OSError, match="not a local folder.*not a valid repo id"):
        resolve_model_path("./no/such/folder")
    with pytest.raises(OSError, match="not a local folder"):
        resolve_model_path("org/..")


def test_local_files_only_never_downloads(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(OSError, match="local_files_only=True"):
        resolve_model_path("org/absent", local_files_only=True)


def test_downloads_when_online_and_not_cached(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []
    downloaded = add_snapshot(tmp_path / "dl", "org/new")

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(downloaded)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_model_path("org/new", subfolder="unet", token="t") == str(downloaded / "unet")
    (repo_id, kwargs), = calls
    assert repo_id == "org/new" and kwargs["revision"] == "main" and kwargs["token"] == "t"
    # Only the requested component, and never top-level single-file checkpoints.
    assert all(p.startswith("unet/") for p in kwargs["allow_patterns"])

    def failing(repo_id, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(OSError, match="download failed: RuntimeError: no network"):
        resolve_model_path("org/other")

"""Shared fixtures: tiny random-weight checkpoints written by the reference libraries themselves
(transformers / diffusers ``save_pretrained``), so parity tests load exactly what users have."""

import os

import pytest
import torch

# Nothing in the test suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# The real CLIP vocabulary, extracted by scripts/setup.sh.
os.environ.setdefault(
    "ND_CLIP_BPE_PATH", os.path.join(os.path.dirname(__file__), "..", "data", "bpe_simple_vocab_16e6.txt.gz")
)


def pytest_configure(config):
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture
def engine_layout(request):
    """The engine's 4-d layout for one test (parametrize with indirect=True): "auto" keeps NCHW on
    the CPU, "on" makes convolution weights and UNet/VAE activations channels-last, as CUDA runs."""
    from native_diffusers import _C

    previous = _C.channels_last_mode()
    _C.set_channels_last_mode(request.param)
    yield request.param
    _C.set_channels_last_mode(previous)


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    # A user's real cache must never satisfy a test by accident.
    cache = tmp_path_factory.mktemp("hf_cache_empty")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache.parent / "hf_home_empty"))


@pytest.fixture(scope="session")
def tiny_sd_checkpoint(tmp_path_factory):
    """make_tiny_sd_checkpoint's folder, written once per session, for tests that only read it."""
    pytest.importorskip("diffusers", reason="diffusers writes the random-weight checkpoint (test-only dependency)")
    from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint

    return make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("tiny-sd-session")))

"""Loading weights out of safetensors files (csrc/io/state_dict.h): by default tensors point into the
file's memory map; with copy-on-load they are the process's own, so a checkpoint rewritten or truncated
on disk after loading (an update, a sync client, a full disk) cannot take the pipeline down."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("diffusers", reason="diffusers writes the test checkpoint (test-only dependency)")

from native_diffusers import _C  # noqa: E402
from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("tiny-sd")))


def _truncate_every_weight_file_then_call(checkpoint, env):
    """Loads the pipeline, truncates every safetensors file of the checkpoint to its first 8 bytes,
    then runs one call; in a subprocess, since a zero-copy load faults (SIGBUS) there."""
    code = textwrap.dedent(f"""
        import glob, os
        import numpy as np, PIL.Image
        import native_diffusers as nd
        pipe = nd.AutoPipelineForImage2Image.from_pretrained({checkpoint!r})
        pipe.set_progress_bar_config(disable=True)
        for path in glob.glob(os.path.join({checkpoint!r}, "*", "*.safetensors")):
            os.truncate(path, 8)
        image = PIL.Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
        out = pipe("a cat", image=image, num_inference_steps=2, output_type="np").images
        print("IMAGE", out.shape, bool(np.isfinite(out).all()))
    """)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_copy_on_load_survives_the_files_being_truncated_after_loading(checkpoint, tmp_path):
    copy = tmp_path / "sd"
    subprocess.run(["cp", "-r", checkpoint, str(copy)], check=True)
    done = _truncate_every_weight_file_then_call(str(copy), dict(os.environ, ND_COPY_WEIGHTS_ON_LOAD="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IMAGE (1, 32, 32, 3) True" in done.stdout


def test_copy_on_load_switch_round_trips():
    before = _C.copy_weights_on_load()
    assert before is (os.environ.get("ND_COPY_WEIGHTS_ON_LOAD") == "1")
    _C.set_copy_weights_on_load(not before)
    assert _C.copy_weights_on_load() is (not before)
    _C.set_copy_weights_on_load(before)

"""Regression tests for careless and hostile input that used to crash or hang the process: each case
runs in a subprocess with a time limit, so a crash (a signal) or a hang fails the test instead of
ending the run, and must end in a Python exception of the right type naming what was wrong."""

import json
import os
import struct
import subprocess
import sys
import textwrap
import time

import pytest

_TIMEOUT_S = 120
_DEEP = 5000  # levels of nesting: enough to overflow a recursive parser's stack


def _run_case(code: str, timeout: float = _TIMEOUT_S) -> str:
    """Runs `code` in a fresh interpreter; returns its stdout. A signal, a non-zero exit or a
    time-out fails the test with what the child printed."""
    program = textwrap.dedent(code)
    try:
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung for {timeout} s:\n{program}\n{e.stdout}\n{e.stderr}")
    if done.returncode != 0:
        pytest.fail(f"exit {done.returncode} (a negative code is a signal):\n{program}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _expect_raises(body: str, exception: str, fragment: str, timeout: float = _TIMEOUT_S):
    """`body` must raise `exception` (a builtin exception's name) whose message holds `fragment`."""
    out = _run_case(f"""
import sys
try:
{textwrap.indent(textwrap.dedent(body), "    ")}
except {exception} as e:
    print("RAISED", type(e).__name__, str(e)[:2000])
    sys.exit(0)
print("NO EXCEPTION")
""", timeout)
    assert out.startswith("RAISED"), out
    assert fragment in out, out


def _tokenizer_folder(tmp_path):
    """A minimal valid tokenizer folder (vocab.json + merges.txt)."""
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "<|endoftext|>": 1, "<|startoftext|>": 2}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _deep(levels: int, leaf: str = "0") -> str:
    return "[" * levels + leaf + "]" * levels


def _safetensors_with_header(path, header_text: str):
    data = header_text.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(data)))
        f.write(data)


# -- parsers of untrusted bytes -----------------------------------------------------------------

@pytest.mark.parametrize("where", ["entry", "shape", "metadata"])
def test_deeply_nested_safetensors_header_is_refused_as_any_corrupt_header(tmp_path, where):
    path = tmp_path / "model.safetensors"
    header = {
        "entry": '{"w": ' + _deep(_DEEP) + "}",
        "shape": '{"w": {"dtype": "F32", "shape": ' + _deep(_DEEP) + ', "data_offsets": [0, 0]}}',
        "metadata": '{"__metadata__": {"k": ' + _deep(_DEEP, '"v"') + "}}",
    }[where]
    _safetensors_with_header(path, header)
    _expect_raises(f"""
        from native_diffusers import _C
        _C.safetensors_header({str(path)!r})
    """, "ValueError", "invalid safetensors file")


@pytest.mark.parametrize("name", ["vocab.json", "tokenizer_config.json"])
def test_deeply_nested_tokenizer_file_is_a_valueerror(tmp_path, name):
    folder = _tokenizer_folder(tmp_path)
    (folder / name).write_text('{"model_max_length": ' + _deep(_DEEP) + "}")
    _expect_raises(f"""
        import native_diffusers as nd
        nd.CLIPTokenizer.from_pretrained({str(folder)!r})
    """, "ValueError", "nested deeper")


def test_deeply_nested_model_index_and_config_are_valueerrors(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": ' + _deep(_DEEP) + "}")
    _expect_raises(f"""
        from native_diffusers import _C
        _C.read_model_index({str(tmp_path)!r})
    """, "ValueError", "nested deeper")
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text('{"sample_size": ' + _deep(_DEEP * 4) + "}")
    _expect_raises(f"""
        import native_diffusers as nd
        nd.UNet2DConditionModel.from_pretrained({str(unet)!r})
    """, "ValueError", "config.json")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["vocab.json", "merges.txt"])
def test_a_fifo_in_place_of_a_tokenizer_file_is_refused_at_once(tmp_path, name):
    folder = _tokenizer_folder(tmp_path)
    os.remove(folder / name)
    os.mkfifo(folder / name)
    _expect_raises(f"""
        import native_diffusers as nd
        nd.CLIPTokenizer.from_pretrained({str(folder)!r})
    """, "OSError", "not a regular file", timeout=60)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_place_of_a_weights_file_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "model.safetensors")
    _expect_raises(f"""
        from native_diffusers import _C
        _C.safetensors_header({str(tmp_path / "model.safetensors")!r})
    """, "OSError", "not a regular file", timeout=60)


# -- the tokenizer on huge prompts --------------------------------------------------------------

@pytest.fixture(scope="module")
def sd_checkpoint(tmp_path_factory):
    pytest.importorskip("diffusers", reason="diffusers writes the random-weight checkpoint (test-only dependency)")
    from native_diffusers.utils.testing_utils import make_tiny_sd_checkpoint

    return make_tiny_sd_checkpoint(str(tmp_path_factory.mktemp("tiny-sd-hostile")))


@pytest.mark.parametrize("kind", ["letters", "punctuation", "combining", "cjk", "words"])
def test_a_megabyte_prompt_tokenizes_quickly_and_as_transformers_truncates_it(sd_checkpoint, kind):
    transformers = pytest.importorskip("transformers")
    import native_diffusers as nd

    unit = {"letters": "abcdefghij", "punctuation": "!?.,;:-_()", "combining": "e\u0301a\u0308o\u0302u\u0303i",
            "cjk": "\u732b\u72ac\u9ce5\u9b5a\u82b1", "words": "a cozy cabin in the woods, "}[kind]
    prompt = (unit * (1_000_000 // len(unit.encode())))[: 1_000_000]
    folder = os.path.join(sd_checkpoint, "tokenizer")
    ours = nd.CLIPTokenizer.from_pretrained(folder)
    start = time.perf_counter()
    got = ours(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    seconds = time.perf_counter() - start
    expected = transformers.CLIPTokenizer.from_pretrained(folder)(prompt, padding="max_length", max_length=77,
                                                                   truncation=True).input_ids
    assert list(got) == list(expected)
    assert seconds < 5.0, f"{seconds:.1f} s for a 1 MB prompt"


# -- call arguments -----------------------------------------------------------------------------

def _pipeline_call(checkpoint: str, cls: str, call: str) -> str:
    return f"""
        import numpy as np, PIL.Image
        import native_diffusers as nd
        pipe = nd.{cls}.from_pretrained({checkpoint!r})
        pipe.set_progress_bar_config(disable=True)
        image = PIL.Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8))
        pipe({call})
    """


@pytest.mark.parametrize("cls, call, exception, fragment", [
    ("StableDiffusionImg2ImgPipeline", "'a cat', image=image, strength=float('nan'), num_inference_steps=2",
     "ValueError", "strength should in [0.0, 1.0] but is nan"),
    ("StableDiffusionImg2ImgPipeline", "'a cat', image=image, num_images_per_prompt=0, num_inference_steps=2",
     "ValueError", "num_images_per_prompt"),
    ("StableDiffusionPipeline", "'a cat', height=32, width=32, num_images_per_prompt=0, num_inference_steps=2",
     "ValueError", "num_images_per_prompt"),
    ("StableDiffusionPipeline", "'a cat', height=32, width=32, num_inference_steps=2.5",
     "TypeError", "num_inference_steps"),
    ("StableDiffusionPipeline", "'a cat', height=32, width=32, num_inference_steps=10**9",
     "ValueError", "num_inference_steps"),
])
def test_bad_call_arguments_raise_before_any_work(sd_checkpoint, cls, call, exception, fragment):
    _expect_raises(_pipeline_call(sd_checkpoint, cls, call), exception, fragment)


# -- robustness under use -----------------------------------------------------------------------

def test_ctrl_c_stops_the_loop_within_a_step_and_the_pipeline_stays_usable(sd_checkpoint):
    # The signal arrives while the engine runs with the GIL released (no step callback): only the
    # loop's own per-step check can notice it.
    out = _run_case(f"""
        import os, signal, threading, time
        import numpy as np
        import native_diffusers as nd
        pipe = nd.StableDiffusionPipeline.from_pretrained({sd_checkpoint!r})
        pipe.set_progress_bar_config(disable=True)
        kwargs = dict(prompt="a cat", height=32, width=32, output_type="np")
        start = time.perf_counter()
        pipe(num_inference_steps=4, **kwargs)
        step_s = (time.perf_counter() - start) / 4
        sent = []
        timer = threading.Timer(1.0, lambda: (sent.append(time.perf_counter()), os.kill(os.getpid(), signal.SIGINT)))
        timer.start()
        try:
            pipe(num_inference_steps=900, **kwargs)
            print("NOT INTERRUPTED")
        except KeyboardInterrupt:
            print("INTERRUPTED", time.perf_counter() - sent[0], step_s)
        again = pipe(num_inference_steps=3, **kwargs).images
        print("USABLE", bool(np.isfinite(again).all()))
    """)
    assert "INTERRUPTED" in out, out
    after_signal_s, step_s = (float(v) for v in out.split("INTERRUPTED")[1].split()[:2])
    assert after_signal_s < 2 * step_s + 0.5, out
    assert "USABLE True" in out, out

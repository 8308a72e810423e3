"""Regression tests for careless and hostile input that used to crash or hang the process: each case
runs in a subprocess with a time limit, so a crash (a signal) or a hang fails the test instead of
ending the run, and must end in a Python exception of the right type naming what was wrong."""

import json
import os
import struct
import time

import pytest
from host_memory import needs_proc
from subprocess_cases import expect_raises, run_case

_DEEP = 5000  # levels of nesting: enough to overflow a recursive parser's stack


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
    expect_raises(f"""
        from native_diffusers import _C
        _C.safetensors_header({str(path)!r})
    """, "ValueError", "invalid safetensors file")


@pytest.mark.parametrize("name", ["vocab.json", "tokenizer_config.json"])
def test_deeply_nested_tokenizer_file_is_a_valueerror(tmp_path, name):
    folder = _tokenizer_folder(tmp_path)
    (folder / name).write_text('{"model_max_length": ' + _deep(_DEEP) + "}")
    expect_raises(f"""
        import native_diffusers as nd
        nd.CLIPTokenizer.from_pretrained({str(folder)!r})
    """, "ValueError", "nested deeper")


def test_deeply_nested_model_index_and_config_are_valueerrors(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": ' + _deep(_DEEP) + "}")
    expect_raises(f"""
        from native_diffusers import _C
        _C.read_model_index({str(tmp_path)!r})
    """, "ValueError", "nested deeper")
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text('{"sample_size": ' + _deep(_DEEP * 4) + "}")
    expect_raises(f"""
        import native_diffusers as nd
        nd.UNet2DConditionModel.from_pretrained({str(unet)!r})
    """, "ValueError", "config.json")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["vocab.json", "merges.txt"])
def test_a_fifo_in_place_of_a_tokenizer_file_is_refused_at_once(tmp_path, name):
    folder = _tokenizer_folder(tmp_path)
    os.remove(folder / name)
    os.mkfifo(folder / name)
    expect_raises(f"""
        import native_diffusers as nd
        nd.CLIPTokenizer.from_pretrained({str(folder)!r})
    """, "OSError", "not a regular file", timeout=60)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_place_of_a_weights_file_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "model.safetensors")
    expect_raises(f"""
        from native_diffusers import _C
        _C.safetensors_header({str(tmp_path / "model.safetensors")!r})
    """, "OSError", "not a regular file", timeout=60)


def _invalid_utf8_inside_a_string(path, marker: bytes):
    # Bytes that are not UTF-8 right after `marker`, inside a JSON string, where a parser reports them.
    data = path.read_bytes()
    at = data.index(marker) + len(marker)
    path.write_bytes(data[:at] + b"\xb2\xff" + data[at:])


def test_invalid_utf8_in_a_weights_header_is_a_valueerror_naming_the_file(sd_checkpoint, tmp_path):
    # The engine's parse error quotes the bad bytes; Python could not decode that message and raised a
    # UnicodeDecodeError naming no file.
    import shutil

    vae = tmp_path / "vae"
    shutil.copytree(os.path.join(sd_checkpoint, "vae"), vae)
    _invalid_utf8_inside_a_string(vae / "diffusion_pytorch_model.safetensors", b'{"')
    expect_raises(f"""
        import native_diffusers as nd
        nd.AutoencoderKL.from_pretrained({str(vae)!r})
    """, "ValueError", "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_invalid_utf8_in_a_tokenizer_file_is_a_valueerror_naming_the_folder(sd_checkpoint, tmp_path, name):
    import shutil

    folder = tmp_path / "tokenizer"
    shutil.copytree(os.path.join(sd_checkpoint, "tokenizer"), folder)
    _invalid_utf8_inside_a_string(folder / name, b'": "')
    expect_raises(f"""
        import native_diffusers as nd
        nd.CLIPTokenizer.from_pretrained({str(folder)!r})
    """, "ValueError", str(folder))


# -- the tokenizer on huge prompts --------------------------------------------------------------

@pytest.fixture(scope="module")
def sd_checkpoint(tiny_sd_checkpoint):
    return tiny_sd_checkpoint  # conftest's, shared with the mutation suites


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
    expect_raises(_pipeline_call(sd_checkpoint, cls, call), exception, fragment)


# -- robustness under use -----------------------------------------------------------------------

def test_ctrl_c_stops_the_loop_within_a_step_and_the_pipeline_stays_usable(sd_checkpoint):
    # The signal arrives while the engine runs with the GIL released (no step callback): only the
    # loop's own per-step check can notice it.
    out = run_case(f"""
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
    assert after_signal_s < 2 * step_s + 1.0, out  # a second of slack for a loaded machine
    assert "USABLE True" in out, out


def test_two_threads_calling_one_pipeline_get_the_images_of_sequential_calls(sd_checkpoint, tmp_path):
    # The engine runs with the GIL released and keeps the scheduler's state between steps: unserialised,
    # concurrent calls gave other images than sequential ones, and at times a SIGSEGV in the scheduler's
    # step. Different prompts and seeds per thread, so that any mixing of the two runs shows; the
    # from_pipe pipeline shares the first one's scheduler, so it must take turns with it too. Kandinsky's
    # combined pipeline holds its lock around its prior's and its decoder's, which must not deadlock.
    from native_diffusers.utils.testing_utils import make_tiny_kandinsky22_checkpoints

    kandinsky = make_tiny_kandinsky22_checkpoints(str(tmp_path))
    out = run_case(f"""
        import threading
        import numpy as np, PIL.Image, torch
        import native_diffusers as nd
        torch.set_num_threads(1)
        text2img = nd.StableDiffusionPipeline.from_pretrained({sd_checkpoint!r})
        img2img = nd.StableDiffusionImg2ImgPipeline.from_pretrained({sd_checkpoint!r})
        shared = nd.AutoPipelineForImage2Image.from_pipe(text2img)
        combined = nd.AutoPipelineForImage2Image.from_pretrained({kandinsky!r})
        for pipe in (text2img, img2img, shared, combined):
            pipe.set_progress_bar_config(disable=True)
        image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))

        def run(pipe, seed, prompt):
            if pipe is text2img:
                extra = dict(height=32, width=32)
            elif pipe is combined:
                extra = dict(image=image, height=64, width=64, prior_num_inference_steps=2, strength=0.9)
            else:
                extra = dict(image=image, strength=0.9)
            return pipe(prompt, num_inference_steps=6, output_type="np", generator=torch.Generator().manual_seed(seed),
                        **extra).images

        for name, calls in [("one pipeline", [(img2img, 0, "a cat"), (img2img, 1, "a dog in the snow")]),
                            ("one scheduler", [(text2img, 0, "a cat"), (shared, 1, "a dog in the snow")]),
                            ("kandinsky", [(combined, 0, "a cat"), (combined, 1, "a dog in the snow")])]:
            sequential = [run(*call) for call in calls]
            for attempt in range(3):
                results, start = [None, None], threading.Barrier(2)

                def worker(i):
                    start.wait()
                    results[i] = run(*calls[i])

                threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                same = all(r is not None and np.array_equal(r, s) for r, s in zip(results, sequential))
                print(name, attempt, "SAME" if same else "DIFFERENT")
    """)
    assert out.count("SAME") == 9, out


@needs_proc
def test_a_hundred_calls_keep_host_memory_flat(sd_checkpoint):
    # In a child, so that what earlier tests left in this process does not move the measure.
    out = run_case(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import numpy as np, PIL.Image, torch
        import native_diffusers as nd
        from host_memory import assert_no_host_memory_growth
        torch.set_num_threads(1)
        pipe = nd.StableDiffusionImg2ImgPipeline.from_pretrained({sd_checkpoint!r})
        pipe.set_progress_bar_config(disable=True)
        image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
        call = lambda: pipe("a cat", image=image, strength=1.0, num_inference_steps=2, output_type="np",
                            generator=torch.Generator().manual_seed(0))
        # 20 MiB over 100 calls catches a leak of about 200 KiB or more per call: a set of UNet or VAE
        # activations (about 1 MiB at this size), a copy of a model's weights, the engine's request or
        # result objects; smaller leaks (one 12 KiB input image) hide in the allocator's fluctuation.
        assert_no_host_memory_growth(call, warmup=5, calls=100, limit_mib=20)
        print("FLAT")
    """)
    assert "FLAT" in out, out

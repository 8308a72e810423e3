"""Pipeline calls with careless or hostile arguments (None, wrong types, NaN, inf, negative, zero, huge,
empty lists, mismatched batch sizes, wrong-size tensors), over text-to-image and image-to-image, each in
a child interpreter (see subprocess_cases.CaseBatch): every call must either run or raise a clear
Python exception; a signal, a hang or any other exception fails its case."""

import pytest
from subprocess_cases import CaseBatch, assert_ran_or_refused_clearly

pytest.importorskip("diffusers", reason="diffusers writes the random-weight checkpoints (test-only dependency)")

# What a careless argument may end in, besides running: the types diffusers raises for bad arguments, and
# a RuntimeError (NotImplementedError among them: an option not supported yet) only with a clear message.
ACCEPTED = ("ValueError", "TypeError", "RuntimeError")

# Each call's arguments are the base's with one change, written as Python source evaluated in the child
# (where `torch`, `np`, `PIL`, `gen(seed)`, `pil(w, h)` exist). 32 x 32 pixels and one step keep each case
# a fraction of a second.
_BASE = {
    "t2i": "dict(prompt='a cat', height=32, width=32, num_inference_steps=1, output_type='np', generator=gen(0))",
    "i2i": "dict(prompt='a cat', image=pil(32, 32), strength=1.0, num_inference_steps=1, output_type='np',"
    " generator=gen(0))",
}
_BOTH = ("t2i", "i2i")

_MUTATIONS = [
    # the prompt and its batch
    (_BOTH, "prompt=None"),
    (_BOTH, "prompt=0"),
    (_BOTH, "prompt=1.5"),
    (_BOTH, "prompt=b'a cat'"),
    (_BOTH, "prompt=[]"),
    (_BOTH, "prompt=[None]"),
    (_BOTH, "prompt=['a', 3]"),
    (_BOTH, "prompt={'a': 1}"),
    (_BOTH, "prompt=''"),
    (_BOTH, "prompt='\\ud800'"),
    (_BOTH, "negative_prompt=5"),
    (_BOTH, "negative_prompt=[]"),
    (_BOTH, "negative_prompt=['a', 'b']"),
    (_BOTH, "prompt=['a', 'b'], negative_prompt=['a', 5]"),
    (_BOTH, "prompt=['a', 'b'], generator=[gen(0)] * 3"),
    (_BOTH, "generator=[]"),
    (_BOTH, "generator='seed'"),
    (_BOTH, "generator=[None]"),
    (_BOTH, "generator=5"),
    # step counts and batch sizes
    (_BOTH, "num_inference_steps=0"),
    (_BOTH, "num_inference_steps=-1"),
    (_BOTH, "num_inference_steps=2.5"),
    (_BOTH, "num_inference_steps=float('nan')"),
    (_BOTH, "num_inference_steps=None"),
    (_BOTH, "num_inference_steps='1'"),
    (_BOTH, "num_inference_steps=10**9"),
    (_BOTH, "num_inference_steps=2**70"),
    (_BOTH, "num_images_per_prompt=0"),
    (_BOTH, "num_images_per_prompt=-1"),
    (_BOTH, "num_images_per_prompt=None"),
    (_BOTH, "num_images_per_prompt=2.5"),
    (_BOTH, "num_images_per_prompt=10**9"),
    # numbers that must be finite
    (_BOTH, "guidance_scale=float('nan')"),
    (_BOTH, "guidance_scale=float('inf')"),
    (_BOTH, "guidance_scale=None"),
    (_BOTH, "guidance_scale='7.5'"),
    (_BOTH, "guidance_scale=-1.0"),
    (_BOTH, "guidance_scale=1e30"),
    (_BOTH, "eta=float('nan')"),
    (_BOTH, "eta=float('-inf')"),
    (_BOTH, "eta=None"),
    (("t2i",), "guidance_rescale=float('nan')"),
    (("t2i",), "guidance_rescale=None"),
    # output sizes
    (("t2i",), "height=None, width=None"),
    (("t2i",), "height=0"),
    (("t2i",), "height=-8"),
    (("t2i",), "height=33"),
    (("t2i",), "height=32.5"),
    (("t2i",), "height=float('nan')"),
    (("t2i",), "width=float('inf')"),
    (("t2i",), "height=10**9"),
    (("t2i",), "height=2**40, width=2**40"),
    (("t2i",), "height='32'"),
    (("t2i",), "height=[32]"),
    (("t2i",), "height=32.0, width=32.0"),
    # the input image
    (("i2i",), "image=None"),
    (("i2i",), "image='cat.png'"),
    (("i2i",), "image=0"),
    (("i2i",), "image=[]"),
    (("i2i",), "image=PIL.Image.new('RGB', (0, 0))"),
    (("i2i",), "image=PIL.Image.new('RGB', (0, 32))"),
    (("i2i",), "image=np.zeros((0, 0, 3), np.float32)"),
    (("i2i",), "image=torch.zeros(1, 3, 0, 0)"),
    (("i2i",), "image=pil(1, 1)"),
    (("i2i",), "image=pil(4, 4)"),
    (("i2i",), "image=pil(33, 17)"),
    (("i2i",), "image=np.zeros((2, 2, 2, 2, 2))"),
    (("i2i",), "image=torch.full((1, 3, 32, 32), float('nan'))"),
    (("i2i",), "image=torch.full((1, 3, 32, 32), 1e30)"),
    (("i2i",), "image=torch.zeros(1, 4, 16, 16)"),
    (("i2i",), "image=torch.zeros(1, 4, 3, 3)"),
    (("i2i",), "image=torch.zeros(1, 2, 32, 32)"),
    (("i2i",), "image=torch.zeros(1, 3, 32, 32, dtype=torch.int64)"),
    (("i2i",), "image=[pil(32, 32), pil(64, 16)]"),
    (("i2i",), "image=[pil(32, 32)] * 3"),
    (("i2i",), "strength=float('nan')"),
    (("i2i",), "strength=float('inf')"),
    (("i2i",), "strength=-1.0"),
    (("i2i",), "strength=2.0"),
    (("i2i",), "strength=None"),
    (("i2i",), "strength='0.5'"),
    (("i2i",), "strength=0.0"),
    # tensors in place of what the pipeline computes
    (("t2i",), "latents=torch.zeros(1, 4, 3, 3)"),
    (("t2i",), "latents=torch.zeros(2, 4, 16, 16)"),
    (("t2i",), "latents=torch.zeros(1, 3, 16, 16)"),
    (("t2i",), "latents=torch.zeros(0, 4, 16, 16)"),
    (("t2i",), "latents=torch.zeros(16, 16)"),
    (("t2i",), "latents=torch.tensor(1.0)"),
    (("t2i",), "latents=np.zeros((1, 4, 16, 16), np.float32)"),
    (("t2i",), "latents=torch.full((1, 4, 16, 16), float('nan'))"),
    (("t2i",), "latents=torch.zeros(1, 4, 16, 16, dtype=torch.int32)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(1, 77, 31)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(1, 5, 32)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(77, 32)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(0, 77, 32)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(1, 0, 32)"),
    (_BOTH, "prompt=None, prompt_embeds=[1, 2]"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(1, 77, 32), negative_prompt_embeds=torch.zeros(1, 77, 31)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(2, 77, 32), generator=[gen(0)]"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(1, 77, 32, dtype=torch.float64)"),
    (_BOTH, "prompt=None, prompt_embeds=torch.zeros(1, 77, 32, dtype=torch.int64)"),
    (_BOTH, "negative_prompt_embeds=torch.zeros(1, 77, 32)"),
    # options
    (_BOTH, "output_type='foo'"),
    (_BOTH, "output_type=None"),
    (_BOTH, "output_type=5"),
    (_BOTH, "clip_skip=-1"),
    (_BOTH, "clip_skip=100"),
    (_BOTH, "clip_skip=2.5"),
    (_BOTH, "clip_skip='1'"),
    (_BOTH, "callback_on_step_end=5"),
    (_BOTH, "callback_on_step_end=lambda *a: 5"),
    (_BOTH, "callback_on_step_end=lambda p, i, t, k: {'latents': torch.zeros(3)}"),
    (_BOTH, "callback_on_step_end_tensor_inputs=['foo']"),
    (_BOTH, "callback_on_step_end_tensor_inputs=None"),
    (_BOTH, "callback_steps=0"),
    (_BOTH, "callback_steps=-1"),
    (_BOTH, "cross_attention_kwargs=5"),
    (_BOTH, "timesteps=[]"),
    (_BOTH, "timesteps=[-5]"),
    (_BOTH, "timesteps=[10**9]"),
    (_BOTH, "timesteps=['a']"),
    (_BOTH, "sigmas=[float('nan')]"),
    (_BOTH, "not_an_argument=1"),
]
CASES = [dict(id=f"{pipe}:{change}", pipeline=pipe, change=change) for pipes, change in _MUTATIONS for pipe in pipes]
# The unchanged calls, so that a child failing for another reason cannot pass every case as "refused".
UNCHANGED = [dict(id=f"{pipe}:unchanged", pipeline=pipe, change="") for pipe in _BOTH]

_SETUP = """
import math
import numpy as np, PIL.Image
import native_diffusers as nd

CHECKPOINT = {checkpoint!r}
PIPELINES = dict(t2i=nd.StableDiffusionPipeline.from_pretrained(CHECKPOINT),
                 i2i=nd.StableDiffusionImg2ImgPipeline.from_pretrained(CHECKPOINT))
for p in PIPELINES.values():
    p.set_progress_bar_config(disable=True)
BASE = {base!r}

def gen(seed):
    return torch.Generator().manual_seed(seed)

def pil(width, height):
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)

def run(case):
    namespace = dict(torch=torch, np=np, PIL=PIL, math=math, gen=gen, pil=pil)
    kwargs = eval(BASE[case["pipeline"]], namespace)
    kwargs.update(eval("dict(" + case["change"] + ")", namespace))
    PIPELINES[case["pipeline"]](**kwargs)
"""


@pytest.fixture(scope="module")
def batch(tiny_sd_checkpoint):
    return CaseBatch(
        _SETUP.format(checkpoint=tiny_sd_checkpoint, base=_BASE), UNCHANGED + CASES, per_case_timeout_s=60
    )


@pytest.mark.parametrize("case_id", [case["id"] for case in UNCHANGED])
def test_the_unchanged_calls_run(batch, case_id):
    assert batch.outcome(case_id).kind == "ok", str(batch.outcome(case_id))


@pytest.mark.parametrize("case_id", [case["id"] for case in CASES])
def test_a_mutated_argument_runs_or_is_refused_clearly(batch, case_id):
    assert_ran_or_refused_clearly(batch.outcome(case_id), ACCEPTED)


# -- an empty image, given to every pipeline that takes one -------------------------------------------

_IMAGE_PIPELINE_CALLS = {
    "upscaler": "PIPELINES['upscaler'](prompt='a cat', image=IMAGE, num_inference_steps=1, output_type='np')",
    "controlnet": "PIPELINES['controlnet'](prompt='a cat', image=IMAGE, num_inference_steps=1, output_type='np')",
    "controlnet-img2img:image": (
        "PIPELINES['controlnet-img2img'](prompt='a cat', image=IMAGE, control_image=pil(32, 32), strength=1.0,"
        " num_inference_steps=1, output_type='np')"
    ),
    "controlnet-img2img:control_image": (
        "PIPELINES['controlnet-img2img'](prompt='a cat', image=pil(32, 32), control_image=IMAGE, strength=1.0,"
        " num_inference_steps=1, output_type='np')"
    ),
    "kandinsky-img2img": (
        "PIPELINES['kandinsky-img2img'](image_embeds=torch.randn(1, 32), negative_image_embeds=torch.randn(1, 32),"
        " image=IMAGE, height=64, width=64, strength=1.0, num_inference_steps=1, output_type='np')"
    ),
}
# None: the unchanged image, so that a call that fails for another reason cannot pass as a refusal.
_EMPTY_IMAGES = [
    None,
    "PIL.Image.new('RGB', (0, 0))",
    "PIL.Image.new('RGB', (32, 0))",
    "np.zeros((0, 0, 3), np.float32)",
    "torch.zeros(1, 3, 0, 32)",
    "[]",
]
IMAGE_CASES = [
    dict(id=f"{call}:{image}", call=call, image=image) for call in _IMAGE_PIPELINE_CALLS for image in _EMPTY_IMAGES
]

_IMAGE_SETUP = """
import numpy as np, PIL.Image
import native_diffusers as nd

SD, CONTROLNET, UPSCALER, KANDINSKY = {paths!r}
CALLS = {calls!r}
PIPELINES = {{}}

def pipeline(name):
    if name not in PIPELINES:
        controlnet = lambda: nd.ControlNetModel.from_pretrained(CONTROLNET)
        PIPELINES[name] = dict(
            upscaler=lambda: nd.StableDiffusionUpscalePipeline.from_pretrained(UPSCALER),
            controlnet=lambda: nd.StableDiffusionControlNetPipeline.from_pretrained(SD, controlnet=controlnet()),
            **{{"controlnet-img2img": lambda: nd.StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
                SD, controlnet=controlnet())}},
            **{{"kandinsky-img2img": lambda: nd.KandinskyV22Img2ImgPipeline.from_pretrained(KANDINSKY)}},
        )[name]()
        PIPELINES[name].set_progress_bar_config(disable=True)

def pil(width, height):
    return PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))

def run(case):
    pipeline(case["call"].split(":")[0])
    namespace = dict(torch=torch, np=np, PIL=PIL, pil=pil, PIPELINES=PIPELINES)
    namespace["IMAGE"] = pil(32, 32) if case["image"] is None else eval(case["image"], namespace)
    eval(CALLS[case["call"]], namespace)
"""


@pytest.fixture(scope="module")
def image_batch(tiny_sd_checkpoint, tmp_path_factory):
    from native_diffusers.utils import testing_utils

    folder = str(tmp_path_factory.mktemp("image-pipelines"))
    paths = (
        tiny_sd_checkpoint,
        testing_utils.make_tiny_controlnet(folder),
        testing_utils.make_tiny_sd_x4_upscaler(folder),
        testing_utils.make_tiny_kandinsky22_checkpoints(folder),
    )
    return CaseBatch(_IMAGE_SETUP.format(paths=paths, calls=_IMAGE_PIPELINE_CALLS), IMAGE_CASES, per_case_timeout_s=60)


# Inputs that diffusers' own checks refuse before their size is looked at, with diffusers' messages: an empty
# list as a ControlNet image, and numpy arrays in Kandinsky (it takes PIL images and tensors only).
_REFUSED_BY_DIFFUSERS_CHECKS = {
    "controlnet:[]": ("TypeError", "image must be passed"),
    "controlnet-img2img:control_image:[]": ("TypeError", "image must be passed"),
    "kandinsky-img2img:np.zeros((0, 0, 3), np.float32)": ("ValueError", "Input is in incorrect format"),
}


@pytest.mark.parametrize("case_id", [case["id"] for case in IMAGE_CASES])
def test_an_empty_image_is_a_valueerror_naming_it_in_every_pipeline(image_batch, case_id):
    outcome = image_batch.outcome(case_id)
    exception, fragment = _REFUSED_BY_DIFFUSERS_CHECKS.get(case_id, ("ValueError", "`image`"))
    if case_id.endswith(":None"):
        assert outcome.kind == "ok", str(outcome)
    else:
        assert outcome.raised_one_of((exception,)) and fragment in outcome.message, str(outcome)

"""What every scheduler shares, beyond each one's parity test: configs that put a timestep outside the
trained range fail in set_timesteps with a ValueError naming the keys (diffusers fails later, in step,
with an IndexError), while the schedulers that interpolate sigmas keep running as diffusers does."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402

INDEXING = ["DDIMScheduler", "DDPMScheduler", "PNDMScheduler"]
INTERPOLATING = [
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
]


def _three_steps(library, name, steps_offset, num_inference_steps=10):
    scheduler = getattr(library, name)(steps_offset=steps_offset, timestep_spacing="leading")
    scheduler.set_timesteps(num_inference_steps)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    for t in scheduler.timesteps[:3]:
        sample = scheduler.scale_model_input(sample, t) if hasattr(scheduler, "scale_model_input") else sample
        sample = scheduler.step(torch.randn(1, 4, 8, 8, generator=g), t, sample).prev_sample
    return sample


@pytest.mark.parametrize("name", INDEXING)
@pytest.mark.parametrize("steps_offset, num_inference_steps", [(5000, 10), (-5000, 10), (999, 10), (1, 1000)])
def test_timesteps_outside_the_trained_range_fail_in_set_timesteps(name, steps_offset, num_inference_steps):
    with pytest.raises(IndexError):
        _three_steps(diffusers, name, steps_offset, num_inference_steps)
    with pytest.raises(ValueError, match=rf"{name}: steps_offset={steps_offset} with num_inference_steps="
                                         rf"{num_inference_steps} puts timestep -?\d+ outside \[0, 1000\)"):
        _three_steps(nd, name, steps_offset, num_inference_steps)


@pytest.mark.parametrize("name", INTERPOLATING)
@pytest.mark.parametrize("steps_offset", [500, 5000])
def test_sigma_schedulers_accept_any_offset_as_diffusers_does(name, steps_offset):
    """The sigmas clamp to the trained range; LMS then integrates over empty intervals (0, as quad gives)."""
    expected = _three_steps(diffusers, name, steps_offset)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(_three_steps(nd, name, steps_offset), expected, rtol=0, atol=1e-5)

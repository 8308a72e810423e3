"""Shared parity drivers for the scheduler tests: the same scheduler built by diffusers and by
native_diffusers, driven through the same schedule and a fixed fake model, compared at every step."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity oracle (test-only dependency)")

import native_diffusers as nd  # noqa: E402

from tolerances import SIGMA_DERIVED_TIMESTEP_ATOL, SIGMA_DERIVED_TIMESTEP_RTOL, STEP_ATOL  # noqa: E402,F401


def _timesteps_from_sigmas(scheduler, custom_sigmas=False):
    return custom_sigmas or any(getattr(scheduler.config, k, False) for k in ("use_karras_sigmas",
                                                                              "use_exponential_sigmas"))


def assert_timesteps_equal(ours, ref, from_sigmas):
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (ours, ref)
    if from_sigmas and ref.dtype.is_floating_point:
        torch.testing.assert_close(ours, ref, atol=SIGMA_DERIVED_TIMESTEP_ATOL, rtol=SIGMA_DERIVED_TIMESTEP_RTOL)
    else:
        assert torch.equal(ours, ref), (ours, ref)
SPACINGS = ["linspace", "leading", "trailing"]
STEP_COUNTS = [1, 7, 25, 50]
STRENGTHS = [0.3, 0.58, 0.8, 1.0]

SD15 = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def make_pair(name, **config):
    return getattr(diffusers, name)(**config), getattr(nd, name)(**config)


def assert_schedule_equal(ref, ours, num_inference_steps, **kwargs):
    ref.set_timesteps(num_inference_steps, **kwargs)
    ours.set_timesteps(num_inference_steps, **kwargs)
    assert_timesteps_equal(ours.timesteps, ref.timesteps, _timesteps_from_sigmas(ref, "sigmas" in kwargs))
    if hasattr(ref, "sigmas") and isinstance(getattr(ref, "sigmas"), torch.Tensor):
        assert ours.sigmas.dtype == ref.sigmas.dtype
        assert torch.equal(ours.sigmas, ref.sigmas), (ours.sigmas - ref.sigmas).abs().max()
    assert ours.num_inference_steps == ref.num_inference_steps
    assert ours.order == ref.order
    ref_sigma, our_sigma = ref.init_noise_sigma, ours.init_noise_sigma
    assert type(our_sigma) is type(ref_sigma)
    torch.testing.assert_close(torch.as_tensor(our_sigma), torch.as_tensor(ref_sigma))


def fake_model(sample, t, fixed):
    # Depends on the input and the timestep, like a UNet, but costs nothing.
    return 0.1 * sample + fixed * (1.0 + float(t) / 1000.0)


def img2img_timesteps(scheduler, num_inference_steps, strength):
    """Ref: diffusers StableDiffusionImg2ImgPipeline.get_timesteps (and its set_begin_index)."""
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return timesteps


def run_loop(ref, ours, num_inference_steps, strength=None, seed=0, shape=(2, 4, 8, 8), step_kwargs=None,
             dtype=torch.float32):
    """Runs both schedulers side by side; returns the number of model calls. Every step's
    prev_sample must agree to STEP_ATOL."""
    step_kwargs = step_kwargs or {}
    g = torch.Generator().manual_seed(1234)
    fixed = torch.randn(shape, generator=g).to(dtype)
    x0 = torch.randn(shape, generator=g).to(dtype)
    noise = torch.randn(shape, generator=g).to(dtype)
    states = []
    for sched in (ref, ours):
        sched.set_timesteps(num_inference_steps)
        if strength is None:
            timesteps = sched.timesteps
            sample = noise * sched.init_noise_sigma
        else:
            timesteps = img2img_timesteps(sched, num_inference_steps, strength)
            latent_timestep = timesteps[:1].repeat(shape[0])
            sample = sched.add_noise(x0, noise, latent_timestep)
        states.append([timesteps, sample, torch.Generator().manual_seed(seed)])
    (ref_ts, ref_sample, ref_gen), (our_ts, our_sample, our_gen) = states
    assert_timesteps_equal(our_ts, ref_ts, _timesteps_from_sigmas(ref))
    torch.testing.assert_close(our_sample, ref_sample, atol=STEP_ATOL, rtol=0)
    for i, t in enumerate(ref_ts):
        ref_in = ref.scale_model_input(ref_sample, t)
        our_in = ours.scale_model_input(our_sample, our_ts[i])
        torch.testing.assert_close(our_in, ref_in, atol=STEP_ATOL, rtol=0, msg=f"scale_model_input at step {i}")
        kwargs = dict(step_kwargs)
        if _takes_generator(ref):
            kwargs["generator"] = ref_gen
        ref_out = ref.step(fake_model(ref_in, t, fixed), t, ref_sample, **kwargs)
        if _takes_generator(ref):
            kwargs["generator"] = our_gen
        our_out = ours.step(fake_model(our_in, our_ts[i], fixed), our_ts[i], our_sample, **kwargs)
        diff = (our_out.prev_sample.float() - ref_out.prev_sample.float()).abs().max().item()
        assert diff <= STEP_ATOL, f"step {i} (t={t.item()}): max abs diff {diff}"
        assert our_out.prev_sample.dtype == ref_out.prev_sample.dtype
        ref_pred = getattr(ref_out, "pred_original_sample", None)
        if ref_pred is not None:
            torch.testing.assert_close(our_out.pred_original_sample, ref_pred, atol=STEP_ATOL, rtol=0)
        # Each side continues from its own output: this is the drift a user would see.
        ref_sample, our_sample = ref_out.prev_sample, our_out.prev_sample
    return len(ref_ts)


def _takes_generator(scheduler):
    import inspect

    return "generator" in inspect.signature(scheduler.step).parameters


def assert_add_noise_equal(ref, ours, num_inference_steps=10):
    ref.set_timesteps(num_inference_steps)
    ours.set_timesteps(num_inference_steps)
    g = torch.Generator().manual_seed(7)
    x0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    timesteps = ref.timesteps[[0, len(ref.timesteps) // 2, -1]]
    torch.testing.assert_close(ours.add_noise(x0, noise, timesteps), ref.add_noise(x0, noise, timesteps),
                               atol=STEP_ATOL, rtol=0)

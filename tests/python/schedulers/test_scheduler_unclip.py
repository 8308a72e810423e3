"""UnCLIPScheduler parity with diffusers: the schedule, both variance types and prediction types,
clipping, the Kandinsky prior's loop (prev_timestep from the schedule, noise from one generator),
stepping without prev_timestep (t - 1 and the training beta), add_noise and config round trips."""

import pytest
import torch

from scheduler_parity import STEP_ATOL, assert_add_noise_equal, diffusers, make_pair, nd, run_loop

NAME = "UnCLIPScheduler"
# diffusers' Kandinsky 2.2 prior test configuration.
KANDINSKY = dict(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample=True,
                 clip_sample_range=10.0)


@pytest.mark.parametrize("num_inference_steps", [2, 7, 25, 50, 999, 1000])
def test_timesteps(num_inference_steps):
    ref, ours = make_pair(NAME)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert ours.num_inference_steps is None and ours.init_noise_sigma == ref.init_noise_sigma == 1.0
    # (diffusers' UnCLIPScheduler has no `order`, so the shared assert_schedule_equal does not apply.)
    ref.set_timesteps(num_inference_steps)
    ours.set_timesteps(num_inference_steps)
    assert ours.timesteps.dtype == ref.timesteps.dtype and torch.equal(ours.timesteps, ref.timesteps)
    assert ours.num_inference_steps == ref.num_inference_steps == num_inference_steps
    torch.testing.assert_close(ours.betas, ref.betas, atol=0, rtol=0)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, atol=0, rtol=0)


def _prior_loop(ref, ours, num_inference_steps, shape=(2, 32), seed=0, learned=False):
    """The loop of diffusers' KandinskyV22PriorPipeline: prev_timestep is the next entry, None last."""
    g = torch.Generator().manual_seed(1234)
    fixed = torch.randn(shape, generator=g)
    sample_ref = sample_ours = torch.randn(shape, generator=g)
    ref.set_timesteps(num_inference_steps)
    ours.set_timesteps(num_inference_steps)
    assert torch.equal(ours.timesteps, ref.timesteps)
    gen_ref, gen_ours = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    timesteps = ref.timesteps
    worst = 0.0
    for i, t in enumerate(timesteps):
        prev_timestep = None if i + 1 == timesteps.shape[0] else timesteps[i + 1]
        outputs = []
        for sched, sample, gen in ((ref, sample_ref, gen_ref), (ours, sample_ours, gen_ours)):
            model_output = 0.1 * sample + fixed * (1.0 + float(t) / 1000.0)
            if learned:
                model_output = torch.cat([model_output, torch.tanh(fixed)], dim=1)
            outputs.append(sched.step(model_output, timestep=t, sample=sample, generator=gen,
                                      prev_timestep=prev_timestep))
        out_ref, out_ours = outputs
        diff = (out_ours.prev_sample - out_ref.prev_sample).abs().max().item()
        worst = max(worst, diff)
        assert diff <= STEP_ATOL, f"step {i} (t={int(t)}): max abs diff {diff}"
        torch.testing.assert_close(out_ours.pred_original_sample, out_ref.pred_original_sample, atol=STEP_ATOL,
                                   rtol=0)
        sample_ref, sample_ours = out_ref.prev_sample, out_ours.prev_sample
    return worst


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
@pytest.mark.parametrize("variance_type", ["fixed_small_log", "learned_range"])
@pytest.mark.parametrize("num_inference_steps", [2, 25])
def test_prior_loop(prediction_type, variance_type, num_inference_steps):
    ref, ours = make_pair(NAME, variance_type=variance_type, prediction_type=prediction_type)
    worst = _prior_loop(ref, ours, num_inference_steps, learned=variance_type == "learned_range")
    print(prediction_type, variance_type, num_inference_steps, worst)


@pytest.mark.parametrize("options", [KANDINSKY, dict(clip_sample=False), dict(clip_sample_range=0.5),
                                     dict(num_train_timesteps=500, prediction_type="sample")])
def test_prior_loop_options(options):
    ref, ours = make_pair(NAME, **options)
    _prior_loop(ref, ours, 25, seed=5)


def test_steps_without_prev_timestep():
    # Without prev_timestep diffusers takes t - 1 and the training beta: the generic loop's way.
    ref, ours = make_pair(NAME, **KANDINSKY)
    run_loop(ref, ours, 10, seed=3, shape=(2, 4, 4, 4))
    ref, ours = make_pair(NAME)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    out_ref = ref.step(0.3 * x, 500, x, generator=torch.Generator().manual_seed(1))
    out_ours = ours.step(0.3 * x, 500, x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out_ours.prev_sample, out_ref.prev_sample, atol=STEP_ATOL, rtol=0)
    assert ours.step(0.3 * x, 0, x, return_dict=False)[0].shape == x.shape


def test_add_noise_and_config():
    ref, ours = make_pair(NAME, **KANDINSKY)
    assert_add_noise_equal(ref, ours)
    assert {k: v for k, v in ours.config.items() if not k.startswith("_")} == \
        {k: v for k, v in ref.config.items() if not k.startswith("_")}
    assert ours.compatibles == [nd.UnCLIPScheduler]


def test_from_pretrained_round_trip(tmp_path):
    ref = diffusers.UnCLIPScheduler(**KANDINSKY)
    ref.save_pretrained(tmp_path)
    ours = nd.UnCLIPScheduler.from_pretrained(tmp_path)
    assert ours.config.clip_sample_range == 10.0 and ours.config.prediction_type == "sample"
    _prior_loop(diffusers.UnCLIPScheduler.from_pretrained(tmp_path), ours, 5)


def test_errors():
    with pytest.raises(ValueError, match="beta_schedule"):
        nd.UnCLIPScheduler(beta_schedule="linear")
    with pytest.raises(ValueError, match="variance_type"):
        nd.UnCLIPScheduler(variance_type="fixed_small")
    with pytest.raises(ValueError, match="prediction_type"):
        nd.UnCLIPScheduler(prediction_type="v_prediction")
    with pytest.raises(TypeError, match="unexpected keyword"):
        nd.UnCLIPScheduler(beta_start=0.1)
    ours = nd.UnCLIPScheduler(variance_type="learned_range")
    with pytest.raises(ValueError, match="at least 2"):
        ours.set_timesteps(1)
    ours.set_timesteps(5)
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="twice the sample's channels"):
        ours.step(x, 999, x)
    with pytest.raises(ValueError, match="out of range"):
        ours.step(x, 1000, x)

"""Comparing a call of ours with the same call of the reference library, result for result: what both
image-processor test files share."""

import warnings

import numpy as np
import PIL.Image
import torch


def outcome(fn):
    """Calls ``fn`` and returns (its result or the exception it raised, [(warning class, message)])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001  (any exception is compared with the reference's)
            result = e
    return result, [(w.category, str(w.message)) for w in caught]


def assert_same(ours, ref):
    """Equal to the bit: the same type, dtype, shape and values (exceptions: the same message)."""
    assert type(ours) is type(ref), (type(ours), type(ref), ours, ref)
    if isinstance(ref, Exception):
        assert str(ours) == str(ref)
    elif isinstance(ref, torch.Tensor):
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert torch.equal(ours, ref)
    elif isinstance(ref, np.ndarray):
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref)
    elif isinstance(ref, PIL.Image.Image):
        assert (ours.mode, ours.size) == (ref.mode, ref.size)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    elif isinstance(ref, (list, tuple)):
        assert len(ours) == len(ref)
        for o, r in zip(ours, ref):
            assert_same(o, r)
    else:
        assert ours == ref

"""The one tier-dispatch mechanism (``tinyres.kernels.select``): the tier is fixed at
forward and reused by backward, is per thread, and every registered tier is reachable."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tinyres as tr
from tinyres import kernels
from tinyres.nn import functional as F
from tinyres.ops.norm import batch_norm_relu

# (op family, a forward+backward that runs it) for every family in the table.
RUNS = {
    "conv2d/im2col": lambda x: F.conv2d(x, tr.ones(2, 3, 3, 3)),
    "conv2d/winograd": lambda x: F.conv2d(x, tr.ones(2, 3, 3, 3)),
    "conv2d/direct": lambda x: F.conv2d(x, tr.ones(2, 3, 3, 3)),
    "batch_norm": lambda x: F.batch_norm(x, None, None, training=True),
    "batch_norm_relu": lambda x: batch_norm_relu(x, None, None, training=True, residual=x),
    "max_pool2d": lambda x: F.max_pool2d(x, 2),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 2) + F.adaptive_avg_pool2d(x, 1),
    "relu": lambda x: F.relu(x),
}


def _algorithm(family: str) -> str:
    """The convolution algorithm that runs ``family`` ("auto" for the other families)."""
    return family.split("/")[1] if family.startswith("conv2d/") else "auto"


def test_every_family_in_the_table_is_exercised_here():
    assert set(RUNS) == set(kernels.KERNELS)


@pytest.fixture
def record_calls(monkeypatch):
    """Wrap every registered module's public functions to record (module, function) calls."""
    calls: list[tuple[str, str]] = []
    for tiers in kernels.KERNELS.values():
        for module in set(tiers.values()):
            for name in ("forward", "backward", "train_forward", "eval_forward", "max_pool2d_forward",
                         "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
                         "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward"):
                fn = getattr(module, name, None)
                if fn is not None:
                    def wrapped(*a, _fn=fn, _at=(module.__name__, name), **k):
                        calls.append(_at)
                        return _fn(*a, **k)
                    monkeypatch.setattr(module, name, wrapped)
    return calls


@pytest.mark.parametrize("family", sorted(RUNS))
@pytest.mark.parametrize("tier", kernels.TIERS)
def test_backward_outside_the_tier_block_uses_the_forward_tier(family, tier, record_calls):
    """A forward under ``use_tier(t)`` and a backward outside it: both run tier t's kernels."""
    x = tr.tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32) + 0.1,
                  requires_grad=True)
    with kernels.use_tier(tier), kernels.use_algorithm(_algorithm(family)):
        expected = kernels.select(family.split("/")[0], w_shape=(2, 3, 3, 3)).__name__
        y = RUNS[family](x)
    record_calls.clear()
    y.sum().backward()  # outside the block: the default tier is "numba"
    # The op's call is the first; a numba module may hand small arrays on to its reference.
    first_backward = next(module for module, name in record_calls if "backward" in name)
    assert first_backward == expected, record_calls


def test_relu_forward_under_reference_backward_outside_runs_the_reference(monkeypatch):
    """The leak of the issue: ReLU's backward used to read the tier at backward time."""
    from tinyres.kernels import relu_numba

    monkeypatch.setattr(relu_numba, "FAST_SIZE", 1)
    ran = []
    monkeypatch.setattr(relu_numba, "relu_backward", lambda *a: ran.append("numba"))
    x = tr.tensor([[-1.0, 2.0], [3.0, -4.0]], requires_grad=True)
    with kernels.use_tier("reference"):
        y = tr.relu(x)
    y.sum().backward()
    assert ran == []
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1], [1, 0]])


def test_every_registered_tier_is_reachable():
    for family, tiers in kernels.KERNELS.items():
        op = family.split("/")[0]
        for tier, module in tiers.items():
            with kernels.use_tier(tier), kernels.use_algorithm(_algorithm(family)):
                assert kernels.select(op, w_shape=(2, 3, 3, 3)) is module, (family, tier)


def test_a_tier_set_in_one_thread_does_not_leak_into_another():
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def worker():
        with kernels.use_tier("reference"):
            inside.set()
            release.wait(5)
            seen["worker"] = kernels.get_tier()

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(5)
    seen["main"] = kernels.get_tier()
    release.set()
    thread.join()
    assert seen == {"main": "numba", "worker": "reference"}


def test_unknown_tier_and_algorithm_are_named():
    with pytest.raises(ValueError, match="unknown kernel tier 'fast'; expected one of"):
        kernels.set_tier("fast")
    message = (r"unknown convolution algorithm 'fft'; "
               r"expected one of \('auto', 'direct', 'im2col', 'winograd'\)")
    with pytest.raises(ValueError, match=message), kernels.use_algorithm("fft"):
        pass

"""Grad mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``.

The mode lives in a ``contextvars.ContextVar``, so each thread and each asyncio task
has its own: ``no_grad()`` in one thread cannot stop another from recording.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import tinyres as tr
from tinyres import nn


def records(t):
    return t.requires_grad and t.grad_fn is not None


def test_no_grad_as_context_manager_and_decorator():
    w = tr.ones(2, requires_grad=True)
    with tr.no_grad():
        assert not records(w * 2)

    @tr.no_grad()
    def evaluate():
        return w * 2

    assert not records(evaluate()) and records(w * 2)


def test_enable_grad_inside_no_grad():
    w = tr.ones(2, requires_grad=True)
    with tr.no_grad():
        with tr.enable_grad():
            assert records(w * 2)
        assert not records(w * 2)

        @tr.enable_grad()
        def train_step():
            return w * 2

        assert records(train_step())


def test_set_grad_enabled_as_function_context_manager_and_decorator():
    w = tr.ones(2, requires_grad=True)
    with tr.set_grad_enabled(False):
        assert not records(w * 2)
    assert tr.is_grad_enabled()
    tr.set_grad_enabled(False)  # a plain call takes effect at once, as in PyTorch
    try:
        assert not tr.is_grad_enabled()
    finally:
        tr.set_grad_enabled(True)
    assert tr.is_grad_enabled()

    @tr.set_grad_enabled(False)
    def evaluate():
        return w * 2

    assert tr.is_grad_enabled()  # decorating does not change the mode outside
    assert not records(evaluate()) and tr.is_grad_enabled()


def test_inference_mode():
    w = tr.ones(2, requires_grad=True)
    with tr.inference_mode():
        assert not records(w * 2)
    with tr.no_grad(), tr.inference_mode(False):
        assert not tr.is_grad_enabled()  # inference_mode(False) leaves the mode alone

    @tr.inference_mode()
    def predict():
        return w * 2

    assert not records(predict())


def test_modes_nest_and_restore_after_an_exception():
    with pytest.raises(ValueError), tr.no_grad(), tr.enable_grad():
        raise ValueError
    assert tr.is_grad_enabled()
    with tr.no_grad(), tr.enable_grad(), tr.no_grad():
        assert not tr.is_grad_enabled()
    assert tr.is_grad_enabled()


def test_decorated_function_is_reentrant():
    @tr.no_grad()
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(5) == 5 and tr.is_grad_enabled()


def test_modes_match_pytorch():
    torch = pytest.importorskip("torch")
    seen = {}
    for lib in (tr, torch):
        w = lib.ones(2, requires_grad=True)
        flags = []
        with lib.no_grad():
            flags.append((w * 2).requires_grad)
            with lib.enable_grad():
                flags.append((w * 2).requires_grad)
        with lib.set_grad_enabled(False):
            flags.append(lib.is_grad_enabled())
        with lib.inference_mode():
            flags.append((w * 2).requires_grad)
        flags.append(lib.is_grad_enabled())
        seen[lib.__name__] = flags
    assert seen["tinyres"] == seen["torch"]


def test_no_grad_in_one_thread_leaves_the_other_recording():
    """The issue's case: one thread evaluates under no_grad while another trains.

    The barrier makes the interleaving certain: each training step runs while the
    other thread is inside ``no_grad()``.
    """
    steps = 30
    inside = threading.Barrier(2)
    done = threading.Barrier(2)
    tr.manual_seed(0)
    model = nn.Linear(3, 1)
    grads_seen = []
    errors = []

    def evaluator():
        try:
            for _ in range(steps):
                with tr.no_grad():
                    inside.wait(timeout=30)
                    model(tr.ones(1, 3))
                    done.wait(timeout=30)
        except Exception as error:  # surfaced below, not lost in the thread
            errors.append(error)

    def trainer():
        try:
            for _ in range(steps):
                inside.wait(timeout=30)
                model.zero_grad()
                loss = model(tr.ones(4, 3)).sum()
                if loss.requires_grad:
                    loss.backward()
                grads_seen.append(model.weight.grad is not None)
                done.wait(timeout=30)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=evaluator), threading.Thread(target=trainer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert grads_seen == [True] * steps
    assert tr.is_grad_enabled()


def test_threads_entering_and_leaving_no_grad_together_leave_it_on():
    """Two threads in no_grad with overlapping (not nested) lifetimes: each restores its own."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    after = {}

    def first():
        with tr.no_grad():
            a_in.set()
            b_in.wait(timeout=30)
        a_out.set()
        after["first"] = tr.is_grad_enabled()

    def second():
        a_in.wait(timeout=30)
        with tr.no_grad():
            b_in.set()
            a_out.wait(timeout=30)  # first leaves while second is still inside
        after["second"] = tr.is_grad_enabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert after == {"first": True, "second": True}
    assert tr.is_grad_enabled()


def test_each_asyncio_task_has_its_own_mode():
    w = tr.ones(2, requires_grad=True)

    async def evaluate(started, release):
        with tr.no_grad():
            started.set()
            await release.wait()
            return (w * 2).requires_grad

    async def train(started, release):
        await started.wait()
        out = (w * 2).requires_grad  # while the other task sits inside no_grad
        release.set()
        return out

    async def main():
        started, release = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(evaluate(started, release), train(started, release))

    assert asyncio.run(main()) == [False, True]


def test_training_loss_is_unchanged_by_the_evaluating_thread():
    """Same losses with and without a thread busy in no_grad at the same time."""

    def train(with_evaluator):
        tr.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = tr.optim.SGD(model.parameters(), lr=0.1)
        x, y = tr.ones(8, 3), tr.zeros(8, 1)
        stop = threading.Event()

        def evaluator():
            while not stop.is_set():
                with tr.no_grad():
                    model(x)

        thread = threading.Thread(target=evaluator)
        if with_evaluator:
            thread.start()
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        stop.set()
        if with_evaluator:
            thread.join(timeout=30)
        return losses

    np.testing.assert_allclose(train(True), train(False))

"""Tensor hooks: a replacement gradient must keep the gradient's shape and dtype.

Before the check, a larger gradient returned by a hook on a ``max_pool2d`` or a large
``relu`` output reached a Numba kernel, which does not check bounds, and crashed the
interpreter; those cases run in a subprocess that must exit normally.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinyres as tr

SIZE = "has changed the size of value"
TYPE = "has changed the type of value"


def test_hook_that_changes_the_shape_on_a_conv_output_is_refused():
    x = tr.randn(1, 2, 5, 5, requires_grad=True)
    y = tr.nn.functional.conv2d(x, tr.randn(3, 2, 3, 3), padding=1)

    def bigger(grad):
        return tr.ones(1, 3, 6, 6)

    y.register_hook(bigger)
    message = rf"hook 'bigger' {SIZE} \(was \[1, 3, 5, 5\] got \[1, 3, 6, 6\]\)"
    with pytest.raises(RuntimeError, match=message):
        y.sum().backward()


def test_hook_that_changes_the_dtype_is_refused():
    x = tr.randn(3, requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: g.double())
    with pytest.raises(RuntimeError, match=rf"{TYPE} \(was float32 got float64\)"):
        y.sum().backward()


def test_hook_on_a_leaf_cannot_change_its_grad_shape():
    x = tr.randn(3, requires_grad=True)
    x.register_hook(lambda g: tr.ones(1, 3))  # broadcastable, but not the leaf's shape
    with pytest.raises(RuntimeError, match=SIZE):
        (x * 2).sum().backward()
    assert x.grad is None


def test_hook_that_keeps_shape_and_dtype_replaces_the_gradient():
    x = tr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.register_hook(lambda g: g * 10)
    x.register_hook(lambda g: g + 1)
    (y * y).sum().backward()
    assert x.grad.tolist() == [181.0, 361.0] and x.grad.shape == x.shape


@pytest.mark.parametrize("name", ["shape", "dtype", "leaf"])
def test_pytorch_refuses_the_same_hooks(name):
    torch = pytest.importorskip("torch")
    for lib in (tr, torch):
        x = lib.ones(2, 3, requires_grad=True)
        y = x * 2
        target = x if name == "leaf" else y
        if name == "dtype":
            target.register_hook(lambda g: g.double())
        else:
            target.register_hook(lambda g, lib=lib: lib.ones(3, 3))
        with pytest.raises(RuntimeError, match=TYPE if name == "dtype" else SIZE):
            y.sum().backward()


def test_hook_registered_before_an_in_place_change_sees_the_old_values_gradient():
    """PyTorch's rule: the hook belongs to the value it was registered on."""
    results = {}
    for lib in (tr, pytest.importorskip("torch")):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 1
        seen = []
        y.register_hook(lambda g, seen=seen: seen.append(g.numpy().copy()))
        y.mul_(3)
        y.register_hook(lambda g, seen=seen: seen.append(g.numpy().copy()))
        (y * lib.tensor([1.0, 5.0])).sum().backward()
        results[lib.__name__] = np.concatenate(seen)
    np.testing.assert_allclose(results["tinyres"], results["torch"])


CRASH = textwrap.dedent(
    """
    import tinyres as tr
    from tinyres import kernels

    kernels.set_tier("numba")
    case = {case!r}
    if case == "max_pool2d":
        x = tr.randn(1, 1, 4, 4, requires_grad=True)
        y = tr.nn.functional.max_pool2d(x, 2)
        y.register_hook(lambda g: tr.ones(64, 64, 64, 64))
    else:  # relu over the Numba kernel's size threshold
        x = tr.randn(1 << 19, requires_grad=True)
        y = tr.relu(x * 1)
        y.register_hook(lambda g: tr.ones(1 << 21))
    try:
        y.sum().backward()
    except RuntimeError as error:
        print("refused:", error)
    """
)


@pytest.mark.parametrize("case", ["max_pool2d", "relu"])
def test_oversized_hook_gradient_never_reaches_a_kernel(case):
    run = subprocess.run([sys.executable, "-c", CRASH.format(case=case)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode} (a negative code is a signal): {run.stderr[-2000:]}"
    assert "refused:" in run.stdout and SIZE in run.stdout

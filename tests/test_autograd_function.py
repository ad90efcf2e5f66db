"""``tinyres.autograd.Function``: PyTorch's custom-function protocol, run side by side with
torch's own ``torch.autograd.Function`` on the same class body."""

from __future__ import annotations

import numpy as np
import pytest

import tinyres as tr
from tinyres.testing import assert_close


def scaled_mul(lib):
    """z = x * y * k (k a number): saves both tensors, reads needs_input_grad."""

    class ScaledMul(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, y, k):
            ctx.save_for_backward(x, y)
            ctx.k = k
            return x * y * k

        @staticmethod
        def backward(ctx, grad):
            x, y = ctx.saved_tensors
            gx = grad * y * ctx.k if ctx.needs_input_grad[0] else None
            gy = grad * x * ctx.k if ctx.needs_input_grad[1] else None
            return gx, gy, None

    return ScaledMul


def exp_saving_output(lib):
    class Exp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = x.exp()
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            (out,) = ctx.saved_tensors
            return grad * out

    return Exp


def both(make, *arrays, requires_grad=(True, True)):
    """For tinyres, then torch: ``(make(lib), inputs)``, the inputs on the same arrays."""
    torch = pytest.importorskip("torch")
    return [
        (make(lib), [lib.tensor(a, requires_grad=r) for a, r in zip(arrays, requires_grad)])
        for lib in (tr, torch)
    ]


@pytest.mark.torch
@pytest.mark.parametrize("requires_grad", [(True, True), (True, False), (False, True)])
def test_gradients_and_needs_input_grad_match_pytorch(requires_grad):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3)), rng.standard_normal(3)  # y broadcasts: its gradient is summed
    upstream = rng.standard_normal((2, 3))
    grads = []
    for cls, ins in both(scaled_mul, x, y, requires_grad=requires_grad):
        out = cls.apply(*ins, 2.5)
        tensor = tr.tensor if isinstance(out, tr.Tensor) else pytest.importorskip("torch").tensor
        (out * tensor(upstream)).sum().backward()
        grads.append([None if t.grad is None else t.grad.numpy() for t in ins])
    for got, want in zip(*grads):
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.torch
def test_a_saved_input_changed_in_place_raises_pytorchs_error():
    messages = []
    for cls, (x, y) in both(scaled_mul, np.ones(3), np.ones(3)):
        a = x * 1
        out = cls.apply(a, y, 2.0)
        a.add_(1)
        with pytest.raises(RuntimeError) as error:
            out.sum().backward()
        messages.append(str(error.value))
    # The same sentence up to the tensor's description: "[float64 [3]]" against "[torch.DoubleTensor [3]]".
    head = "one of the variables needed for gradient computation has been modified by an inplace operation"
    assert all(m.startswith(head) for m in messages), messages
    assert all("is at version 1; expected version 0 instead" in m for m in messages), messages


@pytest.mark.torch
def test_a_saved_output_changed_in_place_raises_and_untouched_it_is_right():
    for cls, (x,) in both(exp_saving_output, np.zeros(3), requires_grad=(True,)):
        out = cls.apply(x)
        out.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()
        out = cls.apply(x)
        out.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), np.ones(3))


def test_saved_tensors_after_backward_is_pytorchs_error():
    ctxs = []

    class Keep(tr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            ctxs.append(ctx)
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    Keep.apply(tr.ones(2, requires_grad=True)).sum().backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        _ = ctxs[0].saved_tensors


def returning(grads_of):
    """A Function of (x, y, k) whose backward returns ``grads_of(grad)``."""

    def make(lib):
        class Returning(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, y, k):
                return x * y * k

            @staticmethod
            def backward(ctx, grad):
                return grads_of(grad)

        return Returning

    return make


WRONG = {
    "too few": lambda g: (g,),
    "one bare tensor": lambda g: g,
    "wrong shape": lambda g: (g[0], g.sum(0), None),
    "not broadcastable to the input": lambda g: (g.sum(0), g, None),
    "not broadcastable at all": lambda g: (g.sum(1), g.sum(0), None),
    "a gradient for the number": lambda g: (g, g.sum(0), g),
    "not a tensor": lambda g: (1.0, g.sum(0), None),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_number_or_shape_of_gradients_is_pytorchs_message(case):
    messages = []
    for cls, (x, y) in both(returning(WRONG[case]), np.ones((2, 3)), np.ones(3)):
        out = cls.apply(x, y, 2.0)
        with pytest.raises(RuntimeError) as error:
            out.sum().backward()
        messages.append(str(error.value))
    assert messages[0] == messages[1]


@pytest.mark.torch
def test_extra_none_gradients_and_other_dtypes_are_accepted_as_in_pytorch():
    # Trailing Nones past the inputs are allowed; a float32 gradient for a float64 input is cast.
    make = returning(lambda g: (g.float(), g.sum(0), None, None))
    for cls, (x, y) in both(make, np.ones((2, 3)), np.ones(3)):
        cls.apply(x, y, 2.0).sum().backward()
        assert x.grad.dtype == x.dtype and tuple(y.grad.shape) == (3,)


def test_mark_non_differentiable_and_no_grad_give_an_output_outside_the_graph():
    class ArgmaxAsFloat(tr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = x.argmax().double()
            ctx.mark_non_differentiable(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            raise AssertionError("never called")

    x = tr.tensor([1.0, 3.0, 2.0], requires_grad=True)
    out = ArgmaxAsFloat.apply(x)
    assert not out.requires_grad and out.grad_fn is None and out.item() == 1.0
    with tr.no_grad():
        assert scaled_mul(tr).apply(x, x, 1.0).grad_fn is None


def test_forward_records_no_graph_and_backward_runs_once_per_call():
    calls = []

    class Square(tr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x * x
            calls.append(("forward", y.requires_grad))
            ctx.save_for_backward(x)
            return y

        @staticmethod
        def backward(ctx, grad):
            calls.append(("backward", tr.is_grad_enabled()))
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    x = tr.tensor([1.0, -2.0], requires_grad=True)
    out = Square.apply(x)
    assert repr(out.grad_fn) == "<SquareBackward>"
    (out * out).sum().backward()  # d(x^4)/dx = 4x^3
    assert_close(x.grad, tr.tensor([4.0, -32.0]))
    assert calls == [("forward", False), ("backward", False)]


def test_a_forward_returning_something_else_than_one_tensor_is_refused():
    class Pair(tr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x, x

    with pytest.raises(TypeError, match=r"must return one Tensor .* got tuple"):
        Pair.apply(tr.ones(2, requires_grad=True))

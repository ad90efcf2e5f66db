"""Batch norm (+ residual) + ReLU fused (``ops.norm.BatchNormReLU``, ``nn.fusion``): the same
numbers as the pieces, and the pieces wherever someone observes them.

The op's gradients are checked in the op table (``batch_norm_relu_*`` cases, also against
PyTorch); here: the compiled kernels against the reference on the layout they are written
for, float32 against a float64 truth, thread counts, and when a model fuses.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinyres as tr
from tinyres import kernels, models, nn
from tinyres.kernels import batchnorm_numba, batchnorm_relu_numba, batchnorm_relu_reference, threads
from tinyres.nn import fusion
from tinyres.ops.norm import batch_norm, batch_norm_relu


def channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) values in NHWC memory, viewed as (N, C, H*W): what a convolution hands batch norm."""
    n, c = a.shape[:2]
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2).reshape(n, c, -1)


def draw(shape=(4, 5, 3, 6), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = channels_last(rng.uniform(-2, 3, shape)).astype(dtype)
    residual = channels_last(rng.uniform(-1, 1, shape)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, shape[1]).astype(dtype), rng.uniform(-1, 1, shape[1]).astype(dtype)
    dz = channels_last(rng.standard_normal(shape)).astype(dtype)
    return x, gamma, beta, residual, dz


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_compiled_kernels_match_the_reference_in_float64(residual, mode):
    x, gamma, beta, r, dz = draw()
    running = None if mode == "train" else (np.linspace(-0.5, 0.5, 5), np.linspace(0.5, 2, 5))
    r = r if residual else None
    z, saved = batchnorm_relu_numba.forward(x, gamma, beta, 1e-5, running, r)
    z_ref, saved_ref = batchnorm_relu_reference.forward(x, gamma, beta, 1e-5, running, r)
    np.testing.assert_allclose(z, z_ref, rtol=1e-10, atol=1e-12)
    assert 0.2 < (z > 0).mean() < 0.9  # the mask matters in this case
    want_grads = batchnorm_relu_reference.backward(dz, saved_ref)
    for got, want in zip(batchnorm_relu_numba.backward(dz, saved), want_grads):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_compiled_forward_equals_the_pieces_bit_for_bit_in_float32(residual):
    """z is relu(batch_norm(x) [+ r]) with the pieces' roundings, and the gradients are the pieces'."""
    x, gamma, beta, r, dz = draw(dtype=np.float32)
    r = r if residual else None
    z, saved = batchnorm_relu_numba.forward(x, gamma, beta, 1e-5, None, r)
    y, saved_bn = batchnorm_numba.forward(x, gamma, beta, 1e-5)
    pieces = np.maximum(y if r is None else y + r, 0)
    np.testing.assert_array_equal(z, pieces)
    g = dz * (pieces > 0)
    for got, want in zip(batchnorm_relu_numba.backward(dz, saved), batchnorm_numba.backward(g, saved_bn)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("residual", [False, True])
def test_float32_error_against_a_float64_truth_is_the_pieces_error(residual):
    """The fused op's float32 error against float64 is no larger than the pieces' (both through
    tinyres ops, the pieces being batch_norm then + r then relu)."""
    x, gamma, beta, r, dz = draw(shape=(16, 8, 6, 6), dtype=np.float64, seed=3)
    x, r, dz = (a.reshape(16, 8, 6, 6) for a in (x, r, dz))

    def run(dtype, fused):
        leaves = [tr.tensor(a.astype(dtype), requires_grad=True) for a in (x, gamma, beta, r)]
        xt, g, b, rt = leaves
        if fused:
            z = batch_norm_relu(xt, None, None, g, b, training=True, residual=rt if residual else None)
        else:
            y = batch_norm(xt, None, None, g, b, training=True)
            z = (y + rt if residual else y).relu()
        z.backward(tr.tensor(dz.astype(dtype)))
        return [z.detach().numpy()] + [t.grad.numpy() for t in leaves[: 4 if residual else 3]]

    truth = run(np.float64, fused=False)
    for fused32, pieces32, want in zip(run(np.float32, True), run(np.float32, False), truth):
        scale = np.abs(want).max()
        fused_error = np.abs(fused32 - want).max() / scale
        pieces_error = np.abs(pieces32 - want).max() / scale
        assert fused_error < 1e-5
        assert fused_error <= pieces_error * 1.01 + 1e-7


def test_thread_counts_give_identical_results():
    x, gamma, beta, r, dz = draw(shape=(8, 16, 8, 8), dtype=np.float32)
    before = threads.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            threads.set_num_threads(count)
            z, saved = batchnorm_relu_numba.forward(x, gamma, beta, 1e-5, None, r)
            results.append([z, *batchnorm_relu_numba.backward(dz, saved)])
    finally:
        threads.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_residual_of_another_shape_is_refused():
    x = tr.randn(2, 3, 4, 4)
    expected = r"residual has shape \(2, 3, 4, 2\).*expected the input's \(2, 3, 4, 4\)"
    with pytest.raises(ValueError, match=expected):
        batch_norm_relu(x, None, None, training=True, residual=tr.randn(2, 3, 4, 2))


def test_changing_the_output_in_place_before_backward_is_refused_as_after_relu():
    x = tr.randn(4, 3, 2, 2, requires_grad=True)
    z = batch_norm_relu(x, None, None, training=True)
    z.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


# ---- models: fused where nothing observes, the pieces where something does ------------------
def grad_fn_names(t: tr.Tensor) -> set[str]:
    """The op classes in the graph behind t."""
    seen, names, stack = set(), set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen or isinstance(fn, tr.Tensor):
            continue
        seen.add(id(fn))
        names.add(type(fn).__name__)
        stack.extend(fn.parents)
    return names


def step(model: nn.Module, seed: int = 0):
    """Output, the graph's op names, parameter gradients and buffers after one forward +
    backward on a fixed batch."""
    rng = np.random.default_rng(seed)
    x = tr.tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    y = tr.tensor(rng.integers(0, 10, 8))
    out = model(x)
    loss = nn.functional.cross_entropy(out, y)
    names = grad_fn_names(loss)  # before backward frees the graph
    loss.backward()
    return out, names, [p.grad.numpy() for p in model.parameters()], [b.numpy() for b in model.buffers()]


def unfused(monkeypatch):
    monkeypatch.setattr(fusion, "fusable", lambda *args: False)


@pytest.mark.parametrize("build", [models.resnet20, models.plain20, models.preact_resnet20,
                                   lambda: models.resnet20(shortcut="B")])
def test_a_fused_model_trains_as_the_pieces(build, monkeypatch):
    tr.manual_seed(0)
    fused_model = build()
    tr.manual_seed(0)
    pieces_model = build()
    out, names, grads, buffers = step(fused_model)
    assert "BatchNormReLU" in names
    unfused(monkeypatch)
    out_p, names_p, grads_p, buffers_p = step(pieces_model)
    assert "BatchNormReLU" not in names_p
    # Every fused op rounds as its pieces (bit for bit: the kernel test above); only the
    # pooling's sum may run in another order, where a layout differs (shortcut A's sum).
    np.testing.assert_allclose(out.detach().numpy(), out_p.detach().numpy(), rtol=1e-5, atol=1e-6)
    for g, gp in zip(grads, grads_p):
        np.testing.assert_allclose(g, gp, rtol=1e-4, atol=1e-6 * np.abs(gp).max())
    for b, bp in zip(buffers, buffers_p):  # running statistics and num_batches_tracked
        np.testing.assert_array_equal(b, bp)
    assert list(fused_model.state_dict()) == list(pieces_model.state_dict())


def test_eval_mode_gives_the_pieces_output(monkeypatch):
    model = models.resnet20().eval()
    x = tr.randn(2, 3, 8, 8)
    with tr.no_grad():
        fused_out = model(x).numpy()
        unfused(monkeypatch)
        np.testing.assert_array_equal(fused_out, model(x).numpy())


@pytest.mark.parametrize("where", ["bn1", "relu", "bn2"])
def test_a_forward_hook_sees_its_module_run_as_a_separate_op(where):
    """A hook on a block's BN or ReLU is called (with the intermediate tensor it would see in
    PyTorch), and that block's pair runs unfused; the other blocks stay fused."""
    model = models.resnet20()
    block = model.layer1[0]
    seen = []
    getattr(block, where).register_forward_hook(lambda module, inputs, output: seen.append(output))
    x = tr.randn(2, 3, 8, 8)
    out = block(model.relu(model.bn1(model.conv1(x))))
    # bn1: called once; the shared relu: twice (after bn1, after the sum); bn2: once.
    assert len(seen) == (2 if where == "relu" else 1)
    names = grad_fn_names(out)
    assert "BatchNorm" in names and "Relu" in names
    if where == "bn2":
        assert "BatchNormReLU" in names  # bn1 + relu: nothing observes that pair
        assert "Add" in names
    whole = grad_fn_names(model(x))
    assert "BatchNormReLU" in whole  # the other blocks


def test_a_summary_is_the_pieces_summary(monkeypatch):
    """``summary`` hooks every module, so it sees them all run, as without fusion."""
    model = models.resnet20()
    fused_rows = [(r.name, r.kind, r.output_shape) for r in tr.summary(model, (1, 3, 32, 32)).rows]
    unfused(monkeypatch)
    assert fused_rows == [(r.name, r.kind, r.output_shape) for r in tr.summary(model, (1, 3, 32, 32)).rows]
    assert [kind for _, kind, _ in fused_rows].count("BatchNorm2d") == 19


def test_a_learners_batch_norm_kernels_see_every_batch_norm(monkeypatch):
    """With a learner's batch-norm kernels in place (``tinyres.course.mine``), every batch norm
    of the model runs them: none is hidden inside the fused op."""
    calls = {"forward": 0, "backward": 0}

    class Counting:
        __name__ = "counting batch norm"

        @staticmethod
        def forward(*args):
            calls["forward"] += 1
            return batchnorm_numba.forward(*args)

        @staticmethod
        def backward(*args):
            calls["backward"] += 1
            return batchnorm_numba.backward(*args)

    model = models.resnet20()
    with kernels.use_learner({"batch_norm": Counting}):
        _, names, _, _ = step(model)
    assert calls == {"forward": 19, "backward": 19}
    assert "BatchNormReLU" not in names


def test_other_modules_are_not_fused():
    """A subclass of BatchNorm2d, another activation, a replaced forward: the modules as written."""

    class MyBatchNorm(nn.BatchNorm2d):
        pass

    x = tr.randn(4, 3, 2, 2, requires_grad=True)
    assert type(fusion.batch_norm_relu(nn.BatchNorm2d(3), nn.ReLU(), x).grad_fn).__name__ == "BatchNormReLU"
    assert type(fusion.batch_norm_relu(MyBatchNorm(3), nn.ReLU(), x).grad_fn).__name__ == "Relu"
    assert type(fusion.batch_norm_relu(nn.BatchNorm2d(3), nn.Tanh(), x).grad_fn).__name__ == "Tanh"
    bn = nn.BatchNorm2d(3)
    bn.forward = lambda t: t * 2
    out = fusion.batch_norm_relu(bn, nn.ReLU(), x)
    np.testing.assert_array_equal(out.detach().numpy(), np.maximum(x.detach().numpy() * 2, 0))


def test_unfused_shows_the_pieces_ops_in_this_thread_only():
    """Code that reads the graph afterwards asks for the pieces with ``unfused()``."""
    import threading

    model, x = models.resnet20(), tr.randn(2, 3, 8, 8)
    seen = {}

    def other_thread():
        seen["other"] = grad_fn_names(model(x))

    with fusion.unfused():
        names = grad_fn_names(model(x))
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert "BatchNormReLU" not in names and {"BatchNorm", "Relu", "Add"} <= names
    assert "BatchNormReLU" in seen["other"]
    assert "BatchNormReLU" in grad_fn_names(model(x))


def test_a_block_that_writes_its_own_branch_runs_it():
    """A subclass's ``branch`` is what forward adds to the shortcut (no fused tail skips it)."""

    class HalfBranch(models.BasicBlock):
        def branch(self, x):
            return super().branch(x) * 0.5

    tr.manual_seed(0)
    block = HalfBranch(4, 4).eval()
    x = tr.randn(2, 4, 5, 5)
    with tr.no_grad():
        np.testing.assert_allclose(block(x).numpy(), (block.branch(x) + x).relu().numpy(), rtol=1e-6)

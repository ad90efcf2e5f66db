"""The PyTorch API that public programs hit first (issue 14): every new differentiable op
passes gradcheck over drawn shapes and layouts and agrees with PyTorch; the plumbing
(Size, device, cuda, utils.data, autograd.Variable, conversions) behaves as PyTorch's,
and what tinyres refuses is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, away_from, broadcastable_pairs, compare_with_torch, shapes
from hypothesis import given
from hypothesis import strategies as st

import tinyres as tr
from tinyres import nn
from tinyres.nn import functional as F
from tinyres.testing.gradcheck import relative_error


def leaf(a):
    return tr.tensor(a, dtype=tr.float64, requires_grad=True)


def distinct(x: np.ndarray) -> np.ndarray:
    """Spread values at least 0.1 apart (no ties: max, min, topk and sort have no kink)."""
    order = np.argsort(np.random.default_rng(0).random(x.size)).reshape(x.shape)
    return x * 0.01 + order * 0.1


# ---- gradient checks over drawn shapes -------------------------------------------------

UNARY = {
    "min_dim": (lambda x: x.min(dim=-1)[0], "distinct"),
    "min_all": (lambda x: tr.min(x), "distinct"),
    "topk": (lambda x: x.topk(1, dim=0)[0], "distinct"),
    "sort": (lambda x: x.sort(dim=-1, descending=True)[0], "distinct"),
    "var": (lambda x: x.var(dim=0, unbiased=False), "any"),
    "var_unbiased_all": (lambda x: x.var() if x.numel() > 1 else x.sum(), "any"),
    "std": (lambda x: x.std(dim=-1, keepdim=True) if x.shape[-1] > 1 else x, "any"),
    "softmax": (lambda x: F.softmax(x, dim=-1), "any"),
    "clamp": (lambda x: x.clamp(-0.5, 0.5), "off_kinks"),
    "clamp_min": (lambda x: tr.clamp(x, min=0.5), "off_kinks"),
    "masked_fill": (lambda x: x.masked_fill(x > 0, 2.0), "off_kinks"),
    "where": (lambda x: tr.where(x > 0, x * x, -x), "off_kinks"),
    "expand": (lambda x: x.unsqueeze(0).expand(3, *x.shape), "any"),
    "expand_as": (lambda x: x[..., :1].expand_as(x), "any"),
    "t": (lambda x: x.flatten().unsqueeze(1).t(), "any"),
    "layer_norm": (lambda x: F.layer_norm(x, x.shape[-1:]) if x.shape[-1] > 1 else x, "any"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes(1, 3), data=st.data())
def test_new_ops_gradcheck(name, shape, data):
    fn, domain = UNARY[name]
    x = data.draw(arrays(shape))
    if domain == "distinct":
        x = distinct(x)
    elif domain == "off_kinks":  # clamp's bounds at +-0.5 and 0.5, the masks at 0
        x = away_from(away_from(away_from(x, 0.0), 0.5), -0.5)
    assert tr.gradcheck(fn, (leaf(x),))


@given(shape=shapes(1, 4), data=st.data(), mode=st.sampled_from(["constant", "reflect", "replicate",
                                                                   "circular"]))
def test_pad_gradcheck_any_trailing_dims_and_crops(shape, data, mode):
    x = data.draw(arrays(shape))
    axes = data.draw(st.integers(1, len(shape)))
    pad = []
    for size in reversed(shape[len(shape) - axes :]):
        top = size - 1 if mode == "reflect" else size
        pad += [data.draw(st.integers(-(size // 2), top)), data.draw(st.integers(-(size // 2), top))]
    value = data.draw(st.floats(-2, 2)) if mode == "constant" else None
    assert tr.gradcheck(lambda t: F.pad(t, pad, mode=mode, value=value), (leaf(x),))


@given(n=st.integers(1, 2), groups=st.integers(1, 3), c_in=st.integers(1, 2), c_out=st.integers(1, 2),
       size=st.integers(3, 5), stride=st.integers(1, 2), bias=st.booleans(), data=st.data())
def test_grouped_conv2d_gradcheck(n, groups, c_in, c_out, size, stride, bias, data):
    x = leaf(data.draw(arrays((n, groups * c_in, size, size))))
    w = leaf(data.draw(arrays((groups * c_out, c_in, 3, 3))))
    inputs = (x, w, leaf(data.draw(arrays((groups * c_out,))))) if bias else (x, w)
    assert tr.gradcheck(lambda *a: F.conv2d(*a, stride=stride, padding=1, groups=groups), inputs)


@given(n=st.integers(1, 3), groups=st.integers(1, 3), per_group=st.integers(1, 3),
       spatial=st.sampled_from([(), (3,), (2, 3)]), data=st.data())
def test_group_norm_gradcheck(n, groups, per_group, spatial, data):
    c = groups * per_group
    if per_group * int(np.prod(spatial)) < 2:
        spatial = (2,)  # a group of one element has variance 0: normalising it is a kink
    x = leaf(data.draw(arrays((n, c, *spatial))))
    w, b = leaf(data.draw(arrays((c,), low=0.5))), leaf(data.draw(arrays((c,))))
    assert tr.gradcheck(lambda x, w, b: F.group_norm(x, groups, w, b), (x, w, b))


def test_new_ops_catch_a_wrong_backward():
    """The gradchecks above can fail: a clamp whose gradient also passes outside the bounds."""
    from tinyres.ops.compare import Clamp

    class LeakyClamp(Clamp):
        def backward(self, grad):
            return (grad,)

    x = leaf(np.array([-2.0, 0.1, 2.0]))
    with pytest.raises(tr.GradcheckError):
        tr.gradcheck(lambda t: LeakyClamp.apply(t, lo=-1.0, hi=1.0), (x,))


# ---- PyTorch cross-checks ----------------------------------------------------------------

TORCH_CASES = {
    "max_dim_values": lambda lib, x: lib.max(x, 1)[0],
    "min_dim_values": lambda lib, x: lib.min(x, 1).values,
    "topk": lambda lib, x: x.topk(3, 1, True, True)[0],
    "topk_smallest": lambda lib, x: lib.topk(x, 2, dim=0, largest=False).values,
    "sort": lambda lib, x: lib.sort(x, dim=1, descending=True)[0],
    "var": lambda lib, x: x.var(1),
    "var_biased": lambda lib, x: lib.var(x, 0, unbiased=False, keepdim=True),
    "std": lambda lib, x: x.std(),
    "softmax": lambda lib, x: lib.softmax(x, 1),
    "log_softmax": lambda lib, x: x.log_softmax(0),
    "clamp": lambda lib, x: lib.clamp(x, min=-0.5, max=0.7),
    "abs": lambda lib, x: lib.abs(x),
    "where": lambda lib, x: lib.where(x > 0, x, x * 3),
    "masked_fill": lambda lib, x: x.masked_fill(x < 0.2, -1.0),
    "expand_t": lambda lib, x: x[:1].expand(3, 5).t() * x.t()[:, :3],
    "pad_constant": lambda lib, x: lib.nn.functional.pad(x, (1, 2, -1, 1), value=0.5),
    "pad_reflect": lambda lib, x: lib.nn.functional.pad(x.view(1, 3, 5), (2, 3), mode="reflect"),
    "pad_replicate": lambda lib, x: lib.nn.functional.pad(x.view(1, 1, 3, 5), (2, 1, 1, 2), mode="replicate"),
    "pad_circular": lambda lib, x: lib.nn.functional.pad(x.view(1, 1, 3, 5), (2, 1, 1, 2), mode="circular"),
    "group_norm": lambda lib, x: lib.nn.functional.group_norm(x.view(1, 3, 5), 3),
    "nll_loss": lambda lib, x: lib.nn.functional.nll_loss(x.log_softmax(1), lib.tensor([0, 4, 2])),
    "nll_loss_sum": lambda lib, x: lib.nn.NLLLoss(reduction="sum")(x, lib.tensor([1, 1, 3])),
    "mse_loss": lambda lib, x: lib.nn.functional.mse_loss(x[:, :2], x[:, 3:]),
    "mse_loss_none": lambda lib, x: lib.nn.MSELoss(reduction="none")(x, x.detach() * 0.5),
    "layer_norm": lambda lib, x: lib.nn.functional.layer_norm(x, (5,)),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_new_ops_match_pytorch(name):
    x = distinct(np.random.default_rng(1).uniform(-2, 2, (3, 5)))
    compare_with_torch(TORCH_CASES[name], x, rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["max_dim_values", "min_dim_values", "topk", "sort"])
def test_indices_match_pytorch(name):
    torch = pytest.importorskip("torch")
    x = distinct(np.random.default_rng(2).uniform(-2, 2, (4, 6)))
    indices = {"max_dim_values": lambda lib, t: lib.max(t, 1)[1],
               "min_dim_values": lambda lib, t: t.min(0)[1],
               "topk": lambda lib, t: t.topk(3, 1)[1],
               "sort": lambda lib, t: t.sort(0)[1]}[name]
    ours = indices(tr, tr.tensor(x)).numpy()
    theirs = indices(torch, torch.tensor(x)).numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.torch
# (4, 4, 4) is depthwise; (4, 4, 8) depthwise with two filters per channel
@pytest.mark.parametrize(("groups", "c_in", "c_out"), [(2, 4, 6), (4, 4, 4), (4, 4, 8)])
@pytest.mark.parametrize("tier", ["reference", "numpy", "numba"])
def test_grouped_conv2d_matches_pytorch_in_every_tier(groups, c_in, c_out, tier):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, c_in, 6, 5)), rng.standard_normal((c_out, c_in // groups, 3, 3)), \
        rng.standard_normal(c_out)
    with tr.kernels.use_tier(tier):
        compare_with_torch(lambda lib, x, w, b: lib.nn.functional.conv2d(x, w, b, stride=2, padding=1,
                                                                         groups=groups),
                           x, w, b, rtol=1e-10, atol=1e-12)


# ---- plumbing ------------------------------------------------------------------------------


def test_size_is_a_tuple_that_prints_as_pytorch():
    x = tr.zeros(1, 10)
    assert x.shape == (1, 10) and x.size() == (1, 10) and isinstance(x.size(), tuple)
    assert repr(x.size()) == "tinyres.Size([1, 10])"
    assert repr(x.shape[1:]) == "tinyres.Size([10])" and x.size(1) == 10
    assert x.shape.numel() == 10
    assert f"{x.shape}" == "(1, 10)"  # inside error messages


def test_one_element_tensors_work_as_python_numbers_and_indices():
    classes = ("plane", "car", "bird")
    labels = tr.tensor([2, 0])
    assert classes[labels[0]] == "bird"
    assert int(labels[1]) == 0 and float(tr.tensor([2.5])) == 2.5 and bool(tr.tensor(1.0))
    with pytest.raises(TypeError, match="one-element integer"):
        classes[tr.tensor([0, 1])]
    with pytest.raises(TypeError, match="integer"):
        classes[tr.tensor(1.0)]


def test_devices_cpu_is_accepted_and_cuda_is_refused_in_one_clear_way():
    device = tr.device("cuda" if tr.cuda.is_available() else "cpu")
    x = tr.ones(2, requires_grad=True)
    assert x.to(device) is x and x.cpu() is x and x.device == "cpu" and str(device) == "cpu"
    assert tr.cuda.device_count() == 0
    refusal = "tinyres runs on the CPU only"
    for attempt in (lambda: tr.device("cuda"), lambda: x.to("cuda:0"), lambda: x.cuda(),
                    lambda: nn.Linear(2, 2).to("cuda"), lambda: nn.Linear(2, 2).cuda(),
                    lambda: tr.device("mps")):
        with pytest.raises(RuntimeError, match=refusal):
            attempt()
    tr.backends.cudnn.benchmark = True  # accepted, does nothing
    tr.backends.cudnn.deterministic = True


def test_to_casts_dtype_differentiably_and_refuses_half():
    x = tr.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(tr.float64)
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [2.0, 4.0]
    assert x.to("cpu", tr.float64).dtype == np.float64
    assert x.to(tr.zeros(1, dtype=tr.float64)).dtype == np.float64
    assert x.to(device="cpu", dtype=tr.float64, non_blocking=True).dtype == np.float64
    for attempt in (lambda: x.half(), lambda: x.to(np.float16), lambda: nn.Linear(2, 2).half(),
                    lambda: nn.Linear(2, 2).to(np.float16)):
        with pytest.raises(TypeError, match="float16"):
            attempt()


def test_variable_returns_the_tensor():
    from tinyres.autograd import Variable

    x = tr.ones(3)
    assert Variable(x) is x and not x.requires_grad
    v = Variable(x, requires_grad=True)
    assert v is x and x.requires_grad


def test_utils_data_loader_batches_shuffles_and_drops_last():
    from tinyres.utils.data import DataLoader, Dataset, TensorDataset

    ds = TensorDataset(tr.arange(20.0).view(10, 2), tr.arange(10))
    batches = list(DataLoader(ds, batch_size=4))
    assert [tuple(y.shape) for _, y in batches] == [(4,), (4,), (2,)]
    assert batches[0][1].tolist() == [0, 1, 2, 3] and batches[0][0].tolist()[1] == [2.0, 3.0]
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2

    def order(seed):
        g = tr.Generator().manual_seed(seed)
        return [y.tolist() for _, y in DataLoader(ds, batch_size=3, shuffle=True, generator=g, num_workers=2)]

    assert order(0) == order(0) != order(1)
    assert sorted(i for batch in order(0) for i in batch) == list(range(10))

    class Squares(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((2,), i, np.float32), i * i, float(i)

    images, labels, weights = next(iter(DataLoader(Squares(), batch_size=3)))
    assert images.shape == (3, 2) and labels.tolist() == [0, 1, 4] and weights.dtype == np.float64


def test_modulelist_and_moduledict_register_their_parameters():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 3)])
    heads = nn.ModuleDict({"a": nn.Linear(3, 1)})
    owner = nn.Module()
    owner.layers, owner.heads = layers, heads
    assert [k for k, _ in owner.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "heads.a.weight", "heads.a.bias"]
    assert layers[-1] is layers[1] and len(layers[:1]) == 1
    with pytest.raises(IndexError, match="out of range"):
        layers[2]


def test_dropout_keeps_expectation_in_training_and_is_identity_in_eval():
    tr.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = tr.ones(200, 200)
    y = drop(x).numpy()
    assert set(np.unique(y).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@pytest.mark.torch
@pytest.mark.parametrize("make", [
    lambda lib: lib.nn.GroupNorm(2, 4), lambda lib: lib.nn.LayerNorm([5, 5]),
    lambda lib: lib.nn.Conv2d(4, 6, 3, padding=1, groups=2), lambda lib: lib.nn.Softmax(dim=1),
    lambda lib: lib.nn.Conv2d(4, 4, 3, padding=2, groups=4, padding_mode="reflect"),
])
def test_new_layers_match_pytorch_modules(make):
    torch = pytest.importorskip("torch")
    theirs, ours = make(torch).double(), make(tr).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(4).standard_normal((2, 4, 5, 5))
    compare_with_torch(lambda lib, x: (ours if lib is tr else theirs)(x), x, rtol=1e-10, atol=1e-12)


def test_bad_inputs_name_what_was_expected():
    x = tr.ones(2, 3)
    cases = [
        (lambda: F.pad(x, (1,)), ValueError, "even number"),
        (lambda: F.pad(x, (3, 0), mode="reflect"), ValueError, "smaller than the size 3"),
        (lambda: F.pad(x, (0, 0, -3, 0)), ValueError, "negative size"),
        (lambda: F.pad(x, (1, 1), mode="mirror"), ValueError, "mode must be one of"),
        (lambda: F.conv2d(tr.ones(1, 4, 3, 3), tr.ones(6, 2, 1, 1), groups=3), ValueError, "3 groups of 2"),
        (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, "divisible by groups"),
        (lambda: x.masked_fill(tr.ones(2, 3), 0.0), TypeError, "boolean"),
        (lambda: x.expand(4, 3), RuntimeError, "must match 4 or be 1"),
        (lambda: x.topk(4), RuntimeError, "k=4 is out of range"),
        (lambda: tr.clamp(x), RuntimeError, "clamp: at least one of 'min' or 'max'"),
        (lambda: nn.GroupNorm(3, 4), ValueError, "divisible by num_groups"),
        (lambda: nn.LayerNorm(4)(x), ValueError, "trailing shape must be"),
        (lambda: tr.zeros(2, 2, 2).t(), RuntimeError, "at most 2 dims"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_creation_takes_a_cpu_device_and_refuses_others():
    assert tr.zeros(2, device="cpu").shape == (2,)
    assert tr.tensor([1.0], device=tr.device("cpu")).tolist() == [1.0]
    assert tr.arange(3, device="cpu").tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError, match="CPU only"):
        tr.randn(2, device="cuda")


@pytest.mark.torch
def test_step_lr_matches_pytorch():
    torch = pytest.importorskip("torch")
    rates = {}
    for lib in (tr, torch):
        opt = lib.optim.SGD([lib.zeros(1, requires_grad=True)], lr=0.5)
        sched = lib.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
        rates[lib.__name__] = []
        for _ in range(8):
            rates[lib.__name__].append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
    assert rates["tinyres"] == pytest.approx(rates["torch"], rel=1e-15)


def test_random_split_and_subset_partition_the_data():
    from tinyres.utils.data import TensorDataset, random_split

    ds = TensorDataset(tr.arange(10))
    train, val = random_split(ds, [0.75, 0.25], generator=tr.Generator().manual_seed(0))
    assert (len(train), len(val)) == (8, 2)
    seen = sorted(int(train[i][0]) for i in range(len(train))) + sorted(int(val[i][0]) for i in range(2))
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="must sum to"):
        random_split(ds, [3, 3])


def test_tensor_format_normal_and_uniform():
    loss = tr.tensor(0.123456)
    assert f"{loss:.3f}" == "0.123" and "{:.0f}%".format(tr.tensor(99.6)) == "100%"  # noqa: UP032
    tr.manual_seed(0)
    w = tr.zeros(1000)
    assert w.data.normal_(0, 2.0) is not None and abs(float(w.std()) - 2.0) < 0.2
    assert float(w.uniform_(0, 1).min()) >= 0.0 and float(w.max()) < 1.0


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(6, 3), (6, 3, 4)])
def test_batchnorm1d_matches_pytorch(shape):
    torch = pytest.importorskip("torch")
    theirs, ours = torch.nn.BatchNorm1d(3).double(), nn.BatchNorm1d(3).double()
    x = np.random.default_rng(5).standard_normal(shape)
    compare_with_torch(lambda lib, x: (ours if lib is tr else theirs)(x), x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="BatchNorm1d: expected 2D or 3D input"):
        ours(tr.ones(2, 3, 4, 4, dtype=tr.float64))


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])  # clipping, and not
def test_clip_grad_norm_matches_pytorch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    norms, grads = {}, {}
    for lib in (tr, torch):
        params = [lib.zeros(a.shape, dtype=lib.float64, requires_grad=True) for a in arrays]
        sum((p * lib.tensor(a)).sum() for p, a in zip(params, arrays)).backward()
        norms[lib.__name__] = float(lib.nn.utils.clip_grad_norm_(params, max_norm, norm_type))
        grads[lib.__name__] = np.concatenate([p.grad.numpy().ravel() for p in params])
    assert norms["tinyres"] == pytest.approx(norms["torch"], rel=1e-12)
    np.testing.assert_allclose(grads["tinyres"], grads["torch"], rtol=1e-12)


# ---- maximum / minimum: max(a, b), min(a, b) ---------------------------------------------

PAIRWISE = {
    "maximum": lambda lib, a, b: lib.maximum(a, b),
    "minimum": lambda lib, a, b: lib.minimum(a, b),
    "max_two": lambda lib, a, b: lib.max(a, b),
    "min_two": lambda lib, a, b: lib.min(a, b),
    "method_max": lambda lib, a, b: a.max(b),
    "method_min": lambda lib, a, b: a.min(b),
}


def _on_grid(x: np.ndarray, offset: float) -> np.ndarray:
    """Round to the 0.1 grid shifted by ``offset``, in place (keeping the drawn layout):
    values on grids 0.05 apart never tie, so max(a, b) has no kink."""
    x[...] = np.round(x, 1) + offset
    return x


@pytest.mark.parametrize("name", sorted(PAIRWISE))
@given(pair=broadcastable_pairs(), data=st.data())
def test_maximum_minimum_gradcheck_broadcast_and_layouts(name, pair, data):
    a = _on_grid(data.draw(arrays(pair[0])), 0.0)
    b = _on_grid(data.draw(arrays(pair[1])), 0.05)
    assert tr.gradcheck(lambda x, y: PAIRWISE[name](tr, x, y), (leaf(a), leaf(b)))


def tie_gradients(fn):
    """Gradients of sum(fn(a, b)) for a, b equal in the first element, apart elsewhere."""
    a, b = leaf(np.array([1.0, 2.0, 3.0])), leaf(np.array([1.0, 1.0, 4.0]))
    fn(a, b).sum().backward()
    return a.grad.tolist(), b.grad.tolist()


def test_maximum_minimum_split_the_gradient_at_ties_as_pytorch():
    # PyTorch 2.13: torch.maximum gives (0.5, 1, 0) and (0.5, 0, 1); minimum the mirror.
    assert tie_gradients(tr.maximum) == ([0.5, 1.0, 0.0], [0.5, 0.0, 1.0])
    assert tie_gradients(tr.minimum) == ([0.5, 0.0, 1.0], [0.5, 1.0, 0.0])
    # A broadcast operand collects its halves from every row it tied with.
    x, y = leaf(np.array([[0.0, 2.0], [0.0, -1.0]])), leaf(np.array([0.0, 1.0]))
    tr.max(x, y).sum().backward()
    assert x.grad.tolist() == [[0.5, 1.0], [0.5, 0.0]] and y.grad.tolist() == [1.0, 1.0]


def test_tie_check_catches_a_gradient_that_is_not_split():
    from tinyres.ops.compare import Maximum

    class EachTakesAll(Maximum):
        def backward(self, grad):
            return grad * (self.x >= self.y), grad * (self.y >= self.x)

    assert tie_gradients(EachTakesAll.apply) != tie_gradients(tr.maximum)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_maximum_minimum_match_pytorch_with_ties_nan_and_broadcast(name):
    a = np.array([[1.0, 2.0, np.nan, -0.5], [0.3, 0.3, 1.0, np.nan]])
    b = np.array([1.0, 0.3, 0.7, -0.5])  # ties in three columns, NaN on either side
    compare_with_torch(lambda lib, x, y: PAIRWISE[name](lib, x, y), a, b, rtol=0, atol=0)
    compare_with_torch(lambda lib, x, y: PAIRWISE[name](lib, y, x), a, b, rtol=0, atol=0)


def test_maximum_refuses_a_number_and_mixed_float_dtypes():
    with pytest.raises(TypeError, match=r"both arguments must be Tensors.*got Tensor and float"):
        tr.maximum(tr.ones(2), 2.0)
    with pytest.raises(TypeError, match="different float dtypes"):
        tr.minimum(tr.ones(2), tr.ones(2, dtype=tr.float64))


# ---- autograd.grad -----------------------------------------------------------------------


def _two_outputs(x, w):
    h = x @ w
    return (h.tanh() * h).sum(dim=1), (h * x[:, :1]).mean()


def test_autograd_grad_matches_central_differences_and_leaves_grad_alone():
    rng = np.random.default_rng(3)
    x, w = leaf(rng.standard_normal((3, 4))), leaf(rng.standard_normal((4, 2)))
    w.grad = tr.tensor(np.full((4, 2), 7.0))
    v = rng.standard_normal(3)
    out, scalar = _two_outputs(x, w)
    gx, gw = tr.autograd.grad([out, scalar], [x, w], grad_outputs=[tr.tensor(v), None])
    assert x.grad is None and w.grad.tolist() == np.full((4, 2), 7.0).tolist()

    def loss() -> float:
        out, scalar = _two_outputs(x, w)
        return float((out._data * v).sum() + scalar.item())

    for t, g in ((x, gx), (w, gw)):
        numeric = np.zeros(t.shape)
        for j in np.ndindex(t.shape):
            original = t._data[j]
            t._data[j] = original + 1e-6
            plus = loss()
            t._data[j] = original - 1e-6
            numeric[j] = (plus - loss()) / 2e-6
            t._data[j] = original
        assert relative_error(g.numpy(), numeric) < 1e-7


def test_autograd_grad_equals_backward_for_non_leaf_inputs_and_retained_graphs():
    x = leaf(np.array([0.5, -1.0, 2.0]))
    h = x.exp()
    y = (h * h + x).sum()
    gh, gx = tr.autograd.grad(y, (h, x), retain_graph=True)
    h.retain_grad()
    y.backward()
    assert gx.tolist() == x.grad.tolist() and gh.tolist() == h.grad.tolist()
    np.testing.assert_allclose(gh.numpy(), 2 * np.exp(x.detach().numpy()))


def test_autograd_grad_refuses_as_pytorch():
    x, unused = leaf(np.array([1.0, 2.0])), leaf(np.array(3.0))
    with pytest.raises(RuntimeError, match=r"inputs\[1\] appears to not have been used"):
        tr.autograd.grad((x * 2).sum(), [x, unused])
    gx, none = tr.autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gx.tolist() == [2.0, 2.0] and none is None
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        tr.autograd.grad(x * 2, x)
    with pytest.raises(RuntimeError, match="create_graph=True is not supported"):
        tr.autograd.grad((x * x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"inputs\[0\] does not require grad"):
        tr.autograd.grad((x * 2).sum(), tr.ones(2))
    y = (x * x).sum()
    tr.autograd.grad(y, x)  # retain_graph defaults to create_graph (False): the graph is freed
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        tr.autograd.grad(y, x)


@pytest.mark.torch
def test_autograd_grad_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    xs, ws, v = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(3)
    found = {}
    for lib in (tr, torch):
        x, w = lib.tensor(xs, requires_grad=True), lib.tensor(ws, requires_grad=True)
        out, scalar = _two_outputs(x, w)
        found[lib.__name__] = lib.autograd.grad([out, scalar], [w, x], grad_outputs=[lib.tensor(v), None])
    for ours, theirs in zip(found["tinyres"], found["torch"]):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12)

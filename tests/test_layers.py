"""Layers: the same weights give PyTorch's outputs and gradients; float64 gradchecks;
BatchNorm's running statistics; clear errors for bad settings and inputs."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyres as tr
from tinyres import nn
from tinyres.engine import Function
from tinyres.nn import functional as F


def random_state(module, rng):
    """Random values for every float entry of the state dict (running_var kept positive),
    so a cross-check does not pass just because weights are ones and stats are zeros."""
    state = {}
    for name, value in module.state_dict().items():
        value = np.asarray(value)
        if value.dtype.kind != "f":
            state[name] = value
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
        else:
            state[name] = rng.normal(0.0, 0.5, value.shape).astype(value.dtype)
    return state


def compare_layer(make, x, *extra, train=True, rtol=1e-4, atol=1e-5, seed=0):
    """Build ``make(nn)`` in both libraries with the same random weights, run forward and
    backward (random upstream gradient), and compare outputs, input and parameter
    gradients, and the state afterwards (running statistics)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    theirs, ours = make(torch.nn), make(nn)
    state = random_state(theirs, rng)
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    ours.load_state_dict(state)
    theirs.train(train), ours.train(train)
    x_ours, x_theirs = tr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out_ours = ours(x_ours, *[tr.tensor(e) for e in extra])
    out_theirs = theirs(x_theirs, *[torch.tensor(e) for e in extra])
    np.testing.assert_allclose(out_ours.detach().numpy(), out_theirs.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg="forward differs from PyTorch")
    upstream = rng.standard_normal(out_ours.shape).astype(x.dtype)
    (out_ours * tr.tensor(upstream)).sum().backward()
    (out_theirs * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(x_ours.grad.numpy(), x_theirs.grad.numpy(), rtol=rtol, atol=atol,
                               err_msg="input gradient differs")
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of {name} differs")
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        np.testing.assert_allclose(value.numpy(), theirs_state[name].numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{name} differs after the step")


LAYERS = {
    "conv": (lambda lib: lib.Conv2d(3, 5, 3), (2, 3, 7, 6)),
    "conv_all_options": (
        lambda lib: lib.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), bias=False),
        (2, 2, 9, 5),
    ),
    "conv_1x1_stride2": (lambda lib: lib.Conv2d(4, 6, kernel_size=1, stride=2, bias=False), (3, 4, 6, 6)),
    # On a machine with no GPU, PyTorch's DataParallel runs its module as it is; so does tinyres's.
    "data_parallel": (lambda lib: lib.DataParallel(lib.Conv2d(3, 5, 3)), (2, 3, 7, 6)),
    "conv_seed_3x3": (lambda lib: lib.Conv2d(3, 4, kernel_size=3, stride=2, padding=1), (2, 3, 8, 8)),
    "linear": (lambda lib: lib.Linear(5, 3), (4, 5)),
    "linear_3d_nobias": (lambda lib: lib.Linear(4, 2, bias=False), (2, 3, 4)),
    "relu": (lambda lib: lib.ReLU(), (2, 3, 4, 4)),
    "relu_inplace_after_conv": (lambda lib: lib.Sequential(lib.Conv2d(2, 2, 1), lib.ReLU(inplace=True)),
                                (2, 2, 3, 3)),
    "tanh": (lambda lib: lib.Tanh(), (3, 4)),
    "sigmoid": (lambda lib: lib.Sigmoid(), (3, 4)),
    "maxpool_stem": (lambda lib: lib.MaxPool2d(kernel_size=3, stride=2, padding=1), (2, 3, 9, 8)),
    "maxpool_2": (lambda lib: lib.MaxPool2d(2), (1, 2, 6, 6)),
    "avgpool_2": (lambda lib: lib.AvgPool2d(2), (2, 3, 6, 6)),
    "avgpool_padded": (lambda lib: lib.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 7)),
    "adaptive_1": (lambda lib: lib.AdaptiveAvgPool2d(1), (2, 4, 5, 3)),
    "adaptive_11": (lambda lib: lib.AdaptiveAvgPool2d((1, 1)), (2, 4, 7, 7)),
    "flatten": (lambda lib: lib.Flatten(), (2, 3, 2, 2)),
    "identity": (lambda lib: lib.Identity(), (2, 3)),
    "leaky_relu": (lambda lib: lib.LeakyReLU(0.2), (3, 4)),
    "silu": (lambda lib: lib.SiLU(), (3, 4)),
    "softmax": (lambda lib: lib.Softmax(dim=1), (3, 4)),
    "log_softmax": (lambda lib: lib.LogSoftmax(dim=1), (3, 4)),
    "dropout_p0": (lambda lib: lib.Dropout(0.0), (3, 4)),  # p > 0 draws different masks
    "group_norm": (lambda lib: lib.GroupNorm(2, 4), (2, 4, 3, 3)),
    "layer_norm": (lambda lib: lib.LayerNorm((3, 3)), (2, 4, 3, 3)),
    "batchnorm1d": (lambda lib: lib.BatchNorm1d(4), (5, 4)),
    "sequential": (
        lambda lib: lib.Sequential(lib.Conv2d(2, 3, 3, padding=1, bias=False), lib.BatchNorm2d(3),
                                   lib.ReLU(), lib.AdaptiveAvgPool2d(1), lib.Flatten(), lib.Linear(3, 2)),
        (4, 2, 5, 5),
    ),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_pytorch(name):
    make, shape = LAYERS[name]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    compare_layer(make, x)


BATCHNORMS = {
    "default": lambda lib: lib.BatchNorm2d(3),
    "no_affine": lambda lib: lib.BatchNorm2d(3, affine=False),
    "no_running_stats": lambda lib: lib.BatchNorm2d(3, track_running_stats=False),
    "cumulative": lambda lib: lib.BatchNorm2d(3, momentum=None, eps=1e-3),
    "no_bias": lambda lib: lib.BatchNorm2d(3, bias=False),
    # One process, no process group: both libraries' SyncBatchNorm is batch norm over the batch
    # (tests/test_distributed.py checks it across ranks under mpiexec).
    "sync": lambda lib: lib.SyncBatchNorm(3),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BATCHNORMS))
def test_batchnorm_matches_pytorch(name, train):
    x = np.random.default_rng(2).normal(1.5, 2.0, (4, 3, 3, 5)).astype(np.float32)
    compare_layer(BATCHNORMS[name], x, train=train)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm_running_stats_follow_pytorch_over_steps(momentum):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ours, theirs = nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
    for step in range(5):
        x = rng.normal(step - 2.0, 1.0 + step, (4, 3, 2, 3)).astype(np.float32)
        ours(tr.tensor(x))
        theirs(torch.tensor(x))
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 5
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(theirs, name).numpy(), rtol=1e-5,
                                   err_msg=name)
    ours.eval(), theirs.eval()
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(ours(tr.tensor(x)).detach().numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_batchnorm_eval_does_not_touch_running_stats():
    bn = nn.BatchNorm2d(2).eval()
    bn(tr.randn(3, 2, 2, 2))
    assert bn.num_batches_tracked.item() == 0
    np.testing.assert_array_equal(bn.running_mean.numpy(), [0, 0])
    # Eval mode: one image gives the same answer alone or inside a batch.
    bn.running_mean.data[...] = [0.5, -1.0]
    x = tr.randn(3, 2, 2, 2)
    np.testing.assert_allclose(bn(x[0:1]).detach().numpy(), bn(x).detach().numpy()[0:1], rtol=1e-6)


LOSSES = {
    "mse": (lambda lib: lib.MSELoss(), lambda rng: rng.standard_normal((5, 4)).astype(np.float32)),
    "nll": (lambda lib: lib.NLLLoss(), lambda rng: rng.integers(0, 4, 5)),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_pytorch(name):
    make, target = LOSSES[name]
    rng = np.random.default_rng(4)
    compare_layer(make, rng.standard_normal((5, 4)).astype(np.float32), target(rng))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_loss_matches_pytorch(reduction):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    target = rng.integers(0, 4, 5)
    compare_layer(lambda lib: lib.CrossEntropyLoss(reduction=reduction), logits, target)


@given(
    cin=st.integers(1, 3), cout=st.integers(1, 3), k=st.integers(1, 3), stride=st.integers(1, 3),
    padding=st.integers(0, 2), dilation=st.integers(1, 2), bias=st.booleans(),
    hw=st.tuples(st.integers(5, 8), st.integers(5, 8)), seed=st.integers(0, 2**16),
)
def test_conv2d_layer_matches_pytorch_for_drawn_settings(
    cin, cout, k, stride, padding, dilation, bias, hw, seed
):
    x = np.random.default_rng(seed).standard_normal((2, cin, *hw)).astype(np.float32)
    compare_layer(lambda lib: lib.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                                         bias=bias), x, seed=seed)


# ---- float64 gradient checks of whole layers (parameters included) ------------------------

GRADCHECKED = {
    "conv": (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 5, 5)),
    "conv_dilated_nobias": (lambda: nn.Conv2d(2, 2, 2, dilation=2, bias=False), (1, 2, 5, 4)),
    "linear": (lambda: nn.Linear(4, 3), (3, 4)),
    "batchnorm_train": (lambda: nn.BatchNorm2d(2), (3, 2, 2, 3)),
    "batchnorm_eval": (lambda: nn.BatchNorm2d(2).eval(), (3, 2, 2, 3)),
    "sync_batchnorm": (lambda: nn.SyncBatchNorm(2), (3, 2, 2, 3)),
    "data_parallel": (lambda: nn.DataParallel(nn.Linear(4, 3)), (3, 4)),
    "maxpool": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 5, 5)),
    "avgpool": (lambda: nn.AvgPool2d(2), (2, 2, 4, 4)),
    "adaptive": (lambda: nn.AdaptiveAvgPool2d(1), (2, 2, 3, 3)),
    "tanh": (lambda: nn.Tanh(), (3, 4)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 4)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 4)),
    "silu": (lambda: nn.SiLU(), (3, 4)),
    "softmax": (lambda: nn.Softmax(dim=0), (3, 4)),
    "log_softmax": (lambda: nn.LogSoftmax(dim=1), (3, 4)),
    "group_norm": (lambda: nn.GroupNorm(2, 4), (2, 4, 2, 3)),
    "layer_norm": (lambda: nn.LayerNorm(3), (2, 4, 3)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(3), (4, 3)),
    "flatten_linear": (lambda: nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(6, 2)), (2, 3, 2)),
    "conv_bn_relu": (
        lambda: nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2), nn.ReLU()),
        (2, 2, 3, 3),
    ),
}


@pytest.mark.parametrize("name", list(GRADCHECKED))
def test_layer_gradcheck_float64(name):
    make, shape = GRADCHECKED[name]
    tr.manual_seed(5)
    layer = make().double()
    params = list(layer.parameters())
    rng = np.random.default_rng(6)
    for p in params:  # move BN's gamma/beta off their trivial initial values
        p.data[...] = rng.uniform(-1.5, 1.5, p.shape)
    x = tr.tensor(np.random.default_rng(7).standard_normal(shape), requires_grad=True)
    assert tr.gradcheck(lambda x, *ps: layer(x), (x, *params))


# ---- every module class of tinyres.nn is in the tables above ---------------------------------
NOT_MODULES = {"Module", "ModuleDict", "ModuleList", "Parameter", "functional", "init", "parallel", "utils"}
# Modules with no gradient of their own to check, and why.
NOT_GRADCHECKED = {
    "Dropout": "p > 0 is random and p = 0 is the identity; its op is in the op table",
    "CrossEntropyLoss": "its op, cross_entropy, is gradient-checked in the op table",
    "MSELoss": "its op, mse_loss, is gradient-checked in the op table",
    "NLLLoss": "its op, nll_loss, is gradient-checked in the op table",
}


def classes_built(makers) -> set[str]:
    return {type(m).__name__ for make in makers for m in make().modules()}


def layer_classes() -> set[str]:
    return set(nn.__all__) - NOT_MODULES


def test_every_layer_is_compared_with_pytorch():
    built = classes_built([lambda make=make: make(nn) for make, _ in LAYERS.values()]
                          + [lambda make=make: make(nn) for make in BATCHNORMS.values()]
                          + [lambda make=make: make(nn) for make, _ in LOSSES.values()]
                          + [lambda: nn.CrossEntropyLoss()])
    missing = sorted(layer_classes() - built)
    assert not missing, f"tinyres.nn modules in no PyTorch comparison of tests/test_layers.py: {missing}"


def test_every_layer_is_gradient_checked():
    built = classes_built([make for make, _ in GRADCHECKED.values()])
    missing = sorted(layer_classes() - built - set(NOT_GRADCHECKED))
    assert not missing, f"tinyres.nn modules in no float64 gradient check (GRADCHECKED): {missing}"


def test_gradcheck_of_a_layer_catches_a_wrong_gradient():
    """The check above can fail: a layer whose forward disagrees with its backward is caught."""

    class Wrong(Function):
        def forward(self, x):
            return 2 * x

        def backward(self, grad):
            return (3 * grad,)

    class Doubler(nn.Module):
        def forward(self, x):
            return Wrong.apply(x)

    x = tr.tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(tr.GradcheckError):
        tr.gradcheck(lambda x: Doubler()(x), (x,))


# ---- behaviour and errors ----------------------------------------------------------------

def test_relu_inplace_writes_into_its_input_as_in_pytorch():
    x = tr.tensor([-1.0, 2.0])
    out = nn.ReLU(inplace=True)(x)
    assert out is x and x.tolist() == [0.0, 2.0] and x._version == 1
    y = tr.tensor([-1.0, 2.0])
    assert nn.ReLU()(y) is not y and y.tolist() == [-1.0, 2.0]


@pytest.mark.parametrize("relu_in_place", [lambda x: F.relu(x, inplace=True), lambda x: F.relu_(x)],
                         ids=["relu_inplace", "relu_"])
def test_functional_relu_in_place_writes_into_its_input(relu_in_place):
    x = tr.tensor([-1.0, 2.0])
    memory = x.numpy()
    assert relu_in_place(x) is x and memory.tolist() == [0.0, 2.0] and x._version == 1


def test_seed_idioms():
    """``torch.relu``, ``out += identity`` and ``out.view(out.size(0), -1)`` on layer outputs."""
    x = tr.randn(2, 3, 4, 4, requires_grad=True)
    out = nn.Conv2d(3, 3, 3, padding=1)(x)
    out += x
    out = tr.relu(out)
    flat = out.view(out.size(0), -1)
    assert flat.shape == (2, 48)
    flat.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: nn.Conv2d(0, 4, 3), ValueError, "in_channels must be a positive int, got 0"),
        (lambda: nn.Conv2d(3, 4, (3, 3, 3)), ValueError, "kernel_size"),
        (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, "stride"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "padding"),
        (lambda: nn.Conv2d(3, 4, 3, stride=1.5), TypeError, "stride must be an int or a pair of ints"),
        (lambda: nn.Linear(3, 0), ValueError, "out_features must be a positive int"),
        (lambda: nn.BatchNorm2d(0), ValueError, "num_features"),
        (lambda: nn.MaxPool2d(2, ceil_mode=True), ValueError, "ceil_mode"),
        (lambda: nn.AvgPool2d(2, ceil_mode=True), ValueError, "ceil_mode"),
        (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, "reduction"),
    ],
)
def test_bad_settings_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="BatchNorm2d: expected 4D input"):
        nn.BatchNorm2d(3)(tr.zeros(2, 3))
    with pytest.raises(ValueError, match="input has 2 channels, weight expects 3"):
        nn.Conv2d(3, 4, 3)(tr.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match="linear: input has 5 features"):
        nn.Linear(4, 2)(tr.zeros(3, 5))
    with pytest.raises(TypeError, match="float"):
        nn.Linear(4, 2)(tr.zeros(3, 4, dtype=tr.float64))  # call .double() on the layer first


def test_layer_reprs():
    assert repr(nn.Conv2d(3, 64, 7, 2, 3, bias=False)) == (
        "Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)")
    assert repr(nn.Conv2d(2, 2, 3, dilation=2)) == (
        "Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), dilation=(2, 2))")
    assert repr(nn.AvgPool2d(2)) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    assert repr(nn.AdaptiveAvgPool2d((1, 1))) == "AdaptiveAvgPool2d(output_size=(1, 1))"
    assert repr(nn.Linear(512, 1000)) == "Linear(in_features=512, out_features=1000, bias=True)"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.Tanh()) == "Tanh()" and repr(nn.Identity()) == "Identity()"

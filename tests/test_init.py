"""nn.init: fans and gains as PyTorch, the statistics of each initialiser on large
tensors, reproducibility through manual_seed, and the default Conv2d/Linear init."""

import math

import numpy as np
import pytest

import tinyres as tr
from tinyres import nn
from tinyres.nn import init

# (256, 128, 3, 3): 294,912 samples, so a sample std is within ~0.3% of the true one
# (relative standard error 1/sqrt(2n) ~ 0.13%); the tolerances below are 2%.
BIG = (256, 128, 3, 3)
FAN_IN, FAN_OUT = 128 * 9, 256 * 9


@pytest.mark.parametrize("shape", [(3, 4), (8, 3, 3, 3), (5, 2, 7), (2, 6, 1, 4)])
def test_fans_match_pytorch(shape):
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(tr.zeros(*shape)) == expected


@pytest.mark.parametrize(("nonlinearity", "param"), [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None),
])
def test_gains_match_pytorch(nonlinearity, param):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-12)


def test_gain_values_without_torch():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0) == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_normal_(tr.zeros(5))
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_uniform_(tr.zeros(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="tinyres Tensor"):
        init.zeros_(np.zeros(3))


@pytest.mark.parametrize(("fn", "kwargs", "std"), [
    (init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2 / FAN_OUT)),
    (init.kaiming_normal_, {}, math.sqrt(2 / FAN_IN)),  # leaky_relu with a=0 is ReLU
    (init.kaiming_normal_, {"a": 0.3, "nonlinearity": "leaky_relu"}, math.sqrt(2 / 1.09 / FAN_IN)),
    (init.kaiming_uniform_, {"mode": "fan_in", "nonlinearity": "relu"}, math.sqrt(2 / FAN_IN)),
    (init.kaiming_uniform_, {"a": math.sqrt(5)}, math.sqrt(1 / 3 / FAN_IN)),
    (init.xavier_normal_, {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (init.xavier_uniform_, {"gain": 2.0}, 2 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (init.normal_, {"mean": 0.0, "std": 0.02}, 0.02),
    (init.uniform_, {"a": -0.5, "b": 0.5}, 1 / math.sqrt(12)),
])
def test_initialiser_statistics(fn, kwargs, std):
    tr.manual_seed(0)
    w = tr.zeros(*BIG)
    assert fn(w, **kwargs) is w
    values = w.numpy()
    assert values.std() == pytest.approx(std, rel=0.02)
    assert abs(values.mean()) < 0.02 * std
    if fn in (init.kaiming_uniform_, init.xavier_uniform_, init.uniform_):
        bound = math.sqrt(3) * std
        assert np.abs(values).max() <= bound * (1 + 1e-6)
        assert np.abs(values).max() > 0.99 * bound  # the whole range is used
    else:
        assert np.abs(values).max() > 3.5 * std  # normal tails, not a uniform


def test_fills_keep_dtype_and_skip_the_graph():
    w = nn.Parameter(tr.zeros(3, 4, dtype=tr.float64))
    fills = [(init.constant_, (0.25,), 0.25), (init.ones_, (), 1.0), (init.zeros_, (), 0.0)]
    for fn, args, expected in fills:
        fn(w, *args)
        assert w.dtype == np.float64 and w.grad_fn is None
        np.testing.assert_array_equal(w.detach().numpy(), np.full((3, 4), expected))
    init.normal_(w)
    assert w.dtype == np.float64 and w.is_leaf and w.requires_grad


@pytest.mark.parametrize("name, args", [("normal_", (1.0, 2.0)), ("uniform_", (-1.0, 3.0))])
def test_random_fills_are_the_tensor_methods(name, args):
    """nn.init's normal_/uniform_ call Tensor's: the same draws from the same seed, and a
    clear TypeError (not an AttributeError) for something that is not a Tensor."""
    tr.manual_seed(7)
    by_init = getattr(init, name)(tr.zeros(3, 4, dtype=tr.float64), *args).numpy().copy()
    tr.manual_seed(7)
    by_method = getattr(tr.zeros(3, 4, dtype=tr.float64), name)(*args).numpy()
    np.testing.assert_array_equal(by_init, by_method)
    with pytest.raises(TypeError, match="init functions fill a tinyres Tensor, got list"):
        getattr(init, name)([1.0, 2.0], *args)


def test_zero_element_tensor_is_a_no_op():
    w = tr.zeros(0, 3)
    assert init.kaiming_uniform_(w) is w and init.xavier_normal_(w) is w


def test_manual_seed_makes_init_reproducible():
    tr.manual_seed(123)
    a = init.kaiming_normal_(tr.zeros(4, 5)).numpy().copy()
    b = init.kaiming_normal_(tr.zeros(4, 5)).numpy().copy()
    tr.manual_seed(123)
    np.testing.assert_array_equal(init.kaiming_normal_(tr.zeros(4, 5)).numpy(), a)
    assert not np.array_equal(a, b)
    tr.manual_seed(7)
    conv_a = nn.Conv2d(2, 3, 3).weight.detach().numpy().copy()
    tr.manual_seed(7)
    np.testing.assert_array_equal(nn.Conv2d(2, 3, 3).weight.detach().numpy(), conv_a)


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(64, 128, 3), lambda: nn.Linear(576, 512)])
def test_default_conv_and_linear_init_is_pytorchs(make):
    """Kaiming uniform with a = sqrt(5): U[-1/sqrt(fan_in), 1/sqrt(fan_in)]; bias the same."""
    tr.manual_seed(1)
    layer = make()
    bound = 1 / math.sqrt(576)  # fan_in = 64*3*3 = 576 for both
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert np.abs(b).max() <= bound and b.std() > 0.4 * bound
    assert w.dtype == np.float32 and b.dtype == np.float32


def test_default_init_agrees_with_pytorch_in_distribution():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tr.manual_seed(0)
    theirs, ours = torch.nn.Conv2d(32, 64, 3), nn.Conv2d(32, 64, 3)
    assert ours.weight.detach().numpy().std() == pytest.approx(theirs.weight.detach().std().item(), rel=0.03)
    theirs_max = theirs.weight.detach().abs().max().item()
    assert np.abs(ours.weight.detach().numpy()).max() == pytest.approx(theirs_max, rel=0.01)


def test_batchnorm_starts_at_weight_one_bias_zero():
    bn = nn.BatchNorm2d(4)
    np.testing.assert_array_equal(bn.weight.detach().numpy(), np.ones(4))
    np.testing.assert_array_equal(bn.bias.detach().numpy(), np.zeros(4))
    bn.weight.data[...] = 3
    bn.running_mean.data[...] = 2
    bn.num_batches_tracked.data[...] = 9
    bn.reset_parameters()
    assert bn.weight.tolist() == [1] * 4 and bn.running_mean.tolist() == [0] * 4
    assert bn.num_batches_tracked.item() == 0

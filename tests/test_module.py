"""Module: registration, tree walking, modes, dtypes, repr, state_dict and its refusals."""

import copy
from collections import OrderedDict

import numpy as np
import pytest

import tinyres as tr
from tinyres import nn


def model_classes(lib):
    """A seed-style residual block and a small net, built on ``lib`` (tinyres.nn or torch.nn),
    so both libraries get the same tree."""

    class Block(lib.Module):
        def __init__(self, cin, cout, stride=1):
            super(Block, self).__init__()  # noqa: UP008 - the seeds write it this way
            self.conv1 = lib.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = lib.BatchNorm2d(cout)
            self.relu = lib.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = lib.Sequential(lib.Conv2d(cin, cout, 1, stride=stride),
                                                 lib.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn1(self.conv1(x))
            out += identity  # before the in-place ReLU: it saves its output (so in PyTorch)
            return self.relu(out)

    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.stem = lib.Sequential(lib.Conv2d(3, 4, 3, padding=1, bias=False), lib.BatchNorm2d(4),
                                       lib.ReLU(inplace=True))
            self.block = lib.Sequential(Block(4, 6, stride=2), Block(6, 6))
            self.shortcut = lib.Sequential()
            self.pool = lib.AdaptiveAvgPool2d((1, 1))
            self.fc = lib.Linear(6, 3)

        def forward(self, x):
            out = self.shortcut(self.block(self.stem(x)))
            out = self.pool(out)
            return self.fc(out.view(out.size(0), -1))

    return Block, Net


Block, _ = model_classes(nn)


def small_net(lib):
    return model_classes(lib)[1]()


# ---- registration ------------------------------------------------------------------------

def test_attribute_assignment_registers_by_type():
    m = nn.Module()
    m.w = nn.Parameter(tr.ones(2))
    m.sub = nn.Linear(2, 2)
    m.register_buffer("stat", tr.zeros(2))
    m.plain = tr.zeros(1)  # a plain tensor is neither parameter nor buffer
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and list(m._buffers) == ["stat"]
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    assert [n for n, _ in m.named_buffers()] == ["stat"]
    assert m.w is m._parameters["w"] and m.sub is m._modules["sub"]
    assert "plain" not in m.state_dict()


def test_unknown_attribute_raises_attribute_error():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(AttributeError, match="'Sequential' object has no attribute 'wieght'"):
        _ = model.wieght
    assert not hasattr(model[0], "weigth")
    assert hasattr(model[0], "weight")


def test_reassigning_a_name_moves_it_between_registries():
    m = nn.Module()
    m.x = nn.Linear(1, 1)
    m.x = nn.Parameter(tr.ones(1))
    assert "x" not in m._modules and "x" in m._parameters
    m.x = nn.ReLU()
    assert "x" not in m._parameters and isinstance(m.x, nn.ReLU)
    del m.x
    assert "x" not in m._modules and not hasattr(m, "x")


def test_none_slots_and_wrong_types():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    assert conv.bias is None and "bias" in conv._parameters
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="parameter 'weight'"):
        conv.weight = conv.weight * 2  # would silently stop training the weight
    conv.weight = None
    assert list(conv.parameters()) == []
    bn = nn.BatchNorm2d(2)
    with pytest.raises(TypeError, match="buffer 'running_mean'"):
        bn.running_mean = np.zeros(2)
    seq = nn.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match="not a Module"):
        seq.add_module("1", "relu")


def test_plain_attribute_then_module():
    """The seeds set ``self.downsample = None`` and maybe a Sequential later."""
    block = Block(2, 2)
    assert block.downsample is None and "downsample" not in block._modules
    block.downsample = nn.Sequential()
    assert "downsample" in block._modules


def test_registration_name_checks():
    m = nn.Module()
    m.a = tr.zeros(1)
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("a", tr.zeros(1))
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="string"):
        m.add_module(3, nn.ReLU())


def test_assigning_before_init_is_a_clear_error():
    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Forgot()


def test_missing_forward():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(tr.zeros(1))


def test_shared_parameter_is_listed_once():
    a = nn.Linear(2, 2)
    m = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(m.parameters())) == 2
    assert len(list(m.modules())) == 3  # Sequential, Linear, ReLU
    assert [n for n, _ in m.named_children()] == ["0", "1"]


def test_non_persistent_buffer():
    m = nn.Module()
    m.register_buffer("cache", tr.zeros(3), persistent=False)
    assert list(m.buffers()) == [m.cache]
    assert "cache" not in m.state_dict()


def test_tree_walks():
    net = small_net(nn)
    names = [n for n, _ in net.named_modules()]
    assert names[:4] == ["", "stem", "stem.0", "stem.1"]
    assert "block.0.downsample.1" in names and "block.1.downsample" not in names
    assert [type(c).__name__ for c in net.children()] == [
        "Sequential", "Sequential", "Sequential", "AdaptiveAvgPool2d", "Linear"]
    visited = []
    assert net.apply(lambda m: visited.append(type(m).__name__)) is net
    assert visited[-1] == "Net" and visited.index("Conv2d") < visited.index("Sequential")


def test_forward_hook_sees_output_and_can_be_removed():
    layer = nn.Linear(3, 2)
    seen = []
    handle = layer.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].shape, out.shape)))
    layer(tr.zeros(4, 3))
    handle.remove()
    layer(tr.zeros(4, 3))
    assert seen == [(layer, (4, 3), (4, 2))]
    layer.register_forward_hook(lambda mod, args, out: out * 0)
    assert layer(tr.ones(1, 3)).tolist() == [[0.0, 0.0]]


# ---- modes, gradients, dtypes -----------------------------------------------------------

def test_train_eval_flags_reach_every_module():
    net = small_net(nn)
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="bool"):
        net.train("no")


def test_zero_grad_sets_none_or_zeros():
    net = small_net(nn)
    net(tr.randn(2, 3, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_requires_grad_switch():
    layer = nn.Linear(2, 2).requires_grad_(False)
    assert not any(p.requires_grad for p in layer.parameters())


def test_double_float_and_to():
    net = small_net(nn)
    assert net.double() is net
    assert {t.dtype for t in net.parameters()} == {np.dtype(np.float64)}
    bn = net.stem[1]
    assert bn.running_var.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    assert net(tr.randn(1, 3, 8, 8, dtype=tr.float64)).dtype == np.float64
    net.to("cpu").to(tr.float32)
    assert {t.dtype for t in net.parameters()} == {np.dtype(np.float32)}
    with pytest.raises(TypeError, match="CPU only"):
        net.to("cuda")
    with pytest.raises(TypeError, match="floating-point"):
        net.to(tr.int64)


def test_deepcopy_is_independent():
    net = small_net(nn)
    twin = copy.deepcopy(net)
    twin.fc.weight.data[...] = 0
    assert np.abs(net.fc.weight.detach().numpy()).sum() > 0
    assert twin.fc.weight is twin.fc._parameters["weight"]
    assert {id(p) for p in twin.parameters()}.isdisjoint(id(p) for p in net.parameters())


# ---- repr --------------------------------------------------------------------------------

def test_repr_matches_pytorch():
    torch = pytest.importorskip("torch")
    assert repr(small_net(nn)) == repr(small_net(torch.nn))


def test_repr_nested_layout():
    text = repr(nn.Sequential(nn.Sequential(nn.ReLU()), nn.Sequential()))
    assert text == "Sequential(\n  (0): Sequential(\n    (0): ReLU()\n  )\n  (1): Sequential()\n)"


# ---- state_dict ---------------------------------------------------------------------------

def test_state_dict_keys_match_pytorch():
    torch = pytest.importorskip("torch")
    ours, theirs = small_net(nn).state_dict(), small_net(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]


def test_state_dict_values_are_detached_views():
    layer = nn.Linear(2, 2)
    sd = layer.state_dict()
    assert not sd["weight"].requires_grad
    layer.weight.data[0, 0] = 42.0
    assert sd["weight"].numpy()[0, 0] == 42.0  # shares memory, as in PyTorch
    assert layer.state_dict(keep_vars=True)["weight"] is layer.weight


def test_load_state_dict_from_numpy_and_from_tensors():
    src, dst = small_net(nn), small_net(nn)
    src.stem[1].num_batches_tracked.data[...] = 7
    weight = dst.fc.weight
    result = dst.load_state_dict({k: v.numpy() for k, v in src.state_dict().items()})
    assert repr(result) == "<All keys matched successfully>"
    assert dst.fc.weight is weight  # copied in place: optimisers keep their references
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    dst.load_state_dict(src.state_dict())
    x = tr.randn(2, 3, 8, 8)
    src.eval(), dst.eval()
    np.testing.assert_array_equal(src(x).detach().numpy(), dst(x).detach().numpy())


def test_load_state_dict_from_pytorch_tensors():
    torch = pytest.importorskip("torch")
    theirs, ours = small_net(torch.nn), small_net(nn)
    ours.load_state_dict(theirs.state_dict())  # torch tensors, some requiring grad via keep_vars
    ours.load_state_dict(theirs.state_dict(keep_vars=True))
    np.testing.assert_array_equal(ours.fc.weight.detach().numpy(), theirs.fc.weight.detach().numpy())


def test_load_state_dict_casts_to_the_slot_dtype():
    layer = nn.BatchNorm2d(2)
    sd = {k: v.numpy().astype(np.float64) for k, v in layer.state_dict().items()}
    sd["num_batches_tracked"] = 5
    layer.load_state_dict(sd)
    assert layer.weight.dtype == np.float32 and layer.num_batches_tracked.item() == 5


def test_refusals_list_every_bad_entry_and_change_nothing():
    net = small_net(nn)
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd = {k: v.numpy() + 1 for k, v in net.state_dict().items()}
    del sd["fc.bias"], sd["stem.1.running_var"]
    sd["fc.extra"] = np.zeros(1)
    sd["block.0.conv1.weight"] = np.zeros((6, 4, 1, 1))
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "stem.1.running_var", "fc.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "fc.extra".' in msg
    assert ("size mismatch for block.0.conv1.weight: copying a param with shape (6, 4, 1, 1) from "
            "checkpoint, the shape in current model is (6, 4, 3, 3)") in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=f"{k} changed by a refused load")


def test_non_strict_returns_the_differences_but_shapes_stay_strict():
    layer = nn.Linear(2, 3)
    result = layer.load_state_dict({"weight": np.ones((3, 2)), "junk": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["junk"]
    assert layer.weight.detach().numpy().sum() == 6
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        layer.load_state_dict({"weight": np.ones((2, 3))}, strict=False)


def test_bad_values_are_refused():
    layer = nn.Linear(1, 1)
    with pytest.raises(RuntimeError, match="weight has non-numeric dtype"):
        layer.load_state_dict({"weight": np.array([["a"]]), "bias": np.zeros(1)})
    with pytest.raises(TypeError, match="mapping"):
        layer.load_state_dict([("weight", np.zeros((1, 1)))])


def test_old_checkpoints_without_num_batches_tracked_load():
    """PyTorch tolerates this key being absent (pre-0.4.1 checkpoints); so do we."""
    bn = nn.BatchNorm2d(2)
    bn.num_batches_tracked.data[...] = 3
    sd = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    assert bn.load_state_dict(sd).missing_keys == []
    assert bn.num_batches_tracked.item() == 3


# ---- Sequential -------------------------------------------------------------------------

def test_sequential_container():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and list(seq) == [a, b] and seq[0] is a and seq[-1] is b
    assert seq.append(c) is seq and seq[2] is c
    assert list(seq[1:]) == [b, c] and list(seq[1:]._modules) == ["1", "2"]
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"]
    x = tr.randn(4, 2)
    np.testing.assert_allclose(seq(x).detach().numpy(), c(b(a(x))).detach().numpy())
    empty = nn.Sequential()
    assert empty(x) is x and len(empty) == 0

"""tinyres.models: parameter counts, torchvision state-dict layout, PyTorch cross-checks,
gradient checks of whole blocks, zero-init of residual branches, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

import tinyres as tr
from tinyres import models, nn
from tinyres.models.blocks import PadShortcut, init_resnet_weights, projection_shortcut

IMAGENET_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- counts and layout ----------------------------------------------------------------


# Convolutions per net: the stem, one per layer of every block (2 basic, 3 bottleneck),
# and the first block's 1x1 projection in each stage whose shape changes.
IMAGENET_CONVS = {"resnet18": 1 + 8 * 2 + 3, "resnet34": 1 + 16 * 2 + 3, "resnet50": 1 + 16 * 3 + 4,
                  "resnet101": 1 + 33 * 3 + 4, "resnet152": 1 + 50 * 3 + 4}


@pytest.mark.parametrize("name", list(IMAGENET_COUNTS))
def test_imagenet_counts_and_state_dict_layout(name):
    state = models.MODELS[name]().state_dict()
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) \
        == IMAGENET_COUNTS[name]
    # Every conv has a BN (weight, bias, running_mean, running_var, num_batches_tracked): 6 keys
    # a conv, plus fc.weight and fc.bias.
    assert len(state) == 6 * IMAGENET_CONVS[name] + 2
    last = 2048 if name in ("resnet50", "resnet101", "resnet152") else 512
    shapes = {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "fc.weight": (1000, last),
              "fc.bias": (1000,), "layer4.0.downsample.0.weight": (last, last // 2, 1, 1)}
    if last == 512:
        shapes |= {"layer1.0.conv2.weight": (64, 64, 3, 3), "layer2.0.conv1.weight": (128, 64, 3, 3)}
    else:
        shapes |= {"layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
                   "layer2.0.conv2.weight": (128, 128, 3, 3)}
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


@pytest.mark.torch
@pytest.mark.parametrize("name", list(IMAGENET_COUNTS))
def test_imagenet_state_dict_matches_torchvision(name):
    pytest.importorskip("torch")
    from tests.torch_models import torch_imagenet

    model = models.MODELS[name]()

    reference = torch_imagenet(name)
    assert sum(p.numel() for p in reference.parameters()) == IMAGENET_COUNTS[name]
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)  # same keys in the same order
    assert ours == theirs


def test_imagenet_state_dict_names_without_torch():
    keys = list(models.resnet50().state_dict())
    for key in ["conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv3.weight",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var", "fc.bias"]:
        assert key in keys
    assert "layer1.1.downsample.0.weight" not in keys  # only the first block of a stage projects


@pytest.mark.parametrize(
    ("build", "count"),
    [
        (lambda: models.resnet20(), 269_722),  # the paper's 0.27M
        (lambda: models.resnet20(shortcut="B"), 272_474),  # + two 1x1 projections with BN
        (lambda: models.plain20(), 269_722),  # option A adds nothing, so the same
        (lambda: models.resnet110(), 1_727_962),
        # BN moves: +BN(64) at the end, -BN(16) at the stem, and the first blocks of stages
        # 2 and 3 normalise their 16- and 32-channel inputs: 128 - 32 - 32 - 64 = 0
        (lambda: models.preact_resnet20(), 269_722),
    ],
)
def test_cifar_counts(build, count):
    assert n_params(build()) == count


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
@pytest.mark.parametrize(("block", "shortcut"), [("basic", "A"), ("basic", "B"), ("plain", None),
                                                 ("preact", "A"), ("preact", "B")])
def test_cifar_state_dict_matches_reference(depth, block, shortcut):
    pytest.importorskip("torch")
    from tests.torch_models import TorchCifarResNet

    ours = models.CifarResNet(depth, block=block, shortcut=shortcut)
    reference = TorchCifarResNet(depth, block=block, shortcut=shortcut or "A")
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()
    }


def test_cifar_stage_shapes():
    s = tr.summary(models.resnet20(), (2, 3, 32, 32))
    assert [s.row(f"layer{i}").output_shape for i in (1, 2, 3)] == [
        (2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)
    ]
    assert len([m for m in models.resnet56().modules() if isinstance(m, nn.Conv2d)]) == 6 * 9 + 1


def test_initialisation_as_torchvision():
    tr.manual_seed(0)
    model = models.resnet18()
    w = model.layer3[0].conv1.weight.detach().numpy()
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    assert abs(w.std() / np.sqrt(2.0 / fan_out) - 1) < 0.05  # Kaiming normal, fan_out, ReLU
    assert abs(w.mean()) < 0.05 * w.std()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert np.all(m.weight.detach().numpy() == 1) and np.all(m.bias.detach().numpy() == 0)


# ---- zero_init_residual ---------------------------------------------------------------


def test_zero_init_residual_zeroes_last_bn():
    for model, last in [(models.resnet18(zero_init_residual=True), "bn2"),
                        (models.resnet50(zero_init_residual=True), "bn3"),
                        (models.resnet20(zero_init_residual=True), "bn2"),
                        (models.preact_resnet20(zero_init_residual=True), "bn2")]:
        blocks = [m for m in model.modules() if isinstance(m, (models.BasicBlock, models.Bottleneck,
                                                               models.PreActBlock))]
        assert blocks
        for block in blocks:
            assert np.all(getattr(block, last).weight.detach().numpy() == 0)
            assert np.all(block.bn1.weight.detach().numpy() == 1)
    assert np.all(models.resnet18().layer1[0].bn2.weight.detach().numpy() == 1)  # off by default


@pytest.mark.parametrize(
    "make",
    [
        lambda: models.BasicBlock(4, 4),
        lambda: models.BasicBlock(4, 8, 2, PadShortcut(4, 8, 2)),
        lambda: models.Bottleneck(4, 2, 2, projection_shortcut(4, 8, 2)),
        lambda: models.PreActBlock(4, 8, 2, projection_shortcut(4, 8, 2)),
    ],
)
def test_zero_init_block_is_its_shortcut(make):
    block = make()
    init_resnet_weights(block, zero_init_residual=True)
    x = tr.randn(2, 4, 6, 6)
    with tr.no_grad():
        shortcut = x if block.downsample is None else block.downsample(
            block.relu(block.bn1(x)) if isinstance(block, models.PreActBlock) else x
        )
        expected = shortcut if isinstance(block, models.PreActBlock) else shortcut.relu()
        np.testing.assert_allclose(block(x).numpy(), expected.numpy(), atol=1e-6)


def test_preact_block_is_its_input_plus_its_branch():
    """PreActBlock(x) = x + branch(x) (identity) or downsample(relu(bn1(x))) + branch(x)."""
    tr.manual_seed(0)
    x = tr.randn(2, 4, 6, 6)
    for block, shortcut in [
        (models.PreActBlock(4, 4), lambda b: x),
        (models.PreActBlock(4, 8, 2, projection_shortcut(4, 8, 2)), lambda b: b.downsample(b.relu(b.bn1(x)))),
    ]:
        block.eval()  # fixed BN statistics, so the calls below see the same F
        for bn in (block.bn1, block.bn2):
            bn.running_mean.numpy()[...] = np.linspace(-0.5, 0.5, bn.num_features)
        with tr.no_grad():
            expected = block.branch(x) + shortcut(block)
            assert np.abs(block.branch(x).numpy()).max() > 0.1  # the branch is not silent
            np.testing.assert_allclose(block(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


# ---- gradient checks of whole blocks (float64, train mode) ----------------------------


@pytest.mark.parametrize(
    ("make", "in_channels"),
    [
        (lambda: models.BasicBlock(3, 3), 3),
        (lambda: models.BasicBlock(2, 3, 2, projection_shortcut(2, 3, 2)), 2),
        (lambda: models.BasicBlock(2, 3, 2, PadShortcut(2, 3, 2)), 2),
        (lambda: models.Bottleneck(4, 1), 4),
        (lambda: models.Bottleneck(2, 1, 2, projection_shortcut(2, 4, 2)), 2),
        (lambda: models.PreActBlock(2, 3, 2, PadShortcut(2, 3, 2)), 2),
        (lambda: models.PlainBlock(2, 3, 2), 2),
    ],
    ids=["basic", "basic-B", "basic-A", "bottleneck", "bottleneck-down", "preact-A", "plain"],
)
def test_block_gradcheck_train_mode(make, in_channels):
    tr.manual_seed(1)
    block = make().double().train()
    rng = np.random.default_rng(2)
    for m in block.modules():  # non-trivial BN affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = rng.normal(0, 0.2, m.bias.shape)
    x = tr.tensor(rng.standard_normal((2, in_channels, 4, 4)), requires_grad=True)
    params = list(block.parameters())
    assert tr.gradcheck(lambda x, *ps: block(x), (x, *params), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("block", "options"),
    [("basic", {}), ("preact", {"shortcut": "B"}), ("plain", {"activation": "tanh", "norm": "none"})],
)
def test_whole_cifar_network_input_gradcheck(block, options):
    tr.manual_seed(3)
    model = models.CifarResNet(8, block=block, **options).double().train()
    x = tr.tensor(np.random.default_rng(4).standard_normal((2, 3, 4, 4)), requires_grad=True)
    assert tr.gradcheck(model, (x,))


# ---- options and refusals -------------------------------------------------------------


def test_activation_and_norm_options():
    model = models.resnet20(activation="sigmoid", norm="none")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "BatchNorm2d" not in kinds and "ReLU" not in kinds and "Sigmoid" in kinds
    bn_params = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)  # stem BN and two per block
    assert n_params(model) == 269_722 - bn_params
    assert model(tr.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: models.CifarResNet(21), "6n\\+2"),
        (lambda: models.CifarResNet(20, block="dense"), "block='dense'"),
        (lambda: models.CifarResNet(20, shortcut="C"), "shortcut='C'"),
        (lambda: models.CifarResNet(20, activation="gelu"), "activation='gelu'"),
        (lambda: models.CifarResNet(20, norm="layer"), "norm='layer'"),
        (lambda: models.plain20(shortcut="A"), "plain network has no shortcuts"),
        (lambda: models.plain20(zero_init_residual=True), "zero_init_residual"),
        (lambda: models.resnet20(norm="none", zero_init_residual=True), "zero_init_residual"),
        (lambda: models.BasicBlock(16, 32, stride=2), "16 -> 32 channels with stride 2"),
        (lambda: models.Bottleneck(64, 64), "64 -> 256 channels"),
        (lambda: PadShortcut(8, 4, 2), "outplanes >= inplanes"),
        (lambda: models.ResNet(models.BasicBlock, [2, 2, 2]), "four stages"),
    ],
)
def test_refusals(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pad_shortcut_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"expects \(N, 4, H, W\)"):
        PadShortcut(4, 8, 2)(tr.zeros(1, 3, 4, 4))


def test_pad_shortcut_matches_definition():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    out = PadShortcut(3, 5, 2)(tr.tensor(x)).numpy()
    assert out.shape == (2, 5, 3, 4)
    np.testing.assert_array_equal(out[:, :3], x[:, :, ::2, ::2])
    assert np.all(out[:, 3:] == 0)


def test_pad_shortcut_keeps_a_channels_last_layout_forward_and_backward():
    """An NCHW shortcut added to a channels-last branch made the stage NCHW: every later
    convolution copied its input back to channels-last (5 copies a ResNet-20 step)."""
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
    xt = tr.tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), requires_grad=True)
    out = PadShortcut(4, 8, 2)(xt)
    assert out.detach().numpy().transpose(0, 2, 3, 1).flags.c_contiguous
    np.testing.assert_array_equal(out.detach().numpy()[:, :4], x[:, :, ::2, ::2])
    g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    out.backward(tr.tensor(np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)))
    assert xt.grad.numpy().transpose(0, 2, 3, 1).flags.c_contiguous
    expected = np.zeros_like(x)
    expected[:, :, ::2, ::2] = g[:, :4]
    np.testing.assert_array_equal(xt.grad.numpy(), expected)


# ---- cross-checks against PyTorch (same weights, float32) -----------------------------


@pytest.mark.torch
def test_resnet18_matches_pytorch():
    torch = pytest.importorskip("torch")
    from tests.torch_models import cross_check, torch_imagenet

    torch.manual_seed(0)
    cross_check(models.resnet18(num_classes=10), torch_imagenet("resnet18", 10), (2, 3, 64, 64))


@pytest.mark.torch
def test_bottleneck_resnet_matches_pytorch():
    """ResNet-50's layers with one bottleneck per stage (its layout is checked above)."""
    torch = pytest.importorskip("torch")
    from tests.torch_models import TorchBottleneck, TorchResNet, cross_check

    torch.manual_seed(0)
    ours = models.ResNet(models.Bottleneck, [1, 1, 1, 1], num_classes=10)
    theirs = TorchResNet(TorchBottleneck, [1, 1, 1, 1], num_classes=10)
    cross_check(ours, theirs, (2, 3, 64, 64))


@pytest.mark.torch
@pytest.mark.parametrize(("block", "shortcut"), [("basic", "A"), ("basic", "B"), ("plain", None),
                                                 ("preact", "A"), ("preact", "B")])
def test_cifar_resnet20_matches_pytorch(block, shortcut):
    torch = pytest.importorskip("torch")
    from tests.torch_models import TorchCifarResNet, cross_check

    torch.manual_seed(0)
    ours = models.CifarResNet(20, block=block, shortcut=shortcut)
    theirs = TorchCifarResNet(20, block=block, shortcut=shortcut or "A")
    cross_check(ours, theirs, (4, 3, 32, 32), train_steps=2)


# ---- torchvision's ResNeXt and wide ResNet (groups, width_per_group) ---------------------

TORCHVISION_VARIANTS = {
    "resnext50_32x4d": (25_028_904, {"groups": 32, "width_per_group": 4}),
    "wide_resnet50_2": (68_883_240, {"width_per_group": 128}),
}


def torchvision_code():
    """torchvision's own ResNet code, kept in the program corpus (tests/programs)."""
    from tests.test_programs import load

    return load("torchvision_resnet", "torch")


@pytest.mark.parametrize("name", list(TORCHVISION_VARIANTS))
def test_resnext_and_wide_resnet_counts(name):
    count, options = TORCHVISION_VARIANTS[name]
    model = models.MODELS[name]()
    assert n_params(model) == count
    assert model.layer1[0].conv2.groups == options.get("groups", 1)


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCHVISION_VARIANTS))
def test_resnext_and_wide_resnet_state_dict_matches_torchvision(name):
    pytest.importorskip("torch")
    count, options = TORCHVISION_VARIANTS[name]
    model = models.MODELS[name]()
    tv = torchvision_code()
    reference = tv.ResNet(tv.Bottleneck, [3, 4, 6, 3], **options)
    assert sum(p.numel() for p in reference.parameters()) == count
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs


@pytest.mark.torch
def test_grouped_resnet_matches_torchvision_code():
    torch = pytest.importorskip("torch")
    from tests.torch_models import cross_check

    tv = torchvision_code()
    torch.manual_seed(0)
    ours = models.ResNet(models.Bottleneck, [1, 1, 1, 1], num_classes=10, groups=4, width_per_group=8)
    theirs = tv.ResNet(tv.Bottleneck, [1, 1, 1, 1], num_classes=10, groups=4, width_per_group=8)
    cross_check(ours, theirs, (2, 3, 64, 64))


def test_groups_need_bottleneck_blocks():
    with pytest.raises(ValueError, match="Bottleneck"):
        models.ResNet(models.BasicBlock, [1, 1, 1, 1], groups=2)

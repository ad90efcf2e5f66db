"""tinyres.summary and ``tinyres summary``: shapes, parameters, MACs, side effects, errors."""

from __future__ import annotations

import numpy as np
import pytest

import tinyres as tr
from tinyres import models, nn
from tinyres.cli import main


def test_resnet50_stages_and_macs():
    s = tr.summary(models.resnet50(), (1, 3, 224, 224))
    assert s.row("maxpool").output_shape == (1, 64, 56, 56)
    stages = [s.row(f"layer{i}").output_shape for i in (1, 2, 3, 4)]
    assert stages == [(1, 256, 56, 56), (1, 512, 28, 28), (1, 1024, 14, 14), (1, 2048, 7, 7)]
    assert s.total_params == 25_557_032
    assert 4.05e9 < s.total_macs < 4.15e9  # "about 4.1 G"
    convs_and_fc = sum(r.macs for r in s.rows if r.kind in ("Conv2d", "Linear"))
    assert convs_and_fc == 4_089_184_256  # the figure usually quoted as 4.09 GFLOPs
    assert s.row("layer1").params == sum(p.numel() for p in models.resnet50().layer1.parameters())
    assert "layer4.2.conv3 (Conv2d)" in str(s)


def test_macs_of_each_layer_kind():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),  # 2*8*4*4 outputs x 3*3*3
        nn.BatchNorm2d(8),  # one per output element
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 5),  # 2 rows x 32 x 5
    )
    s = tr.summary(model, (2, 3, 8, 8))
    assert [r.macs for r in s.rows] == [2 * 8 * 4 * 4 * 27, 2 * 8 * 4 * 4, 0, 0, 0, 2 * 32 * 5]
    assert [r.params for r in s.rows] == [216, 16, 0, 0, 0, 165]
    assert s.output_shape == (2, 5)
    assert s.total_macs == sum(r.macs for r in s.rows)


@pytest.mark.torch
def test_macs_agree_with_torch_hooks():
    """Count the reference PyTorch ResNet-18's conv and linear MACs with its own hooks."""
    torch = pytest.importorskip("torch")
    from tests.torch_models import torch_imagenet

    reference = torch_imagenet("resnet18").eval()
    total = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * int(np.prod(module.kernel_size))
            total.append(output.numel() * per_output)
        elif isinstance(module, torch.nn.Linear):
            total.append(output.numel() * module.in_features)

    for m in reference.modules():
        m.register_forward_hook(count)
    with torch.no_grad():
        reference(torch.zeros(2, 3, 64, 64))
    s = tr.summary(models.resnet18(), (2, 3, 64, 64))
    assert sum(r.macs for r in s.rows if r.kind in ("Conv2d", "Linear")) == sum(total)


def test_containers_roll_up_and_depth():
    model = models.resnet20()
    s = tr.summary(model, (1, 3, 32, 32))
    block = s.row("layer2.0")
    inside = [r for r in s.rows if r.name.startswith("layer2.0.")]
    assert block.macs == sum(r.macs for r in inside if r.kind != "PadShortcut")
    assert block.params == sum(r.params for r in inside)
    assert s.row("layer2.0.downsample").kind == "PadShortcut" and s.row("layer2.0.downsample").macs == 0
    shallow = tr.summary(model, (1, 3, 32, 32), depth=1)
    assert {r.depth for r in shallow.rows} == {1}
    assert shallow.total_macs == s.total_macs and shallow.total_params == s.total_params == 269_722


def test_summary_has_no_side_effects():
    model = models.resnet20()
    model.train()
    model.layer1.eval()  # a mixed state must come back as it was
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    tr.manual_seed(5)
    expected_draw = tr.randn(3).numpy()
    tr.manual_seed(5)
    tr.summary(model, (2, 3, 32, 32))
    np.testing.assert_array_equal(tr.randn(3).numpy(), expected_draw)  # generator untouched
    assert model.training and not model.layer1.training and not model.layer1[0].bn1.training
    assert model.layer2.training
    for k, v in model.state_dict().items():  # running statistics untouched
        np.testing.assert_array_equal(v.numpy(), before[k])
    assert all(not m._forward_hooks for m in model.modules())


def test_bare_layer():
    s = tr.summary(nn.Linear(4, 3), (2, 4))
    assert [(r.name, r.macs, r.params) for r in s.rows] == [("model", 24, 15)]


@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [((1, 3, 0, 4), ValueError, "positive sizes"), ("abc", TypeError, "sequence of ints"),
     ((), ValueError, "positive sizes")],
)
def test_bad_input_shape(shape, error, message):
    with pytest.raises(error, match=message):
        tr.summary(models.resnet20(), shape)


def test_not_a_module():
    with pytest.raises(TypeError, match=r"expected an nn\.Module"):
        tr.summary(lambda x: x, (1, 3, 8, 8))


def test_cli_summary(capsys):
    assert main(["summary", "resnet20", "--input", "1,3,32,32", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "layer3 (Sequential)" in out and "(1, 64, 8, 8)" in out
    assert "parameters: 269,722" in out
    assert main(["summary", "plain20", "--input", "2,3,16,16", "--num-classes", "4"]) == 0
    assert "-> output (2, 4)" in capsys.readouterr().out


def test_cli_summary_errors(capsys):
    with pytest.raises(SystemExit, match="unknown model 'resnet19'; known models: resnet18, resnet34"):
        main(["summary", "resnet19", "--input", "1,3,32,32"])
    with pytest.raises(SystemExit):
        main(["summary", "resnet20", "--input", "1,3,32"])
    assert "four positive sizes N,C,H,W" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["summary", "resnet20", "--input", "1,x,32,32"])
    assert "comma-separated sizes" in capsys.readouterr().err

"""Pictures: the autograd-graph drawing and the block diagrams, checked by content.

Each test reads the returned figure's artists: the boxes (``FancyBboxPatch``), the "+"
nodes (``Circle``), the arrows (``FancyArrowPatch``) and the texts.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

import tinyres as tr
from tinyres.cli import main
from tinyres.models import (
    BasicBlock,
    Bottleneck,
    PadShortcut,
    PlainBlock,
    PreActBlock,
    projection_shortcut,
    resnet18,
    resnet20,
)
from tinyres.nn.fusion import unfused
from tinyres.viz import analyse_block, draw_block, draw_graph, trace


def boxes(fig: Figure) -> list[FancyBboxPatch]:
    return [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]


def arrows(fig: Figure) -> list[FancyArrowPatch]:
    return [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]


def circles(fig: Figure) -> list[Circle]:
    return [p for p in fig.axes[0].patches if isinstance(p, Circle)]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def box_text(fig: Figure, box: FancyBboxPatch) -> str:
    """The text centred in ``box``."""
    cx, cy = box.get_x() + box.get_width() / 2, box.get_y() + box.get_height() / 2
    (found,) = [t.get_text() for t in fig.axes[0].texts if np.allclose(t.get_position(), (cx, cy))]
    return found


def assert_arrows_clear_of_boxes(fig: Figure) -> None:
    """No arrow runs through the inside of a box it does not start or end at."""
    for a in arrows(fig):
        path = a.get_path()
        # The path is the shaft (MOVETO, LINETO...) then the head (MOVETO, tip, ...).
        head = np.flatnonzero(path.codes == Path.MOVETO)[1]
        v = np.vstack([path.vertices[:head], path.vertices[head + 1]])
        points = np.concatenate([np.linspace(p, q, 50) for p, q in itertools.pairwise(v)])
        ends = [v[0], v[-1]]  # on the source's and the target's edges
        for b in boxes(fig):
            x0, y0, w, h = b.get_x(), b.get_y(), b.get_width(), b.get_height()
            lo, hi = np.array([x0, y0]) - 1e-6, np.array([x0 + w, y0 + h]) + 1e-6
            if any(np.all((e >= lo) & (e <= hi)) for e in ends):
                continue
            inside = np.all((points > lo + 0.02) & (points < hi - 0.02), axis=1)
            assert not inside.any(), f"an arrow crosses the box '{box_text(fig, b)}'"


# ---- draw_graph --------------------------------------------------------------------


def test_graph_of_a_plus_a_has_three_nodes_and_four_arrows():
    a = tr.tensor([1.0, 2.0], requires_grad=True)
    b = a + a
    c = b + b
    fig = draw_graph(c, params={"a": a})
    assert isinstance(fig, Figure)
    assert len(boxes(fig)) == 3
    assert len(arrows(fig)) == 4  # every use of a tensor is an arrow: a -> b twice, b -> c twice
    assert sorted(texts(fig)) == ["Add\n2", "Add\n2", "a\n2"]
    # Layered top to bottom: the leaf above b above c.
    ys = {box_text(fig, bx): bx.get_y() for bx in boxes(fig)}
    assert ys["a\n2"] > max(y for t, y in ys.items() if t.startswith("Add"))
    assert_arrows_clear_of_boxes(fig)


def test_grad_norms_after_trace_and_backward():
    a = tr.tensor([1.0, 2.0], requires_grad=True)
    c = ((a + a) + (a + a)).sum()
    graph = trace(c, params={"a": a})
    c.backward()
    fig = draw_graph(graph, show_grad_norms=True)
    # dc/dc = 1, dc/d(2a + 2a) = ones(2), dc/d(a + a) = ones(2) per use, dc/da = 4 * ones(2)
    found = texts(fig)
    assert "Sum\nscalar\n|grad| = 1" in found
    assert found.count(f"Add\n2\n|grad| = {np.sqrt(2):.3g}") == 3
    assert f"a\n2\n|grad| = {np.sqrt(32):.3g}" in found


def test_leaf_kinds_are_labelled_and_coloured():
    w = tr.ones(3, requires_grad=True)
    u = tr.ones(3, requires_grad=True)
    x = tr.ones(3)
    fig = draw_graph((w * x + u).sum(), params={"w": w})
    colours = {box_text(fig, b).split("\n")[0]: b.get_facecolor() for b in boxes(fig)}
    assert set(colours) == {"w", "leaf", "input", "Mul", "Add", "Sum"}
    assert len({colours["w"], colours["leaf"], colours["input"], colours["Mul"]}) == 4


def test_mlp_graph_names_parameters_and_shapes():
    tr.manual_seed(0)
    x = tr.randn(5, 3)
    W1, b1 = tr.randn(3, 4, requires_grad=True), tr.zeros(4, requires_grad=True)
    W2 = tr.randn(4, 2, requires_grad=True)
    loss = ((x @ W1 + b1).relu() @ W2).mean()
    fig = draw_graph(loss, params={"W1": W1, "b1": b1, "W2": W2, "x": x})
    found = texts(fig)
    for label in ["W1\n3×4", "b1\n4", "W2\n4×2", "x\n5×3", "MatMul\n5×4", "Add\n5×4",
                  "Relu\n5×4", "MatMul\n5×2", "Mean\nscalar"]:
        assert label in found
    assert len(boxes(fig)) == 9
    assert len(arrows(fig)) == 8
    assert_arrows_clear_of_boxes(fig)


def test_skip_connection_is_routed_around_the_boxes():
    x = tr.ones(2, requires_grad=True)
    y = x.tanh().tanh().tanh() + x
    fig = draw_graph(y)
    assert len(boxes(fig)) == 5 and len(arrows(fig)) == 5
    assert_arrows_clear_of_boxes(fig)


def test_large_graph_keeps_the_nodes_nearest_the_result():
    x = tr.ones(2, requires_grad=True)
    z = x
    for _ in range(30):
        z = z.tanh()
    fig = draw_graph(z, max_nodes=10)
    # 31 nodes (the leaf and 30 tanh): the 9 nearest the result stay, 22 fold into one box.
    assert len(boxes(fig)) == 10
    assert "… 22 more nodes" in texts(fig)
    assert len(arrows(fig)) == 9
    assert len(boxes(draw_graph(z, max_nodes=100))) == 31


def test_drawing_after_backward_explains_how_to_keep_the_graph():
    a = tr.ones(2, requires_grad=True)
    loss = (a * a).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"freed by backward\(\).*trace"):
        draw_graph(loss)


def test_grad_norms_without_backward_is_an_error():
    a = tr.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="show_grad_norms needs gradients"):
        draw_graph((a * a).sum(), show_grad_norms=True)


def test_bad_arguments():
    with pytest.raises(TypeError, match="expected a tinyres Tensor, got ndarray"):
        draw_graph(np.ones(2))
    a = tr.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="max_nodes must be at least 2, got 1"):
        draw_graph(a * 2, max_nodes=1)
    with pytest.raises(ValueError, match="pass params to trace"):
        draw_graph(trace(a * 2), params={"a": a})


def test_graph_files_are_written(tmp_path):
    a = tr.ones(2, requires_grad=True)
    fig = draw_graph((a + a) * a)
    fig.savefig(tmp_path / "g.png")
    fig.savefig(tmp_path / "g.svg")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "Mul" in svg


def test_graph_of_a_basic_block_names_parameters_and_keeps_arrows_clear():
    tr.manual_seed(0)
    block = BasicBlock(4, 8, 2, projection_shortcut(4, 8, 2))
    x = tr.randn(2, 4, 6, 6)
    with unfused():  # the pieces' ops, not the fused batch norm + ReLU (tinyres.nn.fusion)
        out = block(x).mean()
    graph = trace(out, params={**dict(block.named_parameters()), "x": x})
    out.backward()
    fig = draw_graph(graph, show_grad_norms=True)
    titles = [t.split("\n")[0] for t in texts(fig)]
    assert titles.count("Convolution") == 3 and titles.count("BatchNorm") == 3 and titles.count("Add") == 1
    assert {n for n, _ in block.named_parameters()} <= set(titles)
    assert len(arrows(fig)) == len(graph.edges) == 3 * 2 + 3 * 3 + 2 + 2 + 1
    assert_arrows_clear_of_boxes(fig)


# ---- draw_block --------------------------------------------------------------------



def column(fig: Figure) -> list[str]:
    """The texts of the boxes in the branch column, top to bottom."""
    xs = [b.get_x() for b in boxes(fig)]
    left = min(xs)
    branch = sorted((b for b in boxes(fig) if b.get_x() == left), key=lambda b: -b.get_y())
    return [box_text(fig, b) for b in branch]


def side(fig: Figure) -> list[str]:
    """The texts of the shortcut column's boxes, top to bottom."""
    left = min(b.get_x() for b in boxes(fig))
    right = sorted((b for b in boxes(fig) if b.get_x() > left), key=lambda b: -b.get_y())
    return [box_text(fig, b) for b in right]


def test_bottleneck_with_projection():
    fig = draw_block(Bottleneck(64, 64, downsample=projection_shortcut(64, 256, 1)))
    assert isinstance(fig, Figure)
    assert column(fig) == ["x  (64 channels)", "1x1 conv, 64", "BN", "ReLU", "3x3 conv, 64", "BN",
                           "ReLU", "1x1 conv, 256", "BN", "ReLU", "output  (256 channels)"]
    assert side(fig) == ["1x1 conv, 256", "BN"]
    assert [c.get_center() for c in circles(fig)] and "+" in texts(fig)
    assert "projection" in texts(fig) and "F(x)" in texts(fig)
    # x->conv, 8 between branch layers, bn3->+, +->relu, relu->out; fork->proj conv, conv->bn, bn->+
    assert len(arrows(fig)) == 1 + 8 + 1 + 1 + 1 + 3


def test_basic_block_identity_shortcut():
    fig = draw_block(BasicBlock(16, 16))
    assert column(fig)[1:-1] == ["3x3 conv, 16", "BN", "ReLU", "3x3 conv, 16", "BN", "ReLU"]
    assert side(fig) == []
    assert "identity" in texts(fig) and len(circles(fig)) == 1
    assert len(arrows(fig)) == 1 + 4 + 1 + 1 + 1 + 1


def test_basic_block_option_a_and_stride():
    fig = draw_block(BasicBlock(16, 32, 2, downsample=PadShortcut(16, 32, 2)))
    assert column(fig)[1] == "3x3 conv, 32, /2"
    assert side(fig) == ["subsample /2, pad 16 zero ch."]
    assert "option A" in texts(fig)


def test_preact_block_shares_bn_relu_before_the_projection():
    parts = analyse_block(PreActBlock(16, 32, 2, downsample=projection_shortcut(16, 32, 2)))
    assert [c.name for c in parts.before] == ["bn1", "relu"]
    assert [c.name for c in parts.branch] == ["conv1", "bn2", "relu", "conv2"]
    assert [c.name for c in parts.shortcut] == ["downsample.0", "downsample.1"]
    assert parts.after == []  # nothing after the sum
    fig = draw_block(PreActBlock(8, 8))
    assert column(fig)[1:-1] == ["BN", "ReLU", "3x3 conv, 8", "BN", "ReLU", "3x3 conv, 8"]
    assert "identity" in texts(fig)


def test_plain_block_has_no_sum_and_no_shortcut():
    fig = draw_block(PlainBlock(8, 8))
    assert circles(fig) == [] and side(fig) == []
    assert "+" not in texts(fig) and "H(x)" in texts(fig)
    assert len(arrows(fig)) == len(column(fig)) - 1


def test_drawing_leaves_the_module_as_it_was():
    block = BasicBlock(4, 4)
    before = {k: v.detach().numpy().copy() for k, v in block.state_dict().items()}
    draw_block(block)
    assert block.training
    for k, v in block.state_dict().items():
        np.testing.assert_array_equal(v.detach().numpy(), before[k])
    assert all(not m._forward_hooks for m in block.modules())


def test_network_is_a_column_of_stages():
    fig = draw_block(resnet20())
    found = texts(fig)
    assert found[0] == "CifarResNet: 0.27 M parameters"
    stages = [t for t in found if t.startswith("layer")]
    assert [s.split("\n")[:2] for s in stages] == [
        ["layer1: 3 × BasicBlock", "[3x3, 16 | 3x3, 16] × 3"],
        ["layer2: 3 × BasicBlock", "[3x3, 32 | 3x3, 32] × 3"],
        ["layer3: 3 × BasicBlock", "[3x3, 64 | 3x3, 64] × 3"],
    ]
    assert "option A" in stages[1] and stages[2].endswith("→ 64×8×8")
    assert "input  1×3×32×32" in found and "output  10" in found
    assert len(arrows(fig)) == len(boxes(fig)) - 1


def test_imagenet_network_stem_and_shapes():
    fig = draw_block(resnet18(), input_size=64)
    found = texts(fig)
    assert "7x7 conv, 64, /2  → 64×32×32" in found and "3x3 max pool, /2  → 64×16×16" in found
    assert any(t.startswith("layer4: 2 × BasicBlock") and t.endswith("→ 512×2×2") for t in found)


def test_draw_block_bad_input():
    with pytest.raises(TypeError, match=r"expected a tinyres\.nn\.Module, got int"):
        draw_block(3)
    with pytest.raises(ValueError, match="no Conv2d or BatchNorm2d"):
        draw_block(tr.nn.ReLU())


# ---- files and the command line ----------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_cli_writes_the_file(tmp_path, suffix, capsys):
    out = tmp_path / f"bottleneck{suffix}"
    assert main(["draw", "bottleneck", "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" if suffix == ".png" else b"1x1 conv, 256" in data
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_errors_list_the_known_names(tmp_path):
    with pytest.raises(SystemExit, match=r"unknown model or block 'resnet9'; known: basic,.*resnet50"):
        main(["draw", "resnet9", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match=r"--out must end in .png or .svg, got '.*x.jpg'"):
        main(["draw", "basic", "--out", str(tmp_path / "x.jpg")])


def test_trace_puts_every_input_before_all_its_consumers():
    """A tensor that needs no gradient (data), read by ops at two depths, is drawn once and
    above both: the engine's walk skips it, so trace places it itself."""
    a = tr.ones(3, requires_grad=True)
    data = tr.full((3,), 2.0)
    out = ((a * data).exp() + data).sum()
    graph = trace(out, params={"a": a, "data": data})
    order = list(graph.nodes)
    assert [graph.nodes[k].title for k in order].count("data") == 1
    assert all(order.index(parent) < order.index(child) for parent, child in graph.edges)
    assert len(graph.edges) == 6  # a, data -> Mul; Mul -> Exp; Exp, data -> Add; Add -> Sum

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
from tinyres.viz import draw_graph, trace


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
                  "ReLU\n5×4", "MatMul\n5×2", "Mean\nscalar"]:
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

"""Lesson 10's gradient-flow playground: moving a widget reruns the measurement and redraws.

The widgets need a kernel to be seen, but their callback is plain Python: these tests set
a widget's value, as a slider move does, and read what the outputs then hold.
"""

from __future__ import annotations

import pytest

from tinyres.demos.playground import Choice, grid, picture
from tinyres.demos.vanishing import Setting, measure

widgets = pytest.importorskip("ipywidgets")


def _numbers(box) -> str:
    return "".join(o.get("text", "") for o in box.numbers.outputs)


def test_moving_a_widget_reruns_the_measurement_and_redraws():
    from tinyres.demos.playground import playground

    box = playground()
    assert "depth 20, residual" in _numbers(box)
    assert any("image/png" in o.get("data", {}) for o in box.plot.outputs)  # the plot, as a picture
    box.controls["depth"].value = 8
    box.controls["residual"].value = False
    text = _numbers(box)
    assert text.startswith("depth 8, plain, relu"), text
    # the numbers shown are the measurement's own, for the widgets' settings
    m = measure(8, False, Setting(), batch=8, seed=0)
    assert f"first block {m.block_norms[0]:.3g}" in text and f"loss {m.loss:.3f}" in text
    assert len(box.plot.outputs) == 1  # redrawn, not appended


def test_the_picture_follows_the_choice():
    _, plain = picture(Choice(depth=8, residual=False, batch=4))
    _, residual = picture(Choice(depth=8, residual=True, batch=4))
    assert plain != residual and "plain" in plain and "residual" in residual


def test_the_site_grid_has_one_picture_per_choice(tmp_path, monkeypatch):
    import tinyres.demos.playground as playground

    monkeypatch.setattr(playground, "GRID", {"depth": (8,), "activation": ("relu",), "init": ("default",),
                                            "norm": ("none", "batch"), "residual": (True,)})
    choices = grid(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{c.stem()}.png" for c in choices)
    assert len(choices) == 2

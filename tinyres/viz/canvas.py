"""Drawing primitives shared by the graph and block pictures: boxes, circles, arrows.

Both pictures are laid out in inches: the axes fill the figure and one data unit is
one inch, so a box of width 1.8 holds the same amount of 8-point text in every figure,
however many nodes it has. The figures are plain ``matplotlib.figure.Figure`` objects
(no pyplot), so drawing works headless and leaves no global state behind.
"""

from __future__ import annotations

import itertools

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

# A character of 8-point DejaVu Sans is about 0.6 em wide on average: 8 * 0.6 / 72 inch.
_CHAR_WIDTH_PER_POINT = 0.6 / 72


def new_canvas(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure of ``width`` x ``height`` inches whose data coordinates are inches."""
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def fitting_fontsize(text: str, width: float, largest: float = 8.0) -> float:
    """The font size (points, at most ``largest``) at which every line of ``text``
    fits in ``width`` inches, leaving a small margin.

    >>> fitting_fontsize("Add", 1.8)
    8.0
    >>> fitting_fontsize("layer4.2.downsample.0.weight" * 2, 1.8) < 8
    True
    """
    longest = max(len(line) for line in text.split("\n")) or 1
    return min(largest, 0.9 * width / (longest * _CHAR_WIDTH_PER_POINT))


def box(
    ax: Axes,
    x: float,
    y: float,
    width: float,
    height: float,
    text: str,
    color: str,
    *,
    dashed: bool = False,
    fontsize: float = 8.0,
) -> FancyBboxPatch:
    """A rounded box centred at (x, y) with ``text`` in it; returns the box."""
    patch = FancyBboxPatch(
        (x - width / 2, y - height / 2),
        width,
        height,
        boxstyle="round,pad=0,rounding_size=0.08",
        facecolor=color,
        edgecolor="#333333",
        linewidth=1.0,
        linestyle="--" if dashed else "-",
        zorder=2,
    )
    ax.add_patch(patch)
    ax.text(
        x, y, text, ha="center", va="center", zorder=3,
        fontsize=fitting_fontsize(text, width, fontsize), family="DejaVu Sans",
    )
    return patch


def circle(ax: Axes, x: float, y: float, radius: float, text: str, color: str) -> Circle:
    """A circle centred at (x, y) with ``text`` (such as "+") in it."""
    patch = Circle((x, y), radius, facecolor=color, edgecolor="#333333", linewidth=1.0, zorder=2)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", zorder=3, fontsize=12, fontweight="bold")
    return patch


def arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    via: tuple[tuple[float, float], ...] = (),
    color: str = "#333333",
    label: str = "",
) -> FancyArrowPatch:
    """An arrow from ``start`` to ``end``, straight or along the corner points ``via``
    (how a skip connection is routed around the boxes it passes). ``label`` is written
    beside the middle segment."""
    points = [start, *via, end]
    patch = FancyArrowPatch(
        path=Path(points, [Path.MOVETO] + [Path.LINETO] * (len(points) - 1)),
        arrowstyle="-|>", mutation_scale=10, color=color, linewidth=1.0, zorder=1,
    )
    ax.add_patch(patch)
    if label:  # beside the middle of the longest segment
        (ax0, ay0), (ax1, ay1) = max(
            itertools.pairwise(points), key=lambda s: abs(s[1][0] - s[0][0]) + abs(s[1][1] - s[0][1])
        )
        ax.text((ax0 + ax1) / 2 + 0.08, (ay0 + ay1) / 2, label, ha="left", va="center",
                fontsize=8, style="italic", color=color, zorder=3)
    return patch


def crop_bottom(fig: Figure, ax: Axes, lowest: float, margin: float = 0.25) -> None:
    """Cut the figure off ``margin`` inches below ``lowest`` (a y in inches), keeping
    one data unit per inch, so a layout need not know its height in advance."""
    top = ax.get_ylim()[1]
    bottom = lowest - margin
    fig.set_size_inches(fig.get_size_inches()[0], top - bottom)
    ax.set_ylim(bottom, top)

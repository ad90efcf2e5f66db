"""Text that overlaps other text in a figure: the labels a reader cannot read.

Every text the renderer draws (titles, axis labels, tick labels, legend entries, captions:
only those drawn, so not the tick labels matplotlib keeps outside the view) is measured
in display pixels; two whose boxes intersect by more than ``tolerance`` pixels in both
directions are reported.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text


def overlapping_texts(fig: Figure, tolerance: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of texts (their strings) whose bounding boxes overlap."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    drawn: list[Text] = []
    draw = Text.draw  # recorded at the Text, not the renderer: a multi-line text reaches the
    # renderer line by line without naming its Text

    def record(text: Text, *args, **kwargs):
        if text.get_visible() and text.get_text().strip() and text not in drawn:
            drawn.append(text)
        return draw(text, *args, **kwargs)

    Text.draw = record
    try:
        fig.canvas.draw()  # the layout (tight_layout, constrained) as the PNG gets it
    finally:
        Text.draw = draw
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn]
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > tolerance and height > tolerance:
                pairs.append((a, b))
    return pairs

"""What every demo writes: a table (printed and saved as text), a JSON file and a PNG.

>>> fmt(1.8e-7), fmt(0.0034), fmt(0.75), fmt(113.0), fmt(4.2e6), fmt(0.0), fmt(float("nan"))
('1.8e-7', '0.0034', '0.75', '110', '4.2e6', '0', 'nan')
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def fmt(x: float) -> str:
    """Two significant digits, exponents written short (1.8e-7), as the text quotes them."""
    if x == 0 or math.isnan(x) or math.isinf(x):
        return "0" if x == 0 else str(x)
    if 1e-3 <= abs(x) < 1e4:
        return f"{float(f'{x:.2g}'):g}"
    mantissa, _, exponent = f"{x:.2g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def caption(
    fig: Figure, words: str, title: str | None = None, width: int = 150, room: float | None = None
) -> None:
    """Write ``words`` (the demo's sentence) under the plots and ``title`` over them, then lay
    the plots out in the space the words leave.

    The words' height is measured once drawn, not guessed: a fixed fraction of the figure
    (``room``, kept for callers, is now the least that is kept) let a long sentence's third
    line run over the x-axis labels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if title is not None:
        fig.suptitle(title, fontsize=11)
    text = fig.text(0.5, 0.01, "\n".join(textwrap.wrap(words, width)), ha="center", va="bottom", fontsize=8.5)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a renderer to measure the text with
    top_of_words = text.get_window_extent(fig.canvas.get_renderer()).y1 / fig.bbox.height
    bottom = max(top_of_words + 0.01, room or 0.0)
    fig.tight_layout(rect=(0, bottom, 1, 0.97 if title is not None else 1))


def out_dir(path: str | Path) -> Path:
    """Create the output folder (and its parents) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_outputs(folder: Path, stem: str, text: str, data: dict[str, Any], fig: Figure | None) -> None:
    """Print ``text`` and write ``stem``.txt, ``stem``.json and ``stem``.png into ``folder``."""
    print(text)
    (folder / f"{stem}.txt").write_text(text + "\n")
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
    written = [f"{stem}.txt", f"{stem}.json"]
    if fig is not None:
        fig.savefig(folder / f"{stem}.png", dpi=100)
        written.append(f"{stem}.png")
    print(f"wrote {', '.join(written)} to {folder}/")

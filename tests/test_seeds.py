"""The seeds' PyTorch code runs unchanged on tinyres and gives PyTorch's numbers.

The ```python blocks of ``../shared/seeds/000_*``, ``002_*`` and ``003_*`` are read at
test time. Each file's blocks run twice: as written (with PyTorch), and with only the
two imports swapped for ``import tinyres as torch`` and ``import tinyres.nn as nn``.
The classes they define are built on both sides with the same weights and compared
in train and eval mode, forward and backward (``cross_check``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
IMPORTS = {"import torch": "import tinyres as torch", "import torch.nn as nn": "import tinyres.nn as nn"}

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed documents not found at {SEEDS}"),
]


def seed_code(prefix: str) -> str:
    """All ```python blocks of the seed file whose name starts with ``prefix``."""
    (path,) = sorted(SEEDS.glob(f"{prefix}_*"))
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, f"no python code block in {path.name}"
    return "\n".join(blocks)


def as_tinyres(code: str) -> str:
    """The same code with only the import lines changed."""
    lines = code.split("\n")
    swapped = [IMPORTS.get(line.strip(), line) for line in lines]
    assert sum(a != b for a, b in zip(lines, swapped)) == 2, "expected exactly the two torch imports"
    return "\n".join(swapped)


def run(code: str) -> dict:
    namespace: dict = {"__name__": "seed"}
    exec(compile(code, "<seed>", "exec"), namespace)
    return namespace


CASES = [
    # (seed, class, constructor arguments, input shape)
    ("000", "ResidualBlock", (4, 8, 2), (4, 4, 8, 8)),
    ("000", "ResidualBlock", (8, 8), (4, 8, 6, 6)),
    ("002", "BasicBlock", (4, 8, 2), (4, 4, 8, 8)),
    ("002", "BasicBlock", (8, 8), (4, 8, 6, 6)),
    ("002", "ResNet", ("BasicBlock", [2, 2, 2, 2]), (4, 3, 16, 16)),
    ("003", "ResidualBlock", (4, 8, 2), (4, 4, 8, 8)),
    ("003", "ResidualBlock", (8, 8), (4, 8, 6, 6)),
]


@pytest.mark.parametrize(("seed", "name", "args", "shape"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'-'.join(map(str, c[2][:1] + c[2][2:]))}" for c in CASES])
def test_seed_code_matches_pytorch(seed, name, args, shape):
    torch = pytest.importorskip("torch")
    from tests.torch_models import cross_check

    code = seed_code(seed)
    with_torch, with_tinyres = run(code), run(as_tinyres(code))

    def build(namespace):
        # A class named among the arguments (ResNet's block) comes from the same run.
        return namespace[name](*(namespace.get(a, a) if isinstance(a, str) else a for a in args))

    torch.manual_seed(0)
    theirs = build(with_torch)
    ours = build(with_tinyres)
    assert type(ours).__module__ == "seed" and "tinyres" in type(ours).__mro__[1].__module__
    cross_check(ours, theirs, shape)

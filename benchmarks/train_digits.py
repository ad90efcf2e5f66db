"""Time ``tinyres train`` on the digits, Numba compilation included, and compare models.

Each model is trained by the real command line in a fresh process whose Numba cache
directory is empty, so the wall time includes compiling every kernel, as on a
fresh clone. Then the curves of all runs go into one figure (training dashed, test
solid, as in the ResNet paper).

    python benchmarks/train_digits.py                       # resnet20 and plain20, 30 epochs
    python benchmarks/train_digits.py --models resnet20 --epochs 15 -- --lr 0.05

Arguments after ``--`` are passed to ``tinyres train`` unchanged. Prints one line
per model (wall seconds, final and best test accuracy) and writes the figure to
``--figure`` (default ``docs/figures/digits-plain20-vs-resnet20.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout without installing: the repository root holds the package.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyres.history import plot_history  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,plain20")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/bench-digits", help="where the runs go")
    parser.add_argument("--figure", default="docs/figures/digits-plain20-vs-resnet20.png")
    parser.add_argument("extra", nargs="*", help="options for tinyres train (after --)")
    args = parser.parse_args()
    runs = {}
    for model in args.models.split(","):
        out = Path(args.out) / model
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache,
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            command = [sys.executable, "-m", "tinyres", "train", "--model", model, "--data", "digits",
                       "--epochs", str(args.epochs), "--out", str(out), "--no-progress", *args.extra]
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            seconds = time.perf_counter() - start
        history = json.loads((out / "metrics.json").read_text())
        runs[model] = history
        final, best = history[-1]["test_acc"], max(h["test_acc"] for h in history)
        print(f"{model}: {seconds:.1f} s wall (compile included), final test accuracy {final:.4f}, "
              f"best {best:.4f}, final training accuracy {history[-1]['train_acc']:.4f}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    plot_history(runs, args.figure, title=f"digits, same recipe ({args.epochs} epochs)")
    print(f"wrote {args.figure}; 1-minute load average at the end: {load:.1f}")


if __name__ == "__main__":
    main()

"""How much slower a ResNet-20 training step is on the learner's pieces, and which piece costs what.

One step = forward, loss, backward and an SGD update of ResNet-20 (shortcut B, the one
the learner's ``make_layer`` builds) on a batch of 8x8 grey images, float32, as
``tinyres train --data digits`` runs it. Configurations: the library alone, each of the
learner's pieces swapped in alone (the reference solutions, ``lessons/solutions``), and
all of them together. Each round is a fresh process that times every configuration
(``--repeats`` steps after ``--warmup``, median), in an order rotated per round; the
figure is the median over ``--rounds``. The load average is printed with each round.

    python benchmarks/bench_course.py                  # 3 rounds, batch 32
    python benchmarks/bench_course.py --json out.json  # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LIBRARY, ALL = "library", "all yours"


def child(batch: int, repeats: int, warmup: int, rotate: int) -> dict[str, float]:
    """Median ms per step for every configuration, in this process."""
    import numpy as np
    from timing import median_seconds

    import tinyres as tr
    from tinyres import course

    folder = Path(tempfile.mkdtemp())
    for f in (ROOT / "lessons" / "solutions").glob("ex*.py"):
        shutil.copy(f, folder / f.name)
    mine = course.mine(folder)
    rng = np.random.default_rng(0)
    x = tr.tensor(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32))
    y = tr.tensor(rng.integers(0, 10, batch))

    def step_time(names: list[str]) -> float:
        with mine.using(names):
            tr.manual_seed(0)
            model = tr.models.resnet20(in_channels=1, shortcut="B")
            opt = tr.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

            def step() -> None:
                opt.zero_grad()
                tr.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

            return median_seconds(step, repeats, warmup) * 1e3

    mine.self_check(course.Case(lambda: tr.models.resnet20(in_channels=1, shortcut="B"),
                                x.numpy().astype(np.float64), y.numpy()))
    used = [name for name in mine.swapped if mine.used[name]]
    configs = [[], *([name] for name in used), used]
    configs = configs[rotate % len(configs):] + configs[: rotate % len(configs)]
    times = {}
    for names in configs:
        label = LIBRARY if not names else ALL if len(names) > 1 else names[0]
        times[label] = step_time(names)
    shutil.rmtree(folder)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.batch, args.repeats, args.warmup, args.child)))
        return
    rounds, loads = [], []
    for r in range(args.rounds):
        before = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", str(r), "--batch", str(args.batch),
                              "--repeats", str(args.repeats), "--warmup", str(args.warmup)],
                             check=True, capture_output=True, text=True).stdout
        rounds.append(json.loads(out.strip().splitlines()[-1]))
        loads.append((before, os.getloadavg()[0]))
        print(f"round {r + 1}: load average {before:.2f} before, {loads[-1][1]:.2f} after", file=sys.stderr)
    labels = list(rounds[0])
    median = {k: statistics.median(r[k] for r in rounds) for k in labels}
    base = median[LIBRARY]
    print(f"ResNet-20 (shortcut B) step, batch {args.batch}, 8x8 grey images, float32; median of "
          f"{args.rounds} rounds of {args.repeats} steps; load {loads[0][0]:.2f} .. {loads[-1][1]:.2f} "
          f"on {os.cpu_count()} cores\n")
    print("| configuration | median ms | rounds ms | / library |")
    print("|---|---|---|---|")
    for k in [LIBRARY, *[k for k in labels if k not in (LIBRARY, ALL)], ALL]:
        cells = " / ".join(f"{r[k]:.0f}" for r in rounds)
        print(f"| {k} | {median[k]:.0f} | {cells} | {median[k] / base:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"batch": args.batch, "rounds": rounds, "median_ms": median,
                                         "load": loads}, indent=1) + "\n")


if __name__ == "__main__":
    main()

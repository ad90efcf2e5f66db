"""Repository-wide pytest option: ``--record-skips FILE`` writes what a run skipped, one test a line.

CI runs the README's test command on a learner's machine (no torch, no scikit-learn),
then, in the environment that has them, only what that run skipped (``pytest @FILE``),
so no test runs twice and every test runs somewhere. A lesson is recorded whole: its
blocks share one namespace and cannot run one by one. Tests skipped as slow experiments
are left out (CI runs those with ``--run-slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_skipped: set[str] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-skips", metavar="FILE", help="write the skipped tests' ids to FILE")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or "slow experiment" in str(report.longrepr):
        return
    path = report.nodeid.split("::", 1)[0]
    _skipped.add(path if path.endswith(".md") else report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = session.config.getoption("--record-skips")
    if target:
        Path(target).write_text("".join(f"{nodeid}\n" for nodeid in sorted(_skipped)))

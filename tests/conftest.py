"""Shared test settings: hypothesis profiles, the ``slow`` marker, torch-free collection.

Profiles: ``dev`` (default, quick), ``ci`` (more examples; .ci/run selects it with
HYPOTHESIS_PROFILE=ci). No per-example deadline: a first call may compile Numba kernels.
"""

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

# --doctest-modules imports every module under tests/, and torch_models.py imports torch;
# without torch (an optional dependency) its tests skip, so the module must not be collected.
collect_ignore = [] if importlib.util.find_spec("torch") else ["torch_models.py"]
# The program corpus is PyTorch code that tests/test_programs.py runs under each library;
# importing it as a module would run it with torch only (or fail without torch).
collect_ignore.append("programs")

settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    print_blob=True,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("TINYRES_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow experiment: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

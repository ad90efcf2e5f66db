"""tinyres.memory: the glibc malloc settings are applied at import, unless the environment sets them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyres import memory

ROOT = Path(__file__).resolve().parent.parent
glibc = pytest.mark.skipif(
    memory._libc() is None or not hasattr(memory._libc(), "mallopt"), reason="needs glibc's mallopt"
)


def applied_in_fresh_process(**environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(environment, PYTHONPATH=str(ROOT))
    code = "import tinyres, tinyres.memory as m; print(m.APPLIED)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@glibc
def test_import_applies_the_settings():
    assert applied_in_fresh_process() == "True"


@glibc
def test_values_set_in_the_environment_win():
    both = {variable: "131072" for variable, _ in memory.SETTINGS.values()}
    assert applied_in_fresh_process(**both) == "False"

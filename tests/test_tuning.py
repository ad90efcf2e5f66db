"""``import tinyres`` changes nothing outside tinyres; ``tinyres.tune()`` applies the speed
settings (tinyres/tuning.py), and values set in the environment win."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyres import tuning

ROOT = Path(__file__).resolve().parent.parent
glibc = pytest.mark.skipif(
    tuning._libc() is None or not hasattr(tuning._libc(), "mallopt"), reason="needs glibc's mallopt"
)
OURS = ("MALLOC_", "OMP_", "OPENBLAS_")


def fresh_process(code: str, **environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    env.update(environment, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_import_changes_no_environment_variable():
    code = ("import os, json; before = dict(os.environ); import tinyres, tinyres.nn, tinyres.models; "
            "print(json.dumps(dict(os.environ) == before))")
    assert fresh_process(code) == "true"


@glibc
def test_tune_applies_the_settings_and_reports_openblas():
    code = "import json, tinyres; print(json.dumps(tinyres.tune()))"
    result = json.loads(fresh_process(code))
    assert result == {"malloc": True, "openblas_thread_timeout": False}
    assert json.loads(fresh_process(code, OPENBLAS_THREAD_TIMEOUT="4"))["openblas_thread_timeout"] is True


@glibc
def test_values_set_in_the_environment_win():
    both = {variable: "131072" for variable, _ in tuning.MALLOC_SETTINGS.values()}
    code = "import json, tinyres; print(json.dumps(tinyres.tune()))"
    result = json.loads(fresh_process(code, **both))
    assert result["malloc"] is False

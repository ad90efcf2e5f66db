"""``import tinyres`` changes nothing outside tinyres, and ``tinyres.tune()`` (kept for old scripts)
does nothing: neither the environment nor the allocator's settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("MALLOC_", "OMP_", "OPENBLAS_", "KMP_")


def fresh_process(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_import_and_a_kernel_change_no_environment_variable():
    code = ("import os, json; before = dict(os.environ); import tinyres, tinyres.nn, tinyres.models; "
            "same_after_import = dict(os.environ) == before; "
            "x = tinyres.randn(2, 3, 8, 8); tinyres.nn.functional.conv2d(x, tinyres.randn(4, 3, 3, 3)); "
            "print(json.dumps([same_after_import, dict(os.environ) == before]))")
    assert json.loads(fresh_process(code)) == [True, True]


def test_tune_is_a_no_op_for_old_scripts():
    code = ("import os, json; before = dict(os.environ); import tinyres; "
            "print(json.dumps([tinyres.tune(), dict(os.environ) == before]))")
    assert json.loads(fresh_process(code)) == [{}, True]

"""The command line: help, and the gradient-check report."""

import subprocess
import sys
from pathlib import Path

import pytest

from tinyres.cli import main
from tinyres.cli.bench import script_path
from tinyres.testing.op_table import CASES


def test_help_lists_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "gradcheck" in out


def test_gradcheck_report_has_one_passing_row_per_op(capsys):
    assert main(["gradcheck"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == set(CASES)
    assert all(line.endswith("pass") for line in rows.values())
    assert lines[-1].startswith(f"{len(CASES)}/{len(CASES)} ops pass")


def test_gradcheck_report_rejects_unknown_ops():
    result = subprocess.run(
        [sys.executable, "-m", "tinyres", "gradcheck", "no_such_op"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "unknown op" in result.stderr and "relu" in result.stderr


def test_python_dash_m_matches_the_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "tinyres", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: tinyres" in result.stdout


def test_bench_runs_a_benchmark_script_with_its_arguments():
    result = subprocess.run(
        [sys.executable, "-m", "tinyres", "bench", "conv", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "Benchmark conv2d" in result.stdout and "--repeats" in result.stdout


def test_bench_explains_a_missing_checkout(tmp_path):
    with pytest.raises(SystemExit, match="pip install -e"):
        script_path("conv", tmp_path)


def test_a_reader_that_stops_early_gets_no_error_message():
    # `tinyres check | head -1`: the pipe closes while tinyres still writes.
    process = subprocess.Popen([sys.executable, "-m", "tinyres", "check"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    process.stdout.readline()
    process.stdout.close()
    stderr = process.communicate(timeout=120)[1].decode()
    assert "Broken pipe" not in stderr and "Traceback" not in stderr, stderr

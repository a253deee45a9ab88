"""The command line: ``diffops backends`` and ``diffops demo``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import diffops
from diffops.cli import main


def test_backends_lists_every_backend_with_availability(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) >= {"jax", "jax_nojit", "autograd", "symnum"}
    for name, row in rows.items():
        assert row[0] == ("yes" if diffops.get_backend(name).available else "no")
        if row[0] == "yes" and name in ("jax", "autograd", "symnum"):
            assert row[1][0].isdigit()  # a version number


def test_demo_checks_and_times_every_operator(capsys):
    backends = [b for b in ("autograd", "symnum") if diffops.get_backend(b).available]
    if len(backends) < 2:
        pytest.skip("needs autograd and symnum")
    arguments = ["demo"] + [item for b in backends for item in ("--backend", b)]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    rows = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in
            [[b] for b in backends]]  # fmt: skip
    assert sorted(rows) == sorted([b, op] for b in backends for op in diffops.DIFF_OPS)
    assert "All 12 results agree" in out


@pytest.mark.parametrize("name", ["nope", "numpy"])
def test_demo_refuses_a_backend_it_cannot_run(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--backend", name])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "the demo runs the built-in backends installed here" in captured.err
    assert f"got '{name}'" in captured.err
    assert not captured.out  # refused before it starts


def test_demo_runs_a_backend_named_twice_once_whatever_its_case(capsys):
    if not diffops.get_backend("autograd").available:
        pytest.skip("needs autograd")
    assert main(["demo", "--backend", "autograd", "--backend", "AutoGrad"]) == 0
    assert "All 6 results agree" in capsys.readouterr().out


def test_a_reader_that_stops_reading_gets_no_traceback():
    # As `diffops backends | head -1`: the pipe is closed before diffops writes.
    process = subprocess.Popen(
        [sys.executable, "-m", "diffops", "backends"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait(timeout=300) == 1
    assert "Traceback" not in errors, errors
    assert "BrokenPipeError" not in errors, errors


def test_python_dash_m_runs_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "diffops", "backends"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "jax_nojit" in result.stdout


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2

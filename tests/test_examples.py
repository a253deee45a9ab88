"""The example scripts run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("backend", ["jax", "autograd", "symnum", "torch"])
def test_parallel_chains_runs_in_a_pool_and_on_dask(backend):
    pytest.importorskip("distributed")
    import diffops

    if not diffops.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "parallel_chains.py"), "--backend", backend,
         "--chains", "3", "--samples", "20"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "process pool: 3 chains" in out
    assert "dask: 3 chains" in out
    chains = [line for line in out.splitlines() if line.lstrip().startswith("chain")]
    assert len(chains) == 6
    # The same seeds give the same chains wherever they run.
    assert chains[:3] == chains[3:]

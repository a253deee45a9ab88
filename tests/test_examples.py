"""The example scripts run as documented."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


# The example's two ways of making its function (as written, or numpified for SymNum);
# every backend's derivative functions in spawned and Dask workers are tested in
# test_processes.
@pytest.mark.parametrize("backend", ["jax", "symnum"])
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


@pytest.fixture
def run_gallery_example():
    """Run a script of the documentation's gallery here, figures drawn off screen."""
    matplotlib = pytest.importorskip("matplotlib")
    pytest.importorskip("jax")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield lambda name: runpy.run_path(str(EXAMPLES / name))
    plt.close("all")


def test_newton_example_finds_rosenbrocks_minimum(run_gallery_example):
    namespace = run_gallery_example("plot_newton_banana.py")
    x0, x1 = -1.2, 1.0  # the start, where the example prints H and g
    expected_hessian = [
        [2 - 400 * (x1 - x0**2) + 800 * x0**2, -400 * x0],
        [-400 * x0, 200],
    ]
    expected_grad = [-2 * (1 - x0) - 400 * x0 * (x1 - x0**2), 200 * (x1 - x0**2)]
    np.testing.assert_allclose(namespace["hessian"], expected_hessian, rtol=1e-12)
    np.testing.assert_allclose(namespace["grad"], expected_grad, rtol=1e-12)
    np.testing.assert_allclose(namespace["minimiser"], [1.0, 1.0], atol=1e-10)
    assert namespace["grad_norms"][-1] < 1e-10
    assert len(namespace["iterates"]) < 40
    assert len(namespace["figure"].axes) == 2


def test_hmc_example_samples_the_twisted_gaussian(run_gallery_example):
    namespace = run_gallery_example("plot_hmc.py")
    chain, bend = namespace["chain"], namespace["bend"]
    assert chain.shape == (4000, 2)
    assert 0.6 < namespace["acceptance_rate"] < 1.0
    # x₀ ~ N(0, 1) and x₁ | x₀ ~ N(b(x₀² - 1), 1): mean 0, variances 1 and 1 + 2b².
    np.testing.assert_allclose(chain.mean(axis=0), [0.0, 0.0], atol=0.15)
    np.testing.assert_allclose(chain.var(axis=0), [1.0, 1 + 2 * bend**2], rtol=0.15)
    np.testing.assert_allclose(namespace["inside"], [0.5, 0.9, 0.99], atol=0.04)
    assert len(namespace["figure"].axes) == 2


def test_vectorised_hmc_example_samples_the_twisted_gaussian(run_gallery_example):
    namespace = run_gallery_example("plot_vectorized_hmc.py")
    draws, bend = namespace["draws"], namespace["bend"]
    assert draws.shape == (200, 1000, 2)  # 1000 chains in lock-step
    assert 0.6 < namespace["acceptance_rate"] <= 1.0
    # x₀ ~ N(0, 1) and x₁ | x₀ ~ N(b(x₀² - 1), 1): mean 0, variances 1 and 1 + 2b².
    np.testing.assert_allclose(namespace["mean"], [0.0, 0.0], atol=0.05)
    np.testing.assert_allclose(namespace["variance"], [1.0, 1 + 2 * bend**2], rtol=0.05)
    vectorised, looped = namespace["vectorised"], namespace["looped"]
    assert len(vectorised) == len(looped) == len(namespace["sizes"])
    assert len(namespace["figure"].axes) == 2

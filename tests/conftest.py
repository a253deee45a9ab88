"""Shared fixtures: backends under test, and JAX's 64-bit mode for float64 tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# The references are float64, so JAX must compute in float64. Set before JAX is
# imported anywhere in the test session; tests of the float32 path use a subprocess.
os.environ["JAX_ENABLE_X64"] = "1"

import diffops
from diffops.namespaces import array_namespace

# Hypothesis: `ci` is the default (25 examples, derandomised so CI is repeatable);
# `make test-slow` selects `slow` (300 examples) with HYPOTHESIS_PROFILE=slow.
_SLOW_CHECKS = [HealthCheck.too_slow, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=_SLOW_CHECKS,
)  # fmt: skip
settings.register_profile(
    "slow", max_examples=300, deadline=None, suppress_health_check=_SLOW_CHECKS
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BUILTIN_BACKENDS = ("jax", "jax_nojit", "autograd", "symnum", "torch")


def installed(backend: str) -> Any:
    """``backend`` as a pytest parameter, skipped where its framework is missing."""
    available = diffops.get_backend(backend).available
    return pytest.param(
        backend,
        marks=pytest.mark.skipif(not available, reason=f"{backend} is not installed"),
    )


BACKEND_PARAMS = [installed(name) for name in BUILTIN_BACKENDS]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def make_function(case: Any, backend: str) -> Callable[..., Any]:
    """The test function of ``case`` written in ``backend``'s array namespace."""
    xp = array_namespace(backend)
    return xp.prepare(case.make(xp, case.n), case.n)


def derivative(
    backend: str, operator: str, func: Callable[..., Any]
) -> Callable[..., Any]:
    """``operator`` applied to ``func`` through the seed's entry point."""
    return diffops.autodiff_fallback(None, func, operator, operator, backend)

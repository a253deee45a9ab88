"""Fixtures and settings for the whole suite; shared helpers are in ``helpers``."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# The references are float64, so JAX must compute in float64. Set before JAX is
# imported anywhere in the test session; tests of the float32 path use a subprocess.
os.environ["JAX_ENABLE_X64"] = "1"
# Where JAX's default device is a GPU, each process of the suite's workers would
# reserve most of its memory when JAX starts (XLA's preallocation), and the second
# would run out: each takes what it uses instead.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from helpers import BACKEND_PARAMS  # after JAX's mode is set

# SymNum's generated code is cached on disk: the suite keeps a cache of its own, so
# that it neither reads the user's (a test must build what it tests) nor fills it.
# Subprocesses the tests start inherit it.
_CACHE = tempfile.TemporaryDirectory(prefix="diffops-test-cache-")
os.environ["DIFFOPS_CACHE_DIR"] = _CACHE.name
os.environ.pop("DIFFOPS_NO_CACHE", None)

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


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each built-in backend in turn, skipped where its framework is missing."""
    name: str = request.param
    return name

"""Compiled ``jax`` products: residuals kept, packed or not, or computed from the point.

Run from the repository's root::

    python benchmarks/recompute.py

A product that is not tabulated keeps the residuals of the evaluation: packed after
the outputs in one array up to ``PACK_RESIDUALS_UP_TO`` numbers ("kept"), as JAX
returns them beyond ("residuals"). Raising ``RECOMPUTE_UP_TO`` computes it from the
point instead ("point"), evaluating the function again in each product. This makes
each of the three, with the thresholds set to force it, and prints per function,
``n`` and target the median µs of each (medians of 7 interleaved batches) and its
ratio to "kept", JAX in float64 on the calling thread (as ``diffops bench
--jax-sync``). The functions: the bench's (a chain of bananas for ``mtp``, two
constraints for ``mhp`` and ``vjp``), and layers of ``tanh(W x)`` whose ``W`` the
function closes over, for ``vjp``. Its figures are in the docstrings of
``diffops.backends.jax.RECOMPUTE_UP_TO`` and ``PACK_RESIDUALS_UP_TO`` and in
docs/backends.md ("JAX products").
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax
import jax.numpy as jnp
import numpy as np

from diffops import autodiff_fallback
from diffops.backends import jax as jax_backend
from diffops.bench import (
    _call_and_product,
    _interleaved,
    sample_scalar_function,
    sample_vector_function,
)
from diffops.namespaces import array_namespace

WAYS = {
    "kept": {},
    "residuals": {"PACK_RESIDUALS_UP_TO": -1},
    "point": {"RECOMPUTE_UP_TO": 10**9},
}
"""Each way, and the thresholds that force it (with no table)."""


def layers(n: int, depth: int) -> Callable[[Any], Any]:
    """``c(x) = (Σ y², Σ y)`` for ``y = tanh(W … tanh(W x))``, ``depth`` times."""
    weights = jnp.asarray(np.random.default_rng(2).standard_normal((n, n)) / np.sqrt(n))

    def network(x: Any) -> Any:
        for _ in range(depth):
            x = jnp.tanh(weights @ x)
        return jnp.stack([jnp.sum(x**2), jnp.sum(x)])

    return network


def made(operator: str, func: Callable[[Any], Any], x: np.ndarray, way: str) -> Any:
    """The derivative function, its plan made at ``x`` with ``way``'s thresholds."""
    changed = {"TABULATE_UP_TO": 0, **WAYS[way]}
    saved = {name: getattr(jax_backend, name) for name in changed}
    try:
        for name, value in changed.items():
            setattr(jax_backend, name, value)
        derivative = autodiff_fallback(None, func, operator, operator, "jax")
        derivative(x)  # planned now
    finally:
        for name, value in saved.items():
            setattr(jax_backend, name, value)
    return derivative


def measure(name: str, operator: str, func: Callable[[Any], Any], n: int) -> None:
    """Print the median µs of each way's call, product and call and product."""
    x = np.random.default_rng(0).uniform(-1, 1, n)
    functions = {way: made(operator, func, x, way) for way in WAYS}
    products = {way: function(x)[0] for way, function in functions.items()}
    argument = np.random.default_rng(1).standard_normal(products["kept"].shape)
    expected = products["kept"](argument)
    for product in products.values():
        np.testing.assert_allclose(product(argument), expected, rtol=1e-9, atol=1e-12)
    targets = {
        "call": {way: functools.partial(f, x) for way, f in functions.items()},
        "product": {way: functools.partial(p, argument) for way, p in products.items()},
        "call+product": {
            way: functools.partial(_call_and_product, f, x, argument)
            for way, f in functions.items()
        },
    }
    for target, calls in targets.items():
        median, _ = _interleaved(calls, 7, 0.02)
        figures = "  ".join(
            f"{way} {us:8.1f} ({us / median['kept']:4.2f})"
            for way, us in median.items()
        )
        print(f"{name:22s} {operator[:3]} n={n:5d} {target:13s} {figures}", flush=True)


def main() -> None:
    """Measure each function, JAX dispatching on the calling thread."""
    jax.config.update("jax_cpu_enable_async_dispatch", False)  # type: ignore[no-untyped-call]
    print("µs per call (ratio to kept)")
    xp = array_namespace("jax")
    scalar, vector = sample_scalar_function, sample_vector_function
    for n in (20, 30, 60, 100, 300):
        measure("bananas", "mtp_hessian_grad_and_value", scalar(xp, n), n)
    for n in (100, 300, 1000):
        measure("two constraints", "mhp_jacobian_and_value", vector(xp, n), n)
    measure("two constraints", "vjp_and_value", vector(xp, 3000), 3000)
    measure("2 layers of tanh(Wx)", "vjp_and_value", layers(300, 2), 300)
    measure("20 layers of tanh(Wx)", "vjp_and_value", layers(300, 20), 300)


if __name__ == "__main__":
    main()

"""A compiled ``vjp`` kept as residuals or recomputed from its point, by function cost.

Run from the repository's root::

    python benchmarks/recompute.py

``diffops bench`` measures one cheap function (two constraints). This measures the two
ways of computing a product written by hand, as the bench writes them (the jitted
composite keeps the residuals of ``jax.vjp``; the two-call bound computes ``c(x)``
alone, then the product from ``(x, u)``), and diffops, which recomputes up to ``n =``
``RECOMPUTE_UP_TO``, for functions whose forward pass costs from a few µs to 0.2 ms:
the bench's constraints, and layers of ``tanh(W x)`` whose ``W`` the function closes
over, so that the residuals hold it. It prints, per function and target, the median
µs of each (medians of 7 interleaved batches), JAX in float64 on the calling thread
(as ``diffops bench --jax-sync``). Its figures are in the docstring of
``diffops.backends.jax.RECOMPUTE_UP_TO`` and in docs/backends.md ("JAX products").
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
from diffops.bench import (
    _call_and_product,
    _interleaved,
    hand_written,
    sample_vector_function,
)
from diffops.namespaces import array_namespace

OPERATOR = "vjp_and_value"


def layers(n: int, depth: int) -> Callable[[Any], Any]:
    """``c(x) = (Σ y², Σ y)`` for ``y = tanh(W … tanh(W x))``, ``depth`` times."""
    weights = jnp.asarray(np.random.default_rng(2).standard_normal((n, n)) / np.sqrt(n))

    def network(x: Any) -> Any:
        for _ in range(depth):
            x = jnp.tanh(weights @ x)
        return jnp.stack([jnp.sum(x**2), jnp.sum(x)])

    return network


def measure(name: str, func: Callable[[Any], Any], n: int) -> None:
    """Print the median µs of each form's call, product and call and product."""
    x = np.random.default_rng(0).uniform(-1, 1, n)
    argument = np.random.default_rng(1).standard_normal(2)
    functions = {"diffops": autodiff_fallback(None, func, OPERATOR, OPERATOR, "jax")}
    functions |= hand_written("jax", OPERATOR, func)
    products = {label: function(x)[0] for label, function in functions.items()}
    targets = {
        "call": {label: functools.partial(f, x) for label, f in functions.items()},
        "product": {
            label: functools.partial(p, argument) for label, p in products.items()
        },
        "call+product": {
            label: functools.partial(_call_and_product, f, x, argument)
            for label, f in functions.items()
        },
    }
    for target, calls in targets.items():
        median, _ = _interleaved(calls, 7, 0.02)
        figures = "  ".join(f"{label} {us:8.1f}" for label, us in median.items())
        print(f"{name:24s} n={n:5d} {target:13s} {figures}")


def main() -> None:
    """Measure each function, JAX dispatching on the calling thread."""
    jax.config.update("jax_cpu_enable_async_dispatch", False)  # type: ignore[no-untyped-call]
    print("µs per call, by hand: 'jit composite' keeps residuals, the other does not")
    constraints = array_namespace("jax")
    for n in (30, 1000):
        measure("two constraints", sample_vector_function(constraints, n), n)
    measure("2 layers of tanh(Wx)", layers(300, 2), 300)
    measure("20 layers of tanh(Wx)", layers(300, 20), 300)


if __name__ == "__main__":
    main()

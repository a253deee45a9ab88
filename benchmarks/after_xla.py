"""What copying an output costs just after a compiled JAX call, against alone.

Run from the repository's root::

    python benchmarks/after_xla.py [N ...]

diffops copies each output out of JAX's buffer so that the caller owns it; the
jitted composite written by hand takes read-only views of JAX's buffers and never
reads them. For the bench's two constraints (a Jacobian of ``2 × N``, default ``N =
300`` and ``1000``), this times, in interleaved batches, JAX in float64 on the calling
thread (as ``diffops bench --jax-sync``):

- ``views``: the jitted composite, its outputs taken as NumPy views (by hand);
- ``views, then copy each``: the same, each output then copied (the owned form);
- ``views, then copy another``: the same, then a NumPy array of the Jacobian's size
  that XLA did not write copied instead;
- ``copy another alone``: that copy alone, in a loop of its own;
- ``diffops``: ``jacobian_and_value`` from diffops.

It prints each form's median and minimum µs per call, and the median's excess over
``views``. The gap between the copy after a call and the same copy alone is what the
machine charges for touching memory just after XLA's computation. Its figures are in
docs/backends.md ("Measuring on your machine").
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax
import numpy as np

from diffops import autodiff_fallback
from diffops.bench import _interleaved, sample_vector_function
from diffops.namespaces import array_namespace

OPERATOR = "jacobian_and_value"


def _views(function: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(output) for output in function(x))


def _copies(function: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(output).copy() for output in function(x))


def _views_then_copy(function: Any, x: np.ndarray, other: np.ndarray) -> np.ndarray:
    _views(function, x)
    return other.copy()


def measure(n: int) -> None:
    """Print the median and minimum µs of each form at ``n``."""
    func = sample_vector_function(array_namespace("jax"), n)
    x = np.random.default_rng(0).uniform(-1, 1, n)
    composite = jax.jit(lambda x: (jax.jacrev(func)(x), func(x)))
    other = np.random.default_rng(1).standard_normal((2, n))
    calls: dict[str, Callable[[], Any]] = {
        "views": functools.partial(_views, composite, x),
        "views, then copy each": functools.partial(_copies, composite, x),
        "views, then copy another": functools.partial(
            _views_then_copy, composite, x, other
        ),
        "copy another alone": other.copy,
        "diffops": functools.partial(
            autodiff_fallback(None, func, OPERATOR, OPERATOR, "jax"), x
        ),
    }
    for call in calls.values():
        call()  # compiled here, not in the first batch
    medians, minima = _interleaved(calls, repeats=15, seconds=0.02)
    print(f"n = {n}: µs per call (median, minimum; median over views)")
    for name in calls:
        excess = medians[name] - medians["views"]
        print(f"  {name:26s} {medians[name]:8.2f} {minima[name]:8.2f} {excess:+8.2f}")


def main(sizes: list[int]) -> None:
    """Measure at each of ``sizes``, JAX computing on the calling thread."""
    jax.config.update("jax_cpu_enable_async_dispatch", False)  # type: ignore[no-untyped-call]
    for n in sizes:
        measure(n)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [300, 1000])

"""Per-call time and page faults of large outputs, made and dropped in a loop.

Run from the repository's root, as it is and with glibc's thresholds raised::

    python benchmarks/allocator.py
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 \
        python benchmarks/allocator.py

A Hessian of ``n = 300`` is 720 kB, of ``n = 1000`` 8 MB. glibc's ``malloc`` maps a
block that large afresh and gives it back to the system when freed (or trims the
heap's free top), so a loop that makes and drops such arrays may touch new pages on
every call, each a page fault. Code written by hand allocates too (JAX's result
buffers, torch's tensors); diffops adds the copy the caller owns. The two variables
keep freed blocks in the process instead. It prints one line per backend, ``n`` and
form: microseconds per call (median of 7 runs of 20 calls, outputs dropped after each
call) and minor page faults per call. Its figures are in docs/backends.md ("Large
outputs and the C allocator").
"""

from __future__ import annotations

import functools
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops import autodiff_fallback
from diffops.bench import hand_written, sample_scalar_function
from diffops.namespaces import array_namespace

OPERATOR = "hessian_grad_and_value"
BY_HAND = {"jax": "jit composite", "torch": "autograd.grad"}


def per_call(call: Callable[[], Any], calls: int = 20) -> tuple[float, float]:
    """Median µs per call over 7 runs, and page faults per call over all of them."""
    call()
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls * 1e6)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return statistics.median(times), faults / (7 * calls)


def main() -> None:
    """Each backend's Hessian at ``n = 300`` and ``1000``, diffops and by hand."""
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    jax.config.update("jax_cpu_enable_async_dispatch", False)  # type: ignore[no-untyped-call]
    for backend in ("jax", "torch"):
        for n in (300, 1000):
            func = sample_scalar_function(array_namespace(backend), n)
            x = np.random.default_rng(0).uniform(-1, 1, n)
            forms = {
                "diffops": autodiff_fallback(None, func, OPERATOR, OPERATOR, backend),
                "by hand": hand_written(backend, OPERATOR, func)[BY_HAND[backend]],
            }
            for name, function in forms.items():
                microseconds, faults = per_call(functools.partial(function, x))
                print(
                    f"{backend:6s} {OPERATOR} n={n:5d} {name:8s}"
                    f" {microseconds:9.0f} µs {faults:7.0f} page faults",
                    flush=True,
                )


if __name__ == "__main__":
    main()

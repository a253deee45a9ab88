"""Per-call time and page faults of large outputs, made and dropped in a loop.

Run from the repository's root, as it is and with glibc's thresholds raised::

    python benchmarks/allocator.py
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 \
        python benchmarks/allocator.py

A Hessian of ``n = 300`` is 720 kB, of ``n = 1000`` 8 MB. glibc's ``malloc`` maps a
block that large afresh and gives it back to the system when freed (or trims the
heap's free top), so a loop that makes and drops such arrays may touch new pages on
every call, each a page fault. Code written by hand allocates too (JAX's result
buffers, torch's tensors); with ``jax``, diffops adds the copy the caller owns. The
two variables keep freed blocks in the process instead. It prints one line per
backend, ``n`` and form: microseconds per call (median of 7 batches of 20 calls,
after 20 unmeasured, the two forms taking turns, outputs dropped after each call) and
minor page faults per call, JAX computing in float64 on the calling thread (as
``diffops bench --jax-sync``). Its figures are in docs/backends.md ("Large outputs
and the C allocator").
"""

from __future__ import annotations

import functools
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from diffops import autodiff_fallback
from diffops.bench import hand_written, sample_scalar_function
from diffops.namespaces import array_namespace

OPERATOR = "hessian_grad_and_value"
BY_HAND = {"jax": "jit composite", "torch": "autograd.grad"}


def per_call(
    calls: Mapping[str, Callable[[], Any]], batch: int = 20
) -> dict[str, tuple[float, float]]:
    """Median µs per call and page faults per call, of each form, timed in turn.

    Each form makes ``batch`` calls unmeasured first, then 7 batches measured, the
    forms taking turns, so that none alone pays for taking the heap to the size the
    loop keeps.
    """
    for call in calls.values():
        for _ in range(batch):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    faults = dict.fromkeys(calls, 0)
    for _ in range(7):
        for name, call in calls.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            for _ in range(batch):
                call()
            times[name].append((time.perf_counter() - start) / batch * 1e6)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {
        name: (statistics.median(times[name]), faults[name] / (7 * batch))
        for name in calls
    }


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
            calls = {name: functools.partial(f, x) for name, f in forms.items()}
            for name, (microseconds, faults) in per_call(calls).items():
                print(
                    f"{backend:6s} {OPERATOR} n={n:5d} {name:8s}"
                    f" {microseconds:9.0f} µs {faults:7.0f} page faults",
                    flush=True,
                )


if __name__ == "__main__":
    main()

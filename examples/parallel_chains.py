"""Many Hamiltonian Monte Carlo chains in parallel: a process pool, then Dask.

The sampler is a few lines of NumPy around one derivative function,
``grad_and_value`` of a banana-shaped negative log density. The derivative function
is built once, here, and sent to the workers: it pickles as its recipe, and each
worker compiles it again on first use.

    python examples/parallel_chains.py                      # jax, 8 chains
    python examples/parallel_chains.py --backend autograd --chains 16
    python examples/parallel_chains.py --scheduler tcp://scheduler-host:8786

Without ``--scheduler`` the Dask part starts a cluster of worker processes on this
machine; with it, the same code runs on the workers of an existing cluster (started
with ``dask scheduler`` and ``dask worker tcp://scheduler-host:8786`` on each node,
diffops and the framework installed on every one).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

import diffops


def neg_log_density(x: Any) -> Any:
    """``x₀²/8 + (x₁ - x₀²/2)²/2``: a banana; plain operators, so any framework."""
    return x[0] ** 2 / 8 + (x[1] - x[0] ** 2 / 2) ** 2 / 2


def make_grad_and_value(backend: str) -> Callable[[np.ndarray], Any]:
    func: Callable[..., Any] = neg_log_density
    if backend == "symnum":
        import symnum

        func = symnum.numpify(2)(neg_log_density)
    return diffops.autodiff_fallback(
        None, func, "grad_and_value", "grad_neg_log_density", backend
    )


def hmc_chain(
    grad_and_value: Callable[[np.ndarray], Any],
    start: np.ndarray,
    seed: int,
    samples: int = 200,
    step_size: float = 0.3,
    steps: int = 10,
) -> dict[str, Any]:
    """Run one chain of HMC with a leapfrog integrator; summarise its samples."""
    rng = np.random.default_rng(seed)
    x = np.asarray(start, dtype=float)
    grad, value = grad_and_value(x)
    draws, accepted = [], 0
    for _ in range(samples):
        momentum = rng.standard_normal(x.shape)
        energy = value + momentum @ momentum / 2
        x_new, grad_new, value_new = x, grad, value
        momentum_new = momentum - step_size / 2 * grad_new
        for step in range(steps):
            x_new = x_new + step_size * momentum_new
            grad_new, value_new = grad_and_value(x_new)
            kick = step_size if step < steps - 1 else step_size / 2
            momentum_new = momentum_new - kick * grad_new
        energy_new = value_new + momentum_new @ momentum_new / 2
        if np.log(rng.uniform()) < energy - energy_new:  # False when NaN
            x, grad, value = x_new, grad_new, value_new
            accepted += 1
        draws.append(x)
    draws_array = np.array(draws)
    return {
        "seed": seed,
        "start": np.round(np.asarray(start), 2).tolist(),
        "acceptance": accepted / samples,
        "mean": draws_array.mean(axis=0),
    }


def progress(done: Iterable[Any], total: int, label: str) -> list[Any]:
    """Collect results as they finish, drawing a progress bar on stderr."""
    results = []
    for count, result in enumerate(done, start=1):
        results.append(result)
        bar = "#" * (30 * count // total)
        sys.stderr.write(f"\r{label:<14} [{bar:<30}] {count}/{total}")
        sys.stderr.flush()
    sys.stderr.write("\n")
    return results


def report(label: str, results: list[dict[str, Any]], seconds: float) -> None:
    print(f"\n{label}: {len(results)} chains in {seconds:.1f} s")
    for result in sorted(results, key=lambda r: r["seed"]):
        mean = ", ".join(f"{m:+.2f}" for m in result["mean"])
        print(
            f"  chain {result['seed']:>3}  start {result['start']}  "
            f"acceptance {result['acceptance']:.2f}  mean [{mean}]"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", help="address of a running Dask scheduler")
    arguments = parser.parse_args(argv)

    # JAX's precision is set per process: through the environment, it reaches the
    # worker processes too (on a remote cluster, set it where the workers start).
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    grad_and_value = make_grad_and_value(arguments.backend)
    starts = np.random.default_rng(1).uniform(-2, 2, (arguments.chains, 2))
    jobs = [
        (grad_and_value, start, seed, arguments.samples)
        for seed, start in enumerate(starts)
    ]

    # One machine: a pool of processes. JAX and PyTorch run threads, so the pool
    # spawns its workers rather than forking this process.
    start_time = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        arguments.workers, mp_context=context
    ) as pool:
        futures = [pool.submit(hmc_chain, *job) for job in jobs]
        pooled = progress(
            concurrent.futures.as_completed(futures), len(jobs), "process pool"
        )
    report(
        "process pool", [f.result() for f in pooled], time.perf_counter() - start_time
    )

    # A cluster: the same jobs on Dask workers.
    from dask.distributed import Client, LocalCluster, as_completed

    start_time = time.perf_counter()
    if arguments.scheduler:
        client = Client(arguments.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=arguments.workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        futures = [client.submit(hmc_chain, *job, pure=False) for job in jobs]
        finished = progress(as_completed(futures), len(jobs), "dask")
        report("dask", [f.result() for f in finished], time.perf_counter() - start_time)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

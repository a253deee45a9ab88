"""Per-call time of diffops on a GPU against the same work written by hand there.

Run where there is a CUDA device, from the repository's root::

    python benchmarks/gpu.py torch     # return_numpy_arrays(..., device="cuda")
    python benchmarks/gpu.py jax       # JAX's default device (its GPU, if it has one)
    JAX_PLATFORMS=cpu python benchmarks/gpu.py jax    # the same on the CPU

It prints one line per operator and ``n``: microseconds per call (the median of 7
repeats after 3 warm calls, the forms taking turns so that none alone pays for what
the process does first, such as growing its heap), NumPy in and NumPy out. By hand is
``torch.autograd.grad`` on the device (Hessian rows pulled back with
``is_grads_batched=True``), or the jitted composite for JAX, each returning its
outputs as ``tensor.cpu().numpy()`` or ``np.asarray``: no copy the caller owns. Its
figures are in docs/backends.md ("On a GPU").
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from diffops import autodiff_fallback
from diffops.bench import _interleaved, hand_written, sample_scalar_function
from diffops.namespaces import array_namespace


def microseconds(calls: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Median µs per call of each form, 7 repeats of about 0.06 s, taking turns."""
    for call in calls.values():
        for _ in range(3):
            call()
    median, _ = _interleaved(calls, 7, 0.06)
    return median


def _torch_by_hand(operator: str, func: Callable[..., Any], x: np.ndarray) -> Any:
    import torch

    xt = torch.from_numpy(x).to("cuda").requires_grad_(True)
    value = func(xt)
    if operator == "grad_and_value":
        (grad,) = torch.autograd.grad(value, xt)
        return grad.cpu().numpy(), value.item()
    (grad,) = torch.autograd.grad(value, xt, create_graph=True)
    basis = torch.eye(x.size, dtype=grad.dtype, device="cuda")
    (hessian,) = torch.autograd.grad(grad, xt, basis, is_grads_batched=True)
    return hessian.cpu().numpy(), grad.detach().cpu().numpy(), value.item()


def torch_rows() -> None:
    """Diffops on the CPU, diffops on the GPU, and by hand on the GPU."""
    from diffops.backends import torch as torch_backend

    for operator, sizes in (
        ("grad_and_value", (100, 1000, 4000)),
        ("hessian_grad_and_value", (100, 1000)),
    ):
        for n in sizes:
            func = sample_scalar_function(array_namespace("torch"), n)
            x = np.random.default_rng(0).uniform(-1, 1, n)
            on_cpu = autodiff_fallback(None, func, operator, operator, "torch")
            on_gpu = torch_backend.return_numpy_arrays(
                getattr(torch_backend, operator)(func), device="cuda"
            )
            times = microseconds(
                {
                    "cpu": functools.partial(on_cpu, x),
                    "gpu": functools.partial(on_gpu, x),
                    "gpu by hand": functools.partial(_torch_by_hand, operator, func, x),
                }
            )
            print(
                f"torch {operator:24s} n={n:5d}"
                + "".join(f"  {name} {us:9.0f}" for name, us in times.items()),
                flush=True,
            )


def jax_rows() -> None:
    """Diffops and by hand, on JAX's default device."""
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    for operator, sizes in (
        ("grad_and_value", (100, 1000, 4000)),
        ("hessian_grad_and_value", (100, 1000)),
        ("mtp_hessian_grad_and_value", (100, 1000)),
    ):
        for n in sizes:
            func = sample_scalar_function(array_namespace("jax"), n)
            x = np.random.default_rng(0).uniform(-1, 1, n)
            ours = autodiff_fallback(None, func, operator, operator, "jax")
            by_hand = hand_written("jax", operator, func)["jit composite"]
            times = microseconds(
                {
                    "diffops": functools.partial(ours, x),
                    "by hand": functools.partial(by_hand, x),
                }
            )
            print(
                f"jax-{jax.default_backend()} {operator:24s} n={n:5d}"
                + "".join(f"  {name} {us:9.0f}" for name, us in times.items()),
                flush=True,
            )


if __name__ == "__main__":
    {"torch": torch_rows, "jax": jax_rows}[sys.argv[1]]()

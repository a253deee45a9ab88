"""mici's own samplers on diffops' derivative functions, as its users would run them.

Code written against ``mici.autodiff`` works after changing only the import: here
mici's systems make their derivative functions with diffops' ``autodiff_fallback``
and ``wrap_function`` in place of mici's own, and their chains are compared with the
same chains on the derivative functions mici makes itself (the independent route),
for the systems that take each kind of derivative: a Riemannian metric's
vector-Jacobian product of a matrix and of a scalar (``vjp_and_value``), SoftAbs's
Hessian and matrix-Tressian product, and a constrained system's Jacobian and
matrix-Hessian product. ``torch``, which mici does not have, is compared with mici's
chains on JAX.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import installed

import diffops
from diffops.namespaces import array_namespace

mici = pytest.importorskip("mici")

N = 3
START = np.array([0.6, -0.5, 0.62])  # on the unit sphere, to 1e-2: projected below


def _neg_log_dens(xp):
    def neg_log_dens(q):
        return xp.sum(q**2) / 2 + 0.3 * xp.sum(xp.cos(2 * q))

    return neg_log_dens


def _metric(xp):
    # Positive definite: its diagonal 1 + |q|² exceeds the off-diagonal q_i q_j.
    def metric(q):
        diagonal = 1 + xp.sum(q**2)
        return xp.stack(
            [
                xp.stack([diagonal, q[0] * q[1], q[0] * q[2]]),
                xp.stack([q[0] * q[1], diagonal, q[1] * q[2]]),
                xp.stack([q[0] * q[2], q[1] * q[2], diagonal]),
            ]
        )

    return metric


def _metric_scalar(xp):
    def metric_scalar(q):
        return 1 + xp.sum(q**2) / 2

    return metric_scalar


def _constr(xp):
    def constr(q):
        return xp.stack([xp.sum(q**2) - 1])

    return constr


def _functions(backend):
    xp = array_namespace(backend)
    return {
        name: xp.prepare(make(xp), N)
        for name, make in (
            ("neg_log_dens", _neg_log_dens),
            ("metric", _metric),
            ("metric_scalar", _metric_scalar),
            ("constr", _constr),
        )
    }


def _system(kind, backend):
    f = _functions(backend)
    systems = mici.systems
    if kind == "constrained":
        return systems.DenseConstrainedEuclideanMetricSystem(
            f["neg_log_dens"], f["constr"], dens_wrt_hausdorff=False, backend=backend
        )
    # mici 0.4's Riemannian systems do not pass backend on for the density: its
    # gradient is made here, and where the system does not differentiate it itself
    # the density is wrapped here, by the functions the systems' module calls.
    grad = systems.autodiff_fallback(
        None, f["neg_log_dens"], "grad_and_value", "grad_neg_log_dens", backend
    )
    if kind == "softabs":
        return systems.SoftAbsRiemannianMetricSystem(
            f["neg_log_dens"], grad_neg_log_dens=grad, backend=backend
        )
    neg_log_dens = systems.wrap_function(f["neg_log_dens"], backend)
    system, metric = {
        "dense metric": (systems.DenseRiemannianMetricSystem, f["metric"]),
        "scalar metric": (systems.ScalarRiemannianMetricSystem, f["metric_scalar"]),
    }[kind]
    return system(neg_log_dens, metric, grad_neg_log_dens=grad, backend=backend)


def _chain(kind, backend):
    """Positions of a short chain of mici's HMC on the system ``kind``."""
    system = _system(kind, backend)
    if kind == "constrained":
        integrator = mici.integrators.ConstrainedLeapfrogIntegrator(
            system, step_size=0.2
        )
        start = START / np.linalg.norm(START)
    else:
        integrator = mici.integrators.ImplicitLeapfrogIntegrator(system, step_size=0.2)
        start = START
    sampler = mici.samplers.StaticMetropolisHMC(
        system, integrator, np.random.default_rng(3), n_step=3
    )
    _, traces, _ = sampler.sample_chains(
        0,
        4,
        [start.copy()],
        trace_funcs=[lambda state: {"pos": state.pos.copy()}],
        display_progress=False,
    )
    return np.asarray(traces["pos"])


def _reference_backend(backend, kind):
    """The backend of mici's own chain that diffops' on ``backend`` is compared with.

    The same, but for ``torch``, which mici does not have, and SymNum's scalar
    metric, whose vector-Jacobian product SymNum's own code cannot make (diffops'
    makes it from the gradient): JAX's.
    """
    if backend == "torch" or (backend == "symnum" and kind == "scalar metric"):
        return "jax"
    return backend


@pytest.mark.parametrize(
    "kind", ["dense metric", "scalar metric", "softabs", "constrained"]
)
@pytest.mark.parametrize(
    "backend", [installed(name) for name in ("jax", "autograd", "symnum", "torch")]
)
def test_mici_chains_on_diffops_are_mici_own(monkeypatch, backend, kind):
    reference_backend = _reference_backend(backend, kind)
    if not diffops.get_backend(reference_backend).available:
        pytest.skip(f"{reference_backend} is not installed")
    reference = _chain(kind, reference_backend)
    monkeypatch.setattr(mici.systems, "autodiff_fallback", diffops.autodiff_fallback)
    monkeypatch.setattr(mici.systems, "wrap_function", diffops.wrap_function)
    chain = _chain(kind, backend)
    assert chain.shape == reference.shape == (1, 4, N)
    np.testing.assert_allclose(chain, reference, rtol=1e-8, atol=1e-10)

"""
A thousand chains of Hamiltonian Monte Carlo in lock-step
=========================================================

Ensemble and population samplers, and HMC run as many chains at once, evaluate the
gradient at many points per step. :func:`diffops.vectorize` turns a derivative
function of one point into one of many: ``grad_and_value`` of a ``(k, n)`` array of
points returns the ``(k, n)`` gradients and the ``(k,)`` values, computed with JAX in
one compiled call. Here 1000 chains move in lock-step on one process, through the
twisted Gaussian whose moments are known,

.. math::

    x_0 \\sim \\mathcal{N}(0, 1), \\qquad
    x_1 \\mid x_0 \\sim \\mathcal{N}\\bigl(b\\,(x_0^2 - 1), 1\\bigr),

with :math:`\\mathbb{E}[x] = 0`, :math:`\\operatorname{var}(x_0) = 1` and
:math:`\\operatorname{var}(x_1) = 1 + 2b^2`.
"""

# %%
# The density and its derivative function, at one point and at many
# ---------------------------------------------------------------------

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffops import autodiff_fallback, vectorize

jax.config.update("jax_enable_x64", True)
bend = 0.5


def neg_log_density(x):
    return (jnp.square(x[0]) + jnp.square(x[1] - bend * (x[0] ** 2 - 1))) / 2


grad_and_value = autodiff_fallback(
    None, neg_log_density, "grad_and_value", "grad_and_value", "jax"
)
grad_and_value_of_many = vectorize(grad_and_value)

# %%
# The sampler
# -----------
#
# Each chain draws its own momentum and accepts or rejects its own move; the leapfrog
# steps of all chains are taken together, one call of ``grad_and_value_of_many`` per
# step for every chain at once.


def hmc_in_lock_step(X, iterations, rng, step_size=0.3, steps=10):
    """Move the chains at the rows of ``X``; their states after each iteration."""
    G, V = grad_and_value_of_many(X)
    draws = np.empty((iterations, *X.shape))
    acceptance = np.empty(iterations)
    for iteration in range(iterations):
        P = rng.standard_normal(X.shape)
        energy = V + np.sum(P**2, axis=1) / 2
        X_new, P = X, P - step_size / 2 * G
        for step in range(steps):
            X_new = X_new + step_size * P
            G_new, V_new = grad_and_value_of_many(X_new)
            P = P - (step_size if step < steps - 1 else step_size / 2) * G_new
        energy_new = V_new + np.sum(P**2, axis=1) / 2
        accept = np.log(rng.uniform(size=X.shape[0])) < energy - energy_new
        X = np.where(accept[:, np.newaxis], X_new, X)
        G = np.where(accept[:, np.newaxis], G_new, G)
        V = np.where(accept, V_new, V)
        draws[iteration], acceptance[iteration] = X, accept.mean()
    return draws, acceptance.mean()


rng = np.random.default_rng(20261126)
chains = 1000
start = time.perf_counter()
draws, acceptance_rate = hmc_in_lock_step(rng.standard_normal((chains, 2)), 200, rng)
seconds = time.perf_counter() - start
samples = draws[50:].reshape(-1, 2)  # the first 50 iterations as warm-up
mean, variance = samples.mean(axis=0), samples.var(axis=0)
print(f"{chains} chains, 200 iterations of 10 leapfrog steps: {seconds:.1f} s")
print(f"acceptance rate {acceptance_rate:.2f}")
print(f"mean {np.round(mean, 3)} (exactly [0, 0])")
print(f"variance {np.round(variance, 3)} (exactly [1, {1 + 2 * bend**2}])")

# %%
# Points per second
# -----------------
#
# The same gradients, one call per point in a Python loop, and in one vectorised call
# for all the points, against the number of points (chains): the loop's cost is the
# same for every point, the vectorised call's barely grows until the arithmetic
# dominates.

sizes = [1, 10, 100, 1000, 10000]
vectorised, looped = [], []
for k in sizes:
    X = rng.standard_normal((k, 2))
    grad_and_value_of_many(X)  # compiled for this k first
    runs = []
    for _ in range(5):
        begin = time.perf_counter()
        grad_and_value_of_many(X)
        runs.append(time.perf_counter() - begin)
    vectorised.append(k / min(runs))
    rows = X[: min(k, 300)]
    begin = time.perf_counter()
    for x in rows:
        grad_and_value(x)
    looped.append(len(rows) / (time.perf_counter() - begin))

# %%
# The samples and the throughput
# ------------------------------

figure, (scatter_axis, rate_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
shown = samples[rng.choice(samples.shape[0], 3000, replace=False)]
scatter_axis.scatter(*shown.T, s=2, alpha=0.4)
grid = np.linspace(-3, 3, 200)
x0, x1 = np.meshgrid(grid, np.linspace(-3, 5, 200))
density = np.exp(-(x0**2 + (x1 - bend * (x0**2 - 1)) ** 2) / 2)
scatter_axis.contour(x0, x1, density, levels=4, colors="black", linewidths=0.8)
scatter_axis.set(xlabel="$x_0$", ylabel="$x_1$", title="3000 of the samples")
rate_axis.loglog(sizes, vectorised, "o-", label="vectorize: one call")
rate_axis.loglog(sizes, looped, "s--", label="a loop of per-point calls")
rate_axis.set(xlabel="points (chains)", ylabel="gradients per second",
              title="Throughput, JAX on the CPU")  # fmt: skip
rate_axis.legend()
rate_axis.grid(True, which="both", alpha=0.3)
figure.tight_layout()

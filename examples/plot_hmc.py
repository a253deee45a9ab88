"""
Hamiltonian Monte Carlo on a banana-shaped distribution
=======================================================

Hamiltonian Monte Carlo (HMC) proposes a move by simulating a particle sliding on the
surface of the negative log density :math:`\\phi(x)`: each step of the leapfrog
integrator needs the gradient :math:`\\nabla\\phi`, and the accept-reject step needs
the value. ``grad_and_value`` gives both from one call, which is the call a sampler
makes millions of times.

The target here is a twisted Gaussian,

.. math::

   x_0 \\sim \\mathcal{N}(0, 1), \\qquad
   x_1 \\mid x_0 \\sim \\mathcal{N}\\bigl(b\\,(x_0^2 - 1), 1\\bigr), \\qquad
   \\phi(x) = \\tfrac{1}{2} x_0^2 + \\tfrac{1}{2}\\bigl(x_1 - b\\,(x_0^2 - 1)\\bigr)^2,

with :math:`b = 1`: a banana whose moments are known exactly, :math:`\\mathbb{E}[x] =
0`, :math:`\\operatorname{var}(x_0) = 1` and :math:`\\operatorname{var}(x_1) = 1 + 2b^2
= 3`, so the samples can be checked.
"""

# %%
# The density and its derivative function
# ---------------------------------------
# The negative log density is written with ``jax.numpy``, and 64-bit mode is
# switched on first, since JAX computes in float32 otherwise. A sampler library
# would accept an optional hand-written ``grad_and_value`` from its user and fall back
# to automatic differentiation when there is none, which is what
# :func:`~diffops.autodiff_fallback` does.

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffops import autodiff_fallback

jax.config.update("jax_enable_x64", True)

bend = 1.0


def neg_log_density(x):
    return (jnp.square(x[0]) + jnp.square(x[1] - bend * (x[0] ** 2 - 1))) / 2


user_grad_and_value = None  # no hand-written derivative: use JAX
grad_and_value = autodiff_fallback(
    user_grad_and_value, neg_log_density, "grad_and_value", "grad_and_value", "jax"
)

# %%
# The sampler
# -----------
# Each iteration draws a momentum :math:`p \sim \mathcal{N}(0, I)`, follows the
# Hamiltonian :math:`H(x, p) = \phi(x) + \tfrac{1}{2} p^\top p` with the leapfrog
# integrator, and accepts the end point with probability
# :math:`\min(1, e^{H_\text{start} - H_\text{end}})`. The step size is jittered so
# that the trajectory length does not resonate with the distribution's periods.


def hmc(grad_and_value, x, samples, rng, step_size=0.2, steps=15):
    """Draw ``samples`` states by HMC, starting at ``x``, and the acceptance rate."""
    grad, value = grad_and_value(x)
    chain, accepted = np.empty((samples, x.size)), 0
    for sample in range(samples):
        momentum = rng.standard_normal(x.size)
        energy = value + momentum @ momentum / 2
        epsilon = step_size * rng.uniform(0.8, 1.2)
        x_new, grad_new, value_new = x, grad, value
        momentum = momentum - epsilon / 2 * grad_new
        for step in range(steps):
            x_new = x_new + epsilon * momentum
            grad_new, value_new = grad_and_value(x_new)
            if step < steps - 1:
                momentum = momentum - epsilon * grad_new
        momentum = momentum - epsilon / 2 * grad_new
        if np.log(rng.uniform()) < energy - value_new - momentum @ momentum / 2:
            x, grad, value = x_new, grad_new, value_new
            accepted += 1
        chain[sample] = x
    return chain, accepted / samples


rng = np.random.default_rng(20261126)
warm_up, _ = hmc(grad_and_value, np.zeros(2), 200, rng)
chain, acceptance_rate = hmc(grad_and_value, warm_up[-1], 4000, rng)
print(f"acceptance rate {acceptance_rate:.2f}")
print(f"mean {chain.mean(axis=0).round(2)} (exact [0, 0])")
print(f"variance {chain.var(axis=0).round(2)} (exact [1, 3])")

# %%
# The samples
# -----------
# Left, the samples and the contours of :math:`\phi` that enclose 50%, 90% and 99% of
# the probability: the map :math:`(x_0, x_1) \mapsto (x_0, x_1 - b(x_0^2 - 1))` takes
# the target to a standard normal and preserves areas, so the region
# :math:`\phi \le k` holds probability :math:`1 - e^{-k}`. Right, the first 500
# values of :math:`x_0`, whose sign says which arm of the banana the chain is in: it
# crosses from one to the other every few iterations.

grid_0, grid_1 = np.meshgrid(np.linspace(-3.5, 3.5, 300), np.linspace(-4.5, 11.5, 300))
phi = np.asarray(neg_log_density(np.stack([grid_0, grid_1])))
probabilities = np.array([0.5, 0.9, 0.99])
inside = [
    np.mean(np.asarray(neg_log_density(chain.T)) <= -np.log(1 - probability))
    for probability in probabilities
]
print(f"fraction of samples inside the contours {np.round(inside, 3)}")

figure, (scatter_axes, trace_axes) = plt.subplots(
    1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.4]}
)
scatter_axes.plot(*chain.T, ".", color="tab:red", markersize=2, alpha=0.4)
contours = scatter_axes.contour(
    grid_0, grid_1, phi, levels=-np.log(1 - probabilities), colors="black"
)
labels = [f"{probability:.0%}" for probability in probabilities]
scatter_axes.clabel(contours, fmt=dict(zip(contours.levels, labels, strict=True)))
scatter_axes.set(xlabel="$x_0$", ylabel="$x_1$", title="HMC samples")
trace_axes.plot(chain[:500, 0], color="tab:red", linewidth=0.8)
trace_axes.axhline(0, color="black", linewidth=0.5)
trace_axes.set(xlabel="iteration", ylabel="$x_0$", title="Trace of $x_0$")
figure.tight_layout()
plt.show()

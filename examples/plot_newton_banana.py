"""
Newton's method on a banana-shaped function
===========================================

Newton's method needs the gradient and the Hessian at every iterate, and its line
search needs the value: ``hessian_grad_and_value`` gives all three from one call.
Here it minimises Rosenbrock's function

.. math::

   f(x) = (1 - x_0)^2 + 100\\,(x_1 - x_0^2)^2,

whose minimum, :math:`f = 0` at :math:`x = (1, 1)`, lies at the bottom of a curved,
narrow valley where gradient descent crawls.
"""

# %%
# The function and its derivative function
# ----------------------------------------
# The function uses arithmetic only, which JAX traces like ``jax.numpy`` code;
# diffops makes the derivative function and compiles it. JAX computes in float32
# unless 64-bit mode is on, and diffops never switches it on for you, so the script
# does, before any computation.

import jax
import matplotlib.pyplot as plt
import numpy as np

from diffops import autodiff_fallback

jax.config.update("jax_enable_x64", True)


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


hessian_grad_and_value = autodiff_fallback(
    None, rosenbrock, "hessian_grad_and_value", "hessian_rosenbrock", "jax"
)
hessian, grad, value = hessian_grad_and_value(np.array([-1.2, 1.0]))
print(f"value {value:.2f}\ngradient {grad}\nHessian\n{hessian}")

# %%
# Damped Newton iterations
# ------------------------
# Each iteration solves :math:`(H + \lambda I)\,p = -g` for the step :math:`p`, with
# the shift :math:`\lambda \ge 0` just large enough to make the matrix positive
# definite (far from the minimum the Hessian need not be), then halves the step
# until the value decreases enough (Armijo's condition). Near the minimum
# :math:`\lambda = 0` and full steps are taken, and convergence is quadratic.


def newton(hessian_grad_and_value, x, tolerance=1e-10, max_iterations=100):
    """Minimise from ``x``; return the iterates and the gradient norm at each."""
    iterates, grad_norms = [x], []
    for _ in range(max_iterations):
        hessian, grad, value = hessian_grad_and_value(x)
        grad_norms.append(np.linalg.norm(grad))
        if grad_norms[-1] < tolerance:
            break
        shift = max(0.0, 1e-6 - np.linalg.eigvalsh(hessian)[0])
        step = -np.linalg.solve(hessian + shift * np.eye(x.size), grad)
        length = 1.0
        while rosenbrock(x + length * step) > value + 1e-4 * length * (grad @ step):
            length /= 2
        x = x + length * step
        iterates.append(x)
    return np.array(iterates), np.array(grad_norms)


iterates, grad_norms = newton(hessian_grad_and_value, np.array([-1.2, 1.0]))
minimiser = iterates[-1]
print(f"{len(iterates) - 1} iterations: x = {minimiser}, |g| = {grad_norms[-1]:.1e}")

# %%
# The path and the convergence
# ----------------------------
# Left, the iterates on the contours of :math:`\log_{10}(1 + f)`: they follow the
# valley round to the minimum. Right, the norm of the gradient at each iterate: the
# last few iterations each square it, and the last is zero in float64 (so off the
# logarithmic axis).

grid_0, grid_1 = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
values = (1 - grid_0) ** 2 + 100 * (grid_1 - grid_0**2) ** 2

figure, (path_axes, norm_axes) = plt.subplots(1, 2, figsize=(10, 4.2))
path_axes.contour(grid_0, grid_1, np.log10(1 + values), levels=20, cmap="viridis")
path_axes.plot(*iterates.T, "o-", color="tab:red", markersize=4, label="iterates")
path_axes.plot(1, 1, "k*", markersize=12, label="minimum (1, 1)")
path_axes.set(xlabel="$x_0$", ylabel="$x_1$", title="Damped Newton on Rosenbrock")
path_axes.legend(loc="lower right")
norm_axes.semilogy(grad_norms, "o-", color="tab:red")
norm_axes.set(xlabel="iteration", ylabel="$|g|$", title="Norm of the gradient")
figure.tight_layout()
plt.show()

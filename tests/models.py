"""Module-level model functions, one scalar and one vector function per framework.

Defined at module level so that the standard library's ``pickle`` can send them (and
the derivative functions made from them) to other processes by reference. Missing
frameworks leave their functions undefined; the tests skip those backends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N = 3
M_OUTPUTS = 2
SCALAR: dict[str, Any] = {}
VECTOR: dict[str, Any] = {}

try:
    import jax.numpy as jnp
except ImportError:
    pass
else:

    def jax_scalar(x):
        return jnp.sum(x**4) / 4 + jnp.sin(x[0]) * x[1] + jnp.exp(x[2] / 3)

    def jax_vector(x):
        return jnp.stack([x[0] * x[1] - x[2], jnp.sum(x**2) - 1])

    SCALAR["jax"] = SCALAR["jax_nojit"] = jax_scalar
    VECTOR["jax"] = VECTOR["jax_nojit"] = jax_vector

try:
    import autograd.numpy as anp
except ImportError:
    pass
else:

    def autograd_scalar(x):
        return anp.sum(x**4) / 4 + anp.sin(x[0]) * x[1] + anp.exp(x[2] / 3)

    def autograd_vector(x):
        return anp.stack([x[0] * x[1] - x[2], anp.sum(x**2) - 1])

    SCALAR["autograd"], VECTOR["autograd"] = autograd_scalar, autograd_vector

try:
    import symnum
    import symnum.numpy as snp
except ImportError:
    pass
else:

    @symnum.numpify(N)
    def symnum_scalar(x):
        return snp.sum(x**4) / 4 + snp.sin(x[0]) * x[1] + snp.exp(x[2] / 3)

    @symnum.numpify(N)
    def symnum_vector(x):
        return snp.array([x[0] * x[1] - x[2], snp.sum(x**2) - 1])

    SCALAR["symnum"], VECTOR["symnum"] = symnum_scalar, symnum_vector

try:
    import torch
except ImportError:
    pass
else:

    def torch_scalar(x):
        return torch.sum(x**4) / 4 + torch.sin(x[0]) * x[1] + torch.exp(x[2] / 3)

    def torch_vector(x):
        return torch.stack([x[0] * x[1] - x[2], torch.sum(x**2) - 1])

    SCALAR["torch"], VECTOR["torch"] = torch_scalar, torch_vector


def argument_for(operator: str) -> np.ndarray | None:
    """A fixed ``M`` or ``u`` for the product operators, ``None`` for the others."""
    rng = np.random.default_rng(5)
    return {
        "mtp_hessian_grad_and_value": rng.standard_normal((N, N)),
        "mhp_jacobian_and_value": rng.standard_normal((M_OUTPUTS, N)),
        "vjp_and_value": rng.standard_normal(M_OUTPUTS),
    }.get(operator)


def evaluate(derivative: Any, x: np.ndarray, argument: Any) -> list[np.ndarray]:
    """The outputs of ``derivative`` at ``x``, its product applied to ``argument``."""
    outputs = list(derivative(x))
    if argument is not None:
        outputs[0] = outputs[0](argument)
    return [np.asarray(output) for output in outputs]


def apply_product(product: Any, argument: Any) -> np.ndarray:
    """A product callable that crossed a process boundary, applied there."""
    return np.asarray(product(argument))


def evaluate_cloudpickled(
    blob: bytes, x: np.ndarray, argument: Any
) -> list[np.ndarray]:
    """``evaluate`` for a derivative function sent as ``cloudpickle`` bytes."""
    import cloudpickle

    return evaluate(cloudpickle.loads(blob), x, argument)

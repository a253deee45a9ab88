"""diffops: derivative functions for gradient-based and Hamiltonian-dynamics algorithms.

Turn a function written in JAX, Autograd or SymNum into its gradient, Hessian,
Jacobian, vector-Jacobian product, matrix-Hessian product and matrix-Tressian product,
each returning the lower orders and the value with it. See :data:`DIFF_OPS` for the
operators and :func:`autodiff_fallback` for the entry point used by sampler libraries.
"""

from diffops.functions import BoundProduct, DerivativeFunction
from diffops.registry import (
    DIFF_OPS,
    AutodiffBackend,
    autodiff_fallback,
    available_backends,
    get_backend,
    register_backend,
    wrap_function,
)

__version__ = "0.1.0"

__all__ = [
    "DIFF_OPS",
    "AutodiffBackend",
    "BoundProduct",
    "DerivativeFunction",
    "__version__",
    "autodiff_fallback",
    "available_backends",
    "get_backend",
    "register_backend",
    "wrap_function",
]

"""diffops: derivative functions for gradient-based and Hamiltonian-dynamics algorithms.

Turn a function written in JAX, Autograd, SymNum or PyTorch into its gradient,
Hessian, Jacobian, vector-Jacobian product, matrix-Hessian product and
matrix-Tressian product, each returning the lower orders and the value with it. See
:data:`DIFF_OPS` for the operators, :func:`autodiff_fallback` for the entry point used
by sampler libraries, :func:`check_derivatives` for checking hand-written ones and
:func:`vectorize` for evaluating one at many points at once.
"""

from diffops.checker import DerivativeCheckError, DerivativeReport, check_derivatives
from diffops.functions import BoundProduct, DerivativeFunction
from diffops.operators import DIFF_OPS
from diffops.registry import (
    AutodiffBackend,
    autodiff_fallback,
    available_backends,
    get_backend,
    register_backend,
    wrap_function,
)
from diffops.vectorized import vectorize

__version__ = "0.1.0"

__all__ = [
    "DIFF_OPS",
    "AutodiffBackend",
    "BoundProduct",
    "DerivativeCheckError",
    "DerivativeFunction",
    "DerivativeReport",
    "__version__",
    "autodiff_fallback",
    "available_backends",
    "check_derivatives",
    "get_backend",
    "register_backend",
    "vectorize",
    "wrap_function",
]

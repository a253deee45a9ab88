"""The six differential operators: one record of facts each, the rest derived.

``x`` has shape ``(n,)``; a *scalar function* ``f`` maps it to a scalar, a *vector
function* ``c`` to shape ``(m,)``. Every derivative function returns a tuple, the
highest derivative first and the function's value last. The product operators return
first a product (``mtp``, ``mhp`` or ``vjp``) bound to ``x``, whose argument has the
shape of the output after it.

Everything else that depends on the operator (which function it applies to, the
names of its outputs, its product and the product argument's shape, the sections
every backend's docstring shares) is read from :data:`OPERATORS`.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

__all__ = [
    "DIFF_OPS",
    "OPERATORS",
    "SCALAR_OPERATORS",
    "VECTOR_OPERATORS",
    "Operator",
    "operator_sections",
]


class Operator(NamedTuple):
    """What there is to know about one differential operator.

    Attributes:
        name: The operator's name, such as ``"mtp_hessian_grad_and_value"``.
        applies_to: ``"scalar"`` for a function ``f`` with a scalar value,
            ``"vector"`` for a function ``c`` with values of shape ``(m,)``
            (``vjp_and_value`` takes values of any shape too).
        outputs: Names of the derivative function's outputs in the order it returns
            them: the product (if any) first, ``"v"`` (the value) last.
        argument: The product's argument, ``"M"`` or ``"u"``; ``None`` for the
            operators without a product.
        argument_shape: Shape of the argument in terms of ``n`` and ``m``, such as
            ``("n", "n")``; ``()`` for the operators without a product.
        definition: The mathematics of the highest output, in the notation above.
    """

    name: str
    applies_to: Literal["scalar", "vector"]
    outputs: tuple[str, ...]
    argument: str | None
    argument_shape: tuple[str, ...]
    definition: str

    @property
    def product(self) -> str | None:
        """The product's name (``"mtp"``, ``"mhp"``, ``"vjp"``), or ``None``."""
        return self.outputs[0] if self.argument is not None else None

    @property
    def labels(self) -> tuple[str, ...]:
        """The outputs as a report names them, the product as applied (``mtp(M)``)."""
        if self.product is None:
            return self.outputs
        return (f"{self.product}({self.argument})", *self.outputs[1:])

    def concrete_argument_shape(self, n: int, m: int) -> tuple[int, ...]:
        """The product argument's shape for a function of ``x`` of shape ``(n,)``."""
        sizes = {"n": n, "m": m}
        return tuple(sizes[axis] for axis in self.argument_shape)


OPERATORS: dict[str, Operator] = {
    operator.name: operator
    for operator in (
        Operator(
            "vjp_and_value",
            "vector",
            ("vjp", "v"),
            "u",
            ("m",),
            "vjp(u) = u @ J with J[i, k] = ∂c[i]/∂x[k], for u of shape (m,) (of c's "
            "shape, for a c of any shape: vjp(u)[k] = Σ_i u[i] ∂c[i]/∂x[k] over its "
            "entries)",
        ),
        Operator(
            "grad_and_value",
            "scalar",
            ("g", "v"),
            None,
            (),
            "g[i] = ∂f/∂x[i]",
        ),
        Operator(
            "hessian_grad_and_value",
            "scalar",
            ("H", "g", "v"),
            None,
            (),
            "H[i, j] = ∂²f/∂x[i]∂x[j]",
        ),
        Operator(
            "mtp_hessian_grad_and_value",
            "scalar",
            ("mtp", "H", "g", "v"),
            "M",
            ("n", "n"),
            "mtp(M)[i] = Σ_jk M[j, k] ∂³f/∂x[i]∂x[j]∂x[k], for M of shape (n, n)",
        ),
        Operator(
            "jacobian_and_value",
            "vector",
            ("J", "v"),
            None,
            (),
            "J[i, k] = ∂c[i]/∂x[k]",
        ),
        Operator(
            "mhp_jacobian_and_value",
            "vector",
            ("mhp", "J", "v"),
            "M",
            ("m", "n"),
            "mhp(M)[k] = Σ_ij M[i, j] ∂²c[i]/∂x[j]∂x[k], for M of shape (m, n)",
        ),
    )
}
"""Every operator's :class:`Operator` record, by name, in the order of ``DIFF_OPS``."""

DIFF_OPS: tuple[str, ...] = tuple(OPERATORS)
"""Names of the differential operators every backend module provides, in order."""

SCALAR_OPERATORS: tuple[str, ...] = tuple(
    name for name, operator in OPERATORS.items() if operator.applies_to == "scalar"
)
"""Operators that apply to a scalar-valued function ``f``."""

VECTOR_OPERATORS: tuple[str, ...] = tuple(
    name for name, operator in OPERATORS.items() if operator.applies_to == "vector"
)
"""Operators that apply to a vector-valued function ``c``."""


# Docstring sections, written once from the records for every backend's operators.

_FUNCTION = {
    "scalar": "func: Scalar function ``f`` of ``x``, an array of shape ``(n,)``.",
    "vector": "func: Vector function ``c`` of ``x``, an array of shape ``(n,)``, with "
    "values of shape ``(m,)``.",
}
_FUNCTION_OF = {
    "vjp_and_value": "func: Function ``c`` of ``x``, an array of shape ``(n,)``, with "
    "values of shape ``(m,)``, or of any shape (a matrix, a scalar), which ``u`` has.",
}
"""Where an operator takes more functions than those it ``applies_to``."""
_OUTPUT = {
    "g": "``g[i] = ∂f/∂x[i]`` of shape ``(n,)``",
    "H": "``H[i, j] = ∂²f/∂x[i]∂x[j]`` of shape ``(n, n)``",
    "J": "``J[i, k] = ∂c[i]/∂x[k]`` of shape ``(m, n)``",
    "v": "the value ``v``",
}
_RAISES = """Raises:
    TypeError: If ``func`` is not callable. The derivative function raises
        ``TypeError`` or ``ValueError``, naming the argument, for an ``x`` that is not
        a 1-D real array, a function of the wrong kind, or a product argument of the
        wrong shape."""


def _returns(operator: Operator) -> str:
    outputs = ", ".join(operator.outputs)
    described = [_OUTPUT[name] for name in operator.outputs if name in _OUTPUT]
    text = f"The derivative function ``x ↦ ({outputs})`` with {', '.join(described)}"
    if operator.product is not None:
        text += (
            f", and ``{operator.product}`` a :class:`~diffops.BoundProduct` bound to "
            f"``x``: ``{operator.definition}``, of shape ``(n,)``"
        )
    return text + "."


def _section(heading: str, text: str, hanging: str = "") -> str:
    """A Google-style section; ``hanging`` indents the lines after the first."""
    body = textwrap.fill(
        text,
        width=88,
        initial_indent="    ",
        subsequent_indent="    " + hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return f"{heading}:\n{body}"


OperatorFunction = TypeVar("OperatorFunction", bound=Callable[..., Any])


def operator_sections(function: OperatorFunction) -> OperatorFunction:
    """Append the Args, Returns and Raises sections shared by operators of its name.

    A decorator for the six operators of a backend module, so that every backend
    documents the arguments and outputs of, say, ``grad_and_value`` in the same words.

    Args:
        function: A function named after one of :data:`DIFF_OPS`.

    Returns:
        ``function`` itself, its docstring extended.
    """
    if function.__doc__ is not None:
        operator = OPERATORS[function.__name__]
        sections = (
            _section(
                "Args",
                _FUNCTION_OF.get(operator.name, _FUNCTION[operator.applies_to]),
                "    ",
            ),
            _section("Returns", _returns(operator)),
            _RAISES,
        )
        function.__doc__ = "\n\n".join([inspect.cleandoc(function.__doc__), *sections])
    return function

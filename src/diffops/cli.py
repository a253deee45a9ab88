"""Command line: ``diffops backends`` and ``diffops demo``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from diffops.registry import REGISTERED_BACKENDS, get_backend

__all__ = ["main"]

AGREEMENT_TOLERANCE = 1e-9
FINITE_DIFFERENCE_TOLERANCE = 1e-6


def _framework_version(backend: str) -> str:
    framework = getattr(get_backend(backend).module, "FRAMEWORK", None)
    if framework is None:
        return "-"
    try:
        return importlib.metadata.version(framework)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _backends(_: argparse.Namespace) -> int:
    print(f"{'backend':<12} {'available':<10} version")
    for name in REGISTERED_BACKENDS:
        available = get_backend(name).available
        version = _framework_version(name) if available else "-"
        print(f"{name:<12} {'yes' if available else 'no':<10} {version}")
    return 0


def _enable_jax_float64() -> None:
    """The demo compares backends in float64, so it turns on JAX's 64-bit mode."""
    if get_backend("jax").available:
        import jax

        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]


def _demo(arguments: argparse.Namespace) -> int:
    from diffops.demo import run_demo

    _enable_jax_float64()
    print(
        "diffops demo: banana-shaped negative log density (n = 5) for the scalar "
        "operators,\ntorus constraint (n = 3, m = 1) for the vector operators; "
        "errors are max |Δ| / max(1, |ref|).\n"
    )
    rows = run_demo(arguments.backend, print_to=sys.stdout)
    failures = [
        row
        for row in rows
        if row.error_vs_reference > AGREEMENT_TOLERANCE
        or row.error_vs_finite_differences > FINITE_DIFFERENCE_TOLERANCE
    ]
    if failures:
        print(f"\n{len(failures)} of {len(rows)} results disagree beyond tolerance:")
        for row in failures:
            print(f"  {row.backend} {row.operator}")
        return 1
    print(
        f"\nAll {len(rows)} results agree across backends (≤ {AGREEMENT_TOLERANCE:g}) "
        f"and with finite differences (≤ {FINITE_DIFFERENCE_TOLERANCE:g})."
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffops", description="Derivative functions from autodiff frameworks."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "backends", help="list backends, whether each is available, and versions"
    ).set_defaults(run=_backends)
    demo = commands.add_parser(
        "demo", help="check and time all six operators on every installed backend"
    )
    demo.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="backend to include (repeatable; default: all available)",
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``diffops`` command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    status: int = arguments.run(arguments)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``diffops backends``, ``diffops demo`` and ``diffops bench``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from diffops.registry import DIFF_OPS, REGISTERED_BACKENDS, get_backend

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


def _bench(arguments: argparse.Namespace) -> int:
    from diffops import bench

    _enable_jax_float64()
    measurements = bench.run_bench(
        arguments.backend,
        arguments.operator or DIFF_OPS,
        arguments.size or bench.DEFAULT_SIZES,
        repeats=arguments.repeats,
        peer=not arguments.no_peer,
        progress=sys.stderr if sys.stderr.isatty() or arguments.progress else None,
    )
    print(
        "µs per call, median over interleaved repeats; ours/fw = diffops ÷ the "
        "framework written directly;\npeer/ours = mici ÷ diffops (speed-up); build "
        "and 1st call are diffops' one-off costs.\n"
    )
    bench.report(measurements)
    if arguments.json:
        bench.write_json(measurements, arguments.json)
        print(f"\nwrote {arguments.json}")
    if arguments.plot:
        bench.plot(measurements, arguments.plot)
        print(f"wrote {arguments.plot}")
    if arguments.memory:
        if not get_backend("jax").available:
            print("\n--memory needs the jax backend, which is not installed.")
            return 1
        calls = arguments.memory_calls
        print(f"\nResident memory growth over {calls} calls of each jax function (MB):")
        for operator, megabytes in bench.measure_memory(calls).items():
            print(f"  {operator:<28} {megabytes:8.2f}")
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
    bench = commands.add_parser(
        "bench", help="time every operator against the framework and the peer (mici)"
    )
    bench.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="backend to measure (repeatable; default: all available)",
    )
    bench.add_argument(
        "--operator",
        action="append",
        metavar="OP",
        choices=list(DIFF_OPS),
        help="operator (repeatable)",
    )
    bench.add_argument(
        "--size",
        action="append",
        type=int,
        metavar="N",
        help="dimension n (repeatable; default: 3, 30, 300)",
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="interleaved repeats per figure (default: 7)",
    )
    bench.add_argument("--no-peer", action="store_true", help="leave mici out")
    bench.add_argument("--plot", metavar="FILE.png", help="draw latency against n")
    bench.add_argument("--json", metavar="FILE", help="write the raw figures")
    bench.add_argument(
        "--memory",
        action="store_true",
        help="also measure memory growth of the jax functions",
    )
    bench.add_argument(
        "--memory-calls",
        type=int,
        default=100_000,
        metavar="K",
        help="calls per function for --memory (default: 100000)",
    )
    bench.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    bench.set_defaults(run=_bench)  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``diffops`` command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    status: int = arguments.run(arguments)
    return status


if __name__ == "__main__":
    sys.exit(main())

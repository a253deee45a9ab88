"""Command line: ``diffops backends``, ``demo``, ``bench``, ``check`` and ``cache``."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

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


def _run_jax_inline() -> None:
    """Run JAX's CPU computations on the calling thread, for ``bench --jax-sync``.

    Read when JAX makes its CPU client, so set before JAX computes anything.
    """
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)  # type: ignore[no-untyped-call]


def _demo(arguments: argparse.Namespace) -> int:
    from diffops.demo import demo_backends, run_demo

    try:
        backends = demo_backends(arguments.backend)
    except ValueError as error:  # a backend the demo cannot run
        arguments.parser.error(str(error))
    _enable_jax_float64()
    print(
        "diffops demo: banana-shaped negative log density (n = 5) for the scalar "
        "operators,\ntorus constraint (n = 3, m = 1) for the vector operators; "
        "errors are max |Δ| / max(1, |ref|).\n"
    )
    rows = run_demo(backends, print_to=sys.stdout)
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


def _positive(text: str) -> int:
    """An argument that must be a positive integer."""
    return _integer(text, 1, "a positive integer")


def _non_negative(text: str) -> int:
    """An argument that must be an integer of 0 or more."""
    return _integer(text, 0, "an integer of 0 or more")


def _integer(text: str, least: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        msg = f"must be {expected}; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _unwritable(path: str) -> str | None:
    """Why a file cannot be written at ``path``; ``None`` where it can.

    Found by opening it to append, and removing it where that made it.
    """
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    if not existed:
        os.remove(os.path.realpath(path))  # the file, where path is a link to it
    return None


def _check_outputs(arguments: argparse.Namespace) -> None:
    """Refuse, before the bench runs, files it could not write afterwards."""
    files = {"--json": arguments.json, "--plot": arguments.plot}
    if arguments.batch is not None:
        given = [option for option, path in files.items() if path]
        given += ["--memory"] if arguments.memory else []
        if given:
            arguments.parser.error(
                f"{' and '.join(given)}: for the latency bench, not --batch"
            )
    for option, path in files.items():
        if path is None:
            continue
        name = os.path.basename(path)
        if name in ("", ".", "..") or os.path.isdir(path):
            arguments.parser.error(f"{option}: needs a file's name; got {path!r}")
        if not os.path.isdir(Path(path).absolute().parent):
            arguments.parser.error(f"{option}: no folder {str(Path(path).parent)!r}")
    same = arguments.json and arguments.plot
    if same and Path(arguments.json).resolve() == Path(arguments.plot).resolve():
        arguments.parser.error("--json and --plot name the same file")
    if arguments.plot:
        from diffops.bench import plot_formats

        try:
            formats = plot_formats()
        except ImportError:
            arguments.parser.error("--plot needs matplotlib: install diffops[bench]")
        suffix = Path(arguments.plot).suffix.lstrip(".").lower()
        if suffix not in formats:
            arguments.parser.error(
                f"--plot: the file's suffix names its format, one of "
                f"{', '.join(formats)}; got {arguments.plot!r}"
            )
    for option, path in files.items():  # last: it writes, if only for a moment
        error = None if path is None else _unwritable(path)
        if error is not None:
            arguments.parser.error(f"{option}: cannot write {path!r}: {error}")


def _bench(arguments: argparse.Namespace) -> int:
    from diffops import bench

    _enable_jax_float64()
    if arguments.jax_sync:
        if not get_backend("jax").available:
            arguments.parser.error("--jax-sync needs the jax backend, not installed")
        _run_jax_inline()
    progress = sys.stderr if sys.stderr.isatty() or arguments.progress else None
    _check_outputs(arguments)
    try:
        bench.checked_backends(
            arguments.backend,
            arguments.operator or DIFF_OPS,
            batch=arguments.batch is not None,
        )
    except ValueError as error:
        arguments.parser.error(str(error))
    if arguments.batch is not None:
        batch = bench.run_batch_bench(
            arguments.backend,
            arguments.operator or DIFF_OPS,
            arguments.size or (3, 30),
            arguments.batch,
            progress=progress,
        )
        print(
            f"Points per second at k = {arguments.batch} points: diffops.vectorize "
            "in one call, and a Python\nloop of per-point calls [d(x) for x in X]; "
            "the best of 5 runs.\n"
        )
        print(bench.format_batch_table(batch), end="")
        return 0
    measurements = bench.run_bench(
        arguments.backend,
        arguments.operator or DIFF_OPS,
        arguments.size or bench.DEFAULT_SIZES,
        repeats=arguments.repeats,
        peer=not arguments.no_peer,
        progress=progress,
    )
    print(
        "µs per call, median over interleaved repeats. ours/hand = diffops ÷ the "
        "fastest\nhand-written form (named; see docs/backends.md); ours/owned = "
        "diffops ÷ the fastest\nsuch form with diffops' guarantees written in "
        "(outputs copied into new arrays,\nproducts bound to a copy of x); "
        "mici/ours = mici ÷ diffops (a speed-up);\nmax |Δ| = the largest difference "
        "between their outputs. call+product is a call\nfollowed by one product, as "
        "a sampler uses them.\n"
    )
    if arguments.jax_sync:
        print("JAX's CPU computations ran on the calling thread (--jax-sync).\n")
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


def _load(
    spec: str, argument: str, modules: dict[Path, ModuleType]
) -> Callable[..., Any]:
    """The object named by ``FILE.py:NAME``; ``ValueError`` saying what is wrong.

    Each file is run once, into ``modules`` (by its resolved path): ``f`` and its
    derivatives named in one file see the same module-level data, drawn at random
    or loaded, as they would imported.
    """
    path, _, name = spec.rpartition(":")
    if not path or not name:
        msg = f"{argument} must be FILE.py:NAME; got {spec!r}"
        raise ValueError(msg)
    if not Path(path).is_file():
        msg = f"{argument}: no file {path!r}"
        raise ValueError(msg)
    resolved = Path(path).resolve()
    if resolved not in modules:
        modules[resolved] = _run_file(path, argument)
    function: Callable[..., Any] | None = getattr(modules[resolved], name, None)
    if not callable(function):
        msg = f"{argument}: {path!r} has no function {name!r}"
        raise ValueError(msg)
    return function


def _run_file(path: str, argument: str) -> ModuleType:
    """The module that running the file at ``path`` makes."""
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if module_spec is None or module_spec.loader is None:
        msg = f"{argument}: {path!r} is not a Python file"
        raise ValueError(msg)
    # As `python FILE.py` would: the file's folder first on the path, so that the
    # modules beside it import, and the module registered, so that what it defines
    # pickles by reference.
    folder = str(Path(path).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules.setdefault(module_spec.name, module)
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # sys.exit in it is no verdict of ours
        error.add_note(f"raised while running {path}")
        raise _Raised(error) from error
    return module


class _Raised(Exception):  # noqa: N818 (it carries, rather than is, the error)
    """What the user's code raised, ``SystemExit`` included, for :func:`_failed`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def _turn_on_jax_float64() -> bool:
    """Turn on JAX's 64-bit mode for the user's file, unless they chose otherwise.

    ``diffops check`` owns its process, so it may; through the environment, so that
    JAX (if the file imports it) starts in that mode. Returns whether it did.
    """
    if "JAX_ENABLE_X64" in os.environ:
        return False
    os.environ["JAX_ENABLE_X64"] = "1"
    return True


def _failed(arguments: argparse.Namespace, what: str, error: BaseException) -> int:
    """Say in one paragraph what raised (the traceback with ``--debug``); status 2.

    ``SystemExit`` too, where the user's code calls ``sys.exit``: a check that ends
    so has not passed, whatever the exit status asked for.
    """
    if isinstance(error, _Raised):
        error = error.error
    if arguments.debug:
        traceback.print_exception(error)
    notes = "; ".join(getattr(error, "__notes__", ()))
    said = f"{type(error).__name__}: {error}"
    if isinstance(error, SystemExit):
        said = f"sys.exit({error.code!r}) was called"
    print(
        f"diffops check: {what}: {said}"
        + (f" ({notes})" if notes else "")
        + ("" if arguments.debug else "\n(--debug shows the traceback.)"),
        file=sys.stderr,
    )
    return 2


def _check(arguments: argparse.Namespace) -> int:
    import numpy as np

    from diffops.checker import check_derivatives

    parser: argparse.ArgumentParser = arguments.parser
    if arguments.dim < 1 or arguments.points < 1:
        parser.error("--dim and --points must be positive")
    for name in ("rtol", "atol"):
        tolerance = getattr(arguments, name)
        if tolerance is not None and not tolerance >= 0:
            parser.error(f"--{name} must be a non-negative number; got {tolerance}")
    turned_on = _turn_on_jax_float64()
    try:
        modules: dict[Path, ModuleType] = {}
        func = _load(arguments.function, "FUNCTION", modules)
        derivatives = {}
        for item in arguments.derivative:
            operator, equals, spec = item.partition("=")
            if not equals or operator not in DIFF_OPS:
                parser.error(
                    f"--derivative must be OP=FILE.py:NAME with OP one of "
                    f"{', '.join(DIFF_OPS)}; got {item!r}"
                )
            if operator in derivatives:
                parser.error(f"--derivative {operator} is given twice")
            derivatives[operator] = _load(spec, f"--derivative {operator}", modules)
    except ValueError as error:
        parser.error(str(error))
    except Exception as error:  # the user's file raised as it was run
        return _failed(arguments, "could not run the file", error)
    if arguments.reference != "finite_differences":
        try:
            if not get_backend(arguments.reference).available:
                parser.error(f"--reference {arguments.reference}: not installed here")
        except ValueError as error:
            parser.error(f"--reference: {error}")
    rng = np.random.default_rng(arguments.seed)
    points = rng.standard_normal((arguments.points, arguments.dim))
    try:
        with warnings.catch_warnings():
            # The report says the precision; the library's advice is for its users.
            warnings.filterwarnings("ignore", "check_derivatives: the outputs are")
            report = check_derivatives(
                func,
                derivatives,
                points,
                reference=arguments.reference,
                rtol=arguments.rtol,
                atol=arguments.atol,
                seed=arguments.seed,
            )
    except (Exception, SystemExit) as error:  # the user's code, or differentiating it
        return _failed(
            arguments,
            f"could not evaluate the derivatives at x of shape ({arguments.dim},)",
            error,
        )
    if turned_on and "jax" in sys.modules:
        print(
            "JAX's 64-bit mode is on for this check, so that JAX computes in "
            "float64 (set JAX_ENABLE_X64=0 to check in float32).\n"
        )
    elif report.precision == "float32" and "jax" in sys.modules:
        print(
            f"JAX's 64-bit mode is off (JAX_ENABLE_X64={os.environ['JAX_ENABLE_X64']}"
            "), so the outputs are float32 and are checked at that precision.\n"
        )
    print(report)
    return 0 if report.ok else 1


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


def _cache(arguments: argparse.Namespace) -> int:
    from diffops import cache

    try:
        directory = cache.cache_directory()
    except OSError as error:
        print(f"diffops cache: {error}", file=sys.stderr)
        return 1
    if directory is None:
        print("the cache is off (DIFFOPS_NO_CACHE is set)")
        return 0
    try:
        if arguments.action == "clear":
            removed = cache.clear()
            entries = "entry" if removed == 1 else "entries"
            print(f"removed {removed} {entries} from {directory}")
            return 0
        found = cache.summary()
    except OSError as error:  # a directory it may not read, entries it cannot remove
        print(f"diffops cache: {directory}: {error}", file=sys.stderr)
        return 1
    origin = "DIFFOPS_CACHE_DIR" if os.environ.get("DIFFOPS_CACHE_DIR") else "default"
    print(f"location  {found.directory} ({origin})")
    print(f"entries   {found.entries}")
    print(f"size      {_size(found.size)}")
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
        help="backend to include (repeatable; default: every built-in one installed)",
    )
    demo.set_defaults(run=_demo, parser=demo)
    bench = commands.add_parser(
        "bench",
        help="time every operator against the fastest hand-written code and mici",
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
        type=_positive,
        metavar="N",
        help="dimension n (repeatable; default: 3, 30, 300, 1000, each up to the "
        "backend's limit)",
    )
    bench.add_argument(
        "--repeats",
        type=_positive,
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
        type=_positive,
        default=100_000,
        metavar="K",
        help="calls per function for --memory (default: 100000)",
    )
    bench.add_argument(
        "--batch",
        type=_positive,
        metavar="K",
        help="instead, the throughput of diffops.vectorize at K points against a "
        "loop of per-point calls (default sizes: 3, 30)",
    )
    bench.add_argument(
        "--jax-sync",
        action="store_true",
        help="run JAX's CPU computations on the calling thread, as "
        "jax.config.update('jax_cpu_enable_async_dispatch', False) does",
    )
    bench.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    bench.set_defaults(run=_bench, parser=bench)  # fmt: skip
    check = commands.add_parser(
        "check",
        help="check hand-written derivatives against finite differences or a backend",
        description="Check hand-written derivative functions against finite "
        "differences or a backend, at random points. JAX's 64-bit mode is turned on "
        "for the file checked, unless JAX_ENABLE_X64 is set. Exit status: 0 when "
        "every output matches, 1 when any does not, 2 on bad arguments or when the "
        "function, a derivative or the reference raises.",
    )
    check.add_argument(
        "function", metavar="FILE.py:FUNC", help="the function being differentiated"
    )
    check.add_argument(
        "--derivative",
        action="append",
        required=True,
        metavar="OP=FILE.py:NAME",
        help="your derivative function for operator OP, one of "
        f"{', '.join(DIFF_OPS)} (repeatable)",
    )
    check.add_argument(
        "--dim", type=int, required=True, metavar="N", help="dimension n of x"
    )
    check.add_argument(
        "--points",
        type=int,
        default=3,
        metavar="K",
        help="number of random points (default: 3)",
    )
    check.add_argument(
        "--reference",
        default="finite_differences",
        metavar="NAME",
        help="finite_differences (default) or a backend name",
    )
    check.add_argument(
        "--seed",
        type=_non_negative,
        default=0,
        metavar="S",
        help="seed of the points and of M and u (default: 0)",
    )
    check.add_argument(
        "--rtol",
        type=float,
        metavar="R",
        help="relative tolerance (default: 1e-5 for float64 outputs, 5e-4 for float32)",
    )
    check.add_argument(
        "--atol",
        type=float,
        metavar="A",
        help="absolute tolerance, relative to the largest entry of each output "
        "(default: 1e-6 for float64 outputs, 1e-4 for float32)",
    )
    check.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback when the function or a derivative raises",
    )
    check.set_defaults(run=_check, parser=check)  # fmt: skip
    cache = commands.add_parser(
        "cache",
        help="show or clear the on-disk cache of SymNum's generated code",
        description="Show where the cache of SymNum's generated code lies, how many "
        "entries it holds and their size; 'diffops cache clear' empties it. The "
        "cache lies in DIFFOPS_CACHE_DIR if set, else in the user cache directory; "
        "DIFFOPS_NO_CACHE=1 turns it off.",
    )
    cache.add_argument(
        "action",
        nargs="?",
        choices=["show", "clear"],
        default="show",
        help="show (default) or clear",
    )
    cache.set_defaults(run=_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``diffops`` command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    try:
        status: int = arguments.run(arguments)
        sys.stdout.flush()  # here, where a closed pipe can be caught
    except BrokenPipeError:
        # The reader stopped reading, as in `diffops cache | head -1`: stop without a
        # traceback, as other command-line tools do. Python flushes stdout again as
        # it exits, so it is pointed at the null device first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())

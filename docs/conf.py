"""Sphinx configuration: `make docs` builds the site into docs/_build/html."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging as sphinx_logging

import diffops

_logger = sphinx_logging.getLogger(__name__)

project = "diffops"
author = "the diffops developers"
copyright = "2026, the diffops developers"
release = diffops.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
# Every cross-reference must resolve; the frameworks' own names are not linked.
nitpicky = True
nitpick_ignore_regex = [
    ("py:.*", r"(numpy|np|jax|jnp|torch|autograd|symnum|sympy|dask)\..*"),
    ("py:class", r"(Callable|Any|ModuleType|Sequence|Mapping|TextIO|Path)"),
    ("py:class", r"collections\.abc\..*|typing\..*|types\..*|pathlib\..*"),
    ("py:class", r"threading\..*"),
    ("py:class", r"diffops\..*\.(OperatorFunction|Pullback)"),
]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The gallery runs the examples with the figures drawn off screen, in 64-bit JAX.
os.environ.setdefault("MPLBACKEND", "Agg")
# JAX logs, at INFO, each accelerator platform it does not find.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"parallel_chains\.py",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "write_computation_times": False,
}

html_theme = "furo"
html_title = f"diffops {release}"
html_static_path = ["_static"]
html_css_files = ["diffops.css"]

# Formulas render from a file the site ships, so the pages read with no network:
# MathJax 3's SVG build with every TeX extension, one self-contained file (its glyphs
# are paths, so no fonts are loaded), from the package that distributes MathJax for
# Python. Rendered in the browser by MathJax, formulas look the same everywhere,
# whatever math fonts the reader has, which native MathML depends on.
MATHJAX_FILE = "tex-svg-full.js"
mathjax_path = f"mathjax/{MATHJAX_FILE}"


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.submodule_search_locations is None:
        msg = "the docs need MathJax: pip install django-static-mathjax"
        raise RuntimeError(msg)
    source = Path(next(iter(spec.submodule_search_locations)))
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "static" / "mathjax" / "es5" / MATHJAX_FILE, target)


def _check_docstring(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    lines: list[str],
) -> None:
    """Warn, so failing the build, where a docstring leaves an argument undocumented.

    Runs after napoleon has turned the Google-style sections into fields, so a
    section that napoleon could not read counts as missing.
    """
    if what not in ("function", "class") or not callable(obj):
        return
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    text = "\n".join(lines)
    missing = [
        parameter.name
        for parameter in signature.parameters.values()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and f":param {parameter.name}:" not in text
        and f".. attribute:: {parameter.name}" not in text
    ]
    if missing:
        _logger.warning(f"{name}: no Args entry for {', '.join(missing)}")
    returns = signature.return_annotation
    if what == "function" and returns not in ("None", None) and ":returns:" not in text:
        _logger.warning(f"{name}: no Returns section")


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-docstring", _check_docstring, priority=900)
    app.connect("build-finished", _copy_mathjax)

"""The documentation's Python examples run as written, and cover the public API."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKETCH = "# sketch"
# A block that begins so runs after the block before it, as the page reads.
CONTINUED = "# continued"


def _programs() -> list[tuple[str, str]]:
    programs = []
    for document in DOCUMENTS:
        blocks = re.findall(r"```python\n(.*?)```", document.read_text(), re.DOTALL)
        program = ""
        for index, block in enumerate(blocks):
            # A continued block runs after all that it continues, as the page reads.
            program = program + block if block.startswith(CONTINUED) else block
            programs.append((f"{document.name}-{index}", program))
    return programs


PROGRAMS = _programs()


@pytest.mark.parametrize(
    "program", [p for _, p in PROGRAMS], ids=[i for i, _ in PROGRAMS]
)
def test_documented_example_runs(program):
    if program.startswith(SKETCH):
        pytest.skip("a sketch around the reader's own code, not a whole program")
    if '"cuda"' in program:
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("this example needs a CUDA device")
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _public_names() -> list[str]:
    modules = [
        "diffops",
        "diffops.operators",
        "diffops.functions",
        "diffops.validation",
        "diffops.vectorized",
        "diffops.backends.jax",
        "diffops.backends.autograd",
        "diffops.backends.symnum",
        "diffops.backends.torch",
        "diffops.checker",
        "diffops.finite_differences",
    ]
    names = []
    for module in modules:
        public = importlib.import_module(module).__all__
        names += [
            f"{module}.{name}"
            for name in public
            if name not in ("AVAILABLE", "FRAMEWORK")
        ]
    return names


def _documented(name: str, reference: str) -> bool:
    """In its module's section, or, if the package hands it on, in the package's."""
    import diffops

    module, _, attribute = name.rpartition(".")
    if module == "diffops" or attribute in diffops.__all__:
        return f"diffops.{attribute}" in reference
    section = reference.split(f"automodule:: {module}\n")[1].split("```")[0]
    return re.search(rf"\b{attribute}\b", section) is not None


def test_api_reference_documents_every_public_name():
    reference = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in _public_names() if not _documented(name, reference)]
    assert not missing, f"not in docs/api.md: {missing}"

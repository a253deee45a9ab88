"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    if BLOCKS[index].startswith("# sketch"):
        pytest.skip("a sketch around the reader's own code, not a whole program")
    if '"cuda"' in BLOCKS[index]:
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("this example needs a CUDA device")
    result = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

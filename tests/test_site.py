"""The built documentation site reads with no network.

Runs over ``docs/_build/html``, which ``make test`` builds before the suite: no page may
load a script, style sheet, font, image or frame from another host (links to other
sites are fine: they load nothing), and the formulas' renderer must be the site's own.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

SITE = Path(__file__).parent.parent / "docs" / "_build" / "html"
EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)


class _Resources(HTMLParser):
    """The addresses a page loads: scripts, style sheets, fonts, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed"):
            self.loaded += [v for k, v in attrs if k in ("src", "srcset") and v]
        if tag == "link" and values.get("href"):
            relations = (values.get("rel") or "").lower().split()
            if not {"stylesheet", "preload", "icon", "modulepreload"}.isdisjoint(
                relations
            ):
                self.loaded.append(str(values["href"]))
        if values.get("style"):
            self.loaded += re.findall(r"url\(['\"]?([^'\")]+)", str(values["style"]))


def _site() -> Path:
    if not (SITE / "index.html").exists():
        if os.environ.get("CI"):
            pytest.fail("the site is not built: make test builds it before the suite")
        pytest.skip("the site is not built here: run `make docs` first")
    return SITE


def test_no_page_loads_anything_from_another_host():
    site = _site()
    external = []
    for page in sorted(site.rglob("*.html")):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        external += [(page.name, a) for a in parser.loaded if EXTERNAL.match(a)]
    for sheet in sorted(site.rglob("*.css")):
        text = sheet.read_text(encoding="utf-8", errors="replace")
        addresses = re.findall(r"url\(['\"]?([^'\")]+)", text)
        addresses += re.findall(r"@import\s+['\"]([^'\"]+)", text)
        external += [(sheet.name, a) for a in addresses if EXTERNAL.match(a)]
    assert not external, external


def test_formulas_are_rendered_by_the_sites_own_mathjax():
    site = _site()
    page = (site / "operators.html").read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(page)
    mathjax = [a for a in parser.loaded if "mathjax" in a.lower()]
    assert mathjax, "the operators page loads no MathJax"
    for address in mathjax:
        assert (site / address.split("?")[0]).is_file(), address


def test_api_reference_lists_each_backends_operators_in_diff_ops_order():
    from diffops import DIFF_OPS

    page = (_site() / "api.html").read_text(encoding="utf-8")
    for backend in ("jax", "autograd", "symnum", "torch"):
        names = re.findall(rf'id="diffops\.backends\.{backend}\.(\w+)"', page)
        assert [n for n in names if n in DIFF_OPS] == list(DIFF_OPS), backend

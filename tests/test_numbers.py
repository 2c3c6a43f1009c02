"""Every number in a notebook's prose comes from its code: a test that notices stale prose (issue 14).

A number with 3 or more significant digits in a markdown cell must appear in some stored output of the same
notebook, or carry a visible citation marker. ``--nbval-lax`` compares no outputs, so without this test prose
numbers go stale silently (notebook 04 kept an old dcgan row after the checkpoint changed).

**What counts as a number** (in the markdown source, after removing inline code, link targets and URLs):
a run of digits with optional thousands separators ("60,000" is 60000), an optional decimal part, an optional
exponent ("2e-4") and an optional percent sign. The sign is ignored ("-20.5" and "−20.5" are 20.5). Not numbers:
section and version references (a digit group with two or more dots, "3.1.2", or after "§"), digits inside words
("c27", "ch01", "x28" after a letter), names joined by a hyphen ("SHA-256"), and four-digit years 1900-2099
(citations such as "Goodfellow et al. 2014").

**Significant digits**: leading zeros never count; trailing zeros of an integer do not ("60,000" has one, "784"
three); trailing zeros after a decimal point do ("0.100" has three).

**When an output matches**: an output number (stream text, ``text/plain``, ``text/html``, ``text/markdown``,
``text/latex``; never images) matches a prose number written with ``d`` decimals when it rounds to it at ``d``
decimals (half up): "9.65" matches 9.65, 9.654 and 9.6541; "1,022" matches 1022. A percentage "61.5%" also matches a
fraction that is 61.5 % at the same precision (0.615, 0.6153).

**Marked exceptions**, which a reader does not see: a literature value or a constant is followed, on the same source
line, by an HTML comment ``<!-- lit: SOURCE -->`` or ``<!-- const: WHAT -->``, e.g. "95.6% of queries
<!-- lit: FAISS bench_ivf_fastscan, SIFT1M -->". Markdown renders no HTML comment, in JupyterLab, on GitHub or in
the book. The marker covers the numbers before it on its line (after any earlier marker on that line).
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import pytest

from prodlab import config

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("*.ipynb"))
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")

_NUMBER = re.compile(r"(?<![\w.§])(?<![A-Za-z]-)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)*(?:[eE][-+]?\d+)?(?:\s?%)?")
_OUTPUT_NUMBER = re.compile(r"(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_MARKER = re.compile(r"<!--\s*(?:lit|const):.*?-->")
_VISIBLE_MARKER = re.compile(r"\[(?:lit|const):")  # the old form, which readers saw
_STRIP = [re.compile(r"`[^`\n]*`"), re.compile(r"\]\([^)]*\)"), re.compile(r"https?://\S+"),
          re.compile(r"<!--.*?-->", re.S)]


def significant_digits(token: str) -> int:
    """Significant digits of a prose number such as "9.65", "60,000", "0.0077", "12.5%"."""
    body = token.rstrip("% ").replace(",", "")
    mantissa = re.split(r"[eE]", body)[0]
    if "." in mantissa:
        return len(mantissa.replace(".", "").lstrip("0"))
    return len(mantissa.strip("0"))


def prose_numbers(markdown: str) -> list[str]:
    """The numbers with 3+ significant digits in ``markdown`` that no ``[lit: ...]``/``[const: ...]`` marker covers."""
    found = []
    for line in markdown.splitlines():
        covered_until = max((m.end() for m in _MARKER.finditer(line)), default=0)
        for pattern in _STRIP:  # blanked, not removed: the marker's position still counts
            line = pattern.sub(lambda m: " " * len(m.group(0)), line)
        for m in _NUMBER.finditer(line):
            token = m.group(0).strip()
            if m.start() < covered_until or token.count(".") > 1:
                continue
            plain = token.rstrip("% ").replace(",", "")
            if re.fullmatch(r"(19|20)\d\d", plain) or significant_digits(token) < 3:
                continue
            found.append(token)
    return found


def output_text(nb: dict) -> str:
    """All text the notebook's code cells output (streams and text representations; no images)."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out.get("text", "")))
            for mime in TEXT_MIMES:
                parts.append("".join(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def output_numbers(text: str) -> list[Decimal]:
    values = []
    for token in _OUTPUT_NUMBER.findall(text):
        try:
            values.append(Decimal(token.replace(",", "")))
        except InvalidOperation:
            continue
    return values


def _rounded(values: list[Decimal], decimals: int) -> set[Decimal]:
    quantum = Decimal(1).scaleb(-decimals)
    out = set()
    for v in values:
        try:
            out.add(v.quantize(quantum, rounding=ROUND_HALF_UP))
        except InvalidOperation:  # too many digits for the context: not a match at this precision
            continue
    return out


def unmatched(nb: dict) -> list[str]:
    """The prose numbers (3+ significant digits, unmarked) of ``nb`` that appear in none of its outputs."""
    values = output_numbers(output_text(nb))
    cache: dict[tuple[int, bool], set[Decimal]] = {}
    missing = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for token in prose_numbers("".join(cell["source"])):
            plain = token.rstrip("% ").replace(",", "")
            target = Decimal(plain)
            decimals = max(-target.as_tuple().exponent, 0)
            percent = token.endswith("%")
            if (decimals, False) not in cache:
                cache[(decimals, False)] = _rounded(values, decimals)
            hits = target in cache[(decimals, False)]
            if percent and not hits:
                if (decimals, True) not in cache:
                    cache[(decimals, True)] = _rounded([v * 100 for v in values], decimals)
                hits = target in cache[(decimals, True)]
            if not hits:
                missing.append(token)
    return missing


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_prose_number_comes_from_an_output(path):
    missing = sorted(set(unmatched(_load(path))))
    assert not missing, (f"{path.name}: prose numbers in no output: {missing}. Print them from code, or mark a "
                         "literature value <!-- lit: SOURCE --> / a constant <!-- const: WHAT --> after them")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_marker_shows_in_the_rendered_text(path):
    visible = [cell["id"] for cell in _load(path)["cells"]
               if cell["cell_type"] == "markdown" and _VISIBLE_MARKER.search("".join(cell["source"]))]
    assert not visible, f"{path.name}: cells {visible} show a [lit: ...] or [const: ...] marker: hide it in a comment"


def test_the_rules_on_examples():
    assert significant_digits("60,000") == 1 and significant_digits("784") == 3
    assert significant_digits("0.0077") == 2 and significant_digits("0.100") == 3 and significant_digits("12.5%") == 3
    prose = ("FID 9.65 (was 12.98) on 60,000 images; §3.1.2; Goodfellow et al. 2014; ch101; SHA-256; `lr=2.5e-4`; "
             "0.0077 and 99.97 %\nrecall 95.6% <!-- lit: FAISS wiki --> but 1.386 <!-- const: log 4 --> after 4.567")
    assert prose_numbers(prose) == ["9.65", "12.98", "99.97 %", "4.567"]
    nb = {"cells": [
        {"cell_type": "markdown", "source": ["FID 9.65, share 61.5%, 60.1%, 1,022 times, 8.13"]},
        {"cell_type": "code", "source": [], "outputs": [
            {"output_type": "stream", "text": ["fid 9.654097 share 0.6153 ratio 1022.4\n"]},
            {"output_type": "display_data", "data": {"image/png": "8.13", "text/plain": "60.1 %"}}]},
    ]}
    assert unmatched(nb) == ["8.13"]  # 9.65 <- 9.654; 61.5% <- 0.6153; 60.1% <- "60.1 %"; 1,022 <- 1022.4

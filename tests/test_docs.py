"""The README stays a ten-minute read and the documentation's links lead somewhere.

Every relative link in README.md and docs/*.md must name an existing file (and, with ``#anchor``, one of its
headings, slugged as GitHub does); the sections the code's messages send users to ("see README, 'Raw data
contract'") must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 350

_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.S | re.M)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (a ``# comment`` in a bash block is no heading)."""
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?) *#*$", _prose(path.read_text()), re.M)}


def _relative_links(path: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(path.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_there_are_docs_to_check() -> None:
    assert README.is_file() and len(DOCS) >= 5, DOCS


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(doc: Path) -> None:
    broken = []
    for target in _relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: fix these links:\n" + "\n".join(broken)


def test_every_doc_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _relative_links(README)}
    assert not [d.name for d in DOCS if d.resolve() not in linked], "add them to the README's Documentation table"


def test_the_readme_stays_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_the_readme_quick_start_is_make_run_and_make_test() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 1)]
    first_block = re.search(r"```bash\n(.*?)```", quick, re.S)
    assert first_block, "README: the quick start has no bash block"
    assert [line.split("#")[0].strip() for line in first_block.group(1).splitlines()] == ["make run", "make test"]


def test_the_readme_keeps_the_rejection_reasons_table() -> None:
    section = README.read_text().split("## Raw data contract", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (customers|transactions) \| (.+) \|$", section, re.M)}
    assert set(rows) == {"customers", "transactions"}, "README: the table of rejection reasons is missing"
    assert "duplicate `customer_id`" in rows["customers"] and "unknown `customer_id`" in rows["transactions"]


def test_the_sections_the_code_refers_to_exist_in_the_readme() -> None:
    """Error messages and help texts say "see README, 'Section'": that section must be a README heading or a
    paragraph's bold lead ("**Label and cutoff.**")."""
    prose = _prose(README.read_text())
    headings = {m.group(1) for m in re.finditer(r"^#{2,3} +(.+?)\s*$", prose, re.M)}
    headings |= {m.group(1) for m in re.finditer(r"^\*\*(.+?)\.?\*\*", prose, re.M)}
    packages = ("churn", "components", "pipelines", "serving", "monitoring")
    sources = [ROOT / "pipeline.py", *(p for d in packages for p in (ROOT / d).rglob("*.py"))]
    missing = []
    for source in sources:
        for name in re.findall(r"README, ['\"]([^'\"]+)['\"]", source.read_text()):
            if not any(h == name or h.startswith(name) or name in h for h in headings):
                missing.append(f"{source.relative_to(ROOT)}: README, '{name}'")
    assert not missing, "README sections named in the code but missing:\n" + "\n".join(missing)

"""Every relative link in README.md and docs/*.md points at a file that exists, and an anchor at
one of its headings (GitHub's spelling: lower case, punctuation dropped, spaces as hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in path.read_text(encoding="utf-8").split("\n") if line.startswith("#")}


def broken_links(root: Path = ROOT) -> list[str]:
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):          # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
                broken.append(f"{page.relative_to(root)}: {target}")
    return broken


def test_the_check_sees_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n[ok](../README.md#the-top) [gone](b.md) [web](https://x.org)\n")
    (tmp_path / "README.md").write_text("# The top\n[a](docs/a.md#a-page) [no anchor](docs/a.md#nowhere)\n")
    assert broken_links(tmp_path) == ["README.md: docs/a.md#nowhere", "docs/a.md: b.md"]


def test_every_relative_link_resolves():
    assert broken_links() == []


def test_the_readme_fits_an_hour():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").split("\n")) <= 251   # 250 lines and the final newline

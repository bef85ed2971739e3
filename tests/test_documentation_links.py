"""Every relative link and image in README.md and docs/*.md names a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target "title")


def relative_targets(text: str) -> list[str]:
    """The link targets of markdown ``text`` that point into the repository (no URL, no pure anchor)."""
    targets = []
    for target in LINK.findall(re.sub(r"(```|~~~).*?\1", "", text, flags=re.S)):  # code blocks hold no links
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_the_link_pattern_finds_links_and_images_and_skips_urls_and_code() -> None:
    text = '[a](docs/a.md) ![p](img/p.png) [u](https://x.org/y) [s](#top) [b](b.md#part) [t](t.md "title")'
    text += "\n```\n[c](c.md)\n```\n~~~\n[d](d.md)\n~~~"
    assert relative_targets(text) == ["docs/a.md", "img/p.png", "b.md", "t.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path) -> None:
    missing = [
        t
        for t in relative_targets(document.read_text())
        if not (document.parent / t).resolve().is_relative_to(REPO) or not (document.parent / t).exists()
    ]
    assert not missing, f"{document.relative_to(REPO)} links to missing files: {missing}"

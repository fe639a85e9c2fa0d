"""Every relative link and figure in README.md and docs/ points at a file a clean clone has.

A figure the README shows but .gitignore keeps out of the repository is a broken image for every
user: on disk here, absent in a clone. So a target must exist and, where git is there to ask,
must not be ignored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# [text](target) and ![alt](target); the target up to a space, a '#' or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)[^)]*\)")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_targets(page: Path) -> list[Path]:
    text = page.read_text()
    # Fenced code is shown, not linked.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            continue  # a URL (https:, s3:, mailto:) or an absolute path: not a file of the repository
        targets.append((page.parent / target).resolve())
    return targets


def ignored(paths: list[Path]) -> set[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists() or not paths:
        return set()
    done = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--stdin"],
        input="\n".join(str(p.relative_to(ROOT)) for p in paths),
        capture_output=True,
        text=True,
        check=False,
    )
    return {(ROOT / line).resolve() for line in done.stdout.splitlines() if line}


def test_the_link_pattern_finds_links_figures_and_skips_urls(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        'see [the guide](guide.md#setup) and ![a figure](figs/a.png "title")\n'
        "[the site](https://example.org/x.md), [a bucket](s3://b/k)\n```\n[not a link](code.md)\n```\n"
    )
    assert relative_targets(page) == [tmp_path / "guide.md", tmp_path / "figs" / "a.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_is_a_file_of_the_repository(page):
    targets = relative_targets(page)
    missing = [str(t.relative_to(ROOT)) for t in targets if not t.exists()]
    assert not missing, f"{page.relative_to(ROOT)} links files that do not exist: {missing}"
    inside = [t for t in targets if t.is_relative_to(ROOT)]
    kept_out = sorted(str(t.relative_to(ROOT)) for t in ignored(inside))
    assert not kept_out, f"{page.relative_to(ROOT)} links files .gitignore keeps out of a clone: {kept_out}"

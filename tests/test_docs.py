"""The README stays a user's guide (short, few commit hashes, no copied reference tables) and
every relative link of the README and docs/ leads to a file and heading that exist."""

import re

from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"


def _prose(path) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"```.*?```", "", path.read_text(), flags=re.S)


def _anchors(path) -> set[str]:
    """GitHub's anchors of the page's headings."""
    headings = re.findall(r"^#+ (.+)$", _prose(path), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}  # fmt: skip


def test_the_readme_is_short_with_few_commit_hashes():
    text = README.read_text()
    assert len(text.split()) <= 1600, "README.md: move reference material to docs/"
    assert len(re.findall(r"`[0-9a-f]{7,40}`", text)) <= 3, "README.md: commits belong in docs/"


def test_the_priors_table_lives_only_in_the_architecture_page():
    """One table of priors and one of transforms (docs/architecture.md, checked against the
    registries by tests/test_architecture_examples.py); other pages link to it."""
    for page in PAGES:
        headers = r"^\| *`--(?:prior|transform)` *\|.*\n\|[-:| ]+\|$"  # a table's first row
        copies = re.findall(headers, page.read_text(), re.M)
        expected = 2 if page == ARCHITECTURE else 0
        assert len(copies) == expected, f"{page.name}: the tables of priors and transforms live " \
            "in docs/architecture.md#priors-and-transforms; link to them"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for link in re.findall(r"\]\(([^)\s]+)\)", _prose(page)):
            if re.match(r"[a-z]+:", link):  # http(s), mailto
                continue
            target, _, anchor = link.partition("#")
            path = (page.parent / target) if target else page
            if not path.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.name}: {link} (no such heading)")
    assert not broken, broken

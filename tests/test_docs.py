"""README.md, BENCHMARKS.md and docs/: every relative link points at a file that exists and, with a
#fragment, at a heading of that file (GitHub's anchors), so moving text between pages cannot leave a dead
link behind."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str) -> str:
    """The page without fenced code blocks and inline code, where brackets are not links."""
    out, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as '-', repeats numbered -1, -2."""
    seen: dict[str, int] = {}
    result = set()
    fenced = False
    for line in page.read_text().split("\n"):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def links(page: Path):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page):
    dead = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            dead.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            dead.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert not dead, f"{page.relative_to(ROOT)}: dead links:\n" + "\n".join(dead)


def test_the_anchor_rule_is_githubs():
    """The slugs the link check compares with, on headings of the kind these pages use."""
    page = ROOT / "docs" / "methods.md"
    got = anchors(page)
    assert "the-task-heads-learning-rate-is-the-same-for-every-method" in got
    assert "seeds-where-petsweep-follows-and-differs" in got
    assert "config-groups-conf" in anchors(ROOT / "docs" / "configuration.md")


def test_readme_starts_with_the_two_commands_ci_runs():
    """The developers' guide: README's first code block sets everything up and runs the default job, then runs
    the tests, as .ci/run does (./install.sh, then pytest)."""
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().split("\n")
    ci = (ROOT / ".ci" / "run").read_text()
    assert first[0].startswith("./install.sh && .venv/bin/python run.py")
    assert first[1].startswith(".venv/bin/python -m pytest -n 2")
    assert "./install.sh" in ci and ".venv/bin/python -m pytest -n 2" in ci

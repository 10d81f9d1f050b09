"""Every link in README, CONTRIBUTING and docs/ resolves: relative links to a file
that exists (and to a heading that exists, for #anchors), and every docs/*.md a
page or the CLI's help names is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
DOC_MENTION = re.compile(r"\bdocs/[\w.-]+\.md\b")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to -."""
    s = re.sub(r"[`*_]", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in
            re.finditer(r"^#+\s+(.*)$", _without_code_blocks(page.read_text()), re.M)}


def _links():
    for page in PAGES:
        for target in LINK.findall(_without_code_blocks(page.read_text())):
            if re.match(r"[a-z]+:", target):         # http(s), mailto: not fetched here
                continue
            yield page, target


@pytest.mark.parametrize("page, target", list(_links()),
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: link to {target}: {dest} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), \
            f"{page.relative_to(ROOT)}: link to {target}: no heading #{anchor} in {dest.name}"


def test_pages_and_help_name_only_docs_that_exist():
    from tinygen.cli import make_parser
    parser = make_parser()
    texts = {str(p.relative_to(ROOT)): _without_code_blocks(p.read_text()) for p in PAGES}
    sub = next(a for a in parser._actions if a.choices and "verify" in a.choices)
    texts.update({f"tinygen {name} --help": sp.format_help() for name, sp in sub.choices.items()})
    missing = sorted({(where, m) for where, text in texts.items()
                      for m in DOC_MENTION.findall(text) if not (ROOT / m).exists()})
    assert not missing, missing


def test_the_link_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("see [here](missing.md) and [there](p.md#nope)\n# Title\n")
    found = LINK.findall(page.read_text())
    assert found == ["missing.md", "p.md#nope"]
    assert not (tmp_path / "missing.md").exists() and "nope" not in _anchors(page)
    assert _anchors(page) == {"title"}


def test_every_verify_option_has_help():
    from tinygen.cli import make_parser
    sub = next(a for a in make_parser()._actions if a.choices and "verify" in a.choices)
    for action in sub.choices["verify"]._actions:
        assert action.help, f"verify {action.option_strings or action.dest} has no help text"

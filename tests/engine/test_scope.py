"""A ticket's `files` globs: gitignore rules anchored at the repository root."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sage_stream.engine.scope import matches, matches_any, outside

PATHS = [
    "a.py",
    "x.py",
    "[x].py",
    "q?.py",
    "src.py",
    "srcx.py",
    "src/a.py",
    "src/d/b.py",
    "src/d/e/c.py",
    "lib/src/q.py",
    "docs/x.md",
    "docs/a/b.md",
    "docs/a/b/c.md",
    "sp ace/f g.txt",
    "new\nline.txt",
    "dir\nwith newline/inner.py",
    "héllo/wörld.py",
    "tests/test_a.py",
    "pkg/tests/test_b.py",
    "pkg/testsuite/x.py",
]


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("*.py", {"a.py", "x.py", "[x].py", "q?.py", "src.py", "srcx.py"}),
        ("src", {"src/a.py", "src/d/b.py", "src/d/e/c.py"}),
        ("src/", {"src/a.py", "src/d/b.py", "src/d/e/c.py"}),
        ("src/*", {"src/a.py", "src/d/b.py", "src/d/e/c.py"}),
        ("src/**", {"src/a.py", "src/d/b.py", "src/d/e/c.py"}),
        ("src/**/c.py", {"src/d/e/c.py"}),
        ("src*", {"src.py", "srcx.py", "src/a.py", "src/d/b.py", "src/d/e/c.py"}),
        ("docs/**", {"docs/x.md", "docs/a/b.md", "docs/a/b/c.md"}),
        ("docs/**/*.md", {"docs/x.md", "docs/a/b.md", "docs/a/b/c.md"}),
        ("docs/*.md", {"docs/x.md"}),
        ("**/tests", {"tests/test_a.py", "pkg/tests/test_b.py"}),
        ("sp ace", {"sp ace/f g.txt"}),
        ("new\nline.txt", {"new\nline.txt"}),
        ("dir*/*.py", {"dir\nwith newline/inner.py"}),
        ("[a-b].py", {"a.py"}),
        ("[!a].py", {"x.py"}),
        ("q\\?.py", {"q?.py"}),
        ("?.py", {"a.py", "x.py"}),
        ("./src/d", {"src/d/b.py", "src/d/e/c.py"}),
        ("/docs/x.md", {"docs/x.md"}),
        ("**/*.py", {p for p in PATHS if p.endswith(".py")}),
        ("héllo/*", {"héllo/wörld.py"}),
    ],
)
def test_documented_examples(glob: str, expected: set[str]) -> None:
    assert {path for path in PATHS if matches(path, glob)} == expected


def test_a_literal_path_matches_itself_even_when_it_looks_like_a_class() -> None:
    # Next.js-style route files: `[x]` is also a character class matching `x`.
    assert matches("[x].py", "[x].py")
    assert matches("x.py", "[x].py")
    assert matches("app/[id]/page.tsx", "app/[id]")


@pytest.mark.parametrize("glob", ["", ".", "./", "**", "/**", "**/"])
def test_patterns_that_mean_everything(glob: str) -> None:
    assert all(matches(path, glob) for path in PATHS)


def test_star_never_crosses_a_directory_and_no_prefix_tricks() -> None:
    assert not matches("src/a.py", "*.py")
    assert not matches("srcx/a.py", "src")  # a directory name is a whole component
    assert not matches("lib/src/q.py", "src/**")
    assert not matches("src/a.py", "src/a")
    assert not matches("../etc/passwd", "src/**")


def test_an_unclosed_bracket_is_literal() -> None:
    assert matches("a[b.py", "a[b.py")
    assert not matches("ab.py", "a[b.py")


def test_matches_any_and_outside() -> None:
    globs = ["src/**", "docs/*.md"]
    assert matches_any("docs/x.md", globs)
    assert not matches_any("docs/a/b.md", ["docs/*.md"])
    assert outside(["src/a.py", "README.md", "docs/x.md"], globs) == ["README.md"]
    assert outside(["anything"], []) == []


GIT_ORACLE_GLOBS = [
    "*.py",
    "src",
    "src/*",
    "src/**",
    "src*",
    "**/src",
    "**/*.py",
    "docs/**/*.md",
    "docs/*",
    "d*/a",
    "**/tests",
    "pkg/**/test_*.py",
    "sp ace/*.txt",
    "?.py",
    "[a-c].py",
    "[!a].py",
    "a**.py",
    "src/**/**",
    "**/**/c.py",
]


def test_agrees_with_git_check_ignore_on_anchored_patterns(tmp_path: Path) -> None:
    """Our rules are `.gitignore` with the pattern anchored by a leading `/`: ask git."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    paths = [p for p in PATHS if p != "[x].py"]  # literal-match addition tested above
    for glob in GIT_ORACLE_GLOBS:
        (tmp_path / ".gitignore").write_text(f"/{glob}\n", encoding="utf-8")
        result = subprocess.run(
            ["git", "check-ignore", "--no-index", "-z", "--stdin"],
            cwd=tmp_path,
            input="\0".join(paths) + "\0",
            capture_output=True,
            text=True,
        )
        assert result.returncode in (0, 1), result.stderr
        by_git = {p for p in result.stdout.split("\0") if p}
        ours = {p for p in paths if matches(p, glob)}
        assert ours == by_git, glob

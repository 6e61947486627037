"""The CLI cache of the real-CLI tests: a missing npm skips, or fails when the CLI is required."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.e2e import cli_cache


@pytest.fixture
def no_npm(tmp_path, monkeypatch) -> Path:
    """An empty cache and a PATH without npm."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv(cli_cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cli_cache.REQUIRE_ENV, raising=False)
    return empty


def test_without_npm_a_cli_test_is_skipped_with_the_reason(no_npm):
    with pytest.raises(pytest.skip.Exception, match="claude is not available: npm is not installed"):
        cli_cache.require_cli("claude")


@pytest.mark.parametrize("required", ["claude,opencode", "all"])
def test_a_required_cli_that_cannot_be_installed_fails_the_test(no_npm, monkeypatch, required):
    monkeypatch.setenv(cli_cache.REQUIRE_ENV, required)
    with pytest.raises(pytest.fail.Exception, match="SAGE_REQUIRE_REAL_CLIS requires opencode"):
        cli_cache.require_cli("opencode")


def test_a_failed_install_leaves_nothing_that_looks_installed(no_npm):
    npm = no_npm / "npm"
    npm.write_text("#!/bin/sh\necho 'npm ERR! network unreachable' >&2\nexit 1\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(cli_cache.CliUnavailable, match="failed \\(1\\): npm ERR! network unreachable"):
        cli_cache.installed_cli("claude")
    assert not cli_cache.install_dir(cli_cache.PINNED["claude"]).exists()
    assert [path.name for path in cli_cache.cache_root().iterdir()] == ["claude-2.1.329.lock"]


def test_an_installed_cli_is_reused_without_npm(no_npm):
    cli = cli_cache.PINNED["opencode"]
    executable = cli_cache.executable_in(cli_cache.install_dir(cli), cli)
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\necho 1.18.33\n")
    executable.chmod(executable.stat().st_mode | stat.S_IEXEC)
    assert cli_cache.installed_cli("opencode") == executable

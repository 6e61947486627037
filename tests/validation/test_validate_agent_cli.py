"""`sage validate` checks the agent named in `.sage/config.toml`: its CLI installed, its version."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_stream.validation import prerequisites
from sage_stream.validation.checks import validate_index
from sage_stream.findings import Severity

MakeIndex = Callable[..., Path]
MakeTicket = Callable[..., dict[str, Any]]


@pytest.fixture
def index(git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex) -> Path:
    path = make_index(git_repo, [make_ticket("TKT-001")])
    (path.parent / "TKT-001.md").write_text("prose\n")
    return path


def configure(index: Path, text: str) -> None:
    (index.parent.parent / "config.toml").write_text(text)


def fake_cli(monkeypatch: pytest.MonkeyPatch, version: str | None, *, on_path: bool = True) -> None:
    """A `claude` agent module whose `cli_version()` answers `version`; `claude` on PATH or not."""
    module = types.ModuleType("sage_stream.agents.claude")
    module.cli_version = lambda executable=None: version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sage_stream.agents.claude", module)
    real_which = prerequisites.shutil.which
    monkeypatch.setattr(prerequisites.shutil, "which",
                        lambda name: ("/opt/bin/claude" if on_path else None) if name == "claude" else real_which(name))


def agent_items(report) -> list:
    return [item for item in report.prerequisites if item.name.startswith(("agent", "config"))]


def test_an_installed_cli_is_shown_with_its_version_and_path(monkeypatch, index: Path) -> None:
    configure(index, '[agent]\npreset = "claude"\n')
    fake_cli(monkeypatch, "2.1.3 (Claude Code)")
    report = validate_index(index)
    (item,) = agent_items(report)
    assert item.ok and item.message == "claude 2.1.3 (Claude Code) at /opt/bin/claude"
    assert report.exit_code == 0


def test_a_configured_cli_that_is_not_installed_is_an_error(monkeypatch, index: Path) -> None:
    configure(index, '[agent]\npreset = "claude"\n')
    fake_cli(monkeypatch, None, on_path=False)
    report = validate_index(index)
    (finding,) = [f for f in report.errors if f.code == "prerequisite_agent_cli"]
    assert "claude is not installed (not found on PATH)" in finding.message
    assert finding.severity is Severity.ERROR and finding.file == str(index.parent.parent / "config.toml")
    assert report.exit_code == 1


def test_a_preset_sage_does_not_know_is_an_error(index: Path) -> None:
    configure(index, '[agent]\npreset = "clippy"\n')
    (finding,) = [f for f in validate_index(index).errors if f.code == "prerequisite_agent_cli"]
    assert "'clippy' is not an agent sage-stream knows" in finding.message and "exec" in finding.message


def test_a_command_agent_whose_program_is_missing_is_an_error(index: Path) -> None:
    configure(index, '[agent]\ncommand = "no-such-agent-for-sage --prompt {prompt_file}"\n')
    report = validate_index(index)
    (finding,) = [f for f in report.errors if f.code == "prerequisite_agent_command"]
    assert "'no-such-agent-for-sage', which is not on PATH" in finding.message
    assert report.exit_code == 1


def test_an_invalid_config_is_an_error_naming_the_key(index: Path) -> None:
    configure(index, "[checks]\ntimeout_minutes = -1\n")
    (finding,) = [f for f in validate_index(index).errors if f.code == "prerequisite_config_valid"]
    assert "checks.timeout_minutes" in finding.message


def test_nothing_to_check_without_a_configured_agent(index: Path) -> None:
    assert agent_items(validate_index(index)) == []
    configure(index, '[agent]\npreset = "exec"\n')
    assert agent_items(validate_index(index)) == []


def test_without_a_config_file_nothing_is_loaded_and_the_defaults_agree(tmp_path: Path) -> None:
    # validate skips loading the config when there is no config.toml: only right while
    # the defaults name no agent
    from sage_stream.config import load_config

    defaults = load_config(tmp_path).agent
    assert defaults.preset is None and not defaults.command
    assert prerequisites.agent_prerequisites(tmp_path) == []
    (tmp_path / "config.toml").mkdir()  # there, but not a file: still reported
    (item,) = prerequisites.agent_prerequisites(tmp_path)
    assert item.name == "config_valid" and not item.ok and "cannot read" in item.message


# ---------------------------------------------------------------- the agent that will run: --agent, credentials


@pytest.fixture
def claude_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `claude` on PATH that answers --version like Claude Code; an empty HOME; no Anthropic variables."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    script = bin_dir / "claude"
    script.write_text("#!/bin/sh\necho '2.1.329 (Claude Code)'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(home))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
                 "CLAUDE_CODE_USE_VERTEX"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_the_agent_given_by_option_is_checked_without_a_config(claude_on_path: Path, index: Path) -> None:
    report = validate_index(index, agent="claude")
    cli, credentials = agent_items(report)
    assert cli.ok and cli.message.startswith("claude 2.1.329 (Claude Code) at ")
    assert not credentials.ok and credentials.blocking
    (finding,) = [f for f in report.errors if f.code == "prerequisite_agent_credentials"]
    assert "ANTHROPIC_API_KEY" in finding.message and "/login" in finding.message  # the fix: the variable or the login
    assert report.exit_code == 1


def test_a_key_variable_or_the_cli_login_file_is_a_credential(claude_on_path: Path, index: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert agent_items(validate_index(index, agent="claude"))[1].message == "claude credentials: ANTHROPIC_API_KEY"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    (claude_on_path / ".claude.json").write_text('{"numStartups": 3}')  # written by any run: not a login
    assert not agent_items(validate_index(index, agent="claude"))[1].ok
    (claude_on_path / ".claude").mkdir()
    (claude_on_path / ".claude" / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "t"}}')
    credentials = agent_items(validate_index(index, agent="claude"))[1]
    assert credentials.ok and credentials.message == "claude credentials: ~/.claude/.credentials.json"


def test_the_option_wins_over_the_configured_preset_and_says_where_it_came_from(
        claude_on_path: Path, index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(index, '[agent]\npreset = "exec"\n')
    assert agent_items(validate_index(index, agent="claude"))[0].message.startswith("claude 2.1.329")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (finding,) = [f for f in validate_index(index, agent="claude").errors if f.code == "prerequisite_agent_cli"]
    assert "claude is not installed (not found on PATH): --agent 'claude' needs it" in finding.message


def test_validate_takes_the_agent_option(claude_on_path: Path, index: Path) -> None:
    from click.testing import CliRunner

    from sage_stream.commands.validate import command

    result = CliRunner().invoke(command, ["--index", str(index), "--agent", "claude"], standalone_mode=False)
    assert result.return_value == 1 and "claude has no credentials" in result.output

"""What each CLI documents for its credentials: what passes, what counts as a login, what a run says."""

from __future__ import annotations

from pathlib import Path

from sage_stream.agents import claude, codex, gemini
from sage_stream.agents.credentials import found_credential, missing_credential, passed_names, setup_fix, start_notes


def test_a_provider_s_variables_pass_only_when_it_is_switched_on() -> None:
    plain = passed_names(claude.CREDENTIALS, {"AWS_REGION": "eu-west-1"})
    assert "AWS_REGION" not in plain and "CLAUDE_CODE_USE_BEDROCK" in plain and "ANTHROPIC_BASE_URL" in plain
    vertex = passed_names(claude.CREDENTIALS, {"CLAUDE_CODE_USE_VERTEX": "1"})
    assert {"ANTHROPIC_VERTEX_PROJECT_ID", "CLOUD_ML_REGION"} <= set(vertex) and "AWS_REGION" not in vertex


def test_an_empty_key_is_no_credential_and_the_fix_names_the_variable_and_the_login(tmp_path: Path) -> None:
    problem = missing_credential(claude.CREDENTIALS, {"ANTHROPIC_API_KEY": ""}, tmp_path)
    assert problem is not None and problem.startswith("claude has no credentials")
    assert "export ANTHROPIC_API_KEY" in problem and "/login" in problem
    assert missing_credential(claude.CREDENTIALS, {"ANTHROPIC_AUTH_TOKEN": "t"}, tmp_path) is None
    assert found_credential(claude.CREDENTIALS, {"CLAUDE_CODE_USE_BEDROCK": "1"}, tmp_path) == "CLAUDE_CODE_USE_BEDROCK"


def test_claude_json_counts_only_with_an_api_key_in_it(tmp_path: Path) -> None:
    (tmp_path / ".claude.json").write_text('{"numStartups": 1}')
    assert found_credential(claude.CREDENTIALS, {}, tmp_path) is None
    (tmp_path / ".claude.json").write_text('{"primaryApiKey": "sk-ant"}')
    assert found_credential(claude.CREDENTIALS, {}, tmp_path) == "~/.claude.json"


def test_codex_login_is_found_under_codex_home(tmp_path: Path) -> None:
    elsewhere = tmp_path / "codex-home"
    elsewhere.mkdir()
    (elsewhere / "auth.json").write_text('{"tokens": {}}')
    assert found_credential(codex.CREDENTIALS, {}, tmp_path) is None
    assert found_credential(codex.CREDENTIALS, {"CODEX_HOME": str(elsewhere)}, tmp_path) == "~/codex-home/auth.json"
    problem = missing_credential(codex.CREDENTIALS, {}, tmp_path)
    assert problem is not None and "OPENAI_API_KEY" in problem and "`codex login`" in problem


def test_gemini_oauth_login_counts(tmp_path: Path) -> None:
    (tmp_path / ".gemini").mkdir()
    (tmp_path / ".gemini" / "oauth_creds.json").write_text('{"access_token": "x"}')
    assert found_credential(gemini.CREDENTIALS, {}, tmp_path) == "~/.gemini/oauth_creds.json"


def test_a_run_names_the_missing_credential_and_the_cli_variables_it_will_not_pass(tmp_path: Path) -> None:
    source = {"ANTHROPIC_MODEL": "opus", "CLAUDE_CODE_MAX_RETRIES": "2", "ANTHROPIC_API_KEY": "sk", "PATH": "/bin"}
    agent = claude.make_agent({})
    (note,) = start_notes(claude.CREDENTIALS, source, agent.passthrough, tmp_path)
    assert note == ("ANTHROPIC_MODEL, CLAUDE_CODE_MAX_RETRIES are set here but not passed to claude (add to [agent] env "
                    "in .sage/config.toml to pass)")
    listed = claude.make_agent({"env": ["CLAUDE_CODE_*", "ANTHROPIC_MODEL"]})
    assert start_notes(claude.CREDENTIALS, source, listed.passthrough, tmp_path) == []
    (missing,) = start_notes(claude.CREDENTIALS, {"PATH": "/bin"}, agent.passthrough, tmp_path)
    assert missing.startswith("claude has no credentials")


def test_the_fix_for_a_setup_error_fits_what_went_wrong() -> None:
    agent = claude.make_agent({})
    assert setup_fix(agent, "auth", "Not logged in") == (
        "export ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN) in the shell that runs sage, "
        "or log in once: run `claude`, then /login")
    assert setup_fix(agent, "setup", "cannot start 'claude': program not found on PATH (/bin)").startswith(
        "install claude and put its directory on PATH")
    assert "extra_args" in setup_fix(agent, "setup", "error: unknown option '--bogus'")
    assert setup_fix(agent, "api", "overloaded") is None

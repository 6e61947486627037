"""The claude agent: the command it builds, and what it reads from Claude Code's recorded output.

The files in recorded/claude_* are real `claude -p --output-format json` runs (Claude Code
2.1.329, stdout and stderr merged as the engine logs them) against tests/fakes/model_server.py,
each scripted to succeed or fail one way. Variants (noise around the JSON, a truncated line)
are made from them here.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from sage_stream.agents import claude
from sage_stream.agents.base import AgentJob
from sage_stream.agents.claude import ClaudeAgent, classify_error, make_agent, reset_time
from sage_stream.agents.registry import get_agent
from sage_stream.process.supervise import TIMEOUT, AgentExit
from sage_stream.errors import SageError
from tests.agents.support import exited, fake_program

RECORDED = Path(__file__).parent / "recorded"
SESSION = "5b0c7a43-2f1e-4c8a-9d51-3e7f0a9b6c21"  # of claude_success.json and claude_resumed.json


def parse_text(job: AgentJob, text: str, returncode: int, agent: ClaudeAgent | None = None):
    with open(job.log_path, "a", encoding="utf-8") as log:
        log.write(text)
    return (agent or make_agent({})).parse_result(job, exited(returncode, Path(job.log_path)))


def parse_recording(job: AgentJob, name: str, returncode: int, agent: ClaudeAgent | None = None):
    return parse_text(job, (RECORDED / name).read_text(encoding="utf-8"), returncode, agent)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """HOME for the agent: where Claude keeps ~/.claude/projects/<project>/<session>.jsonl."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    return path


def write_transcript(home: Path, session: str, *costs: float, project: str = "-tmp-elsewhere") -> Path:
    path = home / ".claude" / "projects" / project / f"{session}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": "user", "sessionId": session, "message": {"content": "hi"}})]
    lines += [json.dumps({"type": "cost-state", "sessionId": session, "totalCostUSD": cost}) for cost in costs]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- the command


def test_runs_print_mode_with_json_edits_accepted_and_the_prompt_after_a_double_dash(make_job, home):
    job = make_job()
    argv = make_agent({}).invocation(job).argv
    assert argv[:4] == ["claude", "-p", "--output-format", "json"]
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert "--dangerously-skip-permissions" not in argv and "bypassPermissions" not in argv
    assert argv[argv.index("--allowedTools") + 1] == "Bash"
    denied = argv[argv.index("--disallowedTools") + 1: argv.index("--disallowedTools") + 3]
    assert denied == ["Bash(git push *)", "Bash(git config --global *)"]
    assert argv[-2:] == ["--", "# the prompt\n"]


def test_a_new_session_gets_a_fresh_uuid_noted_in_the_log(make_job, home):
    agent = make_agent({})
    first, second = make_job(), make_job()
    session = agent.invocation(first).argv
    other = agent.invocation(second).argv
    chosen = session[session.index("--session-id") + 1]
    assert uuid.UUID(chosen).version == 4
    assert other[other.index("--session-id") + 1] != chosen
    assert "--resume" not in session
    assert f"claude: new session {chosen}" in Path(first.log_path).read_text()


def test_a_session_is_continued_with_resume(make_job, home):
    job = make_job()
    job.session_id = SESSION
    argv = make_agent({}).invocation(job).argv
    assert argv[argv.index("--resume") + 1] == SESSION
    assert "--session-id" not in argv


@pytest.mark.parametrize("session", ["--dangerously-skip-permissions", "ses_abc", "5b0c7a43"])
def test_a_session_id_that_is_not_a_uuid_is_refused(make_job, home, session):
    job = make_job()
    job.session_id = session
    with pytest.raises(SageError, match="not a Claude Code session id"):
        make_agent({}).invocation(job)


def test_model_and_extra_args_come_before_the_prompt(make_job, home):
    argv = make_agent({"model": "sonnet", "extra_args": ["--max-turns", "40"]}).invocation(make_job()).argv
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[-4:] == ["--max-turns", "40", "--", "# the prompt\n"]


@pytest.mark.parametrize("choice", [["--permission-mode", "bypassPermissions"], ["--permission-mode=plan"],
                                    ["--dangerously-skip-permissions"]])
def test_a_permission_mode_in_extra_args_replaces_ours(make_job, home, choice):
    argv = make_agent({"extra_args": choice}).invocation(make_job()).argv
    assert "acceptEdits" not in argv
    assert argv[-2 - len(choice):-2] == choice


@pytest.mark.parametrize("flag", ["--output-format", "--resume", "-c", "--session-id=x", "-p"])
def test_extra_args_may_not_take_over_what_sage_manages(flag):
    with pytest.raises(SageError, match="set by sage-stream"):
        make_agent({"extra_args": [flag]})


@pytest.mark.parametrize("config, message", [
    ({"model": "sonnet", "extra_args": ["--model", "opus"]}, "keep one of them"),
    ({"extra_args": "--max-turns 3"}, "extra_args must be a list"),
    ({"model": 3}, "model must be a string"),
    ({"env": "ANTHROPIC_API_KEY"}, "env must be a list"),
    ({"env": ["GIT_DIR"]}, "GIT_"),
])
def test_bad_configuration_is_a_user_error(config, message):
    with pytest.raises(SageError, match=message):
        make_agent(config)


def test_the_documented_credential_and_endpoint_variables_pass_and_nothing_else(make_job, home, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "bearer")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("ANTHROPIC_MODEL", "opus")  # Claude's own, but not a credential or an endpoint
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    monkeypatch.delenv("CLAUDE_CODE_USE_BEDROCK", raising=False)
    plain = make_agent({}).invocation(make_job()).env
    assert (plain["ANTHROPIC_API_KEY"], plain["ANTHROPIC_AUTH_TOKEN"], plain["ANTHROPIC_BASE_URL"]) == \
        ("sk-secret", "bearer", "http://127.0.0.1:1")
    assert "ANTHROPIC_MODEL" not in plain and not any(name.startswith("AWS_") for name in plain)
    assert plain["HOME"] == str(home) and plain["SAGE_TICKET_ID"] == "CALC-001"
    passed = make_agent({"env": ["ANTHROPIC_*"]}).invocation(make_job()).env
    assert passed["ANTHROPIC_MODEL"] == "opus"
    assert "AWS_SECRET_ACCESS_KEY" not in passed and "IS_SANDBOX" not in passed


def test_the_aws_variables_pass_only_when_claude_uses_bedrock(make_job, home, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_USE_BEDROCK", "1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_PROFILE", "work")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp")
    env = make_agent({}).invocation(make_job()).env
    assert (env["CLAUDE_CODE_USE_BEDROCK"], env["AWS_REGION"], env["AWS_PROFILE"]) == ("1", "us-east-1", "work")
    assert "GITHUB_TOKEN" not in env and "ANTHROPIC_VERTEX_PROJECT_ID" not in env


def test_a_prompt_too_long_for_one_argument_keeps_both_ends_and_may_be_read_whole(make_job, home):
    job = make_job()
    text = "# CALC-001: start\n" + "x" * 300_000 + "\nEnd your reply with the SAGE-RESULT block.\n"
    Path(job.prompt_file).write_text(text)
    argv = make_agent({}).invocation(job).argv
    prompt = argv[-1]
    assert len(prompt.encode()) <= claude.ARGUMENT_LIMIT_BYTES
    assert prompt.endswith("End your reply with the SAGE-RESULT block.\n") and "# CALC-001: start" in prompt
    assert str(Path(job.prompt_file).absolute()) in prompt
    assert f"Read(/{Path(job.prompt_file).absolute()})" in argv  # "//" = an absolute path in Claude's rules


def test_an_unreadable_prompt_is_a_sage_error_naming_the_ticket(make_job, home):
    job = make_job()
    Path(job.prompt_file).unlink()
    with pytest.raises(SageError, match="CALC-001: cannot read the prompt"):
        make_agent({}).invocation(job)


def test_the_registry_makes_it_from_the_agent_table(home):
    agent = get_agent("claude", config={"model": "opus", "env": ["ANTHROPIC_API_KEY"]})
    assert isinstance(agent, ClaudeAgent) and agent.model == "opus" and agent.supports_sessions()


# ---------------------------------------------------------------- results


def test_success_has_the_summary_session_cost_tokens_and_turns(make_job, home):
    result = parse_recording(make_job(), "claude_success.json", 0)
    assert result.success is True and result.error_kind is None and result.message is None
    assert result.summary == "added hello.txt with a greeting"
    assert result.session_id == SESSION
    assert result.cost_usd == pytest.approx(0.012)
    assert result.tokens == 2200 and result.turns == 2


def test_a_continued_session_reports_the_cost_of_this_run_only(make_job, home):
    # Claude's total_cost_usd counts the whole session: 0.012 before, 0.018 after this run
    write_transcript(home, SESSION, 0.012)
    job = make_job()
    job.session_id = SESSION
    agent = make_agent({})
    agent.invocation(job)
    assert "(cost so far $0.012)" in Path(job.log_path).read_text()
    result = parse_recording(job, "claude_resumed.json", 0, agent)
    assert result.success is True and result.session_id == SESSION
    assert result.cost_usd == pytest.approx(0.006)
    assert result.summary == "OK"


def test_the_session_cost_is_the_last_cost_state_of_its_transcript(home):
    write_transcript(home, SESSION, 0.01, 0.03)
    assert claude.session_cost(SESSION, {"HOME": str(home)}) == pytest.approx(0.03)
    assert claude.session_cost(str(uuid.uuid4()), {"HOME": str(home)}) is None
    config_dir = home / "elsewhere"
    (config_dir / "projects" / "p").mkdir(parents=True)
    shutil.move(str(claude.session_transcript(SESSION, {"HOME": str(home)})), config_dir / "projects" / "p")
    moved = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(config_dir)}
    assert claude.session_cost(SESSION, moved) == pytest.approx(0.03)


def test_a_continued_session_whose_earlier_cost_is_unknown_says_so(make_job, home):
    job = make_job()
    job.session_id = SESSION
    result = parse_recording(job, "claude_resumed.json", 0)
    assert result.success is True and result.cost_usd == pytest.approx(0.018)
    assert "session's total" in result.message


def test_is_error_with_subtype_success_is_a_failure(make_job, home):
    # the trap: Claude reports an API error as subtype "success"; even with exit code 0
    record = json.loads((RECORDED / "claude_success.json").read_text())
    record.update(is_error=True, result="API Error: 500 Internal server error", api_error_status=500)
    result = parse_text(make_job(), json.dumps(record) + "\n", 0)
    assert result.success is False and result.error_kind == "api" and result.retryable is True
    assert "500" in result.message


@pytest.mark.parametrize("name, kind, retryable, words", [
    ("claude_rate_limit.json", "rate_limit", True, "per-minute rate limit"),
    ("claude_usage_limit.json", "quota", True, "usage limit reached"),
    ("claude_credit_balance.json", "quota", True, "Credit balance is too low"),
    ("claude_auth.json", "auth", False, "Invalid API key"),
    ("claude_overloaded.json", "api", True, "529 Overloaded"),
    ("claude_connection_refused.json", "api", True, "ECONNREFUSED"),
])
def test_api_errors_are_classified(make_job, home, name, kind, retryable, words):
    result = parse_recording(make_job(), name, 1)
    assert result.success is False
    assert (result.error_kind, result.retryable) == (kind, retryable)
    assert words in result.message
    assert result.session_id  # Claude names the session even of a failed run
    assert result.cost_usd == 0


def test_a_usage_limit_with_its_reset_time_gives_reset_at(make_job, home):
    result = parse_recording(make_job(), "claude_usage_limit.json", 1)
    assert result.reset_at == "2026-11-21T22:26:40Z"  # |1795300000
    assert parse_recording(make_job(), "claude_rate_limit.json", 1).reset_at is None


def test_the_turn_limit_is_a_failure_that_is_not_retried(make_job, home):
    result = parse_recording(make_job(), "claude_max_turns.json", 1)
    assert result.success is False and result.error_kind == "other" and result.retryable is False
    assert "--max-turns" in result.message and "Reached maximum number of turns (2)" in result.message
    assert result.cost_usd == pytest.approx(0.012) and result.turns == 3


def test_a_blocked_agent_failed_though_claude_succeeded(make_job, home):
    result = parse_recording(make_job(), "claude_blocked.json", 0)
    assert result.success is False and result.error_kind == "other"
    assert result.summary == "spec missing" and "blocked" in result.message


def test_refused_tool_calls_are_noted_on_a_success(make_job, home):
    result = parse_recording(make_job(), "claude_permission_denied.json", 0)
    assert result.success is True and result.summary == "tried to push"
    assert "1 tool call(s) were refused permission (Bash)" in result.message


@pytest.mark.parametrize("name, words", [
    ("claude_no_session.log", "No conversation found"),
    ("claude_root_refused.log", "cannot be used with root"),
])
def test_no_result_json_is_a_failure_with_what_claude_said(make_job, home, name, words):
    job = make_job()
    job.session_id = "0e2b9d8c-1111-4222-8333-444455556666"
    result = parse_recording(job, name, 1)
    assert result.success is False and result.error_kind == "other" and result.retryable is False
    assert "printed no result JSON (exit code 1)" in result.message and words in result.message
    assert result.session_id is None  # no transcript: nothing to continue


def test_the_result_is_found_among_other_lines_of_the_log(make_job, home):
    text = ("[sage-stream] claude: new session 5b0c7a43-2f1e-4c8a-9d51-3e7f0a9b6c21\n"
            "warning: something on stderr {\"type\": \"not-a-result\"}\n"
            + (RECORDED / "claude_success.json").read_text() + "npm notice: a new version is available\n")
    result = parse_text(make_job(), text, 0)
    assert result.success is True and result.summary == "added hello.txt with a greeting"


@pytest.mark.parametrize("text", ["", "garbage\n\x00\xff not json", '{"type": "result", "subtype": "succ'])
def test_garbage_or_truncated_output_is_a_clear_failure(make_job, home, text):
    result = parse_text(make_job(), text, 0)
    assert result.success is False and result.error_kind == "other"
    assert "printed no result JSON" in result.message


def test_a_result_file_summary_wins_and_can_report_failure(make_job, home):
    job = make_job()
    Path(job.result_file).write_text(json.dumps({"success": False, "summary": "half done"}))
    result = parse_recording(job, "claude_success.json", 0)
    assert result.success is False and result.summary == "half done"
    assert "the result file says it failed" in result.message


def test_a_stopped_run_reports_its_session_once_claude_has_a_transcript_of_it(make_job, home):
    agent = make_agent({})
    job = make_job()
    argv = agent.invocation(job).argv
    session = argv[argv.index("--session-id") + 1]
    stopped = AgentExit(TIMEOUT, -15, 60.0, "thinking...", "timed out after 60 s", 4242)
    result = agent.parse_result(job, stopped)
    assert result.success is False and result.error_kind == "timeout" and result.session_id is None
    write_transcript(home, session, project="-work-slot-1")
    assert agent.parse_result(job, stopped).session_id == session


@pytest.mark.parametrize("message, status, error_type, kind", [
    ("Claude AI usage limit reached|1735689600", 429, "rate_limit_error", "quota"),
    ("spend limit reached · resets Aug 8", 400, "billing_error", "quota"),
    ("Request rejected (429)", None, None, "rate_limit"),
    ("OAuth token has expired · Please run /login", None, None, "auth"),
    ("Forbidden", 403, "permission_error", "auth"),
    ("API Error: Request timed out.", None, None, "api"),
    ("Internal server error", 500, "api_error", "api"),
    ("Prompt is too long", 400, "invalid_request_error", "other"),
    ("Not logged in · Please run /login", None, None, "auth"),
    ("Invalid API key · Fix external API key", 401, "authentication_error", "auth"),
    ("error: unknown option '--bogus'", None, None, "setup"),
    ("There's an issue with the selected model (claude-nope). It may not exist or you may not have access to it. "
     "Run --model to pick a different model.", 404, "not_found_error", "setup"),
])
def test_classify_error(message, status, error_type, kind):
    assert classify_error(message, status=status, error_type=error_type)[0] == kind


def test_reset_time_reads_unix_and_iso_times():
    assert reset_time("usage limit reached|1735689600") == "2025-01-01T00:00:00Z"
    assert reset_time("limit resets at 2026-11-21T17:00:00+02:00") == "2026-11-21T15:00:00Z"
    assert reset_time("try again later") is None


# ---------------------------------------------------------------- version


def test_cli_version_is_what_claude_prints(tmp_path):
    fake = fake_program(tmp_path / "claude", "echo '2.1.329 (Claude Code)'")
    assert claude.cli_version(str(fake)) == "2.1.329 (Claude Code)"
    assert claude.cli_version(str(tmp_path / "missing")) is None
    assert os.access(fake, os.X_OK)

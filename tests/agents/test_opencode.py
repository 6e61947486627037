"""The opencode agent: the command and configuration it builds, and what it reads from
OpenCode's recorded output.

The files in recorded/opencode_* are real `opencode run --format json` runs (OpenCode 1.18.33,
stdout and stderr merged as the engine logs them) against tests/fakes/model_server.py, with a
model priced at $3 / $15 per million input / output tokens, each scripted to succeed or fail
one way.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sage_stream.agents import opencode
from sage_stream.agents.base import AgentJob
from sage_stream.agents.opencode import OpenCodeAgent, classify_error, make_agent, retry_after, with_sage_permissions
from sage_stream.agents.registry import get_agent
from sage_stream.process.supervise import TIMEOUT, AgentExit
from sage_stream.errors import SageError
from tests.agents.support import exited, fake_program

RECORDED = Path(__file__).parent / "recorded"
# the session of opencode_success.jsonl, continued by opencode_resumed.jsonl
SESSION = json.loads((RECORDED / "opencode_success.jsonl").read_text().splitlines()[0])["sessionID"]
STEP_COST = 1000 * 3 / 1e6 + 100 * 15 / 1e6  # each fake answer: 1000 tokens in, 100 out


def parse_text(job: AgentJob, text: str, returncode: int, agent: OpenCodeAgent | None = None):
    with open(job.log_path, "a", encoding="utf-8") as log:
        log.write(text)
    return (agent or make_agent({})).parse_result(job, exited(returncode, Path(job.log_path)))


def parse_recording(job: AgentJob, name: str, returncode: int, agent: OpenCodeAgent | None = None):
    return parse_text(job, (RECORDED / name).read_text(encoding="utf-8"), returncode, agent)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv(opencode.CONFIG_VARIABLE, raising=False)
    return path


def record_session(home: Path, session: str, directory: Path) -> None:
    """A session row as OpenCode keeps it (~/.local/share/opencode/opencode.db, table session)."""
    path = home / ".local" / "share" / "opencode" / "opencode.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS session (id text PRIMARY KEY, project_id text NOT NULL,"
                           " directory text NOT NULL, title text NOT NULL)")
        connection.execute("INSERT INTO session VALUES (?, 'p', ?, 't')", (session, str(directory)))
    connection.close()


def config_of(env: dict[str, str]) -> dict:
    return json.loads(env[opencode.CONFIG_VARIABLE])


# ---------------------------------------------------------------- the command


def test_runs_json_output_titled_after_the_ticket_with_the_prompt_after_a_double_dash(make_job, home):
    argv = make_agent({}).invocation(make_job()).argv
    assert argv[:4] == ["opencode", "run", "--format", "json"]
    assert "--title=CALC-001: Create the calc package" in argv  # also spares a title request
    assert "--session" not in argv and "--auto" not in argv
    assert argv[-2:] == ["--", "# the prompt\n"]


def test_model_and_extra_args_come_before_the_message(make_job, home):
    argv = make_agent({"model": "anthropic/claude-sonnet-4-5", "extra_args": ["--agent", "build"]}).invocation(
        make_job()).argv
    assert argv[argv.index("-m") + 1] == "anthropic/claude-sonnet-4-5"
    assert argv[-4:] == ["--agent", "build", "--", "# the prompt\n"]


def test_sage_permissions_are_set_without_a_user_configuration(make_job, home):
    env = make_agent({}).invocation(make_job()).env
    assert config_of(env) == {"permission": {"edit": "allow", "external_directory": "deny",
                                             "bash": {"*": "allow", "git push*": "deny"}}}


def test_the_users_configuration_is_kept_under_sage_permissions(make_job, home, monkeypatch):
    user = {"provider": {"mine": {"npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "http://x/v1"}}},
            "model": "mine/m", "permission": {"edit": "ask", "external_directory": "allow", "bash": {"*": "ask"},
                                              "webfetch": "deny"}}
    monkeypatch.setenv(opencode.CONFIG_VARIABLE, json.dumps(user))
    agent = make_agent({"env": [opencode.CONFIG_VARIABLE]})
    config = config_of(agent.invocation(make_job()).env)
    assert config["provider"] == user["provider"] and config["model"] == "mine/m"
    assert config["permission"] == {"edit": "allow", "external_directory": "deny", "bash": {"*": "ask"},
                                    "webfetch": "deny"}


def test_a_users_configuration_is_not_read_unless_passed_through(make_job, home, monkeypatch):
    monkeypatch.setenv(opencode.CONFIG_VARIABLE, json.dumps({"model": "mine/m"}))
    assert "model" not in config_of(make_agent({}).invocation(make_job()).env)


def test_a_permission_given_as_one_string_becomes_the_catch_all():
    merged = with_sage_permissions({"permission": "ask"})
    assert merged["permission"] == {"*": "ask", "edit": "allow", "external_directory": "deny",
                                    "bash": {"*": "allow", "git push*": "deny"}}


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_a_broken_user_configuration_stops_before_any_ticket(home, monkeypatch, text, message):
    monkeypatch.setenv(opencode.CONFIG_VARIABLE, text)
    with pytest.raises(SageError, match=message):
        make_agent({"env": [opencode.CONFIG_VARIABLE]})


@pytest.mark.parametrize("config, message", [
    ({"model": "claude-sonnet"}, "PROVIDER/MODEL"),
    ({"model": "a/b", "extra_args": ["-m", "c/d"]}, "keep one of them"),
    ({"extra_args": ["--format", "default"]}, "set by sage-stream"),
    ({"extra_args": ["--session=ses_x"]}, "set by sage-stream"),
    ({"extra_args": "--agent build"}, "extra_args must be a list"),
    ({"env": ["SAGE_RUN_ID"]}, "SAGE_"),
])
def test_bad_configuration_is_a_user_error(home, config, message):
    with pytest.raises(SageError, match=message):
        make_agent(config)


def test_a_session_that_ran_in_this_worktree_is_continued(make_job, home):
    job = make_job()
    job.session_id = SESSION
    record_session(home, SESSION, Path(job.worktree))
    argv = make_agent({}).invocation(job).argv
    assert argv[argv.index("--session") + 1] == SESSION
    assert not any(arg.startswith("--title") for arg in argv)  # keeps the session's title


@pytest.mark.parametrize("recorded", [True, False])
def test_a_session_of_another_directory_is_not_continued(make_job, home, tmp_path, recorded):
    # OpenCode would run the tools in the session's first directory and never exit
    job = make_job()
    job.session_id = SESSION
    if recorded:
        record_session(home, SESSION, tmp_path / "slot-1")
    agent = make_agent({})
    argv = agent.invocation(job).argv
    assert "--session" not in argv and any(arg.startswith("--title=") for arg in argv)
    result = parse_recording(job, "opencode_success.jsonl", 0, agent)
    assert result.success is True
    assert f"not continuing session {SESSION}" in result.message
    assert ("ran in " + str(tmp_path / "slot-1") if recorded else "not in OpenCode's database") in result.message


def test_a_session_id_that_is_not_opencodes_is_refused(make_job, home):
    job = make_job()
    job.session_id = "--share"
    with pytest.raises(SageError, match="not an OpenCode session id"):
        make_agent({}).invocation(job)


def test_a_prompt_too_long_for_one_argument_keeps_both_ends_and_may_be_read_whole(make_job, home):
    job = make_job()
    Path(job.prompt_file).write_text("# CALC-001: start\n" + "y" * 200_000 + "\nthe SAGE-RESULT block\n")
    invocation = make_agent({}).invocation(job)
    message = invocation.argv[-1]
    assert len(message.encode()) <= opencode.ARGUMENT_LIMIT_BYTES
    assert message.startswith("[sage-stream: this prompt") and message.endswith("the SAGE-RESULT block\n")
    run_dir = f"{Path(job.prompt_file).absolute().parent}/*"  # checked: OpenCode matches "<directory>/*"
    assert config_of(invocation.env)["permission"]["external_directory"] == {"*": "deny", run_dir: "allow"}


def test_the_registry_makes_it_from_the_agent_table(home):
    agent = get_agent("opencode", config={"model": "fake/m"})
    assert isinstance(agent, OpenCodeAgent) and agent.supports_sessions()


# ---------------------------------------------------------------- results


def test_success_sums_the_costs_and_tokens_of_the_steps(make_job, home):
    result = parse_recording(make_job(), "opencode_success.jsonl", 0)
    assert result.success is True and result.error_kind is None and result.message is None
    assert result.summary == "added hello.txt with a greeting"  # the last text's SAGE-RESULT block
    assert result.session_id == SESSION
    assert result.cost_usd == pytest.approx(2 * STEP_COST)
    assert result.tokens == 2200 and result.turns == 2


def test_a_continued_session_reports_only_its_own_steps(make_job, home):
    job = make_job()
    job.session_id = SESSION
    result = parse_recording(job, "opencode_resumed.jsonl", 0)
    assert result.success is True and result.session_id == SESSION
    assert result.cost_usd == pytest.approx(STEP_COST) and result.turns == 1
    assert result.summary == "OK"


@pytest.mark.parametrize("name, kind, retryable, words", [
    ("opencode_rate_limit.jsonl", "rate_limit", True, "per-minute rate limit (HTTP 429)"),
    ("opencode_quota.jsonl", "quota", True, "exceeded your current quota"),
    ("opencode_auth.jsonl", "auth", False, "invalid x-api-key (HTTP 401)"),
    ("opencode_connection_refused.jsonl", "api", True, "Cannot connect to API"),
])
def test_error_events_are_classified(make_job, home, name, kind, retryable, words):
    result = parse_recording(make_job(), name, 1)
    assert result.success is False
    assert (result.error_kind, result.retryable) == (kind, retryable)
    assert words in result.message and result.message.startswith("opencode: APIError: ")
    assert result.session_id.startswith("ses_")


def test_a_rate_limit_resets_when_retry_after_says(make_job, home):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = parse_recording(make_job(), "opencode_rate_limit.jsonl", 1)  # retry-after: 3
    reset = datetime.strptime(result.reset_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert 2 <= (reset - before).total_seconds() <= 60


def test_retry_after_reads_seconds_milliseconds_and_dates():
    now = datetime(2026, 11, 21, 9, 0, 0, tzinfo=timezone.utc)
    assert retry_after({"Retry-After": "120"}, now) == "2026-11-21T09:02:00Z"
    assert retry_after({"retry-after-ms": "1500", "retry-after": "99"}, now) == "2026-11-21T09:00:01Z"
    assert retry_after({"retry-after": "Sat, 21 Nov 2026 10:00:00 GMT"}, now) == "2026-11-21T10:00:00Z"
    assert retry_after({"retry-after": "0"}, now) is None
    assert retry_after({"retry-after": "soon"}, now) is None
    assert retry_after(None, now) is None


def test_a_blocked_agent_failed_though_opencode_succeeded(make_job, home):
    result = parse_recording(make_job(), "opencode_blocked.jsonl", 0)
    assert result.success is False and result.error_kind == "other" and "blocked" in result.message
    assert result.summary == "spec missing" and result.cost_usd == pytest.approx(STEP_COST)


def test_a_refused_tool_call_does_not_fail_the_run(make_job, home):
    result = parse_recording(make_job(), "opencode_permission_denied.jsonl", 0)
    assert result.success is True and result.summary == "tried to push" and result.turns == 2


def test_no_events_is_a_failure_with_what_opencode_said(make_job, home):
    result = parse_recording(make_job(), "opencode_no_session.log", 1)
    assert result.success is False and result.error_kind == "other"
    assert "printed no JSON events (exit code 1): Error: Session not found" in result.message


def test_two_first_starts_racing_for_the_database_is_worth_retrying(make_job, home):
    # recorded in the end-to-end test: two OpenCode processes started at once on a fresh HOME
    result = parse_recording(make_job(), "opencode_database_race.log", 1)
    assert result.success is False and result.error_kind == "other" and result.retryable is True
    assert "could not open its database" in result.message and "opencode session list" in result.message
    assert result.start_again is True  # nothing ran: the runner starts it again at once


def test_other_failures_without_events_are_not_started_again(make_job, home):
    assert parse_recording(make_job(), "opencode_no_session.log", 1).start_again is False


def test_an_exit_code_without_an_error_event_is_a_failure(make_job, home):
    result = parse_recording(make_job(), "opencode_success.jsonl", 1)
    assert result.success is False and "exited with code 1" in result.message
    assert result.cost_usd == pytest.approx(2 * STEP_COST)  # what was spent still counts


@pytest.mark.parametrize("text", ["", "garbage \x00 not json\n", '{"type":"step_finish","part":{"cost":0.1,"tok'])
def test_garbage_or_truncated_output_is_a_clear_failure(make_job, home, text):
    result = parse_text(make_job(), text, 0)
    assert result.success is False and result.error_kind == "other"
    assert "printed no JSON events" in result.message


def test_events_are_found_among_other_lines_and_an_unknown_error_is_other(make_job, home):
    events = (RECORDED / "opencode_success.jsonl").read_text().splitlines()
    noise = ["INFO  2026-11-21 service=bus", *events[:3], "\x1b[91mwarning\x1b[0m", *events[3:],
             json.dumps({"type": "error", "sessionID": SESSION, "error": {"name": "UnknownError",
                                                                           "data": {"message": "boom"}}})]
    result = parse_text(make_job(), "\n".join(noise) + "\n", 1)
    assert result.success is False and result.error_kind == "other" and "UnknownError: boom" in result.message
    assert result.cost_usd == pytest.approx(2 * STEP_COST) and result.summary == "added hello.txt with a greeting"


def test_a_stopped_run_keeps_its_session_and_what_it_spent(make_job, home):
    job = make_job()
    events = (RECORDED / "opencode_success.jsonl").read_text().splitlines()[:4]
    Path(job.log_path).write_text("\n".join(events) + "\n")
    result = make_agent({}).parse_result(job, AgentExit(TIMEOUT, -15, 60.0, "", "timed out after 60 s", 4242))
    assert result.success is False and result.error_kind == "timeout"
    assert result.session_id == SESSION and result.cost_usd == pytest.approx(STEP_COST)


@pytest.mark.parametrize("message, status, name, retryable, kind", [
    ("Rate limit reached for requests", 429, "APIError", True, "rate_limit"),
    ("insufficient_quota", 429, "APIError", True, "quota"),
    ("Payment Required", 402, "APIError", False, "quota"),
    ("No API key", None, "ProviderAuthError", None, "auth"),
    ("Forbidden", 403, "APIError", False, "auth"),
    ("Overloaded", 529, "APIError", True, "api"),
    ("upstream hiccup", None, "APIError", True, "api"),
    ("The model's output was too long", None, "MessageOutputLengthError", None, "other"),
    ("Model not found: fake/nope", None, "ProviderModelNotFoundError", None, "setup"),
])
def test_classify_error(message, status, name, retryable, kind):
    assert classify_error(message, status=status, name=name, retryable=retryable)[0] == kind


# ---------------------------------------------------------------- version


def test_cli_version_is_the_last_line_opencode_prints(tmp_path):
    fake = fake_program(tmp_path / "opencode", "echo 'a notice'; echo 1.18.33")
    assert opencode.cli_version(str(fake)) == "1.18.33"
    assert opencode.cli_version(str(tmp_path / "missing")) is None

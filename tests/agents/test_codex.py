"""The codex agent: the command it builds, and what it reads from Codex's recorded output.

The logs in recorded/codex_*.log are real `codex exec --json` runs (Codex CLI 0.169.0, stdout
and stderr merged as the engine logs them) against tests/fakes/responses_api.py, each
scripted to succeed or fail one way; codex_synthetic_*.log are written by hand.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sage_stream.agents import codex
from sage_stream.agents.base import AgentJob
from sage_stream.agents.codex import CodexAgent, classify_error, make_agent, reset_time
from sage_stream.agents.registry import get_agent
from sage_stream.process.supervise import TIMEOUT, AgentExit
from sage_stream.errors import SageError
from tests.agents.support import exited, fake_program

RECORDED = Path(__file__).parent / "recorded"
THREAD = "01a1fd7b-0414-70a1-9862-b6d6b8d1973b"  # the thread of codex_success.log and codex_resume.log


def parse_recording(job: AgentJob, name: str, returncode: int, agent: CodexAgent | None = None):
    shutil.copy(RECORDED / f"codex_{name}.log", job.log_path)
    return (agent or make_agent({})).parse_result(job, exited(returncode, Path(job.log_path)))


# ---------------------------------------------------------------- the command


def test_runs_headless_in_the_worktree_with_the_workspace_sandbox(make_job):
    job = make_job()
    argv = make_agent({}).invocation(job).argv
    assert argv[:6] == ["codex", "exec", "--json", "-C", str(job.worktree.absolute()), "--skip-git-repo-check"]
    assert argv[6:8] == ["-s", "workspace-write"]
    assert argv[-1] == "# the prompt\n"


def test_model_and_extra_args_come_before_the_prompt(make_job):
    extra = ["-c", "model_provider=fake", "-c", 'model_providers.fake={name="Fake",base_url="http://x/v1"}']
    argv = make_agent({"model": "gpt-5-codex", "extra_args": extra}).invocation(make_job()).argv
    assert argv[8:10] == ["-m", "gpt-5-codex"]
    assert argv[10:14] == extra
    assert argv[14:] == ["# the prompt\n"]


@pytest.mark.parametrize("choice", [["--dangerously-bypass-approvals-and-sandbox"], ["-s", "danger-full-access"],
                                    ["--sandbox=read-only"], ["-c", "sandbox_mode=danger-full-access"]])
def test_a_sandbox_chosen_in_extra_args_replaces_ours(make_job, choice):
    argv = make_agent({"extra_args": choice}).invocation(make_job()).argv
    assert "workspace-write" not in argv
    assert argv[-1 - len(choice):-1] == choice


def test_a_session_is_continued_with_exec_resume_after_the_exec_options(make_job):
    job = make_job()
    job.session_id = THREAD
    argv = make_agent({"model": "m"}).invocation(job).argv
    assert argv[-3:] == ["resume", THREAD, "# the prompt\n"]
    assert argv.index("--json") < argv.index("-C") < argv.index("-m") < argv.index("resume")


def test_a_session_id_that_is_not_a_thread_id_is_refused(make_job):
    job = make_job()
    job.session_id = "--dangerously-bypass-approvals-and-sandbox"
    with pytest.raises(SageError, match="not a Codex thread id"):
        make_agent({}).invocation(job)


def test_the_environment_has_codex_credentials_but_not_other_secrets(make_job, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("CODEX_HOME", "/somewhere/.codex")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("FAKE_KEY", "x")
    env = make_agent({"env": ["FAKE_KEY"]}).invocation(make_job()).env
    assert env["OPENAI_API_KEY"] == "sk-test"
    assert env["CODEX_HOME"] == "/somewhere/.codex"
    assert env["FAKE_KEY"] == "x"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["SAGE_TICKET_ID"] == "CALC-001"


def test_a_prompt_too_long_for_one_argument_keeps_its_start_and_end_and_names_the_file(make_job):
    job = make_job()
    text = "# CALC-001: start\n" + "é" * 150_000 + "\n## Definition of done\nend the SAGE-RESULT block\n"
    job.prompt_file.write_text(text, encoding="utf-8")
    argument = make_agent({}).invocation(job).argv[-1]
    assert len(argument.encode("utf-8")) <= codex.ARGUMENT_LIMIT_BYTES < 128 * 1024
    assert str(job.prompt_file.absolute()) in argument
    assert "# CALC-001: start" in argument
    assert argument.endswith("end the SAGE-RESULT block\n")


def test_a_prompt_starting_with_a_dash_is_not_taken_for_an_option(make_job):
    job = make_job()
    job.prompt_file.write_text("- do this\n")
    assert make_agent({}).invocation(job).argv[-1] == "\n- do this\n"


def test_a_missing_prompt_is_a_message_not_a_traceback(make_job):
    job = make_job()
    job.prompt_file.unlink()
    with pytest.raises(SageError, match="cannot read the prompt"):
        make_agent({}).invocation(job)


@pytest.mark.parametrize("config, message", [
    ({"extra_args": "-m x"}, "must be a list"),
    ({"model": "a", "extra_args": ["-m", "b"]}, "keep one of them"),
    ({"env": ["GIT_DIR"]}, "GIT_"),
])
def test_bad_configuration_is_refused_when_the_agent_is_made(config, message):
    with pytest.raises(SageError, match=message):
        make_agent(config)


def test_the_registry_knows_codex():
    agent = get_agent("codex", config={"model": "m"})
    assert isinstance(agent, CodexAgent) and agent.supports_sessions()


# ---------------------------------------------------------------- recorded results


def test_success_reads_summary_session_and_tokens(make_job):
    result = parse_recording(make_job(), "success", 0)
    assert result.success is True
    assert result.summary == "added hello.txt"
    assert result.session_id == THREAD
    assert result.tokens == 2200  # 2000 input + 200 output over two model calls
    assert result.turns == 1
    assert result.cost_usd is None  # Codex reports none
    assert result.error_kind is None


def test_a_resumed_session_keeps_its_thread_and_counts_only_this_run_s_tokens(make_job):
    job = make_job()
    job.session_id = THREAD
    result = parse_recording(job, "resume", 0)
    assert result.success is True
    assert result.summary == "added two.txt"
    assert result.session_id == THREAD
    # codex reported the thread's 4400; the log's note says 2200 of them came before this run
    assert '"input_tokens":4000' in (RECORDED / "codex_resume.log").read_text()
    assert result.tokens == 2200


def test_resuming_notes_the_thread_s_tokens_so_far_from_its_rollout_file(make_job, tmp_path, monkeypatch):
    home = tmp_path / "codex-home"
    day = home / "sessions" / "2026" / "11" / "21"
    day.mkdir(parents=True)
    usage = {"input_tokens": 3000, "cached_input_tokens": 0, "output_tokens": 300, "total_tokens": 3300}
    lines = [{"type": "session_meta", "payload": {"id": THREAD}},
             {"type": "event_msg", "payload": {"type": "token_count", "info": None}},
             {"type": "event_msg", "payload": {"type": "token_count", "info": {"total_token_usage": usage}}}]
    (day / f"rollout-2026-11-21T09-40-21-{THREAD}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setenv("CODEX_HOME", str(home))
    job = make_job()
    job.session_id = THREAD
    make_agent({}).invocation(job)
    assert Path(job.log_path).read_text() == f"[sage-stream] codex: continuing thread {THREAD} after 3300 tokens\n"


def test_a_thread_without_a_rollout_file_notes_nothing(make_job, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "nothing"))
    job = make_job()
    job.session_id = THREAD
    make_agent({}).invocation(job)
    assert not Path(job.log_path).exists()


@pytest.mark.parametrize("name, kind, retryable, words", [
    ("rate_limit", "rate_limit", True, "429 Too Many Requests"),
    ("quota", "quota", True, "Quota exceeded"),
    ("usage_limit", "quota", True, "usage limit"),
    ("auth", "auth", False, "401 Unauthorized"),
    ("server_error", "api", True, "high demand"),
    ("malformed", "api", True, "stream disconnected"),
])
def test_turn_failed_is_the_failure_and_is_classified(make_job, name, kind, retryable, words):
    result = parse_recording(make_job(), name, 1)
    assert result.success is False
    assert (result.error_kind, result.retryable) == (kind, retryable)
    assert words in result.message
    assert result.session_id  # thread.started came before the failure


def test_the_unknown_model_metadata_error_item_is_not_a_failure(make_job):
    assert "Model metadata for `fake-model` not found" in (RECORDED / "codex_success.log").read_text()
    assert parse_recording(make_job(), "success", 0).success is True


def test_a_usage_limit_sets_when_to_try_again(make_job):
    before = datetime.now(UTC)
    result = parse_recording(make_job(), "usage_limit", 1)  # "... or try again at 11:13 AM."
    reset = datetime.fromisoformat(result.reset_at)
    assert before <= reset <= before + timedelta(days=1, minutes=2)


def test_an_agent_reporting_blocked_failed_even_though_codex_exited_0(make_job):
    result = parse_recording(make_job(), "blocked", 0)
    assert result.success is False
    assert result.summary == "spec missing"
    assert result.error_kind == "other" and result.retryable is False


def test_output_that_is_not_codex_events_is_a_clear_failure(make_job):
    result = parse_recording(make_job(), "synthetic_garbage", 2)
    assert result.success is False and result.error_kind == "other"
    assert "no JSON events" in result.message
    assert result.session_id is None


def test_output_cut_before_the_turn_ended_is_a_failure_even_with_exit_0(make_job):
    result = parse_recording(make_job(), "synthetic_truncated", 0)
    assert result.success is False
    assert "before its turn ended" in result.message
    assert result.session_id is not None


def test_a_missing_log_is_a_failure_not_a_traceback(make_job):
    job = make_job()
    result = make_agent({}).parse_result(job, exited(0, Path(job.log_path)))
    assert result.success is False and "no JSON events" in result.message


def test_only_the_last_run_in_a_log_counts(make_job):
    """A ticket retried in the same run appends to its log: the earlier failure is history."""
    job = make_job()
    Path(job.log_path).write_text((RECORDED / "codex_rate_limit.log").read_text()
                                  + (RECORDED / "codex_success.log").read_text())
    result = make_agent({}).parse_result(job, exited(0, Path(job.log_path)))
    assert result.success is True and result.session_id == THREAD and result.tokens == 2200


def test_a_timeout_is_reported_as_such_with_the_session_so_far(make_job):
    job = make_job()
    shutil.copy(RECORDED / "codex_synthetic_truncated.log", job.log_path)
    stopped = AgentExit(TIMEOUT, -15, 60.0, "", "timed out after 60 s", 4242)
    result = make_agent({}).parse_result(job, stopped)
    assert (result.success, result.error_kind) == (False, "timeout")
    assert result.session_id is not None


def test_the_result_file_summary_wins_and_its_failure_counts(make_job):
    job = make_job()
    job.result_file.write_text('{"success": false, "summary": "gave up on the parser"}')
    result = parse_recording(job, "success", 0)
    assert result.success is False
    assert result.summary == "gave up on the parser"


# ---------------------------------------------------------------- classification and reset times


@pytest.mark.parametrize("message, kind", [
    ("exceeded retry limit, last status: 429 Too Many Requests", "rate_limit"),
    ("rate limit exceeded: Rate limit reached for requests", "rate_limit"),
    ("Quota exceeded. Check your plan and billing details.", "quota"),
    ("You've hit your usage limit. Upgrade to Pro or try again at 3:04 PM.", "quota"),
    ("unexpected status 401 Unauthorized: Incorrect API key provided", "auth"),
    ("unexpected status 403 Forbidden: denied", "auth"),
    ("We're currently experiencing high demand, which may cause temporary errors.", "api"),
    ("unexpected status 502 Bad Gateway", "api"),
    ("stream disconnected before completion: error sending request", "api"),
    ("context window exceeded: this model's maximum context length is 272000 tokens", "other"),
    ("error: unexpected argument '--bogus' found", "setup"),
    ("unexpected status 404 Not Found: The model `gpt-9` does not exist or you do not have access to it.", "setup"),
])
def test_error_messages_are_classified(message, kind):
    assert classify_error(message)[0] == kind


LOCAL = timezone(timedelta(hours=2))


@pytest.mark.parametrize("message, expected", [
    ("try again in 2 hours 5 minutes", datetime(2026, 1, 31, 12, 5, 0, tzinfo=LOCAL)),
    ("Please retry in 41.2s.", datetime(2026, 1, 31, 10, 0, 42, tzinfo=LOCAL)),
    ("... or try again at 11:13 AM.", datetime(2026, 1, 31, 11, 14, tzinfo=LOCAL)),
    ("... or try again at 9:30 AM.", datetime(2026, 2, 1, 9, 31, tzinfo=LOCAL)),  # already past: tomorrow
    ("... or try again at Nov 23rd, 2026 4:41 PM.", datetime(2026, 11, 23, 16, 42, tzinfo=LOCAL)),
    ("no time given", None),
])
def test_reset_times_are_read_in_the_local_zone_and_written_in_utc(message, expected):
    now = datetime(2026, 1, 31, 10, 0, 0, tzinfo=LOCAL)
    found = reset_time(message, now)
    if expected is None:
        assert found is None
    else:
        assert found == expected.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- version


def test_cli_version_runs_the_executable_and_is_none_when_missing(tmp_path, monkeypatch):
    program = fake_program(tmp_path / "codex", "echo 'codex-cli 0.169.0'")
    assert codex.cli_version(str(program)) == "0.169.0"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert codex.cli_version() is None
    assert codex.cli_version(os.fspath(tmp_path / "nothing-here")) is None

"""The gemini agent: the command it builds, and what it reads from Gemini CLI's recorded output.

The logs in recorded/gemini_*.log are real `gemini -p ... -o stream-json` runs (Gemini CLI
0.61.0, stdout and stderr merged as the engine logs them) against tests/fakes/gemini_api.py,
each scripted to succeed or fail one way; gemini_json_*.log are real runs with `-o json`
(whose error object goes to stderr), still understood; gemini_*synthetic_*.log are cut or
written by hand.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sage_stream.agents import gemini
from sage_stream.agents.base import AgentJob
from sage_stream.agents.gemini import GeminiAgent, classify_error, make_agent, retry_time, session_file
from sage_stream.agents.registry import get_agent
from sage_stream.process.supervise import CANCELLED, AgentExit
from sage_stream.errors import SageError
from tests.agents.support import exited, fake_program

RECORDED = Path(__file__).parent / "recorded"
SESSION = "59a7c9ca-9681-41d5-8ac9-10b656d27816"  # of gemini_success.log
JSON_SESSION = "b212dd2b-69e3-4035-9556-79e2b91762bf"  # of gemini_json_success.log


def parse_recording(job: AgentJob, name: str, returncode: int, agent: GeminiAgent | None = None):
    shutil.copy(RECORDED / f"gemini_{name}.log", job.log_path)
    return (agent or make_agent({})).parse_result(job, exited(returncode, Path(job.log_path)))


def write_session(home: Path, project: str, session: str, *, started: str = "1795251839574") -> Path:
    """A session file as Gemini CLI 0.61 writes it: JSON lines, metadata first."""
    chats = home / ".gemini" / "tmp" / project / "chats"
    chats.mkdir(parents=True, exist_ok=True)
    path = chats / f"session-{started}-{session[:8]}.jsonl"
    path.write_text(json.dumps({"sessionId": session, "projectHash": "x"}) + "\n"
                    + json.dumps({"type": "user", "content": "hi"}) + "\n")
    return path


# ---------------------------------------------------------------- the command


def test_runs_headless_with_streamed_json_yolo_and_a_trusted_workspace(make_job):
    invocation = make_agent({}).invocation(make_job())
    assert invocation.argv == ["gemini", "-p", "# the prompt\n", "-o", "stream-json", "--approval-mode", "yolo"]
    assert invocation.env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"


def test_model_and_extra_args_follow(make_job):
    argv = make_agent({"model": "gemini-2.5-pro", "extra_args": ["--include-directories", "../docs"]}).invocation(
        make_job()).argv
    assert argv[7:] == ["-m", "gemini-2.5-pro", "--include-directories", "../docs"]


@pytest.mark.parametrize("choice", [["--approval-mode", "auto_edit"], ["-y"], ["--approval-mode=auto_edit"]])
def test_an_approval_mode_in_extra_args_replaces_ours(make_job, choice):
    argv = make_agent({"extra_args": choice}).invocation(make_job()).argv
    assert "yolo" not in argv and argv[-len(choice):] == choice


@pytest.mark.parametrize("extra, message", [
    (["-o", "text"], "JSON events"),
    (["--resume", "latest"], "chooses the session"),
    (["--model", "x"], None),
])
def test_extra_args_may_not_take_over_output_or_sessions(extra, message):
    if message is None:
        with pytest.raises(SageError, match="keep one of them"):
            make_agent({"model": "y", "extra_args": extra})
    else:
        with pytest.raises(SageError, match=message):
            make_agent({"extra_args": extra})


def test_the_environment_has_gemini_credentials_and_its_endpoint_and_nothing_else(make_job, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("GEMINI_CLI_HOME", "/gemini-home")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_API_KEY", "other")
    env = make_agent({}).invocation(make_job()).env
    assert env["GEMINI_API_KEY"] == "k" and env["GEMINI_CLI_HOME"] == "/gemini-home"
    assert env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:9" and "OPENAI_API_KEY" not in env
    listed = make_agent({"env": ["OPENAI_API_KEY"]}).invocation(make_job()).env
    assert listed["OPENAI_API_KEY"] == "other"


def test_a_long_prompt_fits_in_one_argument_and_names_the_file(make_job):
    job = make_job()
    job.prompt_file.write_text("start\n" + "x" * 300_000 + "\nthe end\n")
    argument = make_agent({}).invocation(job).argv[2]
    assert len(argument.encode()) <= gemini.ARGUMENT_LIMIT_BYTES
    assert str(job.prompt_file.absolute()) in argument and argument.endswith("the end\n")


def test_a_session_is_continued_from_its_file_in_whatever_directory_it_was_filed(make_job, tmp_path, monkeypatch):
    home = tmp_path / "gemini-home"
    monkeypatch.setenv("GEMINI_CLI_HOME", str(home))
    write_session(home, "slot-1", f"{SESSION[:8]}-0000-0000-0000-000000000000")  # same first 8, another id
    path = write_session(home, "slot-0", SESSION)
    job = make_job()
    job.session_id = SESSION
    argv = make_agent({}).invocation(job).argv
    assert argv[-2:] == ["--session-file", str(path)]


def test_a_session_that_cannot_be_found_starts_a_new_one_and_says_so_in_the_log(make_job, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_CLI_HOME", str(tmp_path / "empty-home"))
    job = make_job()
    job.session_id = SESSION
    argv = make_agent({}).invocation(job).argv
    assert "--session-file" not in argv and "--resume" not in argv
    assert f"gemini session {SESSION} not found" in Path(job.log_path).read_text()


def test_a_session_id_that_is_not_a_uuid_is_refused(make_job):
    job = make_job()
    job.session_id = "../../etc"
    with pytest.raises(SageError, match="not a Gemini session id"):
        make_agent({}).invocation(job)


def test_session_files_of_older_versions_are_whole_json(tmp_path):
    chats = tmp_path / ".gemini" / "tmp" / "abc123" / "chats"
    chats.mkdir(parents=True)
    old = chats / f"session-2026-01-31T10-00-{SESSION[:8]}.json"
    old.write_text(json.dumps({"sessionId": SESSION, "messages": []}, indent=2))
    assert session_file(SESSION, tmp_path / ".gemini") == old


def test_the_registry_knows_gemini():
    assert isinstance(get_agent("gemini"), GeminiAgent)


# ---------------------------------------------------------------- recorded results


def test_success_reads_response_summary_session_and_usage(make_job):
    result = parse_recording(make_job(), "success", 0)
    assert result.success is True
    assert result.summary == "added hello.txt"
    assert result.session_id == SESSION
    assert (result.tokens, result.turns) == (2200, 2)
    assert result.cost_usd is None
    assert result.error_kind is None


def test_a_continued_session_reports_the_new_id_gemini_gave_it(make_job):
    result = parse_recording(make_job(), "resume", 0)
    assert result.success is True and result.summary == "added two.txt"
    assert result.session_id == "de3a9029-918f-4b9c-829b-4495fb62311e"


@pytest.mark.parametrize("name, returncode, kind, retryable, message", [
    ("rate_limit", 173, "rate_limit", True, "gemini: Rate limit exceeded: too many requests"),  # 429 & 0xFF
    ("minute_quota", 173, "rate_limit", True, "gemini: You exceeded your current quota"),
    ("daily_quota", 173, "quota", True, "gemini: You have exhausted your daily quota on this model."),
    ("auth", 145, "auth", False, "gemini: API key not valid. Please pass a valid API key."),  # 401 & 0xFF
    ("server_error", 244, "api", True, "gemini: Internal error encountered."),  # 500 & 0xFF
    ("malformed", 1, "other", False, "gemini: Incomplete JSON segment at the end"),
])
def test_the_result_event_s_error_is_classified_with_the_status_read_from_the_exit_code(
        make_job, name, returncode, kind, retryable, message):
    result = parse_recording(make_job(), name, returncode)
    assert result.success is False
    assert (result.error_kind, result.retryable) == (kind, retryable)
    assert result.message.startswith(message)  # the API's words, without Gemini's wrapper and advice
    assert result.session_id  # from the init event


def test_a_429_s_words_alone_say_rate_limit_even_when_the_exit_code_is_lost(make_job):
    assert parse_recording(make_job(), "rate_limit", 1).error_kind == "rate_limit"


def test_auth_refused_before_the_run_starts_is_auth(make_job):
    result = parse_recording(make_job(), "auth_not_selected", 41)  # plain text, no event
    assert (result.success, result.error_kind, result.retryable) == (False, "auth", False)
    assert "Invalid auth method selected" in result.message


@pytest.mark.parametrize("name, returncode, kind, words", [
    ("rate_limit", 173, "rate_limit", "Rate limit exceeded"),
    ("daily_quota", 173, "quota", "daily quota"),
    ("auth", 145, "auth", "API key not valid"),
    ("auth_not_selected", 41, "auth", "Invalid auth method selected"),
    ("server_error", 244, "api", "Internal error encountered"),
])
def test_with_json_output_the_error_object_on_stderr_is_found_and_classified_by_its_code(
        make_job, name, returncode, kind, words):
    result = parse_recording(make_job(), f"json_{name}", returncode)
    assert result.success is False and result.error_kind == kind
    assert words in result.message
    assert not result.message.startswith("gemini: {")  # the API's JSON is unwrapped to its message


def test_with_json_output_success_is_read_from_the_result_object(make_job):
    result = parse_recording(make_job(), "json_success", 0)
    assert (result.success, result.summary, result.session_id) == (True, "added hello.txt", JSON_SESSION)
    assert (result.tokens, result.turns) == (2200, 2)


def test_with_json_output_a_result_cut_in_half_is_a_failure(make_job):
    result = parse_recording(make_job(), "json_synthetic_truncated", 0)
    assert result.success is False and "no result" in result.message


def test_a_rate_limit_that_names_a_delay_sets_when_to_try_again(make_job):
    before = datetime.now(UTC)
    result = parse_recording(make_job(), "minute_quota", 173)
    reset = datetime.fromisoformat(result.reset_at)
    assert before + timedelta(seconds=40) <= reset <= before + timedelta(seconds=45)


def test_an_agent_reporting_blocked_failed_even_though_gemini_exited_0(make_job):
    result = parse_recording(make_job(), "blocked", 0)
    assert (result.success, result.summary, result.error_kind) == (False, "spec missing", "other")


def test_a_crash_without_json_is_a_clear_failure(make_job):
    result = parse_recording(make_job(), "synthetic_crash", 1)
    assert result.success is False and result.error_kind == "other"
    assert "no result" in result.message and "exit code 1" in result.message


def test_events_cut_before_the_result_are_a_failure_even_with_exit_0(make_job):
    result = parse_recording(make_job(), "synthetic_truncated", 0)
    assert result.success is False and "no result" in result.message
    assert result.session_id == SESSION


def test_the_prompt_echoed_in_the_events_is_never_classified(make_job):
    job = make_job()
    Path(job.log_path).write_text('{"type":"init","session_id":"' + SESSION + '"}\n'
                                  '{"type":"message","role":"user","content":"fix the 429 rate limit handling"}\n')
    result = make_agent({}).parse_result(job, exited(1, Path(job.log_path)))
    assert result.error_kind == "other"


def test_exit_41_without_json_is_auth(make_job):
    job = make_job()
    Path(job.log_path).write_text("Please set an Auth method in your settings\n")
    result = make_agent({}).parse_result(job, exited(41, Path(job.log_path)))
    assert (result.success, result.error_kind) == (False, "auth")


def test_only_the_last_result_in_a_log_counts(make_job):
    job = make_job()
    Path(job.log_path).write_text((RECORDED / "gemini_rate_limit.log").read_text()
                                  + (RECORDED / "gemini_success.log").read_text())
    result = make_agent({}).parse_result(job, exited(0, Path(job.log_path)))
    assert result.success is True and result.session_id == SESSION


def test_a_cancelled_run_keeps_the_session_it_reported(make_job):
    job = make_job()
    shutil.copy(RECORDED / "gemini_success.log", job.log_path)
    result = make_agent({}).parse_result(job, AgentExit(CANCELLED, -15, 3.0, "", "cancelled", 1))
    assert (result.success, result.error_kind, result.session_id) == (False, "other", SESSION)


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("message, code, kind", [
    ("Rate limit exceeded", 429, "rate_limit"),
    ("You have exhausted your daily quota on this model.", 429, "quota"),
    ("You have exhausted your capacity on this model.", 429, "quota"),
    ("API key not valid. Please pass a valid API key.", 400, "auth"),  # Google answers a bad key with 400
    ("Permission denied on resource project", 403, "auth"),
    ("The model is overloaded. Please try again later.", 503, "api"),
    ("request to http://127.0.0.1:9/v1beta failed, reason: connect ECONNREFUSED", None, "api"),
    ("exceeded your current quota ... check your plan and billing details", None, "quota"),
    ("Invalid auth method selected.", 41, "auth"),
    ("Model not found: gemini-9", 404, "setup"),  # every ticket would fail the same way: the run halts
    ("Unknown arguments: bogus", 1, "setup"),
    ("Requested entity was not found.", 404, "other"),
])
def test_errors_are_classified_by_code_then_words(message, code, kind):
    assert classify_error(message, code)[0] == kind


def test_retry_delays_in_seconds_and_milliseconds():
    now = datetime(2026, 1, 31, 10, 0, 0, tzinfo=UTC)
    assert retry_time("Please retry in 41.872379294s.", now) == "2026-01-31T10:00:42Z"
    assert retry_time("Suggested retry after 60s.", now) == "2026-01-31T10:01:00Z"
    assert retry_time("Please retry in 500ms", now) == "2026-01-31T10:00:01Z"
    assert retry_time("try later", now) is None


def test_cli_version(tmp_path):
    program = fake_program(tmp_path / "gemini", "echo 0.61.0")
    assert gemini.cli_version(str(program)) == "0.61.0"
    assert gemini.cli_version(str(tmp_path / "missing")) is None

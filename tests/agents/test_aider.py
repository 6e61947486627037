"""The aider agent: the command it builds, and what it reads from Aider's recorded output.

The logs in recorded/aider_*.log are real `aider --message-file ...` runs (Aider 0.86.2,
stdout and stderr merged as the engine logs them) against tests/fakes/aider_chat.py, each
scripted to succeed or fail one way (aider_success_cost.log with a model metadata file that
gives the fake model prices; aider_whole_format.log with Aider's "whole" edit format);
aider_synthetic_*.log are written by hand. Aider exits 0 in every one of them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sage_stream.agents import aider
from sage_stream.agents.aider import AiderAgent, classify_error, make_agent
from sage_stream.agents.base import AgentJob
from sage_stream.agents.registry import get_agent
from sage_stream.process.supervise import IDLE_TIMEOUT, AgentExit
from sage_stream.errors import SageError
from tests.agents.support import exited, fake_program

RECORDED = Path(__file__).parent / "recorded"
MODEL = {"model": "openai/fake-model"}


def parse_recording(job: AgentJob, name: str, returncode: int = 0):
    shutil.copy(RECORDED / f"aider_{name}.log", job.log_path)
    return make_agent(MODEL).parse_result(job, exited(returncode, Path(job.log_path)))


# ---------------------------------------------------------------- the command


def test_runs_headless_from_the_prompt_file_keeping_its_files_out_of_the_worktree(make_job):
    job = make_job()
    argv = make_agent(MODEL).invocation(job).argv
    assert argv[:3] == ["aider", "--message-file", str(job.prompt_file.absolute())]
    for flag in ("--yes-always", "--no-auto-commits", "--no-stream", "--no-pretty", "--no-fancy-input",
                 "--no-check-update", "--no-show-model-warnings", "--no-gitignore", "--no-analytics"):
        assert flag in argv
    assert "--analytics-disable" not in argv  # it rewrites ~/.aider/analytics.json for good
    history = Path(argv[argv.index("--chat-history-file") + 1])
    assert history == Path(job.log_path).absolute().parent / "agent.aider.chat.md"  # beside the log
    assert argv[argv.index("--input-history-file") + 1] == os.devnull
    assert argv[argv.index("--model") + 1] == "openai/fake-model"
    assert argv[argv.index("--edit-format") + 1] == "diff"
    assert "--restore-chat-history" not in argv


def test_an_edit_format_in_extra_args_replaces_ours(make_job):
    argv = make_agent({**MODEL, "extra_args": ["--edit-format", "udiff"]}).invocation(make_job()).argv
    assert argv.count("--edit-format") == 1 and argv[-1] == "udiff"


def test_only_existing_files_of_the_worktree_are_passed(make_job):
    job = make_job(files=["src/calc.py", "./README.md", "missing.py", "src/*.py", "../outside.py", "/etc/passwd",
                          "src"])
    (job.worktree / "src").mkdir()
    (job.worktree / "src" / "calc.py").write_text("x = 1\n")
    (job.worktree / "README.md").write_text("hi\n")
    (job.worktree.parent / "outside.py").write_text("no\n")
    argv = make_agent(MODEL).invocation(job).argv
    assert argv[-2:] == ["src/calc.py", "README.md"]


def test_a_session_is_the_chain_s_chat_history_restored(make_job):
    job = make_job()
    job.session_id = "CALC-000"
    argv = make_agent(MODEL).invocation(job).argv
    assert "--restore-chat-history" in argv
    history = Path(argv[argv.index("--chat-history-file") + 1])
    assert history == Path(job.log_path).absolute().parent / "CALC-000.aider.chat.md"


@pytest.mark.parametrize("session", ["../escape", "a/b", ".hidden", "x" * 200])
def test_a_session_that_cannot_name_a_file_beside_the_log_is_refused(make_job, session):
    job = make_job()
    job.session_id = session
    with pytest.raises(SageError, match="cannot name an aider chat history file"):
        make_agent(MODEL).invocation(job)


def test_a_model_is_required(monkeypatch):
    monkeypatch.delenv("AIDER_MODEL", raising=False)
    with pytest.raises(SageError, match="aider needs a model"):
        make_agent({})
    assert isinstance(make_agent({"extra_args": ["--model", "sonnet"]}), AiderAgent)
    monkeypatch.setenv("AIDER_MODEL", "sonnet")
    assert isinstance(make_agent({}), AiderAgent)


def test_the_environment_has_aider_settings_and_provider_keys(make_job, monkeypatch):
    monkeypatch.setenv("AIDER_EDIT_FORMAT", "diff")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a")
    monkeypatch.setenv("GITHUB_TOKEN", "secret")
    env = make_agent(MODEL).invocation(make_job()).env
    assert env["AIDER_EDIT_FORMAT"] == "diff" and env["ANTHROPIC_API_KEY"] == "a"
    assert "GITHUB_TOKEN" not in env


def test_the_registry_knows_aider():
    assert get_agent("aider", config=MODEL).supports_sessions()


# ---------------------------------------------------------------- recorded results


def test_success_reads_the_summary_tokens_and_the_session_name(make_job):
    job = make_job()
    (job.worktree / ".aider.tags.cache.v4").mkdir()
    (job.worktree / ".aider.tags.cache.v4" / "cache.db").write_text("sqlite")
    result = parse_recording(job, "success")
    assert result.success is True
    assert result.summary == "added hello.txt"
    assert (result.tokens, result.turns, result.cost_usd) == (1100, 1, None)
    assert result.session_id == "agent"  # the chat history beside agent.log
    assert not (job.worktree / ".aider.tags.cache.v4").exists()  # never landed as work


def test_the_cost_is_read_when_aider_prints_it(make_job):
    result = parse_recording(make_job(), "success_cost")
    assert result.success is True and result.cost_usd == pytest.approx(0.0045)


def test_a_continued_session_keeps_its_name(make_job):
    job = make_job()
    job.session_id = "CALC-001"
    result = parse_recording(job, "resume")
    assert (result.success, result.summary, result.session_id) == (True, "added two.txt", "CALC-001")


@pytest.mark.parametrize("name, kind, retryable, words", [
    ("rate_limit", "rate_limit", True, "RateLimitError"),
    ("quota", "quota", True, "exceeded your current quota"),
    ("auth", "auth", False, "Incorrect API key provided"),
    ("server_error", "api", True, "InternalServerError"),
    ("not_found", "setup", False, "does not exist"),  # a missing model: the run halts
])
def test_a_failed_model_call_is_a_failure_although_aider_exited_0(make_job, name, kind, retryable, words):
    result = parse_recording(make_job(), name, 0)
    assert result.success is False
    assert (result.error_kind, result.retryable) == (kind, retryable)
    assert words in result.message
    assert "check your quotas" not in result.message  # Aider's own advice is not the provider's error


def test_a_rate_limit_that_a_retry_got_past_is_not_a_failure(make_job):
    result = parse_recording(make_job(), "synthetic_recovered_rate_limit")
    assert result.success is True and result.summary == "added hello.txt"


def test_no_model_and_no_key_is_an_auth_failure(make_job):
    result = parse_recording(make_job(), "synthetic_no_model")
    assert (result.success, result.error_kind, result.retryable) == (False, "auth", False)


def test_the_whole_edit_format_reports_what_aider_edited(make_job):
    """Aider's "whole" format took the SAGE-RESULT block for README.md's new content: the
    summary names both files, so the damage is visible (hence --edit-format diff)."""
    result = parse_recording(make_job(), "whole_format")
    assert result.summary == "edited README.md, hello.txt"


def test_an_agent_reporting_blocked_failed(make_job):
    result = parse_recording(make_job(), "blocked")
    assert (result.success, result.summary, result.error_kind) == (False, "spec missing", "other")


def test_no_answer_at_all_is_a_failure(make_job):
    job = make_job()
    Path(job.log_path).write_text("Aider v0.86.2\nModel: openai/fake-model with diff edit format\n")
    result = make_agent(MODEL).parse_result(job, exited(0, Path(job.log_path)))
    assert (result.success, result.error_kind) == (False, "other")
    assert "no answer from the model" in result.message


def test_a_crash_is_a_failure_with_its_last_line(make_job):
    job = make_job()
    Path(job.log_path).write_text("Aider v0.86.2\nTraceback (most recent call last):\nKeyError: 'x'\n")
    result = make_agent(MODEL).parse_result(job, exited(1, Path(job.log_path)))
    assert result.success is False and result.message == "aider exited with code 1: KeyError: 'x'"


def test_only_the_last_run_in_a_log_counts(make_job):
    job = make_job()
    Path(job.log_path).write_text((RECORDED / "aider_success.log").read_text()
                                  + (RECORDED / "aider_auth.log").read_text())
    result = make_agent(MODEL).parse_result(job, exited(0, Path(job.log_path)))
    assert (result.success, result.error_kind, result.tokens) == (False, "auth", None)


def test_an_idle_timeout_still_removes_the_cache(make_job):
    job = make_job()
    (job.worktree / ".aider.tags.cache.v4").mkdir()
    result = make_agent(MODEL).parse_result(job, AgentExit(IDLE_TIMEOUT, -9, 600.0, "", "no output", 1))
    assert (result.success, result.error_kind, result.session_id) == (False, "timeout", "agent")
    assert not (job.worktree / ".aider.tags.cache.v4").exists()


@pytest.mark.parametrize("name, message, kind", [
    ("RateLimitError", "Rate limit reached for gpt-4o", "rate_limit"),
    ("RateLimitError", "You exceeded your current quota, please check your plan and billing details.", "quota"),
    ("APIError", 'OpenrouterException - {"error":{"message":"Insufficient credits","code":402}}', "quota"),
    ("BudgetExceededError", "Budget has been exceeded", "quota"),
    ("AuthenticationError", "invalid x-api-key", "auth"),
    ("ServiceUnavailableError", "overloaded", "api"),
    ("APIConnectionError", "Connection error.", "api"),
    ("Timeout", "Request timed out", "api"),
    ("ContextWindowExceededError", "too long", "other"),
    ("BadRequestError", "bad", "other"),
    ("NotFoundError", "OpenAIException - The model `gpt-9` does not exist", "setup"),
    ("BadRequestError", "LLM Provider NOT provided. Pass in the LLM provider you are trying to call", "setup"),
    ("", "aider: error: unrecognized arguments: --bogus", "setup"),
])
def test_litellm_errors_are_classified_by_name_then_words(name, message, kind):
    assert classify_error(name, message)[0] == kind


def test_cli_version(tmp_path):
    program = fake_program(tmp_path / "aider", "echo 'aider 0.86.2'")
    assert aider.cli_version(str(program)) == "aider 0.86.2"
    assert aider.cli_version(str(tmp_path / "missing")) is None

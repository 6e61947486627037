"""What the CLI agents share (agents/cli_support.py): configuration, the prompt argument, the
version, reading the log, judging a finished run, classifying errors and reset times."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sage_stream.agents import cli_support
from sage_stream.agents.base import ResultBlock, ResultFile
from sage_stream.agents.cli_support import CliAgent, CliConfig, ErrorRule, read_cli_config
from sage_stream.process.supervise import NOTE_PREFIX
from sage_stream.errors import SageError
from tests.agents.support import fake_program

# ---------------------------------------------------------------- configuration and the agent


def test_the_configuration_keys_every_cli_reads():
    config = {"model": "m", "extra_args": ["--verbose"], "env": ["MY_KEY"], "preset": "x"}
    assert read_cli_config(config, cli="x", model_flags=("-m",)) == CliConfig("m", ["--verbose"], ["MY_KEY"])
    assert read_cli_config({"model": ""}, cli="x", model_flags=("-m",)) == CliConfig()


@pytest.mark.parametrize("config, message", [
    ({"extra_args": "--verbose"}, r"\[agent\] extra_args must be a list of strings"),
    ({"extra_args": ["--out=text"]}, r"extra_args: --out=text is set by sage-stream for mycli \(its output\)"),
    ({"model": ["m"]}, "model must be a string"),
    ({"model": "a", "extra_args": ["--model=b"]}, "extra_args has -m/--model too: keep one of them"),
    ({"env": "MY_KEY"}, r"\[agent\] env must be a list"),
])
def test_a_bad_configuration_is_a_user_error(config, message):
    with pytest.raises(SageError, match=message):
        read_cli_config(config, cli="mycli", model_flags=("-m", "--model"), reserved=[(("--out",), "its output")])


def test_a_short_flag_matches_only_itself_a_long_one_also_with_a_value():
    assert cli_support.has_flag(["--model=x"], ("--model",)) and cli_support.has_flag(["-m"], ("-m",))
    assert not cli_support.has_flag(["-m=x", "--models"], ("-m", "--model"))


class _Cli(CliAgent):
    name = "mycli"
    executable = "mycli"
    own_environment = ("MYCLI_HOME",)


def test_an_agent_passes_its_own_variables_before_the_configured_ones():
    agent = _Cli.configured(CliConfig("m", ["-v"], ["MY_KEY"]))
    assert (agent.model, agent.extra_args, agent.passthrough) == ("m", ["-v"], ["MYCLI_HOME", "MY_KEY"])
    assert agent.executable == "mycli" and agent.supports_sessions()
    assert _Cli(executable="/opt/mycli").executable == "/opt/mycli"
    with pytest.raises(SageError, match="GIT_DIR cannot be passed"):
        _Cli(passthrough=["GIT_DIR"])


def test_a_session_id_that_does_not_look_like_one_is_refused(make_job):
    job = make_job()
    job.session_id = "ses_1; rm -rf /"
    with pytest.raises(SageError, match=r"CALC-001: session id 'ses_1; rm -rf /' is not an id of mine"):
        cli_support.checked_session(job, re.compile(r"^ses_\w+$"), "an id of mine")
    job.session_id = "ses_1"
    assert cli_support.checked_session(job, re.compile(r"^ses_\w+$"), "an id of mine") == "ses_1"


# ---------------------------------------------------------------- the prompt and the version


def test_a_prompt_that_fits_is_one_argument_as_written(make_job):
    job = make_job()
    assert cli_support.prompt_argument(job) == ("# the prompt\n", False)
    Path(job.prompt_file).write_text("--help me\n")
    assert cli_support.prompt_argument(job) == ("--help me\n", False)
    assert cli_support.prompt_argument(job, option_safe=True) == ("\n--help me\n", False)


def test_a_long_prompt_keeps_its_start_and_end_and_names_the_whole_file(make_job):
    job = make_job()
    Path(job.prompt_file).write_text("START " + "é" * 100_000 + " DONE MEANS THIS")
    argument, shortened = cli_support.prompt_argument(job, limit_bytes=20_000)
    assert shortened and len(argument.encode()) <= 20_000
    assert str(Path(job.prompt_file).absolute()) in argument.splitlines()[0]
    assert "START" in argument and argument.endswith("DONE MEANS THIS")


def test_an_unreadable_prompt_is_a_message_naming_the_ticket(make_job):
    job = make_job()
    Path(job.prompt_file).unlink()
    with pytest.raises(SageError, match="ticket CALC-001: cannot read the prompt"):
        cli_support.prompt_argument(job)


def test_the_version_is_the_first_or_last_line_the_program_prints(tmp_path):
    program = fake_program(tmp_path / "mycli", "echo 'mycli 1.0'; echo 'update available'")
    assert cli_support.version_line(str(program)) == "mycli 1.0"
    assert cli_support.version_line(str(program), last=True) == "update available"


@pytest.mark.parametrize("script", ["exit 3", "true"])
def test_no_version_from_a_failing_or_silent_program(tmp_path, script):
    assert cli_support.version_line(str(fake_program(tmp_path / "mycli", script))) is None


def test_no_version_from_a_missing_or_hanging_program(tmp_path):
    assert cli_support.version_line(str(tmp_path / "missing")) is None
    assert cli_support.version_line(str(fake_program(tmp_path / "slow", "exec sleep 5")), timeout_s=0.2) is None


# ---------------------------------------------------------------- the log


def test_json_events_are_found_among_other_lines(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text('starting\n{"type": "a", "n": 1}\nwarning: {"type": "b"}\n{"type": "c", "trunc\n'
                   '{"type": 3}\n[1, 2]\r\n{"type": "d"}\r\n')
    assert [event["type"] for event in cli_support.iter_json_events(log)] == ["a", "b", "d"]
    assert list(cli_support.iter_json_events(tmp_path / "missing")) == []


def test_the_last_accepted_json_object_on_a_line_or_pretty_printed():
    text = ('{"type": "result", "n": 1}\nstderr: {"type": "result", "n": 2}\n{"type": "other"}\n'
            + json.dumps({"response": "ok", "stats": {"n": 3}}, indent=2) + "\nbye\n")
    def is_result(value: dict) -> bool:
        return value.get("type") == "result"

    assert cli_support.last_json_object(text, is_result) == {"type": "result", "n": 2}
    pretty = cli_support.last_json_object(text, lambda value: "response" in value,
                                          starts=re.compile(r"^[ \t]*\{", re.MULTILINE))
    assert pretty == {"response": "ok", "stats": {"n": 3}}
    assert cli_support.last_json_object("no json here", is_result) is None


def test_our_notes_are_read_back_from_the_log(make_job):
    job = make_job()
    Path(job.log_path).write_text("output\n")
    cli_support.note_in_log(job, "mycli: new session 42")
    with open(job.log_path, "a") as log:
        log.write(f"more output\n{NOTE_PREFIX}  engine: stopped \n")
    assert list(cli_support.log_notes(Path(job.log_path))) == ["mycli: new session 42", "engine: stopped"]


# ---------------------------------------------------------------- the result


def test_a_finished_run_succeeds_unless_a_problem_or_the_agent_says_otherwise():
    fine = cli_support.finished_result(ResultFile(), ResultBlock("done", "did it"), summary="did it")
    assert (fine.success, fine.error_kind, fine.message, fine.summary) == (True, None, None, "did it")
    noted = cli_support.finished_result(ResultFile(note="result file: odd"), None, notes=["a note", None])
    assert (noted.success, noted.message) == (True, "a note; result file: odd")
    failed = cli_support.finished_result(ResultFile(success=False), ResultBlock("blocked", None), ["exit code 1"])
    assert (failed.success, failed.error_kind) == (False, "other")
    assert failed.message == "exit code 1; the result file says it failed; the agent reported it is blocked"


def test_the_summary_is_the_result_file_then_the_block_then_the_text_shortened():
    block = ResultBlock("done", "from the block")
    assert cli_support.summary_of(ResultFile(summary="from the file"), block, "text") == "from the file"
    assert cli_support.summary_of(ResultFile(), block, "text") == "from the block"
    assert cli_support.summary_of(ResultFile(), None, "  text \n") == "text"
    assert cli_support.summary_of(ResultFile(), None, "   ") is None
    long = cli_support.summary_of(ResultFile(), None, "x" * 5000)
    assert len(long) == cli_support.SUMMARY_CHARS and long.endswith("…")


def test_numbers_are_never_booleans():
    assert cli_support.int_sum([1, 2, True, None, 1.5, "3"]) == 3
    assert cli_support.int_sum([None, False]) is None
    assert cli_support.is_number(0.5) and not cli_support.is_number(True) and not cli_support.is_number(float("nan"))


# ---------------------------------------------------------------- errors

_RULES = (
    ErrorRule("quota", True, cli_support.words(r"quota"), statuses={402}),
    ErrorRule("rate_limit", True, cli_support.words(cli_support.RATE_LIMIT_WORDS), statuses={429}),
    ErrorRule("auth", False, cli_support.words(r"unauthori[sz]ed"), statuses={401}, names={"AuthError"}),
    ErrorRule("api", True, cli_support.words(r"overloaded"), statuses=cli_support.SERVER_ERRORS),
)


@pytest.mark.parametrize("message, status, name, expected", [
    ("Too Many Requests", None, None, ("rate_limit", True)),
    ("429: daily QUOTA exceeded", None, None, ("quota", True)),  # the first rule that matches wins
    ("quota exceeded", 429, None, ("quota", True)),
    ("", 429, None, ("rate_limit", True)),
    ("bad key", None, "AuthError", ("auth", False)),
    ("", 503, None, ("api", True)),
    ("Overloaded", None, None, ("api", True)),
    ("model not found", 404, "NotFound", ("other", False)),
])
def test_errors_are_classified_by_the_first_matching_rule(message, status, name, expected):
    assert cli_support.classify(_RULES, message, status=status, name=name) == expected


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("message, expected", [
    ("Please retry in 41.2s.", "2026-01-02T03:04:47Z"),  # rounded up to a second
    ("Suggested retry after 60s", "2026-01-02T03:05:05Z"),
    ("try again in 2 hours 5 minutes", "2026-01-02T05:09:05Z"),
    ("try again in 1 day, 3h and 10 secs", "2026-01-03T06:04:15Z"),
    ("retry after 500ms", "2026-01-02T03:04:06Z"),
    ("try again later", None),
])
def test_the_delay_a_message_asks_for(message, expected):
    end = cli_support.retry_delay_end(message, NOW)
    assert (cli_support.iso_utc(end) if end else None) == expected

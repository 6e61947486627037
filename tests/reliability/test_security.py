"""Hostile tickets and a leaky environment.

- Shell syntax in any ticket field (`$(...)`, backticks, `;`, newlines) is data: it
  reaches the agent, the prompt and the commit message as written and runs nothing.
- Ticket ids like `../x` or absolute paths, and `docs` / `files` paths that leave the
  repository, are errors for `sage validate`, and even when a run meets them nothing is
  read or written outside the repository.
- An agent gets only the allow-listed environment (agents/environment.py): PATH HOME USER
  LOGNAME SHELL TERM TMPDIR TZ LANG LANGUAGE LC_*, the names in `[agent] env`, and
  SAGE_TICKET_ID SAGE_PROMPT_FILE SAGE_WORKTREE SAGE_RUN_ID SAGE_RESULT_FILE.
- Secrets in sage's environment never reach its logs, run records, index or commits.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path


from .support import (
    INDEX,
    PY,
    clean_env,
    git,
    make_repo,
    py,
    read_index,
    run_stream,
    sage,
    ticket,
    trailer_counts,
    write_config,
    write_file_cmd,
    write_index,
)

ALLOWED = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ", "LANG", "LANGUAGE"}
SAGE_VARS = {"SAGE_TICKET_ID", "SAGE_PROMPT_FILE", "SAGE_WORKTREE", "SAGE_RUN_ID", "SAGE_RESULT_FILE"}
PUSH_REFUSAL = {"GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"}  # git refuses every push (target_watch)
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-4f1d9c",
    "GITHUB_TOKEN": "ghp_secret_7e2b11",
    "ANTHROPIC_API_KEY": "sk-ant-secret-93aa",
    "DATABASE_URL": "postgres://u:pw-secret-5c7e@db/x",
}


def hostile(marker_dir: Path, name: str) -> str:
    """Text that would create `marker_dir/name-*` if any shell ever ran it."""
    target = marker_dir / name
    return (f"$(touch {target}-dollar) `touch {target}-backtick`; touch {target}-semicolon\n"
            f"touch {target}-newline && echo {target} | sh")


def test_shell_syntax_in_ticket_fields_never_runs(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = make_repo(tmp_path / "repo")
    (repo / "docs").mkdir()
    (repo / "docs" / "spec.md").write_text(hostile(markers, "doc-content"))
    git(repo, "add", "docs")
    git(repo, "commit", "-q", "-m", "docs")
    record_args = "import pathlib, sys; pathlib.Path('args.json').write_text(__import__('json').dumps(sys.argv[1:]))"
    argv_item = hostile(markers, "argv")
    summary = hostile(markers, "summary")
    result = ("import json, os, pathlib; result = pathlib.Path(os.environ['SAGE_RESULT_FILE']); "
              f"result.write_text(json.dumps({{'success': True, 'summary': {summary!r}}}))")
    write_index(repo, [
        ticket("SH-1", [PY, "-c", f"{record_args}; {result}", argv_item, "; rm -rf /", "`id`"],
               title=hostile(markers, "title"), description=hostile(markers, "description"),
               acceptanceCriteria=[hostile(markers, "criterion")], component=hostile(markers, "component"),
               docs={"spec": "docs/spec.md", "plan": hostile(markers, "docs-path")},
               files=["args.json", hostile(markers, "files-glob")], summary=hostile(markers, "old-summary")),
    ])
    (repo / ".sage" / "tickets" / "SH-1.md").write_text(hostile(markers, "prose"))
    run = run_stream(repo)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(markers.iterdir()) == []  # nothing anywhere ran any of it
    assert json.loads(git(repo, "show", "main:args.json")) == [argv_item, "; rm -rf /", "`id`"]  # argv, verbatim
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert "$(touch" in message and "`touch" in message  # the title and summary are text in the message
    assert message.rstrip().splitlines()[-1] == "Sage-Ticket: SH-1"  # ticket text cannot add trailers
    assert trailer_counts(repo) == {"SH-1": 1}
    prompt = next((repo / ".sage" / "workers").glob("*/SH-1.prompt.md")).read_text()
    for field in ("prose", "criterion", "doc-content"):  # the text reached the agent as text
        assert hostile(markers, field).splitlines()[0] in prompt, field


def test_the_command_agent_substitutes_placeholders_without_a_shell(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = make_repo(tmp_path / "repo")
    agent = tmp_path / "agent.py"
    agent.write_text("import json, pathlib, sys\n"
                     "pathlib.Path('seen.json').write_text(json.dumps({'argv': sys.argv[1:], "
                     "'prompt': pathlib.Path(sys.argv[1]).read_text()}))\n")
    write_index(repo, [ticket("CMD-1", None, title=hostile(markers, "title"), description=hostile(markers, "body"))])
    template = f"{shlex.quote(PY)} {shlex.quote(str(agent))} {{prompt_file}} {{ticket}} '$(touch {markers}/tpl)'"
    run = run_stream(repo, "--agent", "command", "--agent-cmd", template)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(markers.iterdir()) == []
    seen = json.loads(git(repo, "show", "main:seen.json"))
    assert seen["argv"][1:] == ["CMD-1", f"$(touch {markers}/tpl)"]
    assert hostile(markers, "body").splitlines()[0] in seen["prompt"]


# ---------------------------------------------------------------- ids and paths that escape


def escaping_backlog(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT\n")
    write_index(repo, [
        ticket("../x", write_file_cmd("dotdot.txt", "x")),
        ticket(f"{tmp_path}/abs-1", write_file_cmd("abs.txt", "x")),
        ticket("DOC-1", write_file_cmd("doc.txt", "x"), docs={"spec": "../secret.txt",
                                                              "plan": str(tmp_path / "secret.txt")}),
        ticket("GLOB-1", write_file_cmd("glob.txt", "x"), files=["../outside/**", str(outside) + "/**"]),
    ])
    return repo, outside


def test_validate_rejects_escaping_ids_and_paths(tmp_path: Path) -> None:
    repo, _ = escaping_backlog(tmp_path)
    result = sage(repo, "validate", "--json", "--index", str(repo / INDEX))
    assert result.returncode == 1, result.stdout
    errors = json.loads(result.stdout)["errors"]
    flagged = {(error["code"], error["ticket"], error["field"]) for error in errors}
    assert ("unsafe_id", "../x", "id") in flagged
    assert any(code == "unsafe_id" and "abs-1" in str(tid) for code, tid, _ in flagged)
    assert ("unsafe_path", "DOC-1", "docs.spec") in flagged and ("unsafe_path", "DOC-1", "docs.plan") in flagged
    assert ("unsafe_path", "GLOB-1", "files[0]") in flagged and ("unsafe_path", "GLOB-1", "files[1]") in flagged


def test_stream_refuses_escaping_ids_and_paths(tmp_path: Path) -> None:
    repo, _ = escaping_backlog(tmp_path)
    result = run_stream(repo)
    assert result.returncode == 1 and "nothing was started" in result.stderr


def test_even_when_run_nothing_is_read_or_written_outside_the_repository(tmp_path: Path) -> None:
    repo, outside = escaping_backlog(tmp_path)
    before = sorted(path.name for path in tmp_path.iterdir())
    result = run_stream(repo)
    assert result.returncode in (1, 3) and "Traceback" not in result.stderr, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no abs-1*, no x, nothing new beside repo
    assert list(outside.iterdir()) == []
    assert not (repo.parent / "x").exists()
    tickets = read_index(repo)
    assert tickets["../x"]["state"] != "COMPLETED" and tickets[f"{tmp_path}/abs-1"]["state"] != "COMPLETED"
    assert not any(".." in branch for branch in git(repo, "for-each-ref", "--format=%(refname)").split())
    for path in (repo / ".sage").rglob("*"):
        if path.is_file():
            assert b"TOP-SECRET-CONTENT" not in path.read_bytes(), path  # no prompt read the outside file


# ---------------------------------------------------------------- the environment


def test_agents_get_only_the_allow_listed_environment_and_secrets_stay_out_of_everything(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    dump = tmp_path / "agent-env.json"
    write_config(repo, '[agent]\nenv = ["MY_AGENT_TOKEN"]\n')
    write_index(repo, [ticket("ENV-1", py(f"import json, os, pathlib; pathlib.Path({str(dump)!r}).write_text("
                                          "json.dumps(dict(os.environ))); pathlib.Path('env.txt').write_text('ok'); "
                                          "print('done')"))])
    env = clean_env(**SECRETS, MY_AGENT_TOKEN="passed-on-purpose", PYTHONPATH=str(tmp_path / "evil"),
                    GIT_DIR=str(tmp_path / "elsewhere"), LC_ALL="C.UTF-8")
    run = run_stream(repo, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(dump.read_text())
    expected = ALLOWED | SAGE_VARS | PUSH_REFUSAL | {"MY_AGENT_TOKEN"}
    extra = {name for name in seen if name not in expected and not name.startswith("LC_")}
    assert extra == set(), extra
    assert seen["GIT_CONFIG_KEY_0"].endswith(".pushInsteadOf") and seen["GIT_CONFIG_VALUE_0"] == ""
    assert seen["MY_AGENT_TOKEN"] == "passed-on-purpose" and seen["SAGE_TICKET_ID"] == "ENV-1"
    # nothing sage wrote or printed holds a secret: logs, prompts, run records, index, queue, commits
    texts = [run.stdout, run.stderr, git(repo, "log", "-p", "--all", "--format=%B")]
    texts += [path.read_text(errors="replace") for path in (repo / ".sage").rglob("*") if path.is_file()]
    for name, value in SECRETS.items():
        assert not any(value in text for text in texts), name


def test_the_documented_allow_list_is_the_one_the_code_uses() -> None:
    from sage_stream.agents import environment

    assert set(environment.ALLOWED_NAMES) == ALLOWED and environment.ALLOWED_PREFIXES == ("LC_",)
    assert {environment.SAGE_TICKET_ID, environment.SAGE_PROMPT_FILE, environment.SAGE_WORKTREE,
            environment.SAGE_RUN_ID, environment.SAGE_RESULT_FILE} == SAGE_VARS
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in sorted(ALLOWED | SAGE_VARS):
        assert name in readme, name

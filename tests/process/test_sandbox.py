"""process/sandbox.py: the bwrap command line, the choice of sandbox, the private HOME level for
CLIs that save state files by rename, and (where bwrap works) what a sandboxed process can write."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sage_stream.errors import SageError
from sage_stream.process.sandbox import HomeLayer, Probe, Sandbox, decide_sandbox, probe, wrote_read_only
from sage_stream.process.supervise import EXITED, FAILED_TO_START, AgentLaunch, run_agent

PROBED = probe()
needs_bwrap = pytest.mark.skipif(PROBED.problem is not None, reason=f"no sandbox here: {PROBED.problem}")
SANDBOX = Sandbox(PROBED.bwrap or "/usr/bin/bwrap", PROBED.env)
# the tests' own python: visible in the sandbox when it lives under /tmp (a CI clone there)
THIS_PYTHON = [Path(sys.prefix), Path(sys.base_prefix)]


def binds(argv: list[str]) -> list[tuple[str, str]]:
    """(option, path) of every bind in a bwrap command line, in order."""
    return [(argv[i], argv[i + 1]) for i in range(len(argv)) if argv[i] in ("--bind", "--ro-bind")]


def test_the_prefix_binds_root_read_only_tmp_private_and_the_writable_paths_last(tmp_path):
    work, state, repo = tmp_path / "repo" / "wt", tmp_path / "state", tmp_path / "repo"
    for path in (work, state):
        path.mkdir(parents=True)
    argv = Sandbox("/usr/bin/bwrap", "/usr/bin/env").prefix(cwd=work, writable=[work], readable=[repo, Path("/tmp")],
                                                            extra=[tmp_path], protected=[repo])
    assert argv[:10] == ["/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # under the private /tmp: the repository visible (never /tmp itself), then the extra writable
    # path, then the repository read-only again inside it, then the worktree writable
    assert binds(argv)[1:] == [("--ro-bind", str(repo)), ("--bind", str(tmp_path)), ("--ro-bind", str(repo)),
                               ("--bind", str(work))]
    assert argv[-9:] == ["--unshare-pid", "--die-with-parent", "--chdir", str(work), "--", "/usr/bin/env", "-u",
                         "PWD", "--"]


def test_writable_paths_are_bound_parents_first():
    argv = SANDBOX.prefix(cwd=Path("/a"), writable=[Path("/a/b/c"), Path("/a"), Path("/a/b")])
    assert [path for option, path in binds(argv) if option == "--bind"] == ["/a", "/a/b", "/a/b/c"]


@pytest.mark.parametrize(("mode", "probed", "sandboxed", "warning"), [
    ("auto", Probe("/usr/bin/bwrap"), True, False),
    ("auto", Probe(None, "bwrap is not installed"), False, True),
    ("auto", Probe("/usr/bin/bwrap", "it cannot make a sandbox here"), False, True),
    ("none", None, False, False),
    ("bwrap", Probe("/usr/bin/bwrap"), True, False),
])
def test_decide_sandbox(mode, probed, sandboxed, warning):
    choice = decide_sandbox(mode, probed)
    assert (choice.sandbox is not None, choice.warning) == (sandboxed, warning)
    assert choice.message.startswith("agents are sandboxed" if sandboxed else "agents are not sandboxed")


def test_decide_sandbox_bwrap_without_it_refuses():
    with pytest.raises(SageError, match='sandbox "bwrap" was asked for, but bwrap is not installed'):
        decide_sandbox("bwrap", Probe(None, "bwrap is not installed"))


def test_wrote_read_only_looks_for_the_refusal():
    assert wrote_read_only(["", "OSError: [Errno 30] Read-only file system: '/x'"])
    assert not wrote_read_only(["Permission denied"])


def test_a_home_layer_copies_the_state_files_in_and_back_and_goes_away(tmp_path):
    home, layer = tmp_path / "home", tmp_path / "layer"
    home.mkdir()
    (home / "state.json").write_text('{"n": 1}')
    (home / ".ssh").mkdir()
    made = HomeLayer.for_files(home, [home / "state.json", home / "sub" / "elsewhere.json"], layer)
    assert made is not None and made.files == ("state.json",)  # only files directly in HOME
    made.copy_in()
    assert (layer / "state.json").read_text() == '{"n": 1}'
    assert binds(made.binds()) == [("--bind", str(layer)), ("--ro-bind", str(home / ".ssh"))]
    (layer / "state.json").write_text('{"n": 2}')
    made.copy_back()
    assert (home / "state.json").read_text() == '{"n": 2}' and not layer.exists()
    assert sorted(p.name for p in home.iterdir()) == [".ssh", "state.json"]  # no temporary file left


def test_no_home_layer_without_state_files_in_home(tmp_path):
    assert HomeLayer.for_files(tmp_path, [], tmp_path / "layer") is None
    assert HomeLayer.for_files(tmp_path, [tmp_path / "a" / "b.json"], tmp_path / "layer") is None
    assert HomeLayer.for_files(Path("/"), [Path("/.claude.json")], tmp_path / "layer") is None  # HOME=/


SAVE_BY_RENAME = """\
import os, pathlib, sys
home = pathlib.Path(os.environ["HOME"])
temporary = home / "state.json.tmp"
temporary.write_text('{"saved": true}')
os.replace(temporary, home / "state.json")
(home / "cli" / "session").write_text("s")
try:
    (home / ".ssh" / "authorized_keys").write_text("evil")
except OSError as error:
    print("refused:", error)
print("PWD" in os.environ, os.environ.get("TMPDIR"))
"""


@needs_bwrap
def test_in_the_sandbox_a_cli_saves_its_state_file_by_rename_but_cannot_touch_the_rest_of_home(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    for path in (home / ".ssh", home / "cli", work):
        path.mkdir(parents=True)
    (home / "state.json").write_text("{}")
    layer = HomeLayer.for_files(home, [home / "state.json"], tmp_path / "layer")
    layer.copy_in()
    prefix = SANDBOX.prefix(cwd=work, writable=[work], extra=[home / "cli"], readable=[home, *THIS_PYTHON],
                            home_layer=layer)
    done = subprocess.run([*prefix, sys.executable, "-c", SAVE_BY_RENAME], env={"HOME": str(home), "PATH": "/usr/bin"},
                          capture_output=True, text=True, timeout=30)
    layer.copy_back()
    assert done.returncode == 0, done.stderr
    assert (home / "state.json").read_text() == '{"saved": true}'
    assert (home / "cli" / "session").read_text() == "s"
    assert "refused: [Errno 30] Read-only file system" in done.stdout
    assert done.stdout.splitlines()[-1] == "False /tmp"  # no PWD of bwrap's; a private /tmp
    assert not (home / ".ssh" / "authorized_keys").exists()


@needs_bwrap
def test_a_program_that_is_not_there_fails_to_start_in_the_sandbox_as_it_does_outside(tmp_path):
    launch = AgentLaunch(argv=["no-such-agent-program"], cwd=tmp_path, env={"PATH": "/usr/bin"},
                         log_path=tmp_path / "log", timeout_s=30, idle_timeout_s=None,
                         sandbox=tuple(SANDBOX.prefix(cwd=tmp_path, writable=[tmp_path], readable=THIS_PYTHON)))
    exit = run_agent(launch, cancel=threading.Event())
    assert exit.outcome == FAILED_TO_START
    assert exit.error == "cannot start 'no-such-agent-program': program not found on PATH (/usr/bin)"


@needs_bwrap
def test_a_sandboxed_process_keeps_its_exit_code_and_output(tmp_path):
    launch = AgentLaunch(argv=[sys.executable, "-c", "print('hello'); raise SystemExit(3)"], cwd=tmp_path,
                         env={"PATH": "/usr/bin"}, log_path=tmp_path / "log", timeout_s=30, idle_timeout_s=None,
                         sandbox=tuple(SANDBOX.prefix(cwd=tmp_path, writable=[tmp_path], readable=THIS_PYTHON)))
    exit = run_agent(launch, cancel=threading.Event())
    assert (exit.outcome, exit.returncode, exit.last_line) == (EXITED, 3, "hello")


def test_a_program_name_with_an_equals_sign_is_refused_in_the_sandbox(tmp_path):
    launch = AgentLaunch(argv=["./A=B"], cwd=tmp_path, env={"PATH": "/usr/bin"}, log_path=tmp_path / "log",
                         timeout_s=30, idle_timeout_s=None, sandbox=("/usr/bin/bwrap", "--"))
    exit = run_agent(launch, cancel=threading.Event())
    assert exit.outcome == FAILED_TO_START and "a program name with '='" in exit.error


@needs_bwrap
def test_a_sandboxed_process_killed_by_a_signal_reads_as_killed_by_it(tmp_path):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    launch = AgentLaunch(argv=[sys.executable, "-c", code], cwd=tmp_path, env={"PATH": "/usr/bin"},
                         log_path=tmp_path / "log", timeout_s=30, idle_timeout_s=None,
                         sandbox=tuple(SANDBOX.prefix(cwd=tmp_path, writable=[tmp_path], readable=THIS_PYTHON)))
    exit = run_agent(launch, cancel=threading.Event())
    assert (exit.outcome, exit.returncode) == (EXITED, -9)

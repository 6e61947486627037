"""What `sage stream` needs around the index: git, a work tree, a writable `.sage/`.

Everything here only looks: `sage validate` must change nothing on disk, so whether
`.sage/commit-queue` could be created is answered by `os.access` on the nearest
directory that exists, never by creating it. Git runs with argv lists and
GIT_OPTIONAL_LOCKS=0 (no index refresh behind our back).

A failed prerequisite is an error (exit 1, as the README says): no run could work here
(git missing or too old, no work tree, `.sage/` not writable, a `.sage/config.toml` that
does not load, an `[agent] preset` naming an agent CLI that is not installed or that
sage-stream has no module for, an agent without credentials: no key variable, no login
file of its CLI). `blocking` marks the ones `sage stream` itself checks too.

The agent check runs when the config names an agent or `--agent NAME` chooses one: the
CLI's `--version` (through its module's `cli_version()`), shown as "claude 2.1.3 at
/usr/bin/claude", and its credentials ("claude credentials: ANTHROPIC_API_KEY").
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sage_stream.errors import SageError
from sage_stream.findings import Finding, Severity
from sage_stream.paths import SAGE_DIR, SagePaths

MIN_GIT_VERSION = (2, 38)
"""`git merge-tree --write-tree` (landing without touching a work tree) needs 2.38."""

GIT_TIMEOUT_SECONDS = 30
PREREQUISITE_PREFIX = "prerequisite_"  # finding codes: prerequisite_<Prerequisite.name>

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
REMOTE_TIMEOUT_SECONDS = 20.0  # `git ls-remote` of a configured remote
_OBJECT_NAME = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Prerequisite:
    name: str  # stable: git_installed, git_version, git_work_tree, sage_dir_writable, config_valid, agent_cli
    ok: bool
    message: str
    path: str | None = None
    blocking: bool = False  # when not ok: an error (no run could work), not a warning

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "message": self.message, "path": self.path}


@dataclass
class GitContext:
    """What validate learned about git once, shared by every check that needs it."""

    executable: str | None = None
    version: tuple[int, ...] | None = None
    version_text: str = ""
    work_tree: Path | None = None
    prerequisites: list[Prerequisite] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.executable is not None and self.work_tree is not None


def not_a_work_tree(directory: str) -> str:
    """What `sage validate` and `sage stream` say when the index is not in a git work tree."""
    return (f"{directory} is not inside a git work tree: sage stream runs tickets in git worktrees"
            " of the repository that holds the index (run `git init` there)")


def run_git(
    executable: str, args: Sequence[str], *, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str] | None:
    """`git ARGS` in `cwd`, or None when git cannot be started or hangs."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(
            [executable, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
            env=env, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def parse_git_version(text: str) -> tuple[int, ...] | None:
    """`git version 2.39.2` -> (2, 39, 2); None when there is no version number."""
    match = _VERSION.search(text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def is_creatable(path: Path) -> bool:
    """Whether `path` (a directory) exists writable, or could be created, without creating it."""
    existing = nearest_existing(path)
    if existing == path:
        return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def sage_dir_for(index_path: Path, work_tree: Path | None) -> Path:
    """The `.sage/` directory a run would use for this index."""
    if index_path.parent.parent.name == SAGE_DIR:
        return index_path.parent.parent
    if work_tree is not None:
        return SagePaths.of_repo(work_tree).root
    return SagePaths.of_repo(index_path.parent).root


def inspect_git(directory: Path) -> GitContext:
    """git's presence and version, and the work tree holding `directory`."""
    context = GitContext(executable=shutil.which("git"))
    if context.executable is None:
        context.prerequisites.append(Prerequisite(
            "git_installed", False, "git is not installed (or not on PATH): sage stream needs git"))
        return context
    version = run_git(context.executable, ["--version"], cwd=nearest_existing(directory))
    context.version_text = version.stdout.strip() if version is not None else ""
    context.version = parse_git_version(context.version_text)
    context.prerequisites.append(_version_prerequisite(context))
    shown = str(directory)
    top = run_git(context.executable, ["rev-parse", "--show-toplevel"], cwd=nearest_existing(directory))
    if top is not None and top.returncode == 0 and top.stdout.strip():
        context.work_tree = Path(top.stdout.strip())
        context.prerequisites.append(Prerequisite(
            "git_work_tree", True, f"inside the git work tree {context.work_tree}", shown))
    else:
        context.prerequisites.append(Prerequisite(
            "git_work_tree", False,
            not_a_work_tree(shown), shown))
    return context


def _version_prerequisite(context: GitContext) -> Prerequisite:
    wanted = ".".join(str(part) for part in MIN_GIT_VERSION)
    if context.version is None:
        return Prerequisite("git_version", False,
                            f"cannot tell the git version from {context.version_text!r}; need >= {wanted}")
    found = ".".join(str(part) for part in context.version)
    if context.version[:2] < MIN_GIT_VERSION:
        return Prerequisite("git_version", False,
                            f"git {found} is older than {wanted}: landing needs `git merge-tree --write-tree`")
    return Prerequisite("git_version", True, f"git {found} (>= {wanted}: merge-tree --write-tree)")


def sage_dir_prerequisite(sage_dir: Path) -> Prerequisite:
    paths = SagePaths(sage_dir)
    runtime = [paths.commit_queue, paths.workers]
    blocked = [path for path in (sage_dir, *runtime) if not is_creatable(path)]
    names = ", ".join(f"{SAGE_DIR}/{path.name}" for path in runtime)
    if blocked:
        shown = ", ".join(str(path) for path in blocked)
        return Prerequisite("sage_dir_writable", False,
                            f"{shown}: not writable and cannot be created; sage stream writes"
                            f" run state to {names}", str(sage_dir))
    return Prerequisite("sage_dir_writable", True,
                        f"{sage_dir} writable; {names} creatable", str(sage_dir))


def agent_prerequisites(sage_dir: Path, agent: str | None = None) -> list[Prerequisite]:
    """The agent that will run - `agent` (`--agent NAME`), else the one `.sage/config.toml`
    names: its CLI installed, which version, and its credentials. Nothing when no agent is
    configured or chosen (`sage stream` then runs `exec`)."""
    config_path = str(SagePaths(sage_dir).config)
    if agent is None:
        try:
            os.stat(config_path)
        except FileNotFoundError:
            # no config: its defaults name no agent (nothing to check), and loading them
            # would import the config models for nothing (10 ms of every `sage validate`)
            return []
        except OSError:
            pass  # load_config says what is wrong
    from sage_stream.config import load_config

    try:
        config = load_config(sage_dir)
    except SageError as error:
        return [Prerequisite("config_valid", False, error.message, config_path, blocking=True)]
    preset = agent or config.agent.preset
    if preset is None and config.agent.command:
        return [_command_prerequisite(config.agent.command, config_path)]
    if preset is None or preset == "exec":
        return []
    if preset == "command":
        if not config.agent.command:
            return [Prerequisite("agent_command", False, "[agent] preset is \"command\" but [agent] command is not"
                                 " set: pass --agent-cmd to sage stream, or set it", config_path)]
        return [_command_prerequisite(config.agent.command, config_path)]
    return agent_check(preset, config.agent.model_dump(), config_path,
                       chosen_by="--agent" if agent else "[agent] preset")


def agent_check(name: str, agent_config: dict, config_path: str | None = None, *,
                chosen_by: str = "[agent] preset") -> list[Prerequisite]:
    """The agent CLI `name` as it would run: installed and answering `--version` (with a
    timeout), and its credentials here - a key variable it gets, or its own login file -
    without calling a model. A missing credential is an error naming the fix."""
    found = cli_prerequisite(name, config_path, chosen_by=chosen_by)
    if found.blocking and not found.ok and "is not an agent" in found.message:
        return [found]
    from sage_stream.agents.registry import get_agent

    try:
        agent = get_agent(name, config=agent_config)
    except SageError as error:
        return [found, Prerequisite("config_valid", False, error.message, config_path, blocking=True)]
    except Exception:  # a module's bug must not break validate (cli_prerequisite said what it could)
        return [found]
    credentials = credentials_prerequisite(agent)
    return [found, *([credentials] if credentials is not None else [])]


def credentials_prerequisite(agent: object) -> Prerequisite | None:
    """Whether `agent`'s credentials are in the environment it will get or in its CLI's login
    file; None for an agent that declares none (exec, command, opencode, aider: their keys
    depend on the provider chosen)."""
    from sage_stream.agents.credentials import agent_credentials, found_credential, missing_credential
    from sage_stream.agents.environment import agent_environment

    credentials = agent_credentials(agent)
    if credentials is None:
        return None
    env = agent_environment(os.environ, passthrough=getattr(agent, "passthrough", ()), sage={})
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    found = found_credential(credentials, env, home)
    if found is None:
        return Prerequisite("agent_credentials", False, missing_credential(credentials, env, home) or "",
                            blocking=True)
    return Prerequisite("agent_credentials", True, f"{credentials.cli} credentials: {found}")


def sandbox_prerequisite(sage_dir: Path) -> Prerequisite:
    """Whether `sage stream` would sandbox its agents ([agent] sandbox, bwrap probed once).
    Not ok without a working bwrap: an error when the config asks for "bwrap" (no run could
    start), else a note - agents then run unsandboxed, as `sage stream` says too."""
    from sage_stream.process.sandbox import decide_sandbox, probe

    config_path = SagePaths(sage_dir).config
    mode = "auto"
    if config_path.is_file():
        from sage_stream.config import load_config

        try:
            mode = load_config(sage_dir).agent.sandbox
        except SageError:
            pass  # config_valid says what is wrong with it
    try:
        choice = decide_sandbox(mode, probe() if mode != "none" else None)
    except SageError as error:
        return Prerequisite("sandbox", False, f"{config_path}: [agent] {error.message}", str(config_path),
                            blocking=True)
    return Prerequisite("sandbox", not choice.warning, choice.message,
                        choice.sandbox.bwrap if choice.sandbox else None)


def cli_prerequisite(preset: str, config_path: str | None = None, *, chosen_by: str = "[agent] preset") -> Prerequisite:
    """Whether the agent CLI `preset` is installed: its module's `cli_version()`."""
    from sage_stream.agents.registry import CLI_AGENTS, known_agents

    if preset not in CLI_AGENTS:
        return Prerequisite("agent_cli", False, f"{chosen_by} {preset!r} is not an agent sage-stream knows:"
                            f" known agents are {', '.join(known_agents())}", config_path, blocking=True)
    try:
        module = importlib.import_module(f"sage_stream.agents.{preset}")
    except ImportError:
        return Prerequisite("agent_cli", False, f"{chosen_by} {preset!r}: this sage-stream has no {preset}"
                            " agent module", config_path, blocking=True)
    cli_version = getattr(module, "cli_version", None)
    if cli_version is None:
        return Prerequisite("agent_cli", False, f"{preset}: cannot tell whether its CLI is installed"
                            " (its agent module has no cli_version())", config_path)
    try:
        version = cli_version()
    except Exception as error:  # a module's bug must not break validate
        version, problem = None, f": `{preset} --version` failed ({error})"
    else:
        problem = ""
    executable = shutil.which(getattr(module, "EXECUTABLE", preset))
    if not version:
        where = f" ({executable} does not answer --version)" if executable else " (not found on PATH)"
        return Prerequisite("agent_cli", False, f"{preset} is not installed{where}{problem}: {chosen_by}"
                            f" {preset!r} needs it (see the README's section on {preset})", config_path,
                            blocking=True)
    version = version.strip()
    if version.lower().startswith(preset.lower()):
        version = version[len(preset):].strip()
    return Prerequisite("agent_cli", True, f"{preset} {version}" + (f" at {executable}" if executable else ""),
                        executable)


def _command_prerequisite(template: str, config_path: str) -> Prerequisite:
    """The `command` agent's program, found on PATH (a warning only: --agent-cmd may differ)."""
    try:
        program = shlex.split(template)[0]
    except (ValueError, IndexError):
        return Prerequisite("agent_command", False, f"[agent] command {template!r} cannot be split into"
                            " arguments", config_path)
    if "/" in program:
        return Prerequisite("agent_command", True, f"command agent: {program} (a path; it runs in each worktree)",
                            config_path)
    found = shutil.which(program)
    if found is None:
        return Prerequisite("agent_command", False, f"[agent] command runs {program!r}, which is not on PATH",
                            config_path)
    return Prerequisite("agent_command", True, f"command agent: {program} at {found}", found)


def check_prerequisites(index_path: Path, *, agent: str | None = None) -> tuple[GitContext, list[Prerequisite]]:
    """Git, work tree, `.sage/` writability, the agent (`agent`, else the configured one):
    every prerequisite of `sage stream`, in order."""
    context = inspect_git(index_path.parent)
    sage_dir = sage_dir_for(index_path, context.work_tree)
    return context, [*context.prerequisites, sage_dir_prerequisite(sage_dir), *agent_prerequisites(sage_dir, agent),
                     *remote_prerequisites(sage_dir, context)]


def remote_prerequisites(sage_dir: Path, context: GitContext) -> list[Prerequisite]:
    """[stream] remote, when configured: the remote exists, answers `ls-remote` within
    REMOTE_TIMEOUT_SECONDS, and has the branch tickets would land on."""
    config_path = SagePaths(sage_dir).config
    if not context.usable or not config_path.is_file():
        return []
    from sage_stream.config import load_config
    from sage_stream.git import Git, GitError

    try:
        stream = load_config(sage_dir).stream
    except SageError:
        return []  # agent_prerequisites reports a config that does not load
    if stream.remote is None:
        return []
    assert context.work_tree is not None
    git = Git(context.work_tree)
    branch = stream.target or git.current_branch()
    where = f"[stream] remote = {stream.remote!r}"
    if git.remote_url(stream.remote) is None:
        return [Prerequisite("remote_reachable", False, f"{where}: this repository has no remote named "
                             f"{stream.remote!r} (`git remote -v` lists them)", str(config_path), blocking=True)]
    if branch is None:
        return [Prerequisite("remote_reachable", False, f"{where}: HEAD is detached and [stream] target is not "
                             "set: no branch to land on", str(config_path), blocking=True)]
    try:
        tip = git.ls_remote_branch(stream.remote, branch, timeout=REMOTE_TIMEOUT_SECONDS)
    except GitError as error:
        return [Prerequisite("remote_reachable", False, f"{where}: cannot be reached: "
                             f"{error.stderr.strip() or error}", str(config_path), blocking=True)]
    if tip is None:
        return [Prerequisite("remote_reachable", False, f"{where}: has no branch {branch!r} to land on (push it "
                             "once)", str(config_path), blocking=True)]
    return [Prerequisite("remote_reachable", True, f"{stream.remote}/{branch} reachable (at {tip[:12]})",
                         str(config_path))]


def prerequisite_findings(prerequisites: Iterable[Prerequisite]) -> list[Finding]:
    return [
        Finding(Severity.ERROR, PREREQUISITE_PREFIX + item.name,
                item.message, file=item.path)
        for item in prerequisites
        if not item.ok
    ]


# ---------------------------------------------------------------- read-only git queries


def is_tracked(context: GitContext, path: Path) -> bool:
    """Whether git tracks `path` (`ls-files --error-unmatch`); False when git cannot tell."""
    if not context.usable:
        return False
    assert context.executable is not None and context.work_tree is not None
    result = run_git(context.executable, ["ls-files", "--error-unmatch", "--", str(path)],
                     cwd=context.work_tree)
    return result is not None and result.returncode == 0


def tracked_files(context: GitContext) -> list[str] | None:
    """Every path git tracks in the work tree (`ls-files`); None when git cannot tell."""
    if not context.usable:
        return None
    assert context.executable is not None and context.work_tree is not None
    result = run_git(context.executable, ["ls-files", "-z"], cwd=context.work_tree)
    if result is None or result.returncode != 0:
        return None
    return [path for path in result.stdout.split("\0") if path]


def unresolved_commits(context: GitContext, revisions: Iterable[str]) -> set[str] | None:
    """The revisions that do not name a commit in the repository; None when git cannot tell.

    One `git cat-file --batch-check` for all of them. A revision with whitespace or a
    leading dash could be read as something else, so it is unresolved without asking.
    """
    if not context.usable:
        return None
    assert context.executable is not None and context.work_tree is not None
    wanted = list(dict.fromkeys(revisions))
    unsafe = {rev for rev in wanted if not rev or rev.startswith("-") or any(c.isspace() for c in rev)}
    asked = [rev for rev in wanted if rev not in unsafe]
    if not asked:
        return unsafe
    stdin = "".join(f"{rev}^{{commit}}\n" for rev in asked)
    result = run_git(context.executable, ["cat-file", "--batch-check=%(objectname)"],
                     cwd=context.work_tree, stdin=stdin)
    if result is None or result.returncode != 0:
        return None
    answers = result.stdout.splitlines()
    if len(answers) != len(asked):
        return None
    # a resolved line is just the object name; "<rev> missing" / "<rev> ambiguous" otherwise
    missing = {rev for rev, answer in zip(asked, answers) if not _OBJECT_NAME.fullmatch(answer)}
    return missing | unsafe

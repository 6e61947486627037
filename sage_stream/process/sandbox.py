"""Sandboxed agents: a process that can write only the paths it is given.

An agent is a coding CLI running shell commands a model wrote, from text anyone who can
edit a ticket wrote. With bubblewrap (`bwrap`: Debian's `bubblewrap`, no daemon, about
30 ms a start) each agent turn and each check runs in its own mount namespace:

- the whole filesystem read-only (`--ro-bind / /`), a fresh `/dev` and `/proc`;
- a private `/tmp` (a tmpfs; `TMPDIR=/tmp`); paths the run needs that live under the real
  `/tmp` (the repository, HOME, PATH entries) are bound back read-only after it, or the
  tmpfs would hide them;
- writable: exactly the paths given (the engine names them: the ticket's worktree, the git
  paths a commit there needs, the run directory, the agent CLI's own state, `[agent]
  writable`); later binds win, so the order is: the CLI's state and the configured paths, then
  the repository read-only again where it lies inside one of them, then the attempt's own
  paths. A CLI that saves a state file in HOME by rename gets a private HOME level
  (`HomeLayer`);
- its own PID namespace (`--unshare-pid`) and `--die-with-parent`: when the agent exits,
  bwrap's init exits and the kernel kills whatever it left running, so no daemon outlives
  its ticket.

Network stays (models are remote), and so does reading whatever the user can read.

`decide_sandbox` turns the `[agent] sandbox` mode ("auto" | "bwrap" | "none") and the
result of one `probe` into a `Sandbox` or None, with the one line a run says about it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sage_stream.errors import SageError

SANDBOX_MODES = ("auto", "bwrap", "none")
PROBE_TIMEOUT_S = 10.0
PRIVATE_TMP = Path("/tmp")
READ_ONLY_MARK = "Read-only file system"  # what a refused write says (EROFS)


@dataclass(frozen=True)
class Sandbox:
    """A working bwrap: the argv prefix that runs one command with only some paths writable."""

    bwrap: str  # the executable, as found on PATH
    env: str = "/usr/bin/env"  # bwrap always sets PWD: `env -u PWD` keeps the environment exactly ours

    def prefix(self, *, cwd: Path, writable: Iterable[Path], readable: Iterable[Path] = (),
               extra: Iterable[Path] = (), protected: Iterable[Path] = (),
               home_layer: HomeLayer | None = None) -> list[str]:
        """`bwrap ... --` for a command run in `cwd`, with `writable` writable (each must exist).

        `readable`: paths to keep visible when they live under the private /tmp. `extra`: more
        writable paths (a CLI's state, the configuration's), bound before `protected` - paths
        that stay read-only even inside one of them (the repository) - and `writable` last."""
        argv = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", str(PRIVATE_TMP)]
        argv += _binds("--ro-bind", _outermost(p for p in _absolute(readable)
                                               if _is_under(p, PRIVATE_TMP) and p != PRIVATE_TMP and p.exists()))
        if home_layer is not None:
            argv += home_layer.binds()
        extra = _by_depth(extra)
        argv += _binds("--bind", extra)
        argv += _binds("--ro-bind", [path for path in _by_depth(protected)
                                     if path.exists() and any(_is_under(path, outer) for outer in extra)])
        argv += _binds("--bind", _by_depth(writable))
        return argv + ["--setenv", "TMPDIR", str(PRIVATE_TMP), "--unshare-pid", "--die-with-parent",
                       "--chdir", str(_absolute([cwd])[0]), "--", self.env, "-u", "PWD", "--"]


@dataclass(frozen=True)
class HomeLayer:
    """HOME's own directory level, writable in private, for a CLI that saves a state file in
    HOME by writing a temporary file beside it and renaming it (a file bound writable on its
    own cannot be replaced that way). `layer`, a directory of ours, is bound over HOME; every
    entry of the real HOME is bound back on top of it read-only, except `files`, which are
    copies in the layer: `copy_in` before the process, `copy_back` after it. Anything else
    written at HOME's top level stays in the layer and is thrown away with it."""

    home: Path
    layer: Path
    files: tuple[str, ...]  # names of files directly in HOME

    @classmethod
    def for_files(cls, home: Path, files: Iterable[Path], layer: Path) -> HomeLayer | None:
        home = Path(os.path.realpath(home))
        names = tuple(sorted({Path(file).name for file in files if Path(os.path.realpath(file)).parent == home}))
        usable = names and home.is_dir() and home != Path(home.anchor)  # never a layer over "/"
        return cls(home, Path(os.path.realpath(layer)), names) if usable else None

    def copy_in(self) -> None:
        self.layer.mkdir(parents=True, exist_ok=True)
        for name in self.files:
            if (self.home / name).is_file():
                shutil.copy2(self.home / name, self.layer / name)

    def binds(self) -> list[str]:
        argv = ["--bind", str(self.layer), str(self.home)]
        for entry in sorted(self.home.iterdir()):
            if entry.name in self.files:
                continue
            if entry.is_symlink():
                argv += ["--symlink", os.readlink(entry), str(entry)]
            else:
                argv += ["--ro-bind", str(entry), str(entry)]
        return argv

    def copy_back(self) -> None:
        """The CLI's saved files back into the real HOME (each replaced whole), then the layer goes."""
        try:
            for name in self.files:
                saved, real = self.layer / name, self.home / name
                if saved.is_file() and not saved.is_symlink() and (
                        not real.is_file() or saved.read_bytes() != real.read_bytes()):
                    temporary = real.with_name(f".{name}.sage-{os.getpid()}")
                    shutil.copy2(saved, temporary)
                    os.replace(temporary, real)
        finally:
            shutil.rmtree(self.layer, ignore_errors=True)


@dataclass(frozen=True)
class SandboxChoice:
    """What a run uses, and the one line it says about it (at the start and in `sage validate`)."""

    sandbox: Sandbox | None
    message: str
    warning: bool = False  # the user asked for "auto" and gets no sandbox

    @property
    def level(self) -> str:
        return "warning" if self.warning else "info"


@dataclass(frozen=True)
class Probe:
    """Whether bwrap is installed and works here (found out once per run)."""

    bwrap: str | None  # the executable, when installed
    problem: str | None = None  # why it cannot be used; None when it works
    env: str = "/usr/bin/env"


def probe(path: str | None = None) -> Probe:
    """Find bwrap on `path` (default: our PATH) and run it once the way agents are run."""
    bwrap = shutil.which("bwrap") if path is None else shutil.which("bwrap", path=path)
    if bwrap is None:
        return Probe(None, "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    env = next((found for found in ("/usr/bin/env", "/bin/env") if os.access(found, os.X_OK)), None)
    if env is None:
        return Probe(bwrap, "env (coreutils) is not installed")
    argv = [*Sandbox(bwrap, env).prefix(cwd=Path("/"), writable=()), "true"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return Probe(bwrap, f"{bwrap} does not run: {error}")
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        reason = said[-1] if said else f"exit code {done.returncode}"
        return Probe(bwrap, f"{bwrap} cannot make a sandbox here ({reason}; unprivileged users need user "
                            "namespaces enabled)")
    return Probe(bwrap, env=env)


def check_mode(mode: str, *, source: str) -> str:
    """`mode` when it is one of SANDBOX_MODES, else a SageError naming where it was set."""
    if mode not in SANDBOX_MODES:
        raise SageError(f"{source} must be one of {', '.join(SANDBOX_MODES)}, not {mode!r}")
    return mode


def decide_sandbox(mode: str, probed: Probe | None) -> SandboxChoice:
    """The sandbox for `mode` given what `probe` found (None: not probed, for mode "none").
    Mode "bwrap" without a working bwrap is a SageError: the run must not start."""
    if mode == "none":
        return SandboxChoice(None, "agents are not sandboxed (sandbox = \"none\"): they can write anything you can")
    if probed is None or probed.problem is not None or probed.bwrap is None:
        problem = probed.problem if probed is not None else "bwrap was not probed"
        if mode == "bwrap":
            raise SageError(f"sandbox \"bwrap\" was asked for, but {problem}: install it, or pass --sandbox auto")
        return SandboxChoice(None, f"agents are not sandboxed: {problem}; they can write anything you can",
                             warning=True)
    return SandboxChoice(Sandbox(probed.bwrap, probed.env), f"agents are sandboxed with {probed.bwrap}: each can write only "
                                                "its worktree, its own git refs, its CLI's state and a private /tmp")


def ensure_writable_paths(paths: Iterable[Path]) -> list[Path]:
    """The paths, each made to exist (a missing one as a directory): bwrap binds only what exists."""
    made = []
    for path in _absolute(paths):
        if not path.exists() and not path.is_symlink():
            path.mkdir(parents=True, exist_ok=True)
        made.append(path)
    return made


def path_entries(env: Mapping[str, str]) -> list[Path]:
    return [Path(entry) for entry in env.get("PATH", "").split(os.pathsep) if entry.startswith("/")]


def _absolute(paths: Iterable[Path]) -> list[Path]:
    # resolved: a bind through a symbolic link would mount at the link's target anyway
    return [Path(os.path.realpath(path)) for path in paths]


def _by_depth(paths: Iterable[Path]) -> list[Path]:
    """Absolute and without repeats, parents before children (a later bind wins)."""
    return sorted(set(_absolute(paths)), key=lambda path: (len(path.parts), str(path)))


def _binds(option: str, paths: Iterable[Path]) -> list[str]:
    return [part for path in paths for part in (option, str(path), str(path))]


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths without those inside another one of them (binding the outer one is enough)."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(_is_under(path, outer) for outer in kept):
            kept.append(path)
    return kept


def wrote_read_only(texts: Sequence[str]) -> bool:
    """Whether an agent's output shows a write the sandbox refused."""
    return any(READ_ONLY_MARK in text for text in texts)

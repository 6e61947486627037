"""What every git process sage starts gets: its options, its environment (allow-listed,
never ours whole), the marks that let a later run find it, and how its failure reads.
See the package docstring for why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sage_stream.errors import SageError

GIT_OF_VAR = "SAGE_GIT_OF"  # the pid of the sage process that started a git process
GIT_REPO_VAR = "SAGE_GIT_REPO"  # the repository it works on (real path)
SAFE_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")  # before every git command

# Variables that make git use another repository, work tree or index than the one we name.
_REPO_LOCATING_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_PREFIX",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_QUARANTINE_PATH",
)
# What git gets of our environment (plus LC_ALL and GIT_TERMINAL_PROMPT, set below).
GIT_ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LANGUAGE", "EMAIL",
                           "XDG_CONFIG_HOME", "GIT_EXEC_PATH", "GIT_CEILING_DIRECTORIES", "GIT_CONFIG_GLOBAL",
                           "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_COUNT"})
GIT_ENV_PREFIXES = ("LC_", "GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "GIT_TRACE")


class GitError(SageError):
    """A git command failed; the message names the command, its directory and git's stderr."""

    def __init__(self, args: list[str], cwd: Path, returncode: int, stderr: str) -> None:
        command = " ".join(["git", *args])
        detail = stderr.strip() or "(no message)"
        super().__init__(f"`{command}` failed in {cwd} (exit {returncode}): {detail}")
        self.command = args
        self.returncode = returncode
        self.stderr = stderr


def git_program(env: dict[str, str]) -> str:
    """The git that `env`'s PATH finds, as an absolute path, looked up once per repository:
    a bare "git" would make every one of the ~25 git processes of a ticket search PATH
    again (0.4 ms each, measured). "git" when none is found (the first command then says
    git is missing) or when PATH finds it by a relative entry (it depends on the cwd)."""
    found = shutil.which("git", path=env.get("PATH", os.defpath))
    return found if found is not None and os.path.isabs(found) else "git"


def _base_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if _passed_to_git(key)}
    env["LC_ALL"] = "C"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _passed_to_git(name: str) -> bool:
    if name in _REPO_LOCATING_VARS:
        return False
    return name in GIT_ENV_NAMES or name.startswith(GIT_ENV_PREFIXES)

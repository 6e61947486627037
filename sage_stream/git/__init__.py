"""Every git command sage-stream runs goes through this module.

Rules it enforces for all of them:
- argv lists only, never a shell: ticket text (titles, messages, paths) reaches git as
  data, through argv or stdin.
- `-c core.hooksPath=/dev/null`: no repository hook runs. An agent works inside a
  worktree of this repository and can write hooks; `worktree add` (post-checkout) or a
  commit would otherwise run them with our privileges and outside any agent sandbox.
  `-c core.fsmonitor=false` for the same reason: an agent can set `core.fsmonitor` in the
  shared config to a program of its own, which every `git status` would run.
- git runs with an allow-listed environment (`GIT_ENV_NAMES`, git's own `GIT_*` identity,
  config and trace variables), never our whole one: a filter driver or any other command
  an agent slips into the repository's config runs without our tokens and credentials.
- `LC_ALL=C` so that messages we parse are English; `GIT_TERMINAL_PROMPT=0` so that git
  never waits for a password on a terminal nobody is watching.
- Variables that point git at another repository or index (`GIT_DIR`, `GIT_INDEX_FILE`...,
  set when sage runs from inside a git hook) are dropped: every call names its repository
  by its working directory.
- Every git process carries `SAGE_GIT_OF=<our pid>` and `SAGE_GIT_REPO=<the repository>`
  in its environment: a run killed with SIGKILL leaves its git processes running, and the
  next run finds them by these and waits for them (engine/recovery.py) before it touches
  what they write.
- The user's global and system git configuration is not read (`GIT_CONFIG_GLOBAL=/dev/null`,
  `GIT_CONFIG_NOSYSTEM=1`): a filter, hook path or fsmonitor an agent writes into
  `~/.gitconfig` never runs inside sage's own git. What sage needs of it (`USER_CONFIG_KEPT`:
  the identity, `safe.directory`, `core.excludesFile`) is read once, at the first git
  command, and passed explicitly from then on (engine/repo_guard.py undoes the change
  and defers the ticket).
- Commits we create are never GPG-signed (a pinentry prompt would hang an unattended
  run) and get the identity `sage-stream <sage@localhost>` only when the user has none
  configured; a configured user is never overridden.
"""

from sage_stream.git.environment import (GIT_ENV_NAMES, GIT_ENV_PREFIXES, GIT_OF_VAR, GIT_REPO_VAR, SAFE_OPTIONS,
                                         GitError, _passed_to_git)
from sage_stream.git.remote import PUSHED, REFUSED, REJECTED, UNREACHABLE, REMOTE_ENV_NAMES, PushResult
from sage_stream.git.history import HistoryEntry
from sage_stream.git.repository import ZERO_SHA, Git, MergeTreeResult, WorktreeInfo, _read_status
from sage_stream.git.user_config import FALLBACK_EMAIL, FALLBACK_NAME, ISOLATED_CONFIG, USER_CONFIG_KEPT

__all__ = ["FALLBACK_EMAIL", "FALLBACK_NAME", "GIT_ENV_NAMES", "GIT_ENV_PREFIXES", "GIT_OF_VAR", "GIT_REPO_VAR",
           "ISOLATED_CONFIG", "PUSHED", "REFUSED", "REJECTED", "REMOTE_ENV_NAMES", "SAFE_OPTIONS", "UNREACHABLE",
           "USER_CONFIG_KEPT", "ZERO_SHA", "Git", "GitError", "HistoryEntry", "MergeTreeResult", "PushResult",
           "WorktreeInfo", "_passed_to_git", "_read_status"]

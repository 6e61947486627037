"""The user's own git configuration, read once: the identity sage commits as and the few
keys sage's git keeps (`USER_CONFIG_KEPT`); everything else of the user's global and system
configuration never reaches sage's git (`ISOLATED_CONFIG`)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from sage_stream.git.environment import SAFE_OPTIONS

FALLBACK_NAME = "sage-stream"
FALLBACK_EMAIL = "sage@localhost"
# Read once from the user's own configuration (all levels) and passed to every git call.
USER_CONFIG_KEPT = ("user.name", "user.email", "safe.directory", "core.excludesfile")
# Only the repository's own configuration is read by sage's git (the user's is read once).
ISOLATED_CONFIG = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


class UserConfigCommands:
    """`Git`'s part that reads the user's configuration once and commits as its identity."""

    def user_config(self) -> dict[str, list[str]]:
        """`USER_CONFIG_KEPT` as the user's configuration (global, system, repository) had
        it when first asked: later changes (an agent's) never reach sage's git."""
        if self._user_config is None:
            self._user_config = read_user_config(self.repo, self._user_env)
        return self._user_config

    def _kept_options(self) -> list[str]:
        return kept_options(self.user_config())

    def fallback_identity(self) -> str | None:
        """`Name <email>` when the repository has no git identity and commits are made with
        sage's fallback (or the EMAIL variable); None when git's own identity is used."""
        config = self.user_config()
        named = (config.get("user.name") or [""])[-1] or os.environ.get("GIT_COMMITTER_NAME")
        mailed = (config.get("user.email") or [""])[-1] or os.environ.get("GIT_COMMITTER_EMAIL")
        if named and mailed:
            return None
        env = self._identity_env()
        return f"{env['GIT_COMMITTER_NAME']} <{env['GIT_COMMITTER_EMAIL']}>"

    def _identity_env(self) -> dict[str, str]:
        """Author and committer, explicit: the environment's, else the user's
        configuration as read once, else `sage-stream <sage@localhost>`."""
        if self._commit_env is None:
            config = self.user_config()
            name = (config.get("user.name") or [""])[-1] or FALLBACK_NAME
            email = (config.get("user.email") or [""])[-1] or os.environ.get("EMAIL") or FALLBACK_EMAIL
            env: dict[str, str] = {}
            for role in ("AUTHOR", "COMMITTER"):
                env[f"GIT_{role}_NAME"] = os.environ.get(f"GIT_{role}_NAME") or name
                env[f"GIT_{role}_EMAIL"] = os.environ.get(f"GIT_{role}_EMAIL") or email
            self._commit_env = env
        return self._commit_env


def read_user_config(repo: Path, env: Mapping[str, str]) -> dict[str, list[str]]:
    """`USER_CONFIG_KEPT` from every level of the user's git configuration (one git)."""
    pattern = "^(" + "|".join(re.escape(key) for key in USER_CONFIG_KEPT) + ")$"
    try:
        result = subprocess.run(["git", *SAFE_OPTIONS, "config", "--null", "--get-regexp", pattern], cwd=repo,
                                env=dict(env), capture_output=True, text=True, encoding="utf-8",
                                errors="surrogateescape", stdin=subprocess.DEVNULL, check=False)
    except OSError:  # no git, or no such directory: the first real command says so
        return {}
    found: dict[str, list[str]] = {}
    for record in result.stdout.split("\0") if result.returncode == 0 else []:
        key, _, value = record.partition("\n")
        if key:
            found.setdefault(key.lower(), []).append(value)
    return found


def kept_options(config: Mapping[str, list[str]]) -> list[str]:
    """`-c` options giving sage's git what it keeps of the user's configuration."""
    options = []
    for value in config.get("safe.directory", []):
        options += ["-c", f"safe.directory={value}"]
    for value in config.get("core.excludesfile", [])[-1:]:
        options += ["-c", f"core.excludesFile={value}"]
    return options

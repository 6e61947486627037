"""What a CLI documents for its credentials and endpoint, and whether they are here.

Each CLI module declares one `Credentials`: the variables holding a key (any one is
enough), the ones naming its endpoint, the providers switched on by a variable (Claude on
Bedrock needs the AWS variables, and only then gets them), the files its own login writes
under HOME, and the command that logs in. From it:

- `passed_names`: what the agent process inherits beyond the standard allow list - these
  names and nothing else (plus `[agent] env`);
- `found_credential`: which key variable or login file is there, without calling a model;
- `credential_fix`: one line telling the user what to set or run;
- `start_notes`: said once when a run starts - no credential, or a variable of the CLI's
  own (`ANTHROPIC_*`...) the user exported that is not passed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sage_stream.agents.environment import ALLOWED_NAMES

LOGIN_FILE_LIMIT = 1_000_000


@dataclass(frozen=True)
class Provider:
    """Another way to reach the model, switched on by `switch`; `names` pass only then."""

    switch: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class LoginFile:
    """A file (relative to HOME) the CLI's login writes; with `key`, only a JSON object holding it counts.
    With `dir_variable` set in the agent's environment, the file is its `path`'s name in that directory
    (`CODEX_HOME`)."""

    path: str
    key: str | None = None
    dir_variable: str | None = None

    def located(self, env: Mapping[str, str], home: Path) -> Path:
        moved = env.get(self.dir_variable) if self.dir_variable else None
        return Path(moved) / Path(self.path).name if moved else home / self.path


@dataclass(frozen=True)
class Credentials:
    cli: str
    keys: tuple[str, ...]  # any one set (not empty) is a credential
    login: str  # how to log in, as the user would type it
    endpoint: tuple[str, ...] = ()  # where requests go (a gateway, a proxy): passed, not a credential
    providers: tuple[Provider, ...] = ()
    login_files: tuple[LoginFile, ...] = ()
    own_prefixes: tuple[str, ...] = ()  # the CLI's own variables: exported ones that are not passed are noted


def passed_names(credentials: Credentials, source: Mapping[str, str]) -> list[str]:
    """The variables the CLI documents for its credentials and endpoint; a provider's only when it is switched on."""
    names = [*credentials.keys, *credentials.endpoint]
    for provider in credentials.providers:
        names.append(provider.switch)
        if source.get(provider.switch):
            names += provider.names
    return names


def found_credential(credentials: Credentials, env: Mapping[str, str], home: Path) -> str | None:
    """What holds a credential ("ANTHROPIC_API_KEY", "~/.claude/.credentials.json"); None when nothing does."""
    for name in credentials.keys:
        if env.get(name):
            return name
    for provider in credentials.providers:
        if env.get(provider.switch):
            return provider.switch  # the provider's own credentials (AWS, Google) are its business
    for login_file in credentials.login_files:
        path = login_file.located(env, home)
        if _holds_login(path, login_file.key):
            return _shown(path, home)
    return None


def _shown(path: Path, home: Path) -> str:
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def _holds_login(path: Path, key: str | None) -> bool:
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        if key is None:
            return True
        value = json.loads(path.read_bytes()[:LOGIN_FILE_LIMIT])
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and bool(value.get(key))


def credential_fix(credentials: Credentials) -> str:
    """One line: the variable to export or the login to run."""
    first, *others = credentials.keys
    also = f" (or {', '.join(others)})" if others else ""
    return f"export {first}{also} in the shell that runs sage, or log in once: {credentials.login}"


def missing_credential(credentials: Credentials, env: Mapping[str, str], home: Path) -> str | None:
    """The problem and its fix when no credential is found; None when one is."""
    if found_credential(credentials, env, home) is not None:
        return None
    logins = [login_file.located(env, home) for login_file in credentials.login_files[:1]]
    where = "".join(f" and no login in {_shown(path, home)}" for path in logins)
    return f"{credentials.cli} has no credentials: none of {', '.join(credentials.keys)} is set{where}; " \
           + credential_fix(credentials)


def not_passed(credentials: Credentials, source: Mapping[str, str], passed: Sequence[str]) -> list[str]:
    """Variables of the CLI's own (by prefix) set in `source` that its agent will not get."""
    exact = set(ALLOWED_NAMES) | {name for name in passed if not name.endswith("*")}
    prefixes = tuple(name[:-1] for name in passed if name.endswith("*"))
    return sorted(name for name in source if name.startswith(credentials.own_prefixes) and name not in exact
                  and not (prefixes and name.startswith(prefixes)))


def start_notes(credentials: Credentials, source: Mapping[str, str], passed: Sequence[str], home: Path) -> list[str]:
    """What a run says once when it starts about the agent's credentials."""
    notes = []
    missing = missing_credential(credentials, source, home)
    if missing is not None:
        notes.append(missing)
    dropped = not_passed(credentials, source, passed) if credentials.own_prefixes else []
    if dropped:
        notes.append(f"{', '.join(dropped)} {'is' if len(dropped) == 1 else 'are'} set here but not passed to "
                     f"{credentials.cli} (add to [agent] env in .sage/config.toml to pass)")
    return notes


def agent_credentials(agent: object) -> Credentials | None:
    """The agent's `credentials` (CLI agents); None for a plain program (exec, command)."""
    found = getattr(agent, "credentials", None)
    return found if isinstance(found, Credentials) else None


def setup_fix(agent: object, kind: str | None, message: str | None = None) -> str | None:
    """What to do about a setup error of `kind` from `agent` (`message`: what it said)."""
    credentials = agent_credentials(agent)
    if kind == "auth":
        return credential_fix(credentials) if credentials is not None else \
            "give the agent its credentials (its result file said `auth`)"
    if kind != "setup":
        return None
    if message and message.startswith("cannot start"):
        program = getattr(agent, "executable", None) or "the agent's program"
        return f"install {program} and put its directory on PATH (sage looks where its own PATH points)"
    return "check the model and extra_args of [agent] in .sage/config.toml (and --agent / --agent-cmd)"

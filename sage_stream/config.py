"""`.sage/config.toml`: defaults for `sage stream` and the agent, overridden by flags."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sage_stream.errors import SageError
from sage_stream.paths import SagePaths


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamConfig(_Section):
    parallel: int | str | None = None  # N or "auto"
    timeout_minutes: float = Field(default=30.0, gt=0)
    idle_timeout_minutes: float = Field(default=10.0, gt=0)
    grace_seconds: float = Field(default=10.0, ge=0)
    max_reruns: int = Field(default=2, ge=0)  # landing-conflict reruns per ticket per run
    max_attempts: int = Field(default=3, ge=1)  # automatic retries of transient failures
    retry_backoff_minutes: float = Field(default=10.0, ge=0)
    target: str | None = None
    remote: str | None = None  # land on this remote's branch (`sage stream --remote NAME`)
    push_branches: bool = False  # with a remote: push each ticket's sage/<ID> branch too
    schedule: str = "greedy"
    executor: str = "local"  # local | dask://HOST:PORT (engine/dask_runner.py)
    max_load: float | None = None
    max_cost_usd: float | None = Field(default=None, gt=0)  # start nothing new once spent
    # rate limits and exhausted quotas: pause dispatch for everyone (engine/dispatch_control.py)
    rate_limit_backoff_seconds: float = Field(default=30.0, ge=0)
    rate_limit_max_backoff_seconds: float = Field(default=600.0, ge=0)
    rate_limit_stop_after: int = Field(default=5, ge=1)  # limits in a row before the run stops starting tickets
    quota_wait_minutes: float = Field(default=15.0, ge=0)  # a later reset defers the ticket and stops the run


class AgentConfig(_Section):
    preset: str | None = None
    command: str | None = None  # argv template for the `command` agent
    model: str | None = None
    extra_args: list[str] = Field(default_factory=list)
    timeout_minutes: float | None = Field(default=None, gt=0)
    env: list[str] = Field(default_factory=list)  # names of environment variables passed through
    reuse_sessions: bool = False  # continue the session of a ticket's only dependency
    sandbox: Literal["auto", "bwrap", "none"] = "auto"  # process/sandbox.py
    writable: list[str] = Field(default_factory=list)  # more paths sandboxed agents may write (absolute or ~/...)


class ChecksConfig(_Section):
    commands: list[str] = Field(default_factory=list)  # run before every ticket lands (never by a shell)
    timeout_minutes: float = Field(default=10.0, gt=0)  # per check
    max_fix_turns: int = Field(default=2, ge=0)  # a ticket's validation_config.max_retries overrides it
    max_parallel: int = Field(default=4, ge=1, le=4)  # checks of one ticket run at once
    env: list[str] = Field(default_factory=list)  # more environment variables checks may see


class ExecutorConfig(_Section):
    """[executor]: agents on Dask workers (`sage stream --executor dask://HOST:PORT`)."""

    hub: str | None = None  # git URL workers fetch from and push to (default: the remote's URL, else the repo)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False  # plain tcp to a scheduler beyond loopback, acknowledged


class SageConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    stream: StreamConfig = Field(default_factory=StreamConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


def load_config(sage_dir: Path) -> SageConfig:
    """The config in `<sage_dir>/config.toml`, or the defaults when there is none."""
    path = SagePaths(sage_dir).config
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SageConfig()
    except (OSError, UnicodeDecodeError) as error:
        raise SageError(f"{path}: cannot read: {error}")
    except tomllib.TOMLDecodeError as error:
        raise SageError(f"{path}: invalid TOML: {error}")
    try:
        return SageConfig.model_validate(data)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False):
            key = ".".join(str(part) for part in problem["loc"])
            problems.append(f"{path}: key '{key}': {problem['msg']}")
        raise SageError("\n".join(problems))

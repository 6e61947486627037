"""The real agent CLIs for end-to-end tests, installed from npm once and reused between runs.

Each CLI lives in its own directory `<cache>/<name>-<version>/` (an `npm install --prefix`
tree), where `<cache>` is `$SAGE_CLI_CACHE` or `~/.cache/sage-stream/clis`. Versions are
pinned: they are the ones the agent modules were checked against (a new CLI release can
change its flags or its output, and a test run must not change behaviour because npm did).

Installing:
- `npm install --prefix DIR PACKAGE@VERSION` without `--omit=optional`: the native binaries
  of both CLIs are platform optionalDependencies, so omitting them installs a stub.
- Into a temporary directory beside the final one, renamed into place once the executable
  answers `--version`: a killed install never leaves a half tree that looks done.
- Under a file lock per CLI (`<cache>/<name>-<version>.lock`), so two test processes (xdist,
  two checkouts sharing the cache) install once and the second waits.

When npm is missing or the install fails, `require_cli` skips the test with the reason -
unless `SAGE_REQUIRE_REAL_CLIS` names the CLI (comma separated, or `all`): CI sets
`SAGE_REQUIRE_REAL_CLIS=claude,opencode`, and then a broken install fails the test loudly.

Run `python tests/e2e/cli_cache.py [claude|opencode ...]` to install ahead of time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

CACHE_ENV = "SAGE_CLI_CACHE"
REQUIRE_ENV = "SAGE_REQUIRE_REAL_CLIS"
INSTALL_TIMEOUT_S = 900
LOCK_TIMEOUT_S = 1200  # a second process waits for the first one's install
VERSION_TIMEOUT_S = 60


@dataclass(frozen=True)
class CliPackage:
    name: str  # the sage agent name and the executable's name
    package: str  # the npm package
    version: str  # pinned: the version the agent module was checked against


PINNED = {
    "claude": CliPackage("claude", "@anthropic-ai/claude-code", "2.1.329"),
    "opencode": CliPackage("opencode", "opencode-ai", "1.18.33"),
}


class CliUnavailable(Exception):
    """The CLI could not be installed or does not run; the message says why."""


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sage-stream" / "clis"


def install_dir(cli: CliPackage) -> Path:
    return cache_root() / f"{cli.name}-{cli.version}"


def executable_in(prefix: Path, cli: CliPackage) -> Path:
    return prefix / "node_modules" / ".bin" / cli.name


def installed_cli(name: str) -> Path:
    """The executable of the pinned CLI `name`, installing it first if needed."""
    cli = PINNED[name]
    final = install_dir(cli)
    if _works(executable_in(final, cli)):
        return executable_in(final, cli)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f"{final.name}.lock"), timeout=LOCK_TIMEOUT_S):
        if _works(executable_in(final, cli)):  # another process installed it while we waited
            return executable_in(final, cli)
        _install(cli, final)
    return executable_in(final, cli)


def _install(cli: CliPackage, final: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise CliUnavailable(f"npm is not installed: cannot install {cli.package}@{cli.version}")
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        argv = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error",
                f"{cli.package}@{cli.version}"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise CliUnavailable(f"`npm install {cli.package}@{cli.version}` took over {INSTALL_TIMEOUT_S} s")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-1500:]
            raise CliUnavailable(f"`npm install {cli.package}@{cli.version}` failed ({done.returncode}): {tail}")
        if not _works(executable_in(staging, cli)):
            raise CliUnavailable(f"{cli.package}@{cli.version} installed but `{cli.name} --version` does not run "
                                 "(was the native optional dependency skipped?)")
        if final.exists():
            shutil.rmtree(final)  # an old broken tree: _works() said no
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _works(executable: Path) -> bool:
    if not executable.exists():
        return False
    try:
        done = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def required_clis() -> set[str]:
    names = {name.strip() for name in os.environ.get(REQUIRE_ENV, "").split(",") if name.strip()}
    return set(PINNED) if "all" in names else names


def require_cli(name: str) -> Path:
    """The CLI's executable; skips the calling test if it cannot be had and is not required."""
    import pytest

    try:
        return installed_cli(name)
    except CliUnavailable as error:
        if name in required_clis():
            pytest.fail(f"{REQUIRE_ENV} requires {name}: {error}", pytrace=False)
        pytest.skip(f"{name} is not available: {error}")


def main(names: list[str]) -> int:
    for name in names or sorted(PINNED):
        try:
            path = installed_cli(name)
        except CliUnavailable as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 1
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

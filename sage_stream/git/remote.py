"""Talking to another repository: `git fetch`, `ls-remote` and a plain, non-forced `push`,
with the user's own ways to authenticate; and how a push's outcome reads."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sage_stream.git.environment import GitError

# What talking to a remote (fetch, push, ls-remote) gets on top: the user's own ways to
# authenticate (ssh agent, ssh command, askpass helpers, proxies). Agents never get them.
REMOTE_ENV_NAMES = frozenset({"SSH_AUTH_SOCK", "SSH_AGENT_PID", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT",
                              "GIT_ASKPASS", "SSH_ASKPASS", "GIT_PROXY_COMMAND", "http_proxy", "https_proxy",
                              "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "GIT_SSL_CAINFO",
                              "GIT_SSL_NO_VERIFY", "SSL_CERT_FILE", "SSL_CERT_DIR"})


class RemoteCommands:
    """`Git`'s part that talks to remotes (`sage stream --remote`)."""

    # The only commands that talk to another repository; they keep the user's ways to
    # authenticate (REMOTE_ENV_NAMES) and read the user's whole configuration (credential
    # helpers, url.*.insteadOf, ssh settings): fetch and ls-remote run no hooks or filters,
    # and sage's push is --no-verify. An agent's change to that configuration is undone by
    # the repository guard at the end of its attempt.

    def remote_url(self, name: str) -> str | None:
        """The URL configured for remote `name`; None when there is no such remote."""
        if not name or name.startswith("-"):
            return None
        result = self.run("remote", "get-url", "--", name, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def ls_remote_branch(self, name: str, branch: str, *, timeout: float) -> str | None:
        """The commit `branch` is at on remote `name` (None when the remote has no such
        branch); a GitError when the remote cannot be reached within `timeout` seconds."""
        ref = f"refs/heads/{branch}"
        out = self.run("ls-remote", "--heads", "--end-of-options", name, ref, env=_remote_env(), user_config=True,
                       timeout=timeout).stdout
        for line in out.splitlines():
            sha, _, found = line.partition("\t")
            if found == ref:
                return sha
        return None

    def fetch_branch(self, name: str, branch: str, into: str, *, timeout: float | None = None) -> str | None:
        """Fetch `branch` of remote `name` into the local ref `into` (a mirror the caller
        owns: it follows the remote, forced); the commit it is at, None when the remote has
        no such branch. A GitError when the remote cannot be reached."""
        result = self.run("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head",
                          "--end-of-options", name, f"+refs/heads/{branch}:{into}", env=_remote_env(), user_config=True,
                          check=False, timeout=timeout)
        if result.returncode != 0:
            if "couldn't find remote ref" in result.stderr:
                return None
            raise GitError(["fetch", name, branch], self.repo, result.returncode, result.stderr)
        return self.rev_parse(into)

    def push_commit(self, name: str, commit: str, branch: str, *, timeout: float | None = None) -> PushResult:
        """Move `branch` on remote `name` to `commit` by a plain, non-forced push: the
        remote's fast-forward check is the compare-and-swap (never --force, never +)."""
        ref = f"refs/heads/{branch}"
        if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
            raise ValueError(f"not a commit id: {commit!r}")
        result = self.run("push", "--porcelain", "--no-verify", "--end-of-options", name, f"{commit}:{ref}",
                          env=_remote_env(), user_config=True, check=False, timeout=timeout)
        return _read_push(result.returncode, result.stdout, result.stderr, ref)

    # -- attempts on other machines (sage stream --executor dask://): the hub is a URL or a path

    def fetch_commit(self, hub: str, commit: str, *, timeout: float | None = None) -> None:
        """Fetch one commit by its id from `hub` (git protocol v2 serves any reachable
        commit); a GitError naming the hub when it cannot."""
        _check_commit(commit)
        self.run("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head",
                 "--end-of-options", hub, commit, env=_remote_env(), user_config=True, timeout=timeout)

    def fetch_ref(self, hub: str, ref: str, *, timeout: float | None = None) -> str | None:
        """Fetch `ref` of `hub` into the same local ref; its commit, None when the hub has no such ref."""
        result = self.run("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head",
                          "--end-of-options", hub, f"+{ref}:{ref}", env=_remote_env(), user_config=True,
                          check=False, timeout=timeout)
        if result.returncode != 0:
            if "couldn't find remote ref" in result.stderr:
                return None
            raise GitError(["fetch", hub, ref], self.repo, result.returncode, result.stderr)
        return self.rev_parse(ref)

    def hub_refs(self, hub: str, prefix: str, *, timeout: float | None = None) -> dict[str, str]:
        """ref -> commit of every ref of `hub` under `prefix` (e.g. refs/sage/attempts/T1/)."""
        out = self.run("ls-remote", "--refs", "--end-of-options", hub, f"{prefix}*", env=_remote_env(),
                       user_config=True, timeout=timeout).stdout
        found = (line.partition("\t") for line in out.splitlines())
        return {ref: sha for sha, _, ref in found if ref.startswith(prefix)}

    def local_refs(self, prefix: str) -> dict[str, str]:
        """ref -> commit of this repository's refs under `prefix`."""
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", prefix).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def push_new_ref(self, hub: str, commit: str, ref: str, *, timeout: float | None = None) -> PushResult:
        """Create `ref` on `hub` at `commit` by a plain push (never forced: an attempt's ref
        that exists already is never moved to another commit)."""
        _check_commit(commit)
        result = self.run("push", "--porcelain", "--no-verify", "--end-of-options", hub, f"{commit}:{ref}",
                          env=_remote_env(), user_config=True, check=False, timeout=timeout)
        return _read_push(result.returncode, result.stdout, result.stderr, ref)


def _check_commit(commit: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
        raise ValueError(f"not a commit id: {commit!r}")


@dataclass(frozen=True)
class PushResult:
    """What a push of one ref came to: pushed | rejected (the remote branch moved: not a
    fast-forward) | refused (by a hook, a protected branch or permissions) | unreachable."""

    outcome: str
    detail: str = ""


PUSHED, REJECTED, REFUSED, UNREACHABLE = "pushed", "rejected", "refused", "unreachable"
_REFUSED_WORDS = ("permission denied", "denied", "forbidden", "403", "401", "authentication failed",
                  "not allowed", "protected branch", "insufficient permission")


def _read_push(returncode: int, stdout: str, stderr: str, ref: str) -> PushResult:
    """Read `git push --porcelain`: one `FLAG\tFROM:TO\tSUMMARY (REASON)` line per ref."""
    for line in stdout.splitlines():
        flag, _, rest = line.partition("\t")
        to_ref, _, summary = rest.partition("\t")
        if not to_ref.endswith(f":{ref}"):
            continue
        if flag in (" ", "*", "=", "+"):
            return PushResult(PUSHED, summary)
        if summary.startswith("[rejected]") or _lost_race(summary, stderr):
            return PushResult(REJECTED, summary)
        return PushResult(REFUSED, _push_detail(summary, stderr))
    if returncode == 0:
        return PushResult(PUSHED, stdout.strip())
    lowered = stderr.lower()
    if any(word in lowered for word in _REFUSED_WORDS):
        return PushResult(REFUSED, stderr.strip())
    return PushResult(UNREACHABLE, stderr.strip() or f"git push exited {returncode}")


def _lost_race(summary: str, stderr: str) -> bool:
    """Another push moved the branch between the remote's check and its update."""
    return "failed to update ref" in summary or "failed to lock" in summary or "but expected" in stderr


def _push_detail(summary: str, stderr: str) -> str:
    """The remote's own words (a hook's `remote: ...` lines) after git's summary."""
    said = [line.removeprefix("remote:").strip() for line in stderr.splitlines() if line.startswith("remote:")]
    return "; ".join([summary, *[line for line in said if line]])


def _remote_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key in REMOTE_ENV_NAMES}

"""`Git`: one repository, every local git command sage runs (the package docstring has
the rules they all follow). Talking to remotes and reading the user's configuration are
its two mixed-in parts (remote.py, user_config.py)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from filelock import FileLock

from sage_stream.errors import SageError
from sage_stream.git.environment import GIT_OF_VAR, GIT_REPO_VAR, SAFE_OPTIONS, GitError, _base_env, git_program
from sage_stream.git.history import HistoryCommands
from sage_stream.git.remote import RemoteCommands
from sage_stream.git.user_config import ISOLATED_CONFIG, UserConfigCommands

ZERO_SHA = "0" * 40
WORKTREE_LIST_TRIES = 5
# Before a command that only looks at a work tree the user may be working in: `git status`
# otherwise writes the index back when its refresh changed anything (an "optional" lock),
# and a `git commit` the user starts in that moment fails on our `index.lock` (seen: a
# user's commit lost while landings waited for that very commit, polling every 2 s).
LOOK_ONLY = ("--no-optional-locks",)


class WorkTreeStatus(NamedTuple):
    """What `git status --porcelain=v2 --branch -z` says of a work tree, for a snapshot."""

    head: str | None  # the commit checked out; None when there is none
    changes: bool  # anything differs from it
    unmerged: list[str]  # unresolved merge conflicts
    # `add --all` surely makes a tree other than the head's: every change is an untracked
    # file, or a work-tree change to a file (not a submodule) whose index entry is the
    # head's. Staged changes may be undone by the work tree, and a submodule's own
    # changes are not its commit: then only comparing the trees tells.
    tree_changes: bool


def _read_status(porcelain_v2_z: str) -> WorkTreeStatus:
    """Read `git status --porcelain=v2 --branch -z` (see `WorkTreeStatus`)."""
    head: str | None = None
    changes = False
    tree_changes = True
    unmerged: set[str] = set()
    records = iter(porcelain_v2_z.split("\0"))
    for record in records:
        if record.startswith("# branch.oid "):
            oid = record.removeprefix("# branch.oid ").strip()
            head = oid if oid != "(initial)" else None
        elif record.startswith("#") or not record:
            continue
        else:
            changes = True
            if not (record.startswith("? ") or (record.startswith("1 .") and record[5:9] == "N...")):
                tree_changes = False
            if record.startswith("2 "):  # a rename or copy: its source path is the next record
                next(records, None)
            elif record.startswith("u "):
                unmerged.add(record.split(" ", 10)[-1])
    return WorkTreeStatus(head, changes, sorted(unmerged), changes and tree_changes)


def _pathspec_excluding(paths: tuple[str, ...]) -> list[str]:
    """A pathspec for the whole work tree but `paths` (relative to its top); [] for none."""
    return ["--", *(f":(top,exclude){path}" for path in paths)] if paths else []


def _has_unstaged(porcelain_v2_z: str) -> bool:
    """`git status --porcelain=v2 -z` shows a work-tree change (Y of XY) or an unmerged path."""
    records = iter(porcelain_v2_z.split("\0"))
    for record in records:
        if record.startswith("u "):
            return True
        if record.startswith(("1 ", "2 ")) and record[3] != ".":
            return True
        if record.startswith("2 "):  # a rename or copy: its source path is the next record
            next(records, None)
    return False


class _ThreadsThenFileLock:
    """A file lock that the threads of this process queue for on a thread lock first.

    A FileLock waiter polls every 50 ms: threads of one run taking turns on the
    worktree lock lost up to 50 ms per turn (200 ms for the last of four slots reset at
    the end of a run). A thread lock hands over at once; the file lock is then only
    ever contended by other processes."""

    def __init__(self, file_lock: FileLock) -> None:
        self._threads = threading.RLock()
        self._file = file_lock

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            self._file.acquire()
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self._file.release()
        finally:
            self._threads.release()


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None  # None for a bare repository or an unborn branch
    branch: str | None  # short name ("main"); None when detached or bare
    bare: bool = False
    prunable: bool = False  # its directory is gone; `worktree prune` would drop it


@dataclass(frozen=True)
class MergeTreeResult:
    clean: bool
    tree: str | None  # the merged tree when clean
    conflicts: list[str]  # conflicted paths when not clean


class Git(HistoryCommands, UserConfigCommands, RemoteCommands):
    """One repository, addressed by the root of its main work tree."""

    def __init__(self, repo: Path, *, worktree_lock: Path | None = None) -> None:
        self.repo = Path(repo)
        # `worktree add/remove/prune` race each other (16 parallel adds lost up to 9):
        # they all run under one lock. A file lock also serializes separate processes;
        # without a path only the threads of this process are serialized.
        self._worktree_lock: _ThreadsThenFileLock | threading.RLock
        if worktree_lock is not None:
            Path(worktree_lock).parent.mkdir(parents=True, exist_ok=True)
            self._worktree_lock = _ThreadsThenFileLock(FileLock(str(worktree_lock)))
        else:
            self._worktree_lock = threading.RLock()
        self._user_env = {**_base_env(), GIT_OF_VAR: str(os.getpid()), GIT_REPO_VAR: os.path.realpath(self.repo)}
        self._env = {key: value for key, value in self._user_env.items() if key != "GIT_CONFIG_SYSTEM"}
        self._env.update(ISOLATED_CONFIG)
        self._program = git_program(self._env)
        self._user_config: dict[str, list[str]] | None = None  # USER_CONFIG_KEPT, read once
        self._commit_env: dict[str, str] | None = None

    # -- running --------------------------------------------------------------------

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        user_config: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run `git <args>`; output is text (undecodable bytes kept as surrogates). A git
        still running after `timeout` seconds is killed and reported as a GitError.
        `user_config`: read the user's global and system configuration too (only for
        talking to a remote: its credential helpers, `url.*.insteadOf`, ssh settings)."""
        where = Path(cwd) if cwd is not None else self.repo
        if isinstance(input, bytes):
            input = input.decode("utf-8", errors="surrogateescape")
        base_env = self._user_env if user_config else self._env
        full_env = {**base_env, **env} if env else base_env
        argv = [self._program, *SAFE_OPTIONS, *self._kept_options(), *args]
        try:
            result = subprocess.run(
                argv,
                cwd=where,
                input=input,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="surrogateescape",
                env=full_env,
                stdin=subprocess.DEVNULL if input is None else None,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise GitError(list(args), where, -1, f"no answer within {timeout:g} s")
        except FileNotFoundError as error:
            if not where.is_dir():
                raise GitError(list(args), where, -1, f"directory does not exist: {error}")
            raise SageError("git is not installed or not on PATH: sage-stream needs git >= 2.38")
        if check and result.returncode != 0:
            raise GitError(list(args), where, result.returncode, result.stderr)
        return result

    @contextmanager
    def worktree_lock(self) -> Iterator[None]:
        """Hold the worktree lock (reentrant in one thread) across several steps."""
        with self._worktree_lock:
            yield

    # -- reading --------------------------------------------------------------------

    def toplevel(self) -> Path:
        return Path(self.run("rev-parse", "--show-toplevel").stdout.rstrip("\n"))

    def version(self) -> tuple[int, int, int]:
        text = self.run("version").stdout
        found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not found:
            raise SageError(f"cannot read the git version from {text.strip()!r}")
        return int(found[1]), int(found[2]), int(found[3] or 0)

    def current_branch(self, cwd: Path | None = None) -> str | None:
        """The checked-out branch's short name; None when HEAD is detached."""
        result = self.run("symbolic-ref", "--quiet", "HEAD", cwd=cwd, check=False)
        ref = result.stdout.strip()
        if result.returncode != 0 or not ref.startswith("refs/heads/"):
            return None
        return ref.removeprefix("refs/heads/")

    def rev_parse(self, ref: str, *, cwd: Path | None = None) -> str | None:
        """The commit `ref` names, or None when it names no commit."""
        if not ref or ref.startswith("-"):
            return None
        result = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=cwd, check=False)
        sha = result.stdout.strip()
        return sha if result.returncode == 0 and sha else None

    def tree_of(self, commit: str) -> str:
        return self.run("rev-parse", "--verify", f"{commit}^{{tree}}").stdout.strip()

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits; None for unrelated histories."""
        result = self.run("merge-base", a, b, check=False)
        if result.returncode == 1:
            return None
        if result.returncode != 0:
            raise GitError(["merge-base", a, b], self.repo, result.returncode, result.stderr)
        return result.stdout.strip()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor == descendant and len(ancestor) == 40:  # a commit is its own ancestor: no git needed
            return True
        result = self.run("merge-base", "--is-ancestor", ancestor, descendant, check=False)
        if result.returncode not in (0, 1):
            raise GitError(["merge-base", "--is-ancestor"], self.repo, result.returncode, result.stderr)
        return result.returncode == 0

    def common_dir(self) -> Path:
        out = self.run("rev-parse", "--path-format=absolute", "--git-common-dir").stdout
        return Path(out.rstrip("\n"))

    def is_clean(self, cwd: Path, *, include_untracked: bool = False, excluding: tuple[str, ...] = ()) -> bool:
        """No staged or unstaged change to tracked files (and no untracked file if asked),
        outside the `excluding` paths (relative to the work tree's top)."""
        untracked = "--untracked-files=normal" if include_untracked else "--untracked-files=no"
        spec = _pathspec_excluding(excluding)
        return self.run(*LOOK_ONLY, "status", "--porcelain", "-z", untracked, *spec, cwd=cwd).stdout == ""

    def cleanliness(self, cwd: Path) -> tuple[bool, bool]:
        """(clean: no change to tracked files and no untracked file; pristine: not even an
        ignored file, so that `git clean -ffdx` would remove nothing). One `status`."""
        out = self.run("status", "--porcelain", "-z", "--untracked-files=normal", "--ignored=traditional",
                       cwd=cwd).stdout
        records = [record for record in out.split("\0") if record]
        return all(record.startswith("!! ") for record in records), not records

    def has_unstaged_changes(self, worktree: Path, *, excluding: tuple[str, ...] = ()) -> bool:
        """A tracked file of `worktree` differs from the index or is unmerged (outside the
        `excluding` paths). Looks only (`LOOK_ONLY`): `worktree` may be the user's checkout."""
        spec = _pathspec_excluding(excluding)
        out = self.run(*LOOK_ONLY, "status", "--porcelain=v2", "-z", "--untracked-files=no", *spec,
                       cwd=worktree).stdout
        return _has_unstaged(out)

    def files_match(self, worktree: Path, commit: str, *, excluding: tuple[str, ...] = ()) -> bool:
        """The tracked files of `worktree` are those of `commit` (outside the `excluding`
        paths), whatever its index says: compared through a scratch index, so the real one
        is neither read nor locked. Reads every file: for the rare checkout whose index
        and files disagree."""
        spec = _pathspec_excluding(excluding)
        with tempfile.TemporaryDirectory(prefix="sage-index-") as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            if self.run("read-tree", commit, cwd=worktree, env=env, check=False).returncode != 0:
                return False
            self.run("update-index", "-q", "--refresh", cwd=worktree, env=env, check=False)
            return self.run("diff-files", "--quiet", *spec, cwd=worktree, env=env, check=False).returncode == 0

    def set_index(self, worktree: Path, commit: str) -> None:
        """The index of `worktree` holds `commit`'s tree; its files are left as they are."""
        self.run("read-tree", commit, cwd=worktree)
        self.run("update-index", "-q", "--refresh", cwd=worktree, check=False)

    def index_matches(self, worktree: Path, commit: str, *, excluding: tuple[str, ...] = ()) -> bool:
        """The index of `worktree` holds `commit`'s tree (outside the `excluding` paths); reads
        the index only, so a stale `index.lock` does not get in the way."""
        spec = _pathspec_excluding(excluding)
        return self.run("diff-index", "--cached", "--quiet", commit, *spec, cwd=worktree,
                        check=False).returncode == 0

    def index_identity(self, worktree: Path) -> tuple[object, ...] | None:
        """The index file of `worktree` as (path, device, inode, size, mtime): git writes it
        anew (a lock file renamed over it) whenever it changes, so the same identity is the
        same content. No git process: found as git's layout has it, the work tree's `.git`
        directory, or the directory its `.git` file names (`gitdir: ...`, relative or
        absolute), as a linked work tree has. None when it cannot be read."""
        dot_git = worktree / ".git"
        try:
            if dot_git.is_file():
                first = dot_git.read_text(encoding="utf-8").splitlines()[0]
                if not first.startswith("gitdir:"):
                    return None
                index = worktree / first[len("gitdir:"):].strip() / "index"
            else:
                index = dot_git / "index"
            found = index.stat()
        except (OSError, UnicodeDecodeError, IndexError):
            return None
        return (str(index), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)

    def worktrees(self) -> list[WorktreeInfo]:
        """The registered work trees. Under the worktree lock: `worktree list` read while a
        `worktree add` is half done dies ("failed to read .../commondir"); a work tree
        somebody else is adding at that moment is waited out (a few tries)."""
        for attempt in range(WORKTREE_LIST_TRIES):
            with self._worktree_lock:
                result = self.run("worktree", "list", "--porcelain", "-z", check=False)
            if result.returncode == 0:
                return [_parse_worktree(record) for record in result.stdout.split("\0\0") if record.strip("\0")]
            if "failed to read" not in result.stderr or attempt == WORKTREE_LIST_TRIES - 1:
                break
            time.sleep(0.05 * (attempt + 1))
        raise GitError(["worktree", "list", "--porcelain", "-z"], self.repo, result.returncode, result.stderr)

    def commit_and_tree(self, ref: str) -> tuple[str, str] | None:
        """The commit `ref` names and its tree, in one git process; None when it names no commit."""
        if not ref or ref.startswith("-"):
            return None
        result = self.run("rev-parse", f"{ref}^{{commit}}", f"{ref}^{{tree}}", check=False)
        found = result.stdout.split()
        return (found[0], found[1]) if result.returncode == 0 and len(found) == 2 else None

    def changed_since_fork(self, ours: str, theirs: str) -> dict[str, tuple[str, str]] | None:
        """What `theirs` changed since it forked from `ours` (diff from their merge base,
        in one git process): each path with its modes before and in `theirs` ("000000"
        where it does not exist, "120000" for a symbolic link), in git's order; None for
        unrelated histories."""
        args = ["diff-tree", "-r", "--no-commit-id", "--raw", "-z", "--no-renames", "--merge-base", ours, theirs]
        result = self.run(*args, check=False)
        if result.returncode != 0:
            if self.merge_base(ours, theirs) is None:
                return None
            raise GitError(args, self.repo, result.returncode, result.stderr)
        fields = result.stdout.split("\0")
        changed: dict[str, tuple[str, str]] = {}
        for info, path in zip(fields[0::2], fields[1::2]):  # ":old new oldsha newsha status", then the path
            if info.startswith(":") and path:
                before, after = info[1:].split(" ", 2)[:2]
                changed[path] = (before, after)
        return changed

    def changed_paths(self, old: str, new: str) -> list[str]:
        """Paths that differ between two commits or trees; a rename lists both its paths."""
        out = self.run("diff-tree", "-r", "--no-commit-id", "--name-only", "-z", "--no-renames", old, new).stdout
        return [path for path in out.split("\0") if path]

    def symlinks(self, commit: str) -> dict[str, str]:
        """Every symbolic link of `commit`'s tree, with the target each stores (two git
        processes, however many links)."""
        out = self.run("ls-tree", "-r", "-z", "--full-tree", commit).stdout
        blobs: dict[str, str] = {}
        for record in out.split("\0"):
            info, _, path = record.partition("\t")
            fields = info.split()
            if len(fields) == 3 and fields[0] == "120000":
                blobs[path] = fields[2]
        if not blobs:
            return {}
        batch = subprocess.run([self._program, *SAFE_OPTIONS, *self._kept_options(), "cat-file", "--batch"], cwd=self.repo, env=self._env, capture_output=True,
                               input="".join(f"{blob}\n" for blob in blobs.values()).encode(), check=False)
        if batch.returncode != 0:
            raise GitError(["cat-file", "--batch"], self.repo, batch.returncode, batch.stderr.decode(errors="replace"))
        data, links, at = batch.stdout, {}, 0
        for path in blobs:
            header_end = data.index(b"\n", at)
            size = int(data[at:header_end].split()[2])
            links[path] = data[header_end + 1:header_end + 1 + size].decode("utf-8", errors="surrogateescape")
            at = header_end + 1 + size + 1
        return links

    def branch_tips(self, *, skip_prefix: str = "") -> dict[str, str]:
        """Every `refs/heads/*` and the commit it names (one `git for-each-ref`), except
        those under `refs/heads/<skip_prefix>`."""
        out = self.run("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/").stdout
        skipped = f"refs/heads/{skip_prefix}" if skip_prefix else None
        tips = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            if ref and not (skipped and ref.startswith(skipped)):
                tips[ref] = sha
        return tips

    def symbolic_head(self, cwd: Path) -> str | None:
        """The full ref HEAD names in the work tree `cwd` (None when detached)."""
        result = self.run("symbolic-ref", "--quiet", "HEAD", cwd=cwd, check=False)
        return result.stdout.strip() or None

    # -- worktrees ------------------------------------------------------------------

    def worktree_add(self, path: Path, branch: str, start: str) -> None:
        """A new work tree at `path` on `branch`, (re)set to `start`.

        `-B` resets an existing branch that is not checked out elsewhere: callers that
        care about the branch's commits keep them first (see engine/worktrees.py).
        """
        with self._worktree_lock:
            self.run("worktree", "add", "--quiet", "--no-track", "-B", branch, str(path), start)

    def worktree_add_detached(self, path: Path, start: str, *, checkout: bool = True) -> None:
        """A new work tree at `path` with `start` detached. `checkout=False` registers it
        without writing any file (its index is empty): the caller checks it out later,
        outside the worktree lock, so that new slots fill in parallel."""
        with self._worktree_lock:
            self.run("worktree", "add", "--quiet", "--detach", *([] if checkout else ["--no-checkout"]),
                     str(path), start)

    def worktree_remove(self, path: Path) -> None:
        """Remove a work tree even with changes in it; a vanished directory is pruned."""
        with self._worktree_lock:
            result = self.run("worktree", "remove", "--force", "--force", str(path), check=False)
            if result.returncode != 0 and Path(path).exists():
                raise GitError(["worktree", "remove", str(path)], self.repo, result.returncode, result.stderr)
            self.run("worktree", "prune")

    def worktree_prune(self) -> None:
        with self._worktree_lock:
            self.run("worktree", "prune")

    # -- writing --------------------------------------------------------------------

    def snapshot(self, worktree: Path, message: str, *, allow_unmerged: bool = False) -> str:
        """Commit everything uncommitted in `worktree` (new, modified, deleted files) on
        its HEAD and return the new tip; the old tip when there was nothing to commit.

        Plumbing (add, write-tree, commit-tree, update-ref) instead of `git commit`: no
        hook, no editor, no signing prompt, no commit-msg rewriting. An unresolved merge
        conflict is refused (its markers are not work to land) unless `allow_unmerged`,
        for keeping a backup of whatever is there.
        """
        # One `status` gives the commit checked out, whether there is anything to commit,
        # and whether a merge conflict is unresolved (`add -A` would commit its markers
        # as if they were the work): an untouched work tree costs one git process.
        status = self.run("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", cwd=worktree).stdout
        old, changes, unmerged, tree_changes = _read_status(status)
        if old is None:
            raise GitError(["rev-parse", "HEAD"], worktree, 1, "the work tree has no commit checked out")
        if not changes:
            return old
        if unmerged and not allow_unmerged:
            raise GitError(["snapshot"], worktree, 1, f"unresolved merge conflict in: {', '.join(unmerged)}")
        self.run("add", "--all", cwd=worktree)
        tree = self.run("write-tree", cwd=worktree).stdout.strip()
        if not tree_changes and tree == self.tree_of(old):
            return old
        new = self.commit_tree(tree, [old], message)
        self.run("update-ref", "-m", "sage-stream: snapshot", "HEAD", new, old, cwd=worktree)
        return new

    def merge_tree(self, ours: str, theirs: str) -> MergeTreeResult:
        """A 3-way merge of two commits (merge base found by git) without touching any
        index or work tree; nothing is written but objects."""
        args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs]
        result = self.run(*args, check=False)
        fields = result.stdout.split("\0")
        if result.returncode == 0:
            return MergeTreeResult(clean=True, tree=fields[0].strip(), conflicts=[])
        if result.returncode == 1:
            conflicts = list(dict.fromkeys(path for path in fields[1:] if path))
            return MergeTreeResult(clean=False, tree=None, conflicts=conflicts)
        raise GitError(args, self.repo, result.returncode, result.stderr)

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        """A commit object (no ref moves); the message is taken verbatim from stdin."""
        args = ["commit-tree", "--no-gpg-sign"]
        for parent in parents:
            args += ["-p", parent]
        text = message if message.endswith("\n") else message + "\n"
        return self.run(*args, "-F", "-", tree, input=text, env=self._identity_env()).stdout.strip()

    def update_ref(self, ref: str, new: str, old: str) -> bool:
        """Compare-and-swap `ref` from `old` to `new`; False when the ref was not at `old`."""
        result = self.run("update-ref", "-m", "sage-stream: land", ref, new, old, check=False)
        if result.returncode == 0:
            return True
        current = self.rev_parse(ref) or ZERO_SHA
        if current != old:
            return False
        raise GitError(["update-ref", ref, new, old], self.repo, result.returncode, result.stderr)

    def set_ref(self, ref: str, new: str | None, old: str | None, *, reason: str) -> bool:
        """Compare-and-swap `ref` from `old` (None: must not exist) to `new` (None: delete
        it), with `reason` in its reflog; False when the ref was not at `old`."""
        expected = old or ZERO_SHA
        args = ["update-ref", "-m", reason, *(["-d", ref, expected] if new is None else [ref, new, expected])]
        return self.run(*args, check=False).returncode == 0

    def bring_along(self, worktree: Path, old: str, new: str) -> bool:
        """Update the files and index of a work tree whose branch just moved from `old` to
        `new`, as `git checkout` would. False (nothing changed) when git refuses, e.g.
        because a local change or an untracked file is in the way."""
        if self.run("read-tree", "-m", "-u", old, new, cwd=worktree, check=False).returncode == 0:
            return True
        # Stale file stamps in the index look like local changes (sage's own `status` there
        # never writes the index: LOOK_ONLY): refresh, try again
        self.run("update-index", "-q", "--refresh", cwd=worktree, check=False)
        return self.run("read-tree", "-m", "-u", old, new, cwd=worktree, check=False).returncode == 0

    def branch_delete(self, branch: str) -> None:
        """Delete a branch whose work has landed. A plain ref deletion: `git branch -D`
        would also lock .git/config, which fails under concurrent workers."""
        self.run("update-ref", "-d", f"refs/heads/{branch}")


def _parse_worktree(record: str) -> WorktreeInfo:
    path: Path | None = None
    head = branch = None
    bare = prunable = False
    for line in record.split("\0"):
        key, _, value = line.partition(" ")
        if key == "worktree":
            path = Path(value)
        elif key == "HEAD":
            head = value if value != ZERO_SHA else None
        elif key == "branch":
            branch = value.removeprefix("refs/heads/")
        elif key == "bare":
            bare = True
        elif key == "prunable":
            prunable = True
    if path is None:
        raise SageError(f"cannot parse `git worktree list` output: {record!r}")
    return WorktreeInfo(path=path, head=head, branch=branch, bare=bare, prunable=prunable)

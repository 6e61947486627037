"""`sage retry ID --land`: land the work a ticket's earlier attempt kept, without an agent.

A ticket deferred for its scope (or whose checks failed, or whose run was stopped)
keeps its work on `sage/<ID>` or `sage/<ID>-attempt-<K>`. After the ticket's `files`
(or the code the checks test) were fixed, that work can land as it is: its checks run
again on exactly the kept commit, in a scratch work tree, and it lands through the
same Lander as a run's work (same scope rule with the ticket's current `files`, same
commit message, same COMPLETED record). The caller holds the run lock.

Once a ticket has landed, its kept branches that hold nothing the target lacks are
pruned (`prune_landed_attempts`: after a run, and after such a landing).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sage_stream.agents import environment
from sage_stream.engine.attempt_sandbox import AttemptPaths, sandboxed_launch
from sage_stream.engine.commit_queue import QueueEntry
from sage_stream.engine.lander import Landed, Lander
from sage_stream.engine.verification import Check, CheckDefinitionError, Verification, run_checks, ticket_checks
from sage_stream.git import Git
from sage_stream.process.sandbox import Sandbox
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.naming import BRANCH_PREFIX, ticket_branch

LANDABLE_STATES = (State.DEFERRED, State.UNPROCESSED)


@dataclass(frozen=True)
class KeptBranch:
    """A branch holding a ticket's unlanded work: `base..tip` is that work."""

    branch: str
    tip: str
    base: str


@dataclass(frozen=True)
class KeptLanding:
    """What `land_kept_work` did: `landed` set, or `problem` says why nothing landed."""

    branch: str | None
    landed: Landed | None = None
    problem: str | None = None
    verification: Verification | None = None


def kept_branches(git: Git, ticket_id: str) -> list[str]:
    """`sage/<ID>` then its `-attempt-<K>` branches, newest (highest K) first."""
    prefix = f"refs/heads/{BRANCH_PREFIX}{ticket_id}-attempt-"
    refs = git.run("for-each-ref", "--format=%(refname)", f"{prefix}*").stdout.split()
    numbered = sorted((int(ref[len(prefix):]), ref.removeprefix("refs/heads/"))
                      for ref in refs if ref[len(prefix):].isdigit())
    return [ticket_branch(ticket_id), *(name for _, name in reversed(numbered))]


def prune_landed_attempts(git: Git, target: str, completed: Iterable[str]) -> list[str]:
    """Delete the `sage/<ID>-attempt-<K>` branches (and a `sage/<ID>` no work tree has checked
    out) of COMPLETED tickets that hold nothing the target lacks (their tip is on it, or
    merging it into the target changes no file); a branch with anything else is kept.
    Returns the branches deleted."""
    done = set(completed)
    refs = git.run("for-each-ref", "--format=%(refname)", f"refs/heads/{BRANCH_PREFIX}").stdout.split()
    target_tip = git.rev_parse(f"refs/heads/{target}^{{commit}}")
    if target_tip is None:
        return []
    target_tree = git.tree_of(target_tip)
    checked_out = {info.branch for info in git.worktrees()}
    pruned = []
    for ref in refs:
        name = ref.removeprefix("refs/heads/")
        ticket_id, _, number = name.removeprefix(BRANCH_PREFIX).rpartition("-attempt-")
        if name.removeprefix(BRANCH_PREFIX) in done:
            ticket_id, number = name.removeprefix(BRANCH_PREFIX), "0"  # sage/<ID> itself, once it landed
        if ticket_id not in done or not number.isdigit() or name in checked_out or ref in checked_out:
            continue
        tip = git.rev_parse(f"{ref}^{{commit}}")
        if tip is None:
            continue
        if not git.is_ancestor(tip, target_tip):
            merged = git.merge_tree(target_tip, tip)
            if not merged.clean or merged.tree != target_tree:
                continue  # it holds something the target does not have: kept
        git.branch_delete(name)
        pruned.append(name)
    return pruned


def find_kept_work(git: Git, ticket_id: str, target: str) -> KeptBranch | None:
    """The newest kept branch that holds a commit the target does not have."""
    target_ref = f"refs/heads/{target}"
    for branch in kept_branches(git, ticket_id):
        tip = git.rev_parse(f"refs/heads/{branch}^{{commit}}")
        if tip is None or git.is_ancestor(tip, target_ref):
            continue
        base = git.merge_base(tip, target_ref)
        if base is not None:
            return KeptBranch(branch=branch, tip=tip, base=base)
    return None


@dataclass(frozen=True)
class KeptWorkChecks:
    """How kept work is checked: as a run checks an attempt (the project's `[checks]` after
    the ticket's own, the same environment names, timeout and sandbox)."""

    project_checks: tuple[Check, ...]
    env_names: tuple[str, ...]
    timeout_s: float
    sandbox: Sandbox | None
    writable: tuple[str, ...]  # [agent] writable
    worktrees: Path  # where the scratch work tree goes
    log_dir: Path
    run_id: str


def check_kept_work(git: Git, kept: KeptBranch, ticket: Ticket, how: KeptWorkChecks) -> Verification:
    """Run the checks on exactly the kept commit, in a scratch work tree removed afterwards
    (one per landing: a work tree a killed check left never blocks the next)."""
    checks = (*ticket_checks(ticket), *how.project_checks)
    if not checks:
        return Verification(results=())
    scratch = (how.worktrees / f"retry-{ticket.id}-{how.run_id}").absolute()
    env = environment.agent_environment(os.environ, passthrough=how.env_names, sage={
        environment.SAGE_TICKET_ID: ticket.id, environment.SAGE_RUN_ID: how.run_id,
        environment.SAGE_WORKTREE: str(scratch)})
    scratch.parent.mkdir(parents=True, exist_ok=True)
    how.log_dir.mkdir(parents=True, exist_ok=True)
    git.worktree_add_detached(scratch, kept.tip)
    try:
        prefix: tuple[str, ...] = ()
        if how.sandbox is not None:
            paths = AttemptPaths(worktree=scratch, repo=git.repo.absolute(), common_dir=git.common_dir(),
                                 run_dir=how.log_dir.absolute(), extra=how.writable)
            named = [argument for check in checks for argument in check.argv]
            prefix = sandboxed_launch(how.sandbox, paths, env=env, argv=named).prefix
        return run_checks(checks, worktree=scratch, env=env, log_dir=how.log_dir, stem=f"{ticket.id}.retry-land",
                          timeout_s=how.timeout_s, cancel=threading.Event(), label="sage retry --land",
                          sandbox=prefix)
    finally:
        git.worktree_remove(scratch)


def land_kept_work(ticket: Ticket, *, lander: Lander, run_id: str, log_dir: Path,
                   verify: Callable[[KeptBranch], Verification]) -> KeptLanding:
    """Find the ticket's kept work, check it, and land it; nothing changes when it cannot land."""
    if ticket.state not in LANDABLE_STATES:
        return KeptLanding(None, problem=f"{ticket.id} is {ticket.state.value}: only a DEFERRED or UNPROCESSED "
                                         "ticket's kept work can land")
    kept = find_kept_work(lander.git, ticket.id, lander.target)
    if kept is None:
        return KeptLanding(None, problem=(
            f"nothing to land for {ticket.id}: no branch {ticket_branch(ticket.id)} or "
            f"{ticket_branch(ticket.id)}-attempt-K holds a commit that is not on {lander.target} "
            f"(run it again with `sage retry {ticket.id}`)"))
    try:
        verification = verify(kept)
    except CheckDefinitionError as error:
        return KeptLanding(kept.branch, problem=f"{ticket.id}: a check cannot run, nothing landed: {error.message}")
    if not verification.passed:
        failed = "; ".join(f"{result.check.name}: {result.reason} (log {result.log_path})"
                           for result in verification.failed)
        return KeptLanding(kept.branch, verification=verification,
                           problem=f"{ticket.id}: the checks fail on {kept.branch} ({kept.tip[:12]}), nothing "
                                   f"landed: {failed}")
    entry = QueueEntry(ticket=ticket.id, branch=kept.branch, tip=kept.tip, base=kept.base, run_id=run_id,
                       worktree="", log=str(log_dir), result=_kept_result(ticket))
    lander.queue.put(entry)
    outcome = lander.land(entry, ticket)
    if isinstance(outcome, Landed):
        return KeptLanding(kept.branch, landed=outcome, verification=verification)
    paths = f" ({', '.join(outcome.paths)})" if outcome.paths else ""
    return KeptLanding(kept.branch, verification=verification,
                       problem=f"{ticket.id}: {kept.branch} did not land: {outcome.outcome}{paths}: {outcome.message}")


def _kept_result(ticket: Ticket) -> dict:
    """The agent result the index keeps for the ticket, as its earlier attempt recorded it."""
    earlier = (ticket.model_extra or {}).get("agent_result")
    result = dict(earlier) if isinstance(earlier, dict) else {}
    return {**result, "note": "landed from kept work by `sage retry --land`"}


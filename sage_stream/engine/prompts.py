"""An attempt's files in the run directory: its prompt, and where its log and result go.

`<stem>` is the ticket id, or `<ID>.rerun-<N>` for its N-th rerun in the same run, so
that every attempt keeps its own files: <stem>.prompt.md, <stem>.log, <stem>.result.json
(and <stem>.fix-<K>.* for fix turns, written by the runner).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sage_stream.agents.base import AgentJob
from sage_stream.agents.prompt import build_prompt, write_prompt_file
from sage_stream.engine.sessions import Continuation, continuation_note
from sage_stream.tickets.models import Ticket


def attempt_stem(ticket_id: str, start_in_run: int) -> str:
    return ticket_id if start_in_run == 1 else f"{ticket_id}.rerun-{start_in_run - 1}"


def dependency_context(ticket: Ticket, current: Mapping[str, Ticket]) -> tuple[dict[str, str], dict[str, str]]:
    """What each dependency did (its agent's summary) and its title, for the prompt."""
    summaries: dict[str, str] = {}
    titles: dict[str, str] = {}
    for dep in ticket.dependencies:
        other = current.get(dep)
        if other is None:
            continue
        result = (other.model_extra or {}).get("agent_result")
        summary = result.get("summary") if isinstance(result, dict) else None
        summaries[dep] = str(summary or other.summary or "(no summary recorded)")
        titles[dep] = other.title
    return summaries, titles


def write_attempt_job(ticket: Ticket, *, stem: str, run_dir: Path, run_id: str, tickets_dir: Path, repo: Path,
                      current: Mapping[str, Ticket], continuation: Continuation | None) -> AgentJob:
    """Write the attempt's prompt; the job that runs it (its worktree is set once prepared)."""
    prompt_file = run_dir / f"{stem}.prompt.md"
    result_file = run_dir / f"{stem}.result.json"
    result_file.unlink(missing_ok=True)
    summaries, titles = dependency_context(ticket, current)
    prompt = build_prompt(ticket, tickets_dir=tickets_dir, repo_root=repo, dependency_summaries=summaries,
                          dependency_titles=titles)
    if continuation is not None:
        prompt += continuation_note(continuation)
    write_prompt_file(prompt_file, prompt)
    return AgentJob(ticket=ticket, worktree=Path(), prompt_file=prompt_file, result_file=result_file,
                    log_path=run_dir / f"{stem}.log", run_id=run_id,
                    session_id=continuation.session_id if continuation else None)

"""The loop (engine/stream.py) in-process, on a fake runner, a fake lander and a fake clock.

No git, no subprocess, no agent thread: the fake runner answers each attempt with the
messages a real one would send (prepared, one agent turn, done), scripted per ticket;
the fake lander lands by writing COMPLETED through the same index states. Each test
runs in milliseconds and reads the outcome from the index, the events and the exit code.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ticket, write_index

from sage_stream.agents.base import AgentResult
from sage_stream.engine import events as ev
from sage_stream.engine import ticket_state
from sage_stream.process.supervise import AgentExit
from sage_stream.engine.commit_queue import CommitQueue
from sage_stream.engine.dispatch_control import RateLimitPolicy
from sage_stream.engine.lander import Landed
from sage_stream.engine.outcomes import LandingVerdict
from sage_stream.engine.scheduler import DispatchPlan
from sage_stream.engine.settings import StreamSettings
from sage_stream.engine.stream import StreamRun
from sage_stream.engine.work import (
    AgentsDone,
    AttemptDone,
    AttemptHandle,
    AttemptSpec,
    Prepared,
    SpareReady,
    TicketWork,
    TurnDone,
)
from sage_stream.engine.worktrees import Workspace
from sage_stream.errors import EXIT_DEFERRED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP
from sage_stream.tickets.models import State
from sage_stream.tickets.store import IndexStore


class FakeClock:
    """Moves on by `step` seconds every time it is read: a pause of minutes passes in a
    few reads, without sleeping."""

    def __init__(self, step: float = 0.0) -> None:
        self.now, self.step = 1_000_000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class FakeAgent:
    name = "fake"

    def supports_sessions(self) -> bool:
        return True


OK = AgentResult(success=True, summary="did it", cost_usd=0.5)


class FakeRunner:
    """Answers `start` at once with prepared -> one turn -> done. `script[ticket]` is a
    list of results, one per attempt (the last repeats); `hold` tickets only get as far
    as prepared (the test finishes or cancels them)."""

    def __init__(self, inbox: queue.Queue, script: dict[str, list[AgentResult]] | None = None,
                 hold: set[str] | None = None, clock: FakeClock | None = None) -> None:
        self.inbox, self.script, self.hold = inbox, script or {}, hold or set()
        self.clock = clock or FakeClock()
        self.started: list[AttemptSpec] = []
        self.journal: list[str] = []  # "start X" / "land X", shared with the fake lander
        self.handles: dict[str, AttemptHandle] = {}
        self.kept: list[str] = []
        self.spares: list[int] = []
        self.agents_done = False  # say AgentsDone before AttemptDone, as LocalRunner does
        self.hold_commit: set[str] = set()
        self.held: dict[str, AttemptDone] = {}

    def start(self, spec: AttemptSpec) -> AttemptHandle:
        self.started.append(spec)
        self.journal.append(f"start {spec.ticket.id}")
        handle = self.handles[spec.ticket.id] = AttemptHandle()
        workspace = Workspace(path=Path(f"/slots/slot-{spec.slot}"), branch=f"sage/{spec.ticket.id}", base="b0",
                              ticket=spec.ticket.id)
        self.inbox.put(Prepared(spec.ticket.id, workspace))
        if spec.ticket.id not in self.hold:
            self.finish(spec.ticket.id)
        return handle

    def finish(self, ticket_id: str, *, cancelled: bool = False) -> None:
        spec = [s for s in self.started if s.ticket.id == ticket_id][-1]
        results = self.script.get(ticket_id, [OK])
        result = results[min(len([s for s in self.started if s.ticket.id == ticket_id]) - 1, len(results) - 1)]
        exit = AgentExit(outcome="cancelled" if cancelled else "exited", returncode=0 if result.success else 1,
                         duration_s=1.0, last_line="last line", error=None, pid=None)
        turn_started = self.clock()
        self.inbox.put(TurnDone(ticket_id, exit, result, 0, turn_started))
        workspace = Workspace(path=Path(f"/slots/slot-{spec.slot}"), branch=f"sage/{ticket_id}", base="b0",
                              ticket=ticket_id)
        done = AttemptDone(ticket_id, TicketWork(exit=exit, result=result, turn_started=turn_started,
                                                 workspace=workspace, log=spec.job.log_path,
                                                 cancelled=cancelled, tip=f"tip-{ticket_id}"))
        if self.agents_done:  # as LocalRunner: the agents are over, the work is committed next
            self.inbox.put(AgentsDone(ticket_id))
        if ticket_id in self.hold_commit:  # its commit takes until the test says
            self.held[ticket_id] = done
            return
        self.inbox.put(done)

    def commit(self, ticket_id: str) -> None:
        """A held ticket's work is committed: its attempt is done."""
        self.journal.append(f"committed {ticket_id}")
        self.inbox.put(self.held.pop(ticket_id))

    def make_spare_slot(self, slot: int) -> None:
        self.spares.append(slot)
        self.inbox.put(SpareReady(slot, None))

    def keep_work(self, workspace: Workspace, ticket_id: str) -> None:
        self.kept.append(ticket_id)

    def finish_releases(self, releases: list) -> list[tuple[str, str]]:
        return []


class FakeLander:
    """Lands every entry (COMPLETED through the index states), except the tickets in
    `conflicts`, whose first `conflicts[id]` landings conflict."""

    def __init__(self, states: ticket_state.TicketStates, queue_dir: Path, conflicts: dict[str, int] | None = None):
        self.states, self.queue = states, CommitQueue(queue_dir)
        self.conflicts = dict(conflicts or {})
        self.landed: list[str] = []
        self.journal: list[str] = []
        self.emit: Any = None

    dirty_looks = 0  # `may_land_again` says the target's checkout is still dirty this many times
    on_look: Any = None

    def may_land_again(self) -> bool:
        if self.on_look is not None:
            self.on_look()
        self.journal.append("look")
        if self.dirty_looks > 0:
            self.dirty_looks -= 1
            return False
        return True

    def land(self, entry, ticket, *, started=None, owned=False, on_recorded=None, wait=True):
        assert not wait  # the loop never blocks on a dirty checkout
        if self.dirty_looks > 0:
            self.journal.append(f"waits {ticket.id}")
            return LandingVerdict("target_dirty", message="landings onto main wait", log=entry.log)
        if self.conflicts.get(ticket.id, 0) > 0:
            self.conflicts[ticket.id] -= 1
            self.queue.remove(entry)
            return LandingVerdict("conflict", paths=("same.txt",), message="CONFLICT in same.txt", log=entry.log)
        commit = f"c-{ticket.id}"
        self.states.apply({ticket.id: ticket_state.complete(commit=commit, message=f"#{ticket.id}",
                                                            branch=entry.branch, result=entry.result or None)})
        self.queue.remove(entry)
        self.landed.append(ticket.id)
        self.journal.append(f"land {ticket.id}")
        self.emit(ev.TICKET_LANDED, ticket.id, commit=commit, duration_s=1.0)
        landed = Landed("landed", commit)
        if on_recorded is not None:
            on_recorded(landed)
        return landed


class Events:
    def __init__(self) -> None:
        self.seen: list[ev.Event] = []

    def handle(self, event: ev.Event) -> None:
        self.seen.append(event)

    def close(self) -> None:
        pass

    def kinds(self, kind: str) -> list[ev.Event]:
        return [event for event in self.seen if event.kind == kind]

    def tickets(self, kind: str) -> list[str]:
        return [event.ticket for event in self.kinds(kind)]


def make_run(tmp_path: Path, tickets: list[dict], *, workers: int = 2, script=None, hold=None, conflicts=None,
             clock: FakeClock | None = None, **overrides: Any):
    index = write_index(tmp_path, tickets)
    store = IndexStore(index)
    states = ticket_state.TicketStates(store)
    inbox: queue.Queue = queue.Queue()
    clock = clock or FakeClock()
    settings = StreamSettings(**{
        "repo": tmp_path, "sage_dir": tmp_path / ".sage", "target": "main", "workers": workers,
        "workers_reason": "test", "schedule": "greedy", "agent": FakeAgent(), "timeout_s": 60.0,
        "idle_timeout_s": 60.0, "grace_s": 1.0, "max_reruns": 2, "max_attempts": 3, "retry_backoff_s": 60.0,
        "rate_limits": RateLimitPolicy(backoff_s=30.0, max_backoff_s=60.0, jitter=0.0), "clock": clock,
        **overrides})
    runner = FakeRunner(inbox, script, hold, clock)
    lander = FakeLander(states, tmp_path / ".sage" / "commit-queue", conflicts)
    lander.journal = runner.journal
    display = Events()
    run = StreamRun(settings, states=states, lander=lander, runner=runner, inbox=inbox, display=display,
                    run_id="test-run", tickets_dir=index.parent)
    lander.emit = run.emit
    loaded = store.load()
    by_id = loaded.index.by_id()
    plan = DispatchPlan(tickets=by_id, bottom_levels={tid: 1.0 for tid in by_id}, now=_now(),
                        schedule="greedy", max_reruns=settings.max_reruns)
    return run, plan, runner, lander, display, store


def _now():
    from datetime import datetime, timezone

    return datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def execute(run: StreamRun, plan: DispatchPlan) -> int:
    return run.execute(plan, {}, plan.ready(), None)


def states_of(store: IndexStore) -> dict[str, State]:
    return {tid: t.state for tid, t in store.load().index.by_id().items()}


def test_a_dag_is_drained_in_dependency_order(tmp_path):
    tickets = [ticket("A"), ticket("B", "A"), ticket("C", "A"), ticket("D", "B", "C")]
    run, plan, runner, lander, events, store = make_run(tmp_path, tickets)

    assert execute(run, plan) == EXIT_OK
    assert states_of(store) == dict.fromkeys("ABCD", State.COMPLETED)
    order = lander.landed
    assert order[0] == "A" and order[-1] == "D" and set(order[1:3]) == {"B", "C"}
    # nothing started before what it depends on had landed
    sequence = [(e.kind, e.ticket) for e in events.seen if e.kind in (ev.TICKET_STARTED, ev.TICKET_LANDED)]
    for spec in runner.started:
        started = sequence.index((ev.TICKET_STARTED, spec.ticket.id))
        assert all(sequence.index((ev.TICKET_LANDED, dep)) < started for dep in spec.ticket.dependencies)
    assert {spec.worker for spec in runner.started} <= {0, 1}
    finished = events.kinds(ev.RUN_FINISHED)[-1].data
    assert (finished["completed"], finished["deferred"], finished["exit_code"]) == (4, 0, 0)
    assert finished["total_cost_usd"] == 2.0  # four agents at 0.5


def test_the_run_record_is_folded_from_the_events(tmp_path):
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A"), ticket("B", "A")])

    execute(run, plan)
    from sage_stream.engine.run_record import read_run, record_from_events

    written = read_run(tmp_path / ".sage" / "runs" / "test-run.json")
    replayed = record_from_events("test-run", events.seen)
    assert {tid: r.outcome for tid, r in written.tickets.items()} == {"A": "landed", "B": "landed"}
    assert {tid: (r.outcome, r.commit, r.cost_usd) for tid, r in written.tickets.items()} == \
        {tid: (r.outcome, r.commit, r.cost_usd) for tid, r in replayed.tickets.items()}
    assert (written.status, written.exit_code, written.total_cost_usd) == ("finished", 0, 1.0)


def test_a_failure_is_deferred_while_the_others_go_on(tmp_path):
    failing = AgentResult(success=False, error_kind="other", message="it broke")
    tickets = [ticket("BAD"), ticket("AFTER-BAD", "BAD"), ticket("GOOD"), ticket("AFTER-GOOD", "GOOD")]
    run, plan, runner, lander, events, store = make_run(tmp_path, tickets, script={"BAD": [failing]})

    assert execute(run, plan) == EXIT_DEFERRED
    states = states_of(store)
    assert states == {"BAD": State.DEFERRED, "AFTER-BAD": State.UNPROCESSED, "GOOD": State.COMPLETED,
                      "AFTER-GOOD": State.COMPLETED}
    reason = store.load().index.by_id()["BAD"].defer_reason
    assert reason.category == "agent_failed" and "it broke" in reason.message
    assert runner.kept == []  # its work is on its branch already (the runner's snapshot): nothing more to keep
    blocked = [e.data["text"] for e in events.kinds(ev.MESSAGE) if e.ticket == "AFTER-BAD"]
    assert blocked and "blocked by BAD" in blocked[0]


def test_a_conflict_reruns_on_the_new_tip_then_lands(tmp_path):
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A")], conflicts={"A": 1})

    assert execute(run, plan) == EXIT_OK
    assert [spec.ticket.id for spec in runner.started] == ["A", "A"]
    assert [spec.stem for spec in runner.started] == ["A", "A.rerun-1"]  # each attempt its own files
    requeued = events.kinds(ev.TICKET_REQUEUED)
    assert len(requeued) == 1 and requeued[0].data["category"] == "conflict" and requeued[0].data["attempt"] == 2
    assert states_of(store)["A"] is State.COMPLETED


def test_a_conflict_that_persists_is_deferred_with_its_paths(tmp_path):
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A")], conflicts={"A": 5})

    assert execute(run, plan) == EXIT_DEFERRED
    assert len(runner.started) == 3  # the first run and max_reruns (2) reruns
    reason = store.load().index.by_id()["A"].defer_reason
    assert reason.category == "conflict" and "same.txt" in reason.message and reason.model_extra["retryable"] is True


def test_a_rate_limit_pauses_dispatch_and_resumes(tmp_path):
    limited = AgentResult(success=False, error_kind="rate_limit", retryable=True, message="429")
    clock = FakeClock(step=5.0)  # each read of the clock is 5 s later: a 30 s pause passes in a few reads
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B")], workers=1, script={"A": [limited, OK]}, clock=clock)

    assert execute(run, plan) == EXIT_OK
    assert states_of(store) == {"A": State.COMPLETED, "B": State.COMPLETED}
    kinds = [e.kind for e in events.seen if e.kind in (ev.DISPATCH_PAUSED, ev.DISPATCH_RESUMED,
                                                          ev.TICKET_REQUEUED, ev.TICKET_STARTED)]
    assert kinds[:4] == [ev.TICKET_STARTED, ev.DISPATCH_PAUSED, ev.TICKET_REQUEUED, ev.DISPATCH_RESUMED]
    assert events.kinds(ev.TICKET_REQUEUED)[0].data["category"] == "rate_limit"
    assert store.load().index.by_id()["A"].attempts in (0, None)  # a rate limit is not the ticket's attempt


def test_a_quota_that_resets_far_away_defers_and_halts_the_run(tmp_path):
    quota = AgentResult(success=False, error_kind="quota", retryable=True, message="quota",
                        reset_at="2099-01-01T00:00:00Z")
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B", "X"), ticket("X")], workers=1, script={"A": [quota]})

    assert execute(run, plan) == EXIT_DEFERRED
    states = states_of(store)
    assert states["A"] is State.DEFERRED
    assert [spec.ticket.id for spec in runner.started] == ["A"]  # nothing else starts once halted
    assert store.load().index.by_id()["A"].not_before.startswith("2099-01-01")
    halted = events.kinds(ev.RUN_FINISHED)[-1].data["stopped"]
    assert halted and "quota" in halted


def test_max_cost_halts_new_starts_but_running_tickets_land(tmp_path):
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B"), ticket("C")], workers=2, max_cost_usd=0.4)

    assert execute(run, plan) == EXIT_OK  # a cost halt is not a failure
    assert lander.landed == ["A", "B"]  # B was running when A's cost reached the limit
    assert states_of(store)["C"] is State.UNPROCESSED
    assert "--max-cost" in events.kinds(ev.RUN_FINISHED)[-1].data["stopped"]


NOT_LOGGED_IN = AgentResult(success=False, error_kind="auth", message="claude: Not logged in · Please run /login",
                            fix="export ANTHROPIC_API_KEY in the shell that runs sage, or log in once: run `claude`, "
                                "then /login")


def test_a_setup_error_halts_the_run_and_puts_the_tickets_back_unspent(tmp_path):
    tickets = [ticket(f"T{n}") for n in range(8)]
    run, plan, runner, lander, events, store = make_run(
        tmp_path, tickets, workers=2, script={f"T{n}": [NOT_LOGGED_IN] for n in range(8)})

    assert execute(run, plan) == EXIT_SETUP
    assert len(runner.started) == 2  # one agent per worker, then nothing new starts
    loaded = store.load().index.by_id()
    assert {tid: t.state for tid, t in loaded.items()} == {f"T{n}": State.UNPROCESSED for n in range(8)}
    assert all(not t.attempts and t.defer_reason is None for t in loaded.values())  # no attempt burned
    assert {e.data["category"] for e in events.kinds(ev.TICKET_REQUEUED)} == {"setup"}
    finished = events.kinds(ev.RUN_FINISHED)[-1].data
    assert finished["exit_code"] == EXIT_SETUP and finished["remaining"] == 8
    assert "Not logged in" in finished["stopped"] and "ANTHROPIC_API_KEY" in finished["stopped"] \
        and "/login" in finished["stopped"]  # the last line says what to fix


def test_a_setup_error_lets_the_running_agents_finish_and_land(tmp_path):
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B"), ticket("C")], workers=2, hold={"A"}, script={"B": [NOT_LOGGED_IN]})

    def finish_a_after_the_halt(kind, ticket_id, **data):
        original(kind, ticket_id, **data)
        if kind == ev.TICKET_REQUEUED and ticket_id == "B":
            runner.finish("A")

    original = run.emit
    run.emit = finish_a_after_the_halt
    run.lander.emit = finish_a_after_the_halt

    assert execute(run, plan) == EXIT_SETUP
    assert states_of(store) == {"A": State.COMPLETED, "B": State.UNPROCESSED, "C": State.UNPROCESSED}
    assert [spec.ticket.id for spec in runner.started] == ["A", "B"]  # A's landing freed a worker: C did not start


def test_a_stop_signal_lets_running_agents_finish_and_starts_nothing_new(tmp_path):
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B"), ticket("C", "A")], workers=2, hold={"A", "B"})

    def signal_then_finish(kind, ticket_id, **data):
        original(kind, ticket_id, **data)
        if kind == ev.TICKET_STARTED and ticket_id == "B":
            run.stopping.on_signal(15, None)  # SIGTERM while A and B run
            runner.finish("A")  # A finishes within the grace period and lands
            runner.finish("B", cancelled=True)  # B is stopped at the deadline

    original = run.emit
    run.emit = signal_then_finish
    run.lander.emit = signal_then_finish

    assert execute(run, plan) == EXIT_INTERRUPTED
    states = states_of(store)
    assert states == {"A": State.COMPLETED, "B": State.UNPROCESSED, "C": State.UNPROCESSED}
    assert [spec.ticket.id for spec in runner.started] == ["A", "B"]  # C was unblocked but not started
    stopped = events.kinds(ev.TICKET_STOPPED)
    assert [e.ticket for e in stopped] == ["B"] and stopped[0].data["branch"] == "sage/B"
    assert runner.kept == []  # its snapshot holds its work


def test_a_second_signal_cancels_running_agents_at_once(tmp_path):
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A")], workers=1, hold={"A"})

    def on_event(kind, ticket_id, **data):
        original(kind, ticket_id, **data)
        if kind == ev.TICKET_STARTED:
            run.stopping.on_signal(2, None)
            run.stopping.on_signal(2, None)

    original = run.emit
    run.emit = on_event

    def cancel_then_report():
        runner.finish("A", cancelled=True)

    # the loop cancels the handle once the deadline (now) has passed; the fake answers then
    real_check = run._check_stop

    def check_stop():
        real_check()
        if runner.handles["A"].cancelled.is_set() and not getattr(check_stop, "done", False):
            check_stop.done = True
            cancel_then_report()

    run._check_stop = check_stop
    assert execute(run, plan) == EXIT_INTERRUPTED
    assert runner.handles["A"].cancelled.is_set()
    assert states_of(store)["A"] is State.UNPROCESSED


def when_event(run: StreamRun, lander: FakeLander, kind: str, ticket_id: str, then: Any) -> None:
    """Call `then()` right after the run emits event `kind` of ticket `ticket_id`."""
    original = run.emit

    def on_event(event_kind, event_ticket, **data):
        original(event_kind, event_ticket, **data)
        if event_kind == kind and event_ticket == ticket_id:
            then()

    run.emit = on_event
    lander.emit = on_event


def test_a_landing_that_unblocks_nothing_frees_its_worker_into_the_spare_slot(tmp_path):
    # A and B run; A unblocks nothing, so C starts in the spare slot while A lands
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B"), ticket("C")], workers=2, hold={"B"})
    when_event(run, lander, ev.TICKET_LANDED, "C", lambda: runner.finish("B"))
    assert execute(run, plan) == EXIT_OK
    slots = {spec.ticket.id: spec.slot for spec in runner.started}
    assert slots == {"A": 0, "B": 1, "C": 2}  # C in the spare slot: A's is busy until A has landed
    assert runner.journal.index("start C") < runner.journal.index("land A")
    assert states_of(store) == dict.fromkeys("ABC", State.COMPLETED)


def test_a_worker_whose_agents_are_done_starts_the_next_ticket_while_the_work_is_committed(tmp_path):
    # one worker; A's work takes a while to commit (a big snapshot) and unblocks nothing: B starts meanwhile
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A", priority="P0"), ticket("B")],
                                                        workers=1)
    runner.agents_done, runner.hold_commit = True, {"A"}
    when_event(run, lander, ev.TICKET_STARTED, "B", lambda: runner.commit("A"))
    late = threading.Timer(5.0, lambda: runner.held and runner.commit("A"))  # B never started: fail, not hang
    late.start()
    try:
        assert execute(run, plan) == EXIT_OK
    finally:
        late.cancel()
    assert runner.journal.index("start B") < runner.journal.index("committed A") < runner.journal.index("land A")
    assert [spec.worker for spec in runner.started] == [0, 0]
    assert states_of(store) == dict.fromkeys("AB", State.COMPLETED)


def test_a_worker_whose_ticket_unblocks_another_waits_for_its_landing(tmp_path):
    # A unblocks C: A's worker is kept for C (started once A has landed), not given to B before
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A", priority="P0"), ticket("B", priority="P2"), ticket("C", "A", priority="P0")],
        workers=1)
    runner.agents_done = True
    assert execute(run, plan) == EXIT_OK
    assert runner.journal[:3] == ["start A", "land A", "start C"]
    assert states_of(store) == dict.fromkeys("ABC", State.COMPLETED)


def test_the_interactive_skip_and_quit_answers(tmp_path):
    answers = iter(["skip", "quit"])
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A", priority="P0"), ticket("B", priority="P1"), ticket("C", "A")], workers=1,
        confirm=lambda t: next(answers))

    assert execute(run, plan) == EXIT_OK  # quitting by answer is not an interruption
    assert runner.started == []
    assert states_of(store) == dict.fromkeys("ABC", State.UNPROCESSED)
    assert any("skipped A" in e.data.get("text", "") for e in events.kinds(ev.MESSAGE))


@pytest.mark.parametrize("workers", [1, 3])
def test_never_more_attempts_at_once_than_workers(tmp_path, workers):
    tickets = [ticket(f"T{i}") for i in range(6)]
    run, plan, runner, lander, events, store = make_run(tmp_path, tickets, workers=workers)
    running: set[str] = set()
    peak = 0
    original = run.emit

    def on_event(kind, ticket_id, **data):
        nonlocal peak
        original(kind, ticket_id, **data)
        if kind == ev.TICKET_STARTED:
            running.add(ticket_id)
            peak = max(peak, len(running))
        if kind == ev.AGENT_FINISHED:
            running.discard(ticket_id)

    run.emit = on_event
    assert execute(run, plan) == EXIT_OK
    assert peak <= workers and {spec.worker for spec in runner.started} <= set(range(workers))
    assert len(lander.landed) == 6


def test_a_setup_error_after_a_cost_halt_is_what_the_run_ends_with(tmp_path):
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B")], workers=2, script={"B": [NOT_LOGGED_IN]}, max_cost_usd=0.4)

    assert execute(run, plan) == EXIT_SETUP
    stopped = events.kinds(ev.RUN_FINISHED)[-1].data["stopped"]
    assert "Not logged in" in stopped and "ANTHROPIC_API_KEY" in stopped  # not only "--max-cost"
    assert states_of(store) == {"A": State.COMPLETED, "B": State.UNPROCESSED}


def _blocked_lines(events) -> list[str]:
    return [e.data["text"] for e in events.kinds(ev.MESSAGE) if "not started: blocked by" in e.data.get("text", "")]


def test_a_ticket_blocked_by_a_skipped_one_says_skipped_not_deferred(tmp_path):
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("C", "A")], workers=1, confirm=lambda t: "skip")
    assert execute(run, plan) == EXIT_OK
    assert _blocked_lines(events) == ["C not started: blocked by A (skipped)"]


def test_a_ticket_blocked_by_an_interrupted_one_says_interrupted_not_deferred(tmp_path):
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A"), ticket("C", "A")], workers=1,
                                                        hold={"A"})

    def on_event(kind, ticket_id, **data):
        original(kind, ticket_id, **data)
        if kind == ev.TICKET_STARTED:
            run.stopping.on_signal(15, None)
            runner.finish("A", cancelled=True)

    original = run.emit
    run.emit = on_event
    assert execute(run, plan) == EXIT_INTERRUPTED
    assert _blocked_lines(events) == ["C not started: blocked by A (interrupted)"]


def test_the_last_line_counts_remaining_tickets_as_the_live_view_does(tmp_path):
    from sage_stream.engine.display import RunView

    failing = AgentResult(success=False, error_kind="other", message="it broke")
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B", "A"), ticket("C")], workers=1, script={"A": [failing]})
    meta = {tid: {"title": tid, "estimate": 1.0} for tid in plan.pending()}
    assert run.execute(plan, meta, plan.ready(), None) == EXIT_DEFERRED
    view = RunView()
    for event in events.seen:
        view.apply(event)
    (finished,) = events.kinds(ev.RUN_FINISHED)
    assert finished.data["remaining"] == view.remaining == 1  # B; A is counted as deferred, not remaining too


def test_landings_wait_for_a_clean_checkout_while_the_loop_goes_on(tmp_path):
    """The target's checkout has uncommitted changes: finished work waits, queued; other
    agents' results are still taken in, and everything lands once the checkout is clean."""
    run, plan, runner, lander, events, store = make_run(
        tmp_path, [ticket("A"), ticket("B"), ticket("C", "A")], workers=2, hold={"B"})
    lander.dirty_looks = 10**6

    def on_look():  # while A waits, B finishes and is taken in; then the checkout is clean
        if "waits B" in runner.journal:
            lander.dirty_looks = 0
        elif runner.journal.count("look") == 1:
            runner.finish("B")

    lander.on_look = on_look
    assert execute(run, plan) == EXIT_OK
    journal = runner.journal
    assert journal.index("waits A") < journal.index("waits B") < journal.index("land A") < journal.index("land B")
    assert journal.index("land A") < journal.index("start C")
    assert sorted(lander.landed) == ["A", "B", "C"]
    assert states_of(store) == {"A": State.COMPLETED, "B": State.COMPLETED, "C": State.COMPLETED}
    assert lander.queue.entries() == []


def test_a_stop_while_landings_wait_leaves_them_queued_for_the_next_run(tmp_path):
    run, plan, runner, lander, events, store = make_run(tmp_path, [ticket("A"), ticket("C", "A")], workers=1)
    lander.dirty_looks = 10**6
    lander.on_look = lambda: run.stopping.requested or run.stopping.on_signal(15, None)
    assert execute(run, plan) == EXIT_INTERRUPTED
    assert lander.landed == [] and [entry.ticket for entry in lander.queue.entries()] == ["A"]
    assert states_of(store) == {"A": State.UNPROCESSED, "C": State.UNPROCESSED}
    (requeued,) = events.kinds(ev.TICKET_REQUEUED)
    assert requeued.data["category"] == "target_dirty"


@pytest.mark.parametrize("change, frees", [
    ({}, True),
    ({"result": AgentResult(success=False, summary="", error_kind="rate_limit")}, False),  # may pause the run
    ({"result": AgentResult(success=False, summary="", error_kind="auth")}, False),  # may halt it
    ({"exit": AgentExit(outcome="timeout", returncode=None, duration_s=1.0, last_line="", error=None, pid=None)},
     False),
    ({"cancelled": True}, False),
    ({"suspected": [".git/hooks/pre-commit"]}, False),  # it may have to run alone
    ({"moved_refs": ["the agent moved refs/heads/main"]}, False),
])
def test_only_a_ticket_that_looks_landable_frees_its_worker_before_its_outcome(change, frees):
    from dataclasses import replace

    from sage_stream.engine.local_runner import looks_landable

    exit = AgentExit(outcome="exited", returncode=0, duration_s=1.0, last_line="", error=None, pid=None)
    work = TicketWork(exit=exit, result=OK, turn_started=0.0)
    assert looks_landable(replace(work, **change)) is frees

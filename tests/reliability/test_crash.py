"""kill -9 anywhere, then rerun: every ticket lands exactly once and nothing is lost.

Default run: five fixed sequences of two kills (ten kill points over dispatch, agent run,
commit queue, landing, index writes and the recovery of the kill before), plus one run
of kills at random times. With `-m slow`: 70
seeded sequences drawn from a calibration trace (at least 50 distinct kill points) and
ten random-time runs. The harness and the invariants it checks are in crash_harness.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .crash_harness import (
    CATEGORIES,
    CATEGORY_OF,
    Kill,
    Outcome,
    calibrate,
    kills_for_seed,
    new_backlog_repo,
    run_kill_sequence,
    run_random_kills,
)
from .support import report

FAST_SEQUENCES = {  # each kill of a sequence is reached by the run after the kill before it
    "dispatch-then-index-write": [Kill("after_start_edit", 2), Kill("before_replace:index", 5)],
    "agent-then-queue": [Kill("agent_running", 3), Kill("before_replace:queue", 2)],
    "landing-before-then-after-the-ref-moves": [Kill("after_commit_tree", 2), Kill("after_update_ref", 1)],
    "queued-then-recovery-landing": [Kill("after_queue_put", 2), Kill("recovery_landed", 1)],
    "started-then-recovery-release": [Kill("after_start_edit", 3), Kill("recovery_released", 1)],
}
SLOW_SEEDS = range(70)
SLOW_RANDOM_SEEDS = range(10)
MIN_DISTINCT_KILLS = 50

_slow_outcomes: dict[int, Outcome] = {}


@pytest.mark.parametrize("kills", FAST_SEQUENCES.values(), ids=FAST_SEQUENCES.keys())
def test_kill_then_rerun_lands_every_ticket_exactly_once(tmp_path: Path, kills: list[Kill]) -> None:
    outcome = run_kill_sequence(new_backlog_repo(tmp_path / "repo"), kills)
    assert outcome.kills_done == [kill.spec for kill in kills]  # every kill happened where it was meant to


def test_kills_at_random_times_lose_nothing(tmp_path: Path) -> None:
    outcome = run_random_kills(new_backlog_repo(tmp_path / "repo", slowness=3), seed=7, kills=2, window_s=2.0)
    assert outcome.kills_done  # at least one kill came while the run was going


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return calibrate(tmp_path_factory.mktemp("calibration"))


@pytest.mark.slow
def test_calibration_reaches_every_part_of_a_run(trace: list[str]) -> None:
    reached = {CATEGORY_OF.get(point) for point in trace}
    assert reached >= set(CATEGORIES) - {"recovery"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_seeded_kill_sequence(tmp_path: Path, trace: list[str], seed: int) -> None:
    kills = kills_for_seed(seed, trace)
    _slow_outcomes[seed] = run_kill_sequence(new_backlog_repo(tmp_path / "repo"), kills)
    report("crash", seed=seed, kills=[kill.spec for kill in kills], **vars(_slow_outcomes[seed]))


@pytest.mark.slow
def test_seeded_kills_cover_at_least_50_points_in_every_part_of_a_run() -> None:
    if len(_slow_outcomes) < len(SLOW_SEEDS):
        pytest.skip("needs every test_seeded_kill_sequence of this session")
    done = [spec for outcome in _slow_outcomes.values() for spec in outcome.kills_done]
    distinct = set(done)
    assert len(distinct) >= MIN_DISTINCT_KILLS, sorted(distinct)
    by_category = {CATEGORY_OF[spec.split("#")[0]] for spec in distinct}
    assert by_category == set(CATEGORIES), by_category
    report("crash-summary", kills=len(done), distinct=len(distinct), sequences=len(_slow_outcomes),
            runs=sum(outcome.runs for outcome in _slow_outcomes.values()))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_RANDOM_SEEDS)
def test_seeded_random_time_kills(tmp_path: Path, seed: int) -> None:
    outcome = run_random_kills(new_backlog_repo(tmp_path / "repo", slowness=4), seed=seed, kills=3)
    report("random-kill", seed=seed, **vars(outcome))

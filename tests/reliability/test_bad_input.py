"""Bad input never gets a traceback, always a message naming the file, and never changes
the file: the malformed-index corpus through the commands that load an index, and the
loader fuzzed with hypothesis (near-valid indexes with one mutation, arbitrary JSON, text
cut or corrupted at a random byte, random bytes).

Default: a few hundred generated documents. `-m slow`: over 10,000.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sage_stream.cli import run
from sage_stream.graph.dependency_graph import graph_findings
from sage_stream.tickets.store import IndexLoadError, load_index

from .support import make_repo, report

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
REJECTED_AT_LOAD = sorted(name for name, case in EXPECTED.items()
                          if case["exit_code"] == 1 and "invalid_schema" in case.get("codes", ["invalid_schema"]))
FAST_EXAMPLES = 120
SLOW_EXAMPLES = 3000  # per strategy: 4 strategies, 12,000 documents


# ---------------------------------------------------------------- the corpus through the commands


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    state = {}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root) / name
            state[str(path.relative_to(directory))] = (path.lstat().st_mtime_ns,
                                                       path.read_bytes() if path.is_file() else None)
    return state


@pytest.fixture(scope="module")
def corpus_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("corpus") / "repo")


@pytest.mark.parametrize("name", REJECTED_AT_LOAD)
@pytest.mark.parametrize("command", [["stream", "--auto", "--parallel=2"], ["ready"], ["plan"], ["tickets"]],
                         ids=["stream", "ready", "plan", "tickets"])
def test_a_malformed_index_is_a_message_not_a_traceback_and_stays_as_it_was(
        corpus_repo: Path, capsys: pytest.CaptureFixture[str], name: str, command: list[str]) -> None:
    case = corpus_repo / command[0] / name
    index = case / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    source = CORPUS / name
    if source.is_dir():
        shutil.copytree(source, index)
    else:
        shutil.copyfile(source, index)
    before = snapshot(case)
    capsys.readouterr()
    code = run([*command, "--index", str(index)])  # in-process: any exception but SageError fails the test
    err = capsys.readouterr().err
    assert code == 1, err
    assert str(index) in err and err.startswith("error: ")
    assert snapshot(case) == before  # nothing written, locked or created


# ---------------------------------------------------------------- fuzzing the loader


def valid_ticket(number: int) -> dict[str, Any]:
    return {"id": f"FZ-{number}", "title": f"Fuzz {number}", "state": "UNPROCESSED", "priority": "P1",
            "type": "implementation", "validation_type": "generic",
            "dependencies": [f"FZ-{number - 1}"] if number > 1 else [], "files": ["src/**"],
            "command": ["python3", "-c", "pass"], "docs": {"spec": "docs/spec.md"},
            "git": {"branch": f"sage/FZ-{number}", "commits": []}, "estimate": 2}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
KEYS = ["id", "title", "state", "priority", "type", "validation_type", "dependencies", "files", "command", "docs",
        "git", "estimate", "attempts", "not_before", "parent", "children", "tasks", "validation_config",
        "state_history", "defer_reason", "allow_empty", "unknown_key"]
ODD_VALUES = st.sampled_from([None, "", " ", "../x", "/etc/passwd", "a\nb", "$(touch pwned)", "`id`", "x; rm -rf /",
                              "\u202e", "\x00", -1, 0, 1e308, 2**70, True, [], {}, [None], ["FZ-1", "FZ-1"],
                              "COMPLETED", "IN_PROGRESS", "2026-13-45T99:00:00Z", "P9", "Epic"])


@st.composite
def near_valid_index(draw: st.DrawFn) -> bytes:
    """A valid index with one to three mutations: a key removed, a value replaced, a
    ticket duplicated or replaced, or the top level changed."""
    tickets: list[Any] = [valid_ticket(number) for number in range(1, draw(st.integers(1, 5)) + 1)]
    document: dict[str, Any] = {"version": "1.0", "tickets": tickets}
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "replace", "odd", "duplicate", "ticket", "top"]))
        objects = [item for item in tickets if isinstance(item, dict)]
        target = draw(st.sampled_from(objects)) if objects else {}
        key = draw(st.sampled_from(KEYS))
        if kind == "drop":
            target.pop(key, None)
        elif kind == "replace":
            target[key] = draw(json_values)
        elif kind == "odd":
            target[key] = draw(ODD_VALUES)
        elif kind == "duplicate" and objects:
            tickets.append(dict(target))
        elif kind == "ticket" and tickets:
            tickets[draw(st.integers(0, len(tickets) - 1))] = draw(json_values)
        else:
            document[draw(st.sampled_from(["version", "tickets", "extra"]))] = draw(json_values)
    return json.dumps(document, indent=draw(st.sampled_from([None, 2]))).encode()


@st.composite
def damaged_text(draw: st.DrawFn) -> bytes:
    """A valid index as text, cut short or with bytes changed, inserted or deleted."""
    data = bytearray(json.dumps({"version": "1.0", "tickets": [valid_ticket(1), valid_ticket(2)]}, indent=2).encode())
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        if kind == "cut":
            del data[position:]
        elif kind == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.sampled_from([b"{", b"]", b",", b"\"", b"\\", b"\xff", b"\x00", b"NaN"]))
        elif position < len(data):
            del data[position]
    return bytes(data)


arbitrary_json = json_values.map(lambda value: json.dumps(value).encode())
random_bytes = st.binary(max_size=600)

_counts: dict[str, int] = {}


def load_like_sage_does(path: Path, data: bytes, strategy: str) -> None:
    """load_index, then the graph checks `sage stream` runs: a LoadedIndex or an
    IndexLoadError naming the file, nothing else; and the file is never written."""
    _counts[strategy] = _counts.get(strategy, 0) + 1
    path.write_bytes(data)
    before = path.stat().st_mtime_ns
    try:
        loaded = load_index(path)
    except IndexLoadError as error:
        assert str(path) in error.message
        assert error.findings and all(finding.message for finding in error.findings)
    else:
        graph_findings(loaded.tickets, file=str(path))
    assert path.read_bytes() == data and path.stat().st_mtime_ns == before


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


STRATEGIES = {"near_valid": near_valid_index(), "damaged_text": damaged_text(), "arbitrary_json": arbitrary_json,
              "random_bytes": random_bytes}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fuzzed_indexes_load_or_fail_with_a_message(tmp_path: Path, strategy: str) -> None:
    path = tmp_path / "index.json"

    @fuzz_settings(FAST_EXAMPLES)
    @given(STRATEGIES[strategy])
    def check(data: bytes) -> None:
        load_like_sage_does(path, data, strategy)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fuzzed_indexes_load_or_fail_with_a_message_at_scale(tmp_path: Path, strategy: str) -> None:
    path = tmp_path / "index.json"
    start = _counts.get(strategy + "-slow", 0)

    @fuzz_settings(SLOW_EXAMPLES)
    @given(STRATEGIES[strategy])
    def check(data: bytes) -> None:
        load_like_sage_does(path, data, strategy + "-slow")

    check()
    generated = _counts[strategy + "-slow"] - start
    assert generated >= SLOW_EXAMPLES * 0.9, generated  # hypothesis really generated them
    report("fuzz", strategy=strategy, documents=generated)

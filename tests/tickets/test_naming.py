"""A ticket's names in git (branch, trailer) and the docs it lists."""

from __future__ import annotations

import pytest

from sage_stream.errors import SageError
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.naming import BRANCH_PREFIX, TRAILER, ticket_branch


def make(**fields) -> Ticket:
    return Ticket.model_validate({"id": "DOC-1", "title": "Docs", "state": "UNPROCESSED", **fields})


def test_a_ticket_works_on_its_own_branch_and_lands_with_its_trailer() -> None:
    assert ticket_branch("AUTH-001") == "sage/AUTH-001"
    assert ticket_branch("AUTH-001").startswith(BRANCH_PREFIX)
    assert TRAILER == "Sage-Ticket"


@pytest.mark.parametrize("unsafe", ["../x", "a b", "", "x.lock"])
def test_an_unsafe_id_names_no_branch(unsafe: str) -> None:
    with pytest.raises(SageError, match="cannot name a branch"):
        ticket_branch(unsafe)


def test_doc_paths_are_the_set_ones_in_spec_plan_tasks_breakdown_order() -> None:
    ticket = make(docs={"breakdown": "b.md", "spec": "s.md", "tasks": None, "plan": "", "extra": "e.md"})
    assert ticket.doc_paths() == ["s.md", "b.md"]


def test_no_docs_no_paths() -> None:
    assert make().doc_paths() == []
    assert make(docs={}).doc_paths() == []

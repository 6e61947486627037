"""`--reuse-sessions`: a ticket whose only dependency landed in this run continues that
agent session, and a session is continued by one ticket at most."""

from __future__ import annotations

from sage_stream.engine.sessions import Continuation, SessionBook, continuation_note
from sage_stream.tickets.models import Ticket


def ticket(tid: str, *deps: str, title: str | None = None) -> Ticket:
    return Ticket.model_validate({
        "id": tid, "title": title or f"title {tid}", "state": "UNPROCESSED", "priority": "P2",
        "type": "implementation", "validation_type": "generic", "dependencies": list(deps),
    })


def book_with_a_landed(*, enabled: bool = True) -> SessionBook:
    book = SessionBook(enabled=enabled)
    book.landed_with(ticket("A"), "session-a", slot=1)
    return book


def test_a_ticket_whose_only_dependency_landed_with_a_session_continues_it() -> None:
    assert book_with_a_landed().for_ticket(ticket("B", "A")) == Continuation(
        ticket="A", title="title A", session_id="session-a", slot=1)


def test_nothing_is_continued_unless_enabled() -> None:
    assert book_with_a_landed(enabled=False).for_ticket(ticket("B", "A")) is None


def test_a_ticket_without_dependencies_starts_afresh() -> None:
    assert book_with_a_landed().for_ticket(ticket("B")) is None


def test_a_ticket_with_two_dependencies_starts_afresh_even_when_both_landed() -> None:
    book = book_with_a_landed()
    book.landed_with(ticket("C"), "session-c", slot=2)
    assert book.for_ticket(ticket("B", "A", "C")) is None


def test_a_dependency_that_did_not_land_in_this_run_offers_nothing() -> None:
    assert book_with_a_landed().for_ticket(ticket("B", "Z")) is None


def test_a_dependency_that_landed_without_a_session_offers_nothing() -> None:
    book = SessionBook(enabled=True)
    for tid, session in (("A", None), ("C", ""), ("D", 42)):
        book.landed_with(ticket(tid), session, slot=0)
    assert [book.for_ticket(ticket(f"{tid}2", tid)) for tid in ("A", "C", "D")] == [None, None, None]


def test_a_session_is_continued_by_one_ticket_only() -> None:
    book = book_with_a_landed()
    continuation = book.for_ticket(ticket("B", "A"))
    assert continuation is not None
    book.continue_with(continuation, "B")
    assert book.for_ticket(ticket("C", "A")) is None  # two would fork it
    assert book.for_ticket(ticket("B", "A")) == continuation  # B itself, started again, still may


def test_the_note_names_the_earlier_ticket_and_its_title_on_one_line() -> None:
    note = continuation_note(Continuation(ticket="A", title="Add  the\n  parser\tfirst", session_id="s", slot=0))
    assert "## Continuing from A" in note
    assert 'continues from ticket A ("Add the parser first")' in note
    assert "no longer applies" in note  # the earlier ticket's request is over

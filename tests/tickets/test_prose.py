"""Ticket ids that name files, logs and branches."""

import pytest

from sage_stream.tickets.prose import SAGE_ID, is_safe_id


@pytest.mark.parametrize("ticket_id", ["TKT-001", "auth.v2-7", "A_1"])
def test_plain_ids_are_safe(ticket_id):
    assert is_safe_id(ticket_id)


@pytest.mark.parametrize("ticket_id", ["../x", "/abs", "a/b", "TKT-1\n", "x.lock", "a..b", "-rf", "sp ace", ""])
def test_ids_that_could_escape_or_mislead_are_not_safe(ticket_id):
    assert not is_safe_id(ticket_id)


def test_sage_format_does_not_accept_a_trailing_newline():
    assert SAGE_ID.fullmatch("TKT-1")
    assert not SAGE_ID.fullmatch("TKT-1\n")

"""The fields of every ticket that the checks, the graph and the analysis read, as columns.

At 100,000 tickets the models take 300 MB, and every pass over them pays a cache miss
or two per ticket (15-20 ms a pass, more right after loading). So the fields are read
once, all in one C-level pass (every field of each model, then one transpose: 0.1-0.15 s
at 100k), into one tuple per field in index order. Everything after works on those tuples:
tests over a whole column (`set(priorities) <= valid`, `all(map(isfinite, estimates))`)
cost a few milliseconds, and the graph works on positions in them.

Models fresh from validation also say which keys the file gave them
(`model_fields_set`): a field that no ticket was given holds its default everywhere
and is not read at all (`Columns.of(tickets, as_validated=True)`). In a typical index
that is half the fields (tasks, docs, files, parent, children, unknown keys).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import compress, count, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any, NamedTuple

from sage_stream.tickets.models import Docs, State, Ticket

_FIELDS = ("id", "title", "state", "priority", "type", "validation_type", "tasks", "docs", "files",
           "estimate", "__pydantic_extra__", "dependencies", "parent", "children", "not_before", "description")
"""The attributes read, in the order of the Columns fields after `tickets`
(`__pydantic_extra__` is what `model_extra` returns: the unknown keys)."""

_EXTRAS = "__pydantic_extra__"
_REQUIRED = frozenset(name for name, info in Ticket.model_fields.items() if info.is_required())


class Columns(NamedTuple):
    """One tuple per field, in index order: `ids[p]` is `tickets[p].id`."""

    tickets: Sequence[Ticket]
    ids: Sequence[str]
    titles: Sequence[str]
    states: Sequence[State]
    priorities: Sequence[str | None]
    types: Sequence[str | None]
    validation_types: Sequence[str | None]
    tasks: Sequence[list[Any]]
    docs: Sequence[Docs | None]
    files: Sequence[list[str]]
    estimates: Sequence[float]
    extras: Sequence[dict[str, Any] | None]  # unknown keys (`model_extra`), e.g. checkpoint_id
    dependencies: Sequence[list[str]]
    parents: Sequence[str | None]
    children: Sequence[list[str]]
    not_befores: Sequence[str | None]
    descriptions: Sequence[str | None]

    @classmethod
    def of(cls, tickets: Sequence[Ticket], *, as_validated: bool = False) -> Columns:
        """The columns of `tickets`. `as_validated`: the models are as validation made them
        (`tickets.store.read_index`), no default list was changed in place since, so a field
        that no ticket's `model_fields_set` names is its default in every ticket: such a
        column is that default, repeated, and the models are not read for it."""
        if not tickets:
            return cls(tickets, *[()] * len(_FIELDS))
        if not as_validated:
            return cls(tickets, *zip(*map(attrgetter(*_FIELDS), tickets), strict=True))
        given = set().union(*map(attrgetter("__pydantic_fields_set__"), tickets))
        read = [name for name in _FIELDS if name in _REQUIRED or name in given]
        # straight from each model's __dict__, where pydantic keeps the field values:
        # 20-25% faster than attribute access, which looks every name up on the class first
        rows = map(itemgetter(*read), map(attrgetter("__dict__"), tickets))
        values = dict(zip(read, zip(*rows, strict=True)))
        if not given <= Ticket.model_fields.keys():  # unknown keys somewhere
            values[_EXTRAS] = tuple(map(attrgetter(_EXTRAS), tickets))
        size = len(tickets)
        return cls(tickets, *(values[name] if name in values else (_default(name),) * size
                              for name in _FIELDS))

    def at(self, positions: Sequence[int]) -> Columns:
        """The columns of the tickets at these positions (0-based), in that order."""
        return Columns._make(tuple(map(column.__getitem__, positions)) for column in self)

    def unfinished(self) -> Iterator[int]:
        """Positions (1-based) of the tickets that are not COMPLETED."""
        return compress(count(1), map(is_not, self.states, repeat(State.COMPLETED)))


def _default(name: str) -> Any:
    """What a ticket holds in a field the file did not give it (one shared object: the
    columns are only read)."""
    if name == _EXTRAS:
        return {}  # extra="allow": a ticket without unknown keys has an empty dict
    return Ticket.model_fields[name].get_default(call_default_factory=True)

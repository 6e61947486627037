"""What several commands share: loading an index whose graph is sound enough to use."""

from __future__ import annotations

from pathlib import Path

from sage_stream.graph.dependency_graph import require_sound_graph
from sage_stream.tickets.store import LoadedIndex, load_index, resolve_index_path


def load_sound_index(index_option: str | Path | None) -> LoadedIndex:
    """The index; a SageError pointing to `sage validate` if its dependency graph has errors."""
    loaded = load_index(resolve_index_path(index_option))
    require_sound_graph(loaded.tickets, file=str(loaded.path))
    return loaded

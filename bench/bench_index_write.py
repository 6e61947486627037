"""One index write, in-process: `ticket_state.apply` of one ticket's state change.

    python bench/bench_index_write.py [--sizes 200,10000,100000] [--writes 12]

Each index is bench/gen_index.py's, written as Sage writes it (indent 2). sage_stream is
the running python's install: run it with another install's python to compare. One store makes
`--writes` writes to different tickets; reported are the first (it finds each ticket's text
in the file) and the median of the rest (a splice of the changed ticket), in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sage_stream.engine import ticket_state  # the running python's install (not this checkout's, for A/B)
from sage_stream.tickets.store import IndexStore

sys.path.append(str(Path(__file__).resolve().parent))
from gen_index import generate_tickets  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,10000,100000")
    parser.add_argument("--writes", type=int, default=12)
    args = parser.parse_args()
    print("| index tickets | first write (ms) | later writes, median (ms) |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="sage-bench-write-") as tmp:
        for size in (int(size) for size in args.sizes.split(",")):
            tickets = generate_tickets(size)
            path = Path(tmp) / f"{size}.json"
            path.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2) + "\n", encoding="utf-8")
            store = IndexStore(path)
            ids = [ticket["id"] for ticket in tickets if ticket["state"] == "UNPROCESSED"][: args.writes]
            times = []
            for ticket_id in ids:
                began = time.perf_counter()
                ticket_state.apply(store, {ticket_id: ticket_state.release(count_attempt=True)})
                times.append(time.perf_counter() - began)
            print(f"| {size:,} | {1000 * times[0]:.1f} | {1000 * statistics.median(times[1:]):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

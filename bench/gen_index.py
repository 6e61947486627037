"""Generate a realistic N-ticket Sage index for benchmarks.

Shape: a layered DAG (about sqrt(N) layers), each ticket depending on about 1.5
tickets of earlier layers (mostly the layer just before), the first ~30% of the
tickets COMPLETED, the rest UNPROCESSED, priorities P0-P4, estimates 1-30 minutes.
One ticket per line, about 200 bytes per ticket: 100k tickets is about 20 MB.
`--shuffled` writes the same tickets in random order (most dependencies then come after
their dependents, as they never do in a Sage file grown by appending).

    python bench/gen_index.py 100000 /tmp/index-100k.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

TYPES = ("implementation", "enhancement", "bugfix", "refactor")
VALIDATION_TYPES = ("generic", "integration", "content")
VERBS = ("Add", "Fix", "Test", "Wire", "Parse", "Render")
NOUNS = ("login", "sessions", "rate limit", "export", "search", "billing", "audit log", "cache")
COMPLETED_SHARE = 0.3


def ticket_id(number: int) -> str:
    return f"TKT-{number:06d}"


def layer_sizes(count: int, rng: random.Random) -> list[int]:
    """Split `count` tickets into about sqrt(count) layers of uneven width."""
    layers = max(1, round(math.sqrt(count)))
    weights = [rng.uniform(0.5, 1.5) for _ in range(layers)]
    total = sum(weights)
    sizes = [max(1, int(count * weight / total)) for weight in weights]
    sizes[-1] += count - sum(sizes)
    while sizes[-1] < 1:  # rounding overshoot: take it back from the widest layer
        widest = sizes.index(max(sizes[:-1]))
        sizes[widest] -= 1
        sizes[-1] += 1
    return sizes


def dependency_count(rng: random.Random) -> int:
    """0..3 dependencies, mean 1.5."""
    return rng.choices((0, 1, 2, 3), weights=(0.15, 0.35, 0.35, 0.15))[0]


def generate_tickets(count: int, *, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    tickets: list[dict] = []
    layer_start = 0
    previous_start = 0
    completed_until = int(count * COMPLETED_SHARE)
    for size in layer_sizes(count, rng):
        for offset in range(size):
            number = layer_start + offset
            dependencies: list[str] = []
            if layer_start > 0:
                wanted = dependency_count(rng)
                picks = set()
                for _ in range(wanted):
                    # mostly the previous layer, sometimes anything earlier
                    low = previous_start if rng.random() < 0.8 else 0
                    picks.add(rng.randrange(low, layer_start))
                dependencies = [ticket_id(pick) for pick in sorted(picks)]
            tickets.append({
                "id": ticket_id(number),
                "title": f"{rng.choice(VERBS)} {rng.choice(NOUNS)} {number}",
                "state": "COMPLETED" if number < completed_until else "UNPROCESSED",
                "priority": f"P{rng.choice((0, 1, 1, 2, 2, 2, 3, 4))}",
                "type": rng.choice(TYPES),
                "validation_type": rng.choice(VALIDATION_TYPES),
                "dependencies": dependencies,
                "estimate": rng.randint(1, 30),
            })
        previous_start = layer_start
        layer_start += size
    return tickets


def render_index(tickets: list[dict]) -> str:
    lines = [json.dumps(ticket, ensure_ascii=False) for ticket in tickets]
    body = ",\n".join(lines)
    return f'{{"version": "1.0", "tickets": [\n{body}\n]}}\n'


def write_index(path: Path, count: int, *, seed: int = 7, shuffled: bool = False) -> Path:
    tickets = generate_tickets(count, seed=seed)
    if shuffled:
        random.Random(seed).shuffle(tickets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_index(tickets), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shuffled", action="store_true", help="write the tickets in random order")
    args = parser.parse_args()
    write_index(args.path, args.count, seed=args.seed, shuffled=args.shuffled)
    size = args.path.stat().st_size
    per_ticket = size / max(args.count, 1)
    print(f"{args.path}: {args.count} tickets, {size / 1e6:.1f} MB, {per_ticket:.0f} bytes/ticket")


if __name__ == "__main__":
    main()

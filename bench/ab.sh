#!/usr/bin/env bash
# Interleaved A/B of one bench_stream.py measure between two checkouts, each with its own
# .venv (python3 -m venv .venv && .venv/bin/pip install -e .): A, B, A, B... so that both
# see the same machine. Prints each run's output under a header naming the checkout.
#
#   bench/ab.sh OLD_CHECKOUT NEW_CHECKOUT ROUNDS overhead --tickets 500 --runs 1
set -euo pipefail
(( $# >= 4 )) || { echo "usage: $0 CHECKOUT_A CHECKOUT_B ROUNDS MEASURE [ARGS...]" >&2; exit 2; }
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); rounds=$3; shift 3
for round in $(seq 1 "$rounds"); do
  for checkout in "$a" "$b"; do
    echo "== round $round: $checkout ($(git -C "$checkout" rev-parse --short HEAD)), load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%H:%M:%S) UTC"
    (cd "$checkout" && .venv/bin/python bench/bench_stream.py "$@")
  done
done

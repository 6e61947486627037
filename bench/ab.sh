#!/usr/bin/env bash
# Interleaved A/B of one bench_stream.py measure between two installs of sage-stream: the
# same harness (this checkout's bench/) runs `python -m sage_stream` with each python in
# turn - A, B, A, B... - so that both see the same machine.
#
#   bench/ab.sh OLD_CHECKOUT/.venv/bin/python .venv/bin/python 3 overhead --tickets 500 --runs 1 --no-baseline
set -euo pipefail
(( $# >= 4 )) || { echo "usage: $0 PYTHON_A PYTHON_B ROUNDS MEASURE [ARGS...]" >&2; exit 2; }
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }  # not realpath: a venv's python is a link
a=$(absolute "$1"); b=$(absolute "$2"); rounds=$3; shift 3
cd "$(dirname "$0")/.."
for round in $(seq 1 "$rounds"); do
  for python in "$a" "$b"; do
    where=$(cd / && "$python" -c 'import sage_stream, pathlib; print(pathlib.Path(sage_stream.__file__).parent.parent)')
    echo "== round $round: $where ($(git -C "$where" rev-parse --short HEAD 2>/dev/null || echo '?')), load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%H:%M:%S) UTC"
    "$python" bench/bench_stream.py "$@"
  done
done

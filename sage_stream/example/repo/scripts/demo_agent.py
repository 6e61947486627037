"""The offline stand-in for a coding agent used by `sage demo`.

Each example ticket's `command` runs this script in the ticket's worktree: it writes
the files that ticket asks for, after a short pause so the live view has something
to show. It never touches anything outside the current directory.
"""

import os
import sys
import time
from pathlib import Path

WORK = {
    "CALC-001": {"calc/__init__.py": '"""A tiny calculator."""\n'},
    "CALC-002": {"calc/add.py": "def add(a, b):\n    return a + b\n"},
    "CALC-003": {"calc/multiply.py": "def multiply(a, b):\n    return a * b\n"},
    "CALC-004": {"calc/parse.py": "def parse(text):\n    left, op, right = text.split()\n    return float(left), op, float(right)\n"},
    "CALC-005": {
        "calc/evaluate.py": (
            "from calc.add import add\nfrom calc.multiply import multiply\nfrom calc.parse import parse\n\n\n"
            "def evaluate(text):\n    left, op, right = parse(text)\n"
            "    return {'+': add, '*': multiply}[op](left, right)\n"
        )
    },
    "CALC-006": {"docs/usage.md": "# Usage\n\n    >>> evaluate('2 * 3')\n    6.0\n"},
    "CALC-007": {"tests/test_calc.py": "from calc.evaluate import evaluate\n\n\ndef test_add():\n    assert evaluate('1 + 2') == 3\n"},
    "CALC-008": {"CHANGELOG.md": "# Changelog\n\n- 0.1: add, multiply, parse and evaluate\n"},
}


def main() -> int:
    ticket = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    for step in range(3):
        print(f"{ticket}: step {step + 1}/3", flush=True)
        time.sleep(seconds / 3)
    for relative, text in WORK[ticket].items():
        path = Path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"{ticket}: wrote {relative}", flush=True)
    print(f"{ticket}: done ({os.environ.get('SAGE_RUN_ID', 'no run id')})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

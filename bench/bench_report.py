"""The report page of a big run: its size, sage's time to write it, Chromium's time to show it.

    python bench/bench_report.py [--tickets 2000] [--workers 8] [--runs 5] [--json]

The run record is a synthetic run's (bench/synthetic_run.py: the events a run of that many
tickets emits, folded by the engine's own RunRecord). Measured, median of `--runs`:

- render: build the model and the html from the record (what the live page costs the loop);
- in_page: the page's own time in Chromium, navigation start to the whole page parsed,
  styled and laid out (a probe script at the end forces layout and reads performance.now());
- chromium: wall time of headless Chromium loading the page offline and taking a 1400x900
  screenshot (layout and paint), start-up included; `blank` is the same for an empty page,
  so chromium - blank is the page's share of it.

Needs Debian's `chromium` for the browser figures (they are skipped without it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic_run import synthetic_run  # noqa: E402
from sage_stream.report.html import report_html  # noqa: E402
from sage_stream.report.model import build_report  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_seconds(browser: str, page: Path, shot: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="sage-bench-chromium-") as profile:
        started = time.perf_counter()
        subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1400,900", page.as_uri()], capture_output=True, check=True, timeout=120)
        return time.perf_counter() - started


PROBE = "<script>document.body.offsetHeight;document.title='T='+performance.now().toFixed(0)</script>"


def in_page_seconds(browser: str, html: str, scratch: Path) -> float:
    """Navigation start to the page parsed and laid out, as the page itself measures it."""
    probed = scratch / "probed.html"
    probed.write_text(html.replace("<script>", PROBE + "<script>", 1), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="sage-bench-chromium-") as profile:
        dom = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", probed.as_uri()],
                             capture_output=True, text=True, check=True, timeout=120).stdout
    found = re.search(r"<title>T=(\d+)</title>", dom)
    if found is None:
        raise SystemExit("the probe did not run: no time in the page's title")
    return int(found.group(1)) / 1000


def measure(tickets: int, workers: int, runs: int) -> dict[str, object]:
    record = synthetic_run(tickets, workers).record.to_json()
    renders, html = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        html = report_html(build_report(record))
        renders.append(time.perf_counter() - started)
    result: dict[str, object] = {"tickets": tickets, "workers": workers, "runs": runs,
                                 "attempts": len(record["attempts"]), "bytes": len(html.encode("utf-8")),
                                 "render_s": round(statistics.median(renders), 3)}
    browser = shutil.which("chromium")
    if browser is None:
        result["chromium"] = "not installed: browser figures skipped"
        return result
    with tempfile.TemporaryDirectory(prefix="sage-bench-report-") as scratch:
        page, blank, shot = Path(scratch) / "report.html", Path(scratch) / "blank.html", Path(scratch) / "shot.png"
        page.write_text(html, encoding="utf-8")
        blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
        pages, blanks, inside = [], [], []
        for _ in range(runs):  # interleaved: the machine's noise falls on all alike
            blanks.append(chromium_seconds(browser, blank, shot))
            pages.append(chromium_seconds(browser, page, shot))
            inside.append(in_page_seconds(browser, html, Path(scratch)))
    result.update(in_page_s=round(statistics.median(inside), 3), in_page_all_s=[round(v, 3) for v in inside],
                  chromium_s=round(statistics.median(pages), 3), blank_s=round(statistics.median(blanks), 3),
                  page_share_s=round(statistics.median(pages) - statistics.median(blanks), 3),
                  chromium_all_s=[round(value, 3) for value in pages])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.tickets, args.workers, args.runs)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>14}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

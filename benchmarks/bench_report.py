"""How big report.html is and how fast it opens, for a run of the whole shipped library.

    python benchmarks/bench_report.py [--report-dir DIR] [--loads 5] [--renders 5]

Without ``--report-dir`` it first plays the whole library against the embedded
reference SCP and SCU (``dicomconf run``, both halves, ``-n 2``) into a
temporary directory; with it, it uses that run's directory (report.json and
the pcaps).  Then:

* ``render_html`` (:mod:`dicomconf.report.html_report`: the template, a
  ladder diagram per scenario read from its pcap, the Table 9-10 matrices)
  is timed ``--renders`` times; the median is reported;
* the page's size (the goal: under 5 MB);
* the time to DOMContentLoaded in headless chromium (the goal: under 2 s):
  a copy of the page with one added script that, on ``load``, writes
  ``performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd``
  into the DOM is opened ``--loads`` times with ``--dump-dom``, each with a
  fresh profile; the median and the range are reported, with chromium's
  whole wall time per load (start-up included) beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "report"))

from browser import CHROMIUM, SKIP_REASON, dump_dom  # noqa: E402

PROBE = ('<script>window.addEventListener("load",function(){var n=performance.getEntriesByType("navigation")[0];'
         'document.body.setAttribute("data-dcl",String(n.domContentLoadedEventEnd));});</script>')
SIZE_GOAL = 5_000_000
DCL_GOAL_MS = 2000.0


def full_run(report_dir: Path) -> float:
    """Play the whole library into ``report_dir``; the wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dicomconf.cli", "run", "-n", "2", "--report-dir", str(report_dir)],
                          cwd=report_dir.parent, capture_output=True, text=True, env=env, timeout=1800)
    took = time.perf_counter() - start
    if not (report_dir / "report.json").is_file():
        sys.exit(f"the run wrote no report (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-dir", type=Path, help="an existing run's report directory")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--renders", type=int, default=5)
    args = parser.parse_args()
    from dicomconf.report.html_report import render_html

    with tempfile.TemporaryDirectory(prefix="dicomconf-bench-report-") as tmp:
        report_dir = args.report_dir
        if report_dir is None:
            report_dir = Path(tmp) / "run"
            print(f"full library run: {full_run(report_dir):.1f} s")
        document = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
        with_pcap = sum(1 for s in document["scenarios"] if s.get("pcap"))
        renders = []
        for _ in range(args.renders):
            start = time.perf_counter()
            html = render_html(document, report_dir)
            renders.append(time.perf_counter() - start)
        size = len(html.encode("utf-8"))
        ladders = html.count('<svg class="ladder"')
        arrows = html.count('<g class="arrow pdu')
        print(f"scenarios: {len(document['scenarios'])} ({with_pcap} with a pcap), ladders: {ladders}, "
              f"PDU arrows: {arrows}")
        print(f"render_html: median {statistics.median(renders):.3f} s "
              f"(min {min(renders):.3f}, max {max(renders):.3f}, {args.renders} renders)")
        print(f"size: {size / 1e6:.2f} MB ({size} bytes; goal < {SIZE_GOAL / 1e6:.0f} MB: "
              f"{'met' if size < SIZE_GOAL else 'NOT met'})")
        if CHROMIUM is None:
            print(f"DOMContentLoaded: not measured: {SKIP_REASON}")
            return
        page = report_dir / f".bench-report-{os.getpid()}.html"  # beside the pcaps, as the report is
        page.write_text(html.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
        dcl, walls = [], []
        try:
            for i in range(args.loads):
                start = time.perf_counter()
                dom = dump_dom(page, profile=Path(tmp) / f"profile-{i}")
                walls.append(time.perf_counter() - start)
                found = re.search(r'data-dcl="([0-9.]+)"', dom)
                if found is None:
                    sys.exit("the page did not record DOMContentLoaded (its script did not run?)")
                dcl.append(float(found.group(1)))
        finally:
            page.unlink(missing_ok=True)
        median = statistics.median(dcl)
        print(f"DOMContentLoaded: median {median:.0f} ms (min {min(dcl):.0f}, max {max(dcl):.0f}, {args.loads} loads; "
              f"goal < {DCL_GOAL_MS:.0f} ms: {'met' if median < DCL_GOAL_MS else 'NOT met'})")
        print(f"chromium wall time per load, start-up included: median {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()

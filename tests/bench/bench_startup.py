"""Start-up benchmark: launch -> main window first painted, from source and frozen.

Each run starts a fresh process with ``MEDVIEW_STARTUP_PROBE=1``; medview/ui/app.py
prints ``medview-startup-shown <epoch seconds>`` on the main window's first paint and
quits. The time is measured from just before the launch. The first run warms the
file cache and is reported separately; the others give the median/min/max ("warm").

    python3 -m tests.bench.bench_startup                       # source + dist/medview if built
    python3 -m tests.bench.bench_startup --runs 7 --frozen build/frozen-test/dist/medview/medview
    python3 -m tests.bench.bench_startup --xvfb               # real X11 window (xvfb-run)
    python3 -m tests.bench.bench_startup --json

Also reports two floors for context: a bare ``python -c pass`` and ``import
PySide6.QtWidgets`` + QApplication, so a loaded machine can be told from a slow app.
Not run by pytest (tests/bench is a benchmark folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 1.5
MARK = "medview-startup-shown"


def _env(xvfb: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["MEDVIEW_STARTUP_PROBE"] = "1"
    env.setdefault("MEDVIEW_HOME", tempfile.mkdtemp(prefix="medview-bench-home-"))
    if not xvfb:
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def time_launch(cmd: list[str], env: dict[str, str], timeout: float = 120.0) -> float:
    """Seconds from launch to the first paint of the main window."""
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith(MARK):
            return float(line.split()[1]) - t0
    raise RuntimeError(
        f"{' '.join(cmd)}: no '{MARK}' line (exit {p.returncode}): {p.stderr.strip()[-500:]}"
    )


def time_plain(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.time()
    subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=True)
    return time.time() - t0


def summarize(times: list[float]) -> dict[str, float]:
    warm = times[1:] or times
    return {
        "first": round(times[0], 3),
        "warm_median": round(statistics.median(warm), 3),
        "warm_min": round(min(warm), 3),
        "warm_max": round(max(warm), 3),
        "runs": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frozen", type=Path, default=ROOT / "dist" / "medview" / "medview")
    ap.add_argument("--no-source", action="store_true")
    ap.add_argument("--xvfb", action="store_true", help="real X11 window via xvfb-run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    env = _env(args.xvfb)
    prefix: list[str] = []
    if args.xvfb:
        if not shutil.which("xvfb-run"):
            print("xvfb-run not found", file=sys.stderr)
            return 2
        prefix = ["xvfb-run", "-a"]
    targets: dict[str, list[str]] = {}
    if not args.no_source:
        targets["source"] = [*prefix, sys.executable, "-m", "medview"]
    if args.frozen.exists():
        targets["frozen"] = [*prefix, str(args.frozen)]

    report: dict[str, object] = {
        "platform": "xcb (xvfb)" if args.xvfb else "offscreen",
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "target_s": TARGET_S,
    }
    floors = {
        "python -c pass": [*prefix, sys.executable, "-c", "pass"],
        "import PySide6 + QApplication": [
            *prefix,
            sys.executable,
            "-c",
            "from PySide6.QtWidgets import QApplication; QApplication([])",
        ],
    }
    report["floors"] = {
        name: round(statistics.median(time_plain(cmd, env) for _ in range(3)), 3)
        for name, cmd in floors.items()
    }
    for name, cmd in targets.items():
        times = [time_launch(cmd, env) for _ in range(max(2, args.runs))]
        report[name] = summarize(times)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"platform {report['platform']}, {report['cpus']} CPUs, load {report['loadavg']}")
        for name, t in report["floors"].items():  # type: ignore[union-attr]
            print(f"  floor  {name:32s} {t:.3f} s")
        for name in targets:
            s = report[name]
            verdict = "ok" if s["warm_median"] < TARGET_S else "over target"  # type: ignore[index]
            print(
                f"  {name:6s} launch -> window: first {s['first']:.3f} s, warm median "  # type: ignore[index]
                f"{s['warm_median']:.3f} s (min {s['warm_min']:.3f}, max {s['warm_max']:.3f}, "  # type: ignore[index]
                f"{s['runs']} runs) [{verdict}, target {TARGET_S} s]"  # type: ignore[index]
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

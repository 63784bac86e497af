"""Fuzz image loading and preprocessing at length: the properties of tests/runtime/test_fuzz.py, N examples each.

    python bench/fuzz_images.py --examples 10000

Runs the test module under pytest with CNNX_FUZZ_EXAMPLES=N (random seeds, no example
database), reads hypothesis's statistics, prints one row per property (examples, failures,
seconds) and writes bench/results/fuzz_images.json, which bench/bad_inputs.py quotes in
docs/bad-inputs.md. Exit code 1 when any property failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TESTS = "tests/runtime/test_fuzz.py"


def parse(output: str) -> dict[str, dict[str, float]]:
    """{property: {passing, failing, invalid, seconds}} from pytest's --hypothesis-show-statistics."""
    stats: dict[str, dict[str, float]] = {}
    for block in re.split(r"\n(?=\S+::\w+:\n)", output):
        name = re.match(r"\S+::(\w+):\n", block)
        counts = re.search(r"(\d+) passing, (\d+) failing, and (\d+) invalid", block)
        if name and counts:
            seconds = sum(float(s) for s in re.findall(r"phase \(([\d.]+) seconds\)", block))
            stats[name.group(1)] = {
                "passing": int(counts.group(1)),
                "failing": int(counts.group(2)),
                "invalid": int(counts.group(3)),
                "seconds": seconds,
            }
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10000, help="examples per property")
    args = parser.parse_args()
    env = {**os.environ, "CNNX_FUZZ_EXAMPLES": str(args.examples), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            TESTS,
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            "-W",
            "error::ResourceWarning",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    wall = time.perf_counter() - start
    stats = parse(proc.stdout)
    total = sum(int(s["passing"]) for s in stats.values())
    failed = sum(int(s["failing"]) for s in stats.values())
    result = {
        "command": f"python bench/fuzz_images.py --examples {args.examples}",
        "examples_per_property": args.examples,
        "examples_total": total,
        "failing": failed,
        "passed": proc.returncode == 0,
        "wall_s": round(wall, 1),
        "properties": stats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"{'property':<62} {'examples':>9} {'failing':>8} {'seconds':>8}")
    for name, s in stats.items():
        print(f"{name:<62} {int(s['passing']):>9,} {int(s['failing']):>8} {s['seconds']:>8.1f}")
    print(f"{'total':<62} {total:>9,} {failed:>8} {wall:>8.1f}  ({'passed' if result['passed'] else 'FAILED'})")
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_images.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

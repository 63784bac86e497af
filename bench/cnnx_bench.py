"""The formats table of the README: ``cnnx bench`` on a trained MNIST run, saved to bench/results/.

    cnnx train mnist --data-dir ../shared/data/mnist --out /tmp/bench-run --epochs 3
    python bench/cnnx_bench.py --checkpoint /tmp/bench-run --data-dir ../shared/data/mnist

Runs the real command, ``cnnx bench CHECKPOINT --data-dir DIR --json --plot
bench/results/cnnx_bench.png``, in a subprocess (its progress goes to stderr), saves its JSON
as bench/results/cnnx_bench.json and prints its table. Timings on a shared machine are noisy:
the load average before and after is in the JSON and under the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cnnx.bench.report import render
from cnnx.core.fileio import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a cnnx checkpoint (.pt) or run folder")
    ap.add_argument("--data-dir", help="MNIST folder (the four IDX files) [default: cnnx's lookup]")
    ap.add_argument("--seconds", default="2", help="cnnx bench --seconds [default: 2]")
    ap.add_argument("--threads", default="1", help="cnnx bench --threads [default: 1]")
    ap.add_argument("--out", type=Path, default=RESULTS / "cnnx_bench.json", help="the JSON; the PNG goes beside it")
    args = ap.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "cnnx",
        "bench",
        args.checkpoint,
        "--json",
        "--plot",
        str(args.out.with_suffix(".png")),
        "--seconds",
        args.seconds,
        "--threads",
        args.threads,
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr: cnnx bench's progress, as it happens
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    result = json.loads(proc.stdout)
    atomic_write(args.out, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
    print(f"{result['command']}\n\n{render(result)}\n\nwrote {args.out}")


if __name__ == "__main__":
    main()

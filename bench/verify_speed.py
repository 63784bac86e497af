"""How long `cnnx verify MODEL` takes as a whole process, next to the imports it cannot avoid.

    python bench/verify_speed.py [--python VENV/bin/python] [--model cnnx/models/mnist.onnx] [--runs 15]

``--python``: the interpreter of the environment to measure (the issue's target is a base-only
install: `python -m venv V && V/bin/pip install .`); default this one. Runs, interleaved:
`python -m cnnx verify MODEL`, `python -c "import numpy, onnxruntime"` (the floor: what verify
must load) and `python -c pass`. Prints medians and writes bench/results/verify_speed.json; exit 1
when the median misses 0.3 s.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))  # the cnnx package of this checkout

from cnnx.core.machine import machine_info  # noqa: E402

TARGET_S = 0.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable, help="the environment's interpreter")
    ap.add_argument("--model", type=Path, default=REPO / "cnnx" / "models" / "mnist.onnx")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    commands = {
        "cnnx verify": [args.python, "-m", "cnnx", "verify", str(args.model)],
        "import numpy, onnxruntime": [args.python, "-c", "import numpy, onnxruntime"],
        "python -c pass": [args.python, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    load_before = os.getloadavg()
    for _ in range(args.runs):
        for name, cmd in commands.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")  # not the checkout: the installed cnnx
            times[name].append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    rows = {
        name: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": len(v)}
        for name, v in times.items()
    }
    result = {
        "command": " ".join(["python", "bench/verify_speed.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "python": args.python,
        "model": str(args.model),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rows": rows,
        "target_s": TARGET_S,
        "met": rows["cnnx verify"]["median_s"] <= TARGET_S,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "verify_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, r in rows.items():
        print(f"{name:<28} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f}")
    print(f"{'met' if result['met'] else 'MISSED'}: cnnx verify median <= {TARGET_S} s; load average {load_before}")
    sys.exit(0 if result["met"] else 1)


if __name__ == "__main__":
    main()

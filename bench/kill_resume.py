"""Crash safety of `cnnx train`: kill a run with SIGKILL again and again, resume it each time.

Runs the procedure tests/train/test_crash.py runs (the same code, cnnx.testing.crash):
`cnnx train mnist --arch seed000-net` on the shipped mini MNIST, CPU, one thread, is
killed ``--kills`` times at random points, two in five of them the moment a checkpoint
temp file appears (inside the write), and resumed with `cnnx train --resume` after each;
after every kill every ``*.pt`` in the run folder is loaded with cnnx's own loader. At the
end the weights are compared, tensor for tensor, with a run that was never interrupted.

    python bench/kill_resume.py --kills 30

Prints the figures and writes bench/results/kill_resume.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the cnnx package of this checkout

from cnnx.testing.crash import as_dict, kill_resume  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnnx.core.machine import machine_info  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30, help="SIGKILLs to deliver (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (both runs)")
    ap.add_argument("--rng-seed", type=int, default=0, help="seed of the kill schedule")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "kill_resume.json"))
    args = ap.parse_args()

    import torch

    with tempfile.TemporaryDirectory(prefix="cnnx-kill-") as work:
        result = kill_resume(
            Path(work), kills=args.kills, seed=args.seed, rng_seed=args.rng_seed, log=lambda s: print(s, flush=True)
        )
    print(result.summary())
    record = {
        "command": f"python bench/kill_resume.py --kills {args.kills}"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --rng-seed {args.rng_seed}" if args.rng_seed else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "torch": str(torch.__version__),
        **as_dict(result),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not result.identical or not result.metrics_identical:
        raise SystemExit("the resumed run's weights differ from the uninterrupted run's")


if __name__ == "__main__":
    main()

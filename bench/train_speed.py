"""Whole-command training speed: `cnnx train mnist` over several seeds on the full MNIST.

For each seed, runs the real CLI in a subprocess (start-up, data, training, every
per-epoch evaluation and checkpoint included), then reads the run's metrics.json.
"Time to X%" is the wall time from process start to the end of the first epoch
whose test accuracy reached X% (the epochs after it are subtracted from the wall).
"Held-out" is the accuracy on the training images the run holds out of training (--holdout):
choose options by it, and report the test accuracy. "Outside epochs" is the wall time less every
epoch's own (training, test pass, held-out fit): start-up, imports, data, outlier banks (made on a
machine's first run, loaded after), checkpoints, plots and exit; "outside training" also counts
the per-epoch test passes and held-out fits.

    python bench/train_speed.py --data-dir ../shared/data/mnist --preset default --seeds 0 1 2
    python bench/train_speed.py --data-dir ../shared/data/mnist --preset best --seeds 0 1 2
    python bench/train_speed.py --data-dir ../shared/data/mnist --nproc 2     # torchrun, 2 Gloo processes
    python bench/train_speed.py --data-dir ../shared/data/mnist --name no-outliers -- --outliers 0 --holdout 0
    python bench/train_speed.py --data-dir ../shared/data/mnist --name torch-builds \
        --python python --python /path/to/cpu-venv/bin/python      # two installs of torch, seeds interleaved
    python bench/train_speed.py --data-dir ../shared/data/mnist --name archs \
        --arch mnist-bn16 --arch mnist-bn                           # two networks, seeds interleaved
    python bench/train_speed.py --data-dir ../shared/data/mnist --name smoothing \
        --with "" --with "--label-smoothing 0.05"                   # two option sets, seeds interleaved

Run folders (checkpoints, metrics) are removed after each run unless --keep-runs DIR keeps them, as
DIR/<preset>-seedN, or DIR/armK-seedN when arms are compared (K counts from 0 in the table's order).
Prints a table and writes bench/results/train_speed-<preset>[-ddpN][-<name>].json. With --nproc N the
command runs under `torchrun --standalone --nproc-per-node N` (same global batch and learning
rate), and the table compares its accuracy with the 1-process result file of the same preset.
With --python, --arch or --with given more than once, every seed runs under each interpreter,
architecture and set of options in turn (so a drift of the machine's speed falls on all alike), a
row each, and the JSON holds each one's summary and runs under "compared".
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnx.core.machine import machine_info  # noqa: E402

THRESHOLDS = (0.990, 0.993, 0.994, 0.995)


def run_one(
    preset: str,
    seed: int,
    data_dir: str,
    extra: list[str],
    nproc: int = 1,
    python: str = sys.executable,
    keep: Path | None = None,
) -> dict:
    """One seed's whole command; its run folder is removed after, unless ``keep`` names where it goes."""
    if keep is not None:
        if keep.exists():
            raise SystemExit(f"{keep} exists already: pick another --keep-runs folder")
        keep.parent.mkdir(parents=True, exist_ok=True)
        return {**_run_in(preset, seed, data_dir, extra, nproc, python, keep), "run_dir": str(keep)}
    with tempfile.TemporaryDirectory(prefix="cnnx-bench-") as tmp:  # checkpoints are MBs a run: never left behind
        return _run_in(preset, seed, data_dir, extra, nproc, python, Path(tmp) / "run")


def _run_in(preset: str, seed: int, data_dir: str, extra: list[str], nproc: int, python: str, out: Path) -> dict:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    cmd = [
        python,
        *launcher,
        "-m",
        "cnnx",
        "train",
        "mnist",
        "--preset",
        preset,
        "--seed",
        str(seed),
        "--data-dir",
        data_dir,
        "--no-download",
        "--out",
        str(out),
        "--json",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    epochs = result["epoch_metrics"]
    time_to = {}
    for thr in THRESHOLDS:
        hit = next((i for i, e in enumerate(epochs) if e["test_accuracy"] >= thr), None)
        time_to[f"{100 * thr:.1f}"] = None if hit is None else wall - sum(e["epoch_seconds"] for e in epochs[hit + 1 :])
    return {
        "seed": seed,
        "wall_seconds": wall,
        "outside_epochs_seconds": wall - sum(e["epoch_seconds"] for e in epochs),
        "outside_training_seconds": wall - sum(e["train_seconds"] for e in epochs),
        "final_accuracy": result["final_accuracy"],
        # the last epoch's accuracy on the training images held out of training: what to choose options by
        "holdout_accuracy": epochs[-1].get("holdout_accuracy"),
        "epoch_accuracy": [e["test_accuracy"] for e in epochs],
        "epoch_seconds": [e["epoch_seconds"] for e in epochs],
        "time_to": time_to,
        "arch": result["arch"],
        "parameters": result["parameters"],
        "epochs": result["epochs"],
        "processes": result.get("processes", 1),
        "config": result["config"],
        "versions": result["versions"],
        "python": python,
        "run_dir": None,  # set by run_one when kept
    }


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f}%"


def summarise(runs: list[dict], preset: str, nproc: int, seeds: list[int]) -> dict:
    accs = [r["final_accuracy"] for r in runs]
    held = [r["holdout_accuracy"] for r in runs if r["holdout_accuracy"] is not None]
    walls = [r["wall_seconds"] for r in runs]
    return {
        "preset": preset,
        "processes": nproc,
        "arch": runs[0]["arch"],
        "parameters": runs[0]["parameters"],
        "epochs": runs[0]["epochs"],
        "seeds": seeds,
        "torch": runs[0]["versions"].get("torch"),
        "accuracy_mean": statistics.mean(accs),
        "accuracy_worst": min(accs),
        "holdout_accuracy_mean": statistics.mean(held) if held else None,  # None: --holdout 0
        "wall_median": statistics.median(walls),
        "wall_worst": max(walls),
        "outside_epochs_median": statistics.median(r["outside_epochs_seconds"] for r in runs),
        "outside_training_median": statistics.median(r["outside_training_seconds"] for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("CNNX_MNIST_DIR", "../shared/data/mnist"))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--nproc", type=int, default=1, help="processes under torchrun (1 = plain cnnx train)")
    ap.add_argument(
        "--python",
        action="append",
        help="interpreter to run `cnnx train` with, repeatable (another install of torch) [default: this one]",
    )
    ap.add_argument(
        "--arch",
        action="append",
        help="architecture to train (`cnnx train --arch`), repeatable [default: the preset's]",
    )
    ap.add_argument(
        "--with",
        dest="options",
        action="append",
        help='`cnnx train` options of one arm, in one string, repeatable ("" = none) [default: only those after --]',
    )
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="", help="added to the JSON file's name, e.g. for a run with extra options")
    ap.add_argument(
        "--keep-runs",
        type=Path,
        help="keep each run folder under this one, as ARM-seedN (to export and measure them after) [default: removed]",
    )
    ap.add_argument("extra", nargs="*", help="extra `cnnx train` options, after --")
    args = ap.parse_args()
    pythons = args.python or [sys.executable]
    archs: list[str | None] = args.arch or [None]
    options: list[str] = args.options or [""]
    arms = [(py, arch, o) for py in pythons for arch in archs for o in options]  # what is compared, a row each

    runs: list[list[dict]] = [[] for _ in arms]  # by arm, in --python's, --arch's then --with's order
    for seed in args.seeds:
        for i, (py, arch, o) in enumerate(arms):  # each seed under every arm in turn
            extra = args.extra + shlex.split(o) + (["--arch", arch] if arch else [])
            arm = f"arm{i}" if len(arms) > 1 else args.preset
            keep = args.keep_runs / f"{arm}-seed{seed}" if args.keep_runs else None
            r = run_one(args.preset, seed, args.data_dir, extra, args.nproc, py, keep)
            runs[i].append(r)
            tt = "  ".join(f"{k}%: {'-' if v is None else f'{v:5.1f}s'}" for k, v in r["time_to"].items())
            who = f"torch {r['versions'].get('torch')} " if len(pythons) > 1 else ""
            who += f"{r['arch']} " if len(archs) > 1 else ""
            who += f"[{o}] " if len(options) > 1 else ""
            print(
                f"{who}seed {seed}: final {100 * r['final_accuracy']:.2f}%  held-out {_pct(r['holdout_accuracy'])}  "
                f"wall {r['wall_seconds']:5.1f}s  "
                f"outside epochs {r['outside_epochs_seconds']:4.1f}s  "
                f"outside training {r['outside_training_seconds']:4.1f}s  {tt}",
                flush=True,
            )

    summaries = [summarise(r, args.preset, args.nproc, args.seeds) for r in runs]
    print()
    print(
        f"{'preset':<10} {'torch':<16} {'arch':<13} {'params':>7} {'epochs':>6} {'held-out mean':>13} "
        f"{'acc mean':>9} {'acc worst':>9} "
        f"{'wall median':>11} {'wall worst':>10} {'outside epochs':>14} {'outside training':>16}"
    )
    for summary, (_, _, o) in zip(summaries, arms, strict=True):
        print(
            f"{summary['preset']:<10} {summary['torch'] or '-':<16} {summary['arch']:<13} "
            f"{summary['parameters']:>7,} {summary['epochs']:>6} "
            f"{_pct(summary['holdout_accuracy_mean']):>13} "
            f"{100 * summary['accuracy_mean']:>8.2f}% {100 * summary['accuracy_worst']:>8.2f}% "
            f"{summary['wall_median']:>10.1f}s {summary['wall_worst']:>9.1f}s "
            f"{summary['outside_epochs_median']:>13.1f}s {summary['outside_training_median']:>15.1f}s"
            + (f"  [{o}]" if len(options) > 1 else "")
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    single = out / f"train_speed-{args.preset}.json"
    summary = summaries[0]
    if args.nproc > 1 and single.exists():
        base = json.loads(single.read_text())["summary"]
        summary["vs_1_process_pp"] = 100 * (summary["accuracy_mean"] - base["accuracy_mean"])
        print(
            f"{args.nproc} processes vs 1 ({single}): accuracy mean {summary['vs_1_process_pp']:+.2f} pp, "
            f"wall median {summary['wall_median'] / base['wall_median']:.2f}x"
        )
    path = single if args.nproc == 1 else out / f"train_speed-{args.preset}-ddp{args.nproc}.json"
    if args.name:
        path = path.with_name(f"{path.stem}-{args.name}.json")
    found: dict = (
        {"summary": summary, "runs": runs[0]}
        if len(arms) == 1
        else {
            "compared": [
                {"python": py, "arch": arch, "with": o, "summary": summaries[i], "runs": runs[i]}
                for i, (py, arch, o) in enumerate(arms)
            ]
        }
    )
    found.update(machine=machine_info(), date=time.strftime("%Y-%m-%d"), command=" ".join(sys.argv))
    path.write_text(json.dumps(found, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""The speed record: `cnnx train mnist` and pytorch/examples' MNIST recipe, side by side in one run.

The baseline is the recipe of pytorch/examples `mnist/main.py` written out here
(the script cannot be fetched on offline machines): the 2-conv dropout network
(conv 32/64 3x3, fc 9216-128-10, log_softmax + NLL loss), Adadelta lr 1.0,
StepLR gamma 0.7, batch 64, per-sample PIL decoding through torchvision's MNIST
dataset and a DataLoader, 14 epochs by default.

One invocation runs `cnnx train mnist --preset P` (bench/train_speed.py's
run_one: the real CLI in a subprocess, whole-process wall time) for each seed,
again with each ``--cnnx-also``'s options, then the baseline, on the same machine. It reports cnnx's time to 99.0/99.3/
99.4/99.5% and the ratio at equal accuracy: the baseline's wall time to its best
accuracy over the epochs it ran, against the wall time cnnx needed to first
reach that same accuracy (median over seeds).

    python bench/examples_baseline.py --data-dir ../shared/data/mnist                 # 14 epochs: over 30 min
    python bench/examples_baseline.py --data-dir ../shared/data/mnist --epochs 2      # shorter, same ratio method
    python bench/examples_baseline.py --data-dir ../shared/data/mnist --cnnx-preset default \
        --cnnx-also "--outliers 0 --holdout 0"     # and cnnx trained on digits alone, as the baseline is

Prints a table and writes bench/results/examples_baseline.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import THRESHOLDS, run_one  # noqa: E402

from cnnx.core.machine import machine_info  # noqa: E402


class ExamplesNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def torchvision_root(data_dir: Path) -> Path:
    """torchvision's MNIST wants root/MNIST/raw with the files uncompressed."""
    root = Path(tempfile.mkdtemp(prefix="cnnx-examples-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in data_dir.iterdir():
        if src.name.endswith(".gz"):
            with gzip.open(src) as f, open(raw / src.name[:-3], "wb") as g:
                shutil.copyfileobj(f, g)
        elif "idx" in src.name:
            shutil.copy(src, raw / src.name)
    return root


def run_baseline(data_dir: Path, epochs: int, seed: int) -> list[dict]:
    from torchvision import datasets, transforms

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    root = torchvision_root(data_dir)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_loader = torch.utils.data.DataLoader(
        datasets.MNIST(root, train=True, transform=tf), batch_size=64, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(datasets.MNIST(root, train=False, transform=tf), batch_size=1000)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    records = []
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            F.nll_loss(model(x), y).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        scheduler.step()
        records.append({"epoch": epoch, "test_accuracy": correct / 10000, "elapsed": time.perf_counter() - t0})
        print(f"baseline epoch {epoch}: {100 * correct / 10000:.2f}% at {records[-1]['elapsed']:.0f} s", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return records


def cnnx_time_to(result: dict, accuracy: float) -> float | None:
    """Wall time of the cnnx runs (median over seeds) to first reach ``accuracy``."""
    times = []
    for run in result["runs"]:
        accs = run["epoch_accuracy"]
        hit = next((i for i, a in enumerate(accs) if a >= accuracy), None)
        if hit is None:
            return None
        # process wall minus the epochs after the one that reached it
        times.append(run["wall_seconds"] - sum(run["epoch_seconds"][hit + 1 :]))
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    ap.add_argument("--epochs", type=int, default=14, help="baseline epochs (the recipe's own: 14)")
    ap.add_argument("--seed", type=int, default=1, help="baseline seed (the recipe's own: 1)")
    ap.add_argument("--cnnx-preset", default="best", help="cnnx train --preset")
    ap.add_argument("--cnnx-seeds", type=int, nargs="+", default=[0])
    ap.add_argument(
        "--cnnx-also",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="a further set of cnnx runs (same preset and seeds) with these `cnnx train` options, e.g. "
        '"--outliers 0 --holdout 0" (digits only, as the baseline trains); repeatable',
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/examples_baseline.json"))
    args = ap.parse_args()

    load_before = os.getloadavg()
    variants = []
    for options in [[], *(shlex.split(o) for o in args.cnnx_also)]:
        name = " ".join([f"--preset {args.cnnx_preset}", *options])
        runs = []
        for seed in args.cnnx_seeds:
            runs.append(run_one(args.cnnx_preset, seed, str(args.data_dir), options))
            r = runs[-1]
            print(f"cnnx {name} seed {seed}: {100 * r['final_accuracy']:.2f}% in {r['wall_seconds']:.1f} s", flush=True)
        variants.append({"name": name, "options": options, "runs": runs})
    records = run_baseline(args.data_dir, args.epochs, args.seed)
    best = max(records, key=lambda r: r["test_accuracy"])
    target = best["test_accuracy"]
    print()
    print(f"{'':<58} {'accuracy':>9} {'wall to it':>11} {'ratio':>7}")
    print(f"{'pytorch/examples recipe':<58} {100 * target:>8.2f}% {best['elapsed']:>10.1f}s  (epoch {best['epoch']})")
    for v in variants:
        v["seconds"] = ours = cnnx_time_to(v, target)
        v["ratio"] = ratio = None if ours is None else best["elapsed"] / ours
        v["time_to"] = {f"{100 * t:.1f}": cnnx_time_to(v, t) for t in THRESHOLDS}
        print(
            f"{'cnnx train ' + v['name']:<58} {100 * target:>8.2f}% "
            f"{'-' if ours is None else f'{ours:10.1f}s'} {'-' if ratio is None else f'{ratio:6.1f}x'}"
        )
    for v in variants:
        times = ", ".join(f"{k}%: {'-' if t is None else f'{t:.1f} s'}" for k, t in v["time_to"].items())
        print(f"cnnx train {v['name']}: time to {times}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "baseline": records,
                "target_accuracy": target,
                "baseline_seconds": best["elapsed"],
                "cnnx_preset": args.cnnx_preset,
                # one entry per set of cnnx runs: the preset alone first, then each --cnnx-also
                "cnnx": variants,
                "epochs_run": args.epochs,
                "machine": machine_info(),
                "load_before": load_before,
                "load_after": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d"),
                "command": " ".join(["python", *sys.argv]),
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

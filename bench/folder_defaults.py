"""What `cnnx train FOLDER` does with no options, measured on a folder of digits and a folder of colour photos.

    python bench/folder_defaults.py --data-dir ../shared/data/mnist

Makes two ImageFolder trees in a temporary folder:

- digits: the first 2,400 MNIST training digits as grey 28x28 PNG files, one folder per class;
- shapes: 2,400 colour JPEG photos of four shapes (circle, square, triangle, star), 600 each, drawn
  at random sizes and turns on colour gradients, the photos 40 to 160 pixels a side; each shape's
  paint leans to a hue of its own, the hues overlapping (so both colour and outline count).
  Mirroring never changes a shape's class, so flips are allowed to help here.

Each configuration runs the real `cnnx train FOLDER --json` in a subprocess (0.2 of each class held
out, seed 0): the defaults, the defaults before cnnx took them from the data (RGB, 32 pixels, random
flips, cifar-bn, 256 images a step at lr 0.02), and single changes to the defaults. Prints a table and
writes bench/results/folder_defaults.json. The target, checked at the end: on both folders the
defaults are at least as accurate as the old ones, after one epoch and after the default three;
the script exits 1 when they are not.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cnnx.core.idx import read_idx
from cnnx.core.machine import machine_info

OLD = ["--rgb", "--image-size", "32", "--flip", "--batch-size", "256", "--lr", "0.02"]  # the defaults before
# (folder, label, options, epochs): None = the default number of epochs
RUNS: list[tuple[str, str, list[str], int | None]] = [
    ("digits", "defaults", [], None),
    ("digits", "defaults", [], 1),
    ("digits", "old defaults", ["--arch", "cifar-bn", *OLD], None),
    ("digits", "old defaults", ["--arch", "cifar-bn", *OLD], 1),
    (
        "digits",
        "--arch mnist-bn --grayscale --image-size 28 --no-flip, old batch",
        OLD[4:] + ["--arch", "mnist-bn"] + ["--grayscale", "--image-size", "28", "--no-flip"],
        None,
    ),
    ("digits", "defaults, --arch cifar-bn", ["--arch", "cifar-bn"], None),
    ("shapes", "defaults", [], None),
    ("shapes", "defaults", [], 1),
    ("shapes", "old defaults", OLD, None),
    ("shapes", "old defaults", OLD, 1),
    ("shapes", "defaults, --flip", ["--flip"], None),
    ("shapes", "defaults, --image-size 64", ["--image-size", "64"], None),
    ("shapes", "defaults, --grayscale", ["--grayscale"], None),
]


def make_digits(root: Path, mnist: Path, count: int = 2400) -> Path:
    x = read_idx(mnist / "train-images-idx3-ubyte.gz")  # (60000, 28, 28) uint8
    y = read_idx(mnist / "train-labels-idx1-ubyte.gz")
    for i in range(count):
        folder = root / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:05d}.png")
    return root


# Each shape's paint leans to a hue of its own, as the classes of real photos lean to colours of their
# own (tomatoes red, leaves green): the hues overlap, so colour alone does not tell the classes apart
HUES = {"circle": 0.0, "square": 0.33, "triangle": 0.66, "star": 0.16}  # of the colour wheel, 0..1
SHAPES = tuple(HUES)


def _paint(rng: np.random.Generator, hue: float) -> tuple[int, int, int]:
    """An RGB colour within 0.12 of ``hue`` on the colour wheel, of random saturation and brightness."""
    h = (hue + rng.uniform(-0.12, 0.12)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0))
    return int(255 * r), int(255 * g), int(255 * b)


def _outline(kind: str, r: float, turn: float) -> list[tuple[float, float]]:
    """Corners of a square, triangle or five-pointed star of radius ``r``, turned by ``turn`` radians."""
    corners, radii = {"square": (4, (r,)), "triangle": (3, (r,)), "star": (10, (r, 0.45 * r))}[kind]
    return [
        (
            radii[k % len(radii)] * math.cos(turn + 2 * math.pi * k / corners),
            radii[k % len(radii)] * math.sin(turn + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def make_shapes(root: Path, per_class: int = 600, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w = int(rng.integers(40, 161))
            h = int(np.clip(w * rng.uniform(0.75, 1.33), 40, 213))
            c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)  # the gradient's two ends
            t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
            background = np.broadcast_to(c0 * (1 - t) + c1 * t, (h, w, 3)) + rng.normal(0, 8, (h, w, 3))
            im = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
            r = min(w, h) * rng.uniform(0.25, 0.42)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            fill = _paint(rng, HUES[kind])
            while np.abs(np.array(fill) - (c0 + c1) / 2).sum() < 150:  # stands out from the background
                fill = _paint(rng, HUES[kind])
            draw = ImageDraw.Draw(im)
            if kind == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            else:
                draw.polygon([(cx + a, cy + b) for a, b in _outline(kind, r, rng.uniform(0, 2 * math.pi))], fill=fill)
            im.filter(ImageFilter.GaussianBlur(0.6)).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def run_one(folder: Path, options: list[str], epochs: int | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "cnnx", "train", str(folder), "--out", str(out), "--no-plots", "--json", *options]
    cmd += ["--epochs", str(epochs)] if epochs else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    s = json.loads(proc.stdout)
    first = s["epoch_metrics"][0]
    cfg = s["config"]
    return {
        "options": options,
        "epochs": s["epochs"],
        "arch": s["arch"],
        "input": f"{'L' if cfg['grayscale'] else 'RGB'} {cfg['image_size']}",
        "batch_size": cfg["batch_size"],
        "lr": cfg["lr"],
        "flip": cfg["flip"],
        "epoch1_accuracy": first["test_accuracy"],
        "epoch1_test_loss": first["test_loss"],
        "final_accuracy": s["final_accuracy"],
        "wall_seconds": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CNNX_MNIST_DIR", "../shared/data/mnist")))
    ap.add_argument("--out", type=Path, default=Path("bench/results/folder_defaults.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cnnx-folders-"))
    folders = {"digits": make_digits(work / "digits", args.data_dir), "shapes": make_shapes(work / "shapes")}
    load_before = os.getloadavg()
    rows = []
    print(
        f"{'folder':<7} {'options':<66} {'ep':>2} {'arch':<9} {'input':<7} {'batch':>5} {'lr':>7} {'flip':<5} "
        f"{'ep1 acc':>7} {'ep1 loss':>8} {'final':>7} {'wall':>7}"
    )
    for i, (name, label, options, epochs) in enumerate(RUNS):
        r = {"folder": name, "label": label, **run_one(folders[name], options, epochs, work / f"run-{i}")}
        rows.append(r)
        print(
            f"{name:<7} {label:<66} {r['epochs']:>2} {r['arch']:<9} {r['input']:<7} {r['batch_size']:>5} "
            f"{r['lr']:>7.5f} {str(r['flip']):<5} {100 * r['epoch1_accuracy']:>6.2f}% {r['epoch1_test_loss']:>8.3f} "
            f"{100 * r['final_accuracy']:>6.2f}% {r['wall_seconds']:>6.1f}s",
            flush=True,
        )
    final = {(r["folder"], r["label"], r["epochs"]): r["final_accuracy"] for r in rows}
    failed = [
        f"{name}, {n} epoch(s): defaults {100 * final[name, 'defaults', n]:.2f}% < "
        f"old {100 * final[name, 'old defaults', n]:.2f}%"
        for name in folders
        for n in (1, 3)
        if final[name, "defaults", n] < final[name, "old defaults", n]
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "runs": rows,
                "folders": {"digits": "2,400 MNIST training digits, PNG", "shapes": "2,400 JPEG photos, 4 shapes"},
                "target": "defaults at least as accurate as the old defaults on both folders, 1 and 3 epochs",
                "target_met": not failed,
                "machine": machine_info(),
                "load_before": load_before,
                "load_after": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d"),
                "command": " ".join(["python", *sys.argv]),
            },
            indent=2,
        )
    )
    shutil.rmtree(work, ignore_errors=True)  # the folders and the runs: about 100 MB
    print(f"\nwrote {args.out}")
    if failed:
        raise SystemExit("target missed: " + "; ".join(failed))
    print("target met: the defaults are at least as accurate as the old defaults on both folders, 1 and 3 epochs")


if __name__ == "__main__":
    main()

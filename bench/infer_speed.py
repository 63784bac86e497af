"""Edge-runtime figures: start-up, throughput and accuracy of `cnnx infer`, whole process.

    python bench/infer_speed.py --model artifacts/mnist.onnx --checkpoint artifacts/runs/mnist/best.pt \\
        --data ../shared/data/mnist

1. ``cnnx infer digit.png``: median and 90th percentile wall time and peak RSS over --runs
   processes, next to a plain PyTorch script that loads the checkpoint and predicts the same
   image (ratio), and next to the floor: a process that only imports numpy, Pillow and onnxruntime;
2. a folder of 10,000 PNG digits (the MNIST test set): ``cnnx infer DIR --csv`` end to end in
   images/s (decode, full mnist-digit preprocessing, model, output), with its default worker
   processes and with ``--workers 1`` (answers checked identical), next to the model-only
   throughput of the same kind of session at batch 1000 and the decode + preprocessing rate;
3. accuracy of that run against ``cnnx eval`` on the IDX files (the same digits), and on the
   photo-like set (cnnx/testing/photolike.py: inverted to dark ink on light paper, enlarged 3-6x,
   off-centre on a noisy, unevenly lit page, saved as JPEG) built from the same digits.

Prints a table and writes bench/results/infer_speed.json. Timings on a shared machine are
noisy: the load average before and after is recorded with the figures.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))  # the cnnx package of this checkout

from cnnx.core.machine import machine_info  # noqa: E402

TORCH_SCRIPT = """
import sys, numpy as np, torch
from PIL import Image
from cnnx.train.models import build_model
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
spec = state["spec"]
model = build_model(spec["arch"], len(spec["classes"]))
model.load_state_dict(state["model"])
model.eval()
x = torch.from_numpy(np.asarray(Image.open(sys.argv[2]).convert("L"), np.float32) / 255)[None, None]
x = (x - spec["mean"][0]) / spec["std"][0]
with torch.no_grad():
    print(spec["classes"][int(model(x).argmax(1))])
"""
FLOOR_SCRIPT = "import numpy, PIL.Image, onnxruntime"


def timed(cmd: list[str], stdout: Any = subprocess.DEVNULL) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one whole process."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
        wall = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({code}): {err.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, code  # ru_maxrss is in KB on Linux


def repeat(cmd: list[str], runs: int, warmup: int = 2) -> dict[str, Any]:
    return interleaved({"x": cmd}, runs, warmup)["x"]


def interleaved(cmds: dict[str, list[str]], runs: int, warmup: int = 2) -> dict[str, dict[str, Any]]:
    """Run the commands in turn, ``runs`` rounds, so a busy spell on a shared machine hits all of them alike."""
    for _ in range(warmup):
        for cmd in cmds.values():
            timed(cmd)
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            got[name].append(timed(cmd)[:2])
    out = {}
    for name, cmd in cmds.items():
        walls, rss = zip(*got[name], strict=False)
        out[name] = {
            "median_s": float(np.median(walls)),
            "p90_s": float(np.percentile(walls, 90)),
            "min_s": float(min(walls)),
            "peak_rss_mb": float(max(rss)),
            "runs": runs,
            "command": " ".join(cmd),
        }
    return out


def cnnx_command() -> list[str]:
    """The installed ``cnnx`` script, as a user runs it, with the package's bytecode compiled first.

    pip compiles bytecode when it installs; an editable install under PYTHONDONTWRITEBYTECODE
    would otherwise recompile every cnnx module in every process and time that instead.
    """
    import cnnx

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(cnnx.__file__).parent)], check=True)
    script = Path(sys.executable).parent / "cnnx"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cnnx"]


def csv_accuracy(text: str) -> tuple[float, int]:
    rows = list(csv.DictReader(io.StringIO(text)))
    right = sum(r["label"] == Path(r["path"]).stem.split("_")[-1] for r in rows)
    return right / len(rows), len(rows)


def write_pngs(images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=False)):
        Image.fromarray(image).save(folder / f"{i:05d}_{int(label)}.png")


def model_only(model: str, pixels: np.ndarray, batch: int = 1000, passes: int = 5) -> float:
    """Images/s of the model alone, same session options as cnnx infer, on preprocessed digits."""
    from cnnx.core.contract import normalise
    from cnnx.runtime.session import OnnxModel

    session = OnnxModel(model)
    x = normalise(pixels, session.spec.mean, session.spec.std)
    session.run(x[:batch])  # warm-up
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            session.run(x[i : i + batch])
        times.append(time.perf_counter() - t0)
    return len(x) / float(np.median(times))


def preprocess_rate(folder: Path, model: str) -> tuple[float, np.ndarray]:
    """Images/s of decoding + mnist-digit preprocessing alone, one thread; and the pixels."""
    from cnnx.core.contract import image_files
    from cnnx.runtime.image import preprocess_batch
    from cnnx.runtime.session import OnnxModel

    spec = OnnxModel(model).spec
    paths = image_files(folder)
    t0 = time.perf_counter()
    out = [px for i in range(0, len(paths), 256) for px in preprocess_batch(paths[i : i + 256], spec)]
    return len(paths) / (time.perf_counter() - t0), np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="ONNX file [default: the model shipped with cnnx]")
    ap.add_argument("--checkpoint", help="the checkpoint it was exported from, for the PyTorch peer")
    ap.add_argument(
        "--data",
        default=os.environ.get("CNNX_DATA_DIR", str(REPO.parent / "shared" / "data" / "mnist")),
        help="folder with the MNIST test IDX files",
    )
    ap.add_argument("--runs", type=int, default=15, help="processes per start-up figure")
    ap.add_argument("--photos", type=int, default=10000, help="digits in the photo-like set (0 = skip)")
    ap.add_argument("--work", help="folder for the generated images, kept and reused [default: a temp folder]")
    ap.add_argument("--out", default=str(RESULTS / "infer_speed.json"))
    args = ap.parse_args()

    from cnnx.core.idx import read_idx
    from cnnx.runtime.predict import resolve_model
    from cnnx.testing.photolike import write_photo_set

    model = str(resolve_model(args.model).resolve())
    data = Path(args.data)
    images = read_idx(next(data.glob("t10k-images-idx3-ubyte*")))
    labels = read_idx(next(data.glob("t10k-labels-idx1-ubyte*")))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cnnx-bench-"))
    cnnx = cnnx_command()
    result: dict[str, Any] = {"machine": machine_info(), "model": model, "load_before": os.getloadavg()}

    pngs = work / "mnist-png"
    if not pngs.exists() or len(list(pngs.glob("*.png"))) != len(images):
        write_pngs(images, labels, pngs)
    digit = str(pngs / f"00000_{labels[0]}.png")

    print(f"start-up: {args.runs} runs of cnnx infer one digit ...", flush=True)
    start: dict[str, Any] = interleaved(
        {
            "cnnx_infer": [*cnnx, "infer", digit, "--model", model],
            "floor_imports": [sys.executable, "-c", FLOOR_SCRIPT],
        },
        args.runs,
    )
    start["above_floor_s"] = start["cnnx_infer"]["median_s"] - start["floor_imports"]["median_s"]
    if args.checkpoint:
        script = work / "torch_predict.py"
        script.write_text(TORCH_SCRIPT)
        start["pytorch_script"] = repeat(
            [sys.executable, str(script), args.checkpoint, digit], max(3, args.runs // 2), 1
        )
        start["speedup_vs_pytorch"] = start["pytorch_script"]["median_s"] / start["cnnx_infer"]["median_s"]
    result["startup"] = start

    print(f"folder: cnnx infer on {len(images):,} PNG digits ...", flush=True)
    folder_runs, serial_runs = [], []
    for _ in range(3):  # default (worker processes on this many files) and --workers 1, in turn
        with open(work / "folder-serial.csv", "w") as f:
            serial_runs.append(
                timed([*cnnx, "infer", str(pngs), "--model", model, "--csv", "--workers", "1"], stdout=f)[0]
            )
        with open(work / "folder.csv", "w") as f:
            wall, rss, _ = timed([*cnnx, "infer", str(pngs), "--model", model, "--csv"], stdout=f)
        folder_runs.append((wall, rss))
    wall = float(np.median([w for w, _ in folder_runs]))
    if (work / "folder.csv").read_text() != (work / "folder-serial.csv").read_text():
        raise SystemExit("worker processes changed the answers: folder.csv != folder-serial.csv")
    png_acc, n = csv_accuracy((work / "folder.csv").read_text())
    rate, pixels = preprocess_rate(pngs, model)
    result["folder"] = {
        "images": n,
        "median_s": wall,
        "images_per_s": n / wall,
        "peak_rss_mb": max(r for _, r in folder_runs),
        "runs": len(folder_runs),
        "serial_median_s": float(np.median(serial_runs)),
        "serial_images_per_s": n / float(np.median(serial_runs)),
        "model_only_images_per_s_batch1000": model_only(model, pixels),
        "decode_preprocess_images_per_s_1_thread": rate,
        "command": f"cnnx infer {pngs} --model {model} --csv",
    }

    print("accuracy: cnnx eval on the IDX files ...", flush=True)
    proc = subprocess.run(
        [*cnnx, "eval", model, "--data", str(data), "--json"], capture_output=True, text=True, check=True
    )
    idx_acc = json.loads(proc.stdout)["accuracy"]
    acc: dict[str, Any] = {"eval_idx": idx_acc, "infer_png": png_acc, "png_minus_idx_pp": 100 * (png_acc - idx_acc)}
    if args.photos:
        photos = work / f"photo-like-{args.photos}"
        if not photos.exists() or len(list(photos.glob("*.jpg"))) != args.photos:
            print(f"photo-like: writing {args.photos:,} photos ...", flush=True)
            shutil.rmtree(photos, ignore_errors=True)
            write_photo_set(images[: args.photos], labels[: args.photos], photos, seed=0)
        print("photo-like: cnnx infer ...", flush=True)
        with open(work / "photos.csv", "w") as f:
            pwall, _, _ = timed([*cnnx, "infer", str(photos), "--model", model, "--csv"], stdout=f)
        photo_acc, pn = csv_accuracy((work / "photos.csv").read_text())
        clean = float(np.mean(model_predictions(model, pixels[: args.photos]) == labels[: args.photos]))
        acc.update(
            {
                "photo_like": photo_acc,
                "photo_like_images": pn,
                "clean_same_digits": clean,
                "photo_minus_clean_pp": 100 * (photo_acc - clean),
                "photo_like_images_per_s": pn / pwall,
            }
        )
    result["accuracy"] = acc
    result["load_after"] = os.getloadavg()
    report(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def model_predictions(model: str, pixels: np.ndarray) -> np.ndarray:
    from cnnx.core.contract import normalise
    from cnnx.runtime.session import OnnxModel

    session = OnnxModel(model)
    return np.concatenate(
        [
            session.run(normalise(pixels[i : i + 1000], session.spec.mean, session.spec.std)).argmax(1)
            for i in range(0, len(pixels), 1000)
        ]
    )


def report(r: dict[str, Any]) -> None:
    s, f, a = r["startup"], r["folder"], r["accuracy"]
    rows = [
        (
            "cnnx infer digit.png, median (p90)",
            f"{s['cnnx_infer']['median_s']:.3f} s ({s['cnnx_infer']['p90_s']:.3f})",
            "<= 0.30 s",
        ),
        ("  peak RSS", f"{s['cnnx_infer']['peak_rss_mb']:.0f} MB", "<= 100 MB"),
        ("  floor: import numpy, PIL, onnxruntime", f"{s['floor_imports']['median_s']:.3f} s", ""),
        ("  cnnx above the floor", f"{s['above_floor_s']:+.3f} s", ""),
    ]
    if "pytorch_script" in s:
        rows += [
            ("plain PyTorch script, median", f"{s['pytorch_script']['median_s']:.3f} s", ""),
            ("  peak RSS", f"{s['pytorch_script']['peak_rss_mb']:.0f} MB", ""),
            ("  cnnx infer is faster by", f"{s['speedup_vs_pytorch']:.1f}x", ">= 8x"),
        ]
    rows += [
        (
            f"folder of {f['images']:,} PNG digits, end to end",
            f"{f['images_per_s']:,.0f} img/s ({f['median_s']:.2f} s)",
            ">= 5,000 img/s",
        ),
        ("  peak RSS", f"{f['peak_rss_mb']:.0f} MB", ""),
        ("  the same, --workers 1 (decode in-process)", f"{f['serial_images_per_s']:,.0f} img/s", ""),
        ("  model only, same session, batch 1000", f"{f['model_only_images_per_s_batch1000']:,.0f} img/s", ""),
        ("  decode + preprocess only, 1 thread", f"{f['decode_preprocess_images_per_s_1_thread']:,.0f} img/s", ""),
        ("accuracy: cnnx eval on IDX", f"{100 * a['eval_idx']:.2f}%", ""),
        (
            "  cnnx infer on the same digits as PNG",
            f"{100 * a['infer_png']:.2f}% ({a['png_minus_idx_pp']:+.2f} pp)",
            "within 0.05 pp",
        ),
    ]
    if "photo_like" in a:
        rows += [
            (
                f"  photo-like JPEGs ({a['photo_like_images']:,})",
                f"{100 * a['photo_like']:.2f}% ({a['photo_minus_clean_pp']:+.2f} pp vs clean)",
                "within 1.5 pp",
            ),
            ("  photo-like throughput", f"{a['photo_like_images_per_s']:,.0f} img/s", ""),
        ]
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'':<{width}}  {'measured':<28} target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<28} {target}")
    print(
        f"\nload average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f} "
        f"on {r['machine']['cores']} cores ({r['machine']['cpu']})"
    )


if __name__ == "__main__":
    main()

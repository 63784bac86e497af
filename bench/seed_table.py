"""The seed table: one row per registered network, trained with cnnx's defaults, then exported with parity.

Each row is the real CLI in subprocesses, as a user runs it:

    cnnx train DATASET --arch NAME --device cpu --out RUN --json      (DATASET: the network's own, mnist or cifar10)
    cnnx export RUN --format all --json                               (ONNX + TorchScript, each through its parity gate)

and reads back parameters, the final test accuracy, the training wall time and
each format's parity result. One row, or all of them:

    python bench/seed_table.py --arch seed003-net --cifar-dir ~/data
    python bench/seed_table.py --all --mnist-dir ../shared/data/mnist --cifar-dir ~/data

A network whose dataset is not on disk gets a row saying so (CIFAR-10 cannot be
downloaded on machines without internet). Extra `cnnx train` options go after
``--`` (e.g. ``-- --epochs 1`` for a quick check). Prints a Markdown table and
writes bench/results/seed_table.json (rows are merged by architecture, so rows
run one command at a time build up one table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnx.core.machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnx", *args], capture_output=True, text=True, cwd=REPO)


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_row(arch: str, data_dirs: dict[str, str | None], extra: list[str], export: bool) -> dict:
    from cnnx.train.models import ARCHS, build_model, count_parameters

    a = ARCHS[arch]
    row: dict = {
        "arch": arch,
        "dataset": a.dataset,
        "parameters": count_parameters(build_model(arch, 10)),
        "summary": a.summary,
        "extra_options": extra,
    }
    out = Path(tempfile.mkdtemp(prefix=f"cnnx-seed-{arch}-")) / "run"
    data_dir = data_dirs.get(a.dataset)
    train_args = [
        "train",
        a.dataset,
        "--arch",
        arch,
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
        "--no-plots",
        *(["--data-dir", data_dir, "--no-download"] if data_dir else []),
        *extra,
    ]
    t0 = time.perf_counter()
    row["load_before"] = os.getloadavg()[0]  # a shared machine: a busy spell shows here, not in the figure
    proc = cli(*train_args)
    row["train_command"] = "cnnx " + " ".join(train_args)
    if proc.returncode != 0:
        row["error"] = last_line(proc.stderr)
        return row
    result = json.loads(proc.stdout)
    row.update(
        epochs=result["epochs"],
        test_accuracy=result["final_accuracy"],
        best_accuracy=result["best_accuracy"],
        train_seconds=sum(e["train_seconds"] for e in result["epoch_metrics"]),
        wall_seconds=time.perf_counter() - t0,
        config=result["config"],
        versions=result["versions"],
        load_after=os.getloadavg()[0],
    )
    if export:
        ex = cli("export", str(out), "--format", "all", "--json", *(["--data-dir", data_dir] if data_dir else []))
        if ex.returncode not in (0, 3):  # 3: a parity gate failed, which is a result, not a crash
            row["export_error"] = last_line(ex.stderr)
        else:
            report = json.loads(ex.stdout)
            row["parity"] = {
                fmt: {
                    "passed": r.get("passed"),
                    "max_abs_diff": (r.get("real") or {}).get("max_abs_diff"),
                    "top1_agreement": r.get("top1_agreement"),
                    "method": r.get("method"),
                }
                for fmt, r in report.get("formats", {}).items()
            }
            row["parity_images"] = (report.get("images") or {}).get("images")
    return row


def parity_cell(row: dict) -> str:
    if "export_error" in row:
        return f"export failed: {row['export_error']}"
    if "parity" not in row:
        return "-"
    return ", ".join(
        f"{fmt} {'pass' if p['passed'] else 'FAIL'} ({p['max_abs_diff']:.0e})"
        if p.get("max_abs_diff") is not None
        else f"{fmt} {'pass' if p['passed'] else 'FAIL'}"
        for fmt, p in row["parity"].items()
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| network | dataset | parameters | epochs | test accuracy | train time (CPU) | export parity |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['dataset']} | {r['parameters']:,} | - | not run: {r['error']} | - | - |")
            continue
        lines.append(
            f"| {r['arch']} | {r['dataset']} | {r['parameters']:,} | {r['epochs']} | "
            f"{100 * r['test_accuracy']:.2f}% | {r['train_seconds']:.0f} s | {parity_cell(r)} |"
        )
    return "\n".join(lines)


def main() -> None:
    from cnnx.train.models import ARCHS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", action="append", choices=list(ARCHS), help="a network (repeatable)")
    which.add_argument("--all", action="store_true", help="every registered network")
    ap.add_argument("--mnist-dir", default=os.environ.get("CNNX_MNIST_DIR"), help="MNIST folder")
    ap.add_argument("--cifar-dir", default=os.environ.get("CNNX_CIFAR_DIR"), help="folder with cifar-10-batches-py")
    ap.add_argument("--no-export", action="store_true", help="train only")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "seed_table.json"))
    ap.add_argument("extra", nargs="*", help="extra `cnnx train` options, after --")
    args = ap.parse_args()

    archs = list(ARCHS) if args.all else args.arch
    dirs = {"mnist": args.mnist_dir, "cifar10": args.cifar_dir}
    rows = []
    for arch in archs:
        row = run_row(arch, dirs, args.extra, not args.no_export)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()).get("rows", []) if out.is_file() else []
    merged = {r["arch"]: r for r in previous}
    merged.update(
        {
            r["arch"]: {
                **r,
                "machine": machine_info(),
                "date": time.strftime("%Y-%m-%d"),
                "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            }
            for r in rows
        }
    )
    ordered = [merged[a] for a in ARCHS if a in merged]
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"rows": ordered}, indent=2))
    tmp.replace(out)
    print()
    print(table(ordered))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""Honest answers, measured: what a digit model says to things that are not digits, and how well
its probabilities are calibrated.

    python bench/honest.py [--model M.onnx ...] [--vs BASELINE.onnx] [--json out.json]
        [--sets tune|report|all] [--n N] [--reliability PNG] [--work DIR] [--data DIR] [--reject on|off]
        [--matched PCT ...]

The sets of cnnx/testing/openset.py (printed and handwritten letters, scribbles, shapes, rings,
blank pages, photo crops, scikit-learn's foreign handwritten digits) and those made from MNIST
(the test digits as PNG files, the photo-like and marker-like digits of
cnnx/testing/photolike.py, pairs of test digits photographed side by side) are written as image
files into a temporary folder (or --work, kept and reused), and each model classifies them
through the real ``cnnx.runtime.Classifier``, as a user's files would be.

Every set has a role. "tune" sets may be used to choose things (a threshold, a recipe);
"report" sets are only measured: they are the figures the README quotes. Rings (0 look-alikes),
pairs of MNIST test digits (a number, not a digit) and blank pages (which the runtime's "no
digit found" answers before any model runs) are shown apart, not pooled in the "non-digits" rows.

Prints one table, per set and model: images, role, accepted as a class %, refused %, unread %
(the runtime's error for an image it cannot read: "no digit found"), accepted with probability
>= 0.9 %, accuracy where the set has labels (a refused digit counts as wrong),
and on the MNIST test digits the expected calibration error (15 bins) and the negative
log-likelihood. --json writes the same numbers with the machine and the command. A model
whose runtime cannot refuse accepts everything (refused 0 %).

--matched PCT (repeatable) adds a table that compares models at the same operating point: each
model's threshold moved to refuse PCT % of the role's photo-like digits (unread images count as
refused), and what it would then accept of each set without digits (and of them pooled) and refuse
of the role's other digit sets (foreign handwriting; for "report" also MNIST test and marker
digits). A model's own threshold is fitted on a few thousand held-out digits, so where it lands
moves from seed to seed; two recipes compared at their own thresholds can differ only in where
that landed. The score is the model's own (msp for a model that carries none).

MNIST comes from --data, else $CNNX_DATA_DIR, else ../shared/data/mnist beside the repository,
else the 1,000 + 500 digits shipped in cnnx/samples/mnist (said in the table's title).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the cnnx package of this checkout

from cnnx.core import calibration as cal
from cnnx.core import plots
from cnnx.core.errors import CnnxError
from cnnx.core.idx import locate_mnist, read_idx
from cnnx.core.machine import machine_info
from cnnx.testing import openset, photolike

HIGH = 0.9  # "accepted with confidence": the probability a user reads as sure
Written = tuple[list[Path], list["int | None"]]


@dataclass(frozen=True)
class BenchSet:
    """A set as this script measures it: role, source, and how to write its files."""

    name: str
    role: str  # "tune" or "report"
    source: str
    size: int  # images at most (--n lowers it)
    write: Callable[[Path, int], Written]  # (folder, n) -> (files, labels or None each)
    labelled: bool = False
    counted: bool = True  # False: a row shown apart, not pooled with the non-digits
    calibration: bool = False  # ECE and NLL are measured on it


def _write_images(images: list[Image.Image], labels: list[int | None], folder: Path) -> Written:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        paths.append(folder / (f"{i:05d}.png" if label is None else f"{i:05d}_{label}.png"))
        image.save(paths[-1])
    return paths, labels


def _openset(s: openset.OpenSet) -> BenchSet:
    def write(folder: Path, n: int) -> Written:
        return _write_images(*s.images(n), folder)

    return BenchSet(s.name, s.role, s.source, s.size, write, s.labelled, s.counted)


def _mnist_root(data: str | None) -> tuple[Path, bool]:
    """(MNIST folder, whether it is the full set)."""
    for root in (data, os.environ.get("CNNX_DATA_DIR"), REPO.parent / "shared" / "data" / "mnist"):
        if root and locate_mnist(Path(root)) is not None:
            return Path(root), True
    return REPO / "cnnx" / "samples" / "mnist", False


PHOTO_TUNE = 1000  # photo-like tune digits: the first of tune_digit_order's draw of MNIST train


def tune_digit_order(n: int) -> np.ndarray:
    """The fixed random order of n MNIST training digits that the tune sets draw from, first to last."""
    return np.random.default_rng(7).permutation(n)


def _mnist_sets(root: Path) -> list[BenchSet]:
    files = locate_mnist(root)
    assert files is not None
    split = {s: (read_idx(files[f"{s}-images"]), read_idx(files[f"{s}-labels"])) for s in ("train", "test")}
    pick = tune_digit_order(len(split["train"][1]))
    train = (split["train"][0][pick], split["train"][1][pick])
    test = split["test"]

    def plain(folder: Path, n: int) -> Written:
        images = [Image.fromarray(d) for d in test[0][:n]]
        return _write_images(images, [int(v) for v in test[1][:n]], folder)

    def photos(digits: tuple[np.ndarray, np.ndarray], seed: int) -> Callable[[Path, int], Written]:
        def write(folder: Path, n: int) -> Written:
            return photolike.write_photo_set(digits[0][:n], digits[1][:n], folder, seed=seed), list(
                map(int, digits[1][:n])
            )

        return write

    def marker(folder: Path, n: int) -> Written:
        rng = np.random.default_rng(3)
        return _write_images([photolike.marker_like(d, rng) for d in test[0][:n]], list(map(int, test[1][:n])), folder)

    def pairs(folder: Path, n: int) -> Written:
        rng, images = np.random.default_rng(5), []
        for i in range(n):
            two = np.concatenate([test[0][(2 * i) % len(test[0])], test[0][(2 * i + 1) % len(test[0])]], 1)
            side = int(28 * rng.uniform(2.0, 5.0))  # (28, 56) -> (side, 2 side) ink in [0, 1]
            ink = Image.fromarray(two.astype(np.float32) / 255.0, "F").resize(
                (2 * side, side), Image.Resampling.BICUBIC
            )
            images.append(openset.on_paper(np.clip(np.asarray(ink), 0.0, 1.0), rng))
        return _write_images(images, [None] * n, folder)

    return [
        BenchSet("mnist-pairs-report", "report", "two MNIST test digits side by side", 300, pairs, counted=False),
        BenchSet("mnist-test", "report", f"MNIST test digits ({root})", len(test[1]), plain, True, calibration=True),
        BenchSet("mnist-photo-report", "report", "photo-like MNIST test digits", 1000, photos(test, 0), True),
        BenchSet("mnist-marker-report", "report", "marker-drawn MNIST test digits", 500, marker, True),
        BenchSet("mnist-photo-tune", "tune", "photo-like MNIST train digits", PHOTO_TUNE, photos(train, 1), True),
    ]


def materialise(s: BenchSet, work: Path, n: int | None) -> Written:
    """The set's files under work/<name>, made once: a manifest says what is there."""
    count = s.size if n is None else min(n, s.size)
    folder, manifest = work / s.name, work / f"{s.name}.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved["count"] == count and all(Path(p).is_file() for p in saved["files"]):
            return [Path(p) for p in saved["files"]], saved["labels"]
    paths, labels = s.write(folder, count)
    manifest.write_text(json.dumps({"count": count, "files": [str(p) for p in paths], "labels": labels}))
    return paths, labels


def open_model(path: Path, reject: bool | None) -> Any:
    from cnnx.runtime import Classifier

    return Classifier(path, reject=reject)


@dataclass
class Ran:
    """One model on one set's files: what ``run_set`` gives."""

    predictions: list[Any]  # one Prediction per file, every class listed; an unreadable one carries its error
    scores: np.ndarray  # (N,) refusal scores; -inf where the runtime cannot read the image
    seconds: float


def run_set(clf: Any, paths: list[Path]) -> Ran:
    """``clf`` on the files, each decoded once as `cnnx infer` reads it: the Predictions that
    ``predict(paths, top_k=every class, errors="keep")`` gives, and each image's refusal score by the
    model's method (msp for a model without one; -inf where the runtime cannot read the image: it is
    refused whatever the threshold), both from the same logits."""
    t0 = time.perf_counter()
    pending = clf.decode(paths)
    scores = np.full(len(paths), -np.inf)
    answers = None
    if pending.pixels:
        logits = clf.logits(np.stack(pending.pixels))
        answers = clf.answers_of(logits)
        read = [i for i, p in enumerate(pending.predictions) if p.error is None]
        method = (clf.spec.openset or {}).get("method", "msp")
        scores[read] = cal.scores(logits, temperature=clf.temperature, method=method)
    preds = clf.finish(pending, answers, top_k=len(clf.classes))
    return Ran(preds, scores, time.perf_counter() - t0)


def measure(clf: Any, s: BenchSet, ran: Ran, labels: list[int | None]) -> dict[str, Any]:
    """One model on one set (``run_set``'s result): the numbers of the table (percentages of all images)."""
    preds, seconds = ran.predictions, ran.seconds
    n = len(preds)
    # "not a digit: score 0.41 is below ...": counted by the reason before its numbers
    reasons = Counter(str(p.refused).split(":")[0] for p in preds if getattr(p, "refused", None))
    accepted = [(p, y) for p, y in zip(preds, labels, strict=True) if p.error is None and p.label is not None]
    row: dict[str, Any] = {
        "set": s.name,
        "role": s.role,
        "counted": s.counted,
        "images": n,
        "accepted_pct": 100 * len(accepted) / n,
        "refused_pct": 100 * sum(reasons.values()) / n,
        "unread_pct": 100 * sum(p.error is not None for p in preds) / n,  # an error: "no digit found", ...
        "confident_pct": 100 * sum(p.probability >= HIGH for p, _ in accepted) / n,
        "mean_top_probability": float(np.mean([p.probability for p, _ in accepted])) if accepted else None,
        "refusal_reasons": dict(reasons.most_common(5)),
        "seconds": seconds,
    }
    if s.labelled:
        right = sum(p.label == clf.classes[y] for p, y in accepted)
        row["accuracy_pct"] = 100 * right / n
        row["accuracy_accepted_pct"] = 100 * right / len(accepted) if accepted else None
    if s.calibration:
        full = [
            (p, y) for p, y in zip(preds, labels, strict=True) if p.error is None and len(p.top_k) == len(clf.classes)
        ]
        index = {c: i for i, c in enumerate(clf.classes)}
        probs = np.zeros((len(full), len(clf.classes)), np.float64)  # (N, K) in class order
        for i, (p, _) in enumerate(full):
            for c, v in p.top_k:
                probs[i, index[c]] = v
        y = np.array([v for _, v in full], np.int64)
        row.update(ece=cal.ece(probs, y, bins=15), nll=cal.nll(probs, y), calibration_images=len(full))
        row["_probs"], row["_labels"] = probs, y  # for the reliability diagram; not written to JSON
    return row


def matched(
    scores: dict[tuple[str, str], np.ndarray], sets: list[BenchSet], model: str, pct: float
) -> list[dict[str, Any]]:
    """Per role: ``model``'s threshold moved to refuse ``pct`` % of the role's photo-like digits, and
    the share it would accept of each set without digits ("<set> accepted %"), of them pooled
    ("non-digits accepted %"), and the share it would refuse of the role's other digit sets ("<set>
    refused %")."""
    out = []
    for role in openset.ROLES:
        reference = f"mnist-photo-{role}"
        ref = scores.get((model, reference))
        if ref is None:
            continue
        threshold = cal.threshold_for(ref, pct / 100)
        row: dict[str, Any] = {"model": model, "role": role, "photo_refused_pct": pct, "threshold": threshold}
        accepted, total = 0, 0
        for s in sets:
            got = scores.get((model, s.name))
            if s.role != role or got is None or not s.counted or s.name == reference:
                continue
            if s.labelled:
                row[f"{s.name} refused %"] = 100 * float(np.mean(got < threshold))
            else:
                row[f"{s.name} accepted %"] = 100 * float(np.mean(got >= threshold))
                accepted, total = accepted + int(np.sum(got >= threshold)), total + len(got)
        row["non-digits accepted %"] = 100 * accepted / total if total else None
        out.append(row)
    return out


def matched_table(rows: list[dict[str, Any]]) -> str:
    """The --matched rows: one line per model and operating point; a column per set without digits."""
    fixed = ("model", "role", "photo_refused_pct", "threshold")
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in fixed]
    # "letters-pen-tune accepted %" -> "letters-pen%", "foreign-digits-tune refused %" -> "foreign-digits refused%"
    labels = [n.replace("-tune", "").replace("-report", "").replace(" accepted %", "%") for n in names]
    labels = [lab.replace(" %", "%") for lab in labels]
    wide = max([16, *(len(r["model"]) for r in rows)])
    head = f"{'model':<{wide}} {'role':<7} {'photo refused%':>14} {'threshold':>9} " + " ".join(labels)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [
            f"{'-' if r.get(n) is None else format(r[n], '.1f'):>{len(lab)}}"
            for n, lab in zip(names, labels, strict=True)
        ]
        lines.append(
            f"{r['model']:<{wide}} {r['role']:<7} {r['photo_refused_pct']:>14.1f} {r['threshold']:>9.3f} "
            + " ".join(cells)
        )
    return "\n".join(lines)


def pooled(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """Per role, all counted sets without digits together: the share accepted as a digit."""
    out = []
    for role in openset.ROLES:
        mine = [
            r for r in rows if r["model"] == model and r["role"] == role and r["counted"] and "accuracy_pct" not in r
        ]
        if mine:
            n = sum(r["images"] for r in mine)
            out.append(
                {
                    "set": f"non-digits ({role})",
                    "role": role,
                    "model": model,
                    "images": n,
                    "accepted_pct": sum(r["accepted_pct"] * r["images"] for r in mine) / n,
                    "refused_pct": sum(r["refused_pct"] * r["images"] for r in mine) / n,
                    "unread_pct": sum(r["unread_pct"] * r["images"] for r in mine) / n,
                    "confident_pct": sum(r["confident_pct"] * r["images"] for r in mine) / n,
                }
            )
    return out


# the table's columns: (heading, width, the row's key, format); "-" where a set has no such number
COLUMNS = [
    ("images", 6, "images", "d"),
    ("accept%", 8, "accepted_pct", ".1f"),
    ("refuse%", 8, "refused_pct", ".1f"),
    ("unread%", 8, "unread_pct", ".1f"),
    ("p>=.9%", 7, "confident_pct", ".1f"),
    ("acc%", 6, "accuracy_pct", ".1f"),
    ("ECE", 6, "ece", ".4f"),
    ("NLL", 6, "nll", ".4f"),
]


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'set':<22} {'role':<7} {'model':<16} " + " ".join(f"{h:>{w}}" for h, w, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        role = r["role"] + ("" if r.get("counted", True) else "*")
        cells = [f"{'-' if r.get(k) is None else format(r[k], fmt):>{w}}" for _, w, k, fmt in COLUMNS]
        lines.append(f"{r['set']:<22} {role:<7} {r['model'][:16]:<16} " + " ".join(cells))
    return "\n".join(lines)


def reliability(rows: list[dict[str, Any]], path: Path) -> str:
    """Each model's reliability diagram on the set with calibration (the MNIST test digits), side by side."""
    curves = {r["model"]: cal.reliability(r["_probs"], r["_labels"], bins=15) for r in rows if "_probs" in r}
    if not curves:
        return f"no reliability diagram: no set with calibration was measured ({path} not written)"
    name = next(r["set"] for r in rows if "_probs" in r)
    return f"reliability diagram: {plots.draw_reliability(curves, path, title=f'{name}, 15 bins')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="ONNX file, repeatable [default: the model shipped with cnnx]")
    ap.add_argument("--vs", help="a baseline ONNX file measured beside the models")
    ap.add_argument("--json", help="write the numbers, the machine and the command here")
    ap.add_argument("--sets", choices=("tune", "report", "all"), default="all")
    ap.add_argument("--n", type=int, help="at most N images per set [default: each set's size]")
    ap.add_argument("--reliability", help="draw the reliability diagram of the first model on the MNIST test digits")
    ap.add_argument("--work", help="folder for the generated sets, kept and reused [default: a temp folder]")
    ap.add_argument("--data", help="MNIST folder [default: $CNNX_DATA_DIR, ../shared/data/mnist, the shipped sample]")
    ap.add_argument("--reject", choices=("on", "off"), help="refusal on or off [default: what each model's spec says]")
    ap.add_argument(
        "--matched",
        type=float,
        action="append",
        metavar="PCT",
        help="also compare the models with each threshold moved to refuse PCT %% of the role's photo-like "
        "digits, repeatable (e.g. --matched 1 --matched 2)",
    )
    args = ap.parse_args()
    from cnnx.runtime.predict import DEFAULT_MODEL

    models: dict[str, Path] = {}
    for m in args.model or [DEFAULT_MODEL]:
        models[Path(m).stem if Path(m).stem not in models else str(m)] = Path(m)  # the stem, unless taken
    if args.vs:
        models[f"vs:{Path(args.vs).stem}"] = Path(args.vs)
    root, full = _mnist_root(args.data)
    sets = [_openset(s) for s in openset.SETS] + _mnist_sets(root)
    sets = [s for s in sets if args.sets in ("all", s.role)]
    reject = None if args.reject is None else args.reject == "on"
    t0 = time.perf_counter()
    classifiers = {name: open_model(path, reject) for name, path in models.items()}  # a bad model fails first
    with tempfile.TemporaryDirectory(prefix="cnnx-honest-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = {s.name: materialise(s, work, args.n) for s in sets}
        ran = {(name, s.name): run_set(clf, files[s.name][0]) for name, clf in classifiers.items() for s in sets}
        rows = [
            {"model": name, **measure(clf, s, ran[name, s.name], files[s.name][1])}
            for name, clf in classifiers.items()
            for s in sets
        ]
        rows.sort(key=lambda r: [s.name for s in sets].index(r["set"]))  # a set's models side by side
        rows += [p for name in models for p in pooled(rows, name)]
        at: list[dict[str, Any]] = []
        if args.matched:
            counted = [s for s in sets if s.counted]  # the sets shown apart are not in the matched table
            scores = {(m, s.name): ran[m, s.name].scores for m in classifiers for s in counted}
            at = [r for pct in args.matched for name in models for r in matched(scores, sets, name, pct)]
    print(f"# {'full MNIST' if full else 'the mini MNIST sample'} from {root}; sets: {args.sets}")
    print(table(rows))
    print("* shown apart, not pooled in the non-digits rows: 0 look-alikes, two-digit numbers, blank pages")
    if at:
        print("\n# at matched operating points: each threshold moved to refuse the share of photo-like digits shown")
        print(matched_table(at))
    if args.reliability:
        print(reliability(rows, Path(args.reliability)))
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(models, root, full, sets, files, rows, at, t0), indent=2) + "\n")


def as_json(
    models: dict[str, Path],
    root: Path,
    full: bool,
    sets: list[BenchSet],
    files: dict[str, Written],
    rows: list[dict[str, Any]],
    at: list[dict[str, Any]],
    t0: float,
) -> dict[str, Any]:
    """What --json writes: the command, the machine, the models, the sets and every row of the table."""
    return {
        "command": shlex.join(["python", "bench/honest.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "seconds": time.perf_counter() - t0,
        "models": {k: str(v) for k, v in models.items()},
        "mnist": {"folder": str(root), "full": full},
        "sets": [
            {
                "name": s.name,
                "role": s.role,
                "source": s.source,
                "images": len(files[s.name][0]),
                "labelled": s.labelled,
            }
            | {"counted": s.counted}
            for s in sets
        ],
        "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "matched": at,
    }


if __name__ == "__main__":
    try:
        main()
    except CnnxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)

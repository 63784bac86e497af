"""Refusal scores on the network's features against the logits' energy, at matched operating points.

    python bench/feature_scores.py --checkpoint artifacts/runs/mnist/last.pt [--checkpoint ...]
        [--fit 20000] [--work DIR] [--data DIR] [--matched PCT ...] [--json out.json]

The refusal score cnnx ships is the energy of the logits (``cnnx.core.calibration.scores``). The
other family of open-set scores looks at the features the last layer reads (its input, taken with a
hook, so any registered network works):

- ``mahalanobis``: minus the smallest Mahalanobis distance to a class mean, with one covariance
  shared by the classes (Lee et al., 2018), fitted on training digits;
- ``knn1`` / ``knn10``: the cosine similarity of the L2-normalised features to their 1st / 10th
  nearest training digit (Sun et al., 2022);

beside three scores of the same network's logits: ``energy`` and ``msp`` (as the runtime computes
them, at the spec's temperature) and ``maxlogit``, the largest logit (Hendrycks et al., 2022). The
training digits that fit the feature scores are ``--fit`` images the run trained on (its held-out
images and the MNIST digits the photo-like tune set is made from left out). Each score's threshold
is then moved to refuse PCT % of the photo-like tune digits, as ``bench/honest.py --matched`` does,
and the table shows what it would accept of every tune set without digits (and pooled) and refuse
of the foreign digits; --json also keeps each score's median on every set, to see where the sets
lie. Tune sets only: this chooses a method, so it never looks at a report set. Needs torch (the
checkpoint is read, not the export).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # bench/honest.py: the sets, their files, the matched table
import honest  # noqa: E402

from cnnx.core import calibration as cal  # noqa: E402
from cnnx.core.idx import locate_mnist, read_idx  # noqa: E402
from cnnx.core.machine import machine_info  # noqa: E402
from cnnx.testing import openset  # noqa: E402

METHODS = ("energy", "msp", "maxlogit", "mahalanobis", "knn1", "knn10")


class FeatureScores:
    """Scores of features, fitted on (N, D) training features and their labels."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        f = features.astype(np.float64)
        self.means = np.stack([f[labels == k].mean(0) for k in range(num_classes)])  # (K, D)
        centred = f - self.means[labels]
        cov = centred.T @ centred / len(f)
        ridge = 1e-3 * np.trace(cov) / len(cov)  # D can exceed what N pins down: keep it invertible
        self.precision = np.linalg.inv(cov + ridge * np.eye(len(cov)))
        self.bank = _unit(f)

    def mahalanobis(self, features: np.ndarray) -> np.ndarray:
        """(N,) minus the squared Mahalanobis distance to the nearest class mean: higher is more in-class."""
        f = features.astype(np.float64)
        dist = [np.einsum("nd,de,ne->n", f - m, self.precision, f - m) for m in self.means]
        return -np.min(np.stack(dist, 1), 1)

    def knn(self, features: np.ndarray, k: int) -> np.ndarray:
        """(N,) cosine similarity to the k-th nearest training feature."""
        f, out = _unit(features.astype(np.float64)), []
        for i in range(0, len(f), 2048):
            out.append(np.partition(f[i : i + 2048] @ self.bank.T, -k, axis=1)[:, -k])
        return np.concatenate(out) if out else np.zeros(0)


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def features_and_logits(model: Any, pixels: np.ndarray, mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) -> (what the last Linear layer reads, the logits), in eval mode on the CPU."""
    import torch

    from cnnx.core.contract import normalise

    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().flatten(1)))
    logits = []
    try:
        with torch.no_grad():
            for i in range(0, len(pixels), 1024):
                logits.append(model(torch.from_numpy(normalise(pixels[i : i + 1024], mean, std))))
    finally:
        hook.remove()
    return torch.cat(seen).numpy(), torch.cat(logits).numpy()


def fit_digits(root: Path, config: dict[str, Any], count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training digits the run trained on, none the photo-like tune digits were made from."""
    from cnnx.train.honesty import held_out_indices

    files = locate_mnist(root)
    assert files is not None
    x, y = read_idx(files["train-images"]), read_idx(files["train-labels"])
    kept, _ = held_out_indices(len(y), float(config.get("holdout", 0.0)), int(config.get("seed", 0)))
    tune_sources = honest.tune_digit_order(len(y))[: honest.PHOTO_TUNE]
    pool = np.setdiff1d(kept.numpy(), tune_sources)
    pick = np.sort(np.random.default_rng(0).choice(pool, min(count, len(pool)), replace=False))
    return x[pick][:, None], y[pick]


def score_sets(path: Path, files: dict[str, Any], root: Path, fit: int) -> dict[tuple[str, str], np.ndarray]:
    """{(checkpoint:method, set name): (N,) scores}, -inf where the runtime cannot read the image."""
    from cnnx.export.source import load_source
    from cnnx.runtime.image import preprocess_batch

    src = load_source(path)
    spec, name = src.spec, path.parent.name if path.stem in ("last", "best") else path.stem
    temperature = cal.temperature_of(spec.calibration)
    fx, fy = fit_digits(root, src.train_config or {}, fit)
    scorer = FeatureScores(features_and_logits(src.model, fx, spec.mean, spec.std)[0], fy, len(spec.classes))
    out = {}
    for set_name, (paths, _labels) in files.items():
        decoded = preprocess_batch(paths, spec)
        read = [i for i, d in enumerate(decoded) if isinstance(d, np.ndarray)]
        scores = {m: np.full(len(paths), -np.inf) for m in METHODS}
        if read:
            feats, logits = features_and_logits(src.model, np.stack([decoded[i] for i in read]), spec.mean, spec.std)
            got = {
                "energy": cal.scores(logits, temperature=temperature, method="energy"),
                "msp": cal.scores(logits, temperature=temperature, method="msp"),
                "maxlogit": logits.max(axis=1),
                "mahalanobis": scorer.mahalanobis(feats),
                "knn1": scorer.knn(feats, 1),
                "knn10": scorer.knn(feats, 10),
            }
            for m in METHODS:
                scores[m][read] = got[m]
        out.update({(f"{name}:{m}", set_name): s for m, s in scores.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", required=True, help="a cnnx checkpoint (.pt), repeatable")
    ap.add_argument("--fit", type=int, default=20000, help="training digits the feature scores are fitted on")
    ap.add_argument("--work", help="folder for the generated sets, kept and reused [default: a temp folder]")
    ap.add_argument("--data", help="MNIST folder [default: $CNNX_DATA_DIR, ../shared/data/mnist]")
    ap.add_argument("--matched", type=float, action="append", metavar="PCT", help="[default: 1 and 2]")
    ap.add_argument("--json", help="write the numbers, the machine and the command here")
    args = ap.parse_args()
    root, full = honest._mnist_root(args.data)
    if not full:
        raise SystemExit("error: the feature scores need the full MNIST training split (--data)")
    sets = [honest._openset(s) for s in openset.SETS] + honest._mnist_sets(root)
    sets = [s for s in sets if s.role == "tune" and s.counted]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnx-features-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = {s.name: honest.materialise(s, work, None) for s in sets}
        scores: dict[tuple[str, str], np.ndarray] = {}
        for path in args.checkpoint:
            scores.update(score_sets(Path(path), files, root, args.fit))
    names = list(dict.fromkeys(m for m, _ in scores))
    rows = [r for pct in args.matched or [1.0, 2.0] for n in names for r in honest.matched(scores, sets, n, pct)]
    print(f"# tune sets; feature scores fitted on {args.fit:,} training digits of each run")
    print(honest.matched_table(rows))
    if args.json:
        record = {
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info(),
            "seconds": time.perf_counter() - t0,
            "fit": args.fit,
            "matched": rows,
            # each score's median on each set (unread images left out): where the sets lie
            "medians": [
                {"model": m, "set": s, "median": float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else None}
                for (m, s), v in scores.items()
            ],
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

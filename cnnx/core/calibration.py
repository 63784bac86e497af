"""Calibrated probabilities and refusing what is not one of the classes, in numpy alone.

Training fits both on images held out of the training split (never the test split) and
writes them into the model spec; every runtime path applies them to the logits the file
computes, so the parity gates keep comparing raw logits:

- ``calibration``: ``{"temperature": T, ...}``; probabilities are ``softmax(logits / T)``.
- ``openset``: ``{"method": "energy" or "msp", "threshold": t, ...}``; an input whose score is
  below ``t`` is refused ("not a digit"). ``energy`` scores an input by its negative free energy,
  ``T * logsumexp(logits / T)`` (Liu et al., 2020): it keeps how large the logits are, which
  softmax throws away, and on cnnx's tune sets it accepted a quarter to a half fewer non-digits
  than ``msp``, the largest calibrated probability, at the same share of real digits refused.

Standard library and numpy only: the edge runtime imports this module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnx.core.errors import ModelFileError
from cnnx.core.spec import OPENSET_METHODS as METHODS
from cnnx.core.spec import ModelSpec

BINS = 15  # the usual number of equal-width confidence bins for ECE
LOWEST_T, HIGHEST_T = 0.05, 20.0  # the temperature search range: far beyond any sane fit


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N, K) float32 probabilities of ``logits / temperature``; shifted by the row
    max so large logits do not overflow."""
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes, in nats; probabilities floored at 1e-12."""
    p = np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.maximum(p, 1e-12)).mean()) if len(p) else 0.0


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin: {"lo", "hi", "count", "confidence", "accuracy"} (means in the bin)."""
    probs = np.asarray(probs, np.float64)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    right = (predicted == np.asarray(labels)).astype(np.float64)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 goes in the last bin
    rows = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        rows.append(
            {
                "lo": b / bins,
                "hi": (b + 1) / bins,
                "count": n,
                "confidence": float(confidence[mask].mean()) if n else 0.0,
                "accuracy": float(right[mask].mean()) if n else 0.0,
            }
        )
    return rows


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over the bins, a fraction."""
    total = len(labels)
    if not total:
        return 0.0
    return float(
        sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in reliability(probs, labels, bins)) / total
    )


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)``: a golden-section search on log T.

    The NLL of temperature scaling is unimodal in log T, so the search finds its minimum to ~1e-4.
    When every image is classified right there is none: the NLL falls without end as T -> 0, and the
    search would stop on LOWEST_T, making every answer certain, an unknown image's too (a small image
    folder's few held-out images often are all right). Then T is 1: the logits as trained.
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if len(labels) and bool((logits.argmax(axis=1) == labels).all()):
        return 1.0

    def loss(log_t: float) -> float:
        return nll(softmax(logits, math.exp(log_t)), labels)

    lo, hi = math.log(LOWEST_T), math.log(HIGHEST_T)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > 1e-4:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(math.exp((lo + hi) / 2))


def scores(logits: np.ndarray, *, temperature: float = 1.0, method: str = "msp") -> np.ndarray:
    """(N, K) raw logits -> (N,) how much each input looks like one of the classes, by ``method``:
    "msp" the largest probability of ``softmax(logits / T)``, "energy" ``T * logsumexp(logits / T)``."""
    if method not in METHODS:
        raise ModelFileError(f"unknown refusal method {method!r}", f"known: {', '.join(METHODS)}")
    if method == "msp":
        return softmax(logits, temperature).max(axis=1)
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(axis=1)
    return (temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))).astype(np.float32)


def threshold_for(known: np.ndarray, false_refusal: float) -> float:
    """The score below which ``false_refusal`` (a fraction) of ``known`` (scores of real class images)
    fall: refusing below it refuses about that share of real inputs."""
    if not 0 <= false_refusal < 1:
        raise ValueError(f"false refusal rate must be in [0, 1), got {false_refusal}")
    ordered = np.sort(np.asarray(known, np.float64))
    if not len(ordered) or false_refusal == 0:
        return 0.0
    k = int(math.floor(false_refusal * len(ordered)))  # refuse the k lowest: strictly below the k-th
    return float(ordered[k])


def noun(spec: ModelSpec) -> str:
    """What one of a model's classes is called, for "not a ...": "digit" for the digit recipe,
    else "<dataset> class"."""
    if spec.preprocess == "mnist-digit":
        return "digit"
    return f"{spec.dataset} class" if spec.dataset else "known class"


def temperature_of(spec_calibration: dict[str, Any] | None) -> float:
    """The temperature a spec's ``calibration`` names; 1.0 when it has none."""
    if not spec_calibration:
        return 1.0
    return float(spec_calibration.get("temperature", 1.0))


def summary(logits: np.ndarray, labels: np.ndarray, spec: ModelSpec, bins: int = BINS) -> dict[str, Any]:
    """How honest ``spec``'s model is on labelled (N, K) ``logits``: NLL and ECE before and after its
    calibration, and with its refusal threshold the share of these real images refused and the
    accuracy on the ones it answers. ``reliability`` holds the diagram's bins, before and after."""
    t = temperature_of(spec.calibration)
    before, after = softmax(logits, 1.0), softmax(logits, t)
    out: dict[str, Any] = {
        "temperature": t,
        "nll_before": nll(before, labels),
        "nll_after": nll(after, labels),
        "ece_before": ece(before, labels, bins),
        "ece_after": ece(after, labels, bins),
        "reliability": {"before": reliability(before, labels, bins), "after": reliability(after, labels, bins)},
    }
    if spec.openset:
        answered = scores(logits, temperature=t, method=spec.openset["method"]) >= float(spec.openset["threshold"])
        right = after.argmax(axis=1) == np.asarray(labels)
        out["threshold"] = float(spec.openset["threshold"])
        out["method"] = spec.openset["method"]
        out["refused"] = int((~answered).sum())
        out["refused_share"] = float((~answered).mean()) if len(labels) else 0.0
        out["answered_accuracy"] = float(right[answered].mean()) if answered.any() else 0.0
    return out


def describe(found: dict[str, Any] | None) -> list[str]:
    """A ``summary`` as the lines ``cnnx eval`` and ``cnnx export`` print: calibration, then refusal."""
    if not found:
        return []
    h = found
    lines = [
        f"calibration: temperature {h['temperature']:.3f}; NLL {h['nll_before']:.4f} -> {h['nll_after']:.4f}, "
        f"ECE ({BINS} bins) {100 * h['ece_before']:.2f}% -> {100 * h['ece_after']:.2f}%"
    ]
    if "threshold" in h:
        lines.append(
            f"refusal: threshold {h['threshold']:.3f} ({h.get('method', 'msp')}) "
            f"refuses {100 * h['refused_share']:.2f}% ({h['refused']}) "
            f"of these images; accuracy on the rest {100 * h['answered_accuracy']:.2f}%"
        )
    else:
        lines.append("refusal: the model carries no threshold, so it answers every image")
    return lines

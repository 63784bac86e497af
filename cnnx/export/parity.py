"""Parity: proof that an exported file computes what the checkpoint computes.

Checks go structure, values, decision (ARCHITECTURE rule 5):

1. structure: declared input/output names, shapes and dtypes, and the shape and
   dtype of every output actually produced;
2. values: ``numpy.testing.assert_allclose`` against the reference logits, on real
   test images and on random inputs at batch sizes 1, 2, 7 and 64, with the
   tolerances of ``GATES``; on random inputs, whose logits run several times larger than
   on real images, the tolerance grows by ``RANDOM_RTOL`` of each logit's size (float32
   sums in another order differ in proportion to their size);
3. decision: top-1 agreement on real test images (and, for int8, accuracy and size
   against the fp32 ONNX file).

The reference is the PyTorch model in eval mode; the inputs come from
``cnnx.export.parity_data``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnx.core.errors import ParityError
from cnnx.core.machine import shared_threads, timed
from cnnx.export.parity_data import RANDOM_BATCHES, ParityData

EVAL_BATCH = 500  # images per forward pass on the test split

Runner = Callable[[np.ndarray], np.ndarray]  # (N, C, H, W) float32 normalised -> (N, K) float32 logits


@dataclass(frozen=True)
class Gate:
    """What an export must meet; every tolerance cnnx applies lives in ``GATES``."""

    atol: float | None  # max |logit - reference logit|, real and random inputs; None: reported, not gated
    min_agreement: float  # top-1 agreement with the baseline on real test images, fraction
    baseline: str = "torch"  # what agreement is measured against: "torch" or another format's name
    max_accuracy_drop: float | None = None  # accuracy (fraction) it may lose against the baseline
    max_size_ratio: float | None = None  # file size / the baseline format's file size
    hint: str = "nothing was written"  # the way out, appended to a failure
    # max |logit - checkpoint logit| `cnnx verify` allows on the images a file carries; None: ``atol``
    verify_atol: float | None = None

    @property
    def device_atol(self) -> float:
        """The logit tolerance a file of this format carries for ``cnnx verify``."""
        atol = self.verify_atol if self.verify_atol is not None else self.atol
        if atol is None:
            raise ValueError("a gate without atol needs verify_atol")
        return atol


def _int8(baseline: str, verify_atol: float) -> Gate:
    """An int8 file's gate: decisions against its fp32 ``baseline`` (top-1 99.8%, accuracy -0.1 pp at
    most) and at most 30% of its size; ``verify_atol`` is what a device may move a logit by."""
    return Gate(
        atol=None,
        min_agreement=0.998,
        baseline=baseline,
        max_accuracy_drop=0.001,
        max_size_ratio=0.30,
        hint="nothing was written; export without --int8 to keep the fp32 files",
        verify_atol=verify_atol,
    )


GATES: dict[str, Gate] = {
    "onnx": Gate(atol=1e-4, min_agreement=1.0),
    "torchscript": Gate(atol=1e-5, min_agreement=1.0),
    "onnx-int8": _int8(baseline="onnx", verify_atol=0.25),
    # fp16 weights and activations: logits move by ~1e-3 relative, so the gate is on decisions
    "onnx-fp16": Gate(atol=None, min_agreement=0.999, max_accuracy_drop=0.0005, verify_atol=0.02),
    # the fp32 graph in onnxruntime's own format, optimised at conversion: same numbers as ONNX
    "ort": Gate(atol=1e-4, min_agreement=1.0),
    # OpenVINO IR from the fp32 ONNX file, run by OpenVINO's CPU plugin in f32
    "openvino": Gate(atol=1e-4, min_agreement=1.0),
    # an ExecuTorch program from the torch module; XNNPACK's fp32 kernels sum in another order
    "executorch": Gate(atol=1e-4, min_agreement=1.0),
    # a TFLite flatbuffer from the torch module, run by LiteRT's interpreter (XNNPACK, fp32)
    "tflite": Gate(atol=1e-4, min_agreement=1.0),
    # full-integer TFLite (int8 weights, activations, input and output) against the fp32 .tflite; on a device,
    # LiteRT's reference int8 kernels differ from XNNPACK's by up to 2 output steps (0.16 each on the
    # default MNIST model, 2,000 test images), so a device may move a logit by a few steps
    "tflite-int8": _int8(baseline="tflite", verify_atol=0.5),
}


@dataclass
class Outputs:
    real: np.ndarray  # (N, K) logits on ParityData.test_x
    random: dict[int, np.ndarray]  # batch size -> (B, K)


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Pin torch's intra-op pool for the duration; onnxruntime sessions get the same count.

    Both pools default to one thread per core and spin while idle, so in one process they
    fight over the cores and turn sub-millisecond runs into milliseconds.
    """
    # half the cores each (1 on a 2-core machine): an OpenMP pool whose threads share a core with
    # another process's stalls at every barrier; one thread runs these small models nearly as fast
    n = threads or shared_threads()
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


def run_all(run: Runner, data: ParityData) -> Outputs:
    real = np.concatenate([run(data.test_x[i : i + EVAL_BATCH]) for i in range(0, len(data.test_x), EVAL_BATCH)])
    return Outputs(real=real, random={b: run(x) for b, x in data.random.items()})


@dataclass
class Candidate:
    """An export under test: what it computed on the parity data, what it declares, how large it is."""

    name: str  # a key of GATES (and of cnnx.export.formats.FORMATS)
    outputs: Outputs  # its logits on ParityData
    signature: dict[str, Any] | None = None  # declared inputs/outputs; None: the format declares none
    expected: dict[str, Any] | None = None  # what a cnnx file of the format must declare; None: not checked
    size: int | None = None  # file size in bytes; None: no size gate


def _structure(c: Candidate, want: Outputs) -> list[str]:
    problems = []
    if c.signature is not None and c.expected is not None and c.signature != c.expected:
        problems.append(f"declared inputs/outputs {c.signature} instead of {c.expected}")
    got = c.outputs
    pairs = [("real", got.real, want.real)] + [(f"batch {b}", got.random[b], want.random[b]) for b in want.random]
    for label, g, w in pairs:
        if g.shape != w.shape or g.dtype != np.float32:
            problems.append(f"{label}: output {g.dtype} {g.shape}, the checkpoint gives float32 {w.shape}")
        elif not np.isfinite(g).all():
            problems.append(f"{label}: output holds NaN or inf")
    return problems


def _diffs(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    abs_diff = float(np.abs(got - want).max())
    # relative to the largest reference logit: elementwise ratios explode on logits near 0
    return {"max_abs_diff": abs_diff, "max_rel_diff": abs_diff / max(float(np.abs(want).max()), 1e-12)}


def _compared(got: Outputs, reference: Outputs) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, export's logits, reference logits): real images (N, K), and every random batch flattened."""
    random_got = np.concatenate([got.random[b].ravel() for b in RANDOM_BATCHES])
    random_ref = np.concatenate([reference.random[b].ravel() for b in RANDOM_BATCHES])
    return [("real images", got.real, reference.real), ("random inputs", random_got, random_ref)]


def _summary(c: Candidate, reference: Outputs, base: Outputs, data: ParityData) -> dict[str, Any]:
    """The numbers of the gate: differences against the reference, agreement with the baseline, accuracy."""
    gate = GATES[c.name]
    (_, real, real_ref), (_, rand, rand_ref) = _compared(c.outputs, reference)
    pred, base_pred, ref_pred = real.argmax(1), base.real.argmax(1), real_ref.argmax(1)
    return {
        "images": len(data.test_y),
        "real": _diffs(real, real_ref),
        "random": _diffs(rand, rand_ref),
        "top1_agreement": float((pred == base_pred).mean()),
        "agreement_with": gate.baseline,
        "top1_agreement_with_torch": float((pred == ref_pred).mean()),
        "accuracy": float((pred == data.test_y).mean()),
        "baseline_accuracy": float((base_pred == data.test_y).mean()),
        "tolerance": {
            **{k: v for k, v in vars(gate).items() if v is not None and k != "hint"},
            **({"random_rtol": RANDOM_RTOL} if gate.atol is not None else {}),
        },
    }


# on random inputs: |diff| <= atol + RANDOM_RTOL * |reference logit|. Measured: OpenVINO's fp32 kernels on an
# Intel Xeon gave 1.3e-4 on random-input logits up to 89 (1.5e-6 of their size) and 2.3e-5 on real images.
RANDOM_RTOL = 1e-5


def _failures(c: Candidate, reference: Outputs, summary: dict[str, Any], baseline_size: int | None) -> list[str]:
    """What misses the gate: values (atol), decision (agreement, accuracy drop), size; adds the drop and ratio."""
    gate = GATES[c.name]
    failures = []
    if gate.atol is not None:
        for label, g, w in _compared(c.outputs, reference):
            rtol = RANDOM_RTOL if label == "random inputs" else 0.0
            try:
                np.testing.assert_allclose(g, w, rtol=rtol, atol=gate.atol)
            except AssertionError:
                allowed = f"{gate.atol:g}" + (f" + {rtol:g} x |logit|" if rtol else "")
                failures.append(f"max abs logit diff {np.abs(g - w).max():.3g} on {label} exceeds {allowed}")
    if summary["top1_agreement"] < gate.min_agreement:
        failures.append(
            f"top-1 agreement with {gate.baseline} {100 * summary['top1_agreement']:.2f}% "
            f"is under {100 * gate.min_agreement:.2f}%"
        )
    if gate.max_accuracy_drop is not None:
        drop = summary["baseline_accuracy"] - summary["accuracy"]
        summary["accuracy_drop_pp"] = 100 * drop
        if drop > gate.max_accuracy_drop + 1e-12:
            failures.append(f"accuracy drops {100 * drop:.2f} pp, more than {100 * gate.max_accuracy_drop:g} pp")
    if c.size is not None and baseline_size:
        ratio, failure = _size_gate(c.name, c.size, baseline_size)
        summary.update(ratio)
        failures += [failure] if failure else []
    return failures


def check(c: Candidate, reference: Outputs, data: ParityData, baseline: Candidate | None = None) -> dict[str, Any]:
    """Compare an export's outputs with the reference (and ``baseline``, the format its gate names);
    return the summary, or raise ParityError carrying it."""
    gate = GATES[c.name]
    problems = _structure(c, reference)
    if problems:
        raise ParityError(
            f"{c.name} export has the wrong structure: {'; '.join(problems)}",
            f"{gate.hint}; report this with the checkpoint",
        )
    if gate.baseline != "torch" and baseline is None:
        raise ValueError(f"{c.name} needs the {gate.baseline} outputs as its baseline")
    base = reference if baseline is None or gate.baseline == "torch" else baseline.outputs
    summary = _summary(c, reference, base, data)
    failures = _failures(c, reference, summary, baseline.size if baseline else None)
    summary["passed"] = not failures
    if failures:
        raise ParityError(
            f"{c.name} export fails its parity gate on {len(data.test_y)} test images: {'; '.join(failures)}",
            gate.hint,
            summary=summary,  # the numbers, for the --json report
        )
    return summary


def _size_gate(name: str, size: int, baseline_size: int) -> tuple[dict[str, float], str | None]:
    gate = GATES[name]
    if gate.max_size_ratio is None:
        return {}, None
    ratio = size / baseline_size
    failure = (
        f"size {100 * ratio:.1f}% of {gate.baseline} exceeds {100 * gate.max_size_ratio:.0f}%"
        if ratio > gate.max_size_ratio
        else None
    )
    return {"size_ratio": ratio}, failure


def check_size(name: str, size: int, baseline_size: int, summary: dict[str, Any]) -> dict[str, Any]:
    """The size gate alone, for the final file: ``summary`` with the ratio, or ParityError carrying both."""
    ratio, failure = _size_gate(name, size, baseline_size)
    if failure:
        raise ParityError(
            f"{name} export fails its size gate: {failure}",
            GATES[name].hint,
            summary={**summary, **ratio, "passed": False},
        )
    return {**summary, **ratio}


def compact(summary: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The parity summary as it travels inside a model file: 6 significant digits, no local paths."""

    def short(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.6g}")
        return {k: short(x) for k, x in v.items()} if isinstance(v, dict) else v

    return short({**summary, "source": {k: v for k, v in source.items() if k != "folder"}})


def latency_ms(run: Runner, x: np.ndarray, budget_s: float = 0.5, max_runs: int = 200) -> float:
    """Median wall time of one call in milliseconds, after warm-up calls (``cnnx.core.machine.timed``)."""
    return timed(run, x, budget_s, max_runs=max_runs)["p50_ms"]

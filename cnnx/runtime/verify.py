"""``cnnx verify``: does this device's runtime compute what the checkpoint computed? Torch-free.

Every file ``cnnx export`` writes for a device (ONNX family, OpenVINO, TFLite, ExecuTorch)
carries a self-check (``cnnx.core.selfcheck``): a few real test images as uint8 pixels, the
checkpoint's logits for them, and the tolerance its format was gated with. ``verify`` normalises
the images with the file's own spec, runs them through the runtime ``cnnx infer`` uses on this
device (onnxruntime's CPU provider, the same session options; OpenVINO; LiteRT), and compares:
the largest logit difference must be within the tolerance and the top-1 class the checkpoint's
on every image. Nothing but numpy and the runtime is loaded: no dataset, no Pillow, no torch.

The one exception is an ExecuTorch program (``.pte``): ExecuTorch's Python runtime takes torch
tensors, so the command opens it with the export side's ``DeviceProgram`` and passes that in as
``opener``; only that path imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnx.core.contract import normalise
from cnnx.core.errors import ModelFileError, NoSpecError, ParityError
from cnnx.core.selfcheck import KEY, SelfCheck
from cnnx.runtime.backends import Loader, metadata, open_model


def _runtime(model: Any) -> str:
    """The runtime that ran the check, with its version and where it ran."""
    session = getattr(model, "session", None)
    if session is None:
        return str(getattr(model, "runtime", type(model).__name__))
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} ({', '.join(session.get_providers())})"


def verify(path: str | Path, threads: int | None = None, opener: Loader | None = None) -> dict[str, Any]:
    """Run the self-check ``path`` carries on this device: the result, or ParityError carrying it (exit 3).

    ``opener``: what opens the file, when not the edge runtime's ``open_model`` (an ExecuTorch program).
    ModelFileError (exit 2) for a file that cannot be opened or carries no self-check.
    """
    t0 = time.perf_counter()
    try:
        model = (opener or open_model)(Path(path), threads, None)
    except NoSpecError:  # its advice (--mean, --std, --size) is for infer and eval, not for a check
        raise ModelFileError(
            f"{path} carries no cnnx spec and no self-check: it was not made by `cnnx export`, so there is "
            "nothing to verify it against",
            "cnnx verify checks files from cnnx export; `cnnx infer --mean ... --std ... --size ...` runs this one",
        ) from None
    text = metadata(model).get(KEY)
    if text is None:
        raise ModelFileError(
            f"{path} carries no self-check (no {KEY!r} metadata), so there is nothing to verify it against",
            "export it again with this cnnx: `cnnx export CHECKPOINT` writes the self-check into every file it makes",
        )
    check = SelfCheck.decode(text)
    spec = model.spec
    if check.pixels.shape[1:] != tuple(spec.input_shape) or check.logits.shape[1] != spec.num_classes:
        raise ModelFileError(
            f"{path}: its self-check holds {check.pixels.shape[1:]} images and {check.logits.shape[1]} classes; "
            f"the model takes {tuple(spec.input_shape)} and gives {spec.num_classes}",
            "re-export it with `cnnx export`",
        )
    got = model.run(normalise(check.pixels, spec.mean, spec.std))
    top1 = got.argmax(1) == check.logits.argmax(1)
    result: dict[str, Any] = {
        "model": str(path),
        "format": check.format,
        "images": len(got),
        "max_abs_diff": float(np.abs(got - check.target).max()),
        "compared_with": "checkpoint" if check.expected is None else "the file at export",
        "max_abs_diff_vs_checkpoint": float(np.abs(got - check.logits).max()),
        "atol": check.atol,
        "top1_agreement": float(top1.mean()),
        "runtime": _runtime(model),
        "threads": model.threads,
    }
    result["passed"] = bool(result["max_abs_diff"] <= check.atol and top1.all())
    result["seconds"] = round(time.perf_counter() - t0, 4)
    if not result["passed"]:
        raise ParityError(
            f"{path} fails its self-check on this device: {_numbers(result)}",
            f"this runtime does not compute what the checkpoint did; try another version of "
            f"{result['runtime'].split(' ')[0]}, or re-export on a machine like this one",
            report=result,
        )
    return result


def _numbers(result: dict[str, Any]) -> str:
    """The difference, what it was measured against, the tolerance, and the top-1 agreement with the checkpoint."""
    agree = f"top-1 {100 * result['top1_agreement']:.0f}% of {result['images']} images"
    diff = f"max |logit diff| {result['max_abs_diff']:.3g} (tolerance {result['atol']:g})"
    if result.get("compared_with", "checkpoint") == "checkpoint":
        return f"{diff}, {agree}"
    # an fp16 or int8 file: checked against its own logits at export, its top-1 against the checkpoint's
    vs = result["max_abs_diff_vs_checkpoint"]
    return f"{diff} vs its own logits at export ({vs:.3g} vs the checkpoint's), {agree} as the checkpoint"


def render(result: dict[str, Any]) -> str:
    """One line: pass or FAIL, the largest difference, the tolerance, what ran it."""
    word = "pass" if result["passed"] else "FAIL"
    return f"{word}: {result['model']} ({result['format']}): {_numbers(result)}; {result['runtime']}"

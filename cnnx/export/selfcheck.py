"""The self-check export puts into each ONNX-family file, for ``cnnx verify`` on a device.

The first ``IMAGES`` real test images of the parity data, as uint8 pixels, with the
checkpoint's logits for them and the format's tolerance from ``GATES``
(``cnnx.core.selfcheck`` holds the encoding). Before a file is gated, export runs its own
self-check on it, so every file it keeps passes ``cnnx verify`` on the exporting machine.
"""

from __future__ import annotations

import numpy as np

from cnnx.core.contract import normalise, normalise_constants
from cnnx.core.errors import ParityError
from cnnx.core.selfcheck import IMAGES, SelfCheck
from cnnx.core.spec import ModelSpec
from cnnx.export.parity import GATES, Runner
from cnnx.export.parity_data import ParityData


def pixels_of(data: ParityData, spec: ModelSpec) -> np.ndarray:
    """The first ``IMAGES`` test images back as the uint8 pixels they were normalised from: (n, C, H, W)."""
    x = data.test_x[:IMAGES]
    scale, bias = normalise_constants(spec.mean, spec.std)
    pixels = np.clip(np.rint((x - bias) / scale), 0, 255).astype(np.uint8)
    if not np.array_equal(normalise(pixels, spec.mean, spec.std), x):
        raise ValueError("the parity images are not normalised uint8 pixels")
    return pixels


def bundle(run: Runner, data: ParityData, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, C, H, W) uint8, the reference ``run``'s logits on them (n, K) float32)."""
    pixels = pixels_of(data, spec)
    return pixels, run(normalise(pixels, spec.mean, spec.std))


def made(name: str, run: Runner, images: tuple[np.ndarray, np.ndarray], spec: ModelSpec) -> str:
    """The encoded self-check of a made ``name`` file that ``run`` runs, checked on it here.

    ``images``: ``bundle``'s pixels and checkpoint logits. A format gated on logits carries the
    checkpoint's; one gated on decisions (no ``atol``) carries its own logits from this machine
    as the expected values, and must give the checkpoint's top-1 class on them. ParityError when
    the file fails the check here (it would fail ``cnnx verify`` everywhere).
    """
    pixels, logits = images
    gate = GATES[name]
    got = run(normalise(pixels, spec.mean, spec.std))
    expected = got if gate.atol is None else None
    check = SelfCheck(pixels=pixels, logits=logits, atol=gate.device_atol, format=name, expected=expected)
    diff = float(np.abs(got - check.target).max())
    same = bool((got.argmax(1) == logits.argmax(1)).all())
    if diff > check.atol or not same:
        raise ParityError(
            f"{name} export fails its own self-check: max abs logit diff {diff:.3g} (tolerance {check.atol:g}), "
            f"top-1 {'the same as' if same else 'differs from'} the checkpoint's on {len(got)} images",
            gate.hint,
        )
    return check.encode()

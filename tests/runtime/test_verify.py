"""`cnnx.runtime.verify`: the self-check every ONNX-family export carries, run on this machine's runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnx.core.errors import ModelFileError, ParityError
from cnnx.core.selfcheck import KEY, SelfCheck


def _check(**changes: object) -> SelfCheck:
    rng = np.random.default_rng(0)
    fields = {
        "pixels": rng.integers(0, 256, (8, 1, 28, 28), dtype=np.uint8),
        "logits": rng.standard_normal((8, 10)).astype(np.float32),
        "atol": 1e-4,
        "format": "onnx",
        **changes,
    }
    return SelfCheck(**fields)  # type: ignore[arg-type]


def test_the_self_check_round_trips_and_stays_small() -> None:
    for check in (_check(), _check(expected=np.ones((8, 10), np.float32), format="onnx-fp16", atol=0.02)):
        text = check.encode()
        back = SelfCheck.decode(text)
        assert np.array_equal(back.pixels, check.pixels) and back.pixels.dtype == np.uint8
        assert np.array_equal(back.logits, check.logits) and back.logits.dtype == np.float32
        assert (back.atol, back.format) == (check.atol, check.format)
        assert np.array_equal(back.target, check.target)
        assert len(text) < 12_000  # random pixels do not compress; digits do (about 2 KB)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "not json",
        lambda d: json.dumps({**d, "shape": [8, 1, 28]}),
        lambda d: json.dumps({**d, "shape": [4096, 3, 4096, 4096]}),  # a hostile size is refused, not allocated
        lambda d: json.dumps({**d, "pixels": "!!!"}),
        lambda d: json.dumps({**d, "logits": d["logits"][:-8]}),
        lambda d: json.dumps({**d, "atol": -1}),
        lambda d: json.dumps({**d, "version": 99}),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "format"}),
    ],
)
def test_a_damaged_self_check_is_a_model_file_error(damage) -> None:  # noqa: ANN001 - a lambda
    data = json.loads(_check().encode())
    with pytest.raises(ModelFileError, match="self-check the model carries .* is unreadable"):
        SelfCheck.decode(damage(data))


@pytest.fixture(scope="module")
def family(exported: Path) -> dict[str, Path]:
    """The ONNX-family files of the session's `cnnx export --format all` (tests/conftest.py)."""
    return {"onnx": exported / "mnist.onnx", "onnx-fp16": exported / "mnist.fp16.onnx", "ort": exported / "mnist.ort"}


def test_every_onnx_family_file_passes_its_self_check_here(family: dict[str, Path]) -> None:
    from cnnx.runtime.verify import render, verify

    for name, path in family.items():
        result = verify(path, threads=1)
        assert result["passed"] and result["format"] == name and result["images"] == 8
        assert result["top1_agreement"] == 1.0 and result["max_abs_diff"] <= result["atol"]
        assert result["runtime"].startswith("onnxruntime ") and result["threads"] == 1
        assert render(result).startswith(f"pass: {path} ({name}): max |logit diff| ")
    fp16 = verify(family["onnx-fp16"])
    # fp16 is checked against its own logits at export (a quantisation step from the checkpoint's)
    assert fp16["atol"] == 0.02 and fp16["compared_with"] == "the file at export"
    assert 1e-6 < fp16["max_abs_diff_vs_checkpoint"] < 0.1
    # and the line says so: a 0 there is against the file's own logits, not the checkpoint's
    assert f"vs its own logits at export ({fp16['max_abs_diff_vs_checkpoint']:.3g} vs the checkpoint's)" in render(fp16)
    assert verify(family["onnx"])["atol"] == 1e-4 and verify(family["onnx"])["compared_with"] == "checkpoint"


def _edited(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001 - a function of the ModelProto
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(src))
    edit(proto)
    onnx.save(proto, str(dst))
    return dst


def test_logits_that_moved_fail_with_the_numbers(family: dict[str, Path], tmp_path: Path) -> None:
    from onnx import numpy_helper

    from cnnx.runtime.verify import verify

    def perturb(proto) -> None:  # noqa: ANN001
        bias = next(t for t in proto.graph.initializer if t.name.endswith("head.bias"))
        values = numpy_helper.to_array(bias).copy()
        values[0] += 1e-3  # 10x the fp32 tolerance, top-1 unchanged
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))

    path = _edited(family["onnx"], tmp_path / "moved.onnx", perturb)
    with pytest.raises(ParityError, match=r"fails its self-check on this device: max \|logit diff\| 0\.001") as err:
        verify(path)
    assert err.value.exit_code == 3 and err.value.report is not None
    assert err.value.report["passed"] is False and err.value.report["max_abs_diff"] > 1e-4


def test_a_file_without_a_self_check_is_named_with_the_way_out(family: dict[str, Path], tmp_path: Path) -> None:
    from cnnx.runtime.verify import verify

    def drop(proto) -> None:  # noqa: ANN001
        keep = [p for p in proto.metadata_props if p.key != KEY]
        del proto.metadata_props[:]
        proto.metadata_props.extend(keep)

    path = _edited(family["onnx"], tmp_path / "old.onnx", drop)
    with pytest.raises(ModelFileError, match="carries no self-check") as err:
        verify(path)
    assert "cnnx export" in str(err.value) and err.value.exit_code == 2


def test_a_renamed_ort_file_is_still_opened(family: dict[str, Path], tmp_path: Path) -> None:
    from cnnx.runtime.backends import open_model

    for name in ("model.ORT", "model.onnx"):  # onnxruntime goes by the suffix; cnnx by the content
        copy = tmp_path / name
        shutil.copy(family["ort"], copy)
        model = open_model(copy, threads=1)
        assert model.spec.extra["format"] == "ort"
        assert model.run(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)

"""A spec whose values cannot be right (not finite, overflowing, not an object) is refused in one line
that names the file, through the real `cnnx infer` and `cnnx eval`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import MINI_MNIST, REPO, run_cli

onnx = pytest.importorskip("onnx")
DIGIT = REPO / "cnnx" / "samples" / "digits" / "mnist-7.png"


def _with_meta(shipped: Path, folder: Path, key: str, value: str) -> Path:
    proto = onnx.load(str(shipped))
    entry = next(p for p in proto.metadata_props if p.key == key)
    entry.value = value
    path = folder / "edited.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize(
    "key, value",
    [
        ("cnnx.std", "[NaN]"),
        ("cnnx.mean", "[Infinity]"),
        ("cnnx.input_shape", "[1, 1e400, 28]"),
    ],
)
def test_impossible_spec_values_are_one_line_errors(shipped_model: Path, tmp_path: Path, key: str, value: str) -> None:
    model = _with_meta(shipped_model, tmp_path, key, value)
    for args in (["infer", str(DIGIT), "--model", str(model)], ["eval", str(model), "--data", str(MINI_MNIST)]):
        proc = run_cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stdout, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"error: {model}"), proc.stderr


def test_a_torchscript_spec_that_is_not_an_object_names_the_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from cnnx.core.contract import TORCHSCRIPT_SPEC_FILE
    from cnnx.train.runner import quiet_torchscript, save_torchscript

    with quiet_torchscript():
        module = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "list-spec.torchscript"
    with open(path, "wb") as f:
        save_torchscript(module, f, {TORCHSCRIPT_SPEC_FILE: "[1, 2, 3]"})
    proc = run_cli("eval", str(path), "--data", str(MINI_MNIST))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: the model spec is not a JSON object (found list) (re-export the model with `cnnx export`)"
    ]
